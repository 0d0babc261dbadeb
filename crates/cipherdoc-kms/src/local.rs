//! The `local` provider: a 96-byte KEK held by the application; wrapping is
//! cipherdoc-crypto's FLE1 AEAD ([`cipherdoc_crypto::wrap_local`]).

use async_trait::async_trait;
use cipherdoc_crypto::{DataKey, LocalMasterKey, OsRandom};
use zeroize::Zeroizing;

use crate::provider::expect_kind;
use crate::{
    KmsError, KmsProvider, LocalKeyOperation, MasterKey, ProviderKind, ProviderName, WrappedKey,
};

/// The `local` / `local:<name>` provider.
#[derive(Debug)]
pub struct LocalProvider {
    name: ProviderName,
    kek: LocalMasterKey,
}

impl LocalProvider {
    /// A local provider wrapping with `kek`.
    pub fn new(name: ProviderName, kek: LocalMasterKey) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Local {
            return Err(KmsError::config(&name, "not a local provider name"));
        }
        Ok(Self { name, kek })
    }
}

/// Refuses a data key that [`wrap_with`] would refuse, without wrapping.
#[cfg(feature = "kmip")]
pub(crate) fn check_data_key(provider: &ProviderName, dek: &[u8]) -> Result<(), KmsError> {
    DataKey::from_slice(dek)
        .map(drop)
        .map_err(|source| KmsError::LocalKey {
            provider: provider.to_string(),
            operation: LocalKeyOperation::Wrap,
            source,
        })
}

/// Wraps `dek` under a 96-byte key: the local provider's wrap, also used
/// by KMIP without `delegated` with the SecretData it fetched.
pub(crate) fn wrap_with(
    provider: &ProviderName,
    kek: &LocalMasterKey,
    dek: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let failed = |source| KmsError::LocalKey {
        provider: provider.to_string(),
        operation: LocalKeyOperation::Wrap,
        source,
    };
    let dek = DataKey::from_slice(dek).map_err(failed)?;
    cipherdoc_crypto::wrap_local(kek, &dek, &mut OsRandom).map_err(failed)
}

/// Verifies and unwraps `key_material` made by [`wrap_with`] (or by
/// libmongocrypt) under the same key.
pub(crate) fn unwrap_with(
    provider: &ProviderName,
    kek: &LocalMasterKey,
    key_material: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let dek =
        cipherdoc_crypto::unwrap_local(kek, key_material).map_err(|source| KmsError::LocalKey {
            provider: provider.to_string(),
            operation: LocalKeyOperation::Unwrap,
            source,
        })?;
    Ok(Zeroizing::new(dek.as_bytes().to_vec()))
}

#[async_trait]
impl KmsProvider for LocalProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        expect_kind(&self.name, master_key, ProviderKind::Local)
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        expect_kind(&self.name, master_key, ProviderKind::Local)?;
        Ok(WrappedKey {
            key_material: wrap_with(&self.name, &self.kek, dek)?,
            master_key: master_key.clone(),
        })
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        expect_kind(&self.name, master_key, ProviderKind::Local)?;
        unwrap_with(&self.name, &self.kek, key_material)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn provider(byte: u8) -> LocalProvider {
        LocalProvider::new(
            ProviderName::new(ProviderKind::Local),
            LocalMasterKey::from_slice(&[byte; 96]).unwrap(),
        )
        .unwrap()
    }

    fn local_master_key() -> MasterKey {
        MasterKey::from_document(&bson::doc! {"provider": "local"}).unwrap()
    }

    #[tokio::test]
    async fn a_wrapped_key_unwraps_with_the_same_key() {
        let mk = local_master_key();
        let w = provider(1).wrap(&mk, &[9u8; 96]).await.unwrap();
        assert_eq!(w.key_material.len(), 160);
        let dek = provider(1).unwrap(&mk, &w.key_material).await.unwrap();
        assert_eq!(&dek[..], &[9u8; 96][..]);
    }

    #[tokio::test]
    async fn a_wrong_local_key_is_a_typed_authentication_failure() {
        let mk = local_master_key();
        let w = provider(1).wrap(&mk, &[9u8; 96]).await.unwrap();
        let e = provider(2)
            .unwrap(&mk, &w.key_material)
            .await
            .expect_err("another local key");
        assert!(
            matches!(
                &e,
                KmsError::LocalKey {
                    provider,
                    operation: LocalKeyOperation::Unwrap,
                    source: cipherdoc_crypto::Error::AuthenticationFailed,
                } if provider == "local"
            ),
            "{e:?}"
        );
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
        assert!(e.to_string().contains("the wrong key"), "{e}");
    }

    #[tokio::test]
    async fn a_data_key_of_the_wrong_length_is_refused_before_wrapping() {
        let e = provider(1)
            .wrap(&local_master_key(), &[9u8; 32])
            .await
            .expect_err("32 bytes");
        assert!(
            matches!(
                &e,
                KmsError::LocalKey {
                    operation: LocalKeyOperation::Wrap,
                    source: cipherdoc_crypto::Error::KeyLength { actual: 32, .. },
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
