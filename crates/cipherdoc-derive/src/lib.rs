//! `#[derive(Model)]` and `#[derive(EmbeddedModel)]` for cipherdoc.
