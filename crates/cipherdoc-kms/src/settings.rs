//! Building providers from settings, and dispatching by `masterKey.provider`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

#[cfg(feature = "aws")]
use crate::AwsProvider;
#[cfg(feature = "azure")]
use crate::AzureProvider;
#[cfg(feature = "gcp")]
use crate::GcpProvider;
#[cfg(feature = "kmip")]
use crate::KmipProvider;
use crate::{
    HttpOptions, KeyTrust, KmsCredentials, KmsError, KmsProvider, LocalProvider, MasterKey,
    ProviderName, TlsOptions, WrappedKey,
};

/// Settings of one provider.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Credentials (their kind must match the provider name's kind).
    pub credentials: KmsCredentials,
    /// Timeouts, retries, endpoint overrides.
    pub http: HttpOptions,
    /// CA file and client certificate.
    pub tls: TlsOptions,
    /// The master keys and hosts this provider may use. The default trusts
    /// no key document (see [`KeyTrust`]).
    pub trust: KeyTrust,
}

impl ProviderSettings {
    /// Settings with default transport and TLS options.
    pub fn new(credentials: KmsCredentials) -> Self {
        Self {
            credentials,
            http: HttpOptions::default(),
            tls: TlsOptions::default(),
            trust: KeyTrust::default(),
        }
    }
}

/// Builds one provider.
pub fn build_provider(
    name: &ProviderName,
    settings: &ProviderSettings,
) -> Result<Arc<dyn KmsProvider>, KmsError> {
    settings.credentials.check_kind(name)?;
    let http = &settings.http;
    let provider: Result<Arc<dyn KmsProvider>, KmsError> = match &settings.credentials {
        #[cfg(feature = "aws")]
        KmsCredentials::Aws(c) => Ok(Arc::new(
            AwsProvider::new(name, c.clone(), http, &settings.tls)?
                .with_trust(settings.trust.clone()),
        )),
        #[cfg(feature = "azure")]
        KmsCredentials::Azure(c) => Ok(Arc::new(
            AzureProvider::new(name, c.clone(), http, &settings.tls)?
                .with_trust(settings.trust.clone()),
        )),
        #[cfg(feature = "gcp")]
        KmsCredentials::Gcp(c) => Ok(Arc::new(
            GcpProvider::new(name, c.clone(), http, &settings.tls)?
                .with_trust(settings.trust.clone()),
        )),
        #[cfg(feature = "kmip")]
        KmsCredentials::Kmip(c) => Ok(Arc::new(
            KmipProvider::new(name, c.clone(), http, &settings.tls)?
                .with_trust(settings.trust.clone()),
        )),
        KmsCredentials::Local(c) => {
            // No I/O: no deadline.
            return Ok(Arc::new(LocalProvider::new(name.clone(), c.key.clone())?));
        }
        // A provider this build was compiled without: a typed error
        // naming the feature, not a missing match arm.
        #[allow(unreachable_patterns)]
        other => Err(KmsError::FeatureMissing {
            provider: name.to_string(),
            feature: other.kind().as_str(),
        }),
    };
    let provider = provider?;
    Ok(match http.deadline {
        Some(limit) => Arc::new(Deadline {
            inner: provider,
            limit,
        }),
        None => provider,
    })
}

/// A provider whose every wrap and unwrap is abandoned after `limit`
/// ([`HttpOptions::deadline`]). Dropping the future cancels its request;
/// nothing has been written by then (the caller writes only with the key).
#[derive(Debug)]
struct Deadline {
    inner: Arc<dyn KmsProvider>,
    limit: Duration,
}

impl Deadline {
    fn exceeded(&self, operation: &'static str) -> KmsError {
        KmsError::DeadlineExceeded {
            provider: self.inner.name().to_string(),
            operation,
            timeout_ms: u64::try_from(self.limit.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[async_trait::async_trait]
impl KmsProvider for Deadline {
    fn name(&self) -> &ProviderName {
        self.inner.name()
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.inner.check_master_key(master_key)
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        tokio::time::timeout(self.limit, self.inner.wrap(master_key, dek))
            .await
            .map_err(|_| self.exceeded("wrap"))?
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        tokio::time::timeout(self.limit, self.inner.unwrap(master_key, key_material))
            .await
            .map_err(|_| self.exceeded("unwrap"))?
    }
}

/// All configured providers of a database, by name (`aws`, `aws:prod`, `local:backup`, ...).
#[derive(Debug, Clone, Default)]
pub struct KmsProviders {
    providers: BTreeMap<ProviderName, Arc<dyn KmsProvider>>,
}

impl KmsProviders {
    /// Builds every provider in `settings`.
    pub fn from_settings(
        settings: &BTreeMap<ProviderName, ProviderSettings>,
    ) -> Result<Self, KmsError> {
        let mut providers = BTreeMap::new();
        for (name, s) in settings {
            providers.insert(name.clone(), build_provider(name, s)?);
        }
        Ok(Self { providers })
    }

    /// Adds (or replaces) a provider under its own name.
    pub fn insert(&mut self, provider: Arc<dyn KmsProvider>) {
        self.providers.insert(provider.name().clone(), provider);
    }

    /// The provider with this name.
    pub fn get(&self, name: &ProviderName) -> Option<&Arc<dyn KmsProvider>> {
        self.providers.get(name)
    }

    /// Configured names.
    pub fn names(&self) -> impl Iterator<Item = &ProviderName> {
        self.providers.keys()
    }

    fn for_key(&self, mk: &MasterKey) -> Result<&Arc<dyn KmsProvider>, KmsError> {
        self.get(mk.provider())
            .ok_or_else(|| KmsError::UntrustedMasterKey {
                provider: mk.provider().to_string(),
                host: None,
                reason: format!(
                    "no KMS provider of that name is configured (configured: {})",
                    self.providers
                        .keys()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// Whether the settings let the provider `master_key` names use it,
    /// without contacting anything.
    pub fn check(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.for_key(master_key)?.check_master_key(master_key)
    }

    /// Wraps with the provider named by `master_key.provider`.
    pub async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        self.for_key(master_key)?.wrap(master_key, dek).await
    }

    /// Unwraps with the provider named by `master_key.provider`.
    pub async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.for_key(master_key)?
            .unwrap(master_key, key_material)
            .await
    }

    /// Unwraps under `from` and wraps under `to` (key rotation, `rewrapManyDataKey`).
    pub async fn rewrap(
        &self,
        from: &MasterKey,
        key_material: &[u8],
        to: &MasterKey,
    ) -> Result<WrappedKey, KmsError> {
        // Both ends are checked before either is contacted.
        self.check(from)?;
        self.check(to)?;
        let dek = self.unwrap(from, key_material).await?;
        self.wrap(to, &dek).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AwsCredentials, ProviderKind, Secret};

    fn aws_settings() -> (ProviderName, ProviderSettings) {
        let credentials = KmsCredentials::Aws(Some(AwsCredentials {
            access_key_id: "AKIAEXAMPLE".to_owned(),
            secret_access_key: Secret::new("secret"),
            session_token: None,
        }));
        (
            ProviderName::new(ProviderKind::Aws),
            ProviderSettings::new(credentials),
        )
    }

    /// With the `aws` feature the provider is built (no I/O yet).
    #[cfg(feature = "aws")]
    #[test]
    fn an_aws_provider_is_built_with_the_aws_feature() {
        let (name, settings) = aws_settings();
        let provider = build_provider(&name, &settings).expect("an aws provider");
        assert_eq!(provider.name(), &name);
    }

    /// Without it, a typed error names the provider and the feature
    /// (`cargo test -p cipherdoc-kms --no-default-features --lib`).
    #[cfg(not(feature = "aws"))]
    #[test]
    fn an_aws_provider_is_refused_without_the_aws_feature() {
        let (name, settings) = aws_settings();
        let e = build_provider(&name, &settings).expect_err("no aws in this build");
        assert!(
            matches!(&e, KmsError::FeatureMissing { provider, feature: "aws" } if provider == "aws"),
            "{e:?}"
        );
        assert!(e.to_string().contains("enable the `aws` feature"), "{e}");
    }
}
