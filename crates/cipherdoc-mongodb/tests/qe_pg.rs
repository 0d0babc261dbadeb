//! The QE suites on `engine = "mongodb"`, against `cipherdoc serve` over
//! PostgreSQL. Runs when `CIPHERDOC_TEST_POSTGRES_URL` is set; otherwise
//! every check prints why it is skipped and passes (unless
//! `CIPHERDOC_REQUIRE_POSTGRES=1`).

#![allow(clippy::expect_used)]

mod common;

use cipherdoc_mongodb::MongoEngine;

async fn fresh() -> MongoEngine {
    common::engine(common::Store::Postgres)
        .await
        .expect("checked before")
}

cipherdoc_engine::qe_server_tests!({
    if common::server(common::Store::Postgres).is_none() {
        return;
    }
    fresh
});
cipherdoc_engine::qe_server_text_tests!({
    if common::server(common::Store::Postgres).is_none() {
        return;
    }
    fresh
});
