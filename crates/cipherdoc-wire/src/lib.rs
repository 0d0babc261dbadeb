//! `cipherdoc serve`: a MongoDB wire-protocol endpoint over cipherdoc's
//! engines (SQLite, PostgreSQL) that plays the Queryable Encryption server
//! role where mongod plays it, so that MongoDB drivers with libmongocrypt —
//! pymongo with pymongocrypt, unmodified — use it as they would a MongoDB
//! 8.0 replica set.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use cipherdoc_wire::{Backend, Server, ServerConfig};
//! let config = ServerConfig::new(Backend::Sqlite { dir: "var/wire".into() });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:27017").await?;
//! Server::new(config).serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! The layers, outside in:
//! - [`frame`]: `OP_MSG` (document sequences, CRC-32C checksums, the 48 MB
//!   limit, `moreToCome`), and `OP_QUERY`/`OP_REPLY` for the legacy
//!   handshake only. A malformed frame closes its connection, with the
//!   reason logged; the server keeps serving.
//! - `server`: connections, the handshake (`hello` as a one-member replica
//!   set primary, or a standalone), command dispatch, sessions and
//!   transactions (`lsid`, `txnNumber`, `autocommit: false`) mapped onto
//!   engine transactions ([`cipherdoc_engine::Engine::begin`]).
//! - `catalog`, `crud`, `update`, `pipeline`: MongoDB's commands over the
//!   [`cipherdoc_engine::Engine`] and [`cipherdoc_engine::Transaction`]
//!   traits. What the engine lacks (update operators, `findAndModify`,
//!   `distinct`, aggregation stages) runs here over find + replace/insert/
//!   delete inside one engine transaction, with the engine's reference
//!   filter semantics ([`cipherdoc_engine::Filter::matches`]).
//! - `qe`: mongod's gatekeeping around the QE server role — a command that
//!   carries `encryptionInformation` is checked against the collection's
//!   `encryptedFields` and then handed to [`cipherdoc_engine::qe_server::QeServer`];
//!   a payload without it, a multi-document update or delete of an
//!   encrypted collection through it, or a client write to
//!   `__safeContent__` is refused with mongod's code and message;
//!   `compactStructuredEncryptionData` and
//!   `cleanupStructuredEncryptionData` take the client's tokens.
//!
//! Nothing here logs a value: each command is logged at debug level by
//! name, database, collection and connection only.

mod backend;
mod catalog;
pub mod client;
mod crud;
mod cursor;
mod error;
pub mod frame;
mod pipeline;
mod qe;
mod server;
mod session;
pub mod testing;
mod update;

pub use backend::{Backend, Databases, validate_db_name};
pub use error::{CommandError, ErrorCode};
pub use server::{Server, ServerConfig, Topology};

/// The `maxWireVersion` of MongoDB 8.0, which this server answers by
/// default.
pub const MAX_WIRE_VERSION: i32 = 25;

/// The server version `buildInfo` reports.
pub const SERVER_VERSION: &str = "8.0.4";
