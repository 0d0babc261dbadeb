//! Explicit encryption: the equivalent of MongoDB's `ClientEncryption`.
//!
//! ```no_run
//! # async fn demo() -> cipherdoc::Result<()> {
//! use std::sync::Arc;
//! use cipherdoc::client_encryption::{Algorithm, ClientEncryption, EncryptOptions, KeyRef};
//! use cipherdoc::key_vault::JsonFileKeyVault;
//!
//! let vault = Arc::new(JsonFileKeyVault::new("vault.json"));
//! let ce = ClientEncryption::with_local_master_key_file(vault, "master.key".as_ref())?;
//! let id = ce.create_data_key("local", vec!["ssn".into()]).await?;
//! let blob = ce
//!     .encrypt("123-45-6789".into(), &EncryptOptions::new(KeyRef::Id(id), Algorithm::Indexed))
//!     .await?;
//! assert_eq!(ce.decrypt(&blob).await?, bson::Bson::from("123-45-6789"));
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::payload::{
    BlobSubtype, FindEqualityPayloadV2, Fle1Algorithm, Fle1EncryptedValue,
    IndexedEqualityEncryptedValueV2, InsertUpdatePayloadV2, UnindexedEncryptedValueV2,
};
use cipherdoc_crypto::{KeyId, LocalMasterKey, OsRandom, RandomSource};
use cipherdoc_kms::{
    KmsProviders, LocalProvider, MasterKey as KmsMasterKey, ProviderKind, ProviderName,
};

use crate::error::{BlobProblem, EncryptOptionsProblem, Error, MasterKeyFileProblem, Result};
use crate::key_vault::KeyVault;
use crate::keys::{KeyStore, LoadedKey};
use crate::private_file::{Existing, write_private_with};

/// How to encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// Queryable Encryption with an equality index: an insert payload (11),
    /// or with [`QueryType::Equality`] a find payload (12).
    Indexed,
    /// Queryable Encryption, not queryable: a stored value (16).
    Unindexed,
    /// FLE1 `AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic` (1).
    Deterministic,
    /// FLE1 `AEAD_AES_256_CBC_HMAC_SHA_512-Random` (2).
    Random,
    /// Queryable Encryption with a range index: an insert payload with edges
    /// (11); queries go through [`ClientEncryption::encrypt_expression`].
    /// Needs [`EncryptOptions::range`].
    Range,
    /// Queryable Encryption text search (libmongocrypt's `string`
    /// algorithm, `textPreview` in MongoDB 8.2): an insert payload with
    /// prefix, suffix or substring token sets (11), or with
    /// [`QueryType::Prefix`], [`QueryType::Suffix`] or
    /// [`QueryType::Substring`] a text find payload (18). Needs
    /// [`EncryptOptions::string`] and a string value.
    String,
}

/// The query a payload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryType {
    /// An equality query.
    Equality,
    /// A prefix query (`$encStrStartsWith`), algorithm [`Algorithm::String`].
    Prefix,
    /// A suffix query (`$encStrEndsWith`), algorithm [`Algorithm::String`].
    Suffix,
    /// A substring query (`$encStrContains`), algorithm [`Algorithm::String`].
    Substring,
}

/// Which data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// By `_id`.
    Id(KeyId),
    /// By `keyAltNames`.
    AltName(String),
}

/// Options of [`ClientEncryption::encrypt`].
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The data key.
    pub key: KeyRef,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Maximum contention factor of an indexed field (default 8).
    pub contention_factor: Option<i64>,
    /// Make a query payload instead of an insert payload.
    pub query_type: Option<QueryType>,
    /// Range index options (`min`, `max`, `sparsity`, `trimFactor`,
    /// `precision`), as in `encryptedFields`; required by [`Algorithm::Range`].
    pub range: Option<Document>,
    /// Text-search options (libmongocrypt's `StringOpts`:
    /// `caseSensitive`, `diacriticSensitive`, `prefix`/`suffix`/`substring`
    /// with their lengths); required by [`Algorithm::String`].
    pub string: Option<cipherdoc_crypto::text::StringOpts>,
}

impl EncryptOptions {
    /// Options with the default contention and no query type.
    pub fn new(key: KeyRef, algorithm: Algorithm) -> Self {
        Self {
            key,
            algorithm,
            contention_factor: None,
            query_type: None,
            range: None,
            string: None,
        }
    }
}

/// The default maximum contention factor of indexed fields.
pub const DEFAULT_CONTENTION: i64 = 8;

/// Explicit encryption and data-key management over a key vault and KMS providers.
#[derive(Debug, Clone)]
pub struct ClientEncryption {
    keys: Arc<KeyStore>,
    master_keys: Vec<KmsMasterKey>,
}

impl ClientEncryption {
    /// A client over a key store; `master_keys` are the master keys new data
    /// keys may be wrapped with, one per provider name.
    pub fn new(keys: Arc<KeyStore>, master_keys: Vec<KmsMasterKey>) -> Self {
        Self { keys, master_keys }
    }

    /// A client with one provider, `local`, whose 96-byte master key is read
    /// from `master_key_file`.
    pub fn with_local_master_key_file(
        vault: Arc<dyn KeyVault>,
        master_key_file: &Path,
    ) -> Result<Self> {
        let bytes = crate::private_file::read_private(master_key_file).map_err(|e| {
            Error::MasterKeyFile {
                path: master_key_file.to_owned(),
                problem: MasterKeyFileProblem::Read(e),
            }
        })?;
        if bytes.len() != 96 {
            return Err(Error::MasterKeyFile {
                path: master_key_file.to_owned(),
                problem: MasterKeyFileProblem::WrongLength { len: bytes.len() },
            });
        }
        let name = ProviderName::new(ProviderKind::Local);
        let provider = LocalProvider::new(name.clone(), LocalMasterKey::from_slice(&bytes)?)?;
        let mut kms = KmsProviders::default();
        kms.insert(Arc::new(provider));
        let master = KmsMasterKey::from_document(&doc! { "provider": "local" })?;
        let keys = KeyStore::new(vault, Arc::new(kms), Duration::from_secs(60));
        Ok(Self::new(Arc::new(keys), vec![master]))
    }

    /// The key store (vault, KMS, cache).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Creates a data key with the master key configured for `provider`
    /// (`local`, `aws:prod`, ...); returns its id.
    pub async fn create_data_key(&self, provider: &str, alt_names: Vec<String>) -> Result<KeyId> {
        let master = self
            .master_keys
            .iter()
            .find(|m| m.provider().to_string() == provider)
            .ok_or_else(|| Error::UnknownKmsProvider {
                provider: provider.to_owned(),
                configured: self
                    .master_keys
                    .iter()
                    .map(|m| m.provider().to_string())
                    .collect(),
            })?;
        self.keys.create_data_key(master, alt_names).await
    }

    async fn key(&self, key: &KeyRef) -> Result<Arc<LoadedKey>> {
        match key {
            KeyRef::Id(id) => self.keys.key(*id).await,
            KeyRef::AltName(n) => self.keys.key_by_alt_name(n).await,
        }
    }

    /// Encrypts one value; returns the blob (binary subtype 6).
    pub async fn encrypt(&self, value: Bson, options: &EncryptOptions) -> Result<Binary> {
        let key = self.key(&options.key).await?;
        self.encrypt_with(&value, options, &key, &mut OsRandom)
    }

    /// [`encrypt`](Self::encrypt) with an already loaded key and a given
    /// random source (for byte-exact tests).
    pub fn encrypt_with(
        &self,
        value: &Bson,
        options: &EncryptOptions,
        key: &LoadedKey,
        rng: &mut dyn RandomSource,
    ) -> Result<Binary> {
        let user = UserKey {
            id: key.id,
            key: &key.key,
        };
        let contention = options.contention_factor.unwrap_or(DEFAULT_CONTENTION);
        let bytes = match (options.algorithm, options.query_type) {
            (Algorithm::Indexed, None) => {
                let cm = cipherdoc_crypto::random::validate_max_contention(contention)?;
                client::encrypt_equality_insert(value, &key.tokens, user, cm, rng)?.encode()
            }
            (Algorithm::Indexed, Some(QueryType::Equality)) => {
                let cm = cipherdoc_crypto::random::validate_max_contention(contention)?;
                client::encrypt_equality_find(value, &key.tokens, cm)?.encode()
            }
            (Algorithm::Unindexed, None) => client::encrypt_unindexed(value, user, rng)?.encode(),
            (Algorithm::Deterministic, None) => {
                client::encrypt_fle1(value, Fle1Algorithm::Deterministic, user, rng)?.encode()
            }
            (Algorithm::Random, None) => {
                client::encrypt_fle1(value, Fle1Algorithm::Random, user, rng)?.encode()
            }
            (Algorithm::Range, None) => {
                let cm = cipherdoc_crypto::random::validate_max_contention(contention)?;
                let index = range_index(options, value)?;
                cipherdoc_crypto::client_range::encrypt_range_insert(
                    value,
                    &index,
                    &key.tokens,
                    user,
                    cm,
                    rng,
                )?
                .encode()
            }
            (Algorithm::String, query) => {
                let cm = cipherdoc_crypto::random::validate_max_contention(contention)?;
                let Some(opts) = &options.string else {
                    return Err(EncryptOptionsProblem::StringOptionsMissing.into());
                };
                let Bson::String(s) = value else {
                    return Err(EncryptOptionsProblem::NotAString.into());
                };
                let text = |e: cipherdoc_crypto::Error| match e {
                    cipherdoc_crypto::Error::Text(t) => {
                        Error::EncryptOptions(EncryptOptionsProblem::Text(t))
                    }
                    other => Error::Crypto(other),
                };
                let query = match query {
                    None => {
                        return Ok(Binary {
                            subtype: BinarySubtype::Encrypted,
                            bytes: cipherdoc_crypto::client_text::encrypt_text_insert(
                                s,
                                opts.index(),
                                &key.tokens,
                                user,
                                cm,
                                rng,
                            )
                            .map_err(text)?
                            .encode(),
                        });
                    }
                    Some(QueryType::Prefix) => cipherdoc_crypto::text::TextQuery::Prefix,
                    Some(QueryType::Suffix) => cipherdoc_crypto::text::TextQuery::Suffix,
                    Some(QueryType::Substring) => cipherdoc_crypto::text::TextQuery::Substring,
                    Some(q) => {
                        return Err(EncryptOptionsProblem::QueryTypeNotForString(q).into());
                    }
                };
                cipherdoc_crypto::client_text::encrypt_text_find(
                    s,
                    opts.index(),
                    query,
                    &key.tokens,
                    cm,
                )
                .map_err(text)?
                .encode()
            }
            (alg, Some(q)) => {
                return Err(EncryptOptionsProblem::QueryTypeNeedsIndexed {
                    query: q,
                    algorithm: alg,
                }
                .into());
            }
        };
        if options.contention_factor.is_some()
            && !matches!(
                options.algorithm,
                Algorithm::Indexed | Algorithm::Range | Algorithm::String
            )
        {
            return Err(EncryptOptionsProblem::ContentionNotApplicable.into());
        }
        Ok(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes,
        })
    }

    /// Encrypts a range query expression, as MongoDB's `encryptExpression`:
    /// `{$and: [{v: {$gte: a}}, {v: {$lte: b}}]}` (or one comparison) comes
    /// back with the first constant replaced by a full range find payload
    /// (13) and the second by its stub. Needs [`Algorithm::Range`] and
    /// [`EncryptOptions::range`].
    pub async fn encrypt_expression(
        &self,
        expr: &Document,
        options: &EncryptOptions,
    ) -> Result<Document> {
        if options.algorithm != Algorithm::Range {
            return Err(EncryptOptionsProblem::ExpressionNeedsRange.into());
        }
        let key = self.key(&options.key).await?;
        let cm = cipherdoc_crypto::random::validate_max_contention(
            options.contention_factor.unwrap_or(DEFAULT_CONTENTION),
        )?;
        let sample =
            first_constant(expr).ok_or(EncryptOptionsProblem::ExpressionWithoutConstant)?;
        let index = range_index(options, &sample)?;
        Ok(cipherdoc_crypto::client_range::encrypt_range_expression(
            expr,
            &index,
            &key.tokens,
            cm,
            cipherdoc_crypto::client_range::next_payload_id(),
        )?)
    }

    /// Decrypts a blob (subtypes 1, 2, 11, 14, 15, 16), loading the keys it needs.
    pub async fn decrypt(&self, blob: &Binary) -> Result<Bson> {
        if blob.subtype != BinarySubtype::Encrypted {
            return Err(BlobProblem::NotEncrypted(blob.subtype).into());
        }
        let mut loaded = Vec::new();
        for id in key_ids_of(&blob.bytes)? {
            let k = self.keys.key(id).await?;
            loaded.push(k);
        }
        self.keys
            .decrypt_blob(&blob.bytes, &mut loaded)
            .await?
            .ok_or_else(|| BlobProblem::NoCiphertext.into())
    }
}

/// The range index of explicit options, for values like `value`.
fn range_index(
    options: &EncryptOptions,
    value: &Bson,
) -> Result<cipherdoc_crypto::range::RangeIndex> {
    let doc = options
        .range
        .as_ref()
        .ok_or(EncryptOptionsProblem::RangeOptionsMissing)?;
    let opts = cipherdoc_crypto::client_range::range_options_from_document(doc)?;
    Ok(cipherdoc_crypto::client_range::resolve_range_options(
        &opts, value,
    )?)
}

/// The first comparison constant of `{$and: [{f: {$op: c}}, ...]}`.
fn first_constant(expr: &Document) -> Option<Bson> {
    let Some(Bson::Array(items)) = expr.get("$and") else {
        return None;
    };
    items.iter().find_map(|item| match item {
        Bson::Document(d) => d.values().find_map(|v| match v {
            Bson::Document(ops) => ops.values().next().cloned(),
            Bson::Array(a) => a.get(1).cloned(),
            _ => None,
        }),
        _ => None,
    })
}

/// The data keys a blob needs to be decrypted, outermost first.
pub fn key_ids_of(blob: &[u8]) -> Result<Vec<KeyId>> {
    use BlobSubtype as B;
    Ok(match BlobSubtype::of(blob)? {
        B::Fle1DeterministicEncryptedValue | B::Fle1RandomEncryptedValue => {
            vec![Fle1EncryptedValue::decode(blob)?.key_id]
        }
        B::Fle2UnindexedEncryptedValueV2 => vec![UnindexedEncryptedValueV2::decode(blob)?.key_id],
        B::Fle2InsertUpdatePayloadV2 => {
            vec![InsertUpdatePayloadV2::decode(blob)?.user_key_id()?]
        }
        // The user key id of a stored indexed value sits inside the
        // server-encrypted value: only the index key (S_KeyId) is known up
        // front; decryption asks for the user key when it reaches it.
        B::Fle2IndexedEqualityEncryptedValueV2 | B::Fle2IndexedRangeEncryptedValueV2 => {
            vec![KeyId::from_slice(blob.get(1..17).unwrap_or(&[]))?]
        }
        _ => Vec::new(),
    })
}

/// A readable description of a blob's fields; needs no keys.
pub fn inspect(blob: &[u8]) -> Result<Document> {
    use BlobSubtype as B;
    let subtype = BlobSubtype::of(blob)?;
    let hex = |b: &[u8]| {
        use std::fmt::Write;
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    };
    let ty = |t: bson::spec::ElementType| format!("{t:?}");
    let mut d = doc! { "subtype": i32::from(subtype as u8), "name": format!("{subtype:?}") };
    match subtype {
        B::Fle1DeterministicEncryptedValue | B::Fle1RandomEncryptedValue => {
            let v = Fle1EncryptedValue::decode(blob)?;
            d.insert("keyId", v.key_id.to_binary());
            d.insert("bsonType", ty(v.bson_type));
            d.insert("ciphertextLength", len_i64(v.ciphertext.len()));
        }
        B::Fle2UnindexedEncryptedValueV2 => {
            let v = UnindexedEncryptedValueV2::decode(blob)?;
            d.insert("keyId", v.key_id.to_binary());
            d.insert("bsonType", ty(v.bson_type));
            d.insert("ciphertextLength", len_i64(v.ciphertext.len()));
        }
        B::Fle2InsertUpdatePayloadV2 => {
            let p = InsertUpdatePayloadV2::decode(blob)?;
            d.insert("indexKeyId", p.index_key_id.to_binary());
            d.insert("userKeyId", p.user_key_id()?.to_binary());
            d.insert("bsonType", ty(p.bson_type));
            d.insert(
                "contentionFactor",
                i64::try_from(p.contention_factor).unwrap_or(i64::MAX),
            );
            d.insert(
                "edges",
                len_i64(p.edge_token_sets.as_ref().map_or(0, Vec::len)),
            );
            d.insert("valueLength", len_i64(p.value.len()));
        }
        B::Fle2FindEqualityPayloadV2 => {
            let p = FindEqualityPayloadV2::decode(blob)?;
            d.insert(
                "maxContentionFactor",
                i64::try_from(p.max_contention_factor).unwrap_or(i64::MAX),
            );
        }
        B::Fle2IndexedEqualityEncryptedValueV2 => {
            let v = IndexedEqualityEncryptedValueV2::decode(blob)?;
            d.insert("indexKeyId", v.index_key_id.to_binary());
            d.insert("bsonType", ty(v.bson_type));
            d.insert(
                "serverEncryptedValueLength",
                len_i64(v.server_encrypted_value.len()),
            );
            d.insert("tag", hex(v.metadata.tag.as_bytes()));
        }
        _ => {
            d.insert("length", len_i64(blob.len()));
        }
    }
    Ok(d)
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Writes 96 random bytes to a new file with mode 0600; refuses to overwrite.
/// The existence check is the creation itself (`O_CREAT|O_EXCL`), so a file
/// or symlink that appears in between is never written through.
pub fn generate_local_master_key_file(path: &Path) -> Result<()> {
    let mut key = zeroize::Zeroizing::new([0u8; 96]);
    OsRandom.fill(&mut key[..]).map_err(Error::Crypto)?;
    write_private_with(path, &key[..], Existing::Refuse).map_err(|e| Error::MasterKeyFile {
        path: path.to_owned(),
        problem: if e.kind() == std::io::ErrorKind::AlreadyExists {
            MasterKeyFileProblem::AlreadyExists
        } else {
            MasterKeyFileProblem::Write(e)
        },
    })
}
