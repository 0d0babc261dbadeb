//! Catalog commands: `create`, `createIndexes`, `listCollections`,
//! `listIndexes`, `drop`, `dropDatabase`, `renameCollection`.
//!
//! An encrypted collection's ESC and ECOC (`enxcol_.<coll>.esc`/`.ecoc`)
//! are the engine's own storage, created with the collection. Drivers
//! create them first (`create` with `clusteredIndex`), as mongod expects;
//! those `create`s are accepted and have nothing to do, and
//! `listCollections` shows the two beside every encrypted collection as
//! mongod does. Their contents are the server's: `count` answers, writes
//! and finds are refused.

use std::sync::Arc;

use bson::{Bson, Document, doc};
use cipherdoc_engine::{CollectionInfo, CreateCollectionOptions, Engine, Filter, IndexSpec};

use crate::backend::{Database, Open};
use crate::cursor::Batches;
use crate::error::{CommandError, CommandResult, ErrorCode};
use crate::server::Shared;

/// If `name` is an ESC or ECOC name, the collection it belongs to and which.
pub(crate) fn state_collection(name: &str) -> Option<(&str, StateKind)> {
    let rest = name.strip_prefix("enxcol_.")?;
    if let Some(base) = rest.strip_suffix(".esc") {
        return Some((base, StateKind::Esc));
    }
    if let Some(base) = rest.strip_suffix(".ecoc") {
        return Some((base, StateKind::Ecoc));
    }
    None
}

/// ESC or ECOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    Esc,
    Ecoc,
}

fn clustered_index() -> Document {
    doc! {"v": 2, "key": {"_id": 1}, "name": "_id_", "unique": true}
}

fn id_index() -> Document {
    doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
}

/// The create options cipherdoc serve understands; others would be
/// silently unenforced, so they are refused.
const CREATE_OPTIONS: [&str; 4] = [
    "encryptedFields",
    "clusteredIndex",
    "writeConcern",
    "comment",
];

pub(crate) async fn create(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let name = crate::crud::collection_name(cmd, "create")?;
    for (k, _) in cmd {
        if k == "create" || k.starts_with('$') || GENERIC.contains(&k.as_str()) {
            continue;
        }
        if !CREATE_OPTIONS.contains(&k.as_str()) {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                format!("create option '{k}' is not supported by cipherdoc serve"),
            ));
        }
    }
    let Some(dbh) = shared.databases.get(db, Open::CreateIfMissing).await? else {
        return Err(CommandError::new(
            ErrorCode::NamespaceNotFound,
            "database not found",
        ));
    };
    if let Some((base, _)) = state_collection(&name) {
        // The driver's pre-creation of an ESC/ECOC: the engine makes them
        // with the encrypted collection. Exists already if that collection
        // exists and is encrypted.
        let info = dbh.qe.describe_collection(base).await?;
        if info.is_some_and(|i| i.options.encrypted_fields.is_some()) {
            return Err(exists(db, &name));
        }
        return Ok(doc! {});
    }
    shared.checked.forget(&format!("{db}.{name}"));
    let encrypted_fields = match cmd.get("encryptedFields") {
        None => None,
        Some(Bson::Document(ef)) => Some(ef.clone()),
        Some(_) => return Err(CommandError::type_mismatch("encryptedFields", "object")),
    };
    match dbh
        .qe
        .create_collection(&name, CreateCollectionOptions { encrypted_fields })
        .await
    {
        Err(cipherdoc_engine::EngineError::CollectionExists(_)) => Err(exists(db, &name)),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(doc! {}),
    }
}

fn exists(db: &str, name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::NamespaceExists,
        format!("Collection {db}.{name} already exists."),
    )
}

/// Fields every command may carry that a command's parser ignores.
pub(crate) const GENERIC: [&str; 12] = [
    "lsid",
    "txnNumber",
    "autocommit",
    "startTransaction",
    "readConcern",
    "writeConcern",
    "maxTimeMS",
    "comment",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "encryptionInformation",
];

fn index_doc(spec: &IndexSpec) -> Document {
    let mut d = doc! {"v": 2, "key": {spec.path.clone(): 1}, "name": spec.name.clone()};
    if spec.unique {
        d.insert("unique", true);
    }
    if spec.sparse {
        d.insert("sparse", true);
    }
    d
}

/// One `createIndexes` entry as an engine index. The engine's indexes are
/// on one path; a unique index with `partialFilterExpression: {<path>:
/// {$exists: true}}` (what drivers put on a key vault's `keyAltNames`) is
/// the engine's sparse index.
fn parse_index(spec: &Document) -> CommandResult<Option<IndexSpec>> {
    let Some(Bson::Document(key)) = spec.get("key") else {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            "an index specification needs a key document",
        ));
    };
    let mut keys = key.iter();
    let (Some((path, dir)), None) = (keys.next(), keys.next()) else {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            "cipherdoc serve supports single-field indexes only",
        ));
    };
    if crate::pipeline::unit(dir).is_none() {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            format!("index type {dir} on {path:?} is not supported; use 1 or -1"),
        ));
    }
    let name = match spec.get("name") {
        Some(Bson::String(n)) => n.clone(),
        None => format!("{path}_1"),
        Some(_) => return Err(CommandError::type_mismatch("name", "string")),
    };
    if path == "_id" {
        return Ok(None);
    }
    let mut out = IndexSpec::new(path.clone()).named(name);
    if spec.get_bool("unique").unwrap_or(false) {
        out = out.unique();
    }
    if spec.get_bool("sparse").unwrap_or(false) {
        out = out.sparse();
    }
    if let Some(p) = spec.get("partialFilterExpression") {
        let exists_only = matches!(p, Bson::Document(p) if p.len() == 1
            && matches!(p.get(path.as_str()), Some(Bson::Document(c)) if c.len() == 1 && c.get_bool("$exists") == Ok(true)));
        if !exists_only {
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                format!(
                    "the only partialFilterExpression supported is {{{path}: {{$exists: true}}}}"
                ),
            ));
        }
        out = out.sparse();
    }
    for (k, _) in spec {
        if !matches!(
            k.as_str(),
            "key" | "name" | "unique" | "sparse" | "partialFilterExpression" | "v" | "background"
        ) {
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                format!("index option '{k}' is not supported by cipherdoc serve"),
            ));
        }
    }
    Ok(Some(out))
}

pub(crate) async fn create_indexes(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let name = crate::crud::collection_name(cmd, "createIndexes")?;
    if state_collection(&name).is_some() {
        return Err(state_write(&name));
    }
    let specs = match cmd.get("indexes") {
        Some(Bson::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(CommandError::bad_value(
                "createIndexes needs a non-empty array of indexes",
            ));
        }
    };
    let Some(dbh) = shared.databases.get(db, Open::CreateIfMissing).await? else {
        return Err(CommandError::new(
            ErrorCode::NamespaceNotFound,
            "database not found",
        ));
    };
    let before = dbh.qe.describe_collection(&name).await?;
    let created_collection = before.is_none();
    let encrypted = before
        .as_ref()
        .is_some_and(|i| i.options.encrypted_fields.is_some());
    let count = |i: &Option<CollectionInfo>| {
        i32::try_from(i.as_ref().map_or(0, |i| i.indexes.len())).unwrap_or(i32::MAX) + 1
    };
    let n_before = count(&before);
    for s in specs {
        let Bson::Document(s) = s else {
            return Err(CommandError::type_mismatch("indexes", "array of objects"));
        };
        let Some(spec) = parse_index(s)? else {
            continue;
        };
        if spec.path == cipherdoc_engine::filter::SAFE_CONTENT && encrypted {
            // The engine keeps an encrypted collection's tag index itself;
            // the driver's `__safeContent__` index is that one.
            continue;
        }
        dbh.qe.create_index(&name, spec).await?;
    }
    if created_collection && dbh.qe.describe_collection(&name).await?.is_none() {
        dbh.qe
            .create_collection(&name, CreateCollectionOptions::default())
            .await?;
    }
    let after = dbh.qe.describe_collection(&name).await?;
    Ok(doc! {
        "createdCollectionAutomatically": created_collection,
        "numIndexesBefore": n_before,
        "numIndexesAfter": count(&after),
    })
}

fn state_write(name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::IllegalOperation,
        format!(
            "{name} is Queryable Encryption state kept by the server; it cannot be written or indexed by clients"
        ),
    )
}

/// The error for writes to an ESC/ECOC.
pub(crate) fn refuse_state_write(name: &str) -> CommandResult<()> {
    if state_collection(name).is_some() {
        return Err(state_write(name));
    }
    Ok(())
}

async fn collection_entries(dbh: &Arc<Database>) -> CommandResult<Vec<Document>> {
    let mut out = Vec::new();
    for name in dbh.qe.list_collections().await? {
        let Some(info) = dbh.qe.describe_collection(&name).await? else {
            continue;
        };
        let mut options = Document::new();
        if let Some(ef) = &info.options.encrypted_fields {
            options.insert("encryptedFields", ef.clone());
            for state in [
                format!("enxcol_.{name}.esc"),
                format!("enxcol_.{name}.ecoc"),
            ] {
                out.push(doc! {
                    "name": state,
                    "type": "collection",
                    "options": {"clusteredIndex": clustered_index()},
                    "info": {"readOnly": false},
                });
            }
        }
        out.push(doc! {
            "name": name,
            "type": "collection",
            "options": options,
            "info": {"readOnly": false},
            "idIndex": id_index(),
        });
    }
    out.sort_by(|a, b| {
        a.get_str("name")
            .unwrap_or("")
            .cmp(b.get_str("name").unwrap_or(""))
    });
    Ok(out)
}

pub(crate) async fn list_collections(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let filter = match cmd.get("filter") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(f)) => {
            Some(Filter::parse(f).map_err(|e| CommandError::bad_value(e.to_string()))?)
        }
        Some(_) => return Err(CommandError::type_mismatch("filter", "object")),
    };
    let name_only = cmd.get_bool("nameOnly").unwrap_or(false);
    let entries = match shared.databases.get(db, Open::ExistingOnly).await? {
        Some(dbh) => collection_entries(&dbh).await?,
        None => Vec::new(),
    };
    let docs: Vec<Document> = entries
        .into_iter()
        .filter(|e| filter.as_ref().is_none_or(|f| f.matches(e)))
        .map(|e| {
            if name_only {
                doc! {"name": e.get_str("name").unwrap_or(""), "type": "collection"}
            } else {
                e
            }
        })
        .collect();
    catalog_cursor(shared, format!("{db}.$cmd.listCollections"), docs, cmd).await
}

/// The cursor reply of a catalog listing (`cursor.batchSize` honoured).
async fn catalog_cursor(
    shared: &Shared,
    ns: String,
    docs: Vec<Document>,
    cmd: &Document,
) -> CommandResult {
    let batch = crate::cursor::batch_size(
        cmd.get_document("cursor").unwrap_or(&Document::new()),
        "batchSize",
    )?;
    shared
        .cursors
        .first_batch(ns, docs, batch, Batches::Cursor, None)
        .await
}

pub(crate) async fn list_indexes(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let name = crate::crud::collection_name(cmd, "listIndexes")?;
    let not_found = || {
        CommandError::new(
            ErrorCode::NamespaceNotFound,
            format!("ns does not exist: {db}.{name}"),
        )
    };
    let dbh = shared
        .databases
        .get(db, Open::ExistingOnly)
        .await?
        .ok_or_else(not_found)?;
    let docs = if let Some((base, _)) = state_collection(&name) {
        match dbh.qe.describe_collection(base).await? {
            Some(i) if i.options.encrypted_fields.is_some() => vec![clustered_index()],
            _ => return Err(not_found()),
        }
    } else {
        let info = dbh
            .qe
            .describe_collection(&name)
            .await?
            .ok_or_else(not_found)?;
        let mut docs = vec![id_index()];
        if info.options.encrypted_fields.is_some() {
            docs.push(doc! {"v": 2, "key": {"__safeContent__": 1}, "name": "__safeContent___1"});
        }
        docs.extend(info.indexes.iter().map(index_doc));
        docs
    };
    catalog_cursor(shared, format!("{db}.{name}"), docs, cmd).await
}

pub(crate) async fn drop(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let name = crate::crud::collection_name(cmd, "drop")?;
    let Some(dbh) = shared.databases.get(db, Open::ExistingOnly).await? else {
        return Ok(doc! {"ns": format!("{db}.{name}")});
    };
    if state_collection(&name).is_some() {
        // Dropped with their collection; the driver drops them first.
        return Ok(doc! {"ns": format!("{db}.{name}")});
    }
    let info = dbh.qe.describe_collection(&name).await?;
    shared.checked.forget(&format!("{db}.{name}"));
    dbh.qe.drop_collection(&name).await?;
    let n = info.map_or(0, |i| i.indexes.len() + 1);
    Ok(doc! {"nIndexesWas": i32::try_from(n).unwrap_or(i32::MAX), "ns": format!("{db}.{name}")})
}

pub(crate) async fn drop_database(shared: &Shared, db: &str) -> CommandResult {
    shared.checked.forget(&format!("{db}."));
    if let Some(dbh) = shared.databases.get(db, Open::ExistingOnly).await? {
        for name in dbh.qe.list_collections().await? {
            dbh.qe.drop_collection(&name).await?;
        }
    }
    Ok(doc! {"dropped": db})
}

/// `"<db>.<collection>"` of a `renameCollection` argument, split at its
/// first dot as mongod does.
fn split_namespace(field: &str, ns: &Bson) -> CommandResult<(String, String)> {
    let Bson::String(ns) = ns else {
        return Err(CommandError::type_mismatch(field, "string"));
    };
    let invalid = || {
        CommandError::new(
            ErrorCode::InvalidNamespace,
            format!(
                "Invalid {} namespace: {ns}",
                if field == "to" { "target" } else { "source" }
            ),
        )
    };
    let (db, coll) = ns.split_once('.').ok_or_else(invalid)?;
    if coll.is_empty() || coll.contains('\0') || coll.starts_with('$') {
        return Err(invalid());
    }
    crate::backend::validate_db_name(db).map_err(|_| invalid())?;
    Ok((db.to_owned(), coll.to_owned()))
}

/// `renameCollection` (an admin command): `{renameCollection: "<db>.<from>",
/// to: "<db>.<to>", dropTarget: <bool>}`, checked as mongod 8.0 checks it
/// and done by the engine's [`Engine::rename_collection`] in one
/// transaction: the documents, the indexes, the tag index, the ESC and the
/// ECOC change name together, and a dropped target goes in the same
/// transaction.
///
/// Where cipherdoc serve differs from mongod, on purpose:
/// - **The privilege.** mongod renames an encrypted collection (or onto an
///   encrypted target) only for a user holding the cluster action
///   `setUserWriteBlockMode` ("Cannot rename an encrypted collection",
///   "Cannot rename to an existing encrypted collection" otherwise).
///   cipherdoc serve has no users: every client is what a client of a mongod
///   without access control is, authorized for every action, so these
///   renames are allowed.
/// - **The state collections follow.** mongod keeps an encrypted
///   collection's ESC and ECOC under their names, which its
///   `encryptedFields` record (`escCollection`/`ecocCollection`), and leaves
///   a dropped target's behind. Here they are the engine's storage of the
///   collection, renamed with it: afterwards `listCollections` shows the
///   collection's `encryptedFields` naming `enxcol_.<to>.esc`/`.ecoc`, and
///   a dropped target's state is gone with it. A client that reads the names
///   from `listCollections` (as libmongocrypt and cipherdoc's MongoDB engine
///   do) works with both.
/// - **One database.** Each database is its own engine (a SQLite file, a
///   PostgreSQL schema), so a rename across databases is refused.
pub(crate) async fn rename(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    if db != "admin" {
        return Err(CommandError::new(
            ErrorCode::Unauthorized,
            "renameCollection may only be run against the admin database.",
        ));
    }
    let (from_db, from) = split_namespace(
        "renameCollection",
        cmd.get("renameCollection").unwrap_or(&Bson::Null),
    )?;
    let Some(to) = cmd.get("to") else {
        return Err(CommandError::new(
            ErrorCode::Location(40414),
            "BSON field 'renameCollection.to' is missing but a required field",
        ));
    };
    let (to_db, to) = split_namespace("to", to)?;
    let drop_target = match cmd.get("dropTarget") {
        None | Some(Bson::Null) => false,
        Some(Bson::Boolean(b)) => *b,
        Some(_) => {
            return Err(CommandError::type_mismatch("dropTarget", "bool"));
        }
    };
    for (k, _) in cmd {
        if matches!(k.as_str(), "renameCollection" | "to" | "dropTarget")
            || k.starts_with('$')
            || GENERIC.contains(&k.as_str())
        {
            continue;
        }
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            format!("renameCollection option '{k}' is not supported by cipherdoc serve"),
        ));
    }
    if from_db == to_db && from == to {
        return Err(CommandError::new(
            ErrorCode::IllegalOperation,
            "Can't rename a collection to itself",
        ));
    }
    if from_db != to_db {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!(
                "cipherdoc serve renames collections within one database only (each database is its own engine); copy {from_db}.{from} into {to_db}.{to} instead"
            ),
        ));
    }
    for name in [&from, &to] {
        if state_collection(name).is_some() {
            return Err(CommandError::new(
                ErrorCode::IllegalOperation,
                format!(
                    "{from_db}.{name} is Queryable Encryption state kept by the server with its collection; rename the encrypted collection instead"
                ),
            ));
        }
    }
    let source_missing = || {
        CommandError::new(
            ErrorCode::NamespaceNotFound,
            format!("Source collection {from_db}.{from} does not exist"),
        )
    };
    let dbh = shared
        .databases
        .get(&from_db, Open::ExistingOnly)
        .await?
        .ok_or_else(source_missing)?;
    let target = if drop_target {
        cipherdoc_engine::RenameTarget::DropExisting
    } else {
        cipherdoc_engine::RenameTarget::MustNotExist
    };
    shared.checked.forget(&format!("{from_db}.{from}"));
    shared.checked.forget(&format!("{from_db}.{to}"));
    match dbh.qe.rename_collection(&from, &to, target).await {
        Ok(()) => Ok(doc! {}),
        Err(cipherdoc_engine::EngineError::CollectionNotFound(_)) => Err(source_missing()),
        Err(cipherdoc_engine::EngineError::CollectionExists(_)) => Err(CommandError::new(
            ErrorCode::NamespaceExists,
            "target namespace exists",
        )),
        Err(e) => Err(e.into()),
    }
}
