//! PostgreSQL-only checks: query plans use the index tables, `bytea` keys
//! order like `encode_key`, ESC contention from 16 connections loses
//! nothing, DDL and writers interleave safely, compaction's lock waits for
//! and holds off writers, long names, dropped transactions, and the canary
//! scan of the server's files.
//! Each test runs when `CIPHERDOC_TEST_POSTGRES_URL` is set and otherwise
//! prints why it is skipped.

// Test helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use cipherdoc_engine::contract::{Rng, sample_values};
use cipherdoc_engine::postgres::{PgEngine, PgOptions, testing};
use cipherdoc_engine::{
    CreateCollectionOptions, EcocEntry, Engine, EngineError, EscId, EscValue, Filter, FindOptions,
    IndexSpec, Tag, Transaction,
};

fn encrypted() -> CreateCollectionOptions {
    CreateCollectionOptions {
        encrypted_fields: Some(doc! {"fields": []}),
    }
}

fn bin(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

async fn raw_client(url: &str) -> tokio_postgres::Client {
    testing::connect(url).await.unwrap()
}

/// A schema of an earlier version, whose `$indexes` has no multikey flag,
/// is upgraded at connect with every index multikey: a two-sided range
/// then still finds a document that meets each bound with another element.
#[tokio::test]
async fn an_earlier_schema_gets_multikey_indexes() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_index("c", IndexSpec::new("a")).await.unwrap();
    e.insert_many(
        "c",
        vec![doc! {"_id": 1, "a": [0, 40]}, doc! {"_id": 2, "a": 15}],
    )
    .await
    .unwrap();
    let indexes = format!("\"{}\".\"$indexes\"", e.schema());
    let c = raw_client(&url).await;
    c.batch_execute(&format!("ALTER TABLE {indexes} DROP COLUMN multikey"))
        .await
        .unwrap();
    let again = PgEngine::connect(&url, e.schema()).await.unwrap();
    let between = Filter::and([Filter::gt("a", 10), Filter::lt("a", 20)]);
    assert_eq!(again.count("c", &between).await.unwrap(), 2);
    let flag: bool = c
        .query_one(&format!("SELECT multikey FROM {indexes}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(flag);
}

/// The engine analyzes a collection's tables itself when its inserts reach
/// 1,024 documents and at each doubling (a cached generic plan is then
/// replanned for the grown tables, autovacuum or not), by autocommit writes
/// and by committed transactions alike; a rolled back transaction runs
/// none (what it made due waits for the next commit).
#[tokio::test]
async fn growth_analyzes_the_collection_tables() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    let c = raw_client(&url).await;
    // reltuples of each table of the schema: -1 until analyzed.
    let tuples = |collection: &'static str| {
        let (c, schema) = (&c, e.schema().to_owned());
        async move {
            let rows = c
                .query(
                    "SELECT c.relname, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relkind = 'r' AND (c.relname = $2 OR c.relname LIKE $2 || '.%' OR c.relname LIKE 'enxcol_.' || $2 || '.%')",
                    &[&schema, &collection],
                )
                .await
                .unwrap();
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, f32>(1)))
                .collect::<Vec<_>>()
        }
    };
    for name in ["auto", "tx"] {
        e.create_collection(name, encrypted()).await.unwrap();
        e.create_index(name, IndexSpec::new("a")).await.unwrap();
    }
    let batch = |from: i32| -> Vec<Document> {
        (from..from + 500)
            .map(|i| doc! {"_id": i, "a": i % 7})
            .collect()
    };
    // 1,000 documents: nothing analyzed yet.
    for from in [0, 500] {
        e.insert_many("auto", batch(from)).await.unwrap();
    }
    let before = tuples("auto").await;
    assert_eq!(
        before.len(),
        5,
        "documents, index, tags, ESC, ECOC: {before:?}"
    );
    assert!(before.iter().all(|(_, n)| *n < 0.0), "{before:?}");
    // The insert that reaches 1,024 makes every table analyzed.
    e.insert_many("auto", batch(1000)).await.unwrap();
    let after = tuples("auto").await;
    assert!(after.iter().all(|(_, n)| *n >= 0.0), "{after:?}");
    let docs = after.iter().find(|(t, _)| t == "auto").unwrap().1;
    assert!((1400.0..=1600.0).contains(&docs), "{after:?}");

    // Dropped and created again: the count starts again, so the new tables
    // are analyzed at 1,024 of their own documents, not at the old count's
    // next doubling (2,048: 1,500 before plus 1,000 now would reach it).
    e.drop_collection("auto").await.unwrap();
    e.create_collection("auto", encrypted()).await.unwrap();
    e.create_index("auto", IndexSpec::new("a")).await.unwrap();
    for from in [0, 500] {
        e.insert_many("auto", batch(from)).await.unwrap();
    }
    let again = tuples("auto").await;
    assert!(again.iter().all(|(_, n)| *n < 0.0), "{again:?}");
    e.insert_many("auto", batch(1000)).await.unwrap();
    let again = tuples("auto").await;
    assert!(again.iter().all(|(_, n)| *n >= 0.0), "{again:?}");

    // In a transaction: none while rolled back, all once committed.
    let mut t = e.begin().await.unwrap();
    t.insert_many("tx", batch(0)).await.unwrap();
    t.insert_many("tx", batch(500)).await.unwrap();
    t.insert_many("tx", batch(1000)).await.unwrap();
    t.rollback().await.unwrap();
    let rolled_back = tuples("tx").await;
    assert!(rolled_back.iter().all(|(_, n)| *n < 0.0), "{rolled_back:?}");
    let mut t = e.begin().await.unwrap();
    for from in [2000, 2500, 3000] {
        t.insert_many("tx", batch(from)).await.unwrap();
    }
    t.commit().await.unwrap();
    let tx = tuples("tx").await;
    assert!(tx.iter().all(|(_, n)| *n >= 0.0), "{tx:?}");
}

/// `ANALYZE` every table of the engine's schema, so the planner knows the
/// sizes (autovacuum may not have run yet).
async fn analyze(url: &str, e: &PgEngine) {
    let c = raw_client(url).await;
    let rows = c
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = $1",
            &[&e.schema()],
        )
        .await
        .unwrap();
    for r in rows {
        let t: String = r.get(0);
        c.batch_execute(&format!("ANALYZE {t}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_equality_range_id_and_tag_lookups_use_indexes() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("p", encrypted()).await.unwrap();
    e.create_index("p", IndexSpec::new("ssn")).await.unwrap();
    let docs: Vec<Document> = (0..5000)
        .map(|i| {
            doc! {"_id": i, "ssn": format!("{i:05}"), "n": i,
            "__safeContent__": [bin(&[u8::try_from(i % 251).unwrap(); 32])]}
        })
        .collect();
    e.insert_many("p", docs).await.unwrap();
    analyze(&url, &e).await;

    let plan = |f: Filter| {
        let e = e.clone();
        async move { e.explain("p", &f).await.unwrap().join(" | ") }
    };
    let eq = plan(Filter::eq("ssn", "00042")).await;
    assert!(
        eq.contains("p.$idx.ssn_1") && eq.contains("Index") && !eq.contains("Seq Scan"),
        "{eq}"
    );
    let both = plan(Filter::and([
        Filter::eq("n", 5),
        Filter::eq("ssn", "00005"),
    ]))
    .await;
    assert!(
        both.contains("p.$idx.ssn_1") && !both.contains("Seq Scan"),
        "{both}"
    );
    let range = plan(Filter::gt("ssn", "04990")).await;
    assert!(
        range.contains("p.$idx.ssn_1")
            && range.contains("Index Cond")
            && !range.contains("Seq Scan"),
        "{range}"
    );
    let two_sided = plan(Filter::and([
        Filter::gte("ssn", "02000"),
        Filter::lt("ssn", "02010"),
    ]))
    .await;
    // Both bounds in the index condition; the only sequential scan is of
    // the one-row catalog table that holds the multikey flag.
    assert!(
        two_sided.contains("p.$idx.ssn_1")
            && two_sided.contains("Index Cond: ((key >= ")
            && two_sided.contains("AND (key < ")
            && !two_sided.contains("Seq Scan on p ")
            && !two_sided.contains("Seq Scan on \"p.$idx"),
        "{two_sided}"
    );
    let prefix = plan(Filter::starts_with("ssn", "0499")).await;
    assert!(
        prefix.contains("p.$idx.ssn_1")
            && prefix.contains("Index Cond")
            && !prefix.contains("Seq Scan"),
        "{prefix}"
    );
    let id = plan(Filter::eq("_id", 1)).await;
    assert!(
        id.contains("Index Scan") && !id.contains("Seq Scan"),
        "{id}"
    );
    let tags = plan(Filter::tag_in([Tag::from_bytes([7; 32])])).await;
    assert!(
        tags.contains("p.$tags") && tags.contains("Index") && !tags.contains("Seq Scan"),
        "{tags}"
    );
    let scan = plan(Filter::eq("n", 5)).await;
    assert!(
        !scan.contains("$idx") && !scan.contains("$tags"),
        "an unindexed path reads the whole table (in rid order): {scan}"
    );

    assert_eq!(e.count("p", &Filter::eq("ssn", "00042")).await.unwrap(), 1);
    assert_eq!(e.count("p", &Filter::gt("ssn", "04990")).await.unwrap(), 9);
    assert_eq!(
        e.count("p", &Filter::starts_with("ssn", "0499"))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        e.count("p", &Filter::tag_in([Tag::from_bytes([7; 32])]))
            .await
            .unwrap(),
        20
    );
}

/// `bytea` has no collation and compares bytewise, so the index tables'
/// btree order is `encode_key`'s order: range queries through an index give
/// exactly what the evaluator gives, for every BSON type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_keys_order_like_encode_key() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let c = raw_client(&url).await;
    let coll: u32 = c
        .query_one(
            "SELECT typcollation FROM pg_type WHERE typname = 'bytea'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(coll, 0, "bytea must not be collatable");
    // Byte order, shorter prefix first, even across 0x00 and 0xff.
    let ordered: Vec<Vec<u8>> = c
        .query(
            "SELECT k FROM unnest(ARRAY['\\xff'::bytea, '\\x00ff', '\\x00', '\\x', '\\x0100', '\\x01']) k ORDER BY k",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut want = ordered.clone();
    want.sort();
    assert_eq!(ordered, want);

    let e = PgEngine::temporary(&url).await.unwrap();
    let vals = sample_values();
    let docs: Vec<Document> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| doc! {"_id": i32::try_from(i).unwrap(), "v": v.clone()})
        .collect();
    e.insert_many("o", docs.clone()).await.unwrap();
    e.create_index("o", IndexSpec::new("v")).await.unwrap();
    for x in &vals {
        for f in [
            Filter::lt("v", x.clone()),
            Filter::lte("v", x.clone()),
            Filter::gt("v", x.clone()),
            Filter::gte("v", x.clone()),
            Filter::eq("v", x.clone()),
        ] {
            let want = docs.iter().filter(|d| f.matches(d)).count() as u64;
            assert_eq!(e.count("o", &f).await.unwrap(), want, "{f:?}");
        }
    }
}

fn position_id(pos: u64) -> EscId {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&pos.to_le_bytes());
    id[8..16].copy_from_slice(b"escpos..");
    EscId::from_bytes(id)
}

fn position_tag(pos: u64) -> Tag {
    let mut t = [0u8; 32];
    t[..8].copy_from_slice(&pos.to_le_bytes());
    t[8..16].copy_from_slice(b"tagpos..");
    Tag::from_bytes(t)
}

/// The first free ESC position (positions are contiguous from 1), probed
/// with batched lookups as emuBinary does: powers of two first, then a
/// 32-way search between the last taken and the first free power.
async fn first_free(tx: &mut Box<dyn Transaction>, c: &str) -> u64 {
    let powers: Vec<u64> = (0..40).map(|i| 1u64 << i).collect();
    let ids: Vec<EscId> = powers.iter().map(|p| position_id(*p)).collect();
    let got = tx.qe_state().unwrap().esc_get_many(c, &ids).await.unwrap();
    let free = got.iter().position(Option::is_none).unwrap();
    let (mut lo, mut hi) = (if free == 0 { 0 } else { powers[free - 1] }, powers[free]);
    while hi - lo > 1 {
        let step = ((hi - lo) / 32).max(1);
        let probes: Vec<u64> = (1..=32)
            .map(|k| lo + k * step)
            .filter(|p| *p < hi)
            .collect();
        let ids: Vec<EscId> = probes.iter().map(|p| position_id(*p)).collect();
        let got = tx.qe_state().unwrap().esc_get_many(c, &ids).await.unwrap();
        match got.iter().position(Option::is_none) {
            Some(i) => {
                hi = probes[i];
                if i > 0 {
                    lo = probes[i - 1];
                }
            }
            None => lo = *probes.last().unwrap(),
        }
    }
    hi
}

/// The first free position after `taken`, probing 32 at a time (the
/// re-probe after a lost race: everything up to `taken` is committed).
async fn next_free_after(tx: &mut Box<dyn Transaction>, c: &str, taken: u64) -> u64 {
    let mut from = taken + 1;
    loop {
        let ids: Vec<EscId> = (from..from + 32).map(position_id).collect();
        let got = tx.qe_state().unwrap().esc_get_many(c, &ids).await.unwrap();
        if let Some(i) = got.iter().position(Option::is_none) {
            return from + i as u64;
        }
        from += 32;
    }
}

/// 16 connections × 500 inserts of "the same value" (contention 0): every
/// writer probes the same ESC positions, loses some races, gets
/// `EscIdConflict`, re-probes in the same transaction and retries. Every
/// insert ends up with its own position; all 8000 documents are found
/// through their tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esc_contention_16_connections_x_500_loses_nothing() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("v", encrypted()).await.unwrap();
    let e: Arc<dyn Engine> = Arc::new(e);
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..16 {
        let (e, retries) = (Arc::clone(&e), Arc::clone(&retries));
        handles.push(tokio::spawn(async move {
            for i in 0..500 {
                let mut tx = e.begin().await.unwrap();
                let mut pos = first_free(&mut tx, "v").await;
                loop {
                    match tx
                        .qe_state()
                        .unwrap()
                        .esc_insert("v", &position_id(pos), None)
                        .await
                    {
                        Ok(()) => break,
                        Err(EngineError::EscIdConflict { .. }) => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            // `pos` is now committed by the winner: the next
                            // free position is after it (one batched probe).
                            pos = next_free_after(&mut tx, "v", pos).await;
                        }
                        Err(other) => panic!("esc_insert: {other}"),
                    }
                }
                tx.qe_state()
                    .unwrap()
                    .ecoc_append("v", "value", &pos.to_le_bytes())
                    .await
                    .unwrap();
                tx.insert_one(
                    "v",
                    doc! {"task": task, "i": i, "__safeContent__": [bin(position_tag(pos).as_bytes())]},
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "16x500 contended ESC inserts: {:?}, {} conflicts retried",
        elapsed,
        retries.load(Ordering::Relaxed)
    );
    let mut tx = e.begin().await.unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("v").await.unwrap(), 8000);
    assert_eq!(tx.qe_state().unwrap().ecoc_count("v").await.unwrap(), 8000);
    let all: Vec<EscId> = (1..=8000).map(position_id).collect();
    assert!(
        tx.qe_state()
            .unwrap()
            .esc_get_many("v", &all)
            .await
            .unwrap()
            .iter()
            .all(Option::is_some),
        "positions 1..=8000 are all taken, no gap"
    );
    assert_eq!(first_free(&mut tx, "v").await, 8001);
    tx.rollback().await.unwrap();
    assert_eq!(e.count("v", &Filter::all()).await.unwrap(), 8000);
    let tags: Vec<Tag> = (1..=8000).map(position_tag).collect();
    assert_eq!(e.count("v", &Filter::tag_in(tags)).await.unwrap(), 8000);
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "16 writers on one value must have collided at least once"
    );
}

/// An index created while writers insert covers every document: the index
/// build waits for open writers and later writers see the new index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_during_concurrent_inserts_misses_nothing() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e: Arc<dyn Engine> = Arc::new(PgEngine::temporary(&url).await.unwrap());
    e.insert_one("w", doc! {"k": -1}).await.unwrap();
    let mut handles = Vec::new();
    for task in 0..8 {
        let e = Arc::clone(&e);
        handles.push(tokio::spawn(async move {
            for i in 0..150 {
                if i % 10 == 0 {
                    let mut tx = e.begin().await.unwrap();
                    tx.insert_one("w", doc! {"k": i % 7, "task": task})
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    tx.insert_one("w", doc! {"k": i % 7, "task": task})
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                } else {
                    e.insert_one("w", doc! {"k": i % 7, "task": task})
                        .await
                        .unwrap();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.create_index("w", IndexSpec::new("k")).await.unwrap();
    for h in handles {
        h.await.unwrap();
    }
    let total = e.count("w", &Filter::all()).await.unwrap();
    assert_eq!(total, 1 + 8 * (135 + 15 * 2));
    let mut through_index = 0;
    for k in -1..7 {
        through_index += e.count("w", &Filter::eq("k", k)).await.unwrap();
    }
    assert_eq!(through_index, total, "every document is in the index");
}

/// 16 first inserts into a missing collection create it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_inserts_create_the_collection_once() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e: Arc<dyn Engine> = Arc::new(PgEngine::temporary(&url).await.unwrap());
    let mut handles = Vec::new();
    for task in 0..16 {
        let e = Arc::clone(&e);
        handles.push(tokio::spawn(async move {
            e.insert_one("fresh", doc! {"task": task}).await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        e.list_collections().await.unwrap(),
        vec!["fresh".to_owned()]
    );
    assert_eq!(e.count("fresh", &Filter::all()).await.unwrap(), 16);
}

/// Names beyond PostgreSQL's 63-byte identifiers get distinct tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_collection_names_do_not_collide() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    let a = format!("{}_a", "x".repeat(70));
    let b = format!("{}_b", "x".repeat(70));
    for (n, name) in [&a, &b].into_iter().enumerate() {
        e.create_collection(name, encrypted()).await.unwrap();
        e.create_index(name, IndexSpec::new("k").unique().named("y".repeat(80)))
            .await
            .unwrap();
        let mut tx = e.begin().await.unwrap();
        tx.insert_one(name, doc! {"k": 1, "__safeContent__": [bin(&[1; 32])]})
            .await
            .unwrap();
        tx.qe_state()
            .unwrap()
            .esc_insert(
                name,
                &EscId::from_bytes([9; 32]),
                Some(EscValue(vec![u8::try_from(n).unwrap()])),
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    for name in [&a, &b] {
        assert_eq!(e.count(name, &Filter::eq("k", 1)).await.unwrap(), 1);
        assert_eq!(
            e.count(name, &Filter::tag_in([Tag::from_bytes([1; 32])]))
                .await
                .unwrap(),
            1
        );
        assert!(matches!(
            e.insert_one(name, doc! {"k": 1}).await.unwrap_err(),
            EngineError::DuplicateKey { .. }
        ));
    }
    let mut tx = e.begin().await.unwrap();
    assert_eq!(
        tx.qe_state()
            .unwrap()
            .esc_get(&b, &EscId::from_bytes([9; 32]))
            .await
            .unwrap()
            .unwrap()
            .value,
        Some(EscValue(vec![1]))
    );
    tx.rollback().await.unwrap();
}

/// A transaction dropped without commit leaves nothing and holds no lock:
/// DDL on its collection proceeds right away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_transaction_rolls_back_and_releases_locks() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("d", encrypted()).await.unwrap();
    {
        let mut tx = e.begin().await.unwrap();
        tx.insert_one("d", doc! {"_id": 1, "k": 1}).await.unwrap();
        tx.qe_state()
            .unwrap()
            .esc_insert("d", &EscId::from_bytes([1; 32]), None)
            .await
            .unwrap();
    }
    let t = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        e.create_index("d", IndexSpec::new("k")),
    )
    .await
    .expect("DDL is not blocked by the dropped transaction")
    .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(e.count("d", &Filter::all()).await.unwrap(), 0);
    let mut tx = e.begin().await.unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("d").await.unwrap(), 0);
    tx.qe_state()
        .unwrap()
        .esc_insert("d", &EscId::from_bytes([1; 32]), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// `begin_read` reads one snapshot: a document committed after its first
/// read is not seen by its later reads (while a new read sees it), and
/// writes through it fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_transaction_is_one_snapshot() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("s", encrypted()).await.unwrap();
    e.insert_one("s", doc! {"_id": 1}).await.unwrap();
    let mut r = e.begin_read().await.unwrap();
    assert_eq!(r.count("s", &Filter::all()).await.unwrap(), 1);
    assert_eq!(
        r.qe_state()
            .unwrap()
            .esc_get("s", &EscId::from_bytes([7; 32]))
            .await
            .unwrap(),
        None
    );
    e.insert_one("s", doc! {"_id": 2}).await.unwrap();
    let mut w = e.begin().await.unwrap();
    w.qe_state()
        .unwrap()
        .esc_insert("s", &EscId::from_bytes([7; 32]), None)
        .await
        .unwrap();
    w.commit().await.unwrap();
    assert_eq!(r.count("s", &Filter::all()).await.unwrap(), 1);
    assert_eq!(
        r.qe_state()
            .unwrap()
            .esc_get("s", &EscId::from_bytes([7; 32]))
            .await
            .unwrap(),
        None
    );
    assert!(r.insert_one("s", doc! {"_id": 3}).await.is_err());
    // The failed write was undone alone: the snapshot is still usable.
    assert_eq!(r.count("s", &Filter::all()).await.unwrap(), 1);
    drop(r);
    let mut r = e.begin_read().await.unwrap();
    assert_eq!(r.count("s", &Filter::all()).await.unwrap(), 2);
    assert!(
        r.qe_state()
            .unwrap()
            .esc_get("s", &EscId::from_bytes([7; 32]))
            .await
            .unwrap()
            .is_some()
    );
}

/// A transaction dropped without commit gives its connection back rolled
/// back: with a pool of one connection, the next operations run on it and
/// are not inside the dropped (read-only) transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_read_transaction_returns_a_clean_connection() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary_with(&url, PgOptions::default().max_connections(1))
        .await
        .unwrap();
    e.create_collection("c", encrypted()).await.unwrap();
    for i in 0..20u8 {
        {
            let mut r = e.begin_read().await.unwrap();
            assert_eq!(r.count("c", &Filter::all()).await.unwrap(), u64::from(i));
            r.qe_state()
                .unwrap()
                .esc_get_many("c", &[EscId::from_bytes([1; 32])])
                .await
                .unwrap();
        }
        e.insert_one("c", doc! {"_id": i32::from(i)}).await.unwrap();
        let mut tx = e.begin().await.unwrap();
        tx.qe_state()
            .unwrap()
            .esc_insert("c", &EscId::from_bytes([i; 32]), None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(e.count("c", &Filter::all()).await.unwrap(), 20);
}

/// `esc_insert_many` is all or none: one taken id fails the call with
/// `EscIdConflict`, inserts nothing, and leaves the transaction usable.
/// ECOC appends (sent with the next statement) are seen by later reads of
/// the transaction and committed with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esc_insert_many_all_or_none_and_ecoc_appends() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("m", encrypted()).await.unwrap();
    let mut tx = e.begin().await.unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert("m", &EscId::from_bytes([2; 32]), None)
        .await
        .unwrap();
    let batch: Vec<(EscId, Option<EscValue>)> = [1u8, 2, 3]
        .iter()
        .map(|b| (EscId::from_bytes([*b; 32]), Some(EscValue(vec![*b; 16]))))
        .collect();
    assert!(matches!(
        tx.qe_state().unwrap().esc_insert_many("m", &batch).await,
        Err(EngineError::EscIdConflict { .. })
    ));
    assert_eq!(tx.qe_state().unwrap().esc_count("m").await.unwrap(), 1);
    // A repeated id inside one batch conflicts too.
    let twice = vec![
        (EscId::from_bytes([4; 32]), None),
        (EscId::from_bytes([4; 32]), None),
    ];
    assert!(matches!(
        tx.qe_state().unwrap().esc_insert_many("m", &twice).await,
        Err(EngineError::EscIdConflict { .. })
    ));
    tx.qe_state()
        .unwrap()
        .esc_insert_many("m", &[batch[0].clone(), batch[2].clone()])
        .await
        .unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("m").await.unwrap(), 3);
    let got = tx
        .qe_state()
        .unwrap()
        .esc_get_many("m", &[EscId::from_bytes([3; 32])])
        .await
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().value, Some(EscValue(vec![3; 16])));
    let entries: Vec<EcocEntry> = (0..5u8)
        .map(|i| EcocEntry {
            field_name: format!("f{i}"),
            value: vec![i; 8],
        })
        .collect();
    tx.qe_state()
        .unwrap()
        .ecoc_append_many("m", &entries)
        .await
        .unwrap();
    tx.qe_state()
        .unwrap()
        .ecoc_append("m", "g", &[9; 8])
        .await
        .unwrap();
    assert_eq!(tx.qe_state().unwrap().ecoc_count("m").await.unwrap(), 6);
    tx.qe_state()
        .unwrap()
        .ecoc_append("m", "h", &[10; 8])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = e.begin().await.unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("m").await.unwrap(), 3);
    assert!(
        tx.qe_state()
            .unwrap()
            .ecoc_begin_compaction("m")
            .await
            .unwrap()
    );
    let read = tx.qe_state().unwrap().ecoc_read_compact("m").await.unwrap();
    let names: Vec<&str> = read.iter().map(|e| e.field_name.as_str()).collect();
    assert_eq!(names, ["f0", "f1", "f2", "f3", "f4", "g", "h"]);
    tx.rollback().await.unwrap();
}

/// A statement deferred to the next round trip (an ECOC append) that
/// fails there makes the transaction unusable: the next operation reports
/// the error, later ones and `commit` fail, and nothing is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deferred_statement_breaks_the_transaction() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("f", encrypted()).await.unwrap();
    let mut tx = e.begin().await.unwrap();
    tx.insert_one("f", doc! {"_id": 1}).await.unwrap();
    tx.qe_state()
        .unwrap()
        .ecoc_append("f", "x", &[1; 8])
        .await
        .unwrap();
    // The append has not reached the server: its table can still go.
    let raw = raw_client(&url).await;
    raw.batch_execute(&format!("DROP TABLE \"{}\".\"enxcol_.f.ecoc\"", e.schema()))
        .await
        .unwrap();
    assert!(tx.insert_one("f", doc! {"_id": 2}).await.is_err());
    assert!(matches!(
        tx.count("f", &Filter::all()).await,
        Err(EngineError::TransactionClosed(_))
    ));
    assert!(tx.commit().await.is_err());
    assert_eq!(
        e.find("f", &Filter::all(), &FindOptions::default())
            .await
            .unwrap()
            .len(),
        0
    );
}

/// In a fail-fast transaction the ESC insert rides in the next statement's
/// round trip and its row count is checked there: a taken id fails that
/// next operation with `EscIdConflict` (not the insert itself), later
/// operations and `commit` fail, and nothing is committed; a conflict
/// still pending at `commit` is seen before anything commits; without a
/// conflict, everything commits. The connection stays usable throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_esc_insert_is_checked_in_the_next_round_trip() {
    let Some(url) = testing::test_url() else {
        return;
    };
    // One connection: it must come back usable after each failure.
    let e = PgEngine::temporary_with(&url, PgOptions::default().max_connections(1))
        .await
        .unwrap();
    e.create_collection("d", encrypted()).await.unwrap();
    let mut tx = e.begin().await.unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert("d", &EscId::from_bytes([1; 32]), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let taken = [
        (EscId::from_bytes([2; 32]), None),
        (EscId::from_bytes([1; 32]), None),
    ];
    let conflict = |r: &cipherdoc_engine::Result<()>| matches!(r, Err(EngineError::EscIdConflict { collection }) if collection == "d");
    let closed =
        |r: &cipherdoc_engine::Result<()>| matches!(r, Err(EngineError::TransactionClosed(_)));

    let mut tx = e.begin().await.unwrap();
    tx.fail_fast();
    tx.insert_one("d", doc! {"_id": 1}).await.unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert_many("d", &taken)
        .await
        .unwrap();
    let next = tx.insert_one("d", doc! {"_id": 2}).await.map(|_| ());
    assert!(conflict(&next), "{next:?}");
    assert!(closed(&tx.count("d", &Filter::all()).await.map(|_| ())));
    assert!(closed(&tx.commit().await));

    // Pending at commit.
    let mut tx = e.begin().await.unwrap();
    tx.fail_fast();
    tx.insert_one("d", doc! {"_id": 3}).await.unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert_many("d", &taken)
        .await
        .unwrap();
    let commit = tx.commit().await;
    assert!(conflict(&commit), "{commit:?}");

    assert_eq!(e.count("d", &Filter::all()).await.unwrap(), 0);
    let mut tx = e.begin().await.unwrap();
    assert_eq!(
        tx.qe_state().unwrap().esc_count("d").await.unwrap(),
        1,
        "nothing of either"
    );
    tx.rollback().await.unwrap();

    // No conflict: the insert, the ECOC append and the document go out
    // together and commit.
    let mut tx = e.begin().await.unwrap();
    tx.fail_fast();
    tx.qe_state()
        .unwrap()
        .esc_insert_many(
            "d",
            &[
                (EscId::from_bytes([3; 32]), None),
                (EscId::from_bytes([4; 32]), None),
            ],
        )
        .await
        .unwrap();
    tx.qe_state()
        .unwrap()
        .ecoc_append("d", "x", &[1; 8])
        .await
        .unwrap();
    tx.insert_one("d", doc! {"_id": 4}).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(e.count("d", &Filter::all()).await.unwrap(), 1);
    let mut tx = e.begin().await.unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("d").await.unwrap(), 3);
    assert_eq!(tx.qe_state().unwrap().ecoc_count("d").await.unwrap(), 1);
    tx.rollback().await.unwrap();
}

/// A transaction's first ESC probe goes out with its catalog read, in one
/// round trip. On a plaintext or missing collection it still fails with
/// `NotEncrypted` / `CollectionNotFound` and leaves the transaction usable;
/// on an encrypted one it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_probe_of_a_transaction_checks_the_collection() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e = PgEngine::temporary(&url).await.unwrap();
    e.insert_one("plain", doc! {"_id": 1}).await.unwrap();
    e.create_collection("enc", encrypted()).await.unwrap();
    let mut tx = e.begin().await.unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert(
            "enc",
            &EscId::from_bytes([5; 32]),
            Some(EscValue(vec![5; 16])),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for read_only in [false, true] {
        for _ in 0..2 {
            let mut tx = if read_only {
                e.begin_read().await.unwrap()
            } else {
                e.begin().await.unwrap()
            };
            assert!(matches!(
                tx.qe_state()
                    .unwrap()
                    .esc_get_many("plain", &[EscId::from_bytes([5; 32])])
                    .await,
                Err(EngineError::NotEncrypted(_))
            ));
            assert_eq!(tx.count("plain", &Filter::all()).await.unwrap(), 1);
            drop(tx);
            let mut tx = if read_only {
                e.begin_read().await.unwrap()
            } else {
                e.begin().await.unwrap()
            };
            assert!(matches!(
                tx.qe_state()
                    .unwrap()
                    .esc_get_many("missing", &[EscId::from_bytes([5; 32])])
                    .await,
                Err(EngineError::CollectionNotFound(_))
            ));
            let got = tx
                .qe_state()
                .unwrap()
                .esc_get_many(
                    "enc",
                    &[EscId::from_bytes([6; 32]), EscId::from_bytes([5; 32])],
                )
                .await
                .unwrap();
            assert_eq!(got[0], None);
            assert_eq!(got[1].as_ref().unwrap().value, Some(EscValue(vec![5; 16])));
            drop(tx);
            let mut tx = if read_only {
                e.begin_read().await.unwrap()
            } else {
                e.begin().await.unwrap()
            };
            let got = tx
                .qe_state()
                .unwrap()
                .esc_get_many("enc", &[EscId::from_bytes([5; 32])])
                .await
                .unwrap();
            assert!(got[0].is_some());
            assert_eq!(tx.count("enc", &Filter::all()).await.unwrap(), 0);
        }
    }
}

fn random_token(rng: &mut Rng, prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// A stand-in for encryption (the QE layer does the real thing): the
/// plaintext bytes XORed with a keystream, so the canary itself never
/// reaches the engine.
fn pretend_encrypt(rng: &mut Rng, plain: &[u8]) -> Vec<u8> {
    plain
        .iter()
        .map(|b| b ^ u8::try_from(rng.next_u64() & 0xff).unwrap() ^ 0x5a)
        .collect()
}

/// Documents whose encrypted fields hold only ciphertext of secret
/// canaries: after a checkpoint, no file of the data directory (tables,
/// indexes, WAL) and no server log holds any secret canary, raw or as hex,
/// while the plaintext fields' canaries and the ciphertext bytes are found
/// (so the scan does see the stored data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_in_encrypted_fields_never_reach_the_server_files() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = (u64::from(std::process::id()) << 32) ^ u64::from(nanos);
    let mut rng = Rng::new(seed);
    let e = PgEngine::temporary(&url).await.unwrap();
    e.create_collection("patients", encrypted()).await.unwrap();
    e.create_index("patients", IndexSpec::new("name"))
        .await
        .unwrap();

    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut plaintexts: Vec<Vec<u8>> = Vec::new();
    let mut ciphertexts: Vec<Vec<u8>> = Vec::new();
    let mut first_id = None;
    let mut tx = e.begin().await.unwrap();
    for i in 0..20_u8 {
        let ssn = random_token(&mut rng, "SECRET-SSN-");
        let number = (rng.next_u64() >> 2).to_string();
        let name = random_token(&mut rng, "PLAIN-NAME-");
        let ct_ssn = pretend_encrypt(&mut rng, ssn.as_bytes());
        let ct_num = pretend_encrypt(&mut rng, number.as_bytes());
        let d = doc! {
            "name": name.clone(),
            "ssn": Bson::Binary(Binary { subtype: BinarySubtype::Encrypted, bytes: ct_ssn.clone() }),
            "balance": Bson::Binary(Binary { subtype: BinarySubtype::Encrypted, bytes: ct_num }),
            "__safeContent__": [bin(&[i; 32])],
        };
        let id = tx.insert_one("patients", d).await.unwrap();
        first_id.get_or_insert(id);
        let ecoc_secret = random_token(&mut rng, "SECRET-ECOC-");
        tx.qe_state()
            .unwrap()
            .ecoc_append(
                "patients",
                "ssn",
                &pretend_encrypt(&mut rng, ecoc_secret.as_bytes()),
            )
            .await
            .unwrap();
        let esc_secret = random_token(&mut rng, "SECRET-ESC-");
        tx.qe_state()
            .unwrap()
            .esc_insert(
                "patients",
                &EscId::from_bytes([i; 32]),
                Some(EscValue(pretend_encrypt(&mut rng, esc_secret.as_bytes()))),
            )
            .await
            .unwrap();
        secrets.extend([
            ssn.into_bytes(),
            number.into_bytes(),
            ecoc_secret.into_bytes(),
            esc_secret.into_bytes(),
        ]);
        plaintexts.push(name.into_bytes());
        ciphertexts.push(ct_ssn);
    }
    // A failed write puts an error (with the offending key in hex) in the
    // server log; the key is a public `_id` here.
    assert!(matches!(
        tx.insert_one("patients", doc! {"_id": first_id.unwrap()})
            .await,
        Err(EngineError::DuplicateKey { .. })
    ));
    tx.commit().await.unwrap();

    let Some(files) = testing::server_files(&url).await.unwrap() else {
        return;
    };
    let mut canaries: Vec<&[u8]> = Vec::new();
    canaries.extend(secrets.iter().map(Vec::as_slice));
    canaries.extend(plaintexts.iter().map(Vec::as_slice));
    canaries.extend(ciphertexts.iter().map(Vec::as_slice));
    let scan = testing::scan_for_canaries(&files, &canaries);
    println!(
        "canary scan: {} files, {} bytes, {} hits",
        scan.files,
        scan.bytes,
        scan.hits.len()
    );
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("pg_wal")),
        "the WAL is scanned"
    );
    let leaked: BTreeSet<_> = scan
        .hits
        .iter()
        .filter(|h| h.canary < secrets.len())
        .map(|h| (h.canary, h.file.display().to_string(), h.form))
        .collect();
    assert!(leaked.is_empty(), "secret canaries found: {leaked:?}");
    let base = secrets.len();
    for i in 0..plaintexts.len() {
        assert!(
            scan.found(base + i),
            "plaintext canary {i} not found: the scan sees no data"
        );
    }
    let base = base + plaintexts.len();
    for i in 0..ciphertexts.len() {
        assert!(
            scan.found(base + i),
            "ciphertext {i} not found in the data files"
        );
    }
}

/// Compaction and cleanup start with `lock_for_maintenance`: it waits for a
/// writer transaction in flight on the collection (one that has read the
/// ESC) and keeps the next writer out until the maintenance transaction
/// ends; another collection's writers are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_lock_waits_for_writers_and_holds_them_off() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let e: Arc<dyn Engine> = Arc::new(PgEngine::temporary(&url).await.unwrap());
    for c in ["m", "other"] {
        e.create_collection(c, encrypted()).await.unwrap();
    }
    let mut writer = e.begin().await.unwrap();
    writer
        .qe_state()
        .unwrap()
        .esc_get_many("m", &[EscId::from_bytes([7; 32])])
        .await
        .unwrap();
    let maintenance = {
        let e = Arc::clone(&e);
        tokio::spawn(async move {
            let mut tx = e.begin().await.unwrap();
            tx.qe_state()
                .unwrap()
                .lock_for_maintenance("m")
                .await
                .unwrap();
            let locked = Instant::now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            tx.commit().await.unwrap();
            locked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !maintenance.is_finished(),
        "maintenance did not wait for the writer in flight"
    );
    writer
        .qe_state()
        .unwrap()
        .esc_insert("m", &EscId::from_bytes([7; 32]), None)
        .await
        .unwrap();
    let committing = Instant::now();
    writer.commit().await.unwrap();
    // The next writer waits until the maintenance transaction ends...
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut next = e.begin().await.unwrap();
    next.qe_state()
        .unwrap()
        .esc_get_many("m", &[EscId::from_bytes([8; 32])])
        .await
        .unwrap();
    let admitted = Instant::now();
    let locked = maintenance.await.unwrap();
    assert!(
        locked >= committing,
        "maintenance began before the writer committed"
    );
    assert!(
        admitted.duration_since(locked) >= Duration::from_millis(250),
        "a writer was admitted during maintenance"
    );
    next.rollback().await.unwrap();
    // ...while another collection's writers never wait for it.
    let mut tx = e.begin().await.unwrap();
    tx.qe_state()
        .unwrap()
        .lock_for_maintenance("m")
        .await
        .unwrap();
    let t = Instant::now();
    e.insert_one("other", doc! {"x": 1}).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    tx.rollback().await.unwrap();
}
