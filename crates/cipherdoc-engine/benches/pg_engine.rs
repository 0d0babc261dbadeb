//! PostgreSQL engine benchmarks: insert throughput (one document, bulk
//! batches of 1000, and 8 concurrent clients), indexed equality find, `_id`
//! lookup and tag-index lookup (9 tags: one value at contention 8) at 100k
//! documents. Each run uses a temporary schema.
//!
//! ```console
//! CIPHERDOC_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p cipherdoc-engine --bench pg_engine
//! # 1M documents (slow to load):
//! CIPHERDOC_BENCH_DOCS=1000000 CIPHERDOC_TEST_POSTGRES_URL=... cargo bench -p cipherdoc-engine --bench pg_engine
//! ```
//!
//! Besides criterion's estimates it prints the p50/p99 of 2000 timed finds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names,
    clippy::too_many_lines,
    // Of `common/`, shared with the QE benches.
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Binary, Bson, spec::BinarySubtype};
use cipherdoc_engine::postgres::{PgEngine, testing};
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions, Tag};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use common::engine::{Bench, patient};

fn doc_count() -> usize {
    std::env::var("CIPHERDOC_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The tag of (value `v`, contention counter `k`): stands in for the QE
/// tags of an encrypted field.
fn tag(v: usize, k: usize) -> Tag {
    let mut t = [0u8; 32];
    t[..8].copy_from_slice(&(v as u64).to_le_bytes());
    t[8..16].copy_from_slice(&(k as u64).to_le_bytes());
    Tag::from_bytes(t)
}

/// Patient `i` with the tag of its `ssn`, spread over 9 contention counters.
fn docs(n: usize, offset: usize) -> Vec<bson::Document> {
    (offset..offset + n)
        .map(|i| {
            let mut d = patient(i);
            let t = Binary {
                subtype: BinarySubtype::Generic,
                bytes: tag(i / 10, i % 9).as_bytes().to_vec(),
            };
            d.insert("__safeContent__", vec![Bson::Binary(t)]);
            d
        })
        .collect()
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

fn bench<'a>(rt: &'a tokio::runtime::Runtime, engine: &'a PgEngine) -> Bench<'a> {
    Bench {
        rt,
        engine,
        prefix: "pg",
        docs,
    }
}

fn benches(c: &mut Criterion) {
    let Some(url) = testing::test_url() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let enc = || CreateCollectionOptions {
        encrypted_fields: Some(bson::doc! {"fields": []}),
    };

    // ---- inserts ----
    let e = rt.block_on(PgEngine::temporary(&url)).unwrap();
    rt.block_on(e.create_collection("ins", enc())).unwrap();
    let b = bench(&rt, &e);
    let mut offset = 0;
    let mut g = b.inserts(c, Duration::from_secs(8), &mut offset);
    // 8 clients, each inserting 125 single documents: 1000 per iteration.
    let shared: Arc<dyn Engine> = Arc::new(e.clone());
    g.throughput(Throughput::Elements(1000));
    g.bench_function("insert_one_indexed_8_clients", |b| {
        b.iter_batched(
            || {
                offset += 1000;
                (0..8)
                    .map(|t| docs(125, offset + t * 125))
                    .collect::<Vec<_>>()
            },
            |per_client| {
                rt.block_on(async {
                    let hs: Vec<_> = per_client
                        .into_iter()
                        .map(|ds| {
                            let e = Arc::clone(&shared);
                            tokio::spawn(async move {
                                for d in ds {
                                    e.insert_one("ins", d).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for h in hs {
                        h.await.unwrap();
                    }
                });
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
    drop(shared);
    drop(e);

    // ---- finds ----
    let n = doc_count();
    let e = rt.block_on(PgEngine::temporary(&url)).unwrap();
    let b = bench(&rt, &e);
    let load = Instant::now();
    rt.block_on(e.create_collection("p", enc())).unwrap();
    b.load(n);
    println!("loaded {n} documents in {:?}", load.elapsed());
    // Let the planner know the sizes, as autovacuum would soon.
    rt.block_on(async {
        let client = testing::connect(&url).await.unwrap();
        client
            .batch_execute(&format!("SET search_path = \"{}\"; ANALYZE", e.schema()))
            .await
            .unwrap();
    });
    let values = n / 10;
    let ssn_find = |i: usize| b.ssn_find(i);
    let tag_find = |i: usize| {
        let f = Filter::tag_in((0..9).map(|k| tag(i, k)));
        let r = rt
            .block_on(e.find("p", &f, &FindOptions::default()))
            .unwrap();
        assert_eq!(r.len(), 10);
    };
    for (name, f) in [
        ("indexed_equality_10_hits", &ssn_find as &dyn Fn(usize)),
        ("tag_in_9_tags_10_hits", &tag_find),
    ] {
        let mut samples = Vec::with_capacity(2000);
        for j in 0..2000 {
            let t = Instant::now();
            f((j * 7919) % values);
            samples.push(t.elapsed());
        }
        let (p50, p99) = percentiles(samples);
        println!("pg {n} docs {name}: p50 {p50:?} p99 {p99:?}");
    }
    let mut g = c.benchmark_group(format!("pg_find_{n}"));
    g.sample_size(200).measurement_time(Duration::from_secs(5));
    b.indexed_equality(&mut g, values);
    let mut i = 0usize;
    g.bench_function("tag_in_9_tags_10_hits", |bn| {
        bn.iter(|| {
            i = (i + 7919) % values;
            tag_find(i);
        });
    });
    b.id_lookup(&mut g);
    g.finish();
}

criterion_group!(all, benches);
criterion_main!(all);
