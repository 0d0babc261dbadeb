//! The QE server role on SQLite: an encrypted prefix query
//! (`$encStrStartsWith`, contention 0) over 100k documents matching 1% of
//! them, against the same prefix query on an indexed plaintext field (an
//! index key-range scan).
//!
//! `cargo bench -p cipherdoc-engine --bench qe_text -- --warm-up-time 1 --measurement-time 3`
//!
//! The field is a surname, case- and diacritic-insensitive, prefix lengths
//! 2 to 10. Names are `<3-letter stem><tail>` with 100 stems that differ
//! even after folding, so the 3-letter query matches exactly 1,000
//! documents in both collections. Each query is run in both forms a caller
//! can ask for: owned documents (`Engine::find`) and the stored bytes
//! (`Engine::find_raw`, what `cipherdoc serve` sends). Besides criterion's
//! estimates the bench prints p50 and p90 over 200 rounds in which the
//! four take turns (all see the same load on a shared machine), and the
//! encrypted/plaintext ratio of each form. `CIPHERDOC_TEXT_BENCH_BREAKDOWN=1` also
//! prints where the encrypted query's time goes (ESC search and tag
//! derivation, SQL, decoding), step by step. The find payload is built
//! once, outside the timed section: the numbers are the server role's and
//! the engine's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::many_single_char_names
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, doc};
use cipherdoc_crypto::client::UserKey;
use cipherdoc_crypto::client_text::{encrypt_text_find, encrypt_text_insert};
use cipherdoc_crypto::efc::EncryptedFieldConfig;
use cipherdoc_crypto::payload::FindTextPayload;
use cipherdoc_crypto::text::TextQuery;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{
    CreateCollectionOptions, EncStrOp, Engine, Filter, FindOptions, IndexSpec, Tag,
};
use criterion::{Criterion, criterion_group, criterion_main};

const QUERIES: usize = 200;

/// Documents to load: 100k unless `CIPHERDOC_TEXT_BENCH_DOCS` says
/// otherwise (a multiple of 100, so that a stem matches 1%); smaller runs
/// are for profiling the query, whose shape does not change.
fn docs() -> i32 {
    std::env::var("CIPHERDOC_TEXT_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn enc(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Encrypted,
        bytes,
    })
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    (at(50), at(90))
}

/// Surname `i`: stem `i % 100` (three letters, distinct after folding),
/// then a tail of three to six letters from `i / 100`.
fn surname(i: i32) -> String {
    const C: [char; 10] = ['B', 'D', 'F', 'G', 'K', 'L', 'M', 'N', 'P', 'R'];
    const V: [char; 10] = ['a', 'e', 'i', 'o', 'u', 'y', 'w', 'z', 'h', 'j'];
    let s = i % 100;
    let mut out: String = [C[(s / 10) as usize], V[(s % 10) as usize], 'v']
        .iter()
        .collect();
    let mut t = (i / 100) as usize;
    for _ in 0..3 + (t % 4) {
        out.push(char::from(b'a' + (t % 26) as u8));
        t /= 7;
    }
    out
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id = KeyId::generate(&mut OsRandom).unwrap();
    let key = DataKey::generate(&mut OsRandom).unwrap();
    let tokens = IndexKeyTokens::new(id, &key);
    let fields = doc! {"fields": [{"path": "name", "keyId": id.to_binary(), "bsonType": "string",
    "queries": {"queryType": "prefix", "contention": 0, "strMinQueryLength": 2,
                "strMaxQueryLength": 10, "caseSensitive": false, "diacriticSensitive": false}}]};
    let efc = EncryptedFieldConfig::from_document(&fields).unwrap();
    efc.validate().unwrap();
    let index = efc.fields[0]
        .text_index("fields[0]")
        .unwrap()
        .unwrap()
        .index;

    let dir = tempfile::tempdir().unwrap();
    let raw = SqliteEngine::open(dir.path().join("text.db")).unwrap();
    let raw = Arc::new(raw);
    let e = QeServer::new(Arc::clone(&raw) as Arc<dyn Engine>);
    let total = docs();
    let hits = usize::try_from(total / 100).unwrap();
    let (query, plain_query, find_blob) = rt.block_on(async {
        e.create_collection(
            "enc",
            CreateCollectionOptions {
                encrypted_fields: Some(fields.clone()),
            },
        )
        .await
        .unwrap();
        e.create_collection("plain", CreateCollectionOptions::default())
            .await
            .unwrap();
        e.create_index("plain", IndexSpec::new("name"))
            .await
            .unwrap();
        let t = Instant::now();
        for chunk in (0..total).collect::<Vec<_>>().chunks(1000) {
            let mut encd = Vec::with_capacity(chunk.len());
            let mut plain = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let name = surname(i);
                let p = encrypt_text_insert(
                    &name,
                    &index,
                    &tokens,
                    UserKey { id, key: &key },
                    0,
                    &mut OsRandom,
                )
                .unwrap();
                encd.push(doc! {"_id": i, "name": enc(p.encode())});
                plain.push(doc! {"_id": i, "name": name});
            }
            e.insert_many("enc", encd).await.unwrap();
            e.insert_many("plain", plain).await.unwrap();
        }
        println!(
            "loaded {total} encrypted + plaintext documents in {:?}",
            t.elapsed()
        );
        // Stem 57 ("Lzv"); the encrypted query is typed in lower case.
        let stem = surname(57)[..3].to_owned();
        let find =
            encrypt_text_find(&stem.to_lowercase(), &index, TextQuery::Prefix, &tokens, 0).unwrap();
        let q = Filter::enc_str("name", EncStrOp::StartsWith, enc(find.encode()));
        let pq = Filter::starts_with("name", stem);
        let plan = raw.explain("plain", &pq).await.unwrap().join(" | ");
        assert!(plan.contains("key>? AND key<?"), "{plan}");
        let n = e.count("enc", &q).await.unwrap();
        assert_eq!(n, e.count("plain", &pq).await.unwrap());
        assert_eq!(n, u64::try_from(hits).unwrap());
        (q, pq, find.encode())
    });
    if std::env::var_os("CIPHERDOC_TEXT_BENCH_BREAKDOWN").is_some() {
        breakdown(&rt, &e, &dir.path().join("text.db"), &find_blob, hits);
    }

    // The kinds take turns, query by query, so that both see the same
    // load (the machine is shared): the ratio of these p50s is the figure.
    // Each query runs in both forms a caller can ask for: owned documents
    // (`find`) and the stored bytes (`find_raw`, what `cipherdoc serve`
    // sends on the wire).
    let kinds = [
        (
            "prefix_query_100k_1pct/encrypted",
            "enc",
            &query,
            Form::Documents,
        ),
        (
            "prefix_query_100k_1pct/plaintext",
            "plain",
            &plain_query,
            Form::Documents,
        ),
        (
            "prefix_query_100k_1pct/encrypted_raw",
            "enc",
            &query,
            Form::Bytes,
        ),
        (
            "prefix_query_100k_1pct/plaintext_raw",
            "plain",
            &plain_query,
            Form::Bytes,
        ),
    ];
    let mut times = vec![Vec::with_capacity(QUERIES); kinds.len()];
    rt.block_on(async {
        for _ in 0..QUERIES {
            for ((_, coll, f, form), times) in kinds.iter().zip(&mut times) {
                let t = Instant::now();
                let n = form.run(&e, coll, f).await;
                times.push(t.elapsed());
                assert_eq!(n, hits);
            }
        }
    });
    let p50s: Vec<Duration> = kinds
        .iter()
        .zip(times)
        .map(|((name, ..), times)| {
            let (p50, p90) = percentiles(times);
            println!("p50 {name}: {p50:?} (p90 {p90:?})");
            p50
        })
        .collect();
    println!(
        "p50 ratio encrypted/plaintext, documents (in turns): {:.2}",
        p50s[0].as_secs_f64() / p50s[1].as_secs_f64()
    );
    println!(
        "p50 ratio encrypted/plaintext, stored bytes (in turns): {:.2}",
        p50s[2].as_secs_f64() / p50s[3].as_secs_f64()
    );
    for (name, coll, f, form) in kinds {
        c.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { form.run(&e, coll, f).await });
        });
    }
}

/// The form a query's documents are asked for in.
#[derive(Clone, Copy)]
enum Form {
    /// `Engine::find`: owned documents.
    Documents,
    /// `Engine::find_raw`: the stored bytes.
    Bytes,
}

impl Form {
    /// Run the query; how many documents it found.
    async fn run(self, e: &QeServer, coll: &str, f: &Filter) -> usize {
        let o = FindOptions::default();
        match self {
            Form::Documents => e.find(coll, f, &o).await.unwrap().len(),
            Form::Bytes => e.find_raw(coll, f, &o).await.unwrap().len(),
        }
    }
}

/// Where the encrypted query's time goes (`CIPHERDOC_TEXT_BENCH_BREAKDOWN=1`):
/// p50 of each step, the steps taking turns round by round. The SQL steps
/// run on a connection of their own to the same file, opened as the
/// engine opens its readers (page cache, memory map, `rarray`).
fn breakdown(
    rt: &tokio::runtime::Runtime,
    e: &QeServer,
    path: &std::path::Path,
    find: &[u8],
    hits: usize,
) {
    use rusqlite::types::Value;
    type Step<'a> = (&'static str, Box<dyn FnMut() + 'a>);
    const ENC_TAGS: &str = r#"SELECT rid FROM "enc.$tags" WHERE tag IN rarray(?1)"#;
    const ENC_DOCS: &str = r#"SELECT rid, doc FROM "enc" WHERE rid IN (SELECT rid FROM "enc.$tags" WHERE tag IN rarray(?1)) ORDER BY rid"#;
    const PLAIN_DOCS: &str = r#"SELECT rid, doc FROM "plain" WHERE rid IN (SELECT rid FROM "plain.$idx.name_1" WHERE key >= ?1 AND key < ?2) ORDER BY rid"#;

    let p = FindTextPayload::decode(find).unwrap();
    let cts = p.contention_tokens();
    let tags: std::collections::BTreeSet<Tag> = cts[0].tags(hits as u64).collect();
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.execute_batch("PRAGMA cache_size=-16384; PRAGMA mmap_size=1073741824;")
        .unwrap();
    rusqlite::vtab::array::load_module(&conn).unwrap();
    let values = || {
        std::rc::Rc::new(
            tags.iter()
                .map(|t| Value::Blob(t.as_bytes().to_vec()))
                .collect::<Vec<_>>(),
        )
    };
    let (lo, hi) = cipherdoc_engine::value::string_prefix_range(&surname(57)[..3]);
    let fetch_all = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<Vec<u8>> {
        let mut stmt = conn.prepare_cached(sql).unwrap();
        let mut rows = stmt.query(params).unwrap();
        let mut out = Vec::with_capacity(hits);
        while let Some(r) = rows.next().unwrap() {
            out.push(r.get_ref(1).unwrap().as_blob().unwrap().to_vec());
        }
        out
    };
    let enc_bytes = fetch_all(ENC_DOCS, &[&values()]);
    let plain_bytes = fetch_all(PLAIN_DOCS, &[&lo, &hi]);
    assert_eq!((enc_bytes.len(), plain_bytes.len()), (hits, hits));
    let size = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() / hits;
    println!(
        "breakdown: {hits} hits; stored document {} bytes encrypted, {} bytes plaintext",
        size(&enc_bytes),
        size(&plain_bytes)
    );
    let decode_all = |v: &[Vec<u8>]| {
        let docs: Vec<bson::Document> = v
            .iter()
            .map(|b| bson::Document::try_from(bson::RawDocument::from_bytes(b).unwrap()).unwrap())
            .collect();
        assert_eq!(docs.len(), hits);
    };
    let sql_rows = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
        let mut stmt = conn.prepare_cached(sql).unwrap();
        let mut rows = stmt.query(params).unwrap();
        let mut n = 0;
        while let Some(r) = rows.next().unwrap() {
            n += usize::from(r.get_ref(0).unwrap().as_i64().is_ok());
        }
        assert_eq!(n, hits);
    };
    let enc_query = Filter::enc_str("name", EncStrOp::StartsWith, enc(find.to_vec()));
    let tag_filter = Filter::TagIn(tags.clone());
    let find_in = |coll: &'static str, f: Filter| {
        move || {
            let docs = rt
                .block_on(e.find(coll, &f, &FindOptions::default()))
                .unwrap();
            assert_eq!(docs.len(), hits);
        }
    };
    let mut steps: Vec<Step<'_>> = vec![
        (
            "encrypted query (QE server role)",
            Box::new(find_in("enc", enc_query)),
        ),
        (
            "tag lookup through the engine (no ESC search, no tag derivation)",
            Box::new(|| {
                let docs = rt
                    .block_on(e.inner().find("enc", &tag_filter, &FindOptions::default()))
                    .unwrap();
                assert_eq!(docs.len(), hits);
            }),
        ),
        (
            "plaintext query (QE server role)",
            Box::new(find_in(
                "plain",
                Filter::starts_with("name", &surname(57)[..3]),
            )),
        ),
        (
            "tag derivation",
            Box::new(|| assert_eq!(cts[0].tags(hits as u64).count(), hits)),
        ),
        (
            "SQL: tag probes only",
            Box::new(|| sql_rows(ENC_TAGS, &[&values()])),
        ),
        (
            "SQL: tag probes + encrypted document rows",
            Box::new(|| sql_rows(ENC_DOCS, &[&values()])),
        ),
        (
            "SQL: index range + plaintext document rows",
            Box::new(|| sql_rows(PLAIN_DOCS, &[&lo, &hi])),
        ),
        (
            "bson decode of the encrypted documents (bytes in memory)",
            Box::new(|| decode_all(&enc_bytes)),
        ),
        (
            "bson decode of the plaintext documents (bytes in memory)",
            Box::new(|| decode_all(&plain_bytes)),
        ),
    ];
    let mut times = vec![Vec::with_capacity(QUERIES); steps.len()];
    for _ in 0..QUERIES {
        for ((_, step), times) in steps.iter_mut().zip(&mut times) {
            let t = Instant::now();
            step();
            times.push(t.elapsed());
        }
    }
    for ((name, _), times) in steps.iter().zip(times) {
        let (p50, p90) = percentiles(times);
        println!("breakdown: {name}: p50 {p50:?} (p90 {p90:?})");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
