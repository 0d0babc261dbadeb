//! The engine contract suite on `engine = "mongodb"`, against `cipherdoc
//! serve` over SQLite (in this process), one fresh database per check.
//!
//! The checks listed here pass; the rest of the server-role contract
//! (`crud`, `catalog`, `filters_every_operator_every_type`, `indexes`,
//! `key_vault`, `sort_skip_limit_projection`, `transactions`,
//! `concurrent_writers`) is open work on this engine (issue 17): the
//! server's duplicate-key message, regex lookups, projection and
//! collection-name refusals, multi-document deletes on encrypted
//! collections and concurrent transactions still differ.

// The factory is test code (it may panic) and must be async to fit the macro.
#![allow(clippy::expect_used)]

mod common;

use cipherdoc_mongodb::{MongoEngine, MongoTopology, WIRE_VERSION_8_0};

async fn fresh() -> MongoEngine {
    common::engine(common::Store::Sqlite)
        .await
        .expect("SQLite needs no configuration")
}

cipherdoc_engine::engine_contract_tests!(@each fresh;
    fail_fast_transactions, filter_semantics, random_filters, transact_runs_one_transaction);

/// `hello` is recorded at connect: `cipherdoc serve` is a one-member
/// replica set answering MongoDB 8.0's wire version.
#[tokio::test]
async fn the_server_is_described_at_connect() {
    let e = fresh().await;
    assert_eq!(
        e.server().topology,
        MongoTopology::ReplicaSet {
            set_name: "cipherdoc".into()
        }
    );
    assert_eq!(e.server().max_wire_version, WIRE_VERSION_8_0);
    assert!(e.server().has_transactions());
    let debug = format!("{e:?}");
    assert!(debug.contains("MongoEngine"), "{debug}");
}
