//! The engine contract suite on `engine = "mongodb"`, against `cipherdoc
//! serve` over SQLite (in this process), one fresh database per check:
//! every check of an engine whose server plays the QE role.

// The factory is test code (it may panic) and must be async to fit the macro.
#![allow(clippy::expect_used)]

mod common;

use cipherdoc_mongodb::{MongoEngine, MongoTopology, WIRE_VERSION_8_0};

async fn fresh() -> MongoEngine {
    common::engine(common::Store::Sqlite)
        .await
        .expect("SQLite needs no configuration")
}

cipherdoc_engine::engine_contract_tests!(server_role: fresh);

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
