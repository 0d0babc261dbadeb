//! The provider abstraction.

use std::fmt::Debug;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::{KmsError, MasterKey, ProviderKind, ProviderName};

/// The result of wrapping a data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Opaque `keyMaterial` for the key document (BSON binary subtype 0).
    pub key_material: Vec<u8>,
    /// The `masterKey` to store: the one given, except that a KMIP key
    /// without `keyId` comes back with the id of the object the server created.
    pub master_key: MasterKey,
}

/// A KMS that wraps and unwraps data keys.
///
/// Object-safe: providers live behind `Arc<dyn KmsProvider>`.
#[async_trait]
pub trait KmsProvider: Send + Sync + Debug {
    /// The provider's name (`aws`, `aws:prod`, ...).
    fn name(&self) -> &ProviderName;

    /// Whether the settings let this provider use `master_key` (see
    /// [`crate::KeyTrust`]); checked by `wrap` and `unwrap` too, and by
    /// callers that must refuse a whole batch before writing anything.
    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError>;

    /// Wraps (encrypts) a data key with the master key.
    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError>;

    /// Unwraps `keyMaterial` made by [`KmsProvider::wrap`] with the same master key.
    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError>;
}

pub(crate) fn expect_kind(
    provider: &ProviderName,
    mk: &MasterKey,
    kind: ProviderKind,
) -> Result<(), KmsError> {
    if mk.kind() == kind {
        Ok(())
    } else {
        Err(KmsError::WrongMasterKeyKind {
            provider: provider.to_string(),
            got: mk.kind(),
        })
    }
}
