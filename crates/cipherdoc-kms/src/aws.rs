//! AWS KMS `Encrypt`/`Decrypt` (JSON 1.1 protocol, SigV4-signed).

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Url;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::http::{
    HttpOptions, HttpResponse, HttpSender, TlsOptions, clip, json_object, secret_body,
};
use crate::sigv4::{SigningInput, authorization};
use crate::{
    AwsCredentials, KeyTrust, KmsError, KmsProvider, MasterKey, ProviderKind, ProviderName,
    WrappedKey,
};

/// An AWS KMS provider.
#[derive(Debug)]
pub struct AwsProvider {
    http: HttpSender,
    creds: AwsCredentials,
    trust: KeyTrust,
}

impl AwsProvider {
    /// Builds the provider; `creds = None` reads the standard environment variables.
    pub fn new(
        name: &ProviderName,
        creds: Option<AwsCredentials>,
        http: &HttpOptions,
        tls: &TlsOptions,
    ) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Aws {
            return Err(KmsError::config(name, "not an aws provider name"));
        }
        let creds = match creds {
            Some(c) => c,
            None => AwsCredentials::from_env().map_err(|_| {
                KmsError::config(name, "no credentials configured and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not both set")
            })?,
        };
        Ok(Self {
            http: HttpSender::new(name, http, tls)?,
            creds,
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

    fn url(&self, region: &str, mk_endpoint: Option<&crate::Endpoint>) -> Result<Url, KmsError> {
        let base = match (&self.http.opts.endpoint_override, mk_endpoint) {
            (Some(o), _) => o.clone(),
            (None, Some(e)) => e.https_base(),
            (None, None) => format!("https://kms.{region}.amazonaws.com"),
        };
        let mut url = Url::parse(&base).map_err(|e| {
            KmsError::config(&self.http.provider, format!("endpoint {base:?}: {e}"))
        })?;
        url.set_path("/");
        Ok(url)
    }

    async fn call(
        &self,
        region: &str,
        endpoint: Option<&crate::Endpoint>,
        target: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Value, KmsError> {
        let url = self.url(region, endpoint)?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => {
                return Err(KmsError::config(
                    &self.http.provider,
                    "endpoint has no host",
                ));
            }
        };
        let target = format!("TrentService.{target}");
        let resp = self
            .http
            .send(url.as_str(), |client| {
                let amz_date = time::OffsetDateTime::now_utc()
                    .format(time::macros::format_description!(
                        "[year][month][day]T[hour][minute][second]Z"
                    ))
                    .map_err(|e| KmsError::protocol(&self.http.provider, e.to_string()))?;
                let mut headers: Vec<(&str, &str)> = vec![
                    ("content-type", "application/x-amz-json-1.1"),
                    ("host", &host),
                    ("x-amz-date", &amz_date),
                    ("x-amz-target", &target),
                ];
                if let Some(t) = &self.creds.session_token {
                    headers.push(("x-amz-security-token", t.expose()));
                }
                let auth = authorization(
                    &SigningInput {
                        method: "POST",
                        path: "/",
                        query: "",
                        headers: &headers,
                        body: &body,
                        amz_date: &amz_date,
                        region,
                        service: "kms",
                    },
                    &self.creds.access_key_id,
                    self.creds.secret_access_key.expose(),
                );
                let mut rb = client.post(url.clone()).header("authorization", auth);
                for (k, v) in &headers {
                    rb = rb.header(*k, *v);
                }
                Ok(rb.body(secret_body(&body)))
            })
            .await?;
        self.check(&resp)
    }

    pub(crate) fn check(&self, resp: &HttpResponse) -> Result<Value, KmsError> {
        let provider = self.http.provider.to_string();
        if resp.status == 200 {
            // moto may label a JSON success as text/html: parse regardless of content type.
            return serde_json::from_slice(&resp.body).map_err(|e| {
                KmsError::protocol(&self.http.provider, format!("response is not JSON: {e}"))
            });
        }
        let (code, message) = aws_error(resp);
        let code_short = code.rsplit('#').next().unwrap_or(&code).to_owned();
        Err(match code_short.as_str() {
            "DisabledException" | "KMSInvalidStateException" | "KeyUnavailableException" => {
                KmsError::KeyDisabled {
                    provider,
                    code: code_short,
                    message,
                }
            }
            "NotFoundException"
            | "IncorrectKeyException"
            | "InvalidCiphertextException"
            | "InvalidKeyUsageException" => KmsError::KeyNotFound {
                provider,
                code: code_short,
                message,
            },
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidClientTokenId"
            | "AccessDeniedException"
            | "AccessDenied"
            | "ExpiredTokenException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken" => KmsError::Auth {
                provider,
                status: resp.status,
                code: code_short,
                message,
            },
            _ if resp.status == 401 || resp.status == 403 => KmsError::Auth {
                provider,
                status: resp.status,
                code: code_short,
                message,
            },
            _ => KmsError::Service {
                provider,
                status: resp.status,
                code: code_short,
                message,
                attempts: resp.attempts,
            },
        })
    }
}

/// Error code and message from a JSON (`__type`, `message`) or XML
/// (`<Code>`, `<Message>`) AWS error answer, or the `X-Amzn-ErrorType` header.
fn aws_error(resp: &HttpResponse) -> (String, String) {
    let header_code = resp
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(':').next().unwrap_or(s).to_owned());
    if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
        let code = v
            .get("__type")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(header_code)
            .unwrap_or_else(|| "Unknown".into());
        let msg = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return (code, clip(msg));
    }
    let text = String::from_utf8_lossy(&resp.body);
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text.get(start..)?.find(&format!("</{t}>"))? + start;
        text.get(start..end).map(str::to_owned)
    };
    let code = tag("Code")
        .or(header_code)
        .unwrap_or_else(|| format!("HTTP{}", resp.status));
    (code, clip(&tag("Message").unwrap_or_default()))
}

pub(crate) fn b64_field(
    provider: &ProviderName,
    v: &mut Value,
    field: &str,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let s = crate::http::take_str(provider, v, field)?;
    B64.decode(s.as_bytes())
        .map(Zeroizing::new)
        .map_err(|e| KmsError::protocol(provider, format!("field {field} is not base64: {e}")))
}

#[async_trait]
impl KmsProvider for AwsProvider {
    fn name(&self) -> &ProviderName {
        &self.http.provider
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.trust.check(&self.http.provider, master_key, None)
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        let MasterKey::Aws(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        self.trust.check(&self.http.provider, master_key, None)?;
        let plaintext = Zeroizing::new(B64.encode(dek));
        let body = json_object(&[("KeyId", &mk.key), ("Plaintext", &plaintext)])
            .map_err(|e| KmsError::protocol(&self.http.provider, e.to_string()))?;
        let mut v = self
            .call(&mk.region, mk.endpoint.as_ref(), "Encrypt", body)
            .await?;
        let blob = b64_field(&self.http.provider, &mut v, "CiphertextBlob")?;
        Ok(WrappedKey {
            key_material: blob.to_vec(),
            master_key: master_key.clone(),
        })
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let MasterKey::Aws(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.http.provider.to_string(),
                got: master_key.kind(),
            });
        };
        // KeyId is optional for symmetric keys; sending it makes AWS refuse
        // key material made under another key (IncorrectKeyException).
        self.trust.check(&self.http.provider, master_key, None)?;
        let blob = B64.encode(key_material);
        let body = json_object(&[("CiphertextBlob", &blob), ("KeyId", &mk.key)])
            .map_err(|e| KmsError::protocol(&self.http.provider, e.to_string()))?;
        let mut v = self
            .call(&mk.region, mk.endpoint.as_ref(), "Decrypt", body)
            .await?;
        b64_field(&self.http.provider, &mut v, "Plaintext")
    }
}
