//! Copy migrations (issue 19): documents per second of a copy that
//! encrypts a plaintext field (decrypt-free read, encrypt, QE insert into
//! the new collection, the switch, the scrub), against inserting the same
//! documents through the application: plaintext (the collection before)
//! and encrypted (the collection after, `bulk_create` in batches of 500 as
//! the copy inserts). SQLite always; PostgreSQL with
//! `CIPHERDOC_TEST_POSTGRES_URL`.
//!
//! `cargo bench -p cipherdoc --bench copy`
//!
//! `CIPHERDOC_BENCH_COPY_DOCS` sets the number of documents (default 2,000;
//! BENCHMARKS.md records 100,000). `CIPHERDOC_BENCH_COPY_RUNS=k` times k
//! whole runs of each directly instead of criterion's 10-sample groups. Each sample is one whole run on a fresh
//! database; the setup (migrating, storing the plaintext documents) is
//! outside the timed section.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss)]

use std::path::Path;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use cipherdoc::App;
use cipherdoc::migrations::{
    AppState, MigrateOptions, Migration, autodetect, migrate, model_state,
};
use cipherdoc::model::Model as _;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

mod common;
use common::Backend;

mod before {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "bench", collection = "bench_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient_id: i64,
        pub diagnosis: String,
        pub notes: String,
    }
}

mod after {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "bench", collection = "bench_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient_id: i64,
        #[encrypted(queries = "equality")]
        pub diagnosis: String,
        pub notes: String,
    }
}

fn migrations() -> Vec<Migration> {
    let first = autodetect(
        "bench",
        &AppState::default(),
        &[model_state(before::Visit::schema())],
    )
    .unwrap();
    let m1 = Migration {
        app: "bench".into(),
        name: "0001_initial".into(),
        operations: first,
    };
    let state = AppState::from_migrations(std::slice::from_ref(&m1)).unwrap();
    let second = autodetect("bench", &state, &[model_state(after::Visit::schema())]).unwrap();
    vec![
        m1,
        Migration {
            app: "bench".into(),
            name: "0002_copy_visit".into(),
            operations: second,
        },
    ]
}

fn visits(n: usize) -> Vec<before::Visit> {
    (0..n)
        .map(|i| before::Visit {
            id: ObjectId::new(),
            patient_id: i64::try_from(i).unwrap(),
            diagnosis: format!("diagnosis {}", i % 97),
            notes: format!("seen on day {i}, follow-up in two weeks"),
        })
        .collect()
}

fn to_after(v: &before::Visit) -> after::Visit {
    after::Visit {
        id: v.id,
        patient_id: v.patient_id,
        diagnosis: v.diagnosis.clone(),
        notes: v.notes.clone(),
    }
}

/// An app on a fresh database in `dir`, migrated to `target` with the
/// model version the target needs registered.
async fn open<M: cipherdoc::model::Model>(
    backend: &Backend,
    dir: &Path,
    tag: &str,
    target: &str,
) -> App {
    let app = App::open(backend.settings(dir, "copy", tag))
        .await
        .unwrap()
        .register::<M>()
        .unwrap();
    let opts = MigrateOptions {
        app: Some("bench".into()),
        target: Some(target.into()),
        ..MigrateOptions::database("encrypted")
    };
    migrate(&app, &migrations(), &opts).await.unwrap();
    app
}

async fn bulk<M: cipherdoc::model::Model + Clone>(app: &App, docs: &[M]) {
    for chunk in docs.chunks(500) {
        app.objects::<M>()
            .bulk_create(chunk.to_vec())
            .await
            .unwrap();
    }
}

/// One timed run of `what` on a fresh database of `n` documents.
async fn run_once(backend: &Backend, what: &str, n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("{}_{}", std::process::id(), ObjectId::new().to_hex());
    let docs = visits(n);
    match what {
        "plaintext insert" => {
            let app = open::<before::Visit>(backend, dir.path(), &tag, "0001").await;
            let t = Instant::now();
            bulk(&app, &docs).await;
            let d = t.elapsed();
            backend.cleanup(&app).await;
            d
        }
        "encrypted insert" => {
            let app = open::<after::Visit>(backend, dir.path(), &tag, "0002").await;
            let t = Instant::now();
            bulk(&app, &docs.iter().map(to_after).collect::<Vec<_>>()).await;
            let d = t.elapsed();
            backend.cleanup(&app).await;
            d
        }
        _ => {
            let app = open::<before::Visit>(backend, dir.path(), &tag, "0001").await;
            bulk(&app, &docs).await;
            drop(app);
            let app2 = App::open(backend.settings(dir.path(), "copy", &tag))
                .await
                .unwrap()
                .register::<after::Visit>()
                .unwrap();
            let t = Instant::now();
            migrate(&app2, &migrations(), &MigrateOptions::database("encrypted"))
                .await
                .unwrap();
            let d = t.elapsed();
            backend.cleanup(&app2).await;
            d
        }
    }
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("CIPHERDOC_BENCH_COPY_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let backends = Backend::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A few whole runs each, timed directly: at 100k documents a 10-sample
    // criterion group takes most of an hour per engine.
    if let Some(runs) = std::env::var("CIPHERDOC_BENCH_COPY_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        for backend in &backends {
            for what in ["plaintext insert", "encrypted insert", "copy"] {
                let mut times: Vec<Duration> = (0..runs)
                    .map(|_| rt.block_on(run_once(backend, what, n)))
                    .collect();
                times.sort_unstable();
                let median = times[times.len() / 2];
                println!(
                    "copy/{}/{what}: {n} documents, {runs} runs: median {median:?} ({:.0} docs/s), min {:?}, max {:?}",
                    backend.name(),
                    n as f64 / median.as_secs_f64(),
                    times[0],
                    times[times.len() - 1]
                );
            }
        }
        return;
    }
    for backend in &backends {
        let mut g = c.benchmark_group(format!("copy/{}", backend.name()));
        g.sample_size(10);
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(n as u64));
        for what in ["plaintext insert", "encrypted insert", "copy"] {
            g.bench_function(what, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let backend = backend.clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += run_once(&backend, what, n).await;
                        }
                        total
                    }
                });
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
