//! What the MongoDB engine refuses because of the deployment, each with an
//! error naming the collection (and the field) and saying what to do,
//! against `cipherdoc serve` reporting another wire version or topology:
//! range fields on MongoDB 7.0 (wire version 21), encrypted collections on a
//! standalone server, and on a sharded cluster a collection sharded on an
//! encrypted field. Plain collections work on all of them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bson::{Bson, doc};
use cipherdoc_engine::qe_server::suite::TestClient;
use cipherdoc_engine::{CreateCollectionOptions, Engine, EngineError, Filter};
use cipherdoc_mongodb::{MongoTopology, WIRE_VERSION_7_0};
use cipherdoc_wire::Topology;

fn range_fields() -> bson::Document {
    doc! {"fields": [{"path": "n", "keyId": Bson::Binary(bson::Binary {
    subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![7; 16] }),
    "bsonType": "long",
    "queries": {"queryType": "range", "contention": 0, "min": 0_i64, "max": 100_i64, "sparsity": 1}}]}
}

fn encrypted(efc: bson::Document) -> CreateCollectionOptions {
    CreateCollectionOptions {
        encrypted_fields: Some(efc),
    }
}

/// Plain collections work: a round trip of documents.
async fn plain_round_trip(e: &dyn Engine) {
    e.create_collection("plain", CreateCollectionOptions::default())
        .await
        .unwrap();
    e.insert_many(
        "plain",
        vec![doc! {"_id": 1, "a": 1}, doc! {"_id": 2, "a": 2}],
    )
    .await
    .unwrap();
    assert_eq!(e.count("plain", &Filter::gte("a", 2)).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_fields_are_refused_on_mongodb_7_0_and_equality_is_served() {
    let addr = common::sqlite_server_with(|c| c.max_wire_version(WIRE_VERSION_7_0));
    let e = common::engine_at(&addr, &common::fresh_name()).await;
    assert_eq!(e.server().max_wire_version, WIRE_VERSION_7_0);
    let err = e
        .create_collection("ranged", encrypted(range_fields()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidEncryptedFields { collection, reason }
            if collection == "ranged" && reason.contains("8.0") && reason.contains("wire version 21")),
        "{err}"
    );
    // Nothing was created, not even the state collections.
    assert!(e.list_collections().await.unwrap().is_empty());
    let raw = e
        .run_command(doc! {"listCollections": 1, "nameOnly": true})
        .await
        .unwrap();
    let first = raw
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert!(first.is_empty(), "{raw}");

    // Equality and unindexed fields are what MongoDB 7.0 serves.
    let client = TestClient::new(0);
    client.create_collection(&e, "people").await;
    e.insert_one("people", client.document(1, "ada", 30, "n"))
        .await
        .unwrap();
    let q = client.find_payload("name", &Bson::String("ada".into()));
    assert_eq!(e.count("people", &Filter::eq("name", q)).await.unwrap(), 1);
    plain_round_trip(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_is_refused_for_encrypted_collections_only() {
    let addr = common::sqlite_server_with(|c| c.topology(Topology::Standalone));
    let e = common::engine_at(&addr, &common::fresh_name()).await;
    assert_eq!(e.server().topology, MongoTopology::Standalone);
    assert!(!e.server().has_transactions());
    let client = TestClient::new(0);
    let err = e
        .create_collection("people", encrypted(client.encrypted_fields()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidEncryptedFields { collection, reason }
            if collection == "people" && reason.contains("standalone") && reason.contains("replica set")),
        "{err}"
    );
    assert!(e.list_collections().await.unwrap().is_empty());
    plain_round_trip(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_sharded_on_an_encrypted_field_is_refused() {
    let addr = common::sqlite_server_with(|c| c.topology(Topology::Mongos));
    let name = common::fresh_name();
    let e = common::engine_at(&addr, &name).await;
    assert_eq!(e.server().topology, MongoTopology::Sharded);
    let client = TestClient::new(0);
    client.create_collection(&e, "by_name").await;
    client.create_collection(&e, "by_region").await;
    // The config server's view, as mongos serves it.
    let config = common::engine_at(&addr, "config").await;
    config
        .insert_many(
            "collections",
            vec![
                doc! {"_id": format!("{name}.by_name"), "key": {"name": 1}},
                doc! {"_id": format!("{name}.by_region"), "key": {"region": 1}},
            ],
        )
        .await
        .unwrap();
    // The catalog is read afresh after its time to live.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let err = e
        .insert_one("by_name", client.document(1, "ada", 30, "n"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidEncryptedFields { collection, reason }
            if collection == "by_name" && reason.contains("\"name\"") && reason.contains("shard")),
        "{err}"
    );
    let q = client.find_payload("name", &Bson::String("ada".into()));
    assert!(matches!(
        e.count("by_name", &Filter::eq("name", q.clone()))
            .await
            .unwrap_err(),
        EngineError::InvalidEncryptedFields { .. }
    ));
    // Nothing reached the collection.
    let raw = e.run_command(doc! {"count": "by_name"}).await.unwrap();
    assert_eq!(raw.get_i32("n").unwrap_or_default(), 0, "{raw}");
    // A plaintext shard key is fine.
    e.insert_one("by_region", client.document(1, "ada", 30, "n"))
        .await
        .unwrap();
    assert_eq!(
        e.count("by_region", &Filter::eq("name", q)).await.unwrap(),
        1
    );
    plain_round_trip(&e).await;
}
