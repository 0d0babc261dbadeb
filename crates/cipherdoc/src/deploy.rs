//! `check --deploy`: what a development setup gets away with and a
//! deployment must not (Django's command of the same name). Each finding is
//! typed ([`DeployFinding`]), has a [`Severity`] and says its fix; the
//! command line prints them and fails when one is an error.
//!
//! The checks read the settings, file modes and the live database (the key
//! vault's indexes, the ECOC's size) and never read a secret. The leakage
//! report ([`crate::leakage`]), which the check includes unless
//! [`DeployOptions::leakage`] is `None` (`--skip-leakage`), unwraps each
//! encrypted field's data key through the KMS to read the ECOC; the rest
//! never contacts a KMS.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::app::{App, Database};
use crate::error::Result;
use crate::leakage::{LeakageFinding, LeakageOptions, leakage_report};
use crate::migrations::Severity;
use crate::settings::{KmsCredentialsSettings, ProviderKind, SecretSource};

/// The ECOC size past which `check --deploy` asks for `compact`: each
/// insert or update of an indexed field appends one entry, and until
/// compaction every equality query's ESC probe walks the entries of its
/// values (MongoDB's documentation recommends compacting periodically for
/// the same reason).
pub const DEFAULT_ECOC_THRESHOLD: u64 = 10_000;

/// Options of [`check_deploy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployOptions {
    /// ECOC entries per collection past which `compact` is due.
    pub ecoc_threshold: u64,
    /// The leakage report's options; `None` skips it (it needs the data
    /// keys, so the KMS).
    pub leakage: Option<LeakageOptions>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            ecoc_threshold: DEFAULT_ECOC_THRESHOLD,
            leakage: Some(LeakageOptions::default()),
        }
    }
}

/// What kind of file a permission finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeployFile {
    /// The local provider's master key file.
    MasterKey,
    /// A KMS credential file (secret key, token, client private key).
    KmsSecret,
    /// A SQLite database file (or its write-ahead log).
    SqliteDatabase,
}

impl fmt::Display for DeployFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MasterKey => "master key file",
            Self::KmsSecret => "KMS secret file",
            Self::SqliteDatabase => "SQLite database file",
        })
    }
}

/// One finding of [`check_deploy`]. Never holds a secret or a plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeployFinding {
    /// The `local` provider: the master key sits on the application's disk.
    LocalKmsProvider {
        /// The database alias.
        alias: String,
        /// The provider's name (`local`, `local:dev`).
        provider: String,
    },
    /// No pinned encrypted fields map: what gets encrypted is read from the
    /// database's catalog, which whoever writes to the database controls.
    NoPinnedMap {
        /// The database alias.
        alias: String,
    },
    /// A secret written inline in the settings file.
    InlineSecret {
        /// The setting's dotted path.
        setting: String,
    },
    /// A file that group or others may access.
    FileExposed {
        /// The database alias.
        alias: String,
        /// What the file holds.
        kind: DeployFile,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key vault lacks the unique index on `keyAltNames`, so two data
    /// keys could be given the same name.
    KeyVaultIndexMissing {
        /// The database alias.
        alias: String,
        /// The key vault's namespace.
        namespace: String,
    },
    /// The ECOC of an encrypted collection has grown past the threshold.
    EcocNeedsCompact {
        /// The database alias.
        alias: String,
        /// The collection.
        collection: String,
        /// Its ECOC entries.
        entries: u64,
        /// The threshold.
        threshold: u64,
    },
    /// The leakage report found a field whose contention is too low for
    /// its value frequencies.
    ContentionTooLow(LeakageFinding),
}

impl DeployFinding {
    /// How bad: errors make `check --deploy` fail.
    pub fn severity(&self) -> Severity {
        match self {
            Self::LocalKmsProvider { .. }
            | Self::NoPinnedMap { .. }
            | Self::InlineSecret { .. }
            | Self::KeyVaultIndexMissing { .. } => Severity::Error,
            Self::FileExposed { kind, .. } => match kind {
                DeployFile::MasterKey | DeployFile::KmsSecret => Severity::Error,
                // The file holds ciphertexts, wrapped keys and the
                // unencrypted fields: worth fixing, but nothing in it
                // decrypts without the master key.
                DeployFile::SqliteDatabase => Severity::Warning,
            },
            Self::EcocNeedsCompact { .. } | Self::ContentionTooLow(_) => Severity::Warning,
        }
    }

    /// A short stable identifier (as Django's `security.W004`).
    pub fn id(&self) -> &'static str {
        match self {
            Self::LocalKmsProvider { .. } => "deploy.local_kms",
            Self::NoPinnedMap { .. } => "deploy.no_pinned_map",
            Self::InlineSecret { .. } => "deploy.inline_secret",
            Self::FileExposed { .. } => "deploy.file_exposed",
            Self::KeyVaultIndexMissing { .. } => "deploy.key_vault_index",
            Self::EcocNeedsCompact { .. } => "deploy.ecoc_compact",
            Self::ContentionTooLow(_) => "deploy.leakage",
        }
    }
}

impl fmt::Display for DeployFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LocalKmsProvider { alias, provider } => write!(
                f,
                "database '{alias}' uses the KMS provider `{provider}`, whose master key is a file beside the application; configure aws, azure, gcp or kmip (with kms_credentials) and rewrap the data keys to it with `rewrapdatakeys --database {alias} --to-provider <provider>`"
            ),
            Self::NoPinnedMap { alias } => write!(
                f,
                "database '{alias}' has no pinned encrypted fields map, so whoever writes to the database decides what is encrypted; write the output of `showencryptedfieldsmap --database {alias}` to a file and set `encrypted_fields_map` (and `key_check_values`) in its encryption settings"
            ),
            Self::InlineSecret { setting } => write!(
                f,
                "`{setting}` is written inline in the settings file; give it as `{setting}_file` (mode 0600) or `{setting}_env`"
            ),
            Self::FileExposed {
                alias,
                kind,
                path,
                mode,
            } => write!(
                f,
                "the {kind} of database '{alias}', {}, is accessible to group or others (mode {mode:04o}); run `chmod 600 {}` and start the application with umask 077",
                path.display(),
                path.display()
            ),
            Self::KeyVaultIndexMissing { alias, namespace } => write!(
                f,
                "the key vault {namespace} of database '{alias}' lacks its unique index on keyAltNames, so two data keys could share a name; open the database once with cipherdoc (which creates it) or create the unique, sparse index `keyAltNames_1` on keyAltNames"
            ),
            Self::EcocNeedsCompact {
                alias,
                collection,
                entries,
                threshold,
            } => write!(
                f,
                "the ECOC of {collection} on database '{alias}' holds {entries} entries (more than {threshold}), which slows every encrypted query; run `compact --database {alias} {collection}`"
            ),
            Self::ContentionTooLow(finding) => write!(
                f,
                "{finding} (`showleakage --database {}` shows what the server learns of each field)",
                finding.alias
            ),
        }
    }
}

/// Runs every deployment check on every database of `app`.
pub async fn check_deploy(app: &App, options: DeployOptions) -> Result<Vec<DeployFinding>> {
    let mut out = Vec::new();
    for db in app.databases() {
        check_database(db, options, &mut out).await?;
    }
    Ok(out)
}

async fn check_database(
    db: &Database,
    options: DeployOptions,
    out: &mut Vec<DeployFinding>,
) -> Result<()> {
    let alias = db.alias();
    #[cfg(feature = "sqlite")]
    #[allow(irrefutable_let_patterns)]
    if let crate::settings::EngineSettings::Sqlite { path, .. } = db.engine_settings() {
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        for p in [path.clone(), PathBuf::from(wal)] {
            file_finding(alias, DeployFile::SqliteDatabase, &p, out);
        }
    }
    let Some(enc) = db.encryption() else {
        return Ok(());
    };
    let settings = enc.settings();
    for provider in &settings.kms_providers {
        let name = provider.name.to_string();
        if provider.name.kind() == ProviderKind::Local {
            out.push(DeployFinding::LocalKmsProvider {
                alias: alias.to_owned(),
                provider: name.clone(),
            });
        }
        let prefix = format!("databases.{alias}.encryption.kms_providers.{name}");
        for (key, source) in secret_sources(&provider.credentials) {
            match source {
                SecretSource::Inline(_) => out.push(DeployFinding::InlineSecret {
                    setting: format!("{prefix}.{key}"),
                }),
                SecretSource::File(p) => {
                    let kind = if provider.name.kind() == ProviderKind::Local {
                        DeployFile::MasterKey
                    } else {
                        DeployFile::KmsSecret
                    };
                    file_finding(alias, kind, p, out);
                }
                SecretSource::Env(_) => {}
            }
        }
        if let KmsCredentialsSettings::Kmip {
            tls_key_file: Some(p),
            ..
        } = &provider.credentials
        {
            file_finding(alias, DeployFile::KmsSecret, p, out);
        }
    }
    if settings.encrypted_fields_map.is_none() {
        out.push(DeployFinding::NoPinnedMap {
            alias: alias.to_owned(),
        });
    }
    let (_, vault) = settings.key_vault();
    let engine = db.engine();
    if !key_vault_has_unique_alt_names(engine.as_ref(), vault).await? {
        out.push(DeployFinding::KeyVaultIndexMissing {
            alias: alias.to_owned(),
            namespace: db.namespace(vault),
        });
    }
    for collection in engine.list_collections().await? {
        let Some(info) = engine.describe_collection(&collection).await? else {
            continue;
        };
        if info.options.encrypted_fields.is_none() {
            continue;
        }
        let entries = engine.qe_state_sizes(&collection).await?.ecoc;
        if entries > options.ecoc_threshold {
            out.push(DeployFinding::EcocNeedsCompact {
                alias: alias.to_owned(),
                collection,
                entries,
                threshold: options.ecoc_threshold,
            });
        }
    }
    if let Some(leakage) = options.leakage {
        let report = leakage_report(db, leakage).await?;
        for (c, field) in report.warnings() {
            if let Some(warning) = field.warning {
                out.push(DeployFinding::ContentionTooLow(LeakageFinding {
                    alias: alias.to_owned(),
                    collection: c.collection.clone(),
                    field: field.path.clone(),
                    warning,
                }));
            }
        }
    }
    Ok(())
}

/// Whether the key vault collection has its unique index on
/// `keyAltNames` (a missing collection has none).
pub async fn key_vault_has_unique_alt_names(
    engine: &dyn cipherdoc_engine::Engine,
    collection: &str,
) -> Result<bool> {
    Ok(engine
        .describe_collection(collection)
        .await?
        .is_some_and(|info| {
            info.indexes
                .iter()
                .any(|i| i.path == "keyAltNames" && i.unique)
        }))
}

/// The secrets of a provider's settings, by setting name.
fn secret_sources(settings: &KmsCredentialsSettings) -> Vec<(&'static str, &SecretSource)> {
    let optional: [(&'static str, &Option<SecretSource>); 2] = match settings {
        KmsCredentialsSettings::Local { key, .. } => return vec![("key", key)],
        KmsCredentialsSettings::Aws {
            secret_access_key,
            session_token,
            ..
        } => [
            ("secret_access_key", secret_access_key),
            ("session_token", session_token),
        ],
        KmsCredentialsSettings::Azure {
            client_secret,
            access_token,
            ..
        } => [
            ("client_secret", client_secret),
            ("access_token", access_token),
        ],
        KmsCredentialsSettings::Gcp {
            private_key,
            access_token,
            ..
        } => [("private_key", private_key), ("access_token", access_token)],
        // KMIP authenticates with a client certificate: its key file is
        // checked by the caller.
        KmsCredentialsSettings::Kmip { .. } => return Vec::new(),
    };
    optional
        .into_iter()
        .filter_map(|(key, s)| s.as_ref().map(|s| (key, s)))
        .collect()
}

/// A finding when `path` exists and group or others may access it. A
/// missing file is no finding (a SQLite write-ahead log exists only while
/// the database is open; an absent key file fails elsewhere with its own
/// error).
fn file_finding(alias: &str, kind: DeployFile, path: &Path, out: &mut Vec<DeployFinding>) {
    if let Ok(Some(mode)) = crate::private_file::exposed_mode(path) {
        out.push(DeployFinding::FileExposed {
            alias: alias.to_owned(),
            kind,
            path: path.to_owned(),
            mode,
        });
    }
}
