//! What the QE server role refuses, and why.

/// Errors of the QE server role, wrapped in [`crate::EngineError::Qe`].
///
/// Messages name the collection and the dotted path involved and say what to
/// do; they never contain payload bytes, tokens or stored values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QeError {
    /// The collection's `encryptedFields` cannot be used by the server role.
    #[error("collection {collection:?}: invalid encryptedFields: {reason}")]
    Schema {
        /// The collection.
        collection: String,
        /// The parser's or validator's complaint.
        reason: String,
    },
    /// A document to write breaks a QE rule (plaintext at an encrypted path,
    /// a payload at a path that is not encrypted, a client-written
    /// `__safeContent__`, ...).
    #[error("collection {collection:?}, field {path:?}: {reason}")]
    InvalidDocument {
        /// The collection.
        collection: String,
        /// The dotted path of the offending value.
        path: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A filter or sort breaks a QE rule (plaintext comparison on an
    /// encrypted path, a find payload on a plaintext path, ...).
    #[error("collection {collection:?}, field {path:?}: {reason}")]
    InvalidQuery {
        /// The collection.
        collection: String,
        /// The dotted path the predicate is on.
        path: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A payload or stored value could not be decoded or processed.
    #[error("collection {collection:?}, field {path:?}: {source}")]
    Payload {
        /// The collection.
        collection: String,
        /// Where the payload was.
        path: String,
        /// The codec's complaint (never contains secret bytes).
        #[source]
        source: cipherdoc_crypto::Error,
    },
    /// The ESC state is inconsistent, or a compaction token does not fit the
    /// state (e.g. a wrong ECOC token: the decrypted ESC token matches no
    /// ESC entry). Nothing was changed.
    #[error("collection {collection:?}: {source}")]
    State {
        /// The collection.
        collection: String,
        /// What the arithmetic found.
        #[source]
        source: cipherdoc_crypto::Error,
    },
    /// Compaction or cleanup tokens missing for an indexed field, or given
    /// for a path that is not an indexed encrypted field.
    #[error("collection {collection:?}: {reason}")]
    Tokens {
        /// The collection.
        collection: String,
        /// What is wrong.
        reason: String,
    },
    /// An equality query would expand to more tags than the configured
    /// limit ([`super::QeServerConfig::max_query_tags`]).
    #[error(
        "collection {collection:?}, field {path:?}: the query expands to more than {limit} tags; raise QeServerConfig::max_query_tags or narrow the query"
    )]
    TooManyTags {
        /// The collection.
        collection: String,
        /// The queried field.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// Concurrent writers kept taking the ESC positions this write needed.
    /// The write was not applied; retrying later is safe.
    #[error(
        "collection {collection:?}: encrypted write gave up after {attempts} attempts because concurrent writers kept taking the same ESC positions; nothing was written, retry the write"
    )]
    WriteConflict {
        /// The collection.
        collection: String,
        /// How many times the transaction was tried.
        attempts: u32,
    },
    /// An encrypted write failed midway inside a caller's explicit
    /// transaction; the transaction must be rolled back.
    #[error(
        "an encrypted write failed midway inside this transaction ({0}); roll it back and retry the whole transaction"
    )]
    TransactionAborted(String),
}
