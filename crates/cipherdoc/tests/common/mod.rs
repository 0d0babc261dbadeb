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
use cipherdoc_wire::ServerConfig;

/// Writes a secret file (a master key, a credential) owner-only, as
/// cipherdoc requires of secret files.
pub fn write_secret(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// The local master key every test settings file uses (`master.key`).
pub const MASTER_KEY: [u8; 96] = [42u8; 96];

pub fn settings(dir: &Path, app_label: &str, routed_to: &str) -> Settings {
    write_secret(&dir.join("master.key"), &MASTER_KEY);
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

/// Settings with `default` on SQLite and `encrypted` on the MongoDB
/// engine at `url` (database `name`, key vault `name.__keyVault`, the
/// local [`MASTER_KEY`]), routing `app_label` to `encrypted`; `extra` is
/// appended to `[databases.encrypted.encryption]` (e.g. a pinned map).
pub fn mongodb_settings(
    dir: &Path,
    url: &str,
    name: &str,
    app_label: &str,
    extra: &str,
) -> Settings {
    write_secret(&dir.join("master.key"), &MASTER_KEY);
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "mongodb"
url = "{url}"
name = "{name}"

[databases.encrypted.encryption]
key_vault_namespace = "{name}.__keyVault"
kms_providers.local.key_file = "master.key"
{extra}

[[routers]]
app = "{app_label}"
database = "encrypted"
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

/// Where a test's databases live: SQLite files in the test's folder,
/// schemas of the PostgreSQL test server (`CIPHERDOC_TEST_POSTGRES_URL`),
/// or (for the suites every engine runs, [`Backend::all_with_mongodb`])
/// the MongoDB engine against a `cipherdoc serve` started by the test.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
    /// `encrypted` on the MongoDB engine, a database of the `cipherdoc
    /// serve` at `url` (`mongodb://host:port/`) that stores in `over`
    /// (SQLite files in `data`, or PostgreSQL); `default` on SQLite in the
    /// test's folder.
    MongoServe {
        url: String,
        over: &'static str,
        data: Option<std::sync::Arc<tempfile::TempDir>>,
    },
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

    /// [`Backend::all`], then the MongoDB engine against a `cipherdoc
    /// serve` started here over SQLite files (and over PostgreSQL when
    /// the test server is configured).
    pub fn all_with_mongodb() -> Vec<Backend> {
        let mut out = Self::all();
        let data = tempfile::tempdir().unwrap();
        let addr = serve_over(
            cipherdoc_wire::Backend::Sqlite {
                dir: data.path().to_path_buf(),
            },
            |c| c,
        );
        out.push(Backend::MongoServe {
            url: format!("mongodb://{addr}/"),
            over: "sqlite",
            data: Some(std::sync::Arc::new(data)),
        });
        if let Some(url) = cipherdoc_engine::postgres::testing::test_url() {
            let addr = serve_over(
                cipherdoc_wire::Backend::Postgres {
                    url,
                    max_connections: 8,
                },
                |c| c,
            );
            out.push(Backend::MongoServe {
                url: format!("mongodb://{addr}/"),
                over: "postgres",
                data: None,
            });
        }
        out
    }

    /// Whether this is the MongoDB engine (what only a MongoDB client
    /// sees is checked for it).
    pub fn is_mongodb(&self) -> bool {
        matches!(self, Backend::MongoServe { .. })
    }

    /// `settings` for this backend: `default` and `encrypted` (with a local
    /// master key in `dir`), PostgreSQL schemas and MongoDB databases named
    /// uniquely per call.
    pub fn settings(&self, dir: &Path, app_label: &str, routed_to: &str) -> Settings {
        let tag = format!(
            "{}_{}",
            std::process::id(),
            bson::oid::ObjectId::new().to_hex()
        );
        self.settings_tagged(dir, app_label, routed_to, &tag)
    }

    /// [`Backend::settings`], the same databases every time for one
    /// folder: the PostgreSQL schemas' and MongoDB databases' names carry
    /// a tag kept in `dir`.
    pub fn settings_of_folder(&self, dir: &Path, app_label: &str, routed_to: &str) -> Settings {
        let tag_file = dir.join("db_tag");
        let tag = std::fs::read_to_string(&tag_file).unwrap_or_else(|_| {
            let t = format!(
                "{}_{}",
                std::process::id(),
                bson::oid::ObjectId::new().to_hex()
            );
            std::fs::write(&tag_file, &t).unwrap();
            t
        });
        self.settings_tagged(dir, app_label, routed_to, &tag)
    }

    fn settings_tagged(&self, dir: &Path, app_label: &str, routed_to: &str, tag: &str) -> Settings {
        let (default, encrypted, name) = match self {
            Backend::Sqlite => return settings(dir, app_label, routed_to),
            Backend::Postgres(url) => (
                format!("engine = \"postgres\"\nurl = \"{url}\"\nname = \"cdtest_plain_{tag}\""),
                format!("engine = \"postgres\"\nurl = \"{url}\""),
                format!("cdtest_enc_{tag}"),
            ),
            Backend::MongoServe { url, .. } => (
                "engine = \"sqlite\"\npath = \"default.db\"".to_owned(),
                format!("engine = \"mongodb\"\nurl = \"{url}\""),
                format!("cdtest_enc_{tag}"),
            ),
        };
        write_secret(&dir.join("master.key"), &MASTER_KEY);
        let text = format!(
            r#"
[databases.default]
{default}

[databases.encrypted]
{encrypted}
name = "{name}"

[databases.encrypted.encryption]
key_vault_namespace = "{name}.__keyVault"
kms_providers.local.key_file = "master.key"

[[routers]]
app = "{app_label}"
database = "{routed_to}"
"#
        );
        Settings::from_toml(&text, dir).unwrap()
    }

    /// Drops the PostgreSQL schemas or MongoDB databases of `app` (nothing
    /// for SQLite files, which go with the test's folder).
    pub async fn cleanup(&self, app: &App) {
        match self {
            Backend::Sqlite => {}
            Backend::Postgres(url) => {
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
            Backend::MongoServe { url, over, .. } => {
                let db = app.database("encrypted").unwrap();
                let engine = cipherdoc_mongodb::MongoEngine::connect(url, db.name())
                    .await
                    .unwrap();
                engine
                    .run_command(bson::doc! {"dropDatabase": 1})
                    .await
                    .unwrap();
                // serve's dropDatabase drops the collections and keeps the
                // database's (empty) catalog: its PostgreSQL schema goes
                // here.
                if *over == "postgres"
                    && let Some(pg) = cipherdoc_engine::postgres::testing::test_url()
                {
                    cipherdoc_engine::postgres::testing::connect(&pg)
                        .await
                        .unwrap()
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", db.name()))
                        .await
                        .unwrap();
                }
            }
        }
    }

    /// Whether any of `canaries` is in the bytes the database keeps on
    /// disk: every file of `dir` (SQLite: database, WAL, key vault; the
    /// MongoDB engine: `default`, and serve's files when it stores in
    /// SQLite), or the PostgreSQL server's data directory, WAL and log when
    /// readable here.
    pub async fn canaries_on_disk(&self, dir: &Path, canaries: &[&[u8]]) -> Vec<String> {
        use cipherdoc_engine::postgres::testing::{scan_for_canaries, server_files};
        let files_of = |dir: &Path| {
            let mut files = Vec::new();
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                if e.file_type().unwrap().is_file() {
                    files.push(e.path());
                }
            }
            files
        };
        let files = match self {
            Backend::Sqlite => files_of(dir),
            Backend::MongoServe { data, .. } => {
                let mut files = files_of(dir);
                if let Some(data) = data {
                    files.extend(files_of(data.path()));
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
            Backend::MongoServe { url, .. } if alias != "default" => std::sync::Arc::new(
                cipherdoc_mongodb::MongoEngine::connect(url, app.database(alias).unwrap().name())
                    .await
                    .unwrap(),
            ),
            Backend::MongoServe { .. } => std::sync::Arc::new(
                cipherdoc_engine::sqlite::SqliteEngine::open(dir.join("default.db")).unwrap(),
            ),
        }
    }
}

/// `cipherdoc serve` over SQLite files in `dir`, configured by `tweak`;
/// its address, `host:port` ([`serve_over`]).
pub fn serve_sqlite(dir: &Path, tweak: impl FnOnce(ServerConfig) -> ServerConfig) -> String {
    serve_over(
        cipherdoc_wire::Backend::Sqlite {
            dir: dir.to_path_buf(),
        },
        tweak,
    )
}

/// `cipherdoc serve` over `backend`, configured by `tweak`, on a loopback
/// port of a thread and runtime of its own (it outlives the test's
/// runtime); its address, `host:port`.
pub fn serve_over(
    backend: cipherdoc_wire::Backend,
    tweak: impl FnOnce(ServerConfig) -> ServerConfig,
) -> String {
    cipherdoc_wire::testing::serve_in_background(tweak(ServerConfig::new(backend))).unwrap()
}

/// Whether `needle` occurs in `hay` (the canary scans).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
