//! Storage behind one async [`Engine`] trait: catalog (collections with their
//! `encryptedFields`), documents, MongoDB-style filters ([`Filter`]),
//! transactions, and the ESC/ECOC state storage ([`QeState`]) that the QE
//! server role runs on.
//!
//! Engines: [`sqlite::SqliteEngine`] (embedded default) and
//! [`postgres::PgEngine`] (over TLS, verified, whenever the server is not on
//! this machine; see [`postgres::PgTransport`]). Every engine must pass the
//! [`contract`] suite.

pub mod contract;
pub(crate) mod docs;
mod engine;
mod error;
pub mod filter;
pub mod keyvault;
pub mod postgres;
pub mod qe_server;
pub mod qe_state;
pub mod sqlite;
pub mod value;

pub use engine::{
    CollectionInfo, CreateCollectionOptions, Engine, FindOptions, IndexSpec, SortDirection,
    Transaction, TxFuture, TxMode, TxOutput, TxWork, transact,
};
pub use error::{EngineError, Result};
pub use filter::{FieldOp, Filter, FilterError};
pub use qe_state::{EcocEntry, EscEntry, EscId, EscValue, QeState, Tag};
