//! cipherdoc: a Rust data layer with MongoDB Queryable Encryption.

pub mod model;
pub mod settings;
