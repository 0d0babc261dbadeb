//! The engine contract suite on SQLite.

// The factory is test code (it may panic) and must be async to fit the macro.
#![allow(clippy::expect_used, clippy::unused_async)]

use cipherdoc_engine::sqlite::SqliteEngine;

async fn fresh() -> SqliteEngine {
    SqliteEngine::temporary().expect("temporary SQLite database")
}

cipherdoc_engine::engine_contract_tests!(fresh);
