//! `Engine::rename_collection` (issue 19, the switch of a copy migration)
//! on SQLite and (with `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL: documents,
//! indexes, tags and ESC/ECOC move with the collection, its
//! `encryptedFields` name the new state collections, an existing target is
//! refused or dropped as asked, and the old name is free for a new
//! encrypted collection afterwards. And `scrub_freed_space` leaves no WAL
//! behind on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::doc;
use cipherdoc_engine::postgres::PgEngine;
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{
    CreateCollectionOptions, Engine, EngineError, Filter, FindOptions, IndexSpec, RenameTarget,
};

fn encrypted() -> CreateCollectionOptions {
    CreateCollectionOptions {
        encrypted_fields: Some(doc! { "fields": [] }),
    }
}

async fn check(engine: &dyn Engine) {
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
    engine.create_collection("new", encrypted()).await.unwrap();
    engine
        .insert_one("new", doc! {"_id": 3, "k": "c"})
        .await
        .unwrap();

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
    let ef = info.options.encrypted_fields.unwrap();
    assert_eq!(ef.get_str("escCollection").unwrap(), "enxcol_.old.esc");
    assert_eq!(ef.get_str("ecocCollection").unwrap(), "enxcol_.old.ecoc");
    assert!(
        info.indexes.is_empty(),
        "the dropped collection's index went with it"
    );
    let docs = engine
        .find("old", &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(docs, [doc! {"_id": 3, "k": "c"}]);
    assert_eq!(engine.count("old", &Filter::eq("k", "a")).await.unwrap(), 0);

    // The old name is free for a new encrypted collection.
    engine.create_collection("new", encrypted()).await.unwrap();
    engine.insert_one("new", doc! {"_id": 4}).await.unwrap();
    assert_eq!(engine.count("new", &Filter::all()).await.unwrap(), 1);

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
    assert_eq!(info.indexes, [IndexSpec::new("k")]);
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
    assert!(matches!(e, EngineError::CollectionNotFound(_)), "{e}");
}

#[tokio::test]
async fn rename_moves_everything_on_sqlite_and_scrub_truncates_the_wal() {
    let raw = SqliteEngine::temporary().unwrap();
    let engine = QeServer::new(std::sync::Arc::new(raw.clone()));
    check(&engine).await;
    engine
        .insert_one("renamed", doc! {"_id": 6, "k": "canary-scrub"})
        .await
        .unwrap();
    engine.scrub_freed_space().await.unwrap();
    let wal = raw.path().with_extension("db-wal");
    let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(len, 0, "the WAL is truncated");
}

#[tokio::test]
async fn rename_moves_everything_on_postgres() {
    let Some(url) = cipherdoc_engine::postgres::testing::test_url() else {
        return;
    };
    let raw = PgEngine::temporary(&url).await.unwrap();
    let engine = QeServer::new(std::sync::Arc::new(raw));
    check(&engine).await;
    engine.scrub_freed_space().await.unwrap();
}
