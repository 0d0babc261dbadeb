//! Test helpers: fresh, migrated, throw-away databases in one line.
//!
//! ```no_run
//! # use cipherdoc::model::Model;
//! # async fn t<Patient: Model>() -> cipherdoc::Result<()> {
//! use cipherdoc::testing::TestApp;
//!
//! let app = TestApp::reference().register::<Patient>().migrated().await?;
//! let patients = app.objects::<Patient>();
//! // ... the databases and their key vaults vanish when `app` is dropped.
//! # Ok(()) }
//! ```
//!
//! [`TestApp::new`] takes the text of a settings file (yours, or
//! [`REFERENCE_SETTINGS`]) and rewrites it for the test: every database
//! becomes a SQLite file in a temporary folder, and every encrypted database
//! gets its own key vault (inside that file) and a freshly generated local
//! master key; a pinned `encrypted_fields_map` is dropped, because the keys
//! are new. Configured local providers keep their names (`local`,
//! `local:backup`); providers of other kinds are left out, so a model whose
//! keys must come from, say, `aws` needs real settings instead.
//! [`TestAppBuilder::migrated`] migrates every database for the registered
//! models (from their current definition, or from
//! [`TestAppBuilder::with_migrations`]), as the routers allow.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use crate::app::App;
use crate::client_encryption::generate_local_master_key_file;
use crate::error::{Error, Result};
use crate::migrations::{MigrateOptions, MigrationSource, initial_migrations, migrate};
use crate::model::Model;
use cipherdoc_kms::LocalMasterKeyDoc;

use crate::settings::{
    EngineSettings, KmsCredentialsSettings, KmsProviderSettings, MasterKey, ProviderKind,
    ProviderName, Router, SecretSource, Settings, SettingsError,
};

/// The reference's layout: `default`, and `encrypted` (database
/// `encrypted_db`, key vault `encrypted_db.__keyVault`, a local master key)
/// used by app `myapp`.
pub const REFERENCE_SETTINGS: &str = r#"
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
app = "myapp"
database = "encrypted"
"#;

type Register = fn(App) -> Result<App>;

/// Builds a [`TestApp`]; see the [module documentation](self).
#[must_use = "call .migrated().await or .open().await"]
pub struct TestAppBuilder {
    settings: String,
    models: Vec<Register>,
    routers: Vec<Box<dyn Router>>,
    migrations: Option<Box<dyn MigrationSource>>,
}

impl std::fmt::Debug for TestAppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestAppBuilder")
            .field("models", &self.models.len())
            .finish_non_exhaustive()
    }
}

/// An [`App`] over temporary databases, removed when dropped. Derefs to
/// [`App`].
#[derive(Debug)]
pub struct TestApp {
    // Declared before `dir` so that the databases close before their files go.
    app: App,
    dir: tempfile::TempDir,
}

impl Deref for TestApp {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

impl TestApp {
    /// A test app from the text of a settings file.
    // A builder on purpose: `TestApp::new(..).register::<M>().migrated().await?`
    // reads as one line in users' tests.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(settings_toml: impl Into<String>) -> TestAppBuilder {
        TestAppBuilder {
            settings: settings_toml.into(),
            models: Vec::new(),
            routers: Vec::new(),
            migrations: None,
        }
    }

    /// A test app with [`REFERENCE_SETTINGS`].
    pub fn reference() -> TestAppBuilder {
        Self::new(REFERENCE_SETTINGS)
    }

    /// The application.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The temporary folder holding the databases and master keys.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The app and the folder that holds its databases, for code that must
    /// own the [`App`] (e.g. `cipherdoc_cli::Management`); the databases are
    /// removed when the folder is dropped.
    pub fn into_parts(self) -> (App, tempfile::TempDir) {
        (self.app, self.dir)
    }

    /// The SQLite file of database `alias`.
    pub fn database_file(&self, alias: &str) -> PathBuf {
        self.dir.path().join(format!("{alias}.db"))
    }

    /// The local master key file of database `alias` (provider `local`).
    pub fn master_key_file(&self, alias: &str) -> PathBuf {
        self.dir.path().join(format!("{alias}.local.master.key"))
    }
}

impl TestAppBuilder {
    /// Registers a model.
    pub fn register<M: Model>(mut self) -> Self {
        self.models.push(App::register::<M>);
        self
    }

    /// Adds a router in code (asked before those of the settings).
    pub fn with_router(mut self, router: impl Router + 'static) -> Self {
        self.routers.push(Box::new(router));
        self
    }

    /// Migrates from these migrations instead of the models' current
    /// definition (e.g. `MigrationDir::new("migrations")`).
    pub fn with_migrations(mut self, source: impl MigrationSource + 'static) -> Self {
        self.migrations = Some(Box::new(source));
        self
    }

    /// Opens the app over fresh temporary databases, without migrating.
    pub async fn open(self) -> Result<TestApp> {
        Ok(self.build().await?.0)
    }

    /// Opens the app and migrates every database.
    pub async fn migrated(self) -> Result<TestApp> {
        let (t, migrations) = self.build().await?;
        let source: Box<dyn MigrationSource> = match migrations {
            Some(s) => s,
            None => Box::new(initial_migrations(&t.app)?),
        };
        let aliases: Vec<String> = t.app.databases().map(|d| d.alias().to_owned()).collect();
        for alias in aliases {
            migrate(&t.app, &*source, &MigrateOptions::database(alias)).await?;
        }
        Ok(t)
    }

    async fn build(self) -> Result<(TestApp, Option<Box<dyn MigrationSource>>)> {
        let dir = tempfile::Builder::new()
            .prefix("cipherdoc-test-")
            .tempdir()
            .map_err(Error::TempDir)?;
        let mut settings = Settings::from_toml(&self.settings, dir.path())?;
        for db in &mut settings.databases {
            match &mut db.engine {
                EngineSettings::Sqlite { path, .. } => {
                    *path = dir.path().join(format!("{}.db", db.alias));
                }
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(SettingsError::Invalid {
                        path: format!("databases.{}.engine", db.alias),
                        problem: "cipherdoc::testing gives tests SQLite databases; use engine = \"sqlite\" in test settings".to_owned(),
                    }
                    .into());
                }
            }
            let alias = db.alias.clone();
            let Some(enc) = &mut db.encryption else {
                continue;
            };
            let mut names: Vec<ProviderName> = enc
                .kms_providers
                .iter()
                .filter(|p| p.name.kind() == ProviderKind::Local)
                .map(|p| p.name.clone())
                .collect();
            if names.is_empty() {
                names.push(ProviderName::new(ProviderKind::Local));
            }
            let mut providers = Vec::new();
            for name in names {
                let file = dir.path().join(format!(
                    "{alias}.{}.master.key",
                    name.to_string().replace(':', "-")
                ));
                generate_local_master_key_file(&file)?;
                let master_key = MasterKey::Local(LocalMasterKeyDoc {
                    provider: name.clone(),
                });
                providers.push(KmsProviderSettings {
                    name,
                    credentials: KmsCredentialsSettings::Local {
                        key: SecretSource::File(file),
                        raw: true,
                    },
                    master_key,
                    transport: crate::settings::KmsTransportSettings::default(),
                });
            }
            if enc
                .default_kms_provider
                .as_ref()
                .is_some_and(|d| !providers.iter().any(|p| &p.name == d))
            {
                enc.default_kms_provider = None;
            }
            if enc.default_kms_provider.is_none() && providers.len() > 1 {
                enc.default_kms_provider = providers.first().map(|p| p.name.clone());
            }
            enc.kms_providers = providers;
            enc.encrypted_fields_map = None;
            enc.key_check_values = None;
        }
        let mut app = App::open(settings).await?;
        for r in self.routers.into_iter().rev() {
            app = app.with_router(BoxedRouter(r));
        }
        for register in self.models {
            app = register(app)?;
        }
        Ok((TestApp { app, dir }, self.migrations))
    }
}

/// A boxed router handed to [`App::with_router`], which takes one by value.
#[derive(Debug)]
struct BoxedRouter(Box<dyn Router>);

impl Router for BoxedRouter {
    fn db_for_read(&self, model: crate::settings::ModelRef<'_>) -> Option<String> {
        self.0.db_for_read(model)
    }
    fn db_for_write(&self, model: crate::settings::ModelRef<'_>) -> Option<String> {
        self.0.db_for_write(model)
    }
    fn allow_migrate(&self, db: &str, app: &str, model: Option<&str>) -> Option<bool> {
        self.0.allow_migrate(db, app, model)
    }
}
