//! Shared setup for the end-to-end tests: two SQLite databases, one
//! encrypted with a local master key, and the encrypted collection a model
//! needs (what `migrate` does: one data key per encrypted field, then the
//! collection with its encryptedFields).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use bson::{Bson, Document, doc};
use cipherdoc::App;
use cipherdoc::model::Model;
use cipherdoc::settings::Settings;
use cipherdoc_engine::{CreateCollectionOptions, Filter, FindOptions};
use cipherdoc_wire::{Server, ServerConfig};

/// Writes a secret file (a master key, a credential) owner-only, as
/// cipherdoc requires of secret files.
pub fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

pub fn settings(dir: &Path, app_label: &str, routed_to: &str) -> Settings {
    write_secret(&dir.join("master.key"), &[42u8; 96]);
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "sqlite"
path = "encrypted.db"
name = "encrypted_db"

[databases.encrypted.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
kms_providers.local.key_file = "master.key"

[[routers]]
app = "{app_label}"
database = "{routed_to}"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

pub async fn create_encrypted_collection<M: Model>(app: &App) {
    let db = app.database("encrypted").unwrap();
    let enc = db.encryption().unwrap();
    let schema = M::schema();
    let master = enc.master_key_for(None).unwrap();
    let mut fields = Vec::new();
    for p in schema.encrypted_paths() {
        let alt = format!("{}.{}", schema.collection, p.path);
        let id = enc.keys().create_data_key(master, vec![alt]).await.unwrap();
        let mut f = p.to_document();
        f.insert("keyId", id.to_binary());
        fields.push(Bson::Document(f));
    }
    let options = CreateCollectionOptions {
        encrypted_fields: Some(doc! { "fields": fields }),
    };
    db.engine()
        .create_collection(&schema.collection, options)
        .await
        .unwrap();
}

pub async fn raw_docs<M: Model>(app: &App, alias: &str) -> Vec<Document> {
    let db = app.database(alias).unwrap();
    db.engine()
        .find(
            &M::schema().collection,
            &Filter::all(),
            &FindOptions::default(),
        )
        .await
        .unwrap()
}

/// Where a test's databases live: SQLite files in the test's folder, or
/// schemas of the PostgreSQL test server (`CIPHERDOC_TEST_POSTGRES_URL`).
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// SQLite always; PostgreSQL when the test server is configured.
    pub fn all() -> Vec<Backend> {
        let mut out = vec![Backend::Sqlite];
        if let Some(url) = cipherdoc_engine::postgres::testing::test_url() {
            out.push(Backend::Postgres(url));
        }
        out
    }

    /// `settings` for this backend: `default` and `encrypted` (with a local
    /// master key in `dir`), PostgreSQL schemas named uniquely per call.
    pub fn settings(&self, dir: &Path, app_label: &str, routed_to: &str) -> Settings {
        match self {
            Backend::Sqlite => settings(dir, app_label, routed_to),
            Backend::Postgres(url) => {
                write_secret(&dir.join("master.key"), &[42u8; 96]);
                let tag = format!(
                    "{}_{}",
                    std::process::id(),
                    bson::oid::ObjectId::new().to_hex()
                );
                let text = format!(
                    r#"
[databases.default]
engine = "postgres"
url = "{url}"
name = "cdtest_plain_{tag}"

[databases.encrypted]
engine = "postgres"
url = "{url}"
name = "cdtest_enc_{tag}"

[databases.encrypted.encryption]
key_vault_namespace = "cdtest_enc_{tag}.__keyVault"
kms_providers.local.key_file = "master.key"

[[routers]]
app = "{app_label}"
database = "{routed_to}"
"#
                );
                Settings::from_toml(&text, dir).unwrap()
            }
        }
    }

    /// Drops the PostgreSQL schemas of `app` (nothing for SQLite).
    pub async fn cleanup(&self, app: &App) {
        if let Backend::Postgres(url) = self {
            let client = cipherdoc_engine::postgres::testing::connect(url)
                .await
                .unwrap();
            for db in app.databases() {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", db.name()))
                    .await
                    .unwrap();
            }
        }
    }

    /// Whether any of `canaries` is in the bytes the database keeps on
    /// disk: every file of `dir` (SQLite: database, WAL, key vault), or the
    /// PostgreSQL server's data directory, WAL and log when readable here.
    pub async fn canaries_on_disk(&self, dir: &Path, canaries: &[&[u8]]) -> Vec<String> {
        use cipherdoc_engine::postgres::testing::{scan_for_canaries, server_files};
        let files = match self {
            Backend::Sqlite => {
                let mut files = Vec::new();
                for e in std::fs::read_dir(dir).unwrap().flatten() {
                    if e.file_type().unwrap().is_file() {
                        files.push(e.path());
                    }
                }
                files
            }
            Backend::Postgres(url) => match server_files(url).await.unwrap() {
                Some(f) => f,
                None => return Vec::new(),
            },
        };
        let scan = scan_for_canaries(&files, canaries);
        assert!(scan.files > 0 && scan.bytes > 0, "the scan read nothing");
        scan.hits
            .iter()
            .map(|h| format!("canary {} in {} ({})", h.canary, h.file.display(), h.form))
            .collect()
    }
}

impl Backend {
    /// The engine under database `alias` without cipherdoc's QE server
    /// role in front: what someone with write access to the database can do.
    pub async fn raw_engine(
        &self,
        dir: &Path,
        app: &App,
        alias: &str,
    ) -> std::sync::Arc<dyn cipherdoc_engine::Engine> {
        match self {
            Backend::Sqlite => std::sync::Arc::new(
                cipherdoc_engine::sqlite::SqliteEngine::open(dir.join(format!("{alias}.db")))
                    .unwrap(),
            ),
            Backend::Postgres(url) => std::sync::Arc::new(
                cipherdoc_engine::postgres::PgEngine::connect(
                    url,
                    app.database(alias).unwrap().name(),
                )
                .await
                .unwrap(),
            ),
        }
    }
}

/// `cipherdoc serve` over SQLite files in `dir`, configured by `tweak`, on
/// a loopback port of a thread and runtime of its own (it outlives the
/// test's runtime); its address, `host:port`.
pub fn serve_sqlite(
    dir: &Path,
    tweak: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static,
) -> String {
    let backend = cipherdoc_wire::Backend::Sqlite {
        dir: dir.to_path_buf(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            Server::new(tweak(ServerConfig::new(backend)))
                .serve(listener, std::future::pending())
                .await;
        });
    });
    rx.recv().unwrap()
}

/// Whether `needle` occurs in `hay` (the canary scans).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
