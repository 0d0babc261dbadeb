//! The QE server role on SQLite: encrypted equality queries against the
//! same query on an indexed plaintext field, at 10k and 100k documents (1M
//! with `CIPHERDOC_BENCH_1M=1`), contention 0 and 8; and encrypted vs
//! plaintext insert throughput.
//!
//! `cargo bench -p cipherdoc-engine --bench qe_sqlite`
//!
//! Besides criterion's estimates, each query benchmark prints its own p50
//! and p90 over 2,000 queries (`p50 ...` lines), which is what the targets
//! are stated in. Client-side encryption (payload generation) is done
//! outside every timed section: the numbers are the server role's and the
//! engine's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_possible_wrap,
    clippy::many_single_char_names
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions, IndexSpec};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{Client, percentiles, ssn};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fills `enc0`, `enc8` (encrypted `ssn`, contention 0 and 8) and `plain`
/// (indexed plaintext `ssn`) with `n` documents each.
fn build(rt: &tokio::runtime::Runtime, qe: &QeServer, client: &Client, n: usize) {
    let t = Instant::now();
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
        qe.inner()
            .create_index("plain", IndexSpec::new("ssn"))
            .await
            .unwrap();
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            for cm in [0, 8] {
                let docs: Vec<Document> = (start..end)
                    .map(|i| doc! {"n": i as i64, "ssn": client.insert(&ssn(i), cm)})
                    .collect();
                qe.insert_many(&format!("enc{cm}"), docs).await.unwrap();
            }
            let docs: Vec<Document> = (start..end)
                .map(|i| doc! {"n": i as i64, "ssn": ssn(i)})
                .collect();
            qe.inner().insert_many("plain", docs).await.unwrap();
        }
    });
    eprintln!("built {n} documents x 3 collections in {:.1?}", t.elapsed());
}

fn bench_queries(c: &mut Criterion) {
    let rt = rt();
    let mut sizes = vec![10_000, 100_000];
    if std::env::var("CIPHERDOC_BENCH_1M").is_ok_and(|v| v == "1") {
        sizes.push(1_000_000);
    }
    for n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let raw = SqliteEngine::open(dir.path().join("bench.db")).unwrap();
        let qe = QeServer::new(Arc::new(raw.clone()));
        let client = Client::new();
        build(&rt, &qe, &client, n);
        let values: Vec<String> = (0..500).map(|k| ssn((k * 7919) % n)).collect();
        let mut g = c.benchmark_group(format!("qe_query_{n}"));
        g.sample_size(20).measurement_time(Duration::from_secs(3));
        for cm in [0_u64, 8] {
            let coll = format!("enc{cm}");
            let payloads: Vec<Bson> = values.iter().map(|v| client.find(v, cm)).collect();
            let mut k = 0;
            g.bench_function(format!("encrypted_eq_cm{cm}"), |b| {
                b.iter(|| {
                    k = (k + 1) % payloads.len();
                    let f = Filter::eq("ssn", payloads[k].clone());
                    let r = rt
                        .block_on(qe.find(&coll, &f, &FindOptions::default()))
                        .unwrap();
                    assert_eq!(r.len(), 10);
                });
            });
            let mut times = Vec::new();
            for i in 0..2000 {
                let f = Filter::eq("ssn", payloads[i % payloads.len()].clone());
                let t = Instant::now();
                let r = rt
                    .block_on(qe.find(&coll, &f, &FindOptions::default()))
                    .unwrap();
                times.push(t.elapsed());
                assert_eq!(r.len(), 10);
            }
            let (p50, p90) = percentiles(times);
            eprintln!("p50 n={n} encrypted cm={cm}: {p50:.1?} (p90 {p90:.1?})");
        }
        for (label, engine) in [
            (
                "plain_indexed_eq_raw",
                Arc::new(raw.clone()) as Arc<dyn Engine>,
            ),
            (
                "plain_indexed_eq_via_qe",
                Arc::new(qe.clone()) as Arc<dyn Engine>,
            ),
        ] {
            let mut k = 0;
            g.bench_function(label, |b| {
                b.iter(|| {
                    k = (k + 1) % values.len();
                    let f = Filter::eq("ssn", values[k].clone());
                    let r = rt
                        .block_on(engine.find("plain", &f, &FindOptions::default()))
                        .unwrap();
                    assert_eq!(r.len(), 10);
                });
            });
            let mut times = Vec::new();
            for i in 0..2000 {
                let f = Filter::eq("ssn", values[i % values.len()].clone());
                let t = Instant::now();
                let r = rt
                    .block_on(engine.find("plain", &f, &FindOptions::default()))
                    .unwrap();
                times.push(t.elapsed());
                assert_eq!(r.len(), 10);
            }
            let (p50, p90) = percentiles(times);
            eprintln!("p50 n={n} {label}: {p50:.1?} (p90 {p90:.1?})");
        }
        g.finish();
    }
}

fn bench_inserts(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let raw = SqliteEngine::open(dir.path().join("ins.db")).unwrap();
    let qe = QeServer::new(Arc::new(raw.clone()));
    let client = Client::new();
    rt.block_on(async {
        qe.create_collection(
            "enc",
            CreateCollectionOptions {
                encrypted_fields: Some(client.ef(8)),
            },
        )
        .await
        .unwrap();
        raw.create_index("plain", IndexSpec::new("ssn"))
            .await
            .unwrap();
    });
    let mut g = c.benchmark_group("qe_insert");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let mut i = 0usize;
    g.throughput(Throughput::Elements(1));
    g.bench_function("encrypted_insert_one_cm8", |b| {
        b.iter_batched(
            || {
                i += 1;
                doc! {"n": i as i64, "ssn": client.insert(&ssn(i), 8)}
            },
            |d| rt.block_on(qe.insert_one("enc", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("plain_insert_one_indexed", |b| {
        b.iter_batched(
            || {
                i += 1;
                doc! {"n": i as i64, "ssn": ssn(i)}
            },
            |d| rt.block_on(raw.insert_one("plain", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("encrypted_insert_many_100_cm8", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        i += 1;
                        doc! {"n": i as i64, "ssn": client.insert(&ssn(i), 8)}
                    })
                    .collect::<Vec<_>>()
            },
            |d| rt.block_on(qe.insert_many("enc", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("plain_insert_many_100_indexed", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        i += 1;
                        doc! {"n": i as i64, "ssn": ssn(i)}
                    })
                    .collect::<Vec<_>>()
            },
            |d| rt.block_on(raw.insert_many("plain", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench_queries, bench_inserts);
criterion_main!(benches);
