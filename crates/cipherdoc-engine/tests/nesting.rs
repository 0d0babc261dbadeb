//! Issue 15, the nesting attack: a database writer replaces a stored
//! document by one nested 100,000 levels deep. The `bson` crate's decoding
//! recurses, so without a limit the next read overflows the stack and kills
//! the process. Each engine checks the depth without recursion first:
//! reads of such a document are a clean `TooDeep` error, and writes deeper
//! than `MAX_DOCUMENT_DEPTH` are refused before anything is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bson::{Bson, Document, doc};
use cipherdoc_engine::postgres::{PgEngine, testing};
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{
    CreateCollectionOptions, Engine, EngineError, Filter, FindOptions, MAX_DOCUMENT_DEPTH,
};

const DEEP: usize = 100_000;

/// The BSON bytes of `{_id: 1, a: {a: {… {} …}}}` with `levels` nested
/// documents under `a`, written front to back in one pass (no recursion,
/// no quadratic copying).
fn deep_bytes(levels: usize) -> Vec<u8> {
    // Each nested level is len(4) + type(1) + "a\0"(2) + … + terminator(1).
    let inner_len = |k: usize| 5 + 8 * (levels - k); // size of level k (1-based)
    let id_elem = 1 + 4 + 4; // 0x10 "_id\0" int32
    let root_len = 4 + id_elem + 1 + 2 + inner_len(1) + 1;
    let mut out = Vec::with_capacity(root_len);
    out.extend_from_slice(&i32::try_from(root_len).unwrap().to_le_bytes());
    out.extend_from_slice(&[0x10, b'_', b'i', b'd', 0, 1, 0, 0, 0]);
    out.extend_from_slice(&[0x03, b'a', 0]);
    for k in 1..=levels {
        out.extend_from_slice(&i32::try_from(inner_len(k)).unwrap().to_le_bytes());
        if k < levels {
            out.extend_from_slice(&[0x03, b'a', 0]);
        }
    }
    out.extend(std::iter::repeat_n(0u8, levels + 1));
    assert_eq!(out.len(), root_len);
    out
}

/// `{_id: 2, a: {a: …}}` as a `Document` with `levels` nested documents.
fn nested(levels: usize) -> Document {
    let mut v = Document::new();
    for _ in 0..levels {
        v = doc! { "a": v };
    }
    let mut d = doc! { "_id": 2 };
    d.extend(v);
    d
}

async fn attack(engine: &dyn Engine, overwrite: impl AsyncFnOnce(Vec<u8>)) {
    engine
        .create_collection("c", CreateCollectionOptions::default())
        .await
        .unwrap();
    engine
        .insert_one("c", doc! { "_id": 1, "x": 1 })
        .await
        .unwrap();
    overwrite(deep_bytes(DEEP)).await;
    let err = engine
        .find("c", &Filter::all(), &FindOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::TooDeep { collection, limit } if collection == "c" && *limit == MAX_DOCUMENT_DEPTH),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("nested deeper than 100 levels"),
        "{err}"
    );
    let raw_err = engine
        .find_raw("c", &Filter::all(), &FindOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&raw_err, EngineError::TooDeep { collection, .. } if collection == "c"),
        "{raw_err:?}"
    );

    // Writes: at the limit stored and read back; one level more refused,
    // nothing stored.
    let ok = nested(MAX_DOCUMENT_DEPTH - 1);
    assert!(!cipherdoc_engine::document_too_deep(&ok));
    engine.insert_one("ok", ok.clone()).await.unwrap();
    let back = engine
        .find("ok", &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(back, vec![ok]);
    let deep = nested(MAX_DOCUMENT_DEPTH);
    assert!(cipherdoc_engine::document_too_deep(&deep));
    for r in [
        engine.insert_one("w", deep.clone()).await.map(|_| ()),
        engine
            .insert_many("w", vec![deep.clone()])
            .await
            .map(|_| ()),
        engine
            .replace_one("ok", &Bson::Int32(2), deep.clone())
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(EngineError::TooDeep { .. })), "{r:?}");
    }
    assert_eq!(engine.count("w", &Filter::all()).await.unwrap_or(0), 0);
    assert_eq!(
        engine
            .find("ok", &Filter::all(), &FindOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_deeply_nested_stored_document_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let engine = SqliteEngine::open(&path).unwrap();
    attack(&engine, async |bytes| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let n = conn
            .execute("UPDATE \"c\" SET doc = ?1", rusqlite::params![bytes])
            .unwrap();
        assert_eq!(n, 1);
    })
    .await;
}

#[tokio::test]
async fn a_deeply_nested_stored_document_is_refused_on_postgres() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let engine = PgEngine::temporary(&url).await.unwrap();
    let schema = engine.schema().to_owned();
    attack(&engine, async |bytes| {
        let client = testing::connect(&url).await.unwrap();
        let n = client
            .execute(
                &format!("UPDATE \"{schema}\".\"c\" SET doc = $1"),
                &[&bytes],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    })
    .await;
}
