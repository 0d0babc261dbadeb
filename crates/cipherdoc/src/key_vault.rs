//! Where data-key documents live: the key vault.
//!
//! A key vault stores key documents (qe-protocol.md §1.3) and finds them by
//! `_id` or by `keyAltNames`. Implementations: [`MemoryKeyVault`] (tests),
//! [`JsonFileKeyVault`] (an array of key documents in canonical extended JSON,
//! as `mongoexport --jsonArray` writes them) and, in the engine layer, a key
//! vault collection inside a database.
//!
//! The vault checks only what makes it a vault (an `_id` UUID, unique ids and
//! unique alt names); the strict parse of a key document is the crypto
//! layer's job, done when the key is used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bson::spec::BinarySubtype;
use bson::{Bson, Document, Uuid};

/// What can go wrong in a key vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyVaultError {
    /// Another key already has this id.
    #[error("a data key with id {0} already exists in the key vault")]
    DuplicateId(Uuid),
    /// Another key already has this alt name.
    #[error(
        "a data key with keyAltName '{0}' already exists in the key vault; choose another name or use that key"
    )]
    DuplicateAltName(String),
    /// No key has this id.
    #[error("no data key with id {0} in the key vault")]
    NotFound(Uuid),
    /// A document without a proper `_id`.
    #[error("invalid key document: {0}")]
    InvalidDocument(String),
    /// The vault's storage failed.
    #[error("key vault {location}: {reason}")]
    Storage {
        /// The file or namespace of the vault.
        location: String,
        /// What failed.
        reason: String,
    },
}

/// A store of data-key documents.
#[async_trait]
pub trait KeyVault: Send + Sync + std::fmt::Debug {
    /// The key document with this `_id`.
    async fn find_by_id(&self, id: Uuid) -> Result<Option<Document>, KeyVaultError>;
    /// The key document that has this name among its `keyAltNames`.
    async fn find_by_alt_name(&self, name: &str) -> Result<Option<Document>, KeyVaultError>;
    /// Adds a key document; its `_id` and alt names must be new.
    async fn insert(&self, doc: Document) -> Result<(), KeyVaultError>;
    /// Replaces the key document with the same `_id` (key rotation).
    async fn replace(&self, doc: Document) -> Result<(), KeyVaultError>;
    /// Every key document, in insertion order.
    async fn list(&self) -> Result<Vec<Document>, KeyVaultError>;
    /// Removes the key document with this `_id`; `false` when there was
    /// none. Used to take back the keys of a migration that was refused
    /// part way (a key nothing was encrypted with yet).
    async fn delete(&self, id: Uuid) -> Result<bool, KeyVaultError>;
}

/// The `_id` of a key document as a UUID.
pub fn key_id_of(doc: &Document) -> Result<Uuid, KeyVaultError> {
    match doc.get("_id") {
        Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {
            let mut id = [0u8; 16];
            id.copy_from_slice(&b.bytes);
            Ok(Uuid::from_bytes(id))
        }
        _ => Err(KeyVaultError::InvalidDocument(
            "`_id` must be a UUID (BinData subtype 4)".to_owned(),
        )),
    }
}

/// The `keyAltNames` of a key document (empty when absent).
pub fn alt_names_of(doc: &Document) -> Result<Vec<String>, KeyVaultError> {
    match doc.get("keyAltNames") {
        None => Ok(Vec::new()),
        Some(Bson::Array(a)) => a
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                KeyVaultError::InvalidDocument("`keyAltNames` must hold strings".to_owned())
            }),
        Some(_) => Err(KeyVaultError::InvalidDocument(
            "`keyAltNames` must be an array".to_owned(),
        )),
    }
}

/// Checks that `doc` may join `docs` (new id, new alt names).
fn check_insert(docs: &[Document], doc: &Document) -> Result<(), KeyVaultError> {
    let id = key_id_of(doc)?;
    let names = alt_names_of(doc)?;
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(KeyVaultError::DuplicateAltName(n.clone()));
        }
    }
    for d in docs {
        if key_id_of(d)? == id {
            return Err(KeyVaultError::DuplicateId(id));
        }
        if let Some(n) = alt_names_of(d)?.into_iter().find(|n| names.contains(n)) {
            return Err(KeyVaultError::DuplicateAltName(n));
        }
    }
    Ok(())
}

fn find_id(docs: &[Document], id: Uuid) -> Result<Option<usize>, KeyVaultError> {
    for (i, d) in docs.iter().enumerate() {
        if key_id_of(d)? == id {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn find_alt(docs: &[Document], name: &str) -> Result<Option<Document>, KeyVaultError> {
    for d in docs {
        if alt_names_of(d)?.iter().any(|n| n == name) {
            return Ok(Some(d.clone()));
        }
    }
    Ok(None)
}

fn replace_in(docs: &mut [Document], doc: Document) -> Result<(), KeyVaultError> {
    let id = key_id_of(&doc)?;
    let i = find_id(docs, id)?.ok_or(KeyVaultError::NotFound(id))?;
    let names = alt_names_of(&doc)?;
    for (j, d) in docs.iter().enumerate() {
        if j != i
            && let Some(n) = alt_names_of(d)?.into_iter().find(|n| names.contains(n))
        {
            return Err(KeyVaultError::DuplicateAltName(n));
        }
    }
    docs[i] = doc;
    Ok(())
}

/// A key vault in memory, for tests and short-lived tools.
#[derive(Debug, Default)]
pub struct MemoryKeyVault {
    docs: Mutex<Vec<Document>>,
}

impl MemoryKeyVault {
    /// An empty vault.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Document>> {
        // A poisoned lock only means another thread panicked mid-operation;
        // every operation below leaves the Vec consistent, so carry on.
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyVault for MemoryKeyVault {
    async fn find_by_id(&self, id: Uuid) -> Result<Option<Document>, KeyVaultError> {
        let docs = self.lock();
        Ok(find_id(&docs, id)?.map(|i| docs[i].clone()))
    }

    async fn find_by_alt_name(&self, name: &str) -> Result<Option<Document>, KeyVaultError> {
        find_alt(&self.lock(), name)
    }

    async fn insert(&self, doc: Document) -> Result<(), KeyVaultError> {
        let mut docs = self.lock();
        check_insert(&docs, &doc)?;
        docs.push(doc);
        Ok(())
    }

    async fn replace(&self, doc: Document) -> Result<(), KeyVaultError> {
        replace_in(&mut self.lock(), doc)
    }

    async fn list(&self) -> Result<Vec<Document>, KeyVaultError> {
        Ok(self.lock().clone())
    }

    async fn delete(&self, id: Uuid) -> Result<bool, KeyVaultError> {
        let mut docs = self.lock();
        let Some(i) = find_id(&docs, id)? else {
            return Ok(false);
        };
        docs.remove(i);
        Ok(true)
    }
}

/// Parses the text of a JSON key vault file: an array of key documents in
/// extended JSON (empty text is an empty vault). Errors name the element,
/// never its content. The file is read before any key is checked, so this
/// is a parser of untrusted bytes (fuzzed by `cipherdoc-fuzz`).
pub fn parse_json_key_vault(text: &str) -> Result<Vec<Document>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let serde_json::Value::Array(items) = json else {
        return Err("expected a JSON array of key documents".to_owned());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match Bson::try_from(item) {
            Ok(Bson::Document(d)) => Ok(d),
            Ok(_) => Err(format!("element {i} is not a document")),
            Err(e) => Err(format!("element {i} is not extended JSON: {e}")),
        })
        .collect()
}

/// A key vault kept in a JSON file: an array of key documents in canonical
/// extended JSON (the format of `mongoexport --jsonArray`). Writes go to a
/// temporary file that is renamed over the old one, so a crash never leaves
/// half a vault; the file is created with mode 0600.
#[derive(Debug)]
pub struct JsonFileKeyVault {
    path: PathBuf,
    lock: Mutex<()>,
}

impl JsonFileKeyVault {
    /// A vault at `path`; the file is created on the first insert.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The vault's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn storage_error(&self, reason: impl std::fmt::Display) -> KeyVaultError {
        KeyVaultError::Storage {
            location: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn read(&self) -> Result<Vec<Document>, KeyVaultError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.storage_error(e)),
        };
        parse_json_key_vault(&text).map_err(|e| self.storage_error(e))
    }

    fn write(&self, docs: &[Document]) -> Result<(), KeyVaultError> {
        let array: Vec<serde_json::Value> = docs
            .iter()
            .map(|d| Bson::Document(d.clone()).into_canonical_extjson())
            .collect();
        let mut text = serde_json::to_string_pretty(&array).map_err(|e| self.storage_error(e))?;
        text.push('\n');
        let tmp = self.path.with_extension("json.tmp");
        write_private(&tmp, text.as_bytes()).map_err(|e| self.storage_error(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.storage_error(e))
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) use crate::private_file::write_private;

#[async_trait]
impl KeyVault for JsonFileKeyVault {
    async fn find_by_id(&self, id: Uuid) -> Result<Option<Document>, KeyVaultError> {
        let _g = self.guard();
        let docs = self.read()?;
        Ok(find_id(&docs, id)?.map(|i| docs[i].clone()))
    }

    async fn find_by_alt_name(&self, name: &str) -> Result<Option<Document>, KeyVaultError> {
        let _g = self.guard();
        find_alt(&self.read()?, name)
    }

    async fn insert(&self, doc: Document) -> Result<(), KeyVaultError> {
        let _g = self.guard();
        let mut docs = self.read()?;
        check_insert(&docs, &doc)?;
        docs.push(doc);
        self.write(&docs)
    }

    async fn replace(&self, doc: Document) -> Result<(), KeyVaultError> {
        let _g = self.guard();
        let mut docs = self.read()?;
        replace_in(&mut docs, doc)?;
        self.write(&docs)
    }

    async fn list(&self) -> Result<Vec<Document>, KeyVaultError> {
        let _g = self.guard();
        self.read()
    }

    async fn delete(&self, id: Uuid) -> Result<bool, KeyVaultError> {
        let _g = self.guard();
        let mut docs = self.read()?;
        let Some(i) = find_id(&docs, id)? else {
            return Ok(false);
        };
        docs.remove(i);
        self.write(&docs)?;
        Ok(true)
    }
}

/// The key vault as a collection inside a database (e.g.
/// `encrypted_db.__keyVault`), with a unique index on `keyAltNames` that
/// ignores keys without one (see `cipherdoc_engine::key_vault`).
#[derive(Debug, Clone)]
pub struct EngineKeyVault {
    engine: std::sync::Arc<dyn cipherdoc_engine::Engine>,
    collection: String,
}

impl EngineKeyVault {
    /// Opens (creating when missing) the key vault collection `collection`.
    pub async fn open(
        engine: std::sync::Arc<dyn cipherdoc_engine::Engine>,
        collection: impl Into<String>,
    ) -> Result<Self, KeyVaultError> {
        let collection = collection.into();
        let vault = Self { engine, collection };
        cipherdoc_engine::key_vault::ensure_key_vault(vault.engine.as_ref(), &vault.collection)
            .await
            .map_err(|e| vault.storage_error(e))?;
        Ok(vault)
    }

    fn storage_error(&self, e: impl std::fmt::Display) -> KeyVaultError {
        KeyVaultError::Storage {
            location: self.collection.clone(),
            reason: e.to_string(),
        }
    }

    fn map_engine(&self, e: cipherdoc_engine::EngineError, doc: &Document) -> KeyVaultError {
        match e {
            cipherdoc_engine::EngineError::DuplicateKey { ref index, .. } => {
                if index.contains("keyAltNames") {
                    let names = alt_names_of(doc).unwrap_or_default();
                    KeyVaultError::DuplicateAltName(names.join(", "))
                } else {
                    match key_id_of(doc) {
                        Ok(id) => KeyVaultError::DuplicateId(id),
                        Err(err) => err,
                    }
                }
            }
            other => self.storage_error(other),
        }
    }

    async fn find_one(
        &self,
        filter: cipherdoc_engine::Filter,
    ) -> Result<Option<Document>, KeyVaultError> {
        self.engine
            .find_one(&self.collection, &filter)
            .await
            .map_err(|e| self.storage_error(e))
    }
}

fn uuid_bson(id: Uuid) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: BinarySubtype::Uuid,
        bytes: id.bytes().to_vec(),
    })
}

#[async_trait]
impl KeyVault for EngineKeyVault {
    async fn find_by_id(&self, id: Uuid) -> Result<Option<Document>, KeyVaultError> {
        self.find_one(cipherdoc_engine::Filter::eq("_id", uuid_bson(id)))
            .await
    }

    async fn find_by_alt_name(&self, name: &str) -> Result<Option<Document>, KeyVaultError> {
        self.find_one(cipherdoc_engine::Filter::eq("keyAltNames", name))
            .await
    }

    async fn insert(&self, doc: Document) -> Result<(), KeyVaultError> {
        // Validate what the engine's indexes cannot (shape, repeated names
        // within one document) before writing.
        check_insert(&[], &doc)?;
        self.engine
            .insert_one(&self.collection, doc.clone())
            .await
            .map(|_| ())
            .map_err(|e| self.map_engine(e, &doc))
    }

    async fn replace(&self, doc: Document) -> Result<(), KeyVaultError> {
        let id = key_id_of(&doc)?;
        alt_names_of(&doc)?;
        let replaced = self
            .engine
            .replace_one(&self.collection, &uuid_bson(id), doc.clone())
            .await
            .map_err(|e| self.map_engine(e, &doc))?;
        if replaced {
            Ok(())
        } else {
            Err(KeyVaultError::NotFound(id))
        }
    }

    async fn list(&self) -> Result<Vec<Document>, KeyVaultError> {
        self.engine
            .find(
                &self.collection,
                &cipherdoc_engine::Filter::all(),
                &cipherdoc_engine::FindOptions::default(),
            )
            .await
            .map_err(|e| self.storage_error(e))
    }

    async fn delete(&self, id: Uuid) -> Result<bool, KeyVaultError> {
        let n = self
            .engine
            .delete_many(
                &self.collection,
                &cipherdoc_engine::Filter::eq("_id", uuid_bson(id)),
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        Ok(n > 0)
    }
}
