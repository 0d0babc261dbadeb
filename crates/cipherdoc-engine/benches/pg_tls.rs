//! What verified TLS costs the PostgreSQL engine: the same operations on
//! one server through a plain and a TLS engine (loopback, so the network
//! adds nothing), measured in one run: a new connection (TCP + startup,
//! plus the TLS handshake), an `_id` lookup (one round trip on a pooled
//! connection), `insert_one` and `insert_many` of 1000 documents (bytes
//! through the cipher).
//!
//! ```console
//! set -a; eval "$(.ci/pg-tls)"; set +a   # the server on TLS; the URL and CA
//! cargo bench -p cipherdoc-engine --bench pg_tls
//! ```
//!
//! Besides criterion's estimates it prints the p50 of 2000 interleaved
//! plain/TLS lookups, 200 connections and 40 bulk inserts, and their
//! ratios.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bson::{Bson, doc};
use cipherdoc_engine::postgres::{PgEngine, PgTransport, testing};
use cipherdoc_engine::{Engine, Filter, FindOptions};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn docs(n: usize, offset: usize) -> Vec<bson::Document> {
    (offset..offset + n)
        .map(|i| doc! {"name": format!("patient-{i}"), "n": i64::try_from(i).unwrap(), "pad": "x".repeat(200)})
        .collect()
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let Some(server) = testing::tls_test_server() else {
        return;
    };
    let plain_url = server.url("sslmode=disable");
    let tls_url = server.url(&format!("sslmode=verify-full {}", server.sslrootcert()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain = rt.block_on(PgEngine::temporary(&plain_url)).unwrap();
    let tls = rt.block_on(PgEngine::temporary(&tls_url)).unwrap();
    assert_eq!(plain.transport(), &PgTransport::Plain);
    assert!(matches!(tls.transport(), PgTransport::VerifiedTls(_)));
    let engines = [("plain", &plain), ("tls", &tls)];
    let ids: Vec<Bson> = rt.block_on(async {
        tls.insert_many("c", docs(1000, 0)).await.unwrap();
        plain.insert_many("c", docs(1000, 0)).await.unwrap()
    });
    let tls_ids: Vec<Bson> = rt.block_on(async {
        tls.find("c", &Filter::all(), &FindOptions::default())
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.get("_id").unwrap().clone())
            .collect()
    });

    // Interleaved, so that both see the same machine.
    let (mut lp, mut lt) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for i in 0..2000 {
            for (out, e, ids) in [(&mut lp, &plain, &ids), (&mut lt, &tls, &tls_ids)] {
                let f = Filter::eq("_id", ids[i % ids.len()].clone());
                let t = Instant::now();
                let found = e.find("c", &f, &FindOptions::default()).await.unwrap();
                out.push(t.elapsed());
                assert_eq!(found.len(), 1);
            }
        }
    });
    let (cp, ct) = rt.block_on(async {
        let (mut cp, mut ct) = (Vec::new(), Vec::new());
        for _ in 0..200 {
            for (out, url) in [(&mut cp, &plain_url), (&mut ct, &tls_url)] {
                let t = Instant::now();
                let client = testing::connect(url).await.unwrap();
                client.simple_query("SELECT 1").await.unwrap();
                out.push(t.elapsed());
            }
        }
        (cp, ct)
    });
    let (bp, bt) = rt.block_on(async {
        let (mut bp, mut bt) = (Vec::new(), Vec::new());
        for round in 0..40 {
            for (out, e) in [(&mut bp, &plain), (&mut bt, &tls)] {
                let batch = docs(1000, 100_000 + round * 1000);
                let t = Instant::now();
                e.insert_many("m", batch).await.unwrap();
                out.push(t.elapsed());
            }
        }
        (bp, bt)
    });
    let ratio = |t: Duration, p: Duration| t.as_secs_f64() / p.as_secs_f64();
    let (lp, lt, cp, ct, bp, bt) = (p50(lp), p50(lt), p50(cp), p50(ct), p50(bp), p50(bt));
    println!(
        "interleaved p50: _id lookup plain {lp:?}, tls {lt:?} ({:.2}x); new connection plain {cp:?}, tls {ct:?} ({:.2}x); insert_many 1000 plain {bp:?}, tls {bt:?} ({:.2}x)",
        ratio(lt, lp),
        ratio(ct, cp),
        ratio(bt, bp)
    );

    let mut g = c.benchmark_group("pg_tls");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for (name, url) in [("plain", &plain_url), ("tls", &tls_url)] {
        g.bench_function(format!("connect_{name}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let client = testing::connect(url).await.unwrap();
                    client.simple_query("SELECT 1").await.unwrap();
                });
            });
        });
    }
    for ((name, e), ids) in engines.iter().zip([&ids, &tls_ids]) {
        let mut i = 0;
        g.bench_function(format!("find_by_id_{name}"), |b| {
            b.iter(|| {
                i += 1;
                let f = Filter::eq("_id", ids[i % ids.len()].clone());
                rt.block_on(e.find("c", &f, &FindOptions::default()))
                    .unwrap()
            });
        });
    }
    let mut offset = 1000;
    for (name, e) in engines {
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("insert_one_{name}"), |b| {
            b.iter_batched(
                || {
                    offset += 1;
                    docs(1, offset).pop().unwrap()
                },
                |d| rt.block_on(e.insert_one("i", d)).unwrap(),
                BatchSize::SmallInput,
            );
        });
        g.throughput(Throughput::Elements(1000));
        g.bench_function(format!("insert_many_1000_{name}"), |b| {
            b.iter_batched(
                || {
                    offset += 1000;
                    docs(1000, offset)
                },
                |batch| rt.block_on(e.insert_many("i", batch)).unwrap(),
                BatchSize::LargeInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
