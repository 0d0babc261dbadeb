//! Copy migrations: a model's collection rebuilt under new
//! `encryptedFields` ([`Operation::CopyModel`](super::Operation::CopyModel)).
//!
//! Queryable Encryption fixes a collection's encrypted fields when it is
//! created, so encrypting a plaintext field, changing an encrypted field's
//! queries, renaming or removing an encrypted field, or re-encrypting under
//! fresh data keys all need a new collection. A copy:
//!
//! 1. writes a journal entry (`cipherdoc_migrations_copy`, one per
//!    collection, phase `copying`): from now on writes of the model are
//!    refused with [`Error::CopyInProgress`];
//! 2. makes the data keys the new collection needs (keyAltName
//!    `"<temp>.<path>"`, so that a rollback finds them) and creates the
//!    encrypted collection under the temporary name [`temp_collection`],
//!    and records its `encryptedFields` in the journal;
//! 3. reads the old collection in `_id` order, in batches, decrypts each
//!    document (a checked read), applies the renames and removals, encrypts
//!    it with the new `encryptedFields` and inserts the batch;
//! 4. checks the counts of both collections and decrypts a sample from the
//!    new one;
//! 5. renames the new collection to the model's collection, dropping the
//!    old one with its ESC/ECOC in the same engine transaction
//!    ([`Engine::rename_collection`](cipherdoc_engine::Engine::rename_collection)
//!    with `DropExisting`): readers see the old collection or the complete
//!    new one, never a half-copied one, and never two;
//! 6. deletes the old data keys nothing uses any more, gives the new keys
//!    their keyAltName `"<collection>.<path>"`, scrubs the freed space
//!    ([`Engine::scrub_freed_space`](cipherdoc_engine::Engine::scrub_freed_space))
//!    and marks the journal entry `done` (removed once the migration is
//!    recorded).
//!
//! A `migrate` killed at any point is recovered by the next `migrate`
//! before it plans anything: if the model's collection already has the
//! journal's new `encryptedFields`, the switch happened and step 6 is
//! finished (it is idempotent); otherwise the copy is rolled back (the
//! temporary collection and the keys named `"<temp>.*"` are dropped, the
//! journal entry deleted) and the migration, still unrecorded, runs again.
//!
//! Writes during a copy are blocked, not carried over: every write door of
//! a query set reads the journal first. A write that passed that check just
//! before the journal entry was committed can still land in the old
//! collection while the copy runs; the count check of step 4 catches an
//! insert or a delete, and the copy is then rolled back with an error that
//! says to run `migrate` again. Only one `migrate` may run at a time per
//! database (as with Django's migrations).

use std::collections::BTreeSet;

use bson::{Bson, DateTime, Document, doc};
use cipherdoc_crypto::KeyId;
use cipherdoc_crypto::efc::{EncryptedFieldConfig, FieldKey};
use cipherdoc_engine::{
    CreateCollectionOptions, EngineError, FieldOp, Filter, FindOptions, RenameTarget, SortDirection,
};

use super::executor::{MigrationObserver, ensure_index};
use super::map::{alt_name, field_entry, master_for, no_encryption, same_fields_docs};
use super::state::ModelState;
use super::{CopyKeys, MigrationError, RenamedField};
use crate::app::Database;
use crate::error::{Error, Result};
use crate::key_vault::{alt_names_of, key_id_of};

/// The collection each database journals its copies in.
pub const COPY_JOURNAL: &str = "cipherdoc_migrations_copy";

/// Documents read, re-encrypted and inserted per engine call.
const BATCH: u64 = 500;

/// Documents of the new collection decrypted and compared with what was
/// copied into them before the switch.
const SAMPLE: usize = 8;

const COPYING: &str = "copying";
const DONE: &str = "done";

/// The name a copy of `collection` is built under before it takes the
/// collection's name.
pub fn temp_collection(collection: &str) -> String {
    format!("{collection}__cipherdoc_copy")
}

fn key_uuid(id: KeyId) -> bson::Uuid {
    bson::Uuid::from_bytes(*id.as_bytes())
}

fn key_of_uuid(u: bson::Uuid) -> KeyId {
    KeyId::from_bytes(u.bytes())
}

/// The key ids an `encryptedFields` document names.
fn key_ids(efc: Option<&EncryptedFieldConfig>) -> BTreeSet<KeyId> {
    efc.map(|c| {
        c.fields
            .iter()
            .filter_map(|f| match &f.key {
                FieldKey::Id(id) => Some(*id),
                FieldKey::AltName(_) => None,
            })
            .collect()
    })
    .unwrap_or_default()
}

fn parse_efc(db: &Database, collection: &str, d: &Document) -> Result<EncryptedFieldConfig> {
    EncryptedFieldConfig::from_document(d).map_err(|source| Error::InvalidCatalog {
        namespace: db.namespace(collection),
        source,
    })
}

fn by_id(collection: &str) -> Filter {
    Filter::eq("_id", collection)
}

/// The migration (`app.name`) copying `collection`, when a copy is under
/// way: writes of the collection's model are then refused with
/// [`Error::CopyInProgress`].
pub(crate) async fn copy_in_progress(db: &Database, collection: &str) -> Result<Option<String>> {
    let found = db
        .engine()
        .find_one(
            COPY_JOURNAL,
            &Filter::And(vec![by_id(collection), Filter::eq("phase", COPYING)]),
        )
        .await?;
    Ok(found.and_then(|d| d.get_str("migration").ok().map(str::to_owned)))
}

/// One journal entry.
#[derive(Debug, Clone)]
struct Entry {
    collection: String,
    migration: String,
    phase: String,
    old_keys: Vec<KeyId>,
    new_fields: Option<Document>,
}

impl Entry {
    fn from_doc(d: &Document) -> Result<Self> {
        let bad = |what: &str| {
            Error::from(MigrationError::Inconsistent(format!(
                "the copy journal {COPY_JOURNAL} holds an entry without a valid {what}; it was changed outside cipherdoc"
            )))
        };
        let mut old_keys = Vec::new();
        for k in d.get_array("old_keys").map_err(|_| bad("old_keys"))? {
            match k {
                Bson::Binary(b) => {
                    old_keys.push(KeyId::from_slice(&b.bytes).map_err(|_| bad("old_keys"))?);
                }
                _ => return Err(bad("old_keys")),
            }
        }
        Ok(Self {
            collection: d.get_str("_id").map_err(|_| bad("_id"))?.to_owned(),
            migration: d
                .get_str("migration")
                .map_err(|_| bad("migration"))?
                .to_owned(),
            phase: d.get_str("phase").map_err(|_| bad("phase"))?.to_owned(),
            old_keys,
            new_fields: d.get_document("new_encrypted_fields").ok().cloned(),
        })
    }

    fn to_doc(&self) -> Document {
        let mut d = doc! {
            "_id": &self.collection,
            "migration": &self.migration,
            "phase": &self.phase,
            "temp": temp_collection(&self.collection),
            "old_keys": self.old_keys.iter().map(|k| Bson::Binary(k.to_binary())).collect::<Vec<_>>(),
            "updated": DateTime::now(),
        };
        if let Some(f) = &self.new_fields {
            d.insert("new_encrypted_fields", f.clone());
        }
        d
    }

    async fn save(&self, db: &Database) -> Result<()> {
        let id = Bson::String(self.collection.clone());
        if !db
            .engine()
            .replace_one(COPY_JOURNAL, &id, self.to_doc())
            .await?
        {
            db.engine().insert_one(COPY_JOURNAL, self.to_doc()).await?;
        }
        Ok(())
    }

    async fn delete(&self, db: &Database) -> Result<()> {
        db.engine()
            .delete_one(COPY_JOURNAL, &by_id(&self.collection))
            .await?;
        Ok(())
    }
}

async fn entries(db: &Database) -> Result<Vec<Entry>> {
    let engine = db.engine();
    if engine.describe_collection(COPY_JOURNAL).await?.is_none() {
        return Ok(Vec::new());
    }
    engine
        .find(COPY_JOURNAL, &Filter::all(), &FindOptions::default())
        .await?
        .iter()
        .map(Entry::from_doc)
        .collect()
}

/// Brings every copy an earlier `migrate` left unfinished to an end: rolled
/// forward when its switch happened, else rolled back (its migration is
/// then still unapplied and runs again). `applied` lists `app.name` of the
/// recorded migrations; their `done` entries are removed.
pub(crate) async fn recover(
    db: &Database,
    applied: &[String],
    notes: &mut Vec<String>,
) -> Result<()> {
    for mut e in entries(db).await? {
        let ns = db.namespace(&e.collection);
        if e.phase == DONE {
            if applied.contains(&e.migration) {
                e.delete(db).await?;
            }
            continue;
        }
        let live = db
            .engine()
            .describe_collection(&e.collection)
            .await?
            .and_then(|i| i.options.encrypted_fields);
        let switched = match (&live, &e.new_fields) {
            (Some(l), Some(n)) => same_fields_docs(l, n),
            _ => false,
        };
        if switched {
            finish(db, &e, notes).await?;
            DONE.clone_into(&mut e.phase);
            e.save(db).await?;
            notes.push(format!(
                "finished the interrupted copy of {ns} (migration {}): the new collection was in place",
                e.migration
            ));
        } else {
            rollback(db, &e).await?;
            notes.push(format!(
                "rolled back the interrupted copy of {ns} (migration {}); it runs again",
                e.migration
            ));
        }
    }
    db.forget_catalog();
    Ok(())
}

/// Removes the `done` journal entries of migration `id` (once recorded).
pub(crate) async fn forget_done(db: &Database, id: &str) -> Result<()> {
    if db
        .engine()
        .describe_collection(COPY_JOURNAL)
        .await?
        .is_some()
    {
        db.engine()
            .delete_many(
                COPY_JOURNAL,
                &Filter::And(vec![Filter::eq("migration", id), Filter::eq("phase", DONE)]),
            )
            .await?;
    }
    Ok(())
}

/// The unfinished copies, for `migrate --dry-run`.
pub(crate) async fn pending(db: &Database) -> Result<Vec<String>> {
    Ok(entries(db)
        .await?
        .into_iter()
        .filter(|e| e.phase == COPYING)
        .map(|e| {
            format!(
                "the copy of {} by migration {} was interrupted; `migrate` finishes or rolls it back first",
                db.namespace(&e.collection),
                e.migration
            )
        })
        .collect())
}

/// Drops the temporary collection and the keys made for it, and the
/// journal entry. Idempotent.
async fn rollback(db: &Database, e: &Entry) -> Result<()> {
    let temp = temp_collection(&e.collection);
    db.engine().drop_collection(&temp).await?;
    if let Some(enc) = db.encryption() {
        let prefix = format!("{temp}.");
        for d in enc.keys().vault().list().await? {
            if alt_names_of(&d)?.iter().any(|n| n.starts_with(&prefix)) {
                enc.keys()
                    .delete_data_key(key_of_uuid(key_id_of(&d)?))
                    .await?;
            }
        }
    }
    e.delete(db).await
}

/// After the switch: deletes the old keys the collection no longer uses,
/// names the new keys `"<collection>.<path>"`, scrubs the freed space.
/// Idempotent.
async fn finish(db: &Database, e: &Entry, notes: &mut Vec<String>) -> Result<()> {
    let ns = db.namespace(&e.collection);
    let live = db
        .engine()
        .describe_collection(&e.collection)
        .await?
        .and_then(|i| i.options.encrypted_fields)
        .map(|d| parse_efc(db, &e.collection, &d))
        .transpose()?;
    let used = key_ids(live.as_ref());
    if let Some(enc) = db.encryption() {
        let keys = enc.keys();
        for old in e.old_keys.iter().filter(|k| !used.contains(k)) {
            if keys.delete_data_key(*old).await? {
                notes.push(format!(
                    "deleted data key {old}: nothing in {ns} uses it after the copy"
                ));
            }
        }
        let temp = temp_collection(&e.collection);
        for f in live.iter().flat_map(|c| &c.fields) {
            let FieldKey::Id(id) = &f.key else { continue };
            let Some(mut d) = keys.vault().find_by_id(key_uuid(*id)).await? else {
                continue;
            };
            let provisional = alt_name(&temp, &f.path);
            let names = alt_names_of(&d)?;
            if !names.contains(&provisional) {
                continue;
            }
            let want = alt_name(&e.collection, &f.path);
            // A key that still holds the name but that the collection does
            // not use (left by an earlier collection of this name) gives
            // it up: the name must find the key the collection uses.
            if let Some(other) = keys.vault().find_by_alt_name(&want).await? {
                let other = key_of_uuid(key_id_of(&other)?);
                if other != *id && !used.contains(&other) {
                    keys.delete_data_key(other).await?;
                    notes.push(format!(
                        "deleted data key {other}: it held the name '{want}' and nothing in {ns} uses it"
                    ));
                }
            }
            let mut renamed: Vec<Bson> = names
                .into_iter()
                .filter(|n| *n != provisional && *n != want)
                .map(Bson::String)
                .collect();
            renamed.insert(0, Bson::String(want));
            d.insert("keyAltNames", renamed);
            keys.vault().replace(d).await?;
        }
    }
    match db.engine().scrub_freed_space().await {
        Ok(()) => {}
        Err(EngineError::Unsupported { engine, .. }) => notes.push(format!(
            "the {engine} engine cannot scrub freed space; the old documents of {ns} may remain in its files until the space is reused"
        )),
        Err(err) => {
            tracing::warn!(collection = %ns, error = %err, "could not scrub the space a copy freed");
            notes.push(format!(
                "the space the old documents of {ns} used was not scrubbed ({err}); run `migrate` again when no other process has the database open"
            ));
        }
    }
    Ok(())
}

/// What one [`super::Operation::CopyModel`] (or its reversal) does.
pub(crate) struct CopyPlan<'a> {
    /// The app label.
    pub app: &'a str,
    /// `app.name` of the migration.
    pub migration: &'a str,
    /// The model before.
    pub old: &'a ModelState,
    /// The model after (same collection).
    pub new: &'a ModelState,
    /// Encrypted fields moving to another path.
    pub renamed: &'a [RenamedField],
    /// Which keys the new collection uses.
    pub keys: CopyKeys,
}

/// Runs one copy (see the module documentation).
pub(crate) async fn run(
    db: &Database,
    plan: &CopyPlan<'_>,
    observer: &dyn MigrationObserver,
    notes: &mut Vec<String>,
) -> Result<()> {
    let collection = &plan.new.collection;
    let ns = db.namespace(collection);
    if let Some(e) = entries(db)
        .await?
        .into_iter()
        .find(|e| e.collection == *collection)
    {
        if e.phase == DONE && e.migration == plan.migration {
            notes.push(format!(
                "{ns} was already copied by {} before it was interrupted",
                e.migration
            ));
            return Ok(());
        }
        return Err(MigrationError::Inconsistent(format!(
            "an unfinished copy of {ns} (migration {}) is in the journal {COPY_JOURNAL}; run `migrate --database {}` again to finish or roll it back",
            e.migration,
            db.alias()
        ))
        .into());
    }
    let Some(info) = db.engine().describe_collection(collection).await? else {
        // Nothing stored yet: the collection is simply created as it is now.
        let mut created = super::executor::Created::default();
        return super::executor::create_model(db, plan.app, plan.new, notes, &mut created).await;
    };
    if db.encryption().is_none() {
        return Err(no_encryption(db, plan.app, plan.new));
    }
    let temp = temp_collection(collection);
    if db.engine().describe_collection(&temp).await?.is_some() {
        return Err(MigrationError::Inconsistent(format!(
            "cannot copy {ns}: {} exists without a journal entry; drop it (it is not the model's collection) and migrate again",
            db.namespace(&temp)
        ))
        .into());
    }
    let old_cfg = info
        .options
        .encrypted_fields
        .as_ref()
        .map(|d| parse_efc(db, collection, d))
        .transpose()?;
    let mut entry = Entry {
        collection: collection.clone(),
        migration: plan.migration.to_owned(),
        phase: COPYING.to_owned(),
        old_keys: key_ids(old_cfg.as_ref()).into_iter().collect(),
        new_fields: None,
    };
    entry.save(db).await?;
    let copied = copy_into_temp(db, plan, old_cfg.as_ref(), &mut entry, observer).await;
    if let Err(e) = copied {
        if let Err(undo) = rollback(db, &entry).await {
            tracing::warn!(collection = %ns, error = %undo, "could not roll back a failed copy; the next migrate will");
        }
        return Err(e);
    }
    // The switch: one engine transaction drops the old collection (with
    // its ESC/ECOC) and gives the new one its name.
    db.engine()
        .rename_collection(&temp, collection, RenameTarget::DropExisting)
        .await?;
    db.forget_catalog();
    finish(db, &entry, notes).await?;
    DONE.clone_into(&mut entry.phase);
    entry.save(db).await?;
    Ok(())
}

/// Steps 2 to 4: keys, the temporary collection, the copy, the checks.
async fn copy_into_temp(
    db: &Database,
    plan: &CopyPlan<'_>,
    old_cfg: Option<&EncryptedFieldConfig>,
    entry: &mut Entry,
    observer: &dyn MigrationObserver,
) -> Result<()> {
    let collection = &plan.new.collection;
    let ns = db.namespace(collection);
    let temp = temp_collection(collection);
    let temp_ns = db.namespace(&temp);
    let enc = db
        .encryption()
        .ok_or_else(|| no_encryption(db, plan.app, plan.new))?;
    // Keys: every field's master key is resolved before any key is made.
    for f in plan.new.fields.iter().filter(|f| f.encrypted) {
        master_for(db, plan.app, plan.new, f)?;
    }
    let mut fields = Vec::new();
    for f in plan.new.fields.iter().filter(|f| f.encrypted) {
        let kept = match (plan.keys, plan.old.field(&f.path), old_cfg) {
            (CopyKeys::KeepUnchanged, Some(o), Some(cfg))
                if o.encrypted
                    && o.encryption_signature() == f.encryption_signature()
                    && o.kms_provider == f.kms_provider =>
            {
                cfg.fields
                    .iter()
                    .find(|c| c.path == f.path)
                    .and_then(|c| match &c.key {
                        FieldKey::Id(id) => Some(*id),
                        FieldKey::AltName(_) => None,
                    })
            }
            _ => None,
        };
        let id = if let Some(id) = kept {
            id
        } else {
            let master = master_for(db, plan.app, plan.new, f)?;
            enc.keys()
                .create_data_key(master, vec![alt_name(&temp, &f.path)])
                .await?
        };
        fields.push(Bson::Document(field_entry(
            plan.app,
            plan.new,
            f,
            id.to_binary(),
        )?));
    }
    let new_efc = if plan.new.is_encrypted() {
        Some(doc! { "fields": fields })
    } else {
        None
    };
    db.engine()
        .create_collection(
            &temp,
            CreateCollectionOptions {
                encrypted_fields: new_efc.clone(),
            },
        )
        .await?;
    for f in &plan.new.fields {
        ensure_index(db, &temp, f, None).await?;
    }
    entry.new_fields = new_efc;
    entry.save(db).await?;
    let new_cfg = entry
        .new_fields
        .as_ref()
        .map(|d| parse_efc(db, &temp, d))
        .transpose()?;

    let engine = db.engine();
    let total = engine.count(collection, &Filter::all()).await?;
    observer.copy_started(&ns, total);
    let label = format!("{}.{} ({ns})", plan.app, plan.old.model);
    let mut last: Option<Bson> = None;
    let mut copied: u64 = 0;
    let mut sample: Vec<(Bson, Document)> = Vec::new();
    loop {
        let filter = match &last {
            None => Filter::all(),
            Some(id) => Filter::Field {
                path: "_id".to_owned(),
                op: FieldOp::Gt(id.clone()),
            },
        };
        let opts = FindOptions {
            sort: vec![("_id".to_owned(), SortDirection::Ascending)],
            limit: Some(BATCH),
            ..FindOptions::default()
        };
        let docs = engine.find(collection, &filter, &opts).await?;
        if docs.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(docs.len());
        for d in docs {
            let id = d.get("_id").cloned().unwrap_or(Bson::Null);
            let decrypted = enc.encrypter().decrypt_document(&label, d, old_cfg).await?;
            let reshaped = reshape(decrypted, plan);
            let stored = match &new_cfg {
                Some(cfg) => {
                    enc.encrypter()
                        .encrypt_document(&temp_ns, &reshaped, cfg)
                        .await?
                }
                None => reshaped.clone(),
            };
            if sample.len() < SAMPLE {
                sample.push((id.clone(), reshaped));
            }
            last = Some(id);
            batch.push(stored);
        }
        copied += batch.len() as u64;
        engine.insert_many(&temp, batch).await?;
        observer.copied(copied);
    }
    observer.copy_finished();

    // The checks: as many documents on both sides as were copied, and a
    // sample of the new collection decrypts to what was copied into it.
    let (before, after) = (
        engine.count(collection, &Filter::all()).await?,
        engine.count(&temp, &Filter::all()).await?,
    );
    if before != copied || after != copied {
        return Err(MigrationError::Inconsistent(format!(
            "the copy of {ns} was rolled back: {copied} documents were copied, but {ns} now holds {before} and the copy {after} (a write reached the collection during the copy); run `migrate` again"
        ))
        .into());
    }
    for (id, want) in sample {
        let got = engine
            .find_one(&temp, &Filter::eq("_id", id))
            .await?
            .ok_or_else(|| {
                Error::from(MigrationError::Inconsistent(format!(
                    "the copy of {ns} was rolled back: a copied document is missing from {temp_ns}"
                )))
            })?;
        let got = enc
            .encrypter()
            .decrypt_document(&label, got, new_cfg.as_ref())
            .await?;
        if got != want {
            return Err(MigrationError::Inconsistent(format!(
                "the copy of {ns} was rolled back: a copied document does not decrypt to what was copied"
            ))
            .into());
        }
    }
    Ok(())
}

/// A decrypted document as the new model stores it: renamed encrypted
/// fields moved, removed encrypted fields dropped (their values must not
/// reach the new collection, where nothing would encrypt them), and nulls
/// at newly encrypted paths left out (QE encrypts values, not null; a
/// model reads a missing optional field as `None`).
fn reshape(mut doc: Document, plan: &CopyPlan<'_>) -> Document {
    for r in plan.renamed {
        if let Some(v) = take_path(&mut doc, &r.from) {
            set_path(&mut doc, &r.to, v);
        }
    }
    for o in plan.old.fields.iter().filter(|o| o.encrypted) {
        if plan.new.field(&o.path).is_none() && !plan.renamed.iter().any(|r| r.to == o.path) {
            take_path(&mut doc, &o.path);
        }
    }
    for f in plan.new.fields.iter().filter(|f| f.encrypted) {
        if matches!(get_path(&doc, &f.path), Some(Bson::Null)) {
            take_path(&mut doc, &f.path);
        }
    }
    doc
}

fn get_path<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_document()?.get(p)?;
    }
    Some(cur)
}

fn take_path(doc: &mut Document, path: &str) -> Option<Bson> {
    match path.split_once('.') {
        None => doc.remove(path),
        Some((head, rest)) => match doc.get_mut(head) {
            Some(Bson::Document(d)) => take_path(d, rest),
            _ => None,
        },
    }
}

fn set_path(doc: &mut Document, path: &str, v: Bson) {
    match path.split_once('.') {
        None => {
            doc.insert(path, v);
        }
        Some((head, rest)) => {
            if !matches!(doc.get(head), Some(Bson::Document(_))) {
                doc.insert(head, Document::new());
            }
            if let Some(Bson::Document(d)) = doc.get_mut(head) {
                set_path(d, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_move_and_vanish() {
        let mut d = doc! { "a": { "b": 1, "c": 2 }, "x": 3 };
        let v = take_path(&mut d, "a.b").unwrap();
        set_path(&mut d, "n.m", v);
        assert_eq!(d, doc! { "a": { "c": 2 }, "x": 3, "n": { "m": 1 } });
        assert_eq!(take_path(&mut d, "a.zz"), None);
        assert_eq!(take_path(&mut d, "x.y"), None);
        assert_eq!(get_path(&d, "n.m"), Some(&Bson::Int32(1)));
    }
}
