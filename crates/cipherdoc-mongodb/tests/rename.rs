//! `Engine::rename_collection` on `engine = "mongodb"`, against `cipherdoc
//! serve` over SQLite and (with `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL:
//! `renameCollection` with `dropTarget` for `DropExisting`. Documents,
//! indexes and QE state move with the collection (an encrypted document is
//! still found by its tag under the new name, the state counted through the
//! `enxcol_` collections its `encryptedFields` name), an existing target is
//! refused or dropped as asked, the old name is free for a new encrypted
//! collection, a missing source is `CollectionNotFound`; and
//! `scrub_freed_space` is `Unsupported`, never a silent no-op.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

use bson::{Bson, doc};
use cipherdoc_crypto::client::{UserKey, encrypt_equality_find, encrypt_equality_insert};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cipherdoc_engine::{
    CreateCollectionOptions, Engine, EngineError, Filter, FindOptions, IndexSpec, RenameTarget,
};
use cipherdoc_mongodb::MongoEngine;

fn enc(bytes: Vec<u8>) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: bson::spec::BinarySubtype::Encrypted,
        bytes,
    })
}

async fn check(engine: &MongoEngine) {
    let key_id = KeyId::from_slice(&[7; 16]).unwrap();
    let data_key = DataKey::from_slice(&[9; 96]).unwrap();
    let tokens = IndexKeyTokens::new(key_id, &data_key);
    let efc = doc! {"fields": [{"path": "ssn", "bsonType": "string", "keyId": key_id.to_binary(),
    "queries": {"queryType": "equality", "contention": 0_i32}}]};
    let value = Bson::String("123-45-6789".into());
    let find = enc(encrypt_equality_find(&value, &tokens, 0).unwrap().encode());

    engine
        .create_collection("old", CreateCollectionOptions::default())
        .await
        .unwrap();
    engine
        .create_index("old", IndexSpec::new("k"))
        .await
        .unwrap();
    engine
        .insert_many(
            "old",
            vec![doc! {"_id": 1, "k": "a"}, doc! {"_id": 2, "k": "b"}],
        )
        .await
        .unwrap();
    engine
        .create_collection(
            "new",
            CreateCollectionOptions {
                encrypted_fields: Some(efc.clone()),
            },
        )
        .await
        .unwrap();
    let payload = encrypt_equality_insert(
        &value,
        &tokens,
        UserKey {
            id: key_id,
            key: &data_key,
        },
        0,
        &mut OsRandom,
    )
    .unwrap();
    engine
        .insert_one("new", doc! {"_id": 3, "ssn": enc(payload.encode())})
        .await
        .unwrap();
    let state_before = engine.qe_state_sizes("new").await.unwrap();

    // Refused while the target exists, unless asked to drop it.
    let e = engine
        .rename_collection("new", "old", RenameTarget::MustNotExist)
        .await
        .unwrap_err();
    assert!(
        matches!(e, EngineError::CollectionExists(ref n) if n == "old"),
        "{e}"
    );
    engine
        .rename_collection("new", "old", RenameTarget::DropExisting)
        .await
        .unwrap();
    let names = engine.list_collections().await.unwrap();
    assert!(!names.contains(&"new".to_owned()), "{names:?}");
    let info = engine.describe_collection("old").await.unwrap().unwrap();
    assert!(info.options.encrypted_fields.is_some());
    assert!(
        info.indexes.is_empty(),
        "the dropped collection's index went with it"
    );
    let found = engine
        .find(
            "old",
            &Filter::eq("ssn", find.clone()),
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_i32("_id"), Ok(3));
    assert_eq!(engine.count("old", &Filter::eq("k", "a")).await.unwrap(), 0);
    assert_eq!(engine.qe_state_sizes("old").await.unwrap(), state_before);

    // The state collections the renamed collection's encryptedFields name
    // exist, and no other.
    let listed = engine
        .run_command(doc! {"listCollections": 1, "nameOnly": true})
        .await
        .unwrap();
    let mut state: Vec<String> = listed
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .filter_map(|d| d.as_document()?.get_str("name").ok())
        .filter(|n| n.starts_with("enxcol_."))
        .map(str::to_owned)
        .collect();
    state.sort();
    let ef = info.options.encrypted_fields.unwrap();
    let mut recorded = vec![
        ef.get_str("ecocCollection").unwrap().to_owned(),
        ef.get_str("escCollection").unwrap().to_owned(),
    ];
    recorded.sort();
    assert_eq!(state, recorded);

    // The old name is free for a new encrypted collection.
    engine
        .create_collection(
            "new",
            CreateCollectionOptions {
                encrypted_fields: Some(efc),
            },
        )
        .await
        .unwrap();
    assert_eq!(engine.count("new", &Filter::all()).await.unwrap(), 0);
    assert_eq!(
        engine
            .find("old", &Filter::eq("ssn", find), &FindOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // A plaintext collection keeps its documents and index under the new name.
    engine
        .create_collection("plain", CreateCollectionOptions::default())
        .await
        .unwrap();
    engine
        .create_index("plain", IndexSpec::new("k"))
        .await
        .unwrap();
    engine
        .insert_one("plain", doc! {"_id": 5, "k": "z"})
        .await
        .unwrap();
    engine
        .rename_collection("plain", "renamed", RenameTarget::MustNotExist)
        .await
        .unwrap();
    let info = engine
        .describe_collection("renamed")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.indexes.len(), 1);
    assert_eq!(info.indexes[0].path, "k");
    assert_eq!(
        engine
            .count("renamed", &Filter::eq("k", "z"))
            .await
            .unwrap(),
        1
    );
    assert!(engine.describe_collection("plain").await.unwrap().is_none());
    let e = engine
        .rename_collection("missing", "x", RenameTarget::MustNotExist)
        .await
        .unwrap_err();
    assert!(
        matches!(e, EngineError::CollectionNotFound(ref n) if n == "missing"),
        "{e}"
    );

    let e = engine.scrub_freed_space().await.unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::Unsupported {
                engine: "mongodb",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_everything_against_serve_on_sqlite() {
    check(&common::engine(common::Store::Sqlite).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_everything_against_serve_on_postgres() {
    let Some(engine) = common::engine(common::Store::Postgres).await else {
        return;
    };
    check(&engine).await;
}
