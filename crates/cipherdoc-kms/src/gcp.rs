//! GCP Cloud KMS `:encrypt`/`:decrypt`, with a service-account JWT exchanged
//! for an access token (RFC 7523 JWT bearer grant).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::http::{
    HttpOptions, HttpResponse, HttpSender, TlsOptions, clip, join, json_object, secret_body,
};
use crate::secret::Secret;
use crate::token::{TokenCache, parse_token_response};
use crate::{
    GcpCredentials, HostSet, KeyTrust, KmsError, KmsProvider, MasterKey, ProviderKind,
    ProviderName, WrappedKey,
};

const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
const DEFAULT_TOKEN_HOST: &str = "oauth2.googleapis.com";
/// JWT lifetime; Google accepts at most one hour, libmongocrypt uses 5 minutes.
const JWT_LIFETIME_SECS: i64 = 300;

/// A GCP Cloud KMS provider.
#[derive(Debug)]
pub struct GcpProvider {
    http: HttpSender,
    auth: GcpAuth,
    token: TokenCache,
    trust: KeyTrust,
}

enum GcpAuth {
    ServiceAccount {
        email: String,
        key: Box<SigningKey<Sha256>>,
        token_host: Option<crate::Endpoint>,
    },
    AccessToken(Secret),
}

impl std::fmt::Debug for GcpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServiceAccount { email, .. } => f
                .debug_struct("ServiceAccount")
                .field("email", email)
                .finish_non_exhaustive(),
            Self::AccessToken(_) => f.write_str("AccessToken(..)"),
        }
    }
}

/// Reads an RSA private key given as PKCS#8 DER, PEM text, or base64 of DER.
pub(crate) fn parse_private_key(
    provider: &ProviderName,
    bytes: &[u8],
) -> Result<RsaPrivateKey, KmsError> {
    let bad = || {
        KmsError::config(
            provider,
            "privateKey is not an RSA PKCS#8 key (DER, PEM or base64 of DER)",
        )
    };
    if let Ok(k) = RsaPrivateKey::from_pkcs8_der(bytes) {
        return Ok(k);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?.trim();
    if text.starts_with("-----BEGIN") {
        return RsaPrivateKey::from_pkcs8_pem(text).map_err(|_| bad());
    }
    let der = Zeroizing::new(
        B64.decode(text.split_whitespace().collect::<String>())
            .map_err(|_| bad())?,
    );
    RsaPrivateKey::from_pkcs8_der(&der).map_err(|_| bad())
}

impl GcpProvider {
    /// Builds the provider (parsing the private key once).
    pub fn new(
        name: &ProviderName,
        creds: GcpCredentials,
        http: &HttpOptions,
        tls: &TlsOptions,
    ) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Gcp {
            return Err(KmsError::config(name, "not a gcp provider name"));
        }
        let auth = match creds {
            GcpCredentials::ServiceAccount {
                email,
                private_key,
                endpoint,
            } => {
                let key = parse_private_key(name, private_key.expose())?;
                GcpAuth::ServiceAccount {
                    email,
                    key: Box::new(SigningKey::<Sha256>::new(key)),
                    token_host: endpoint,
                }
            }
            GcpCredentials::AccessToken(t) => GcpAuth::AccessToken(t),
        };
        let mut sender = HttpSender::new(name, http, tls)?;
        // The token endpoint comes from the settings (or is Google's).
        if http.token_endpoint_override.is_none()
            && let GcpAuth::ServiceAccount { token_host, .. } = &auth
        {
            match token_host {
                Some(e) => sender.allow(&HostSet::default(), &[(e.host(), e.port())]),
                None => sender.allow(&HostSet::default(), &[(DEFAULT_TOKEN_HOST, None)]),
            }
        }
        Ok(Self {
            http: sender,
            auth,
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
        let GcpAuth::ServiceAccount {
            email,
            key,
            token_host,
        } = &self.auth
        else {
            return Err(KmsError::protocol(
                &self.http.provider,
                "no service account to fetch a token with",
            ));
        };
        let base = match (&self.http.opts.token_endpoint_override, token_host) {
            (Some(o), _) => o.clone(),
            (None, Some(e)) => e.https_base(),
            (None, None) => format!("https://{DEFAULT_TOKEN_HOST}"),
        };
        let url = join(&self.http.provider, &base, &["token"])?;
        // The audience is the token endpoint the assertion is sent to.
        let aud = match token_host {
            Some(e) => format!("{}/token", e.https_base()),
            None => "https://oauth2.googleapis.com/token".into(),
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header = B64URL.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = B64URL.encode(
            json!({"iss": email, "aud": aud, "scope": SCOPE, "iat": now, "exp": now + JWT_LIFETIME_SECS}).to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let sig = key.sign(signing_input.as_bytes());
        let jwt = Zeroizing::new(format!("{signing_input}.{}", B64URL.encode(sig.to_bytes())));
        let form = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::with_capacity(3 * jwt.len() + 128))
                .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                .append_pair("assertion", &jwt)
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
        mk: &crate::GcpMasterKeyDoc,
        op: &str,
        field: &str,
        value: &[u8],
        out: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.trust
            .check(&self.http.provider, &MasterKey::Gcp(mk.clone()), None)?;
        let token = match &self.auth {
            GcpAuth::AccessToken(t) => t.clone(),
            GcpAuth::ServiceAccount { .. } => self.token.get(|| self.fetch_token()).await?,
        };
        let base = match (&self.http.opts.endpoint_override, &mk.endpoint) {
            (Some(o), _) => o.clone(),
            (None, Some(e)) => e.https_base(),
            (None, None) => format!("https://{}", crate::trust::GCP_DEFAULT_HOST),
        };
        let mut segs = vec![
            "v1",
            "projects",
            &mk.project_id,
            "locations",
            &mk.location,
            "keyRings",
            &mk.key_ring,
            "cryptoKeys",
        ];
        // Encrypt may name a version; decrypt always names the crypto key
        // (Cloud KMS finds the version from the ciphertext), as libmongocrypt does.
        let last = match (&mk.key_version, op) {
            (Some(v), "encrypt") => {
                segs.extend([mk.key_name.as_str(), "cryptoKeyVersions"]);
                format!("{v}:{op}")
            }
            _ => format!("{}:{op}", mk.key_name),
        };
        segs.push(&last);
        let url = join(&self.http.provider, &base, &segs)?;
        let value = Zeroizing::new(B64.encode(value));
        let body = json_object(&[(field, &value)])
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
        let mut v = self.check(&resp, op)?;
        let s = crate::http::take_str(&self.http.provider, &mut v, out)?;
        B64.decode(s.as_bytes()).map(Zeroizing::new).map_err(|e| {
            KmsError::protocol(
                &self.http.provider,
                format!("field {out} is not base64: {e}"),
            )
        })
    }

    pub(crate) fn check(&self, resp: &HttpResponse, op: &str) -> Result<Value, KmsError> {
        let provider = self.http.provider.to_string();
        let v: Option<Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status == 200 {
            return v
                .ok_or_else(|| KmsError::protocol(&self.http.provider, "response is not JSON"));
        }
        // {"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED"}}
        let err = v.as_ref().and_then(|v| v.get("error"));
        let code = err
            .and_then(|e| e.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_owned();
        let message = clip(
            err.and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        Err(match (resp.status, code.as_str()) {
            (_, "FAILED_PRECONDITION") => KmsError::KeyDisabled {
                provider,
                code,
                message,
            },
            (401 | 403, _) => KmsError::Auth {
                provider,
                status: resp.status,
                code,
                message,
            },
            (404, _) => KmsError::KeyNotFound {
                provider,
                code,
                message,
            },
            // Cloud KMS answers INVALID_ARGUMENT when a ciphertext was not made with this key.
            (400, "INVALID_ARGUMENT") if op == "decrypt" => KmsError::KeyNotFound {
                provider,
                code,
                message,
            },
            (s, _) => KmsError::Service {
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
impl KmsProvider for GcpProvider {
    fn name(&self) -> &ProviderName {
        &self.http.provider
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.trust.check(&self.http.provider, master_key, None)
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        let MasterKey::Gcp(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        let km = self
            .call(mk, "encrypt", "plaintext", dek, "ciphertext")
            .await?;
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
        let MasterKey::Gcp(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        self.call(mk, "decrypt", "ciphertext", key_material, "plaintext")
            .await
    }
}
