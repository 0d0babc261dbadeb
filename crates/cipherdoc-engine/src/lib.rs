//! Storage behind one async [`Engine`] trait: catalog (collections with their
//! `encryptedFields`), documents, MongoDB-style filters ([`Filter`]),
//! transactions, and the ESC/ECOC state storage ([`QeState`]) that the QE
//! server role runs on — a capability of engines whose QE role cipherdoc
//! plays ([`QeRole::Client`]), reached through [`Transaction::qe_state`].
//!
//! Engines: [`sqlite::SqliteEngine`] (embedded default) and
//! [`postgres::PgEngine`] (over TLS, verified, whenever the server is not on
//! this machine; see [`postgres::PgTransport`]). Every engine must pass the
//! [`contract`] suite.

#[cfg(feature = "testing")]
pub mod contract;
// Shared by the SQLite and PostgreSQL engines.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) mod documents;
pub use documents::{MAX_DOCUMENT_DEPTH, document_too_deep};
mod engine;
mod error;
pub mod filter;
pub mod key_vault;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod qe_server;
// The access path of a read, shared by the SQLite and PostgreSQL engines.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod plan;
pub mod qe_state;
// Shared by the SQLite and PostgreSQL engines' scans.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod raw;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod value;

pub use engine::{
    CollectionInfo, CreateCollectionOptions, Engine, FailedOperation, FindOptions, IndexSpec,
    QeRole, QeStateSizes, RenameTarget, SortDirection, Transaction, TxFuture, TxMode, TxOutput,
    TxWork, transact,
};
pub use error::{BackendError, EngineError, Result};
pub use filter::{EncStrOp, FieldOp, Filter, FilterError};
pub use qe_state::{EcocEntry, EcocGeneration, EscEntry, EscId, EscValue, QeState, Tag};

/// Sort documents as `find` sorts them (MongoDB's order: an array sorts by
/// its smallest element ascending, its largest descending; ties keep their
/// order), for callers that sort in memory (the wire server's aggregation
/// stages).
pub fn sort_documents(
    docs: Vec<bson::Document>,
    sort: &[(String, SortDirection)],
) -> Vec<bson::Document> {
    documents::sort_docs(docs, sort)
}

/// The owned document of one that [`Engine::find_raw`] returned, decoded
/// in one pass that also enforces [`MAX_DOCUMENT_DEPTH`]: faster than
/// `bson`'s own conversion for documents made mostly of binaries (an
/// encrypted document's stored values and tags). `collection` names the
/// collection in the error.
///
/// # Errors
///
/// [`EngineError::Corrupt`] or [`EngineError::TooDeep`].
pub fn decode_raw(collection: &str, raw: &bson::RawDocument) -> Result<bson::Document> {
    raw::decode(collection, raw.as_bytes())
}

/// Apply a MongoDB projection as `find` applies it (`{a: 1}` inclusion,
/// `{a: 0}` exclusion, `_id` kept unless `_id: 0`).
pub fn project(doc: bson::Document, projection: &bson::Document) -> Result<bson::Document> {
    Ok(documents::Projection::parse(projection)?.apply(doc))
}
