//! Data keys in use: found in the key vault, unwrapped through the KMS,
//! cached with their key-level tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bson::DateTime;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyCheckValue, KeyDocument, KeyId, OsRandom};
use cipherdoc_kms::{DataKeyCache, KmsError, KmsProviders, MasterKey as KmsMasterKey};

use crate::error::{Error, KeyRef, Result};
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

/// The format tag of a key check values file.
const KCV_FORMAT: &str = "cipherdoc-key-check-values/1";

/// Key check values by key id: the sidecar of a pinned encrypted fields map.
///
/// A file of its own rather than a field inside the map, so that the pinned
/// map stays exactly what Django MongoDB Backend and pymongo take as
/// `encrypted_fields_map` (drivers hand it to the server, whose parser of
/// `encryptedFields` need not tolerate fields it does not know). JSON:
///
/// ```json
/// {"format": "cipherdoc-key-check-values/1",
///  "keys": {"<key id UUID>": "<32 hex digits>", ...}}
/// ```
///
/// See [`cipherdoc_crypto::KeyCheckValue`] for the definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCheckValues(BTreeMap<KeyId, KeyCheckValue>);

impl KeyCheckValues {
    /// The value pinned for `id`.
    pub fn get(&self, id: &KeyId) -> Option<&KeyCheckValue> {
        self.0.get(id)
    }

    /// Pins `value` for `id`.
    pub fn insert(&mut self, id: KeyId, value: KeyCheckValue) {
        self.0.insert(id, value);
    }

    /// How many keys are pinned.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The file's text (pretty JSON, keys in id order).
    pub fn to_json(&self) -> String {
        let keys: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(id, v)| (id.to_string(), serde_json::Value::String(v.to_hex())))
            .collect();
        let v = serde_json::json!({"format": KCV_FORMAT, "keys": keys});
        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
    }

    /// Parses the file's text.
    pub fn from_json(text: &str) -> std::result::Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("format").and_then(serde_json::Value::as_str) != Some(KCV_FORMAT) {
            return Err(format!("\"format\" must be \"{KCV_FORMAT}\""));
        }
        let Some(keys) = v.get("keys").and_then(serde_json::Value::as_object) else {
            return Err("\"keys\" must be an object of key id to key check value".into());
        };
        let mut out = Self::default();
        for (id, kcv) in keys {
            let key_id: KeyId = id
                .parse()
                .map_err(|e| format!("\"keys\": {id:?} is not a key id: {e}"))?;
            let value = kcv
                .as_str()
                .ok_or_else(|| format!("\"keys\".{id} must be a string"))
                .and_then(|s| {
                    KeyCheckValue::from_hex(s).map_err(|e| format!("\"keys\".{id}: {e}"))
                })?;
            out.insert(key_id, value);
        }
        Ok(out)
    }

    /// Reads the file named by the setting `setting`.
    pub fn read(path: &std::path::Path, setting: &str) -> Result<Self> {
        let bad = |problem: String| {
            Error::Settings(crate::settings::SettingsError::Invalid {
                path: setting.to_owned(),
                problem,
            })
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text).map_err(|p| bad(format!("{}: {p}", path.display())))
    }
}

/// Finds, unwraps, caches and creates data keys.
pub struct KeyStore {
    vault: Arc<dyn KeyVault>,
    kms: Arc<KmsProviders>,
    cache: DataKeyCache<Arc<LoadedKey>>,
    /// Pinned key check values and the setting that named them.
    check_values: Option<(KeyCheckValues, String)>,
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
            check_values: None,
        }
    }

    /// Verifies every data key it loads against `values` (from the setting
    /// `setting`): a key whose check value differs is refused.
    #[must_use]
    pub fn with_key_check_values(mut self, values: KeyCheckValues, setting: String) -> Self {
        self.check_values = Some((values, setting));
        self
    }

    /// The key check values of `ids` (loading each key), for pinning.
    pub async fn key_check_values(
        &self,
        ids: impl IntoIterator<Item = KeyId>,
    ) -> Result<KeyCheckValues> {
        let mut out = KeyCheckValues::default();
        for id in ids {
            let k = self.key(id).await?;
            out.insert(id, k.key.check_value(&id));
        }
        Ok(out)
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
        let doc = self
            .vault
            .find_by_id(uuid_of(id))
            .await?
            .ok_or_else(|| Error::KeyNotFound {
                key: KeyRef::Id(id.to_string()),
                field: None,
                namespace: None,
                database: None,
            })?;
        self.load(&doc).await
    }

    /// The data key that has this keyAltName, unwrapped.
    pub async fn key_by_alt_name(&self, name: &str) -> Result<Arc<LoadedKey>> {
        let doc = self
            .vault
            .find_by_alt_name(name)
            .await?
            .ok_or_else(|| Error::KeyNotFound {
                key: KeyRef::AltName(name.to_owned()),
                field: None,
                namespace: None,
                database: None,
            })?;
        self.load(&doc).await
    }

    /// Parses a key document and checks, without contacting anything, that
    /// the settings let its `masterKey` be used: a key document is written
    /// by whoever can write to the database, so its provider, key and
    /// endpoint are obeyed only when the settings configure or allow them.
    pub fn check_document(&self, doc: &bson::Document) -> Result<(KeyDocument, KmsMasterKey)> {
        let parsed = KeyDocument::from_document(doc)?;
        let master =
            KmsMasterKey::from_document(&parsed.master_key).map_err(|e| untrusted(parsed.id, e))?;
        self.kms
            .check(&master)
            .map_err(|e| untrusted(parsed.id, e))?;
        Ok((parsed, master))
    }

    async fn load(&self, doc: &bson::Document) -> Result<Arc<LoadedKey>> {
        let parsed = KeyDocument::from_document(doc)?;
        if let Some(k) = self.cache.get(parsed.id.as_bytes()) {
            return Ok(k);
        }
        let (parsed, master) = self.check_document(doc)?;
        let raw = self
            .kms
            .unwrap(&master, &parsed.key_material)
            .await
            .map_err(|e| match e {
                e @ (KmsError::UntrustedMasterKey { .. } | KmsError::HostNotAllowed { .. }) => {
                    untrusted(parsed.id, e)
                }
                e => Error::Kms(e),
            })?;
        let dek = DataKey::from_slice(&raw)?;
        if let Some((values, setting)) = &self.check_values
            && let Some(want) = values.get(&parsed.id)
            && dek.check_value(&parsed.id) != *want
        {
            return Err(Error::KeyCheckMismatch {
                key_id: parsed.id.to_string(),
                setting: setting.clone(),
            });
        }
        let key = Arc::new(LoadedKey::new(parsed.id, dek));
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
        let doc = KeyDocument::new(
            id,
            alt_names,
            wrapped.key_material,
            wrapped.master_key.to_document(),
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
        // Each round loads a key the blob asks for and `loaded` lacks; a
        // blob names at most two (the index key, and inside it the user
        // key), so this ends. A key asked for again although loaded is the
        // crypto crate's own error, returned as it is.
        loop {
            match cipherdoc_crypto::client::decrypt_blob(blob, &Loaded(loaded)) {
                Err(cipherdoc_crypto::Error::MissingKey(id))
                    if !loaded.iter().any(|k| k.id == id) =>
                {
                    loaded.push(self.key(id).await?);
                }
                other => return Ok(other?),
            }
        }
    }
}

struct Loaded<'a>(&'a [Arc<LoadedKey>]);

impl cipherdoc_crypto::client::KeyLookup for Loaded<'_> {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        self.0.iter().find(|k| k.id == *id).map(|k| &k.key)
    }
}

fn untrusted(id: KeyId, source: KmsError) -> Error {
    Error::UntrustedKey {
        key_id: id.to_string(),
        source,
    }
}

/// A crypto key id as the vault's UUID.
pub(crate) fn uuid_of(id: KeyId) -> bson::Uuid {
    bson::Uuid::from_bytes(*id.as_bytes())
}
