//! Settings: database connections, encryption options and routers.
//!
//! Read from a TOML file (`cipherdoc.toml`, or the path in `CIPHERDOC_SETTINGS`)
//! or built in code. Every mistake is a [`SettingsError`] naming the setting's
//! dotted path and the fix:
//!
//! ```toml
//! [databases.default]
//! engine = "sqlite"
//! path = "var/default.db"
//!
//! [databases.encrypted]
//! engine = "sqlite"
//! path = "var/encrypted.db"
//! name = "encrypted_db"
//!
//! [databases.encrypted.encryption]
//! key_vault_namespace = "encrypted_db.__keyVault"
//! kms_providers.local.key_file = "var/master.key"
//! # encrypted_fields_map = "encrypted_fields_map.json"   # pinned in production
//!
//! [[routers]]
//! app = "myapp"
//! database = "encrypted"
//! ```
//!
//! A PostgreSQL connection off this machine is verified TLS (see
//! `cipherdoc_engine::postgres::PgTransport`): the CA comes from the URL's
//! `sslrootcert` or from `tls_ca_file`, and a URL that could send data in
//! plain text to another host without saying `sslmode=disable` is refused
//! when the settings are read:
//!
//! ```toml
//! [databases.encrypted]
//! engine = "postgres"
//! url = "postgres://app:${PGPASSWORD}@db.internal:5432/clinic?sslmode=verify-full"
//! tls_ca_file = "certs/db-ca.pem"   # or sslrootcert=... in the URL
//! ```
//!
//! Key documents live in the database, so whoever can write to it could
//! point one at a KMS host of theirs: a key document is used only if its
//! `masterKey` equals the one `kms_credentials` names, or its host is on the
//! provider's `allowed_hosts` (older master keys after a rotation). A
//! provider may also take `endpoint` (`kms_endpoint` for gcp, whose
//! `endpoint` is the OAuth host) and `tls_ca_file`; `key_check_values`
//! pins the data keys of a pinned map (`showencryptedfieldsmap
//! --key-check-values`):
//!
//! ```toml
//! [databases.encrypted.encryption.kms_providers.aws]
//! access_key_id = "AKIA..."
//! secret_access_key_env = "AWS_SECRET_ACCESS_KEY"
//! allowed_hosts = ["kms.eu-west-1.amazonaws.com"]
//! ```
//!
//! Strings may use `${VAR}` to take a value from the environment. Secrets
//! (`kms_providers.*`) are given as `<secret>_file` or `<secret>_env`; written
//! inline they work but are logged as a development-only warning.

mod error;
mod kms;
mod reader;
mod router;

use std::path::{Path, PathBuf};

#[cfg(feature = "postgres")]
use cipherdoc_engine::postgres::{PgTransport, PgUrl};
use toml::Table;

pub use error::{ProviderChoiceError, SettingsError};
// The provider names and master keys of the settings are the KMS crate's.
pub use cipherdoc_kms::{MasterKey, ProviderKind, ProviderName};
pub use kms::{KmsCredentialsSettings, KmsTransportSettings, SecretSource};
pub use router::{DEFAULT_DB, ModelRef, Router, Routers, RuleRouter};

use reader::{EnvLookup, TableReader};

/// The environment variable naming the settings file.
pub const SETTINGS_ENV: &str = "CIPHERDOC_SETTINGS";
/// The settings file used when `CIPHERDOC_SETTINGS` is not set.
pub const DEFAULT_SETTINGS_FILE: &str = "cipherdoc.toml";

/// Everything the settings file says.
#[derive(Debug)]
pub struct Settings {
    /// The databases, by alias, in file order; `default` is always present.
    pub databases: Vec<DatabaseSettings>,
    /// Routers, asked in order.
    pub routers: Routers,
}

/// One database connection (`databases.<alias>`).
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The alias models are routed to, e.g. `encrypted`.
    pub alias: String,
    /// Which engine stores the data.
    pub engine: EngineSettings,
    /// The database's name (namespaces are `<name>.<collection>`); defaults to the alias.
    pub name: String,
    /// Engine-specific options, passed to the engine unchanged.
    pub options: Table,
    /// Queryable Encryption, when this connection encrypts.
    pub encryption: Option<EncryptionSettings>,
}

/// The storage engine of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineSettings {
    /// The embedded default: one SQLite file per database (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// `max_size_mb`: the most the file may grow to, in MiB; a write
        /// past it fails with `EngineError::StorageFull` and is rolled back
        /// (`None`: as much as the disk allows).
        max_size_mb: Option<u64>,
    },
    /// A PostgreSQL server (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres {
        /// Connection URL, e.g. `postgres://user@127.0.0.1/test`; its
        /// `Debug` hides the password.
        url: PgUrl,
        /// The CA the server's certificate must lead to (`tls_ca_file`,
        /// relative to the settings file); given, it turns TLS on.
        tls_ca_file: Option<PathBuf>,
    },
    /// A MongoDB replica set or sharded cluster (7.0 or later for
    /// encrypted databases), or `cipherdoc serve`: the server plays the QE
    /// server role (feature `mongodb`).
    #[cfg(feature = "mongodb")]
    Mongodb {
        /// The connection string (`mongodb://…`): `url`, or from a file
        /// (`url_file`) or an environment variable (`url_env`) when it
        /// holds a password. Read when the database is opened.
        url: SecretSource,
    },
}

/// The `encryption` table of a database: what the reference passes as
/// `AutoEncryptionOpts` plus `KMS_CREDENTIALS`.
#[derive(Debug, Clone)]
pub struct EncryptionSettings {
    /// `<db>.<collection>` of the key vault; `<db>` equals the database name.
    pub key_vault_namespace: String,
    /// Configured providers with their credentials and master keys.
    pub kms_providers: Vec<KmsProviderSettings>,
    /// The provider new data keys use when a model or field names none.
    pub default_kms_provider: Option<ProviderName>,
    /// A pinned encrypted fields map (file path), which wins over the catalog.
    pub encrypted_fields_map: Option<PathBuf>,
    /// The key check values of the pinned map's data keys (file path, a
    /// sidecar of the map written by `showencryptedfieldsmap
    /// --key-check-values`): a data key whose value differs is refused.
    pub key_check_values: Option<PathBuf>,
    /// How long unwrapped data keys stay cached, in seconds.
    pub data_key_cache_ttl_secs: u64,
}

/// One configured KMS provider (`kms_providers.<name>` with its
/// `kms_credentials.<name>`); the provider itself is a
/// [`cipherdoc_kms::KmsProvider`] built from this when the database opens.
#[derive(Debug, Clone)]
pub struct KmsProviderSettings {
    /// `aws`, `aws:prod`, `local`, ...
    pub name: ProviderName,
    /// How to authenticate to it.
    pub credentials: KmsCredentialsSettings,
    /// The master key new data keys are wrapped with.
    pub master_key: MasterKey,
    /// Endpoint, CA file and the hosts whose master keys may be used.
    pub transport: KmsTransportSettings,
}

impl EncryptionSettings {
    /// The key vault's database and collection.
    pub fn key_vault(&self) -> (&str, &str) {
        self.key_vault_namespace
            .split_once('.')
            .unwrap_or((&self.key_vault_namespace, ""))
    }

    /// The provider to wrap a new key with: the one asked for, else the
    /// default, else the only one configured.
    pub fn provider_for(
        &self,
        asked: Option<&str>,
    ) -> Result<&KmsProviderSettings, ProviderChoiceError> {
        let wanted =
            match asked {
                Some(a) => Some(a.parse::<ProviderName>().map_err(|e| {
                    ProviderChoiceError::InvalidName {
                        name: a.to_owned(),
                        reason: match e {
                            cipherdoc_kms::KmsError::InvalidProviderName { reason, .. } => reason,
                            _ => "not a KMS provider name",
                        },
                    }
                })?),
                None => self.default_kms_provider.clone(),
            };
        match wanted {
            Some(w) => self
                .kms_providers
                .iter()
                .find(|p| p.name == w)
                .ok_or_else(|| ProviderChoiceError::NotConfigured(w.to_string())),
            None => match self.kms_providers.as_slice() {
                [only] => Ok(only),
                _ => Err(ProviderChoiceError::Ambiguous),
            },
        }
    }
}

impl Settings {
    /// Loads the file named by `CIPHERDOC_SETTINGS`, else `cipherdoc.toml`.
    pub fn load() -> Result<Self, SettingsError> {
        let path = std::env::var_os(SETTINGS_ENV)
            .map_or_else(|| PathBuf::from(DEFAULT_SETTINGS_FILE), PathBuf::from);
        Self::from_file(&path)
    }

    /// Loads a settings file; relative paths in it are relative to its folder.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        Self::from_toml_with(&text, path, base, &|v| std::env::var(v).ok())
    }

    /// Parses settings text; `base_dir` anchors relative paths.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, SettingsError> {
        Self::from_toml_with(text, Path::new("<settings>"), base_dir, &|v| {
            std::env::var(v).ok()
        })
    }

    /// As [`Settings::from_toml`], with an explicit environment for `${VAR}`.
    pub fn from_toml_with(
        text: &str,
        file: &Path,
        base_dir: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Self, SettingsError> {
        let table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| SettingsError::Syntax {
                path: file.to_owned(),
                message: e.to_string(),
            })?;
        let mut root = TableReader::new("", &table, env);
        let dbs = root
            .opt_table("databases")?
            .ok_or_else(|| root.error("databases", "missing; add at least [databases.default]"))?;
        if !dbs.contains_key(DEFAULT_DB) {
            return Err(root.error(
                "databases.default",
                "missing; every project needs a `default` database",
            ));
        }
        let dbr = root.sub("databases", dbs);
        let mut databases = Vec::new();
        for (alias, value) in dbs {
            let t = value
                .as_table()
                .ok_or_else(|| dbr.error(alias, "expected a table"))?;
            let mut r = dbr.sub(alias, t);
            databases.push(read_database(&mut r, alias, base_dir)?);
        }
        let mut routers = Routers::default();
        if let Some(list) = root.opt_array("routers")? {
            for (i, v) in list.iter().enumerate() {
                let key = format!("routers[{i}]");
                let t = v.as_table().ok_or_else(|| {
                    root.error(
                        &key,
                        "expected a table like { app = \"myapp\", database = \"encrypted\" }",
                    )
                })?;
                let mut r = root.sub(&key, t);
                let app = r.req_str("app", "name the application label the rule routes")?;
                let database =
                    r.req_str("database", "name the database alias the app's models use")?;
                let models = match r.opt_array("models")? {
                    None => Vec::new(),
                    Some(a) => a
                        .iter()
                        .map(|m| m.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| r.error("models", "expected an array of model names"))?,
                };
                r.finish(&["app", "database", "models"])?;
                if !databases.iter().any(|d| d.alias == database) {
                    return Err(r.error(
                        "database",
                        format!("no database `{database}` in [databases]"),
                    ));
                }
                routers.push(RuleRouter {
                    app,
                    models,
                    database,
                });
            }
        }
        root.finish(&["databases", "routers"])?;
        Ok(Self { databases, routers })
    }

    /// The database with this alias.
    pub fn database(&self, alias: &str) -> Option<&DatabaseSettings> {
        self.databases.iter().find(|d| d.alias == alias)
    }
}

// Settings compare by where a secret comes from (an inline one by value),
// so that `EngineSettings` can be compared in tests.
impl PartialEq for SecretSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::File(a), Self::File(b)) => a == b,
            (Self::Env(a), Self::Env(b)) => a == b,
            (Self::Inline(a), Self::Inline(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}
impl Eq for SecretSource {}

/// `url`, `url_env` or `url_file` of a mongodb database: exactly one. An
/// inline URL is fine without a password (`mongodb://127.0.0.1:27017/`);
/// one that holds a password belongs in a file or the environment.
#[cfg(feature = "mongodb")]
fn read_mongodb_url(
    r: &mut TableReader<'_>,
    base_dir: &Path,
) -> Result<SecretSource, SettingsError> {
    let inline = r.opt_str("url")?;
    let env = r.opt_str("url_env")?;
    let file = r.opt_str("url_file")?;
    let given =
        usize::from(inline.is_some()) + usize::from(env.is_some()) + usize::from(file.is_some());
    if given != 1 {
        return Err(r.error(
            "url",
            "give exactly one of `url`, `url_env` (an environment variable) and `url_file`, e.g. url_env = \"CIPHERDOC_MONGODB_URL\"",
        ));
    }
    Ok(match (inline, env, file) {
        (Some(u), _, _) => {
            if !(u.starts_with("mongodb://") || u.starts_with("mongodb+srv://")) {
                return Err(r.error("url", "a MongoDB connection string starts with mongodb://"));
            }
            let authority = u.split_once("://").map_or("", |(_, rest)| rest);
            let authority = authority.split('/').next().unwrap_or_default();
            if authority
                .split_once('@')
                .is_some_and(|(cred, _)| cred.contains(':'))
            {
                tracing::warn!(
                    setting = %r.child_path("url"),
                    "a MongoDB password written in the settings file is for development only: use `url_env` or `url_file`"
                );
            }
            SecretSource::Inline(zeroize::Zeroizing::new(u))
        }
        (_, Some(e), _) => SecretSource::Env(e),
        (_, _, Some(f)) => SecretSource::File(base_dir.join(f)),
        _ => return Err(r.error("url", "missing")),
    })
}

fn read_database(
    r: &mut TableReader<'_>,
    alias: &str,
    base_dir: &Path,
) -> Result<DatabaseSettings, SettingsError> {
    let engine_name = r.req_str(
        "engine",
        "set engine = \"sqlite\", \"postgres\" or \"mongodb\"",
    )?;
    if engine_name != "mongodb" && (r.has("url_env") || r.has("url_file")) {
        return Err(r.error(
            "url_env",
            "`url_env` and `url_file` belong to the mongodb engine; remove them",
        ));
    }
    if engine_name == "sqlite" && r.has("url") {
        return Err(r.error("url", "the sqlite engine takes `path`, not `url`"));
    }
    if engine_name == "postgres" && r.has("path") {
        return Err(r.error("path", "the postgres engine takes `url`, not `path`"));
    }
    if engine_name != "postgres" && r.has("tls_ca_file") {
        return Err(r.error(
            "tls_ca_file",
            "only the postgres engine connects over TLS; remove it",
        ));
    }
    let engine = match engine_name.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let path = r.req_str(
                "path",
                "set the SQLite file, e.g. path = \"var/default.db\"",
            )?;
            let max_size_mb = match r.opt_int("max_size_mb")? {
                None => None,
                Some(mb) => Some(u64::try_from(mb).ok().filter(|mb| *mb >= 1).ok_or_else(
                    || {
                        r.error(
                            "max_size_mb",
                            format!("{mb} is not a size; give whole MiB, at least 1"),
                        )
                    },
                )?),
            };
            EngineSettings::Sqlite {
                path: base_dir.join(path),
                max_size_mb,
            }
        }
        #[cfg(feature = "postgres")]
        "postgres" => {
            let url = PgUrl::new(r.req_str(
                "url",
                "set the server, e.g. url = \"postgres://postgres@127.0.0.1:5432/test\"",
            )?);
            let tls_ca_file = r.opt_str("tls_ca_file")?.map(|p| base_dir.join(p));
            // Checked now, not at the first connection: a URL that would
            // send data in plain text to another machine never gets that far.
            PgTransport::resolve(url.expose(), tls_ca_file.as_deref()).map_err(|source| {
                SettingsError::Postgres {
                    path: r.child_path("url"),
                    source,
                }
            })?;
            EngineSettings::Postgres { url, tls_ca_file }
        }
        #[cfg(feature = "mongodb")]
        "mongodb" => {
            if r.has("path") {
                return Err(r.error("path", "the mongodb engine takes `url`, not `path`"));
            }
            EngineSettings::Mongodb {
                url: read_mongodb_url(r, base_dir)?,
            }
        }
        // A known engine this build was compiled without.
        #[allow(unreachable_patterns)]
        known @ ("sqlite" | "postgres" | "mongodb") => {
            return Err(SettingsError::FeatureMissing {
                path: r.child_path("engine"),
                what: format!("{known} engine"),
                feature: match known {
                    "sqlite" => "sqlite",
                    "postgres" => "postgres",
                    _ => "mongodb",
                },
            });
        }
        other => {
            return Err(r.error(
                "engine",
                format!("unknown engine `{other}`; use \"sqlite\", \"postgres\" or \"mongodb\""),
            ));
        }
    };
    let name = r.opt_str("name")?.unwrap_or_else(|| alias.to_owned());
    if name.is_empty() || name.contains('.') || name.contains('\0') {
        return Err(r.error("name", "a database name may not be empty or contain `.`"));
    }
    let options = r.opt_table("options")?.cloned().unwrap_or_default();
    let encryption = match r.opt_table("encryption")? {
        None => None,
        Some(t) => {
            let mut e = r.sub("encryption", t);
            Some(read_encryption(&mut e, &name, base_dir)?)
        }
    };
    r.finish(&[
        "engine",
        "path",
        "max_size_mb",
        "url",
        "url_env",
        "url_file",
        "tls_ca_file",
        "name",
        "options",
        "encryption",
    ])?;
    Ok(DatabaseSettings {
        alias: alias.to_owned(),
        engine,
        name,
        options,
        encryption,
    })
}

fn read_encryption(
    r: &mut TableReader<'_>,
    db_name: &str,
    base_dir: &Path,
) -> Result<EncryptionSettings, SettingsError> {
    let key_vault_namespace = r.req_str(
        "key_vault_namespace",
        &format!(
            "set it to \"{db_name}.__keyVault\" (the database part must be this database's name)"
        ),
    )?;
    match key_vault_namespace.split_once('.') {
        Some((db, coll)) if db == db_name && !coll.is_empty() => {}
        Some((db, _)) if db != db_name => {
            return Err(r.error(
                "key_vault_namespace",
                format!("the database part `{db}` must equal the database name `{db_name}`; use \"{db_name}.__keyVault\""),
            ));
        }
        _ => {
            return Err(r.error(
                "key_vault_namespace",
                format!("expected \"<database>.<collection>\", e.g. \"{db_name}.__keyVault\""),
            ));
        }
    }
    let kms_providers = kms::read_kms(r, base_dir)?
        .into_iter()
        .map(
            |(name, credentials, master_key, transport)| KmsProviderSettings {
                name,
                credentials,
                master_key,
                transport,
            },
        )
        .collect::<Vec<_>>();
    let default_kms_provider = match r.opt_str("default_kms_provider")? {
        None => None,
        Some(s) => {
            let n = kms::provider_name(&s).map_err(|p| r.error("default_kms_provider", p))?;
            if !kms_providers.iter().any(|p| p.name == n) {
                return Err(r.error(
                    "default_kms_provider",
                    format!("`{n}` is not in kms_providers"),
                ));
            }
            Some(n)
        }
    };
    let encrypted_fields_map = r.opt_str("encrypted_fields_map")?.map(|p| base_dir.join(p));
    let key_check_values = r.opt_str("key_check_values")?.map(|p| base_dir.join(p));
    let ttl = r.opt_int("data_key_cache_ttl_secs")?.unwrap_or(60);
    let data_key_cache_ttl_secs = u64::try_from(ttl)
        .map_err(|_| r.error("data_key_cache_ttl_secs", "must be 0 or more seconds"))?;
    r.finish(&[
        "key_vault_namespace",
        "kms_providers",
        "kms_credentials",
        "default_kms_provider",
        "encrypted_fields_map",
        "key_check_values",
        "data_key_cache_ttl_secs",
    ])?;
    Ok(EncryptionSettings {
        key_vault_namespace,
        kms_providers,
        default_kms_provider,
        encrypted_fields_map,
        key_check_values,
        data_key_cache_ttl_secs,
    })
}
