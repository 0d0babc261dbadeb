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
//! documents in both collections. Besides criterion's estimates each
//! benchmark prints its own p50 and p90 over 200 queries. The find payload
//! is built once, outside the timed section: the numbers are the server
//! role's and the engine's.

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
use cipherdoc_crypto::text::TextQuery;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, EncStrOp, Engine, Filter, FindOptions, IndexSpec};
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
    let (query, plain_query) = rt.block_on(async {
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
        (q, pq)
    });

    for (name, coll, f) in [
        ("prefix_query_100k_1pct/encrypted", "enc", &query),
        ("prefix_query_100k_1pct/plaintext", "plain", &plain_query),
    ] {
        let mut times = Vec::with_capacity(QUERIES);
        rt.block_on(async {
            for _ in 0..QUERIES {
                let t = Instant::now();
                let docs = e.find(coll, f, &FindOptions::default()).await.unwrap();
                times.push(t.elapsed());
                assert_eq!(docs.len(), hits);
            }
        });
        let (p50, p90) = percentiles(times);
        println!("p50 {name}: {p50:?} (p90 {p90:?})");
        c.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { e.find(coll, f, &FindOptions::default()).await.unwrap() });
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
