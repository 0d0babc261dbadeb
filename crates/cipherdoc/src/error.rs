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
    /// An operation that Queryable Encryption does not allow, refused before
    /// anything reached the engine.
    #[error("{0}")]
    NotAllowed(String),
    /// A migration failed or was refused.
    #[error(transparent)]
    Migration(#[from] crate::migrations::MigrationError),
    /// A data key could not be found.
    #[error("{0}")]
    KeyNotFound(String),
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

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
