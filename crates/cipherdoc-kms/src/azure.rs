//! Azure Key Vault `wrapkey`/`unwrapkey` with RSA-OAEP-256.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::http::{
    HttpOptions, HttpResponse, HttpSender, TlsOptions, clip, join, json_object, secret_body,
};
use crate::secret::Secret;
use crate::token::{TokenCache, parse_token_response};
use crate::{
    AzureCredentials, HostSet, KeyTrust, KmsError, KmsProvider, MasterKey, ProviderKind,
    ProviderName, WrappedKey,
};

/// Key Vault REST API version used for `wrapkey`/`unwrapkey`.
pub const AZURE_API_VERSION: &str = "7.4";
const SCOPE: &str = "https://vault.azure.net/.default";
const DEFAULT_TOKEN_HOST: &str = "login.microsoftonline.com";

/// An Azure Key Vault provider.
#[derive(Debug)]
pub struct AzureProvider {
    http: HttpSender,
    creds: AzureCredentials,
    token: TokenCache,
    trust: KeyTrust,
}

impl AzureProvider {
    /// Builds the provider.
    pub fn new(
        name: &ProviderName,
        creds: AzureCredentials,
        http: &HttpOptions,
        tls: &TlsOptions,
    ) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Azure {
            return Err(KmsError::config(name, "not an azure provider name"));
        }
        let mut sender = HttpSender::new(name, http, tls)?;
        // The token endpoint comes from the settings (or is Microsoft's).
        if http.token_endpoint_override.is_none()
            && let AzureCredentials::ClientSecret {
                identity_platform_endpoint,
                ..
            } = &creds
        {
            match identity_platform_endpoint {
                Some(e) => sender.allow(&HostSet::default(), &[(e.host(), e.port())]),
                None => sender.allow(&HostSet::default(), &[(DEFAULT_TOKEN_HOST, None)]),
            }
        }
        Ok(Self {
            http: sender,
            creds,
            token: TokenCache::default(),
            trust: KeyTrust::default(),
        })
    }

    /// Uses the master keys and hosts the settings allow; until then every
    /// master key is refused (see [`crate::KeyTrust`]).
    #[must_use]
    pub fn with_trust(mut self, trust: KeyTrust) -> Self {
        self.http.allow(&trust.hosts(None), &[]);
        self.trust = trust;
        self
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), KmsError> {
        let AzureCredentials::ClientSecret {
            tenant_id,
            client_id,
            client_secret,
            identity_platform_endpoint,
        } = &self.creds
        else {
            return Err(KmsError::protocol(
                &self.http.provider,
                "no client credentials to fetch a token with",
            ));
        };
        let base = match (
            &self.http.opts.token_endpoint_override,
            identity_platform_endpoint,
        ) {
            (Some(o), _) => o.clone(),
            (None, Some(e)) => e.https_base(),
            (None, None) => format!("https://{DEFAULT_TOKEN_HOST}"),
        };
        let url = join(
            &self.http.provider,
            &base,
            &[tenant_id, "oauth2", "v2.0", "token"],
        )?;
        let form = Zeroizing::new(
            // Room for the whole form, so that growing never leaves a copy
            // of the secret behind (percent-encoding at most triples it).
            url::form_urlencoded::Serializer::new(String::with_capacity(
                3 * (client_id.len() + client_secret.expose().len() + SCOPE.len()) + 128,
            ))
            .append_pair("client_id", client_id)
            .append_pair("scope", SCOPE)
            .append_pair("client_secret", client_secret.expose())
            .append_pair("grant_type", "client_credentials")
            .finish()
            .into_bytes(),
        );
        let resp = self
            .http
            .send(url.as_str(), |c| {
                Ok(c.post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(secret_body(&form)))
            })
            .await?;
        parse_token_response(&self.http.provider, &resp)
    }

    async fn call(
        &self,
        mk: &crate::AzureMasterKeyDoc,
        op: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.trust
            .check(&self.http.provider, &MasterKey::Azure(mk.clone()), None)?;
        let token = match &self.creds {
            AzureCredentials::AccessToken(t) => t.clone(),
            AzureCredentials::ClientSecret { .. } => self.token.get(|| self.fetch_token()).await?,
        };
        let base = self
            .http
            .opts
            .endpoint_override
            .clone()
            .unwrap_or_else(|| mk.key_vault_endpoint.https_base());
        let mut segs = vec!["keys", mk.key_name.as_str()];
        if let Some(v) = &mk.key_version {
            segs.push(v);
        }
        segs.push(op);
        let mut url = join(&self.http.provider, &base, &segs)?;
        url.query_pairs_mut()
            .append_pair("api-version", AZURE_API_VERSION);
        let value = Zeroizing::new(B64URL.encode(value));
        let body = json_object(&[("alg", "RSA-OAEP-256"), ("value", &value)])
            .map_err(|e| KmsError::protocol(&self.http.provider, e.to_string()))?;
        let resp = self
            .http
            .send(url.as_str(), |c| {
                Ok(c.post(url.clone())
                    .bearer_auth(token.expose())
                    .header("content-type", "application/json")
                    .body(secret_body(&body)))
            })
            .await?;
        if resp.status == 401 {
            self.token.clear().await;
        }
        let mut v = self.check(&resp)?;
        let s = crate::http::take_str(&self.http.provider, &mut v, "value")?;
        B64URL
            .decode(s.trim_end_matches('='))
            .map(Zeroizing::new)
            .map_err(|e| {
                KmsError::protocol(
                    &self.http.provider,
                    format!("field value is not base64url: {e}"),
                )
            })
    }

    pub(crate) fn check(&self, resp: &HttpResponse) -> Result<Value, KmsError> {
        let provider = self.http.provider.to_string();
        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status == 200 {
            return v
                .ok_or_else(|| KmsError::protocol(&self.http.provider, "response is not JSON"));
        }
        // {"error": {"code": "...", "message": "...", "innererror": {"code": "..."}}}
        let err = v.as_ref().and_then(|v| v.get("error"));
        let code = err
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        let inner = err
            .and_then(|e| e.get("innererror"))
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let message = clip(
            err.and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        let code = if inner.is_empty() {
            code
        } else {
            format!("{code}/{inner}")
        };
        Err(match resp.status {
            _ if inner == "KeyDisabled" => KmsError::KeyDisabled {
                provider,
                code,
                message,
            },
            401 | 403 => KmsError::Auth {
                provider,
                status: resp.status,
                code,
                message,
            },
            404 => KmsError::KeyNotFound {
                provider,
                code,
                message,
            },
            // Key Vault answers 400 BadParameter when unwrapping with the wrong key.
            400 if code.starts_with("BadParameter") => KmsError::KeyNotFound {
                provider,
                code,
                message,
            },
            s => KmsError::Service {
                provider,
                status: s,
                code,
                message,
                attempts: resp.attempts,
            },
        })
    }
}

#[async_trait]
impl KmsProvider for AzureProvider {
    fn name(&self) -> &ProviderName {
        &self.http.provider
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.trust.check(&self.http.provider, master_key, None)
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        let MasterKey::Azure(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        let km = self.call(mk, "wrapkey", dek).await?;
        Ok(WrappedKey {
            key_material: km.to_vec(),
            master_key: master_key.clone(),
        })
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let MasterKey::Azure(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        self.call(mk, "unwrapkey", key_material).await
    }
}
