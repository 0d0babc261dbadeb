//! The QE server role on SQLite: encrypted equality queries against the
//! same query on an indexed plaintext field, at 10k and 100k documents (1M
//! with `CIPHERDOC_BENCH_1M=1`), contention 0 and 8; and encrypted vs
//! plaintext insert throughput.
//!
//! `cargo bench -p cipherdoc-engine --bench qe_sqlite`
//!
//! `CIPHERDOC_BENCH_DOC=record` makes every document a patient record (about
//! 400 bytes of plaintext fields beside `ssn`) instead of the minimal
//! `{n, ssn}`, for a second view of the insert ratios (`common::document`).
//!
//! `CIPHERDOC_BENCH_ARRIVAL=shuffled` loads and inserts values in shuffled
//! order instead of ascending order (see `common::ssn`): ascending order is
//! the plaintext index's best case (it only appends), shuffled is how real
//! values (SSNs) arrive. Encrypted keys are random either way.
//!
//! Besides criterion's estimates it prints, per size, p50 and p90 over
//! 2,000 queries of each kind (`p50 ...` lines; the targets are stated in
//! p50), taken in turns (one query of each kind per round) so that every
//! kind sees the same load on a shared machine, with the ratios to the
//! plaintext query (`ratio ...`); and encrypted against plaintext insert
//! throughput into the loaded collections, also in turns (`insert ...`).
//! Client-side encryption (payload generation) is done outside every timed
//! section: the numbers are the server role's and the engine's.

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

use bson::Document;
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine, IndexSpec};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{Client, criterion_cases, document, query_cases, timed_inserts, timed_queries};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fills `enc0`, `enc8` (encrypted `ssn`, contention 0 and 8) through `qe`
/// and `plain` (indexed plaintext `ssn`, in its own database file, so that
/// the two kinds never share a WAL or its checkpoints) with `n` documents
/// each.
fn build(
    rt: &tokio::runtime::Runtime,
    qe: &QeServer,
    plain: &SqliteEngine,
    client: &Client,
    n: usize,
) {
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
        plain
            .create_index("plain", IndexSpec::new("ssn"))
            .await
            .unwrap();
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            for cm in [0, 8] {
                let docs: Vec<Document> = (start..end)
                    .map(|i| document(client, i, Some(cm)))
                    .collect();
                qe.insert_many(&format!("enc{cm}"), docs).await.unwrap();
            }
            let docs: Vec<Document> = (start..end).map(|i| document(client, i, None)).collect();
            plain.insert_many("plain", docs).await.unwrap();
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
        let qe = QeServer::new(Arc::new(
            SqliteEngine::open(dir.path().join("encrypted.db")).unwrap(),
        ));
        let raw = SqliteEngine::open(dir.path().join("plain.db")).unwrap();
        let client = Client::new();
        build(&rt, &qe, &raw, &client, n);
        let cases = query_cases(
            &client,
            n,
            &(Arc::new(qe.clone()) as Arc<dyn Engine>),
            &(Arc::new(raw.clone()) as Arc<dyn Engine>),
            &(Arc::new(QeServer::new(Arc::new(raw.clone()))) as Arc<dyn Engine>),
        );
        criterion_cases(c, format!("qe_query_{n}"), &rt, &cases);
        timed_queries(&rt, n, &cases);
        timed_inserts(&rt, n, &client, &qe, &raw, n, (1000, 20));
    }
}

fn bench_inserts(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let raw = SqliteEngine::open(dir.path().join("plain.db")).unwrap();
    let qe = QeServer::new(Arc::new(
        SqliteEngine::open(dir.path().join("encrypted.db")).unwrap(),
    ));
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
                document(&client, i, Some(8))
            },
            |d| rt.block_on(qe.insert_one("enc", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("plain_insert_one_indexed", |b| {
        b.iter_batched(
            || {
                i += 1;
                document(&client, i, None)
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
                        document(&client, i, Some(8))
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
                        document(&client, i, None)
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
