//! cipherdoc: a Rust data layer with MongoDB Queryable Encryption.
