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
//! BENCHMARKS.md records 100,000). Each sample is one whole run on a fresh
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
use cipherdoc::settings::Settings;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

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

#[derive(Clone)]
enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    fn settings(&self, dir: &Path, tag: &str) -> Settings {
        let key = dir.join("master.key");
        std::fs::write(&key, [7u8; 96]).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // The key vault lives in the encrypted database, whose name is the
        // alias on SQLite and a per-run schema on PostgreSQL.
        let (db, name) = match self {
            Self::Sqlite => (
                "engine = \"sqlite\"\npath = \"encrypted.db\"".to_owned(),
                "encrypted".to_owned(),
            ),
            Self::Postgres(url) => {
                let name = format!("cdbench_copy_{tag}");
                (
                    format!("engine = \"postgres\"\nurl = \"{url}\"\nname = \"{name}\""),
                    name,
                )
            }
        };
        let text = format!(
            r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
{db}

[databases.encrypted.encryption]
key_vault_namespace = "{name}.__keyVault"
kms_providers.local.key_file = "master.key"

[[routers]]
app = "bench"
database = "encrypted"
"#
        );
        Settings::from_toml(&text, dir).unwrap()
    }

    async fn cleanup(&self, app: &App) {
        if let Self::Postgres(url) = self {
            let client = cipherdoc_engine::postgres::testing::connect(url)
                .await
                .unwrap();
            let name = app.database("encrypted").unwrap().name().to_owned();
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await
                .unwrap();
        }
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
    let app = App::open(backend.settings(dir, tag))
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
            let app2 = App::open(backend.settings(dir.path(), &tag))
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
    let mut backends = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("CIPHERDOC_TEST_POSTGRES_URL")
        && !url.trim().is_empty()
    {
        backends.push(Backend::Postgres(url));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
