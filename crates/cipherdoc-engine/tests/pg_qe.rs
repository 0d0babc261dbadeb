//! The QE property suite on PostgreSQL, unchanged from SQLite's, one fresh
//! schema per check. Runs when `CIPHERDOC_TEST_POSTGRES_URL` is set;
//! otherwise every check prints `skipped: CIPHERDOC_TEST_POSTGRES_URL is not
//! set` and passes.

#![allow(clippy::expect_used)]

use cipherdoc_engine::postgres::{PgEngine, testing};

async fn fresh() -> PgEngine {
    let url = testing::test_url().expect("checked before");
    PgEngine::temporary(&url)
        .await
        .expect("a fresh schema on the test PostgreSQL server")
}

cipherdoc_engine::qe_server_tests!({
    if testing::test_url().is_none() {
        return;
    }
    fresh
});

cipherdoc_engine::qe_server_text_tests!({
    if testing::test_url().is_none() {
        return;
    }
    fresh
});
