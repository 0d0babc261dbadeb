//! Data keys in use: found in the key vault, unwrapped through the KMS,
//! cached with their key-level tokens.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bson::DateTime;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyDocument, KeyId, LocalMasterKey, OsRandom};
use cipherdoc_kms::{DataKeyCache, KmsProviders, LocalWrap, MasterKey as KmsMasterKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key_vault::KeyVault;

/// A data key ready for use: the unwrapped key and its key-level tokens,
/// derived once per key (never per value). Zeroized when the last reference
/// is dropped.
pub struct LoadedKey {
    /// The key's id.
    pub id: KeyId,
    /// The 96-byte data key.
    pub key: DataKey,
    /// Its key-level tokens (for indexed fields).
    pub tokens: IndexKeyTokens,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoadedKey({})", self.id)
    }
}

impl LoadedKey {
    fn new(id: KeyId, key: DataKey) -> Self {
        let tokens = IndexKeyTokens::new(id, &key);
        Self { id, key, tokens }
    }
}

/// The local provider's wrapping: FLE1 AEAD under the 96-byte master key
/// (qe-protocol.md §1.2), also used by non-delegated KMIP.
#[derive(Debug, Default, Clone, Copy)]
pub struct CryptoLocalWrap;

impl LocalWrap for CryptoLocalWrap {
    fn wrap(&self, kek: &[u8], dek: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let kek = LocalMasterKey::from_slice(kek).map_err(|e| e.to_string())?;
        let dek = DataKey::from_slice(dek).map_err(|e| e.to_string())?;
        cipherdoc_crypto::wrap_local(&kek, &dek, &mut OsRandom).map_err(|e| e.to_string())
    }

    fn unwrap(
        &self,
        kek: &[u8],
        key_material: &[u8],
    ) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
        let kek = LocalMasterKey::from_slice(kek).map_err(|e| e.to_string())?;
        let dek = cipherdoc_crypto::unwrap_local(&kek, key_material).map_err(|e| e.to_string())?;
        Ok(Zeroizing::new(dek.as_bytes().to_vec()))
    }
}

/// Finds, unwraps, caches and creates data keys.
pub struct KeyStore {
    vault: Arc<dyn KeyVault>,
    kms: Arc<KmsProviders>,
    cache: DataKeyCache<Arc<LoadedKey>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("vault", &self.vault)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A key store over `vault`, unwrapping through `kms`, caching unwrapped
    /// keys for `ttl` (zero disables the cache).
    pub fn new(vault: Arc<dyn KeyVault>, kms: Arc<KmsProviders>, ttl: Duration) -> Self {
        Self {
            vault,
            kms,
            cache: DataKeyCache::new(ttl, cipherdoc_kms::DEFAULT_MAX_ENTRIES),
        }
    }

    /// The key vault.
    pub fn vault(&self) -> &Arc<dyn KeyVault> {
        &self.vault
    }

    /// The KMS providers.
    pub fn kms(&self) -> &Arc<KmsProviders> {
        &self.kms
    }

    /// The data key with this id, unwrapped.
    pub async fn key(&self, id: KeyId) -> Result<Arc<LoadedKey>> {
        if let Some(k) = self.cache.get(id.as_bytes()) {
            return Ok(k);
        }
        let doc = self.vault.find_by_id(uuid_of(id)).await?.ok_or_else(|| {
            Error::KeyNotFound(format!("no data key with id {id} in the key vault"))
        })?;
        self.load(&doc).await
    }

    /// The data key that has this keyAltName, unwrapped.
    pub async fn key_by_alt_name(&self, name: &str) -> Result<Arc<LoadedKey>> {
        let doc = self.vault.find_by_alt_name(name).await?.ok_or_else(|| {
            Error::KeyNotFound(format!(
                "no data key with keyAltName '{name}' in the key vault"
            ))
        })?;
        self.load(&doc).await
    }

    async fn load(&self, doc: &bson::Document) -> Result<Arc<LoadedKey>> {
        let parsed = KeyDocument::from_document(doc)?;
        if let Some(k) = self.cache.get(parsed.id.as_bytes()) {
            return Ok(k);
        }
        let master = KmsMasterKey::from_document(&parsed.master_key.to_document())?;
        let raw = self.kms.unwrap(&master, &parsed.key_material).await?;
        let key = Arc::new(LoadedKey::new(parsed.id, DataKey::from_slice(&raw)?));
        self.cache.insert(*parsed.id.as_bytes(), Arc::clone(&key));
        Ok(key)
    }

    /// Creates a data key wrapped with `master_key` and stores its document.
    pub async fn create_data_key(
        &self,
        master_key: &KmsMasterKey,
        alt_names: Vec<String>,
    ) -> Result<KeyId> {
        let mut rng = OsRandom;
        let dek = DataKey::generate(&mut rng)?;
        let id = KeyId::generate(&mut rng)?;
        let wrapped = self.kms.wrap(master_key, dek.as_bytes()).await?;
        let crypto_master =
            cipherdoc_crypto::MasterKey::from_document(&wrapped.master_key.to_document())?;
        let doc = KeyDocument::new(
            id,
            alt_names,
            wrapped.key_material,
            crypto_master,
            DateTime::now(),
        );
        self.vault.insert(doc.to_document()).await?;
        self.cache
            .insert(*id.as_bytes(), Arc::new(LoadedKey::new(id, dek)));
        Ok(id)
    }

    /// Deletes a data key from the vault and the cache; `false` when the
    /// vault had none. Only for keys nothing was encrypted with (a refused
    /// migration's): data under a deleted key is lost.
    pub async fn delete_data_key(&self, id: KeyId) -> Result<bool> {
        self.cache.remove(id.as_bytes());
        Ok(self.vault.delete(uuid_of(id)).await?)
    }
}

impl KeyStore {
    /// Decrypts one encrypted blob (1, 2, 11, 14, 15, 16) with the keys in
    /// `loaded`, fetching from the vault any key the blob asks for on the
    /// way (a stored indexed value names its user key only inside its
    /// server-encrypted part) and keeping it in `loaded` for later blobs.
    /// `Ok(None)` for blobs that carry no ciphertext (placeholders, find
    /// payloads).
    pub async fn decrypt_blob(
        &self,
        blob: &[u8],
        loaded: &mut Vec<Arc<LoadedKey>>,
    ) -> Result<Option<bson::Bson>> {
        // At most three keys: index key, user key, and one retry slack.
        for _ in 0..4 {
            match cipherdoc_crypto::client::decrypt_blob(blob, &Loaded(loaded)) {
                Err(cipherdoc_crypto::Error::MissingKey(id)) => loaded.push(self.key(id).await?),
                other => return Ok(other?),
            }
        }
        Err(Error::Encryption(
            "the blob refers to more keys than a value can".to_owned(),
        ))
    }
}

struct Loaded<'a>(&'a [Arc<LoadedKey>]);

impl cipherdoc_crypto::client::KeyLookup for Loaded<'_> {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        self.0.iter().find(|k| k.id == *id).map(|k| &k.key)
    }
}

/// A crypto key id as the vault's UUID.
pub(crate) fn uuid_of(id: KeyId) -> bson::Uuid {
    bson::Uuid::from_bytes(*id.as_bytes())
}
