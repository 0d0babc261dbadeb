//! The QE server role on PostgreSQL (issue 8): encrypted equality queries
//! against the same query on an indexed plaintext field, contention 0 and
//! 8; encrypted vs plaintext insert throughput; and 8 concurrent clients.
//! Mirrors `qe_sqlite` on [`PgEngine`] behind [`QeServer`].
//!
//! ```console
//! CIPHERDOC_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p cipherdoc-engine --bench qe_pg
//! # values in shuffled order rather than ascending (see common::ssn):
//! CIPHERDOC_BENCH_ARRIVAL=shuffled CIPHERDOC_TEST_POSTGRES_URL=... \
//!   cargo bench -p cipherdoc-engine --bench qe_pg
//! # patient records (about 400 bytes of plaintext fields beside ssn)
//! # instead of the minimal {n, ssn} (see common::document):
//! CIPHERDOC_BENCH_DOC=record CIPHERDOC_TEST_POSTGRES_URL=... \
//!   cargo bench -p cipherdoc-engine --bench qe_pg
//! # 1M documents per collection (the load takes a while):
//! CIPHERDOC_BENCH_DOCS=1000000 CIPHERDOC_TEST_POSTGRES_URL=... \
//!   cargo bench -p cipherdoc-engine --bench qe_pg
//! ```
//!
//! One temporary schema holds `enc0`, `enc8` (`ssn` encrypted for equality,
//! contention 0 and 8) and `plain` (`ssn` in plaintext with an index), `n`
//! documents each (`CIPHERDOC_BENCH_DOCS`, default 100,000), every value
//! repeating 10 times. The encrypted collections are loaded through
//! [`QeServer::insert_many`] (the real QE write path: emuBinary probes, ESC
//! and ECOC rows, stored values, tags) in batches of 1,000.
//!
//! Printed besides criterion's estimates (these are what BENCHMARKS.md
//! reports):
//! - `load` lines: time and rate of each collection's load;
//! - `p50` lines: p50/p90 over 2,000 queries of 10 matches each, the four
//!   kinds taking turns query by query;
//! - `insert` lines: single-client throughput of `insert_one` (2,000) and
//!   `insert_many` of 100 (100 batches), encrypted (contention 8) and
//!   plaintext, into the loaded collections (new values, 10 documents
//!   each), an encrypted and a plaintext operation taking turns;
//! - `8 clients` lines: 8 tokio tasks, each running its own operations on
//!   the shared engine (its own documents, its own queries), total
//!   operations per second, over 5 rounds in which the kinds take turns.
//!
//! Taking turns matters on a shared machine: commit latency (the WAL
//! flush) and CPU left to PostgreSQL vary by a factor of several from one
//! minute to the next, and ratios of runs made minutes apart mean little.
//!
//! Client-side encryption (payload generation) is done outside every timed
//! section (in the load it is timed and reported apart): the numbers are
//! the server role's and the engine's. Skipped, with the reason printed,
//! when `CIPHERDOC_TEST_POSTGRES_URL` is not set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::many_single_char_names,
    clippy::too_many_lines
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::Document;
use cipherdoc_engine::postgres::{PgEngine, testing};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions, IndexSpec};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

mod common;
use common::{
    Client, criterion_cases, document, new_docs, query_cases, timed_inserts, timed_queries,
};

/// Queries per p50/p90 measurement.
/// Load batch size.
const BATCH: usize = 1000;
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Single-document inserts per kind (encrypted, plaintext).
const INSERTS: usize = 2000;
/// `insert_many` batches of 100 per kind.
const BATCHES: usize = 100;
/// Alternating rounds of the 8-client measurements.
const ROUNDS: usize = 5;

fn doc_count() -> usize {
    std::env::var("CIPHERDOC_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn per_sec(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64()
}

/// Creates `enc0`, `enc8` and `plain` and fills each with `n` documents;
/// prints each load's time and rate.
fn load(rt: &Runtime, qe: &QeServer, pg: &PgEngine, client: &Client, n: usize, url: &str) {
    rt.block_on(async {
        for cm in [0, 8] {
            qe.create_collection(
                &format!("enc{cm}"),
                CreateCollectionOptions {
                    encrypted_fields: Some(client.ef(cm)),
                },
            )
            .await
            .unwrap();
        }
        pg.create_index("plain", IndexSpec::new("ssn"))
            .await
            .unwrap();
    });
    let total = Instant::now();
    for coll in ["enc0", "enc8", "plain"] {
        let cm = match coll {
            "enc0" => Some(0),
            "enc8" => Some(8),
            _ => None,
        };
        let (mut encrypting, mut inserting) = (Duration::ZERO, Duration::ZERO);
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            let t = Instant::now();
            let docs: Vec<Document> = (start..end)
                .map(|i| {
                    if let Some(cm) = cm {
                        document(client, i, Some(cm))
                    } else {
                        document(client, i, None)
                    }
                })
                .collect();
            encrypting += t.elapsed();
            let t = Instant::now();
            match cm {
                Some(_) => rt.block_on(qe.insert_many(coll, docs)).unwrap(),
                None => rt.block_on(pg.insert_many(coll, docs)).unwrap(),
            };
            inserting += t.elapsed();
            if (end / BATCH) % 100 == 0 && end < n {
                eprintln!("  {coll}: {end} documents after {inserting:.1?}");
            }
        }
        eprintln!(
            "load n={n} {coll}: {inserting:.1?} ({:.0} docs/s; client-side encryption {encrypting:.1?} more)",
            per_sec(n, inserting)
        );
    }
    // Let the planner know the sizes, as autovacuum would soon.
    rt.block_on(async {
        let c = testing::connect(url).await.unwrap();
        c.batch_execute(&format!("SET search_path = \"{}\"; ANALYZE", pg.schema()))
            .await
            .unwrap();
    });
    eprintln!("load n={n}: 3 collections in {:.1?}", total.elapsed());
}

/// `CLIENTS` tasks, each running `per_client` queries of its own (its own
/// sequence through `filters`, from `offset`); returns how long they took.
fn concurrent_queries(
    rt: &Runtime,
    e: &Arc<dyn Engine>,
    coll: &str,
    filters: &[Filter],
    per_client: usize,
    offset: usize,
) -> Duration {
    let slices: Vec<Vec<Filter>> = (0..CLIENTS)
        .map(|c| {
            (0..per_client)
                .map(|k| {
                    filters[(offset + c * filters.len() / CLIENTS + k) % filters.len()].clone()
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = slices
            .into_iter()
            .map(|fs| {
                let (e, coll) = (Arc::clone(e), coll.to_owned());
                tokio::spawn(async move {
                    for f in fs {
                        let r = e.find(&coll, &f, &FindOptions::default()).await.unwrap();
                        assert_eq!(r.len(), 10);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    t.elapsed()
}

/// `CLIENTS` tasks, each inserting its own documents one by one; returns
/// how long they took.
fn concurrent_inserts(
    rt: &Runtime,
    e: &Arc<dyn Engine>,
    coll: &str,
    docs: Vec<Vec<Document>>,
) -> Duration {
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = docs
            .into_iter()
            .map(|ds| {
                let (e, coll) = (Arc::clone(e), coll.to_owned());
                tokio::spawn(async move {
                    for d in ds {
                        e.insert_one(&coll, d).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    t.elapsed()
}

fn bench(c: &mut Criterion) {
    let Some(url) = testing::test_url() else {
        eprintln!("qe_pg: set CIPHERDOC_TEST_POSTGRES_URL to run this benchmark");
        return;
    };
    let rt = rt();
    let n = doc_count();
    let pg = rt.block_on(PgEngine::temporary(&url)).unwrap();
    let qe = QeServer::new(Arc::new(pg.clone()));
    let client = Client::new();
    load(&rt, &qe, &pg, &client, n, &url);

    // ---- queries, one client ----
    let raw: Arc<dyn Engine> = Arc::new(pg.clone());
    let via_qe: Arc<dyn Engine> = Arc::new(qe.clone());
    let cases = query_cases(&client, n, &via_qe, &raw, &via_qe);
    criterion_cases(c, format!("qe_pg_query_{n}"), &rt, &cases);
    timed_queries(&rt, n, &cases);

    // ---- inserts, one client, into the loaded enc8 and plain ----
    // Encrypted and plaintext operations alternate, so that both see the
    // same machine load (commit latency varies a lot on a shared disk).
    let mut next = timed_inserts(&rt, n, &client, &qe, &pg, n, (INSERTS, BATCHES));
    let mut take = |count: usize| {
        let from = next;
        next += count;
        from
    };
    let mut g = c.benchmark_group(format!("qe_pg_insert_{n}"));
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for (label, encrypted) in [("encrypted_cm8", true), ("plain_indexed", false)] {
        let coll = if encrypted { "enc8" } else { "plain" };
        let e: &dyn Engine = if encrypted { &qe } else { &pg };
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{label}_insert_one"), |b| {
            b.iter_batched(
                || new_docs(&client, take(1), 1, encrypted).pop().unwrap(),
                |d| rt.block_on(e.insert_one(coll, d)).unwrap(),
                BatchSize::SmallInput,
            );
        });
        g.throughput(Throughput::Elements(100));
        g.bench_function(format!("{label}_insert_many_100"), |b| {
            b.iter_batched(
                || new_docs(&client, take(100), 100, encrypted),
                |d| rt.block_on(e.insert_many(coll, d)).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();

    // ---- 8 concurrent clients, alternating rounds ----
    let per_round = INSERTS / CLIENTS / ROUNDS;
    let mut spent = [Duration::ZERO; 2];
    for _ in 0..ROUNDS {
        for (k, encrypted) in [true, false].into_iter().enumerate() {
            let (coll, e) = if encrypted {
                ("enc8", &via_qe)
            } else {
                ("plain", &raw)
            };
            let per_client: Vec<Vec<Document>> = (0..CLIENTS)
                .map(|_| new_docs(&client, take(per_round), per_round, encrypted))
                .collect();
            spent[k] += concurrent_inserts(&rt, e, coll, per_client);
        }
    }
    let total = per_round * CLIENTS * ROUNDS;
    let (enc, plain) = (per_sec(total, spent[0]), per_sec(total, spent[1]));
    eprintln!(
        "8 clients n={n} insert_one: encrypted_cm8 {enc:.0} docs/s, plain_indexed {plain:.0} docs/s ({:.0}%)",
        100.0 * enc / plain
    );
    let per_round = 100;
    let mut spent = vec![Duration::ZERO; cases.len()];
    for r in 0..ROUNDS {
        for ((_, e, coll, filters), s) in cases.iter().zip(&mut spent) {
            *s += concurrent_queries(&rt, e, coll, filters, per_round, r * per_round);
        }
    }
    for ((label, ..), s) in cases.iter().zip(spent) {
        let rate = per_sec(per_round * CLIENTS * ROUNDS, s);
        eprintln!("8 clients n={n} query {label}: {rate:.0} queries/s");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
