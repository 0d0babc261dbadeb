//! MongoDB Queryable Encryption protocol v2 and FLE1, in pure synchronous Rust.
//!
//! Byte-compatible with libmongocrypt and the MongoDB server (see
//! `qe-protocol.md`). No I/O, no async: callers bring keys, random bytes and,
//! for the server role, a probe into their ESC storage.
//!
//! * [`key`] — data keys, key ids, local master key wrapping, key documents.
//! * [`aead`] — the symmetric constructions (FLE1, FLE2v2 CBC-AEAD, CTR).
//! * [`tokens`] — the token hierarchy, one type per token.
//! * [`random`] — random sources and the contention-factor draw.
//! * [`server`] — what `mongod` does with QE payloads (tags, ESC, emuBinary).
//! * [`range`] — range encodings, edges and mincover.
//! * [`text`] — text search: folding, StrEncode, string options.
//! * [`client`], [`client_range`], [`client_text`] — payloads from values
//!   (equality, range, text search) and values from stored blobs.
//! * [`payload`] — one codec per blob subtype; [`efc`] — `encryptedFields`.

pub mod aead;
pub mod client;
pub mod client_range;
pub mod client_text;
pub mod efc;
pub mod error;
pub mod key;
mod mac;
pub mod payload;
pub mod random;
pub mod range;
mod redact;
pub mod server;
pub mod text;
pub mod tokens;

pub use error::{Error, Result};
pub use key::{
    DataKey, KeyCheckValue, KeyDocument, KeyId, LocalMasterKey, unwrap_local, wrap_local,
};
pub use random::{OsRandom, PrefetchedRandom, RandomSource, ReplayRandom};
pub use redact::{Redacted, RedactedList};
