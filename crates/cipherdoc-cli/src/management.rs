//! Management commands for an application's own binary, as Django's
//! `manage.py` gives them: `makemigrations`, `migrate`, `showmigrations`,
//! `showencryptedfieldsmap`, `showleakage`, `check`, `compact`, `createdatakey`,
//! `rewrapdatakeys` and `inspect`.
//!
//! ```no_run
//! # async fn f() -> std::process::ExitCode {
//! # #[derive(cipherdoc::Model)] #[model(app = "myapp")] struct Patient { id: bson::oid::ObjectId }
//! let app = cipherdoc::App::from_settings_file(None).await.unwrap()
//!     .register::<Patient>().unwrap();
//! cipherdoc_cli::run(app).await
//! # }
//! ```
//!
//! The architecture calls this entry point `cipherdoc::cli::run(app)`; it
//! lives here, as [`crate::run`], because `cipherdoc` cannot depend on its
//! own command-line crate.
//!
//! Long work (migrate, rewrapdatakeys, compact) draws a progress bar on
//! standard error when it is a terminal and stays quiet otherwise.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Document, oid::ObjectId};
use cipherdoc::App;
use cipherdoc::deploy::{DeployOptions, check_deploy};
use cipherdoc::key_vault::alt_names_of;
use cipherdoc::leakage::{LeakageOptions, leakage_report};
use cipherdoc::migrations::{
    MakeMigrationsOptions, MigrateMode, MigrateOptions, MigrationDir, MigrationObserver, Operation,
    Severity, WriteFiles, check, encrypted_fields_map, encrypted_fields_map_json,
    makemigrations_with, migrate, migrate_observed, show_migrations,
};
use cipherdoc_engine::{FieldOp, Filter, FindOptions};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

/// The environment variable naming the migrations folder (default `migrations`).
pub const MIGRATIONS_ENV: &str = "CIPHERDOC_MIGRATIONS";

#[derive(Debug, Parser)]
#[command(version, about = "Management commands of a cipherdoc application")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct DatabaseArg {
    /// The database alias.
    #[arg(long, default_value = "default")]
    database: String,
}

/// The options of `check`.
#[derive(Debug, Args)]
struct CheckArgs {
    /// Also check what a deployment must not have (the local KMS
    /// provider, no pinned map, secrets inline or readable by others, a
    /// key vault without its index, an ECOC due for compaction, and, from
    /// the leakage report, a field whose contention is too low for its
    /// values).
    #[arg(long)]
    deploy: bool,
    /// With --deploy: ECOC entries per collection past which `compact`
    /// is due.
    #[arg(long, default_value_t = cipherdoc::deploy::DEFAULT_ECOC_THRESHOLD)]
    ecoc_threshold: u64,
    /// With --deploy: leave out the leakage report (which unwraps the
    /// data keys through the KMS).
    #[arg(long)]
    skip_leakage: bool,
    /// With --deploy: the largest share (percent of a field's inserts)
    /// one value may hold in one contention bucket.
    #[arg(long, default_value_t = cipherdoc::leakage::DEFAULT_MAX_BUCKET_PERCENT)]
    max_bucket_percent: u32,
}

impl CheckArgs {
    /// What `--deploy` checks, if asked.
    fn deploy_options(&self) -> Option<DeployOptions> {
        self.deploy.then_some(DeployOptions {
            ecoc_threshold: self.ecoc_threshold,
            leakage: (!self.skip_leakage).then_some(LeakageOptions {
                max_bucket_percent: self.max_bucket_percent,
            }),
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the next migration of each app whose models changed.
    Makemigrations {
        /// Only these apps.
        apps: Vec<String>,
        /// Show what would be written without writing it.
        #[arg(long)]
        dry_run: bool,
        /// Fail (exit status 1) when migrations are missing; write nothing.
        #[arg(long)]
        check: bool,
        /// Copy this model (`Model` or `app.Model`) into a new collection
        /// under fresh data keys (data-level key rotation); repeatable.
        #[arg(long = "reencrypt", value_name = "MODEL")]
        reencrypt: Vec<String>,
    },
    /// Apply (or, with a target, reverse) migrations on one database.
    Migrate {
        #[command(flatten)]
        db: DatabaseArg,
        /// Only this app.
        app: Option<String>,
        /// Bring the app to this migration (`0001`, `0001_initial`), or `zero`
        /// to reverse all of them (collections are dropped; data keys are kept).
        target: Option<String>,
        /// Report what would be applied (and how many documents each copy
        /// would copy) without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List each app's migrations and whether the database applied them.
    Showmigrations {
        #[command(flatten)]
        db: DatabaseArg,
        /// Only these apps.
        apps: Vec<String>,
    },
    /// Print the encrypted fields map of a database as canonical extended
    /// JSON, to pin as `encrypted_fields_map` in production settings. Never
    /// creates keys.
    Showencryptedfieldsmap {
        #[command(flatten)]
        db: DatabaseArg,
        /// Print instead the key check values of the map's data keys (JSON,
        /// to pin as `key_check_values` beside the map): a data key later
        /// swapped behind one of these key ids is refused. Loads the keys.
        #[arg(long)]
        key_check_values: bool,
    },
    /// Check models, settings, routers and any pinned encrypted fields map.
    Check(CheckArgs),
    /// What the database server can learn of each encrypted field, with
    /// the live collection's counts and a warning (and a contention factor
    /// to use) where a value is too frequent for the field's contention.
    /// Never prints a value.
    Showleakage {
        #[command(flatten)]
        db: DatabaseArg,
        /// The largest share (percent of a field's inserts) one value may
        /// hold in one contention bucket.
        #[arg(long, default_value_t = cipherdoc::leakage::DEFAULT_MAX_BUCKET_PERCENT)]
        max_bucket_percent: u32,
    },
    /// Compact the ECOC state of encrypted collections.
    Compact {
        #[command(flatten)]
        db: DatabaseArg,
        /// Only these collections (default: every encrypted collection of the
        /// registered models on the database).
        collections: Vec<String>,
    },
    /// Create a data key in a database's key vault; prints its id.
    Createdatakey {
        #[command(flatten)]
        db: DatabaseArg,
        /// A keyAltName for the key (repeatable).
        #[arg(long = "alt-name")]
        alt_names: Vec<String>,
        /// The KMS provider to wrap it with (default: the database's default).
        #[arg(long = "kms-provider")]
        kms_provider: Option<String>,
    },
    /// Re-wrap data keys under another provider's master key (key rotation);
    /// the data is not touched.
    Rewrapdatakeys {
        #[command(flatten)]
        db: DatabaseArg,
        /// Only keys with one of these keyAltNames (repeatable; default: all).
        #[arg(long = "filter-alt-name")]
        filter_alt_names: Vec<String>,
        /// The configured provider whose master key wraps the keys from now on.
        #[arg(long = "to-provider")]
        to_provider: String,
    },
    /// Show a stored document with its encrypted values by subtype and key.
    Inspect {
        /// The database alias.
        #[arg(long)]
        database: String,
        /// The collection.
        collection: String,
        /// The document's `_id` (an ObjectId's hex, or extended JSON);
        /// default: the first document.
        id: Option<String>,
    },
}

/// The management commands over an application.
#[derive(Debug)]
pub struct Management {
    app: App,
    name: String,
    migrations: PathBuf,
    after_help: Option<String>,
}

/// Runs the management command named by the process's arguments.
pub async fn run(app: App) -> ExitCode {
    Management::new(app).run().await
}

impl Management {
    /// The commands over `app`; migrations in `$CIPHERDOC_MIGRATIONS` or `migrations/`.
    pub fn new(app: App) -> Self {
        let migrations = std::env::var_os(MIGRATIONS_ENV)
            .map_or_else(|| PathBuf::from("migrations"), PathBuf::from);
        Self {
            app,
            name: std::env::args()
                .next()
                .and_then(|a| {
                    std::path::Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "manage".to_owned()),
            migrations,
            after_help: None,
        }
    }

    /// The command name shown in help.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where the migration files are (`<dir>/<app>/NNNN_name.toml`).
    #[must_use]
    pub fn migrations_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.migrations = dir.into();
        self
    }

    /// Text added at the end of `--help` (e.g. the application's own commands).
    #[must_use]
    pub fn after_help(mut self, text: impl Into<String>) -> Self {
        self.after_help = Some(text.into());
        self
    }

    /// The application.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// `migrate`, or with `MigrateMode::DryRun` what it would do.
    async fn migrate_command(
        &self,
        dir: &MigrationDir,
        database: String,
        label: Option<String>,
        target: Option<String>,
        mode: MigrateMode,
    ) -> Result<String> {
        let opts = MigrateOptions {
            database: database.clone(),
            app: label,
            target,
            mode,
        };
        if mode == MigrateMode::DryRun {
            let report = migrate(&self.app, dir, &opts).await?;
            let mut out = vec![format!(
                "Migrations that would run on database '{database}' (nothing changed):"
            )];
            if report.planned.is_empty() {
                out.push("  No migrations to apply.".to_owned());
            }
            for p in &report.planned {
                out.push(format!("  {p}"));
            }
            for n in &report.notes {
                out.push(format!("  Note: {n}"));
            }
            return Ok(out.join("\n"));
        }
        let bar = progress_bar(0);
        let observer = BarObserver::new(bar.clone());
        let report = migrate_observed(&self.app, dir, &opts, &observer).await;
        bar.finish_and_clear();
        let report = report?;
        let mut out = vec![format!("Running migrations on database '{database}':")];
        if report.applied.is_empty() && report.unapplied.is_empty() {
            out.push("  No migrations to apply.".to_owned());
        }
        for a in &report.unapplied {
            out.push(format!("  Unapplying {a}... OK"));
        }
        for a in &report.applied {
            out.push(format!("  Applying {a}... OK"));
        }
        for n in &report.notes {
            out.push(format!("  Note: {n}"));
        }
        Ok(out.join("\n"))
    }

    /// What a copy migration of `app_label.model` will copy: the number of
    /// documents in the database its writes are routed to.
    async fn copy_size(&self, app_label: &str, model: &str, collection: &str) -> String {
        let Some(schema) = self
            .app
            .models()
            .iter()
            .find(|m| m.app == app_label && m.name == model)
        else {
            return "documents to copy: unknown (the model is not registered)".to_owned();
        };
        let db = match self.app.db_for_write(schema) {
            Ok(db) => db,
            Err(e) => return format!("documents to copy: unknown ({e})"),
        };
        match db.engine().count(collection, &Filter::all()).await {
            Ok(n) => format!(
                "{n} documents of {} to copy when `migrate --database {}` runs; writes to {model} are refused until it has finished",
                db.namespace(collection),
                db.alias()
            ),
            Err(e) => format!("documents to copy: unknown ({e})"),
        }
    }

    /// Runs the command named by the process's arguments; prints its output,
    /// or one error line on standard error.
    pub async fn run(self) -> ExitCode {
        self.run_with(std::env::args_os()).await
    }

    /// Runs a command from `args` (the first is the program name).
    pub async fn run_with<I, T>(&self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = match self.parse(args) {
            Ok(c) => c,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
            }
        };
        match self.dispatch(cli).await {
            Ok(out) => {
                if !out.is_empty() {
                    println!("{out}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                let line = crate::error_line(&e);
                eprintln!("error: {line}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs a command from `args` and returns what it would print (`--help`
    /// text included); for tests and embedding.
    pub async fn execute<I, T>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        match self.parse(args) {
            Ok(cli) => self.dispatch(cli).await,
            Err(e)
                if matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                ) =>
            {
                Ok(e.render().to_string())
            }
            Err(e) => Err(anyhow!(e.render().to_string())),
        }
    }

    fn parse<I, T>(&self, args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory as _, FromArgMatches as _};
        let mut cmd = Cli::command().bin_name(self.name.clone());
        if let Some(h) = &self.after_help {
            cmd = cmd.after_help(h.clone());
        }
        let matches = cmd.try_get_matches_from(args)?;
        Cli::from_arg_matches(&matches)
    }

    async fn dispatch(&self, cli: Cli) -> Result<String> {
        let app = &self.app;
        let dir = MigrationDir::new(&self.migrations);
        match cli.command {
            Command::Makemigrations {
                apps,
                dry_run,
                check,
                reencrypt,
            } => {
                let opts = MakeMigrationsOptions {
                    only: apps,
                    write: if dry_run || check {
                        WriteFiles::No
                    } else {
                        WriteFiles::Yes
                    },
                    reencrypt,
                };
                let made = makemigrations_with(app, &dir, &opts)?;
                if made.is_empty() {
                    return Ok("No changes detected".to_owned());
                }
                let mut out = Vec::new();
                for (m, path) in &made {
                    out.push(format!(
                        "Migrations for '{}':\n  {}",
                        m.app,
                        path.as_ref()
                            .map_or_else(
                                || dir.root().join(&m.app).join(format!("{}.toml", m.name)),
                                Clone::clone
                            )
                            .display()
                    ));
                    for op in &m.operations {
                        out.push(format!("    - {}", op.describe()));
                        if let Operation::CopyModel { collection, .. } = op {
                            out.push(format!(
                                "      {}",
                                self.copy_size(&m.app, op.model(), collection).await
                            ));
                        }
                    }
                }
                if check {
                    bail!(
                        "migrations are missing; run `{} makemigrations`:\n{}",
                        self.name,
                        out.join("\n")
                    );
                }
                Ok(out.join("\n"))
            }
            Command::Migrate {
                db,
                app: label,
                target,
                dry_run,
            } => {
                let mode = if dry_run {
                    MigrateMode::DryRun
                } else {
                    MigrateMode::Apply
                };
                self.migrate_command(&dir, db.database, label, target, mode)
                    .await
            }
            Command::Showmigrations { db, apps } => {
                let shown = show_migrations(app, &dir, &db.database).await?;
                let mut out = Vec::new();
                for (label, list) in shown {
                    if !apps.is_empty() && !apps.contains(&label) {
                        continue;
                    }
                    out.push(label);
                    if list.is_empty() {
                        out.push(" (no migrations)".to_owned());
                    }
                    for (name, done) in list {
                        out.push(format!(" [{}] {name}", if done { "X" } else { " " }));
                    }
                }
                if out.is_empty() {
                    out.push(format!("no migrations in {}", dir.root().display()));
                }
                Ok(out.join("\n"))
            }
            Command::Showencryptedfieldsmap {
                db,
                key_check_values,
            } => {
                let map = encrypted_fields_map(app, &db.database).await?;
                if !key_check_values {
                    return Ok(encrypted_fields_map_json(&map));
                }
                let d = app.database(&db.database)?;
                let enc = d.encryption().ok_or_else(|| no_encryption(&db.database))?;
                let mut ids = Vec::new();
                for (ns, efc) in &map {
                    let efc = efc
                        .as_document()
                        .with_context(|| format!("{ns}: not a document"))?;
                    let cfg = cipherdoc_crypto::efc::EncryptedFieldConfig::from_document(efc)?;
                    for f in &cfg.fields {
                        if let cipherdoc_crypto::efc::FieldKey::Id(id) = &f.key {
                            ids.push(*id);
                        }
                    }
                }
                Ok(enc.keys().key_check_values(ids).await?.to_json())
            }
            Command::Check(args) => self.check(args.deploy_options()).await,
            Command::Showleakage {
                db,
                max_bucket_percent,
            } => self.showleakage(&db.database, max_bucket_percent).await,
            Command::Compact { db, collections } => self.compact(&db.database, collections).await,
            Command::Createdatakey {
                db,
                alt_names,
                kms_provider,
            } => {
                let d = app.database(&db.database)?;
                let enc = d.encryption().ok_or_else(|| no_encryption(&db.database))?;
                let master = enc.master_key_for(kms_provider.as_deref())?;
                let id = enc.keys().create_data_key(master, alt_names).await?;
                Ok(Bson::Binary(id.to_binary())
                    .into_canonical_extjson()
                    .to_string())
            }
            Command::Rewrapdatakeys {
                db,
                filter_alt_names,
                to_provider,
            } => {
                self.rewrap(&db.database, &filter_alt_names, &to_provider)
                    .await
            }
            Command::Inspect {
                database,
                collection,
                id,
            } => self.inspect(&database, &collection, id.as_deref()).await,
        }
    }

    async fn showleakage(&self, alias: &str, max_bucket_percent: u32) -> Result<String> {
        let db = self.app.database(alias)?;
        let report = leakage_report(db, LeakageOptions { max_bucket_percent }).await?;
        Ok(report.to_string().trim_end().to_owned())
    }

    async fn check(&self, deploy: Option<DeployOptions>) -> Result<String> {
        let mut found: Vec<(Severity, String)> = check(&self.app)
            .await?
            .into_iter()
            .map(|c| (c.severity, c.text))
            .collect();
        if let Some(options) = deploy {
            for f in check_deploy(&self.app, options).await? {
                found.push((f.severity(), format!("({}) {f}", f.id())));
            }
        }
        let errors = found.iter().filter(|(s, _)| *s == Severity::Error).count();
        // What the engines learned of their deployments (a MongoDB server's
        // topology and wire version), ahead of the findings.
        let deployments: String = self
            .app
            .databases()
            .filter_map(|db| {
                let d = db.engine().deployment()?;
                Some(format!("database '{}': {d}\n", db.alias()))
            })
            .collect();
        if found.is_empty() {
            return Ok(format!("{deployments}System check identified no issues."));
        }
        let lines: Vec<String> = found
            .iter()
            .map(|(severity, text)| {
                format!(
                    "{}: {text}",
                    if *severity == Severity::Error {
                        "ERROR"
                    } else {
                        "WARNING"
                    },
                )
            })
            .collect();
        let text = format!(
            "{deployments}System check identified {} issue(s) ({errors} error(s)):\n{}",
            found.len(),
            lines.join("\n")
        );
        if errors > 0 {
            bail!(text);
        }
        Ok(text)
    }

    async fn compact(&self, alias: &str, mut collections: Vec<String>) -> Result<String> {
        let db = self.app.database(alias)?;
        if db.encryption().is_none() {
            return Err(no_encryption(alias));
        }
        if collections.is_empty() {
            for schema in self.app.models() {
                if !schema.encrypted_paths().is_empty()
                    && self
                        .app
                        .routers()
                        .allow_migrate(alias, &schema.app, Some(&schema.name))
                {
                    collections.push(schema.collection.clone());
                }
            }
        }
        let bar = progress_bar(u64::try_from(collections.len()).unwrap_or(u64::MAX));
        let mut lines = Vec::new();
        for c in &collections {
            bar.set_message(c.clone());
            let stats = db.compact(c).await?;
            lines.push(format!(
                "compacted {}: {} ECOC entries, {} counters, {} anchors inserted, {} non-anchors deleted",
                db.namespace(c),
                stats.ecoc_entries,
                stats.unique_counters,
                stats.anchors_inserted,
                stats.non_anchors_deleted
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        if lines.is_empty() {
            lines.push(format!("no encrypted collections to compact on '{alias}'"));
        }
        Ok(lines.join("\n"))
    }

    async fn rewrap(&self, alias: &str, filter: &[String], to: &str) -> Result<String> {
        let db = self.app.database(alias)?;
        let enc = db.encryption().ok_or_else(|| no_encryption(alias))?;
        let target = enc.master_key_for(Some(to))?;
        let vault = enc.keys().vault();
        let mut docs = Vec::new();
        for d in vault.list().await? {
            let names = alt_names_of(&d)?;
            if filter.is_empty() || names.iter().any(|n| filter.contains(n)) {
                docs.push(d);
            }
        }
        // Every document is checked before anything is contacted or
        // written: a key document the settings do not trust (its masterKey
        // names another key or host) refuses the whole run.
        let mut checked = Vec::with_capacity(docs.len());
        for d in docs {
            let (parsed, from) = enc.keys().check_document(&d)?;
            checked.push((d, parsed, from));
        }
        enc.keys().kms().check(target)?;
        let bar = progress_bar(u64::try_from(checked.len()).unwrap_or(u64::MAX));
        let n = checked.len();
        for (mut d, parsed, from) in checked {
            let wrapped = enc
                .keys()
                .kms()
                .rewrap(&from, &parsed.key_material, target)
                .await?;
            d.insert(
                "keyMaterial",
                Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: wrapped.key_material,
                },
            );
            d.insert("masterKey", wrapped.master_key.to_document());
            d.insert("updateDate", DateTime::now());
            vault.replace(d).await?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(format!(
            "Re-wrapped {n} data key(s) of '{alias}' under KMS provider '{to}'; the data is unchanged"
        ))
    }

    async fn inspect(&self, alias: &str, collection: &str, id: Option<&str>) -> Result<String> {
        let db = self.app.database(alias)?;
        let filter = match id {
            None => Filter::And(Vec::new()),
            Some(text) => Filter::Field {
                path: "_id".to_owned(),
                op: FieldOp::Eq(parse_id(text)?),
            },
        };
        let found = db
            .engine()
            .find(
                collection,
                &filter,
                &FindOptions {
                    limit: Some(1),
                    ..FindOptions::default()
                },
            )
            .await?;
        let doc = found.into_iter().next().ok_or_else(|| {
            anyhow!(
                "no document{} in {}",
                id.map(|i| format!(" with _id {i}")).unwrap_or_default(),
                db.namespace(collection)
            )
        })?;
        let shown = describe_encrypted(Bson::Document(doc));
        let json = shown.into_relaxed_extjson();
        Ok(serde_json::to_string_pretty(&json)?)
    }
}

fn no_encryption(alias: &str) -> anyhow::Error {
    anyhow!(
        "database '{alias}' has no encryption settings; name an encrypted database with --database"
    )
}

fn parse_id(text: &str) -> Result<Bson> {
    if let Ok(oid) = ObjectId::parse_str(text) {
        return Ok(Bson::ObjectId(oid));
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        return Bson::try_from(json).map_err(|e| anyhow!("the id is not extended JSON: {e}"));
    }
    Ok(Bson::String(text.to_owned()))
}

/// Replaces each encrypted value (BSON binary subtype 6) by
/// `{"$encrypted": {subtype, name, keyId, ..., "ciphertext": "<base64 head>…"}}`.
pub fn describe_encrypted(v: Bson) -> Bson {
    use base64::Engine as _;
    match v {
        Bson::Binary(b) if b.subtype == BinarySubtype::Encrypted => {
            let mut d = cipherdoc::client_encryption::inspect(&b.bytes).unwrap_or_else(|e| {
                let mut d = Document::new();
                d.insert("error", e.to_string());
                d
            });
            let b64 = base64::engine::general_purpose::STANDARD.encode(&b.bytes);
            let head: String = b64.chars().take(32).collect();
            d.insert("ciphertext", format!("{head}… ({} bytes)", b.bytes.len()));
            let mut out = Document::new();
            out.insert("$encrypted", d);
            Bson::Document(out)
        }
        Bson::Document(d) => Bson::Document(
            d.into_iter()
                .map(|(k, v)| (k, describe_encrypted(v)))
                .collect(),
        ),
        Bson::Array(a) => Bson::Array(a.into_iter().map(describe_encrypted).collect()),
        other => other,
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}") {
        bar.set_style(style);
    }
    bar
}

/// Operations done and planned, and during a copy its documents.
struct BarObserver(ProgressBar, std::sync::Mutex<(u64, u64)>);

impl BarObserver {
    fn new(bar: ProgressBar) -> Self {
        Self(bar, std::sync::Mutex::new((0, 0)))
    }
    fn steps(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MigrationObserver for BarObserver {
    fn planned(&self, steps: u64) {
        self.steps().1 = steps;
        self.0.set_length(steps);
    }
    fn step(&self, description: &str) {
        self.steps().0 += 1;
        self.0.set_message(description.to_owned());
        self.0.inc(1);
    }
    /// A copy switches the bar to documents: done, rate and time left.
    fn copy_started(&self, namespace: &str, documents: u64) {
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} documents, {per_sec}, {eta} left {wide_msg}",
        ) {
            self.0.set_style(style);
        }
        self.0.set_length(documents);
        self.0.set_position(0);
        self.0.set_message(format!("copying {namespace}"));
    }
    fn copied(&self, documents: u64) {
        self.0.set_position(documents);
    }
    fn copy_finished(&self) {
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}") {
            self.0.set_style(style);
        }
        let (done, planned) = *self.steps();
        self.0.set_length(planned);
        self.0.set_position(done);
    }
}
