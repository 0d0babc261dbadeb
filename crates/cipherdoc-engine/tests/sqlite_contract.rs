//! The engine contract suite on SQLite.

use cipherdoc_engine::sqlite::SqliteEngine;

async fn fresh() -> SqliteEngine {
    SqliteEngine::temporary().expect("temporary SQLite database")
}

cipherdoc_engine::engine_contract_tests!(fresh);
