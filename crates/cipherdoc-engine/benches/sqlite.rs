//! SQLite engine micro-benchmarks: bulk insert throughput and indexed
//! equality find at 100k documents (the groups `pg_engine` runs too, from
//! `common/engine.rs`).
//!
//! `cargo bench -p cipherdoc-engine --bench sqlite`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    // Of `common/`, shared with the QE benches.
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

mod common;

use std::time::Duration;

use cipherdoc_engine::sqlite::SqliteEngine;
use criterion::{Criterion, criterion_group, criterion_main};

use common::engine::{Bench, patient};

const DOCS: usize = 100_000;

fn docs(n: usize, offset: usize) -> Vec<bson::Document> {
    (offset..offset + n).map(patient).collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let e = SqliteEngine::temporary().unwrap();
    let b = Bench {
        rt: &rt,
        engine: &e,
        prefix: "sqlite",
        docs,
    };
    let mut offset = 0;
    b.inserts(c, Duration::from_secs(5), &mut offset).finish();

    let e = SqliteEngine::temporary().unwrap();
    let b = Bench { engine: &e, ..b };
    b.load(DOCS);
    let mut g = c.benchmark_group("sqlite_find_100k");
    g.sample_size(200).measurement_time(Duration::from_secs(5));
    b.indexed_equality(&mut g, DOCS / 10);
    b.id_lookup(&mut g);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
