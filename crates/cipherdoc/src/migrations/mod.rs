//! Migrations: the registered models' history as files, applied to each
//! database as the routers allow.
//!
//! `makemigrations` compares the registered models with the migrations of
//! their app (one TOML file per migration under `migrations/<app>/`,
//! `0001_initial.toml`, `0002_...`) and writes the next one; `migrate`
//! applies what a database has not applied yet and records it there, in the
//! `cipherdoc_migrations` collection; `migrate APP zero` reverses.
//!
//! ```toml
//! # migrations/myapp/0001_initial.toml
//! [[operations]]
//! op = "create_model"
//! model = "Patient"
//! collection = "myapp_patient"
//!
//! [[operations.fields]]
//! path = "patient_record.ssn"
//! bson_type = "string"
//! encrypted = true
//! max_length = 11
//! queries = { queryType = "equality" }
//! ```
//!
//! Creating a model with encrypted fields creates one data key per
//! encrypted field, with keyAltName `"<collection>.<dotted path>"` (an
//! existing key with that name is reused, so a dropped and re-created
//! collection keeps its keys), then the encrypted collection with its
//! `encryptedFields`. Queryable Encryption fixes a collection's encrypted
//! fields when it is created, so a plaintext field becoming encrypted, an
//! encrypted field gaining or changing its queries, or being renamed or
//! removed, is a [`Operation::CopyModel`]: the collection is rebuilt under
//! its new `encryptedFields` and the documents copied through the encrypter
//! (see `copy.rs`). What a copy cannot do (an encrypted field becoming
//! plaintext or changing its BSON type, another KMS provider, renaming an
//! encrypted collection) is refused with a [`MigrationError::Refused`] that
//! says what to do instead. Reversing a model's creation drops its
//! collection; its data keys stay in the key vault.
//!
//! Where the migrations come from is a [`MigrationSource`]: a
//! [`MigrationDir`] on disk, or a `Vec<Migration>` built in code (what
//! [`crate::testing`] uses).

mod copy;
mod executor;
mod map;
mod state;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub(crate) use copy::copy_in_progress;
pub use copy::{COPY_JOURNAL, temp_collection};
pub use executor::{
    MIGRATIONS_COLLECTION, MigrateMode, MigrateOptions, MigrateReport, MigrationObserver,
    applied_migrations, migrate, migrate_observed, show_migrations,
};
pub use map::{
    CheckMessage, MissingKeys, Severity, alt_name, check, compaction_tokens, encrypted_fields_for,
    encrypted_fields_map, encrypted_fields_map_json,
};
pub use state::{
    AppState, MakeMigrationsOptions, ModelState, WriteFiles, autodetect, autodetect_with,
    initial_migrations, makemigrations, makemigrations_with, model_state,
};

/// What can go wrong with migrations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// An operation Queryable Encryption does not allow; the message says
    /// why and what to do instead.
    #[error("{0}")]
    Refused(String),
    /// A migration file could not be read, parsed or written.
    #[error("migration file {}: {problem}", path.display())]
    File {
        /// The file (or folder).
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A migration named on the command line does not exist.
    #[error("no migration '{target}' in app '{app}'; run `showmigrations` to list them")]
    UnknownMigration {
        /// The app label.
        app: String,
        /// The name given.
        target: String,
    },
    /// The migrations disagree with each other or with the database.
    #[error("{0}")]
    Inconsistent(String),
    /// Creating the data key of an encrypted field failed (the KMS was
    /// unreachable, slow or refused): the migration is taken back, keys it
    /// created included, and can simply be run again.
    #[error(
        "migrating database '{alias}': creating the data key of field '{field}' of {model} failed: {source}; nothing of this migration was kept, run `migrate --database {alias}` again once the KMS answers"
    )]
    DataKeyCreation {
        /// The database alias.
        alias: String,
        /// The model (`app.Model`).
        model: String,
        /// The field's dotted path.
        field: String,
        /// What failed (a KMS or key vault error).
        source: Box<crate::Error>,
    },
}

/// One field (or field of a plain embedded model, by dotted path) as the
/// migrations know it.
// The flags mirror the model's field options one to one.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldState {
    /// Dotted path from the document root (`patient_record.ssn`).
    pub path: String,
    /// The BSON type the value is stored as (`bsonType`).
    pub bson_type: String,
    /// Whether this is the primary key `_id`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary_key: bool,
    /// Whether the field may be null or absent.
    #[serde(default, skip_serializing_if = "is_false")]
    pub null: bool,
    /// Whether the field is encrypted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
    /// The KMS provider of the field's data key (the field's, else the model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_provider: Option<String>,
    /// `#[field(unique)]`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unique: bool,
    /// `#[field(index)]`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub index: bool,
    /// `max_length` of a string field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// `max_digits` of a decimal field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_digits: Option<u32>,
    /// `decimal_places` of a decimal field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimal_places: Option<u32>,
    /// The `queries` of an encrypted field as canonical extended JSON
    /// (`{queryType = "equality"}`); absent = not queryable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<serde_json::Value>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl FieldState {
    /// The attributes that an `encryptedFields` entry depends on; a change to
    /// any of them on an existing collection is refused.
    pub(crate) fn encryption_signature(&self) -> (bool, &str, Option<&serde_json::Value>) {
        (
            self.encrypted,
            if self.encrypted { &self.bson_type } else { "" },
            self.queries.as_ref(),
        )
    }
}

/// One step of a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Creates a model's collection (encrypted when it has encrypted fields,
    /// with its data keys).
    CreateModel {
        /// The model's Rust name.
        model: String,
        /// Its collection.
        collection: String,
        /// The model's default KMS provider, when it names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kms_provider: Option<String>,
        /// Its fields, in definition order (plain embedded models flattened).
        fields: Vec<FieldState>,
    },
    /// Drops a model's collection (its data keys are kept).
    DeleteModel {
        /// The model.
        model: String,
        /// Its collection.
        collection: String,
    },
    /// Renames a model and/or its collection; refused for encrypted
    /// collections.
    RenameModel {
        /// The old model name.
        old_model: String,
        /// The new model name.
        new_model: String,
        /// The old collection.
        old_collection: String,
        /// The new collection.
        new_collection: String,
    },
    /// Adds a plaintext field.
    AddField {
        /// The model.
        model: String,
        /// Its collection.
        collection: String,
        /// The new field.
        field: FieldState,
    },
    /// Removes a plaintext field from the model (stored documents keep the
    /// key; loading ignores it).
    RemoveField {
        /// The model.
        model: String,
        /// Its collection.
        collection: String,
        /// The removed field's path.
        path: String,
    },
    /// Changes a field's options (not its encryption).
    AlterField {
        /// The model.
        model: String,
        /// Its collection.
        collection: String,
        /// The field as it is now.
        field: FieldState,
    },
    /// Rebuilds a model's collection under new `encryptedFields`: a new
    /// encrypted collection under a temporary name, every document copied
    /// into it through the encrypter in batches, counts and a sample
    /// checked, then the new collection takes the model's collection name
    /// and the old one is dropped with its ESC/ECOC and the data keys
    /// nothing uses any more (see `copy.rs`).
    CopyModel {
        /// The model.
        model: String,
        /// Its collection (the same before and after).
        collection: String,
        /// The model's default KMS provider, when it names one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kms_provider: Option<String>,
        /// Every field of the model after the copy.
        fields: Vec<FieldState>,
        /// Encrypted fields whose values move to another path.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        renamed: Vec<RenamedField>,
        /// Which data keys the new collection uses.
        #[serde(default)]
        keys: CopyKeys,
        /// What changes, one line each (for people reading the file).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<String>,
    },
}

/// An encrypted field of a [`Operation::CopyModel`] whose values move to
/// another path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamedField {
    /// The dotted path before.
    pub from: String,
    /// The dotted path after.
    pub to: String,
}

/// Which data keys a copied collection uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyKeys {
    /// An encrypted field whose definition (type, queries, KMS provider)
    /// and path are unchanged keeps its data key; every other encrypted
    /// field gets a new one.
    #[default]
    KeepUnchanged,
    /// Every encrypted field gets a new data key, and the old keys are
    /// deleted once the copy is in place (`makemigrations --reencrypt`:
    /// the data-level rotation that `rewrapdatakeys` does not do).
    Fresh,
}

impl Operation {
    /// The model the operation is about (the new name for renames).
    pub fn model(&self) -> &str {
        match self {
            Self::CreateModel { model, .. }
            | Self::DeleteModel { model, .. }
            | Self::AddField { model, .. }
            | Self::RemoveField { model, .. }
            | Self::AlterField { model, .. }
            | Self::CopyModel { model, .. } => model,
            Self::RenameModel { new_model, .. } => new_model,
        }
    }

    /// A one-line description, as `showmigrations` and `migrate` print it.
    pub fn describe(&self) -> String {
        match self {
            Self::CreateModel {
                model, collection, ..
            } => format!("Create model {model} (collection {collection})"),
            Self::DeleteModel { model, collection } => {
                format!("Delete model {model} (collection {collection})")
            }
            Self::RenameModel {
                old_model,
                new_model,
                old_collection,
                new_collection,
            } => format!(
                "Rename model {old_model} to {new_model} (collection {old_collection} to {new_collection})"
            ),
            Self::AddField { model, field, .. } => {
                format!("Add field {} to {model}", field.path)
            }
            Self::RemoveField { model, path, .. } => format!("Remove field {path} from {model}"),
            Self::AlterField { model, field, .. } => {
                format!("Alter field {} on {model}", field.path)
            }
            Self::CopyModel {
                model,
                collection,
                keys,
                changes,
                ..
            } => {
                let keys = match keys {
                    CopyKeys::KeepUnchanged => "",
                    CopyKeys::Fresh => " under fresh data keys",
                };
                if changes.is_empty() {
                    format!(
                        "Copy model {model} (collection {collection}) into a new collection{keys}"
                    )
                } else {
                    format!(
                        "Copy model {model} (collection {collection}) into a new collection{keys}: {}",
                        changes.join("; ")
                    )
                }
            }
        }
    }
}

/// One migration: an app's numbered step.
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// The application label.
    pub app: String,
    /// `0001_initial`: a four-digit number and a name.
    pub name: String,
    /// Its operations, in order.
    pub operations: Vec<Operation>,
}

#[derive(Serialize, Deserialize)]
struct MigrationFile {
    operations: Vec<Operation>,
}

impl Migration {
    /// The migration as the text of its file.
    pub fn to_toml(&self) -> Result<String, MigrationError> {
        let body = toml::to_string(&MigrationFile {
            operations: self.operations.clone(),
        })
        .map_err(|e| MigrationError::File {
            path: PathBuf::from(format!("{}/{}.toml", self.app, self.name)),
            problem: format!("cannot serialize: {e}"),
        })?;
        Ok(format!(
            "# Migration {}.{} generated by cipherdoc makemigrations.\n# Edit with care: a collection's encrypted fields are fixed once it is created.\n\n{body}",
            self.app, self.name
        ))
    }

    /// Parses a migration file's text.
    pub fn from_toml(app: &str, name: &str, text: &str) -> Result<Self, MigrationError> {
        let file: MigrationFile = toml::from_str(text).map_err(|e| MigrationError::File {
            path: PathBuf::from(format!("{app}/{name}.toml")),
            problem: e.to_string(),
        })?;
        Ok(Self {
            app: app.to_owned(),
            name: name.to_owned(),
            operations: file.operations,
        })
    }

    /// The migration's number (`0001_initial` → 1).
    pub fn number(&self) -> Option<u32> {
        migration_number(&self.name)
    }
}

fn migration_number(name: &str) -> Option<u32> {
    let digits = name.split('_').next()?;
    if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// Where migrations come from, like sqlx's `MigrationSource`.
pub trait MigrationSource: std::fmt::Debug + Send + Sync {
    /// The apps that have migrations.
    fn apps(&self) -> Result<Vec<String>, MigrationError>;
    /// The migrations of `app`, in order (empty when it has none).
    fn migrations(&self, app: &str) -> Result<Vec<Migration>, MigrationError>;
}

impl MigrationSource for Vec<Migration> {
    fn apps(&self) -> Result<Vec<String>, MigrationError> {
        let mut apps: Vec<String> = self.iter().map(|m| m.app.clone()).collect();
        apps.dedup();
        apps.sort();
        apps.dedup();
        Ok(apps)
    }

    fn migrations(&self, app: &str) -> Result<Vec<Migration>, MigrationError> {
        Ok(self.iter().filter(|m| m.app == app).cloned().collect())
    }
}

/// Migration files on disk: `<root>/<app>/NNNN_name.toml`.
#[derive(Debug, Clone)]
pub struct MigrationDir {
    root: PathBuf,
}

impl MigrationDir {
    /// Migrations under `root` (usually `migrations/` beside the settings).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a migration's file (never overwrites one); returns its path.
    pub fn write(&self, m: &Migration) -> Result<PathBuf, MigrationError> {
        let dir = self.root.join(&m.app);
        let path = dir.join(format!("{}.toml", m.name));
        let io = |e: std::io::Error, p: &Path| MigrationError::File {
            path: p.to_owned(),
            problem: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
        let text = m.to_toml()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(e, &path))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| io(e, &path))?;
        Ok(path)
    }
}

impl MigrationSource for MigrationDir {
    fn apps(&self) -> Result<Vec<String>, MigrationError> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut apps = Vec::new();
        for e in entries.flatten() {
            if e.path().is_dir()
                && let Some(name) = e.file_name().to_str()
            {
                apps.push(name.to_owned());
            }
        }
        apps.sort();
        Ok(apps)
    }

    fn migrations(&self, app: &str) -> Result<Vec<Migration>, MigrationError> {
        let dir = self.root.join(app);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut files = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if migration_number(stem).is_none() {
                return Err(MigrationError::File {
                    path,
                    problem: "a migration file is named NNNN_name.toml (four digits first)"
                        .to_owned(),
                });
            }
            files.push((stem.to_owned(), path));
        }
        files.sort();
        let mut out: Vec<Migration> = Vec::new();
        for (i, (stem, path)) in files.into_iter().enumerate() {
            let text = std::fs::read_to_string(&path).map_err(|e| MigrationError::File {
                path: path.clone(),
                problem: e.to_string(),
            })?;
            let m = Migration::from_toml(app, &stem, &text).map_err(|e| match e {
                MigrationError::File { problem, .. } => MigrationError::File {
                    path: path.clone(),
                    problem,
                },
                other => other,
            })?;
            let want = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if m.number() != Some(want) {
                return Err(MigrationError::Inconsistent(format!(
                    "migrations of app '{app}' must be numbered 0001, 0002, ... without gaps or duplicates; found {} where {want:04} was expected (in {})",
                    m.name,
                    dir.display()
                )));
            }
            out.push(m);
        }
        Ok(out)
    }
}
