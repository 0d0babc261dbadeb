//! The one error type of the `cipherdoc` crate.

use crate::key_vault::KeyVaultError;
use crate::model::ModelError;
use crate::settings::SettingsError;

/// Everything that can go wrong in cipherdoc, by layer. Messages name the
/// database alias, model and field where there is one, and say what to do;
/// they never contain plaintext values, keys or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings are wrong.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The key vault failed.
    #[error(transparent)]
    KeyVault(#[from] KeyVaultError),
    /// A KMS provider failed.
    #[error(transparent)]
    Kms(#[from] cipherdoc_kms::KmsError),
    /// A data key whose key document the settings do not trust: its
    /// `masterKey` names a provider, key or host that the settings neither
    /// configure nor allow. Nothing was sent to any KMS.
    #[error("data key {key_id}: {source}")]
    UntrustedKey {
        /// The key's id (UUID).
        key_id: String,
        /// Why: the provider's refusal.
        #[source]
        source: cipherdoc_kms::KmsError,
    },
    /// A data key whose check value differs from the pinned one: the key
    /// document behind a pinned key id was replaced.
    #[error(
        "data key {key_id}: its key check value differs from the one pinned in {setting}; the key document behind this key id was replaced (a swapped data key), so the key is refused. Restore the key vault from a backup; if the keys were rotated on purpose, pin again with `showencryptedfieldsmap --key-check-values`"
    )]
    KeyCheckMismatch {
        /// The key's id (UUID).
        key_id: String,
        /// The setting that pins the values.
        setting: String,
    },
    /// The protocol layer refused or failed (includes authentication failures).
    #[error(transparent)]
    Crypto(#[from] cipherdoc_crypto::Error),
    /// A model or field value is wrong.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The storage engine failed.
    #[error(transparent)]
    Engine(#[from] cipherdoc_engine::EngineError),
    /// `get` found no document.
    #[error("{model} matching query does not exist")]
    DoesNotExist {
        /// The model, e.g. `myapp.Patient`.
        model: String,
    },
    /// `get` found several documents.
    #[error("get() returned more than one {model}; narrow the query or use filter()")]
    MultipleObjectsReturned {
        /// The model.
        model: String,
    },
    /// No database of the settings has this alias.
    #[error("no database '{alias}'; configured: {}; add [databases.{alias}] to the settings or use one of these aliases", configured.join(", "))]
    UnknownDatabase {
        /// The alias asked for.
        alias: String,
        /// The aliases the settings configure.
        configured: Vec<String>,
    },
    /// An operation that needs encryption settings on a database without
    /// them.
    #[error(
        "database '{alias}' has no encryption settings, so it cannot {operation}; name the encrypted database (for example with --database)"
    )]
    NotEncrypted {
        /// The database alias.
        alias: String,
        /// What was asked, e.g. `compact`.
        operation: &'static str,
    },
    /// A query-set operation refused before anything reached the engine.
    #[error("{}", refusal.message(model))]
    Refused {
        /// The model label, `app.Model`.
        model: String,
        /// What was refused and why.
        refusal: Refusal,
    },
    /// A lookup given a value of the wrong shape (the typed field paths
    /// prevent it; raw filters can still do it).
    #[error("lookup {lookup} on '{path}' needs {needs}")]
    LookupMisuse {
        /// The dotted path.
        path: String,
        /// The lookup, e.g. `in`.
        lookup: String,
        /// What the lookup needs, e.g. `a list`.
        needs: &'static str,
    },
    /// The pinned encrypted fields map and the database disagree, or one of
    /// them cannot be read; nothing was read or written.
    #[error("collection {namespace} on database '{alias}': {problem}")]
    PinnedMap {
        /// The database alias.
        alias: String,
        /// `<db>.<collection>`.
        namespace: String,
        /// What disagrees (boxed: it keeps every `Result` of the crate
        /// small).
        problem: Box<PinnedMapProblem>,
    },
    /// An operation that Queryable Encryption does not allow, refused before
    /// anything reached the engine.
    #[error("{0}")]
    NotAllowed(String),
    /// A migration failed or was refused.
    #[error(transparent)]
    Migration(#[from] crate::migrations::MigrationError),
    /// A data key could not be found in the key vault.
    #[error("{}", key_not_found(key, field.as_deref(), namespace.as_deref(), database.as_deref()))]
    KeyNotFound {
        /// The key asked for.
        key: KeyRef,
        /// The dotted path of the field whose key it is, when known.
        field: Option<String>,
        /// The field's collection (`<db>.<collection>`), when known.
        namespace: Option<String>,
        /// The database alias whose migration creates the key, when known.
        database: Option<String>,
    },
    /// No KMS provider (or no master key) to create a data key with.
    #[error(transparent)]
    KmsProviderChoice(#[from] crate::settings::ProviderChoiceError),
    /// An encryption request is not allowed or not possible.
    #[error("{0}")]
    Encryption(String),
    /// A value or query for a text-search field (prefix, suffix, substring)
    /// was refused: a query outside the field's lengths, an empty query, a
    /// query type the field lacks, a value longer than `strMaxLength`. The
    /// message names the collection and the field, never the value.
    #[error("field '{field}' of {ns}: {source}")]
    TextSearch {
        /// The collection (`db.collection`).
        ns: String,
        /// The dotted path of the field.
        field: String,
        /// What the protocol layer refused.
        #[source]
        source: cipherdoc_crypto::text::TextError,
    },
    /// A path the model declares `#[encrypted]` is not encrypted by the
    /// collection's encrypted fields (pinned map or catalog) as the model
    /// declares it; the operation was refused before anything reached the
    /// engine (see [`crate::coverage`]).
    #[error(
        "{model}: the encrypted field '{field}' is not covered by the encrypted fields of {namespace} on database '{alias}': {reason}; nothing was sent to the database. Make and apply a migration (`makemigrations`, then `migrate --database {alias}`); encrypted fields cannot change on an existing collection, so a changed field needs a new collection. With a pinned encrypted_fields_map, regenerate it with `showencryptedfieldsmap --database {alias}`"
    )]
    EncryptedFieldNotCovered {
        /// The database alias.
        alias: String,
        /// The model label, `app.Model`.
        model: String,
        /// The dotted path of the field.
        field: String,
        /// `<db>.<collection>`.
        namespace: String,
        /// What is wrong with the collection's encrypted fields (boxed: it
        /// keeps every `Result` of the crate small).
        reason: Box<crate::coverage::CoverageGap>,
    },
    /// A write of a model whose collection a copy migration is rebuilding
    /// (see `migrations/copy.rs`); nothing was written. Writes are blocked,
    /// not carried over, until `migrate` has finished the copy, or, when
    /// the copy was interrupted, until the next `migrate` finishes or rolls
    /// it back.
    #[error(
        "{model}: writes to {namespace} on database '{alias}' are blocked while migration {migration} copies it into a new encrypted collection; nothing was written. Retry once `migrate` has finished; if it was interrupted, run `migrate --database {alias}` to finish or roll back the copy"
    )]
    CopyInProgress {
        /// The model label, `app.Model`.
        model: String,
        /// The database alias.
        alias: String,
        /// `<db>.<collection>`.
        namespace: String,
        /// `app.name` of the migration doing the copy.
        migration: String,
    },
    /// A checked read found a stored value the collection's encrypted
    /// fields do not allow (see
    /// [`Encrypter::decrypt_document`](crate::encrypter::Encrypter::decrypt_document));
    /// nothing was decrypted or returned.
    #[error(
        "{model}: field '{field}': {problem}; the read was refused and nothing was decrypted (the stored document was altered outside the application, or the data predates its model)"
    )]
    StoredValueRejected {
        /// The model and collection.
        model: String,
        /// The dotted path of the value.
        field: String,
        /// What is wrong.
        problem: crate::encrypter::IntegrityProblem,
    },
}

/// A data key as a caller names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// By id (a UUID).
    Id(String),
    /// By `keyAltName`.
    AltName(String),
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRef::Id(id) | KeyRef::AltName(id) => f.write_str(id),
        }
    }
}

impl Error {
    /// Whether the operation may succeed if simply run again, nothing of
    /// the failed attempt having been kept: the storage lost its connection
    /// or was busy ([`cipherdoc_engine::EngineError::is_retryable`]), or the
    /// KMS was unreachable, slow or failing
    /// ([`cipherdoc_kms::KmsError::is_transient`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Engine(e) => e.is_retryable(),
            Self::Kms(e) => e.is_transient(),
            Self::Migration(crate::migrations::MigrationError::DataKeyCreation {
                source, ..
            }) => source.is_retryable(),
            _ => false,
        }
    }
}

/// The message of [`Error::KeyNotFound`]: the reference's "Encryption key
/// ... not found. Have you migrated the database?" where a field or a
/// database is known, the key vault's answer otherwise.
fn key_not_found(
    key: &KeyRef,
    field: Option<&str>,
    namespace: Option<&str>,
    database: Option<&str>,
) -> String {
    match (field, database) {
        (_, Some(alias)) => format!(
            "Encryption key '{key}' not found. Have you migrated the database '{alias}'? Run `migrate --database {alias}`"
        ),
        (Some(field), None) => format!(
            "Encryption key '{key}' of field '{field}'{} not found. Have you migrated the database?",
            namespace.map(|ns| format!(" in {ns}")).unwrap_or_default()
        ),
        (None, None) => match key {
            KeyRef::Id(id) => format!("no data key with id {id} in the key vault"),
            KeyRef::AltName(n) => format!("no data key with keyAltName '{n}' in the key vault"),
        },
    }
}

/// What a query set refused (see [`Error::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// An encrypted field stored or queried on a database without
    /// encryption settings.
    EncryptedFieldOnPlainDatabase {
        /// Store or query.
        access: FieldUse,
        /// The field.
        field: String,
        /// The database alias.
        alias: String,
    },
    /// The model's collection is not (yet) an encrypted collection.
    NotMigrated {
        /// `<db>.<collection>`.
        namespace: String,
        /// The database alias.
        alias: String,
    },
    /// Ordering by an encrypted field.
    OrderByEncrypted {
        /// The requested ordering path.
        path: String,
        /// The encrypted field it lies in.
        encrypted: String,
    },
    /// Grouping on an encrypted field.
    GroupByEncrypted {
        /// The requested grouping path.
        path: String,
        /// The encrypted field it lies in.
        encrypted: String,
    },
    /// A multi-document update on an encrypted database.
    MultiDocumentUpdate {
        /// The database alias.
        alias: String,
    },
    /// `update_or_create`'s update changed the object's id.
    IdChanged,
}

impl Refusal {
    /// The message for `model` (the reference's wording where it has one).
    pub fn message(&self, model: &str) -> String {
        match self {
            Refusal::EncryptedFieldOnPlainDatabase {
                access,
                field,
                alias,
            } => format!(
                "cannot {access} encrypted field '{field}' of {model} in non-encrypted database '{alias}'; route the model to the encrypted database"
            ),
            Refusal::NotMigrated { namespace, alias } => format!(
                "{model} has encrypted fields but {namespace} is not an encrypted collection; run `migrate --database {alias}` first"
            ),
            Refusal::OrderByEncrypted { path, encrypted } => format!(
                "cannot order {model} by '{path}': the field '{encrypted}' is encrypted, and Queryable Encryption cannot sort on encrypted fields (order by a plaintext field)"
            ),
            Refusal::GroupByEncrypted { path, encrypted } => format!(
                "Cannot group on field '{path}' of {model}: the field '{encrypted}' is encrypted"
            ),
            Refusal::MultiDocumentUpdate { alias } => format!(
                "Multi-document updates are not allowed with Queryable Encryption ({model} on database '{alias}'): load each object and save() it"
            ),
            Refusal::IdChanged => format!("update_or_create on {model} must keep the object's id"),
        }
    }
}

/// Whether a value is stored or queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldUse {
    /// Written to the database.
    Store,
    /// Used in a filter.
    Query,
}

impl std::fmt::Display for FieldUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FieldUse::Store => "save",
            FieldUse::Query => "query",
        })
    }
}

/// How the pinned encrypted fields map and the database disagree (see
/// [`Error::PinnedMap`]). The pinned map always wins: the fix is to restore
/// the collection or update the map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinnedMapProblem {
    /// The database has an encrypted collection the pinned map lacks.
    #[error(
        "encrypted in the database but absent from the pinned encrypted_fields_map; refusing to use it (update the pinned map with `showencryptedfieldsmap`)"
    )]
    AbsentFromMap,
    /// The pinned map names an encrypted collection the database lacks.
    #[error(
        "pinned as encrypted but the database has no encrypted collection by that name (unencrypted or missing); refusing to write. Run `migrate` or fix the pinned map"
    )]
    MissingInDatabase,
    /// Both have it, with different fields.
    #[error(
        "the database's encryptedFields differ from the pinned encrypted_fields_map (other paths, keys, types or queries); refusing to read or write. The pinned map wins: restore the collection or update the map"
    )]
    Differs,
    /// The pinned entry cannot be parsed.
    #[error("the pinned encrypted_fields_map entry is invalid: {0}")]
    InvalidPinned(cipherdoc_crypto::efc::EfcError),
    /// The catalog's entry cannot be parsed.
    #[error("the database's encryptedFields are invalid: {0}")]
    InvalidCatalog(cipherdoc_crypto::efc::EfcError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
