//! SQLite-only checks: query plans use the indexes, data survives reopening
//! and a killed writer process, background WAL checkpoints, and a proptest
//! property (random documents and filters → the engine agrees with the
//! in-memory evaluator).

use bson::{Bson, Document, doc};
use cipherdoc_engine::contract::{Rng, random_doc, random_filter};
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{
    CreateCollectionOptions, Engine, EscId, EscValue, Filter, FindOptions, IndexSpec, Tag,
};
use proptest::prelude::*;

mod crash;

fn plan_text(lines: &[String]) -> String {
    lines.join(" | ")
}

#[tokio::test]
async fn indexed_equality_range_id_and_tag_lookups_use_indexes() {
    let e = SqliteEngine::temporary().unwrap();
    e.create_collection(
        "p",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    e.create_index("p", IndexSpec::new("ssn")).await.unwrap();
    let docs: Vec<Document> = (0..200)
        .map(|i| doc! {"ssn": format!("{i:03}"), "n": i})
        .collect();
    e.insert_many("p", docs).await.unwrap();

    let eq = plan_text(&e.explain("p", &Filter::eq("ssn", "042")).await.unwrap());
    assert!(eq.contains("p.$idx.ssn_1") && eq.contains("SEARCH"), "{eq}");
    let both = Filter::and([Filter::eq("n", 5), Filter::eq("ssn", "005")]);
    let both_plan = plan_text(&e.explain("p", &both).await.unwrap());
    assert!(both_plan.contains("p.$idx.ssn_1"), "{both_plan}");
    let range = plan_text(&e.explain("p", &Filter::gt("ssn", "190")).await.unwrap());
    assert!(
        range.contains("p.$idx.ssn_1") && range.contains("key>?"),
        "{range}"
    );
    let between = Filter::and([Filter::gt("ssn", "100"), Filter::lt("ssn", "110")]);
    let two_sided = plan_text(&e.explain("p", &between).await.unwrap());
    assert!(
        two_sided.contains("p.$idx.ssn_1")
            && two_sided.contains("key>? AND key<?")
            && !two_sided.contains("SCAN p"),
        "{two_sided}"
    );
    assert_eq!(e.count("p", &between).await.unwrap(), 9);
    let prefix = plan_text(
        &e.explain("p", &Filter::starts_with("ssn", "19"))
            .await
            .unwrap(),
    );
    assert!(
        prefix.contains("p.$idx.ssn_1") && prefix.contains("key>? AND key<?"),
        "{prefix}"
    );
    let id = plan_text(&e.explain("p", &Filter::eq("_id", 1)).await.unwrap());
    assert!(id.contains("SEARCH") && id.contains("id=?"), "{id}");
    let tags = plan_text(
        &e.explain("p", &Filter::tag_in([Tag::from_bytes([1; 32])]))
            .await
            .unwrap(),
    );
    assert!(
        tags.contains("p.$tags") && tags.contains("SEARCH"),
        "{tags}"
    );
    let scan = plan_text(&e.explain("p", &Filter::eq("n", 5)).await.unwrap());
    assert!(scan.contains("SCAN"), "unindexed path scans: {scan}");

    assert_eq!(e.count("p", &Filter::eq("ssn", "042")).await.unwrap(), 1);
    assert_eq!(e.count("p", &Filter::gt("ssn", "190")).await.unwrap(), 9);
    assert_eq!(e.count("p", &both).await.unwrap(), 1);
    assert_eq!(
        e.count("p", &Filter::starts_with("ssn", "19"))
            .await
            .unwrap(),
        10
    );
}

#[tokio::test]
async fn data_survives_reopen_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let e = SqliteEngine::open(&path).unwrap();
        e.create_collection(
            "c",
            CreateCollectionOptions {
                encrypted_fields: Some(doc! {"fields": []}),
            },
        )
        .await
        .unwrap();
        e.create_index("c", IndexSpec::new("k").unique())
            .await
            .unwrap();
        e.insert_one("c", doc! {"_id": 1, "k": "x"}).await.unwrap();
    }
    let e = SqliteEngine::open(&path).unwrap();
    assert_eq!(
        e.find("c", &Filter::eq("k", "x"), &FindOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(e.insert_one("c", doc! {"k": "x"}).await.is_err());
    let info = e.describe_collection("c").await.unwrap().unwrap();
    assert_eq!(info.indexes.len(), 1);
    assert!(info.options.encrypted_fields.is_some());
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A database of an earlier version, whose `$indexes` has no multikey
/// flag, is upgraded at open with every index multikey: a two-sided range
/// then still finds a document that meets each bound with another element.
#[tokio::test]
async fn an_earlier_database_gets_multikey_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let e = SqliteEngine::open(&path).unwrap();
        e.create_index("c", IndexSpec::new("a")).await.unwrap();
        e.insert_many(
            "c",
            vec![doc! {"_id": 1, "a": [0, 40]}, doc! {"_id": 2, "a": 15}],
        )
        .await
        .unwrap();
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE \"$indexes\" DROP COLUMN multikey;")
        .unwrap();
    let e = SqliteEngine::open(&path).unwrap();
    let between = Filter::and([Filter::gt("a", 10), Filter::lt("a", 20)]);
    assert_eq!(e.count("c", &between).await.unwrap(), 2);
    let flag: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT multikey FROM \"$indexes\"", [], |r| r.get(0))
        .unwrap();
    assert_eq!(flag, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_file_do_not_lose_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let a = std::sync::Arc::new(SqliteEngine::open(&path).unwrap());
    let b = std::sync::Arc::new(SqliteEngine::open(&path).unwrap());
    let mut hs = Vec::new();
    for e in [a.clone(), b.clone()] {
        hs.push(tokio::spawn(async move {
            for i in 0..150 {
                e.insert_one("c", doc! {"i": i}).await.unwrap();
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    assert_eq!(a.count("c", &Filter::all()).await.unwrap(), 300);
}

/// The ESC anchors index answers "any anchors?" exactly: false for a new
/// collection and with only non-anchors; true as soon as an anchor or a
/// null anchor exists, in the same transaction; false again once they are
/// all deleted. Also after a reopen (the index is created for databases
/// that lack it).
#[tokio::test]
async fn esc_anchor_presence_follows_the_esc() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let e = SqliteEngine::open(&path).unwrap();
    e.create_collection(
        "q",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    let mut tx = e.begin().await.unwrap();
    assert!(!tx.qe_state().unwrap().esc_has_anchors("q").await.unwrap());
    tx.qe_state()
        .unwrap()
        .esc_insert_many(
            "q",
            &[
                (EscId::from_bytes([1; 32]), None),
                (EscId::from_bytes([2; 32]), None),
            ],
        )
        .await
        .unwrap();
    assert!(!tx.qe_state().unwrap().esc_has_anchors("q").await.unwrap());
    tx.qe_state()
        .unwrap()
        .esc_upsert(
            "q",
            &EscId::from_bytes([3; 32]),
            Some(EscValue(vec![7; 32])),
        )
        .await
        .unwrap();
    assert!(tx.qe_state().unwrap().esc_has_anchors("q").await.unwrap());
    tx.commit().await.unwrap();
    drop(e);
    let e = SqliteEngine::open(&path).unwrap();
    let mut tx = e.begin().await.unwrap();
    assert!(tx.qe_state().unwrap().esc_has_anchors("q").await.unwrap());
    assert_eq!(
        tx.qe_state()
            .unwrap()
            .esc_delete_many("q", &[EscId::from_bytes([3; 32])])
            .await
            .unwrap(),
        1
    );
    assert!(!tx.qe_state().unwrap().esc_has_anchors("q").await.unwrap());
    assert!(matches!(
        tx.qe_state()
            .unwrap()
            .esc_has_anchors("missing")
            .await
            .unwrap_err(),
        cipherdoc_engine::EngineError::CollectionNotFound(_)
    ));
    tx.rollback().await.unwrap();
}

/// A caller that stops waiting for `transact` (its future dropped while
/// the work runs on the blocking thread) does not wedge the engine: the
/// work runs to its end and commits, and the writer is free afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_transact_runs_to_its_end_and_frees_the_writer() {
    use cipherdoc_engine::{TxMode, transact};
    let e = SqliteEngine::temporary().unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let engine = e.clone();
    let call = tokio::spawn(async move {
        transact(&engine, TxMode::Write, move |tx| {
            Box::pin(async move {
                tx.insert_one("c", doc! {"_id": 1}).await?;
                // Runs on the engine's blocking thread: waiting here holds
                // the transaction open while the caller goes away.
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                tx.insert_one("c", doc! {"_id": 2}).await?;
                Ok(())
            })
        })
        .await
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    go_tx.send(()).unwrap();
    // The next write waits for the abandoned one, then goes through.
    e.insert_one("c", doc! {"_id": 3}).await.unwrap();
    let mut ids: Vec<i32> = e
        .find("c", &Filter::all(), &FindOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_agrees_with_evaluator(seed in any::<u64>(), n in 1usize..40, indexed in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let e = SqliteEngine::temporary().unwrap();
            let mut rng = Rng::new(seed);
            if indexed {
                for p in ["a", "b.c"] {
                    e.create_index("r", IndexSpec::new(p)).await.unwrap();
                }
            }
            let docs: Vec<Document> = (0..i32::try_from(n).unwrap()).map(|i| random_doc(&mut rng, i)).collect();
            e.insert_many("r", docs.clone()).await.unwrap();
            for _ in 0..30 {
                let f = random_filter(&mut rng, 3);
                let want: Vec<Bson> = docs.iter().filter(|d| f.matches(d)).map(|d| d.get("_id").unwrap().clone()).collect();
                let got: Vec<Bson> = e.find("r", &f, &FindOptions::default()).await.unwrap()
                    .iter().map(|d| d.get("_id").unwrap().clone()).collect();
                assert_eq!(got, want, "filter {f:?}");
            }
        });
    }
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// WAL checkpoints run on the engine's background thread: the database file
/// grows while the WAL is still below the size at which the writer would
/// checkpoint itself. Under a writer that never pauses, the WAL stays
/// bounded by that size (plus one transaction). Nothing is lost, and once
/// the engine is dropped every connection is closed (SQLite removes the WAL
/// file with the last one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_is_checkpointed_in_the_background_and_stays_bounded() {
    use cipherdoc_engine::sqlite::{CHECKPOINT_PAGES, WAL_LIMIT_PAGES};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let wal = dir.path().join("w.db-wal");
    let page = 4096 + 24; // a WAL frame: page and frame header
    let e = SqliteEngine::open(&path).unwrap();
    let filler = "x".repeat(3000); // one document per page, about
    let batch = |from: i64| -> Vec<Document> {
        (from..from + 100)
            .map(|i| doc! {"i": i, "filler": filler.clone()})
            .collect()
    };
    let db_before = file_len(&path);
    // About 2.5 checkpoints' worth of pages, far below the writer's limit.
    let mut n = 0;
    while file_len(&wal) < u64::from(CHECKPOINT_PAGES) * 5 / 2 * page {
        e.insert_many("c", batch(n)).await.unwrap();
        n += 100;
    }
    let mut waited = 0;
    while file_len(&path) <= db_before && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert!(
        file_len(&path) > db_before,
        "no background checkpoint copied pages into the database file"
    );
    // A writer that never pauses: the WAL stays bounded.
    let bound = (u64::from(WAL_LIMIT_PAGES) + 200) * page + 32;
    let mut largest = 0;
    for _ in 0..(WAL_LIMIT_PAGES / 100 * 2) {
        e.insert_many("c", batch(n)).await.unwrap();
        n += 100;
        largest = largest.max(file_len(&wal));
    }
    assert!(
        largest <= bound,
        "WAL grew to {largest} bytes (bound {bound})"
    );
    assert_eq!(
        e.count("c", &Filter::all()).await.unwrap(),
        u64::try_from(n).unwrap()
    );
    drop(e);
    assert!(!wal.exists(), "a connection outlived the engine");
    let e = SqliteEngine::open(&path).unwrap();
    assert_eq!(
        e.count("c", &Filter::all()).await.unwrap(),
        u64::try_from(n).unwrap()
    );
}

/// The child side of [`killed_writer_loses_no_acknowledged_write`]: inserts
/// batches of 100 documents into the database named by
/// `CIPHERDOC_CRASH_DB` until it is killed, printing each acknowledged
/// batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by killed_writer_loses_no_acknowledged_write"]
async fn crash_child_writes_until_killed() {
    let e = SqliteEngine::open(crash::child_db()).unwrap();
    let filler = "y".repeat(3000);
    for b in 0_i64.. {
        let docs = (0..100)
            .map(|i| doc! {"_id": b * 100 + i, "b": b, "filler": filler.clone()})
            .collect();
        e.insert_many("c", docs).await.unwrap();
        crash::acked(b);
    }
}

/// A writer process killed (SIGKILL) in the middle of bulk inserts, with
/// background checkpoints running: the database passes SQLite's integrity
/// check, every batch whose insert returned is there, and no batch is
/// there in part.
#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    // About 100 pages a batch: 60 batches span several checkpoints.
    let acked = crash::kill_after_batch("crash_child_writes_until_killed", &path, 60);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let e = SqliteEngine::open(&path).unwrap();
        let total = e.count("c", &Filter::all()).await.unwrap();
        assert_eq!(
            total % 100,
            0,
            "a batch is there in part: {total} documents"
        );
        for b in 0..=acked {
            assert_eq!(
                e.count("c", &Filter::eq("b", b)).await.unwrap(),
                100,
                "acknowledged batch {b}"
            );
        }
        assert!(total >= u64::try_from(acked + 1).unwrap() * 100);
    });
}

/// A database file the engine creates, and the WAL and shared-memory files
/// SQLite makes beside it, are readable by their owner only; an existing
/// file keeps the mode its owner gave it.
#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_and_its_wal_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let engine = SqliteEngine::open(&path).unwrap();
    engine.insert_one("c", doc! {"a": 1}).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("new.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
    drop(engine);

    let shared = dir.path().join("shared.db");
    std::fs::write(&shared, b"").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let engine = SqliteEngine::open(&shared).unwrap();
    engine.insert_one("c", doc! {"a": 1}).await.unwrap();
    assert_eq!(mode(&shared), 0o640);
}
