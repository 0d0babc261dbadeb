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

/// Finds that need `getMore` (more than the first batch of 101), run
/// concurrently on one engine: each cursor stays in the session that opened
/// it. With a command per implicit session, the driver's pool handed a
/// `getMore` another find's session and the server refused it (50737).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finds_follow_their_cursors_in_their_own_session() {
    use cipherdoc_engine::{Engine, Filter, FindOptions};
    let e = std::sync::Arc::new(fresh().await);
    let docs: Vec<bson::Document> = (0..300).map(|i| bson::doc! {"_id": i, "n": i}).collect();
    e.insert_many("c", docs).await.expect("insert");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let e = std::sync::Arc::clone(&e);
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let all = e
                    .find("c", &Filter::all(), &FindOptions::default())
                    .await
                    .expect("every batch of the cursor");
                assert_eq!(all.len(), 300);
            }
        }));
    }
    for t in tasks {
        t.await.expect("no find fails");
    }
}
