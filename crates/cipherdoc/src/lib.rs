//! cipherdoc: a Rust data layer with MongoDB Queryable Encryption.

pub mod key_vault;
pub mod model;
pub mod settings;
