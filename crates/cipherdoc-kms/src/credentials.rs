//! Credentials per provider kind, with the field names of MongoDB's
//! `kmsProviders` option.

use crate::secret::{Secret, SecretBytes};
use crate::{Endpoint, KmsError, ProviderKind, ProviderName};

/// AWS credentials (`accessKeyId`, `secretAccessKey`, `sessionToken?`).
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    /// Access key id (not secret; it appears in the `Authorization` header).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token for temporary credentials.
    pub session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
    /// `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Result<Self, KmsError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(KmsError::config(
                &"aws",
                "no credentials configured and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not both set",
            ));
        };
        Ok(Self {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
        })
    }
}

/// Azure credentials: OAuth2 client credentials, or a ready access token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AzureCredentials {
    /// `tenantId`, `clientId`, `clientSecret`, `identityPlatformEndpoint?`.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Defaults to `login.microsoftonline.com`.
        identity_platform_endpoint: Option<Endpoint>,
    },
    /// `accessToken`: used as is, never refreshed.
    AccessToken(Secret),
}

/// GCP credentials: a service account, or a ready access token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GcpCredentials {
    /// `email`, `privateKey` (RSA PKCS#8, DER bytes, PEM text, or base64 of
    /// DER as MongoDB drivers take it), `endpoint?` (the OAuth host, default
    /// `oauth2.googleapis.com`).
    ServiceAccount {
        /// Service-account e-mail (the JWT `iss`).
        email: String,
        /// Private key.
        private_key: SecretBytes,
        /// Token endpoint host.
        endpoint: Option<Endpoint>,
    },
    /// `accessToken`: used as is, never refreshed.
    AccessToken(Secret),
}

/// KMIP settings: the server endpoint; the client certificate is given in
/// [`crate::TlsOptions`].
#[derive(Debug, Clone)]
pub struct KmipCredentials {
    /// `host[:port]`, port 5696 by default.
    pub endpoint: Endpoint,
}

/// The 96-byte local key-encryption key.
#[derive(Debug, Clone)]
pub struct LocalCredentials {
    /// The key (zeroized on drop, redacted in `Debug`).
    pub key: cipherdoc_crypto::LocalMasterKey,
}

/// Credentials for one provider.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KmsCredentials {
    /// AWS; `None` reads the standard environment variables when the provider is built.
    Aws(Option<AwsCredentials>),
    /// Azure.
    Azure(AzureCredentials),
    /// GCP.
    Gcp(GcpCredentials),
    /// KMIP.
    Kmip(KmipCredentials),
    /// Local.
    Local(LocalCredentials),
}

impl KmsCredentials {
    /// Which provider kind these credentials are for.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Aws(_) => ProviderKind::Aws,
            Self::Azure(_) => ProviderKind::Azure,
            Self::Gcp(_) => ProviderKind::Gcp,
            Self::Kmip(_) => ProviderKind::Kmip,
            Self::Local(_) => ProviderKind::Local,
        }
    }

    pub(crate) fn check_kind(&self, name: &ProviderName) -> Result<(), KmsError> {
        if self.kind() == name.kind() {
            Ok(())
        } else {
            Err(KmsError::config(
                name,
                format!("credentials are for provider kind {}", self.kind()),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = KmsCredentials::Azure(AzureCredentials::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("hunter2-very-secret"),
            identity_platform_endpoint: None,
        });
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("Secret(..)"));
        let g = GcpCredentials::ServiceAccount {
            email: "e".into(),
            private_key: SecretBytes::new(b"PRIVATEKEYBYTES".to_vec()),
            endpoint: None,
        };
        assert!(!format!("{g:?}").contains("PRIVATEKEY"));
    }
}
