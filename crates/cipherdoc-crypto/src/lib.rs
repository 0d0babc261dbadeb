//! MongoDB Queryable Encryption protocol v2 and FLE1, in pure synchronous Rust.
//!
//! This crate is filled by the protocol-core work (issue 2) and the range work
//! (issue 6); see `ARCHITECTURE.md` for what it owns.

pub mod range;
