//! What the `cipherdoc` benches share: the engines they run on.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use cipherdoc::App;
use cipherdoc::settings::Settings;

/// The engine a bench runs on: SQLite always, PostgreSQL with
/// `CIPHERDOC_TEST_POSTGRES_URL`.
#[derive(Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Settings of an app whose `bench` models are routed to the
    /// encrypted database, in `dir` (SQLite) or a schema named after `what`
    /// and `tag` (PostgreSQL), with a local master key.
    pub fn settings(&self, dir: &Path, what: &str, tag: &str) -> Settings {
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
                let name = format!("cdbench_{what}_{tag}");
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

    /// Drop what a PostgreSQL run left.
    pub async fn cleanup(&self, app: &App) {
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

impl Backend {
    /// SQLite, and PostgreSQL when `CIPHERDOC_TEST_POSTGRES_URL` is set.
    pub fn from_env() -> Vec<Self> {
        let mut backends = vec![Backend::Sqlite];
        if let Ok(url) = std::env::var("CIPHERDOC_TEST_POSTGRES_URL")
            && !url.trim().is_empty()
        {
            backends.push(Backend::Postgres(url));
        }
        backends
    }
}
