//! The `local` provider: a 96-byte KEK held by the application, wrapping
//! done by the [`LocalWrap`] hook (cipherdoc-crypto's FLE1 AEAD).

use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::provider::expect_kind;
use crate::secret::SecretBytes;
use crate::{KmsError, KmsProvider, LocalWrap, MasterKey, ProviderKind, ProviderName, WrappedKey};

/// The `local` / `local:<name>` provider.
#[derive(Debug)]
pub struct LocalProvider {
    name: ProviderName,
    kek: SecretBytes,
    wrap: Arc<dyn LocalWrap>,
}

impl LocalProvider {
    /// A local provider; `kek` must be 96 bytes.
    pub fn new(
        name: ProviderName,
        kek: SecretBytes,
        wrap: Arc<dyn LocalWrap>,
    ) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Local {
            return Err(KmsError::config(&name, "not a local provider name"));
        }
        if kek.expose().len() != 96 {
            return Err(KmsError::config(
                &name,
                format!("local key must be 96 bytes, got {}", kek.expose().len()),
            ));
        }
        Ok(Self { name, kek, wrap })
    }
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
        let key_material =
            self.wrap
                .wrap(self.kek.expose(), dek)
                .map_err(|reason| KmsError::LocalWrap {
                    provider: self.name.to_string(),
                    reason,
                })?;
        Ok(WrappedKey {
            key_material,
            master_key: master_key.clone(),
        })
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        expect_kind(&self.name, master_key, ProviderKind::Local)?;
        self.wrap
            .unwrap(self.kek.expose(), key_material)
            .map_err(|reason| KmsError::LocalWrap {
                provider: self.name.to_string(),
                reason,
            })
    }
}
