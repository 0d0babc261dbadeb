//! The crate's error type.

use crate::filter::FilterError;

/// Everything an engine operation can fail with.
///
/// Messages name the collection, index or key involved and say what to do;
/// they never contain stored document contents beyond the offending key of a
/// plaintext unique index (which the caller wrote).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The filter document could not be understood.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    /// A collection name the engine cannot store.
    #[error("invalid collection name {name:?}: {reason}")]
    InvalidCollectionName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `create_collection` on a name that already exists.
    #[error("collection {0:?} already exists; drop it first or use another name")]
    CollectionExists(String),
    /// An operation that needs an existing collection did not find it.
    #[error("collection {0:?} does not exist; create it first")]
    CollectionNotFound(String),
    /// The collection's `encryptedFields` document is not acceptable.
    #[error("invalid encryptedFields for collection {collection:?}: {reason}")]
    InvalidEncryptedFields {
        /// The collection being created.
        collection: String,
        /// What is wrong.
        reason: String,
    },
    /// A QE state operation on a collection created without `encryptedFields`.
    #[error("collection {0:?} is not an encrypted collection (it has no encryptedFields)")]
    NotEncrypted(String),
    /// A unique index (including the implicit `_id_` index) refused a key.
    #[error(
        "duplicate key in collection {collection:?}, index {index:?}: key {key} is already present"
    )]
    DuplicateKey {
        /// The collection written to.
        collection: String,
        /// The unique index that refused the write (`_id_` for the primary key).
        index: String,
        /// The offending key, rendered as relaxed extended JSON.
        key: String,
    },
    /// An ESC insert found the id already present: a concurrent writer took
    /// the same position. The QE server role retries with a fresh count.
    #[error(
        "ESC id conflict in collection {collection:?}: another writer took this position; retry the write"
    )]
    EscIdConflict {
        /// The encrypted collection whose ESC refused the insert.
        collection: String,
    },
    /// An index with that name exists with a different definition, or the
    /// spec is unusable.
    #[error("invalid index {index:?} on collection {collection:?}: {reason}")]
    InvalidIndex {
        /// The collection.
        collection: String,
        /// The index name.
        index: String,
        /// What is wrong.
        reason: String,
    },
    /// A document the engine cannot store (for example an array `_id`).
    #[error("invalid document for collection {collection:?}: {reason}")]
    InvalidDocument {
        /// The collection.
        collection: String,
        /// What is wrong.
        reason: String,
    },
    /// A projection mixing inclusion and exclusion, or otherwise invalid.
    #[error("invalid projection: {0}")]
    InvalidProjection(String),
    /// A stored document could not be decoded: the database file was changed
    /// outside cipherdoc or is corrupt.
    #[error("corrupt stored document in collection {collection:?}: {reason}")]
    Corrupt {
        /// The collection.
        collection: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// A document nested deeper than
    /// [`MAX_DOCUMENT_DEPTH`](crate::MAX_DOCUMENT_DEPTH) levels, refused
    /// before it was encoded or decoded (stored: the database was written
    /// outside cipherdoc).
    #[error(
        "a document of collection {collection:?} is nested deeper than {limit} levels; refused"
    )]
    TooDeep {
        /// The collection.
        collection: String,
        /// The limit.
        limit: usize,
    },
    /// The transaction handle was already finished or lost its connection
    /// (an operation on it was cancelled midway); start a new transaction.
    #[error("transaction is no longer usable: {0}")]
    TransactionClosed(&'static str),
    /// An error from the database library itself (SQLite, PostgreSQL)
    /// with no variant of its own: a failed statement, a lost connection.
    #[error(transparent)]
    Backend(BackendError),
    /// The database cannot grow: the disk (or the file size limit, or
    /// SQLite's `max_page_count`) is full. The failed write was rolled
    /// back whole; free space and retry.
    #[error(
        "{engine}: the database is full (no space left on the device, a file size limit, or max_page_count); the write was rolled back and nothing of it is stored. Free space (or raise the limit) and retry: {detail}"
    )]
    StorageFull {
        /// The engine's kind.
        engine: &'static str,
        /// What the storage said.
        detail: String,
    },
    /// The database file (or its folder, or the file system) is read-only,
    /// so nothing can be written; reads still work.
    #[error(
        "{engine}: the database is read-only (file or folder permissions, or a read-only file system); nothing was written. Make the database file, its -wal/-shm files and its folder writable by this user: {detail}"
    )]
    ReadOnly {
        /// The engine's kind.
        engine: &'static str,
        /// What the storage said.
        detail: String,
    },
    /// Encoding a document to BSON failed.
    #[error("bson encoding: {0}")]
    BsonEncode(#[from] bson::ser::Error),
    /// The blocking worker running a storage call panicked or was cancelled.
    #[error("storage worker failed: {0}")]
    Worker(String),
    /// The QE server role ([`crate::qe_server`]) refused a document, filter or
    /// token set, or could not complete an encrypted write.
    #[error(transparent)]
    Qe(#[from] crate::qe_server::QeError),
    /// Any other I/O failure (opening files, temporary directories).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The PostgreSQL connection string was refused (TLS settings that
    /// could send data in plain text, contradictions, a bad CA file) before
    /// any connection was tried, or the TLS handshake failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    PostgresConnect(#[from] crate::postgres::PgConnectError),
    /// No PostgreSQL connection could be had from the pool.
    #[error("postgres connection pool: {0}; check that the server is running and the URL is right")]
    PostgresPool(String),
    /// An operation of the QE server role asked of an engine that does not
    /// play it: a storage engine of [`crate::QeRole::Client`] must be
    /// wrapped in [`crate::qe_server::QeServer`] first.
    #[error(
        "the {engine} engine does not play the QE server role, so it cannot {operation}; wrap it in cipherdoc_engine::qe_server::QeServer"
    )]
    NoQeServerRole {
        /// The engine's kind.
        engine: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// The QE server role asked a transaction for its ESC/ECOC storage, and
    /// the engine has none (its database server plays the role itself).
    #[error(
        "this engine's transactions hold no ESC/ECOC state (its database server plays the QE role); do not wrap it in QeServer"
    )]
    NoQeState,
    /// An error the database server reported (MongoDB), with its code.
    #[error("{engine} server error {code} ({code_name}): {message}")]
    Server {
        /// The engine's kind.
        engine: &'static str,
        /// The server's error code.
        code: i32,
        /// Its name (`codeName`).
        code_name: String,
        /// The server's message.
        message: String,
    },
    /// No answer from the database server (network, TLS, no server
    /// selectable in time).
    #[error("{engine}: {message}; check that the server is running and the URL is right")]
    Connection {
        /// The engine's kind.
        engine: &'static str,
        /// What the driver said.
        message: String,
    },
    /// An operation this engine cannot do (for example an atomic rename
    /// of an encrypted collection); the caller must do without it.
    #[error("the {engine} engine cannot {operation}")]
    Unsupported {
        /// The engine's kind.
        engine: &'static str,
        /// What was asked.
        operation: &'static str,
    },
    /// Freed space could not be scrubbed completely (a reader kept the WAL
    /// from being truncated); run it again when the readers are done.
    #[error(
        "{engine}: freed space not fully scrubbed: {reason}; retry when no other process reads the database"
    )]
    ScrubIncomplete {
        /// The engine's kind.
        engine: &'static str,
        /// What stopped it.
        reason: String,
    },
    /// An engine setting that cannot be used (connection URL, database name).
    #[error("invalid engine configuration: {0}")]
    Config(String),
}

/// An error from a database library (SQLite's, PostgreSQL's), boxed so that
/// the drivers' types stay out of cipherdoc's API: what a caller may act on
/// is the engine, the database's own error code, and whether a retry may
/// succeed; the library's error itself is the [`std::error::Error::source`].
#[derive(Debug)]
pub struct BackendError {
    engine: &'static str,
    code: Option<String>,
    retryable: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    /// The engine whose library failed: `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The database's own code for the error, when it gave one:
    /// PostgreSQL's SQLSTATE (`"23505"`), SQLite's extended result code
    /// (`"2067"`).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The library's error as its own type, for the engine that made it.
    #[cfg(feature = "postgres")]
    pub(crate) fn driver<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.source.downcast_ref()
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.engine, self.source)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

// The two `From` impls below exist for `?` inside the engines; they are
// hidden from the documentation because the drivers' types are not
// cipherdoc's API.

#[cfg(feature = "sqlite")]
#[doc(hidden)]
impl From<rusqlite::Error> for EngineError {
    /// SQLite's result codes that an operator must act on get variants of
    /// their own; the rest become [`EngineError::Backend`].
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let failure = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(*f),
            _ => None,
        };
        match failure.map(|f| f.code) {
            Some(ErrorCode::DiskFull) => Self::StorageFull {
                engine: "sqlite",
                detail: e.to_string(),
            },
            Some(ErrorCode::ReadOnly) => Self::ReadOnly {
                engine: "sqlite",
                detail: e.to_string(),
            },
            code => Self::Backend(BackendError {
                engine: "sqlite",
                code: failure.map(|f| f.extended_code.to_string()),
                retryable: matches!(
                    code,
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ),
                source: Box::new(e),
            }),
        }
    }
}

#[cfg(feature = "postgres")]
#[doc(hidden)]
impl From<tokio_postgres::Error> for EngineError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Backend(BackendError {
            engine: "postgres",
            code: e.code().map(|c| c.code().to_owned()),
            retryable: postgres_retryable(&e),
            source: Box::new(e),
        })
    }
}

impl EngineError {
    /// Whether the same operation may succeed if simply tried again, with
    /// nothing of the failed attempt committed: the connection to the
    /// server was lost or refused (a restarted server, a killed backend,
    /// an exhausted pool), a transaction was aborted by a serialization
    /// failure or deadlock, or the database was busy. Errors that need
    /// someone to act first (a full disk, a read-only file, bad input)
    /// are not.
    ///
    /// A write whose connection was lost during `COMMIT` may have been
    /// committed; retrying it can meet its own first attempt (a duplicate
    /// `_id` says so).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::PostgresPool(_)
            | Self::Connection { .. }
            | Self::Qe(crate::qe_server::QeError::WriteConflict { .. }) => true,
            Self::Backend(b) => b.retryable,
            _ => false,
        }
    }
}

/// A PostgreSQL error is retryable when the connection is gone (closed, or
/// the server terminated the backend: class 57P, 08) or the transaction was
/// rolled back by the server for concurrency (40001, 40P01).
#[cfg(feature = "postgres")]
fn postgres_retryable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01"
        }
        // No SQLSTATE: an I/O error on the connection.
        None => std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()),
    }
}

impl EngineError {
    /// What a [`crate::Transaction::fail_fast`] transaction answers, to
    /// every later operation and to `commit`, after one of its operations
    /// failed (both engines).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) const FAIL_FAST_FAILED: Self = Self::TransactionClosed(
        "an operation of this fail-fast transaction failed; nothing of it is committed",
    );
}

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
