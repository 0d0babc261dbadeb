//! Model state: what the migrations say the models are, what the code says
//! they are, and the operations between the two.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    CopyKeys, FieldState, Migration, MigrationDir, MigrationError, MigrationSource, Operation,
    RenamedField,
};
use crate::app::App;
use crate::model::{FieldKind, FieldSchema, ModelSchema};

/// One model as the migrations know it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelState {
    /// The model's Rust name.
    pub model: String,
    /// Its collection.
    pub collection: String,
    /// The model's default KMS provider.
    pub kms_provider: Option<String>,
    /// Its fields in definition order, plain embedded models flattened.
    pub fields: Vec<FieldState>,
}

impl ModelState {
    /// The field at `path`.
    pub fn field(&self, path: &str) -> Option<&FieldState> {
        self.fields.iter().find(|f| f.path == path)
    }

    /// Whether the collection is (to be) encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.fields.iter().any(|f| f.encrypted)
    }
}

/// The models of one app after a sequence of migrations, by model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppState {
    /// The models.
    pub models: BTreeMap<String, ModelState>,
}

impl AppState {
    /// The state after applying `migrations` in order.
    pub fn from_migrations(migrations: &[Migration]) -> Result<Self, MigrationError> {
        let mut s = Self::default();
        for m in migrations {
            for op in &m.operations {
                s.apply(op).map_err(|e| {
                    MigrationError::Inconsistent(format!("migration {}.{}: {e}", m.app, m.name))
                })?;
            }
        }
        Ok(s)
    }

    /// Applies one operation to the state (no Queryable Encryption checks;
    /// see [`check_operation`]).
    pub fn apply(&mut self, op: &Operation) -> Result<(), MigrationError> {
        let missing = |m: &str| MigrationError::Inconsistent(format!("model {m} does not exist"));
        match op {
            Operation::CreateModel {
                model,
                collection,
                kms_provider,
                fields,
            } => {
                if self.models.contains_key(model) {
                    return Err(MigrationError::Inconsistent(format!(
                        "model {model} is created twice"
                    )));
                }
                self.models.insert(
                    model.clone(),
                    ModelState {
                        model: model.clone(),
                        collection: collection.clone(),
                        kms_provider: kms_provider.clone(),
                        fields: fields.clone(),
                    },
                );
            }
            Operation::DeleteModel { model, .. } => {
                self.models.remove(model).ok_or_else(|| missing(model))?;
            }
            Operation::RenameModel {
                old_model,
                new_model,
                new_collection,
                ..
            } => {
                let mut m = self
                    .models
                    .remove(old_model)
                    .ok_or_else(|| missing(old_model))?;
                m.model.clone_from(new_model);
                m.collection.clone_from(new_collection);
                self.models.insert(new_model.clone(), m);
            }
            Operation::AddField { model, field, .. } => {
                let m = self.models.get_mut(model).ok_or_else(|| missing(model))?;
                if m.field(&field.path).is_some() {
                    return Err(MigrationError::Inconsistent(format!(
                        "field {} of {model} is added twice",
                        field.path
                    )));
                }
                m.fields.push(field.clone());
            }
            Operation::RemoveField { model, path, .. } => {
                let m = self.models.get_mut(model).ok_or_else(|| missing(model))?;
                let before = m.fields.len();
                m.fields.retain(|f| &f.path != path);
                if m.fields.len() == before {
                    return Err(MigrationError::Inconsistent(format!(
                        "field {path} of {model} does not exist"
                    )));
                }
            }
            Operation::CopyModel {
                model,
                kms_provider,
                fields,
                ..
            } => {
                let m = self.models.get_mut(model).ok_or_else(|| missing(model))?;
                m.kms_provider.clone_from(kms_provider);
                m.fields.clone_from(fields);
            }
            Operation::AlterField { model, field, .. } => {
                let m = self.models.get_mut(model).ok_or_else(|| missing(model))?;
                let f = m
                    .fields
                    .iter_mut()
                    .find(|f| f.path == field.path)
                    .ok_or_else(|| {
                        MigrationError::Inconsistent(format!(
                            "field {} of {model} does not exist",
                            field.path
                        ))
                    })?;
                *f = field.clone();
            }
        }
        Ok(())
    }
}

const WHY: &str = "Queryable Encryption fixes a collection's encrypted fields when the collection is created (MongoDB does not allow adding encrypted fields to an existing collection, nor changing an encrypted field's definition)";

/// Refuses what Queryable Encryption cannot do to an existing collection,
/// with the reason and what to do instead. `state` is the app's state before
/// `op`.
pub(crate) fn check_operation(
    app: &str,
    op: &Operation,
    state: &AppState,
) -> Result<(), MigrationError> {
    let refuse = |s: String| Err(MigrationError::Refused(s));
    match op {
        Operation::AddField {
            model,
            collection,
            field,
        } if field.encrypted => refuse(format!(
            "cannot add encrypted field '{}' to {app}.{model}: collection '{collection}' already exists. {WHY}. Instead, create a new model (a new collection) with the field, migrate, and copy the data into it",
            field.path
        )),
        Operation::RemoveField {
            model,
            collection,
            path,
        } if state
            .models
            .get(model)
            .and_then(|m| m.field(path))
            .is_some_and(|f| f.encrypted) =>
        {
            refuse(format!(
                "cannot remove encrypted field '{path}' from {app}.{model}: collection '{collection}' already exists. {WHY}. Instead, create a new model (a new collection) without the field, migrate, copy the data into it, then delete the old model"
            ))
        }
        Operation::AlterField {
            model,
            collection,
            field,
        } => {
            let Some(old) = state.models.get(model).and_then(|m| m.field(&field.path)) else {
                return Ok(());
            };
            let what = if old.encrypted != field.encrypted {
                Some(if field.encrypted {
                    "it would become encrypted".to_owned()
                } else {
                    "it would stop being encrypted".to_owned()
                })
            } else if !old.encrypted {
                None
            } else if old.bson_type != field.bson_type {
                Some(format!(
                    "its type would change from {} to {}",
                    old.bson_type, field.bson_type
                ))
            } else if old.queries != field.queries {
                Some(format!(
                    "its queries would change from {} to {}",
                    queries_text(old.queries.as_ref()),
                    queries_text(field.queries.as_ref())
                ))
            } else if old.kms_provider != field.kms_provider {
                Some(format!(
                    "its KMS provider would change from {} to {} (to move existing keys to another provider, keep the model and run `rewrapdatakeys --to-provider ...`)",
                    old.kms_provider.as_deref().unwrap_or("the default"),
                    field.kms_provider.as_deref().unwrap_or("the default")
                ))
            } else {
                None
            };
            match what {
                Some(w) => refuse(format!(
                    "cannot alter encrypted field '{}' of {app}.{model} in existing collection '{collection}': {w}. {WHY}. Instead, create a new model (a new collection) with the new definition, migrate, and copy the data into it",
                    field.path
                )),
                None => Ok(()),
            }
        }
        Operation::CopyModel {
            model,
            collection,
            fields,
            renamed,
            ..
        } => {
            let Some(old) = state.models.get(model) else {
                return Ok(());
            };
            if &old.collection != collection {
                return refuse(format!(
                    "cannot copy {app}.{model} into collection '{collection}': the model's collection is '{}'; a copy keeps the collection name",
                    old.collection
                ));
            }
            match uncopyable(old, fields, renamed) {
                Some(why) => refuse(format!(
                    "cannot copy {app}.{model} (collection '{collection}'): {why}"
                )),
                None => Ok(()),
            }
        }
        Operation::RenameModel {
            old_model,
            old_collection,
            new_collection,
            ..
        } if old_collection != new_collection
            && state
                .models
                .get(old_model)
                .is_some_and(ModelState::is_encrypted) =>
        {
            refuse(format!(
                "cannot rename encrypted collection '{old_collection}' to '{new_collection}' ({app}.{old_model}): its encryptedFields, its ESC/ECOC state and its data keys (keyAltNames \"{old_collection}.<path>\") belong to the collection it was created as. Instead, create a new model for '{new_collection}', migrate, copy the data into it, then delete the old model"
            ))
        }
        _ => Ok(()),
    }
}

/// What a copy cannot do to a model whose fields were `old.fields` and
/// become `new` (with `renamed` encrypted fields): `None` when it can.
pub(crate) fn uncopyable(
    old: &ModelState,
    new: &[FieldState],
    renamed: &[RenamedField],
) -> Option<String> {
    for r in renamed {
        let (Some(from), Some(to)) = (old.field(&r.from), new.iter().find(|f| f.path == r.to))
        else {
            return Some(format!(
                "the renamed field '{}' -> '{}' is not a field before and after",
                r.from, r.to
            ));
        };
        if !from.encrypted || !to.encrypted || from.bson_type != to.bson_type {
            return Some(format!(
                "the renamed field '{}' -> '{}' must be encrypted before and after, with one BSON type",
                r.from, r.to
            ));
        }
    }
    for f in new {
        let Some(o) = old.field(&f.path) else {
            continue;
        };
        if o.encrypted && !f.encrypted {
            return Some(format!(
                "the encrypted field '{}' would become plaintext; a copy only encrypts. Decrypting stored data into plaintext is a decision to make in code: load the objects and save them into a new plaintext model",
                f.path
            ));
        }
        if o.encrypted && o.bson_type != f.bson_type {
            return Some(format!(
                "the encrypted field '{}' would change its type from {} to {}; a copy keeps each value as it is. Add a new field of the new type instead",
                f.path, o.bson_type, f.bson_type
            ));
        }
        if o.encrypted && o.kms_provider != f.kms_provider {
            return Some(format!(
                "the encrypted field '{}' would move from KMS provider {} to {}; to move existing keys to another provider, keep the model and run `rewrapdatakeys --to-provider ...`",
                f.path,
                o.kms_provider.as_deref().unwrap_or("the default"),
                f.kms_provider.as_deref().unwrap_or("the default")
            ));
        }
    }
    None
}

/// The changes a copy of `old` into `new` makes, one line each; empty when
/// the encryption of the model does not change.
fn copy_changes(old: &ModelState, new: &ModelState, renamed: &[RenamedField]) -> Vec<String> {
    let mut out = Vec::new();
    for r in renamed {
        out.push(format!(
            "encrypted field '{}' renamed to '{}'",
            r.from, r.to
        ));
    }
    let renamed_to = |p: &str| renamed.iter().any(|r| r.to == p);
    let renamed_from = |p: &str| renamed.iter().any(|r| r.from == p);
    for f in new.fields.iter().filter(|f| !renamed_to(&f.path)) {
        match old.field(&f.path) {
            None if f.encrypted => out.push(format!("encrypted field '{}' added", f.path)),
            Some(o) if !o.encrypted && f.encrypted => {
                out.push(format!("plaintext field '{}' becomes encrypted", f.path));
            }
            Some(o) if o.encrypted && f.encrypted && o.queries != f.queries => out.push(format!(
                "encrypted field '{}' changes its queries from {} to {}",
                f.path,
                queries_text(o.queries.as_ref()),
                queries_text(f.queries.as_ref())
            )),
            _ => {}
        }
    }
    for o in old
        .fields
        .iter()
        .filter(|o| o.encrypted && !renamed_from(&o.path))
    {
        if new.field(&o.path).is_none() {
            out.push(format!(
                "encrypted field '{}' removed (its values are not copied)",
                o.path
            ));
        }
    }
    out
}

fn queries_text(q: Option<&serde_json::Value>) -> String {
    q.map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// The state of a registered model.
pub fn model_state(schema: &ModelSchema) -> ModelState {
    let mut fields = Vec::new();
    let mut stack = Vec::new();
    flatten(
        &schema.fields,
        "",
        schema.kms_provider.as_deref(),
        &mut stack,
        &mut fields,
    );
    ModelState {
        model: schema.name.clone(),
        collection: schema.collection.clone(),
        kms_provider: schema.kms_provider.clone(),
        fields,
    }
}

fn flatten(
    fields: &[FieldSchema],
    prefix: &str,
    default_kms: Option<&str>,
    stack: &mut Vec<&'static str>,
    out: &mut Vec<FieldState>,
) {
    for f in fields {
        let path = if prefix.is_empty() {
            f.name.clone()
        } else {
            format!("{prefix}.{}", f.name)
        };
        out.push(FieldState {
            path: path.clone(),
            bson_type: f.bson_type.clone(),
            primary_key: f.primary_key,
            null: f.null,
            encrypted: f.encrypted,
            kms_provider: if f.encrypted {
                f.kms_provider
                    .clone()
                    .or_else(|| default_kms.map(str::to_owned))
            } else {
                None
            },
            unique: f.unique,
            index: f.indexed,
            max_length: f.options.max_length,
            max_digits: f.options.max_digits,
            decimal_places: f.options.decimal_places,
            queries: f
                .queries
                .as_ref()
                .map(|q| q.to_bson().into_canonical_extjson()),
        });
        // The fields of an encrypted sub-document are inside one ciphertext,
        // and embedded arrays cannot hold encrypted fields: only plain
        // embedded models are entered.
        if !f.encrypted
            && let FieldKind::Embedded(r) = &f.kind
            && !stack.contains(&r.name)
        {
            stack.push(r.name);
            flatten(&r.get().fields, &path, default_kms, stack, out);
            stack.pop();
        }
    }
}

/// The operations that take an app from `old` to the models `new`, checked
/// against what Queryable Encryption allows.
pub fn autodetect(
    app: &str,
    old: &AppState,
    new: &[ModelState],
) -> Result<Vec<Operation>, MigrationError> {
    autodetect_with(app, old, new, &[])
}

/// [`autodetect`], with a [`Operation::CopyModel`] under fresh data keys
/// for each model named in `reencrypt` (by name or `app.Model`), changed
/// or not.
// One pass over the models, as `autodetect` was; the copy decision is
// where it must be, between the rename detection and the field ops.
#[allow(clippy::too_many_lines)]
pub fn autodetect_with(
    app: &str,
    old: &AppState,
    new: &[ModelState],
    reencrypt: &[String],
) -> Result<Vec<Operation>, MigrationError> {
    let mut ops = Vec::new();
    let mut created: Vec<&ModelState> = new
        .iter()
        .filter(|m| !old.models.contains_key(&m.model))
        .collect();
    let mut deleted: Vec<&ModelState> = old
        .models
        .values()
        .filter(|m| !new.iter().any(|n| n.model == m.model))
        .collect();
    // A model that disappeared while one with the same fields appeared was
    // renamed.
    created.retain(|c| {
        let Some(i) = deleted
            .iter()
            .position(|d| d.fields == c.fields && d.kms_provider == c.kms_provider)
        else {
            return true;
        };
        let d = deleted.remove(i);
        ops.push(Operation::RenameModel {
            old_model: d.model.clone(),
            new_model: c.model.clone(),
            old_collection: d.collection.clone(),
            new_collection: c.collection.clone(),
        });
        false
    });
    for m in new {
        let Some(o) = old.models.get(&m.model) else {
            continue;
        };
        if o.collection != m.collection {
            ops.push(Operation::RenameModel {
                old_model: o.model.clone(),
                new_model: m.model.clone(),
                old_collection: o.collection.clone(),
                new_collection: m.collection.clone(),
            });
        }
        let added: Vec<&FieldState> = m
            .fields
            .iter()
            .filter(|f| o.field(&f.path).is_none())
            .collect();
        let removed: Vec<&FieldState> = o
            .fields
            .iter()
            .filter(|f| m.field(&f.path).is_none())
            .collect();
        // An encrypted field that disappeared while one with the same
        // definition appeared was renamed.
        let mut renamed: Vec<RenamedField> = Vec::new();
        for a in added.iter().filter(|a| a.encrypted) {
            if let Some(r) = removed.iter().find(|r| {
                r.encrypted
                    && r.encryption_signature() == a.encryption_signature()
                    && r.kms_provider == a.kms_provider
                    && !renamed.iter().any(|x| x.from == r.path)
            }) {
                renamed.push(RenamedField {
                    from: r.path.clone(),
                    to: a.path.clone(),
                });
            }
        }
        let fresh = reencrypt
            .iter()
            .any(|r| *r == m.model || *r == format!("{app}.{}", m.model));
        let changes = copy_changes(o, m, &renamed);
        if o.collection == m.collection
            && (fresh || !changes.is_empty())
            && uncopyable(o, &m.fields, &renamed).is_none()
        {
            let mut changes = changes;
            if fresh {
                changes
                    .push("every encrypted field re-encrypted under a fresh data key".to_owned());
            }
            ops.push(Operation::CopyModel {
                model: m.model.clone(),
                collection: m.collection.clone(),
                kms_provider: m.kms_provider.clone(),
                fields: m.fields.clone(),
                renamed,
                keys: if fresh {
                    CopyKeys::Fresh
                } else {
                    CopyKeys::KeepUnchanged
                },
                changes,
            });
            continue;
        }
        if let Some(r) = renamed.first() {
            return Err(MigrationError::Refused(format!(
                "cannot rename encrypted field '{}' to '{}' of {app}.{}: collection '{}' already exists, and its encryptedFields name the path '{}'. {WHY}. {}",
                r.from,
                r.to,
                m.model,
                o.collection,
                r.from,
                uncopyable(o, &m.fields, &renamed).map_or_else(
                    || "Rename the collection and the field in two migrations".to_owned(),
                    |why| format!("A copy migration cannot do it either: {why}")
                )
            )));
        }
        for f in &m.fields {
            match o.field(&f.path) {
                None => ops.push(Operation::AddField {
                    model: m.model.clone(),
                    collection: m.collection.clone(),
                    field: f.clone(),
                }),
                Some(before) if before != f => ops.push(Operation::AlterField {
                    model: m.model.clone(),
                    collection: m.collection.clone(),
                    field: f.clone(),
                }),
                Some(_) => {}
            }
        }
        for r in removed {
            ops.push(Operation::RemoveField {
                model: m.model.clone(),
                collection: m.collection.clone(),
                path: r.path.clone(),
            });
        }
    }
    for c in created {
        ops.push(Operation::CreateModel {
            model: c.model.clone(),
            collection: c.collection.clone(),
            kms_provider: c.kms_provider.clone(),
            fields: c.fields.clone(),
        });
    }
    for d in deleted {
        ops.push(Operation::DeleteModel {
            model: d.model.clone(),
            collection: d.collection.clone(),
        });
    }
    for r in reencrypt {
        let known = new
            .iter()
            .any(|m| *r == m.model || *r == format!("{app}.{}", m.model));
        if !known {
            return Err(MigrationError::Inconsistent(format!(
                "--reencrypt {r}: no registered model of app '{app}' by that name"
            )));
        }
        if let Some(m) = new
            .iter()
            .find(|m| *r == m.model || *r == format!("{app}.{}", m.model))
            && !m.is_encrypted()
        {
            return Err(MigrationError::Refused(format!(
                "--reencrypt {r}: {app}.{} has no encrypted fields, so there is nothing to re-encrypt",
                m.model
            )));
        }
        if !old
            .models
            .keys()
            .any(|k| r == k || *r == format!("{app}.{k}"))
        {
            return Err(MigrationError::Refused(format!(
                "--reencrypt {r}: {app}.{r} has no migration yet; its first migration creates it under new data keys anyway"
            )));
        }
    }
    let mut state = old.clone();
    for op in &ops {
        check_operation(app, op, &state)?;
        state.apply(op)?;
    }
    Ok(ops)
}

/// The registered models of `app`, as states.
fn app_models(app: &App, label: &str) -> Vec<ModelState> {
    app.models()
        .iter()
        .filter(|m| m.app == label)
        .map(|m| model_state(m))
        .collect()
}

fn app_labels(app: &App) -> Vec<String> {
    let mut labels: Vec<String> = app.models().iter().map(|m| m.app.clone()).collect();
    labels.sort();
    labels.dedup();
    labels
}

fn migration_name(number: usize, ops: &[Operation]) -> String {
    let summary = if number == 1 {
        "initial".to_owned()
    } else {
        match ops {
            [Operation::CreateModel { model, .. }] => model.to_lowercase(),
            [Operation::DeleteModel { model, .. }] => format!("delete_{}", model.to_lowercase()),
            [Operation::RenameModel { new_model, .. }] => {
                format!("rename_{}", new_model.to_lowercase())
            }
            [
                Operation::AddField { model, field, .. }
                | Operation::AlterField { model, field, .. },
            ] => format!(
                "{}_{}",
                model.to_lowercase(),
                field.path.replace('.', "_").to_lowercase()
            ),
            [Operation::CopyModel { model, keys, .. }] => match keys {
                CopyKeys::Fresh => format!("reencrypt_{}", model.to_lowercase()),
                CopyKeys::KeepUnchanged => format!("copy_{}", model.to_lowercase()),
            },
            [Operation::RemoveField { model, path, .. }] => format!(
                "remove_{}_{}",
                model.to_lowercase(),
                path.replace('.', "_").to_lowercase()
            ),
            _ => "auto".to_owned(),
        }
    };
    format!("{number:04}_{summary}")
}

/// Compares the registered models of each app (all, or those in `only`)
/// with their migrations in `dir` and writes the next migration of each app
/// that changed (with [`WriteFiles::Yes`]). Returns the new migrations with
/// the files written.
pub fn makemigrations(
    app: &App,
    dir: &MigrationDir,
    only: &[String],
    write: WriteFiles,
) -> Result<Vec<(Migration, Option<PathBuf>)>, MigrationError> {
    makemigrations_with(
        app,
        dir,
        &MakeMigrationsOptions {
            only: only.to_vec(),
            write,
            reencrypt: Vec::new(),
        },
    )
}

/// Whether [`makemigrations_with`] writes the migration files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteFiles {
    /// Write them.
    #[default]
    Yes,
    /// Only report what would be written (`--dry-run`, `--check`).
    No,
}

/// What [`makemigrations_with`] does.
#[derive(Debug, Clone, Default)]
pub struct MakeMigrationsOptions {
    /// Only these apps (all when empty).
    pub only: Vec<String>,
    /// Whether to write the files.
    pub write: WriteFiles,
    /// Models (`Model` or `app.Model`) to copy under fresh data keys.
    pub reencrypt: Vec<String>,
}

/// [`makemigrations`] with options: `--reencrypt MODEL` writes a
/// [`Operation::CopyModel`] under fresh data keys for each named model.
pub fn makemigrations_with(
    app: &App,
    dir: &MigrationDir,
    opts: &MakeMigrationsOptions,
) -> Result<Vec<(Migration, Option<PathBuf>)>, MigrationError> {
    let only = &opts.only;
    let labels = app_labels(app);
    for r in &opts.reencrypt {
        let found = app.models().iter().any(|m| *r == m.name || *r == m.label());
        if !found {
            return Err(MigrationError::Inconsistent(format!(
                "--reencrypt {r}: no registered model by that name"
            )));
        }
    }
    for o in only {
        if !labels.contains(o) {
            return Err(MigrationError::Inconsistent(format!(
                "no registered model has app label '{o}'; registered apps: {}",
                labels.join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for label in labels
        .iter()
        .filter(|l| only.is_empty() || only.contains(l))
    {
        let existing = dir.migrations(label)?;
        let state = AppState::from_migrations(&existing)?;
        let reencrypt: Vec<String> = app
            .models()
            .iter()
            .filter(|m| {
                m.app == *label
                    && opts
                        .reencrypt
                        .iter()
                        .any(|r| *r == m.name || *r == m.label())
            })
            .map(|m| m.name.clone())
            .collect();
        let operations = autodetect_with(label, &state, &app_models(app, label), &reencrypt)?;
        if operations.is_empty() {
            continue;
        }
        let m = Migration {
            app: label.clone(),
            name: migration_name(existing.len() + 1, &operations),
            operations,
        };
        let path = match opts.write {
            WriteFiles::No => None,
            WriteFiles::Yes => Some(dir.write(&m)?),
        };
        out.push((m, path));
    }
    Ok(out)
}

/// One `0001_initial` migration per app of the registered models, built in
/// memory (what [`crate::testing`] migrates with).
pub fn initial_migrations(app: &App) -> Result<Vec<Migration>, MigrationError> {
    let mut out = Vec::new();
    for label in app_labels(app) {
        let ops = autodetect(&label, &AppState::default(), &app_models(app, &label))?;
        out.push(Migration {
            name: migration_name(1, &ops),
            app: label,
            operations: ops,
        });
    }
    Ok(out)
}
