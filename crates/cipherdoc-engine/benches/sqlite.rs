//! SQLite engine micro-benchmarks: bulk insert throughput and indexed
//! equality find at 100k documents.
//!
//! `cargo bench -p cipherdoc-engine --bench sqlite`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

use std::time::Duration;

use bson::doc;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{Engine, Filter, FindOptions, IndexSpec};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const DOCS: usize = 100_000;

fn docs(n: usize, offset: usize) -> Vec<bson::Document> {
    (offset..offset + n)
        .map(|i| doc! {"name": format!("patient-{i}"), "ssn": format!("{:09}", i / 10), "n": i64::try_from(i).unwrap()})
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mut g = c.benchmark_group("sqlite_insert");
    g.throughput(Throughput::Elements(1000));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let e = SqliteEngine::temporary().unwrap();
    rt.block_on(e.create_index("ins", IndexSpec::new("ssn")))
        .unwrap();
    let mut offset = 0;
    g.bench_function("insert_many_1000_indexed", |b| {
        b.iter_batched(
            || {
                offset += 1000;
                docs(1000, offset)
            },
            |batch| rt.block_on(e.insert_many("ins", batch)).unwrap(),
            BatchSize::LargeInput,
        );
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert_one_indexed", |b| {
        b.iter_batched(
            || {
                offset += 1;
                docs(1, offset).pop().unwrap()
            },
            |d| rt.block_on(e.insert_one("ins", d)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.finish();

    let e = SqliteEngine::temporary().unwrap();
    rt.block_on(async {
        e.create_index("p", IndexSpec::new("ssn")).await.unwrap();
        for chunk in 0..DOCS / 10_000 {
            e.insert_many("p", docs(10_000, chunk * 10_000))
                .await
                .unwrap();
        }
    });
    let mut g = c.benchmark_group("sqlite_find_100k");
    g.sample_size(200).measurement_time(Duration::from_secs(5));
    let mut i = 0usize;
    g.bench_function("indexed_equality_10_hits", |b| {
        b.iter(|| {
            i = (i + 7919) % (DOCS / 10);
            let f = Filter::eq("ssn", format!("{i:09}"));
            let r = rt
                .block_on(e.find("p", &f, &FindOptions::default()))
                .unwrap();
            assert_eq!(r.len(), 10);
        });
    });
    g.bench_function("id_lookup", |b| {
        let ids: Vec<_> = rt
            .block_on(e.find(
                "p",
                &Filter::all(),
                &FindOptions {
                    limit: Some(1000),
                    ..FindOptions::default()
                },
            ))
            .unwrap()
            .into_iter()
            .map(|d| d.get("_id").unwrap().clone())
            .collect();
        b.iter(|| {
            i = (i + 1) % ids.len();
            rt.block_on(e.find_one("p", &Filter::eq("_id", ids[i].clone())))
                .unwrap()
                .unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
