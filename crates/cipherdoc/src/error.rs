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
    /// A value for an encrypted field refused before anything reached the
    /// engine, in a document to store or as a query operand: null, of the
    /// wrong BSON type, outside a range index, already encrypted, or at a
    /// path QE cannot encrypt. The message names the collection and the
    /// field, never the value.
    #[error("{}", problem.message(namespace, field))]
    ValueRefused {
        /// `<db>.<collection>`.
        namespace: String,
        /// The dotted path of the field.
        field: String,
        /// What is wrong with the value.
        problem: ValueProblem,
    },
    /// A filter on an encrypted collection that Queryable Encryption cannot
    /// run, refused before anything reached the engine: a field encrypted
    /// without `queries`, an operator its index does not allow, a path
    /// inside an encrypted field, `__safeContent__`.
    #[error("{}", problem.message(namespace, path))]
    QueryRefused {
        /// `<db>.<collection>`.
        namespace: String,
        /// The dotted path queried.
        path: String,
        /// Why it cannot be queried.
        problem: QueryProblem,
    },
    /// The range protocol refused a range field's options or a value for it
    /// (the message names the bounds, never the value).
    #[error("range field '{field}' of {namespace}: {source}")]
    RangeField {
        /// `<db>.<collection>`.
        namespace: String,
        /// The dotted path of the field.
        field: String,
        /// What the protocol layer refused.
        #[source]
        source: cipherdoc_crypto::Error,
    },
    /// An encrypted field whose `encryptedFields` entry this version cannot
    /// use (a query type it does not know, text-search options that do not
    /// parse).
    #[error("{}", problem.message(namespace, field))]
    UnsupportedField {
        /// `<db>.<collection>`.
        namespace: String,
        /// The dotted path of the field.
        field: String,
        /// What this version cannot use (boxed: it keeps every `Result`
        /// of the crate small).
        problem: Box<FieldProblem>,
    },
    /// A collection's `encryptedFields` in the catalog do not parse; nothing
    /// was read or written.
    #[error("catalog encryptedFields of {namespace}: {source}")]
    InvalidCatalog {
        /// `<db>.<collection>`.
        namespace: String,
        /// Why they do not parse.
        #[source]
        source: cipherdoc_crypto::efc::EfcError,
    },
    /// An operation on the encrypted state of a collection (compaction,
    /// cleanup, a leakage report) asked of a collection that is not
    /// encrypted.
    #[error("{namespace} is not an encrypted collection; nothing to compact")]
    NotEncryptedCollection {
        /// `<db>.<collection>`.
        namespace: String,
    },
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
    /// A migration found no master key for an encrypted field's new data
    /// key: the field's `kms_provider` is not configured on the database,
    /// or it names none and the database has no default. Nothing was
    /// created.
    #[error(
        "cannot create the data key of {model} field '{field}' on database '{alias}': {source}"
    )]
    FieldKmsProvider {
        /// The database alias.
        alias: String,
        /// The model label, `app.Model`.
        model: String,
        /// The dotted path of the field.
        field: String,
        /// Why no master key was found.
        #[source]
        source: Box<Error>,
    },
    /// An explicit encryption request ([`crate::client_encryption`]) whose
    /// options do not go together or with the value; nothing was encrypted.
    #[error(transparent)]
    EncryptOptions(#[from] EncryptOptionsProblem),
    /// A blob given to
    /// [`ClientEncryption::decrypt`](crate::client_encryption::ClientEncryption::decrypt)
    /// that holds nothing to decrypt.
    #[error(transparent)]
    NotDecryptable(#[from] BlobProblem),
    /// A KMS provider that no master key of the client is configured for.
    #[error("KMS provider '{provider}' is not configured; configured: {}", configured.join(", "))]
    UnknownKmsProvider {
        /// The provider asked for, e.g. `aws:prod`.
        provider: String,
        /// The providers configured.
        configured: Vec<String>,
    },
    /// A local master key file that cannot be read, written or used.
    #[error("{}", problem.message(path))]
    MasterKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: MasterKeyFileProblem,
    },
    /// [`crate::testing`] could not create the temporary folder for its
    /// databases and master keys.
    #[error("cannot create a temporary folder: {0}; make TMPDIR a writable folder")]
    TempDir(#[source] std::io::Error),
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

/// What is wrong with a value for an encrypted field (see
/// [`Error::ValueRefused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueProblem {
    /// A document sets `__safeContent__`, which QE maintains.
    SafeContentSet,
    /// The value is already an encrypted blob.
    AlreadyEncrypted,
    /// Null (or undefined): an encrypted field is never null.
    Null {
        /// Stored or compared.
        access: FieldUse,
    },
    /// A BSON type other than the field's `bsonType`.
    WrongType {
        /// The field's `bsonType`, e.g. `int`.
        expected: &'static str,
        /// The value's type.
        actual: bson::spec::ElementType,
    },
    /// Not a string, for a text-search field.
    NotAString {
        /// Stored or compared.
        access: FieldUse,
    },
    /// A value to store outside the range index's bounds (the bounds are
    /// part of the schema; the value is not named).
    OutsideRangeBounds {
        /// The index's lower bound.
        min: String,
        /// The index's upper bound.
        max: String,
    },
    /// The encrypted path goes through an array.
    InsideArray {
        /// The dotted path of the array.
        array: String,
    },
    /// The encrypted path goes through a value that is not a document.
    ThroughNonDocument {
        /// The path component reached through it.
        part: String,
    },
}

impl ValueProblem {
    /// The message for `field` of `namespace`.
    pub fn message(&self, namespace: &str, field: &str) -> String {
        match self {
            ValueProblem::SafeContentSet => format!(
                "{namespace}: documents may not set `{field}`; it is maintained by Queryable Encryption"
            ),
            ValueProblem::AlreadyEncrypted => format!(
                "field '{field}' of {namespace} already holds an encrypted value; give the plaintext"
            ),
            ValueProblem::Null {
                access: FieldUse::Store,
            } => format!("field '{field}' of {namespace} is encrypted and cannot be null"),
            ValueProblem::Null {
                access: FieldUse::Query,
            } => format!(
                "field '{field}' of {namespace} is encrypted and never null; comparing it with null is not supported"
            ),
            ValueProblem::WrongType { expected, actual } => format!(
                "field '{field}' of {namespace} is encrypted as '{expected}' but the value has BSON type {actual:?}"
            ),
            ValueProblem::NotAString {
                access: FieldUse::Store,
            } => format!(
                "field '{field}' of {namespace} is a text-search field and holds strings only"
            ),
            ValueProblem::NotAString {
                access: FieldUse::Query,
            } => format!(
                "field '{field}' of {namespace} is a text-search field: compare it with strings only"
            ),
            ValueProblem::OutsideRangeBounds { min, max } => format!(
                "the value of range field '{field}' of {namespace} is outside the index bounds [{min}, {max}]; store a value within them"
            ),
            ValueProblem::InsideArray { array } => format!(
                "encrypted field '{field}' of {namespace} lies inside the array '{array}'; QE cannot encrypt fields of array elements (encrypt the whole array instead)"
            ),
            ValueProblem::ThroughNonDocument { part } => format!(
                "encrypted field '{field}' of {namespace}: '{part}' is reached through a value that is not a document"
            ),
        }
    }
}

/// The index of an encrypted field, as a refused query names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldIndex {
    /// `queries = "equality"`.
    Equality,
    /// `queries = "range"`.
    Range,
    /// A text-search field (prefix, suffix, substring).
    Text,
}

/// Why a filter cannot run on an encrypted collection (see
/// [`Error::QueryRefused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryProblem {
    /// `__safeContent__` is queried.
    SafeContent,
    /// The path lies inside an encrypted field.
    InsideEncryptedField {
        /// The encrypted field.
        encrypted: String,
    },
    /// The field is encrypted without `queries`.
    NotQueryable,
    /// `<`, `<=`, `>`, `>=` on a field with an equality index.
    ComparisonOnEquality,
    /// An operator the field's index does not allow.
    OperatorNotAllowed {
        /// The field's index.
        index: FieldIndex,
    },
}

impl QueryProblem {
    /// The message for `path` of `namespace`.
    pub fn message(&self, namespace: &str, path: &str) -> String {
        match self {
            QueryProblem::SafeContent => {
                format!("{namespace}: `{path}` cannot be queried directly")
            }
            QueryProblem::InsideEncryptedField { encrypted } => format!(
                "cannot query '{path}' of {namespace}: it lies inside the encrypted field '{encrypted}', whose contents cannot be queried"
            ),
            QueryProblem::NotQueryable => format!(
                "field '{path}' of {namespace} is encrypted without `queries`, so it cannot be queried; declare it with queries = \"equality\" (a new collection is needed)"
            ),
            QueryProblem::ComparisonOnEquality => format!(
                "field '{path}' of {namespace} has an equality index: only eq, ne and in are allowed (use queries = \"range\" for <, <=, >, >=)"
            ),
            QueryProblem::OperatorNotAllowed {
                index: FieldIndex::Text,
            } => format!(
                "field '{path}' of {namespace} is a text-search field: only starts_with, ends_with, contains (as its query types allow) and equality are allowed"
            ),
            QueryProblem::OperatorNotAllowed {
                index: FieldIndex::Equality | FieldIndex::Range,
            } => format!(
                "field '{path}' of {namespace}: this operator cannot be used on an encrypted field"
            ),
        }
    }
}

/// What this version cannot use in a field's `encryptedFields` entry (see
/// [`Error::UnsupportedField`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldProblem {
    /// A query type this version does not know.
    UnknownQueryType,
    /// A text-search query type whose entry has no text-search options.
    NotTextSearch,
    /// Text-search options that do not parse.
    InvalidTextOptions(cipherdoc_crypto::efc::EfcError),
}

impl FieldProblem {
    /// The message for `field` of `namespace`.
    pub fn message(&self, namespace: &str, field: &str) -> String {
        match self {
            FieldProblem::UnknownQueryType => format!(
                "field '{field}' of {namespace} has a query type this version does not support; upgrade cipherdoc or declare the field with equality, range or text-search queries"
            ),
            FieldProblem::NotTextSearch => {
                format!("field '{field}' of {namespace} is not a text-search field")
            }
            FieldProblem::InvalidTextOptions(e) => {
                format!("field '{field}' of {namespace}: invalid text-search options: {e}")
            }
        }
    }
}

/// What is wrong with an explicit encryption request (see
/// [`Error::EncryptOptions`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptOptionsProblem {
    /// [`Algorithm::String`](crate::client_encryption::Algorithm::String)
    /// without string options.
    #[error(
        "the string algorithm needs string options (caseSensitive, diacriticSensitive, prefix/suffix/substring)"
    )]
    StringOptionsMissing,
    /// [`Algorithm::String`](crate::client_encryption::Algorithm::String)
    /// given a value that is not a string.
    #[error("the string algorithm encrypts string values only")]
    NotAString,
    /// The text-search layer refused the string options or the value.
    #[error("string algorithm: {0}")]
    Text(#[source] cipherdoc_crypto::text::TextError),
    /// A query type that does not go with the string algorithm.
    #[error(
        "query type {0:?} does not go with the string algorithm; use prefix, suffix or substring"
    )]
    QueryTypeNotForString(crate::client_encryption::QueryType),
    /// A query type with an algorithm that has no queries.
    #[error("query type {query:?} needs the indexed algorithm, not {algorithm:?}")]
    QueryTypeNeedsIndexed {
        /// The query type asked for.
        query: crate::client_encryption::QueryType,
        /// The algorithm given.
        algorithm: crate::client_encryption::Algorithm,
    },
    /// A contention factor with an algorithm that has none.
    #[error("a contention factor applies only to the indexed algorithm")]
    ContentionNotApplicable,
    /// [`Algorithm::Range`](crate::client_encryption::Algorithm::Range)
    /// without range options.
    #[error("the range algorithm needs range options (min, max, sparsity, ...)")]
    RangeOptionsMissing,
    /// `encrypt_expression` with another algorithm than range.
    #[error("encrypt_expression needs the range algorithm")]
    ExpressionNeedsRange,
    /// `encrypt_expression` given an expression without a constant.
    #[error("the expression has no constant to encrypt")]
    ExpressionWithoutConstant,
}

/// Why a blob cannot be decrypted (see [`Error::NotDecryptable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobProblem {
    /// Not binary subtype 6.
    #[error("expected an encrypted blob (binary subtype 6), got subtype {0:?}")]
    NotEncrypted(bson::spec::BinarySubtype),
    /// A placeholder or find payload: no ciphertext.
    #[error("this blob carries no ciphertext (a placeholder or find payload); nothing to decrypt")]
    NoCiphertext,
}

/// What is wrong with a local master key file (see
/// [`Error::MasterKeyFile`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum MasterKeyFileProblem {
    /// It cannot be read, or others may read it.
    Read(crate::private_file::PrivateFileError),
    /// It does not hold 96 bytes.
    WrongLength {
        /// The bytes it holds.
        len: usize,
    },
    /// Generating one where a file already is.
    AlreadyExists,
    /// It cannot be written.
    Write(std::io::Error),
}

impl MasterKeyFileProblem {
    /// The message for the file at `path`.
    pub fn message(&self, path: &std::path::Path) -> String {
        let path = path.display();
        match self {
            MasterKeyFileProblem::Read(e) => format!("master key file: {e}"),
            MasterKeyFileProblem::WrongLength { len } => format!(
                "master key file {path} holds {len} bytes; a local master key is exactly 96 bytes (make one with `cipherdoc key generate-master`)"
            ),
            MasterKeyFileProblem::AlreadyExists => format!(
                "{path} already exists; a master key is never overwritten (remove it first if you mean it)"
            ),
            MasterKeyFileProblem::Write(e) => format!("cannot write {path}: {e}"),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
