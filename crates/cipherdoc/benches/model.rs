//! What users call, measured through the model layer (issue 20): at N
//! documents (100,000 in BENCHMARKS.md), `QuerySet::get` by an encrypted,
//! equality-queryable field against `get` by an indexed plaintext field of
//! the same model (so both decrypt the same result), `create` of one
//! document, and `bulk_create` of 500 — on SQLite, and on PostgreSQL with
//! `CIPHERDOC_TEST_POSTGRES_URL`.
//!
//! `CIPHERDOC_BENCH_MODEL_DOCS=100000 cargo bench -p cipherdoc --bench model -- --warm-up-time 1 --measurement-time 3`
//!
//! Besides criterion's estimates the bench prints p50 and p90 of the two
//! `get`s over 300 rounds in which they take turns (both see the same load
//! on a shared machine), and their ratio. Loading the N documents is
//! outside every timed section.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::path::Path;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use cipherdoc::App;
use cipherdoc::migrations::{
    AppState, MigrateOptions, Migration, autodetect, migrate, model_state,
};
use cipherdoc::model::Model as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::Backend;

mod models {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "bench", collection = "bench_person")]
    pub struct Person {
        pub id: ObjectId,
        #[field(index)]
        pub badge: String,
        #[encrypted(queries = "equality")]
        pub ssn: String,
        pub name: String,
    }
}
use models::Person;

const ROUNDS: usize = 300;

fn person(i: usize) -> Person {
    Person {
        id: ObjectId::new(),
        badge: format!("B{i:08}"),
        ssn: format!("{:03}-{:02}-{:04}", i % 1000, i % 100, i),
        name: format!("Person {i}"),
    }
}

async fn open(backend: &Backend, dir: &Path, tag: &str) -> App {
    let app = App::open(backend.settings(dir, "model", tag))
        .await
        .unwrap()
        .register::<Person>()
        .unwrap();
    let operations = autodetect(
        "bench",
        &AppState::default(),
        &[model_state(Person::schema())],
    )
    .unwrap();
    let initial = Migration {
        app: "bench".into(),
        name: "0001_initial".into(),
        operations,
    };
    migrate(&app, &vec![initial], &MigrateOptions::database("encrypted"))
        .await
        .unwrap();
    app
}

/// The two ways the bench finds a person.
#[derive(Clone, Copy)]
enum Lookup {
    /// By the encrypted, equality-queryable `ssn`.
    EncryptedSsn,
    /// By the indexed plaintext `badge`.
    IndexedBadge,
}

impl Lookup {
    const BOTH: [Lookup; 2] = [Lookup::EncryptedSsn, Lookup::IndexedBadge];

    fn name(self) -> &'static str {
        match self {
            Lookup::EncryptedSsn => "get_by_encrypted_equality",
            Lookup::IndexedBadge => "get_by_indexed_plaintext",
        }
    }

    /// `QuerySet::get` of `want` by this lookup's field.
    async fn get(self, app: &App, want: &Person) -> Person {
        let fields = Person::fields();
        let q = match self {
            Lookup::EncryptedSsn => fields.ssn.eq(want.ssn.clone()),
            Lookup::IndexedBadge => fields.badge.eq(want.badge.clone()),
        };
        app.objects::<Person>().get(q).await.unwrap()
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let at = |p: usize| v[(v.len() * p / 100).min(v.len() - 1)];
    (at(50), at(90))
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("CIPHERDOC_BENCH_MODEL_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for backend in Backend::from_env() {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{}_{}", std::process::id(), ObjectId::new().to_hex());
        let app = rt.block_on(async {
            let app = open(&backend, dir.path(), &tag).await;
            let t = Instant::now();
            let people: Vec<Person> = (0..n).map(person).collect();
            for chunk in people.chunks(500) {
                app.objects::<Person>()
                    .bulk_create(chunk.to_vec())
                    .await
                    .unwrap();
            }
            println!("{}: loaded {n} people in {:?}", backend.name(), t.elapsed());
            app
        });
        let group = format!("model_{}k/{}", n / 1000, backend.name());

        // The two gets take turns, each on another person, so that both
        // see the same load: the ratio of their p50s is the figure.
        let mut times = [Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS)];
        rt.block_on(async {
            for r in 0..ROUNDS {
                let want = person((r * 7919) % n);
                let mut found = Vec::with_capacity(2);
                for (lookup, times) in Lookup::BOTH.into_iter().zip(&mut times) {
                    let t = Instant::now();
                    found.push(lookup.get(&app, &want).await);
                    times.push(t.elapsed());
                }
                assert_eq!(found[0], found[1]);
                assert_eq!(found[0].ssn, want.ssn);
            }
        });
        let [enc, plain] = times.map(percentiles);
        println!(
            "{group}: get by encrypted ssn p50 {:?} (p90 {:?}); by indexed badge p50 {:?} (p90 {:?}); ratio {:.2}",
            enc.0,
            enc.1,
            plain.0,
            plain.1,
            enc.0.as_secs_f64() / plain.0.as_secs_f64()
        );

        let mut g = c.benchmark_group(&group);
        let mut round = 0usize;
        for lookup in Lookup::BOTH {
            g.bench_function(lookup.name(), |b| {
                b.to_async(&rt).iter(|| {
                    round += 1;
                    let want = person((round * 7919) % n);
                    let app = &app;
                    async move { lookup.get(app, &want).await }
                });
            });
        }
        let mut next = n;
        g.bench_function("create", |b| {
            b.to_async(&rt).iter(|| {
                next += 1;
                let p = person(next);
                let app = &app;
                async move { app.objects::<Person>().create(p).await.unwrap() }
            });
        });
        g.throughput(Throughput::Elements(500));
        g.bench_function("bulk_create_500", |b| {
            b.to_async(&rt).iter(|| {
                let batch: Vec<Person> = (next..next + 500).map(person).collect();
                next += 500;
                let app = &app;
                async move { app.objects::<Person>().bulk_create(batch).await.unwrap() }
            });
        });
        g.finish();
        rt.block_on(backend.cleanup(&app));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
