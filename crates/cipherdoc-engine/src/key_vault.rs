//! The key vault as an ordinary collection of an engine.

use crate::{Engine, IndexSpec, Result};

/// Name of the unique index on `keyAltNames`.
pub const KEY_ALT_NAMES_INDEX: &str = "keyAltNames_1";

/// Create (if needed) the key vault collection `collection` — the part of
/// the settings' `key_vault_namespace` after the database, e.g. `__keyVault`
/// for `encrypted_db.__keyVault` — with a unique, sparse index on
/// `keyAltNames`: each alternate name may belong to one key only (arrays are
/// indexed element by element), and keys without `keyAltNames` are ignored,
/// like MongoDB's partial index `{keyAltNames: {$exists: true}}`.
/// Idempotent.
pub async fn ensure_key_vault(engine: &dyn Engine, collection: &str) -> Result<()> {
    engine
        .create_index(
            collection,
            IndexSpec::new("keyAltNames")
                .named(KEY_ALT_NAMES_INDEX)
                .unique()
                .sparse(),
        )
        .await
}
