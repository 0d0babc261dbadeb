//! Applying and reversing migrations on one database.

use std::fmt::Write as _;

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use cipherdoc_engine::{CreateCollectionOptions, FieldOp, Filter, FindOptions, IndexSpec};

use cipherdoc_crypto::KeyId;

use super::copy;
use super::map::{MissingKeys, encrypted_fields_for, same_fields_docs};
use super::state::{AppState, ModelState, check_operation};
use super::{
    CopyKeys, FieldState, Migration, MigrationError, MigrationSource, Operation, RenamedField,
};
use crate::app::{App, Database};
use crate::error::{Error, Result};

/// The collection each database records its applied migrations in.
pub const MIGRATIONS_COLLECTION: &str = "cipherdoc_migrations";

/// What `migrate` should do.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The database alias (`default` unless told otherwise).
    pub database: String,
    /// Only this app.
    pub app: Option<String>,
    /// Bring `app` to this migration (`0001`, `0001_initial`) or `zero`.
    pub target: Option<String>,
    /// Apply, or only report what would be done.
    pub mode: MigrateMode,
}

/// Whether [`migrate`] changes anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MigrateMode {
    /// Apply the migrations.
    #[default]
    Apply,
    /// Change nothing; [`MigrateReport::planned`] says what would run
    /// (with the number of documents each copy would copy).
    DryRun,
}

impl MigrateOptions {
    /// Everything, on `database`.
    pub fn database(alias: impl Into<String>) -> Self {
        Self {
            database: alias.into(),
            app: None,
            target: None,
            mode: MigrateMode::Apply,
        }
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, Default)]
pub struct MigrateReport {
    /// `app.name` of the migrations applied, in order.
    pub applied: Vec<String>,
    /// `app.name` of the migrations reversed, in order.
    pub unapplied: Vec<String>,
    /// Things worth telling the user (kept data keys, skipped operations).
    pub notes: Vec<String>,
    /// With [`MigrateMode::DryRun`]: what would run, one line per
    /// operation.
    pub planned: Vec<String>,
}

/// Told about progress, for a progress bar; every method has a no-op default.
pub trait MigrationObserver: Send + Sync {
    /// `steps` operations are about to run.
    fn planned(&self, _steps: u64) {}
    /// One operation ran.
    fn step(&self, _description: &str) {}
    /// A copy migration starts copying `documents` documents of `namespace`.
    fn copy_started(&self, _namespace: &str, _documents: u64) {}
    /// `documents` documents of the current copy are copied so far.
    fn copied(&self, _documents: u64) {}
    /// The current copy has copied every document.
    fn copy_finished(&self) {}
}

impl MigrationObserver for () {}

/// `(app, name)` of the migrations recorded as applied in `db`, in order.
pub async fn applied_migrations(db: &Database) -> Result<Vec<(String, String)>> {
    let engine = db.engine();
    if engine
        .describe_collection(MIGRATIONS_COLLECTION)
        .await?
        .is_none()
    {
        return Ok(Vec::new());
    }
    let docs = engine
        .find(
            MIGRATIONS_COLLECTION,
            &Filter::And(Vec::new()),
            &FindOptions::default(),
        )
        .await?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            Some((
                d.get_str("app").ok()?.to_owned(),
                d.get_str("name").ok()?.to_owned(),
            ))
        })
        .collect())
}

/// Every app's migrations with whether `database` has applied each.
pub async fn show_migrations(
    app: &App,
    source: &dyn MigrationSource,
    database: &str,
) -> Result<Vec<(String, Vec<(String, bool)>)>> {
    let db = app.database(database)?;
    let applied = applied_migrations(db).await?;
    let mut out = Vec::new();
    for label in source.apps()? {
        let list = source
            .migrations(&label)?
            .into_iter()
            .map(|m| {
                let done = applied.iter().any(|(a, n)| *a == label && *n == m.name);
                (m.name, done)
            })
            .collect();
        out.push((label, list));
    }
    Ok(out)
}

fn target_len(app: &str, migrations: &[Migration], target: &str) -> Result<usize> {
    if target == "zero" {
        return Ok(0);
    }
    let hits: Vec<usize> = migrations
        .iter()
        .enumerate()
        .filter(|(_, m)| m.name == target || m.name.starts_with(&format!("{target}_")))
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [i] => Ok(i + 1),
        _ => Err(MigrationError::UnknownMigration {
            app: app.to_owned(),
            target: target.to_owned(),
        }
        .into()),
    }
}

struct Step {
    migration: Migration,
    forward: bool,
    before: AppState,
}

/// Applies (and, with a target, reverses) migrations on one database, as
/// the routers allow, recording them in [`MIGRATIONS_COLLECTION`] there.
pub async fn migrate(
    app: &App,
    source: &dyn MigrationSource,
    opts: &MigrateOptions,
) -> Result<MigrateReport> {
    migrate_observed(app, source, opts, &()).await
}

/// [`migrate`], telling `observer` what it does as it goes (the command
/// line's progress bar).
pub async fn migrate_observed(
    app: &App,
    source: &dyn MigrationSource,
    opts: &MigrateOptions,
    observer: &dyn MigrationObserver,
) -> Result<MigrateReport> {
    let db = app.database(&opts.database)?;
    let labels = if let Some(a) = &opts.app {
        if !source.apps()?.contains(a) {
            return Err(MigrationError::Inconsistent(format!(
                "app '{a}' has no migrations; run `makemigrations {a}` first"
            ))
            .into());
        }
        vec![a.clone()]
    } else {
        if opts.target.is_some() {
            return Err(MigrationError::Inconsistent(
                "a target migration needs an app: `migrate APP TARGET`".to_owned(),
            )
            .into());
        }
        source.apps()?
    };
    let applied = applied_migrations(db).await?;
    let applied_ids: Vec<String> = applied.iter().map(|(a, n)| format!("{a}.{n}")).collect();
    let mut report = MigrateReport::default();
    match opts.mode {
        MigrateMode::Apply => copy::recover(db, &applied_ids, &mut report.notes).await?,
        MigrateMode::DryRun => report.notes.extend(copy::pending(db).await?),
    }
    let mut plan = Vec::new();
    for label in &labels {
        let migrations = source.migrations(label)?;
        let is_applied = |m: &Migration| applied.iter().any(|(a, n)| a == label && *n == m.name);
        let upto = match &opts.target {
            Some(t) => target_len(label, &migrations, t)?,
            None => migrations.len(),
        };
        for i in 0..upto {
            if !is_applied(&migrations[i]) {
                plan.push(Step {
                    migration: migrations[i].clone(),
                    forward: true,
                    before: AppState::from_migrations(&migrations[..i])?,
                });
            }
        }
        for i in (upto..migrations.len()).rev() {
            if is_applied(&migrations[i]) {
                plan.push(Step {
                    migration: migrations[i].clone(),
                    forward: false,
                    before: AppState::from_migrations(&migrations[..i])?,
                });
            }
        }
    }
    let total: usize = plan.iter().map(|s| s.migration.operations.len()).sum();
    if opts.mode == MigrateMode::DryRun {
        dry_run(app, db, &plan, &mut report).await?;
        return Ok(report);
    }
    observer.planned(u64::try_from(total).unwrap_or(u64::MAX));
    for step in plan {
        let m = &step.migration;
        let id = format!("{}.{}", m.app, m.name);
        // The state before each operation, so that a reversal knows what a
        // deleted model looked like.
        let mut states = vec![step.before.clone()];
        for op in &m.operations {
            let mut next = states.last().cloned().unwrap_or_default();
            if step.forward {
                check_operation(&m.app, op, &next).map_err(|e| Error::from(prefix(&id, e)))?;
            }
            next.apply(op).map_err(|e| Error::from(prefix(&id, e)))?;
            states.push(next);
        }
        // What this migration creates, taken back if it fails part way: a
        // refused migration leaves no collection (nor its ESC/ECOC), no
        // data key and no history row.
        let mut created = Created::default();
        let done = if step.forward {
            run_forward(
                app,
                db,
                m,
                &id,
                &states,
                &mut report,
                observer,
                &mut created,
            )
            .await
        } else {
            run_backward(
                app,
                db,
                m,
                &id,
                &states,
                &mut report,
                observer,
                &mut created,
            )
            .await
        };
        if let Err(e) = done {
            created.undo(db).await;
            db.forget_catalog();
            return Err(e);
        }
        db.forget_catalog();
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)] // the state of one step of `migrate`
async fn run_forward(
    app: &App,
    db: &Database,
    m: &Migration,
    id: &str,
    states: &[AppState],
    report: &mut MigrateReport,
    observer: &dyn MigrationObserver,
    created: &mut Created,
) -> Result<()> {
    for (op, before) in m.operations.iter().zip(states) {
        if allowed(app, db, &m.app, op) {
            let cx = OpCx {
                db,
                app: &m.app,
                id,
                before,
                observer,
            };
            apply_op(&cx, op, &mut report.notes, created).await?;
        }
        observer.step(&format!("{id}: {}", op.describe()));
    }
    record(db, &m.app, &m.name).await?;
    copy::forget_done(db, id).await?;
    report.applied.push(id.to_owned());
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the state of one step of `migrate`
async fn run_backward(
    app: &App,
    db: &Database,
    m: &Migration,
    id: &str,
    states: &[AppState],
    report: &mut MigrateReport,
    observer: &dyn MigrationObserver,
    created: &mut Created,
) -> Result<()> {
    for (op, before) in m.operations.iter().zip(states).rev() {
        if allowed(app, db, &m.app, op) {
            let cx = OpCx {
                db,
                app: &m.app,
                id,
                before,
                observer,
            };
            unapply_op(&cx, op, &mut report.notes, created).await?;
        }
        observer.step(&format!("{id}: reverse {}", op.describe()));
    }
    unrecord(db, &m.app, &m.name).await?;
    copy::forget_done(db, id).await?;
    report.unapplied.push(id.to_owned());
    Ok(())
}

/// Collections and data keys one migration created.
#[derive(Debug, Default)]
pub(crate) struct Created {
    collections: Vec<String>,
    keys: Vec<KeyId>,
}

impl Created {
    /// Takes everything back, newest first. Best effort: the migration's
    /// own error is what the caller reports; a failure here is logged.
    async fn undo(self, db: &Database) {
        for c in self.collections.iter().rev() {
            if let Err(e) = db.engine().drop_collection(c).await {
                tracing::warn!(collection = %db.namespace(c), error = %e, "could not drop the collection of a refused migration");
            }
        }
        if let Some(enc) = db.encryption() {
            for id in self.keys.iter().rev() {
                if let Err(e) = enc.keys().delete_data_key(*id).await {
                    tracing::warn!(key = %id, error = %e, "could not delete the data key of a refused migration");
                }
            }
        }
    }
}

fn prefix(id: &str, e: MigrationError) -> MigrationError {
    match e {
        MigrationError::Refused(s) => MigrationError::Refused(format!("migration {id}: {s}")),
        MigrationError::Inconsistent(s) => {
            MigrationError::Inconsistent(format!("migration {id}: {s}"))
        }
        other => other,
    }
}

fn allowed(app: &App, db: &Database, label: &str, op: &Operation) -> bool {
    app.routers()
        .allow_migrate(db.alias(), label, Some(op.model()))
}

async fn record(db: &Database, app: &str, name: &str) -> Result<()> {
    db.engine()
        .insert_one(
            MIGRATIONS_COLLECTION,
            doc! { "_id": ObjectId::new(), "app": app, "name": name, "applied": DateTime::now() },
        )
        .await?;
    Ok(())
}

async fn unrecord(db: &Database, app: &str, name: &str) -> Result<()> {
    let eq = |p: &str, v: &str| Filter::Field {
        path: p.to_owned(),
        op: FieldOp::Eq(Bson::String(v.to_owned())),
    };
    db.engine()
        .delete_many(
            MIGRATIONS_COLLECTION,
            &Filter::And(vec![eq("app", app), eq("name", name)]),
        )
        .await?;
    Ok(())
}

fn model<'s>(state: &'s AppState, name: &str) -> Result<&'s ModelState> {
    state.models.get(name).ok_or_else(|| {
        MigrationError::Inconsistent(format!("model {name} is not in the migration state")).into()
    })
}

/// What an operation runs with.
struct OpCx<'a> {
    db: &'a Database,
    app: &'a str,
    /// `app.name` of the migration.
    id: &'a str,
    /// The app's state before the operation.
    before: &'a AppState,
    observer: &'a dyn MigrationObserver,
}

async fn apply_op(
    cx: &OpCx<'_>,
    op: &Operation,
    notes: &mut Vec<String>,
    created: &mut Created,
) -> Result<()> {
    let (db, app, before) = (cx.db, cx.app, cx.before);
    match op {
        Operation::CopyModel {
            model: name,
            renamed,
            keys,
            ..
        } => {
            let mut after = before.clone();
            after.apply(op)?;
            let plan = copy::CopyPlan {
                app,
                migration: cx.id,
                old: model(before, name)?,
                new: model(&after, name)?,
                renamed,
                keys: *keys,
            };
            copy::run(db, &plan, cx.observer, notes).await
        }
        Operation::CreateModel {
            model,
            collection,
            kms_provider,
            fields,
        } => {
            let ms = ModelState {
                model: model.clone(),
                collection: collection.clone(),
                kms_provider: kms_provider.clone(),
                fields: fields.clone(),
            };
            create_model(db, app, &ms, notes, created).await
        }
        Operation::DeleteModel { collection, .. } => {
            let ms = model(before, op.model())?;
            drop_model(db, ms, collection, notes).await
        }
        Operation::RenameModel {
            old_collection,
            new_collection,
            ..
        } => rename_collection(db, old_collection, new_collection).await,
        Operation::AddField {
            collection, field, ..
        } => ensure_index(db, collection, field, None).await,
        Operation::AlterField {
            model: name,
            collection,
            field,
        } => {
            let old = model(before, name)?.field(&field.path);
            ensure_index(db, collection, field, old).await
        }
        Operation::RemoveField { .. } => Ok(()),
    }
}

async fn unapply_op(
    cx: &OpCx<'_>,
    op: &Operation,
    notes: &mut Vec<String>,
    created: &mut Created,
) -> Result<()> {
    let (db, app, before) = (cx.db, cx.app, cx.before);
    match op {
        // A copy is reversed by a copy back to the model as it was: the
        // fields it encrypted are stored in plaintext again (what reversing
        // asks for); values of fields it removed are not restored.
        Operation::CopyModel {
            model: name,
            renamed,
            ..
        } => {
            let mut after = before.clone();
            after.apply(op)?;
            let back: Vec<RenamedField> = renamed
                .iter()
                .map(|r| RenamedField {
                    from: r.to.clone(),
                    to: r.from.clone(),
                })
                .collect();
            let plan = copy::CopyPlan {
                app,
                migration: cx.id,
                old: model(&after, name)?,
                new: model(before, name)?,
                renamed: &back,
                keys: CopyKeys::KeepUnchanged,
            };
            copy::run(db, &plan, cx.observer, notes).await
        }
        Operation::CreateModel {
            model: name,
            collection,
            ..
        } => {
            let mut after = before.clone();
            after.apply(op)?;
            let ms = model(&after, name)?;
            drop_model(db, ms, collection, notes).await
        }
        Operation::DeleteModel { model: name, .. } => {
            create_model(db, app, model(before, name)?, notes, created).await
        }
        Operation::RenameModel {
            old_collection,
            new_collection,
            ..
        } => rename_collection(db, new_collection, old_collection).await,
        // Documents are schemaless: a reversed field change leaves them as
        // they are, and loading ignores unknown keys.
        Operation::AddField { .. }
        | Operation::RemoveField { .. }
        | Operation::AlterField { .. } => Ok(()),
    }
}

/// Creates a model's collection: for encrypted models the data keys (found
/// by keyAltName or created) and the encrypted collection.
pub(crate) async fn create_model(
    db: &Database,
    app: &str,
    ms: &ModelState,
    notes: &mut Vec<String>,
    created: &mut Created,
) -> Result<()> {
    let engine = db.engine();
    let existing = engine.describe_collection(&ms.collection).await?;
    let ns = db.namespace(&ms.collection);
    if ms.is_encrypted() {
        let efc = encrypted_fields_for(db, app, ms, MissingKeys::Create(&mut created.keys)).await?;
        match existing {
            None => {
                engine
                    .create_collection(
                        &ms.collection,
                        CreateCollectionOptions {
                            encrypted_fields: Some(efc),
                        },
                    )
                    .await?;
                created.collections.push(ms.collection.clone());
            }
            Some(info) => {
                let same = info
                    .options
                    .encrypted_fields
                    .as_ref()
                    .is_some_and(|cat| same_fields_docs(cat, &efc));
                if !same {
                    return Err(MigrationError::Inconsistent(format!(
                        "cannot create encrypted collection {ns} for {app}.{}: a collection by that name already exists {}. Drop it (after saving its data) and migrate again",
                        ms.model,
                        if info.options.encrypted_fields.is_some() {
                            "with other encryptedFields"
                        } else {
                            "without encryption"
                        }
                    ))
                    .into());
                }
                notes.push(format!(
                    "{ns} already exists with these encryptedFields; kept"
                ));
            }
        }
    } else {
        match existing {
            None => {
                engine
                    .create_collection(&ms.collection, CreateCollectionOptions::default())
                    .await?;
                created.collections.push(ms.collection.clone());
            }
            Some(info) if info.options.encrypted_fields.is_some() => {
                return Err(MigrationError::Inconsistent(format!(
                    "cannot create {ns} for {app}.{}: an encrypted collection by that name already exists, and the model has no encrypted fields",
                    ms.model
                ))
                .into());
            }
            Some(_) => notes.push(format!("{ns} already exists; kept")),
        }
    }
    for f in &ms.fields {
        ensure_index(db, &ms.collection, f, None).await?;
    }
    Ok(())
}

async fn drop_model(
    db: &Database,
    ms: &ModelState,
    collection: &str,
    notes: &mut Vec<String>,
) -> Result<()> {
    db.engine().drop_collection(collection).await?;
    if ms.is_encrypted() {
        let names: Vec<String> = ms
            .fields
            .iter()
            .filter(|f| f.encrypted)
            .map(|f| format!("'{}'", super::map::alt_name(collection, &f.path)))
            .collect();
        notes.push(format!(
            "dropped {}; its data keys ({}) are kept in the key vault and are reused if the collection is created again",
            db.namespace(collection),
            names.join(", ")
        ));
    }
    Ok(())
}

/// Creates the index a plaintext field asks for, unless it had it already.
pub(crate) async fn ensure_index(
    db: &Database,
    collection: &str,
    f: &FieldState,
    old: Option<&FieldState>,
) -> Result<()> {
    if f.encrypted || f.primary_key || !(f.unique || f.index) {
        return Ok(());
    }
    if old.is_some_and(|o| o.unique == f.unique && o.index == f.index) {
        return Ok(());
    }
    let mut spec = IndexSpec::new(f.path.clone());
    if f.unique {
        spec = spec.unique().sparse();
        spec.name = format!("{}_unique", f.path);
    }
    if let Some(info) = db.engine().describe_collection(collection).await?
        && info.indexes.iter().any(|i| i.name == spec.name)
    {
        return Ok(());
    }
    db.engine().create_index(collection, spec).await?;
    Ok(())
}

/// Moves a plaintext collection's documents to a new name (engines have no
/// rename; encrypted collections are refused before this).
async fn rename_collection(db: &Database, from: &str, to: &str) -> Result<()> {
    if from == to {
        return Ok(());
    }
    let engine = db.engine();
    let Some(info) = engine.describe_collection(from).await? else {
        return Ok(());
    };
    if info.options.encrypted_fields.is_some() {
        return Err(MigrationError::Refused(format!(
            "cannot rename encrypted collection '{from}' to '{to}'; create a new model and copy the data"
        ))
        .into());
    }
    if engine.describe_collection(to).await?.is_some() {
        return Err(MigrationError::Inconsistent(format!(
            "cannot rename {} to {}: the target exists",
            db.namespace(from),
            db.namespace(to)
        ))
        .into());
    }
    engine
        .create_collection(to, CreateCollectionOptions::default())
        .await?;
    for idx in info.indexes {
        engine.create_index(to, idx).await?;
    }
    let docs: Vec<Document> = engine
        .find(from, &Filter::And(Vec::new()), &FindOptions::default())
        .await?;
    if !docs.is_empty() {
        engine.insert_many(to, docs).await?;
    }
    engine.drop_collection(from).await?;
    Ok(())
}

/// What `migrate` would do, without doing it: one line per operation, and
/// for a copy the number of documents it would copy.
async fn dry_run(
    app: &App,
    db: &Database,
    plan: &[Step],
    report: &mut MigrateReport,
) -> Result<()> {
    for step in plan {
        let m = &step.migration;
        let id = format!("{}.{}", m.app, m.name);
        let ops: Vec<&Operation> = if step.forward {
            m.operations.iter().collect()
        } else {
            m.operations.iter().rev().collect()
        };
        for op in ops {
            if !allowed(app, db, &m.app, op) {
                continue;
            }
            let verb = if step.forward { "" } else { "reverse " };
            let mut line = format!("{id}: {verb}{}", op.describe());
            if let Operation::CopyModel { collection, .. } = op {
                let n = db.engine().count(collection, &Filter::all()).await?;
                let _ = write!(
                    line,
                    " [would copy {n} documents of {}]",
                    db.namespace(collection)
                );
            }
            report.planned.push(line);
        }
        if step.forward {
            report.applied.push(id);
        } else {
            report.unapplied.push(id);
        }
    }
    Ok(())
}
