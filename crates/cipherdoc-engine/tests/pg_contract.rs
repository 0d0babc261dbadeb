//! The engine contract suite on PostgreSQL, one fresh schema per check.
//! Runs when `CIPHERDOC_TEST_POSTGRES_URL` is set; otherwise every check
//! prints `skipped: CIPHERDOC_TEST_POSTGRES_URL is not set` and passes.

// The factory is test code (it may panic) and must be async to fit the macro.
#![allow(clippy::expect_used)]

use cipherdoc_engine::postgres::{PgEngine, testing};

async fn fresh() -> PgEngine {
    let url = testing::test_url().expect("checked before");
    PgEngine::temporary(&url)
        .await
        .expect("a fresh schema on the test PostgreSQL server")
}

// The block runs inside each generated test before the factory is called:
// without a server it returns from the test, which is reported as skipped.
cipherdoc_engine::engine_contract_tests!({
    if testing::test_url().is_none() {
        return;
    }
    fresh
});
