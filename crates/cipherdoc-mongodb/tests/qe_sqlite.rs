//! The QE suites (equality, range refusals, compaction, transactions,
//! concurrency; text search) on `engine = "mongodb"`, against `cipherdoc
//! serve` over SQLite: the server plays the QE role, the engine sends the
//! payloads in the commands libmongocrypt would send, and the suites read
//! the server's ESC/ECOC only by counting its `enxcol_` collections.

#![allow(clippy::expect_used)]

mod common;

use cipherdoc_mongodb::MongoEngine;

async fn fresh() -> MongoEngine {
    common::engine(common::Store::Sqlite)
        .await
        .expect("SQLite needs no configuration")
}

cipherdoc_engine::qe_server_tests!(fresh);
cipherdoc_engine::qe_server_text_tests!(fresh);
