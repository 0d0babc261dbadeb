//! Data commands: `insert`, `find`/`getMore`, `update`, `delete`,
//! `findAndModify`, `count`, `distinct`, `aggregate`, the QE maintenance
//! commands, and the routing of every database command.
//!
//! Each runs either autocommit or inside the session's engine transaction
//! ([`Exec`]). Inserts, finds, counts and deletes map to one engine call;
//! updates and `findAndModify` read, change and replace documents inside
//! one engine transaction (retried on write conflicts when autocommit).

use std::sync::Arc;

use bson::{Bson, Document, doc};
use cipherdoc_engine::{CollectionInfo, Engine, EngineError, Filter, FindOptions, Transaction};

use crate::backend::{Database, Open};
use crate::catalog::{self, StateKind, refuse_state_write, state_collection};
use crate::cursor::Batches;
use crate::error::{CommandError, CommandResult, ErrorCode};
use crate::pipeline;
use crate::qe;
use crate::server::Shared;
use crate::session::Exec;
use crate::update::{Apply, Update, upsert_seed};

/// How often an autocommit read-modify-write is tried when concurrent
/// encrypted writers keep taking its ESC positions.
const WRITE_ATTEMPTS: u32 = 10;

/// The collection named by `field` (a non-empty string).
pub(crate) fn collection_name(cmd: &Document, field: &str) -> CommandResult<String> {
    match cmd.get(field) {
        Some(Bson::String(s)) if !s.is_empty() => {
            if s.contains('\0') || s.starts_with('$') {
                return Err(CommandError::new(
                    ErrorCode::InvalidNamespace,
                    format!("Invalid collection name: {s}"),
                ));
            }
            Ok(s.clone())
        }
        Some(Bson::String(_)) => Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            "collection names cannot be empty",
        )),
        _ => Err(CommandError::type_mismatch(field, "string")),
    }
}

fn document_field(cmd: &Document, field: &str) -> CommandResult<Document> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(Document::new()),
        Some(Bson::Document(d)) => Ok(d.clone()),
        Some(_) => Err(CommandError::type_mismatch(field, "object")),
    }
}

fn parse_filter(d: &Document) -> CommandResult<Filter> {
    Filter::parse(d).map_err(|e| CommandError::bad_value(e.to_string()))
}

fn number(cmd: &Document, field: &str) -> CommandResult<Option<i64>> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => crate::cursor::integer(v)
            .map(Some)
            .ok_or_else(|| CommandError::type_mismatch(field, "long")),
    }
}

fn non_negative(cmd: &Document, field: &str) -> CommandResult<Option<u64>> {
    number(cmd, field)?
        .map(|n| {
            u64::try_from(n).map_err(|_| {
                CommandError::bad_value(format!(
                    "BSON field '{field}' value must be >= 0, actual value '{n}'"
                ))
            })
        })
        .transpose()
}

/// Route a database command.
pub(crate) async fn data_command(
    shared: &Shared,
    name: &str,
    db: &str,
    cmd: Document,
    exec: &mut Exec<'_>,
) -> CommandResult {
    match name {
        "insert" => insert(shared, db, cmd, exec).await,
        "find" => find(shared, db, &cmd, exec).await,
        "getMore" => get_more(shared, db, &cmd).await,
        "killCursors" => kill_cursors(shared, &cmd).await,
        "update" => update(shared, db, &cmd, exec).await,
        "delete" => delete(shared, db, &cmd, exec).await,
        "findAndModify" | "findandmodify" => find_and_modify(shared, db, &cmd, name, exec).await,
        "count" => count(shared, db, &cmd, exec).await,
        "distinct" => distinct(shared, db, &cmd, exec).await,
        "aggregate" => aggregate(shared, db, &cmd, exec).await,
        "create" => catalog::create(shared, db, &cmd).await,
        "createIndexes" => catalog::create_indexes(shared, db, &cmd).await,
        "listCollections" => catalog::list_collections(shared, db, &cmd).await,
        "listIndexes" => catalog::list_indexes(shared, db, &cmd).await,
        "drop" => catalog::drop(shared, db, &cmd).await,
        "renameCollection" => catalog::rename(shared, db, &cmd).await,
        "dropDatabase" => catalog::drop_database(shared, db).await,
        "compactStructuredEncryptionData" => maintain(shared, db, &cmd, Maintenance::Compact).await,
        "cleanupStructuredEncryptionData" => maintain(shared, db, &cmd, Maintenance::Cleanup).await,
        other => Err(CommandError::new(
            ErrorCode::CommandNotFound,
            format!("no such command: '{other}'"),
        )),
    }
}

/// The collection's catalog entry, inside the transaction if there is one.
async fn describe(
    dbh: &Arc<Database>,
    exec: &mut Exec<'_>,
    coll: &str,
) -> CommandResult<Option<CollectionInfo>> {
    Ok(match exec.tx(dbh).await? {
        Some(tx) => tx.describe_collection(coll).await?,
        None => dbh.qe.describe_collection(coll).await?,
    })
}

/// What a data command knows about its collection before it runs.
struct Target {
    dbh: Arc<Database>,
    coll: String,
    /// The command carries matching `encryptionInformation`.
    qe: bool,
}

impl Target {
    /// Whether the collection is encrypted (read from the catalog, in the
    /// transaction if there is one; only asked when it matters).
    async fn encrypted(&self, exec: &mut Exec<'_>) -> CommandResult<bool> {
        Ok(describe(&self.dbh, exec, &self.coll)
            .await?
            .is_some_and(|i| i.options.encrypted_fields.is_some()))
    }
}

async fn target(
    shared: &Shared,
    db: &str,
    cmd: &Document,
    field: &str,
    exec: &mut Exec<'_>,
    open: Open,
) -> CommandResult<Option<Target>> {
    let coll = collection_name(cmd, field)?;
    let ns = format!("{db}.{coll}");
    let given = qe::encryption_information(cmd, &ns)?;
    let Some(dbh) = shared.databases.get(db, open).await? else {
        if given.is_some() {
            return Err(CommandError::new(
                ErrorCode::NamespaceNotFound,
                format!("encryptionInformation names {ns}, which does not exist"),
            ));
        }
        return Ok(None);
    };
    let qe = match given {
        None => false,
        Some(g) if shared.checked.recent(&ns, &g) => true,
        Some(g) => {
            let info = describe(&dbh, exec, &coll).await?;
            let qe = qe::check_schema(&ns, Some(&g), info.as_ref())?;
            shared.checked.remember(&ns, g);
            qe
        }
    };
    Ok(Some(Target { dbh, coll, qe }))
}

/// A failed write statement: a per-document error goes into `writeErrors`
/// (and stops an ordered batch: returns `true`); any other fails the
/// command.
fn statement_failed(
    errors: &mut Vec<Document>,
    index: usize,
    e: CommandError,
    ordered: bool,
) -> CommandResult<bool> {
    if !e.is_write_error() {
        return Err(e);
    }
    errors.push(e.to_write_error(index));
    Ok(ordered)
}

fn write_error_reply(n: usize, errors: Vec<Document>) -> Document {
    let mut d = doc! {"n": i32::try_from(n).unwrap_or(i32::MAX)};
    if !errors.is_empty() {
        d.insert("writeErrors", errors);
    }
    d
}

async fn insert(
    shared: &Shared,
    db: &str,
    mut cmd: Document,
    exec: &mut Exec<'_>,
) -> CommandResult {
    let Some(Bson::Array(docs)) = cmd.remove("documents") else {
        return Err(CommandError::type_mismatch("documents", "array"));
    };
    let ordered = cmd.get_bool("ordered").unwrap_or(true);
    let coll = collection_name(&cmd, "insert")?;
    refuse_state_write(&coll)?;
    let t = target(shared, db, &cmd, "insert", exec, Open::CreateIfMissing)
        .await?
        .ok_or_else(|| {
            CommandError::new(ErrorCode::InternalError, "database could not be opened")
        })?;
    // Whether the collection is encrypted matters only for a document that
    // carries __safeContent__.
    let encrypted = if docs
        .iter()
        .any(|d| matches!(d, Bson::Document(d) if d.contains_key(cipherdoc_engine::filter::SAFE_CONTENT)))
    {
        t.encrypted(exec).await?
    } else {
        false
    };
    let mut checked = Vec::with_capacity(docs.len());
    let mut errors = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let Bson::Document(d) = d else {
            return Err(CommandError::type_mismatch("documents", "array of objects"));
        };
        let verdict = if t.qe {
            if encrypted && d.contains_key(cipherdoc_engine::filter::SAFE_CONTENT) {
                Err(qe::safe_content_insert())
            } else {
                Ok(())
            }
        } else {
            qe::check_plain_document(
                &d,
                if encrypted {
                    qe::Collection::Encrypted
                } else {
                    qe::Collection::Plain
                },
            )
        };
        match verdict {
            Ok(()) => checked.push((i, d)),
            Err(e) => {
                errors.push(e.to_write_error(i));
                if ordered {
                    break;
                }
            }
        }
    }
    // With an ordered batch, documents after a refused one are not written.
    if ordered && let Some(first_bad) = errors.first().and_then(|e| e.get_i32("index").ok()) {
        checked.retain(|(i, _)| i32::try_from(*i).unwrap_or(i32::MAX) < first_bad);
    }
    let mut n = 0usize;
    if let Some(tx) = exec.tx(&t.dbh).await? {
        {
            for (i, d) in checked {
                match tx.insert_one(&t.coll, d).await {
                    Ok(_) => n += 1,
                    Err(e) => {
                        let e = CommandError::from(e);
                        if !e.is_write_error() {
                            return Err(e);
                        }
                        errors.push(e.to_write_error(i));
                        break;
                    }
                }
            }
        }
    } else {
        {
            let all: Vec<Document> = checked.iter().map(|(_, d)| d.clone()).collect();
            let count = all.len();
            match t.dbh.qe.insert_many(&t.coll, all).await {
                Ok(_) => n = count,
                // Fast path failed as a whole (all or none): find out which
                // documents are at fault, one at a time, as mongod reports.
                Err(e) => {
                    let e = CommandError::from(e);
                    if !e.is_write_error() {
                        return Err(e);
                    }
                    for (i, d) in checked {
                        match t.dbh.qe.insert_one(&t.coll, d).await {
                            Ok(_) => n += 1,
                            Err(e) => {
                                let e = CommandError::from(e);
                                if !e.is_write_error() {
                                    return Err(e);
                                }
                                errors.push(e.to_write_error(i));
                                if ordered {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    errors.sort_by_key(|e| e.get_i32("index").unwrap_or(0));
    Ok(write_error_reply(n, errors))
}

/// Run a find of the engine (in the transaction or autocommit).
async fn engine_find(
    t: &Target,
    exec: &mut Exec<'_>,
    filter: &Filter,
    options: &FindOptions,
) -> CommandResult<Vec<Document>> {
    Ok(match exec.tx(&t.dbh).await? {
        Some(tx) => tx.find(&t.coll, filter, options).await?,
        None => t.dbh.qe.find(&t.coll, filter, options).await?,
    })
}

fn check_filter(t: &Target, filter: &Document) -> CommandResult<Filter> {
    if !t.qe {
        qe::check_plain_filter(filter)?;
    }
    parse_filter(filter)
}

fn lsid(cmd: &Document) -> Option<Bson> {
    match cmd.get("lsid") {
        Some(Bson::Document(l)) => l.get("id").cloned(),
        _ => None,
    }
}

fn state_read_refused(name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::CommandNotSupported,
        format!(
            "{name} is Queryable Encryption state kept by the engine; only count is served on it"
        ),
    )
}

async fn find(shared: &Shared, db: &str, cmd: &Document, exec: &mut Exec<'_>) -> CommandResult {
    let coll = collection_name(cmd, "find")?;
    if state_collection(&coll).is_some() {
        return Err(state_read_refused(&coll));
    }
    let filter_doc = document_field(cmd, "filter")?;
    let mut options = FindOptions {
        sort: pipeline::parse_sort(&document_field(cmd, "sort")?)?,
        skip: non_negative(cmd, "skip")?.unwrap_or(0),
        limit: non_negative(cmd, "limit")?.filter(|l| *l > 0),
        projection: match cmd.get("projection") {
            None | Some(Bson::Null) => None,
            Some(Bson::Document(p)) if p.is_empty() => None,
            Some(Bson::Document(p)) => Some(p.clone()),
            Some(_) => return Err(CommandError::type_mismatch("projection", "object")),
        },
    };
    if cmd.get_bool("tailable").unwrap_or(false) {
        return Err(CommandError::bad_value(
            "tailable cursors are not supported by cipherdoc serve",
        ));
    }
    let batch = crate::cursor::batch_size(cmd, "batchSize")?;
    let batches = if cmd.get_bool("singleBatch").unwrap_or(false) {
        Batches::Single
    } else {
        Batches::Cursor
    };
    if batches == Batches::Single && options.limit.is_none() {
        options.limit = batch.map(|b| b as u64);
    }
    let ns = format!("{db}.{coll}");
    let docs = if let Some(t) = target(shared, db, cmd, "find", exec, Open::ExistingOnly).await? {
        let filter = check_filter(&t, &filter_doc)?;
        // As stored: the cursor decodes only what it sends.
        match exec.tx(&t.dbh).await? {
            Some(tx) => tx.find_raw(&t.coll, &filter, &options).await?,
            None => t.dbh.qe.find_raw(&t.coll, &filter, &options).await?,
        }
    } else {
        parse_filter(&filter_doc)?;
        Vec::new()
    };
    shared
        .cursors
        .first_batch(ns, docs, batch, batches, lsid(cmd))
        .await
}

async fn get_more(shared: &Shared, db: &str, cmd: &Document) -> CommandResult {
    let id = match cmd.get("getMore") {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        _ => return Err(CommandError::type_mismatch("getMore", "long")),
    };
    let coll = collection_name(cmd, "collection")?;
    let batch = crate::cursor::batch_size(cmd, "batchSize")?;
    shared
        .cursors
        .get_more(id, &format!("{db}.{coll}"), batch, lsid(cmd).as_ref())
        .await
}

async fn kill_cursors(shared: &Shared, cmd: &Document) -> CommandResult {
    let ids: Vec<i64> = match cmd.get("cursors") {
        Some(Bson::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Bson::Int64(n) => Some(*n),
                Bson::Int32(n) => Some(i64::from(*n)),
                _ => None,
            })
            .collect(),
        _ => return Err(CommandError::type_mismatch("cursors", "array")),
    };
    let (killed, missing) = shared.cursors.kill(&ids).await;
    Ok(doc! {
        "cursorsKilled": killed,
        "cursorsNotFound": missing,
        "cursorsAlive": [],
        "cursorsUnknown": [],
    })
}

async fn count(shared: &Shared, db: &str, cmd: &Document, exec: &mut Exec<'_>) -> CommandResult {
    let coll = collection_name(cmd, "count")?;
    let query = document_field(cmd, "query")?;
    let skip = non_negative(cmd, "skip")?.unwrap_or(0);
    let limit = number(cmd, "limit")?
        .map(i64::unsigned_abs)
        .filter(|l| *l > 0);
    if let Some((base, kind)) = state_collection(&coll) {
        if !query.is_empty() {
            return Err(state_read_refused(&coll));
        }
        let Some(dbh) = shared.databases.get(db, Open::ExistingOnly).await? else {
            return Ok(doc! {"n": 0});
        };
        let sizes = cipherdoc_engine::Engine::qe_state_sizes(&dbh.qe, base).await;
        let n = match sizes {
            Ok(s) => match kind {
                StateKind::Esc => s.esc,
                StateKind::Ecoc => s.ecoc,
            },
            Err(EngineError::NotEncrypted(_) | EngineError::CollectionNotFound(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        return Ok(doc! {"n": i64::try_from(n).unwrap_or(i64::MAX)});
    }
    let Some(t) = target(shared, db, cmd, "count", exec, Open::ExistingOnly).await? else {
        return Ok(doc! {"n": 0});
    };
    let filter = check_filter(&t, &query)?;
    let n = if skip == 0 && limit.is_none() {
        match exec.tx(&t.dbh).await? {
            Some(tx) => tx.count(&t.coll, &filter).await?,
            None => t.dbh.qe.count(&t.coll, &filter).await?,
        }
    } else {
        let options = FindOptions {
            skip,
            limit,
            projection: Some(doc! {"_id": 1}),
            ..FindOptions::default()
        };
        engine_find(&t, exec, &filter, &options).await?.len() as u64
    };
    Ok(doc! {"n": i64::try_from(n).unwrap_or(i64::MAX)})
}

async fn distinct(shared: &Shared, db: &str, cmd: &Document, exec: &mut Exec<'_>) -> CommandResult {
    let coll = collection_name(cmd, "distinct")?;
    if state_collection(&coll).is_some() {
        return Err(state_read_refused(&coll));
    }
    let key = match cmd.get("key") {
        Some(Bson::String(k)) if !k.is_empty() => k.clone(),
        _ => return Err(CommandError::type_mismatch("key", "string")),
    };
    let query = document_field(cmd, "query")?;
    let Some(t) = target(shared, db, cmd, "distinct", exec, Open::ExistingOnly).await? else {
        return Ok(doc! {"values": []});
    };
    let filter = check_filter(&t, &query)?;
    let docs = engine_find(&t, exec, &filter, &FindOptions::default()).await?;
    let mut values: Vec<Bson> = Vec::new();
    for d in &docs {
        for v in cipherdoc_engine::filter::path_values(d, &key) {
            let items: Vec<&Bson> = match v {
                Bson::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for it in items {
                if !values
                    .iter()
                    .any(|x| cipherdoc_engine::value::equals(x, it))
                {
                    values.push(it.clone());
                }
            }
        }
    }
    values.sort_by(cipherdoc_engine::value::compare);
    Ok(doc! {"values": values})
}

async fn aggregate(
    shared: &Shared,
    db: &str,
    cmd: &Document,
    exec: &mut Exec<'_>,
) -> CommandResult {
    if !matches!(cmd.get("aggregate"), Some(Bson::String(_))) {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            "collection-less aggregation ({aggregate: 1}) is not supported by cipherdoc serve",
        ));
    }
    let coll = collection_name(cmd, "aggregate")?;
    if state_collection(&coll).is_some() {
        return Err(state_read_refused(&coll));
    }
    if cmd.get_bool("explain").unwrap_or(false) {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "explain is not supported by cipherdoc serve",
        ));
    }
    let Some(Bson::Array(stages)) = cmd.get("pipeline") else {
        return Err(CommandError::type_mismatch("pipeline", "array"));
    };
    let cursor = match cmd.get("cursor") {
        Some(Bson::Document(c)) => c.clone(),
        _ => {
            return Err(CommandError::new(
                ErrorCode::FailedToParse,
                "The 'cursor' option is required, except for aggregate with the explain argument",
            ));
        }
    };
    let plan = pipeline::plan(stages)?;
    for later in plan.later_match_filters() {
        if later.values().any(qe::holds_client_payload) {
            return Err(CommandError::bad_value(
                "a Queryable Encryption find payload can only be used in the pipeline's first $match",
            ));
        }
    }
    let batch = crate::cursor::batch_size(&cursor, "batchSize")?;
    let docs = match target(shared, db, cmd, "aggregate", exec, Open::ExistingOnly).await? {
        Some(t) => {
            let filter = check_filter(&t, &plan.filter)?;
            engine_find(&t, exec, &filter, &plan.options).await?
        }
        None => Vec::new(),
    };
    let docs = plan.run(docs)?;
    shared
        .cursors
        .first_batch(
            format!("{db}.{coll}"),
            docs,
            batch,
            Batches::Cursor,
            lsid(cmd),
        )
        .await
}

/// Run `work` in one write transaction: the session's, or (autocommit) a
/// new one committed at the end and retried on write conflicts.
macro_rules! in_write_tx {
    ($exec:expr, $dbh:expr, |$tx:ident| $body:expr) => {{
        match $exec.tx($dbh).await? {
            Some($tx) => $body,
            None => {
                let mut attempt = 0u32;
                loop {
                    attempt += 1;
                    let mut owned = cipherdoc_engine::Engine::begin(&$dbh.qe).await?;
                    let $tx: &mut dyn Transaction = &mut *owned;
                    let r = $body;
                    let r = match r {
                        Ok(v) => owned.commit().await.map(|()| v).map_err(CommandError::from),
                        Err(e) => {
                            let _ = owned.rollback().await;
                            Err(e)
                        }
                    };
                    match r {
                        Err(e)
                            if e.code == ErrorCode::WriteConflict && attempt < WRITE_ATTEMPTS =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(
                                1 << attempt.min(5),
                            ))
                            .await;
                        }
                        other => break other,
                    }
                }
            }
        }
    }};
}

/// One update statement's outcome.
#[derive(Debug, Default)]
struct Updated {
    matched: u64,
    modified: u64,
    upserted: Option<Bson>,
    /// `findAndModify`: the document before, and after.
    before: Option<Document>,
    after: Option<Document>,
}

/// One update statement, parsed.
struct Stmt<'a> {
    query: &'a Document,
    filter: &'a Filter,
    update: &'a Update,
    /// Every matching document (`multi: true`), or the first.
    multi: bool,
    upsert: bool,
    sort: &'a [(String, cipherdoc_engine::SortDirection)],
}

/// One update statement inside `tx`.
async fn update_in(
    tx: &mut dyn Transaction,
    coll: &str,
    stmt: &Stmt<'_>,
) -> CommandResult<Updated> {
    let (filter, query, u, upsert) = (stmt.filter, stmt.query, stmt.update, stmt.upsert);
    let options = FindOptions {
        sort: stmt.sort.to_vec(),
        limit: (!stmt.multi).then_some(1),
        ..FindOptions::default()
    };
    let found = tx.find(coll, filter, &options).await?;
    let mut out = Updated::default();
    for mut old in found {
        out.matched += 1;
        // The server keeps __safeContent__; a replacement never carries it.
        old.remove(cipherdoc_engine::filter::SAFE_CONTENT);
        let new = u.apply(&old, Apply::Existing)?;
        let id = old.get("_id").cloned().unwrap_or(Bson::Null);
        if new != old {
            tx.replace_one(coll, &id, new).await?;
            out.modified += 1;
        }
        if out.before.is_none() {
            out.after = tx
                .find(coll, &Filter::eq("_id", id), &FindOptions::default())
                .await?
                .into_iter()
                .next();
            out.before = Some(old);
        }
    }
    if out.matched == 0 && upsert {
        let seed = upsert_seed(query)?;
        let mut new = u.apply(&seed, Apply::Upsert)?;
        if !new.contains_key("_id") {
            let mut with_id = doc! {"_id": bson::oid::ObjectId::new()};
            with_id.extend(new);
            new = with_id;
        }
        let id = tx.insert_one(coll, new).await?;
        out.after = tx
            .find(
                coll,
                &Filter::eq("_id", id.clone()),
                &FindOptions::default(),
            )
            .await?
            .into_iter()
            .next();
        out.upserted = Some(id);
    }
    Ok(out)
}

/// A write command's statements and `ordered` flag, after refusing writes
/// to an ESC/ECOC.
fn statements(cmd: &Document, name: &str, field: &str) -> CommandResult<(Vec<Bson>, bool)> {
    refuse_state_write(&collection_name(cmd, name)?)?;
    let Some(Bson::Array(stmts)) = cmd.get(field) else {
        return Err(CommandError::type_mismatch(field, "array"));
    };
    Ok((stmts.clone(), cmd.get_bool("ordered").unwrap_or(true)))
}

async fn update(shared: &Shared, db: &str, cmd: &Document, exec: &mut Exec<'_>) -> CommandResult {
    let (stmts, ordered) = statements(cmd, "update", "updates")?;
    let t = target(shared, db, cmd, "update", exec, Open::CreateIfMissing)
        .await?
        .ok_or_else(|| {
            CommandError::new(ErrorCode::InternalError, "database could not be opened")
        })?;
    if t.qe && stmts.len() > 1 {
        return Err(CommandError::new(
            ErrorCode::Location(6_371_502),
            "Only single document updates are permitted",
        ));
    }
    let (mut matched, mut modified) = (0u64, 0u64);
    let mut upserted = Vec::new();
    let mut errors = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        let r = async {
            let Bson::Document(stmt_doc) = s else {
                return Err(CommandError::type_mismatch("updates", "array of objects"));
            };
            let q = document_field(stmt_doc, "q")?;
            let u = Update::parse(stmt_doc.get("u").unwrap_or(&Bson::Null)).map_err(|e| {
                if t.qe && e.code == ErrorCode::CommandNotSupported {
                    CommandError::new(
                        ErrorCode::Location(6_371_517),
                        "FLE only supports modifier and replacement style updates",
                    )
                } else {
                    e
                }
            })?;
            let multi = stmt_doc.get_bool("multi").unwrap_or(false);
            let upsert = stmt_doc.get_bool("upsert").unwrap_or(false);
            if t.qe && multi {
                return Err(CommandError::new(
                    ErrorCode::Location(6_371_503),
                    "FLE only supports single document updates",
                ));
            }
            if !t.qe {
                let (Update::Modifiers(m) | Update::Replacement(m)) = &u;
                qe::check_plain_document(m, qe::Collection::Plain)?;
            }
            let filter = check_filter(&t, &q)?;
            let stmt = Stmt {
                query: &q,
                filter: &filter,
                update: &u,
                multi,
                upsert,
                sort: &[],
            };
            in_write_tx!(exec, &t.dbh, |tx| update_in(tx, &t.coll, &stmt).await)
        }
        .await;
        match r {
            Ok(o) => {
                matched += o.matched;
                modified += o.modified;
                if let Some(id) = o.upserted {
                    matched += 1;
                    upserted.push(doc! {"index": i32::try_from(i).unwrap_or(i32::MAX), "_id": id});
                }
            }
            Err(e) => {
                if statement_failed(&mut errors, i, e, ordered)? {
                    break;
                }
            }
        }
    }
    let mut reply = doc! {
        "n": i64::try_from(matched).unwrap_or(i64::MAX),
        "nModified": i64::try_from(modified).unwrap_or(i64::MAX),
    };
    if !upserted.is_empty() {
        reply.insert("upserted", upserted);
    }
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok(reply)
}

async fn delete(shared: &Shared, db: &str, cmd: &Document, exec: &mut Exec<'_>) -> CommandResult {
    let (stmts, ordered) = statements(cmd, "delete", "deletes")?;
    let Some(t) = target(shared, db, cmd, "delete", exec, Open::ExistingOnly).await? else {
        return Ok(doc! {"n": 0});
    };
    if t.qe && stmts.len() > 1 {
        return Err(CommandError::new(
            ErrorCode::Location(6_371_302),
            "Only single document deletes are permitted",
        ));
    }
    let mut n = 0u64;
    let mut errors = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        let r = async {
            let Bson::Document(s) = s else {
                return Err(CommandError::type_mismatch("deletes", "array of objects"));
            };
            let q = document_field(s, "q")?;
            let one = match number(s, "limit")? {
                Some(1) => true,
                Some(0) => false,
                _ => {
                    return Err(CommandError::bad_value(
                        "The limit field in delete objects must be 0 or 1",
                    ));
                }
            };
            if t.qe && !one {
                return Err(CommandError::new(
                    ErrorCode::Location(6_371_303),
                    "FLE only supports single document deletes",
                ));
            }
            let filter = check_filter(&t, &q)?;
            Ok(match exec.tx(&t.dbh).await? {
                Some(tx) if one => tx.delete_one(&t.coll, &filter).await?,
                Some(tx) => tx.delete_many(&t.coll, &filter).await?,
                None if one => t.dbh.qe.delete_one(&t.coll, &filter).await?,
                None => t.dbh.qe.delete_many(&t.coll, &filter).await?,
            })
        }
        .await;
        match r {
            Ok(k) => n += k,
            Err(e) => {
                if statement_failed(&mut errors, i, e, ordered)? {
                    break;
                }
            }
        }
    }
    Ok(write_error_reply(
        usize::try_from(n).unwrap_or(usize::MAX),
        errors,
    ))
}

async fn find_and_modify(
    shared: &Shared,
    db: &str,
    cmd: &Document,
    name: &str,
    exec: &mut Exec<'_>,
) -> CommandResult {
    let coll = collection_name(cmd, name)?;
    refuse_state_write(&coll)?;
    let query = document_field(cmd, "query")?;
    let sort = pipeline::parse_sort(&document_field(cmd, "sort")?)?;
    let remove = cmd.get_bool("remove").unwrap_or(false);
    let want_new = cmd.get_bool("new").unwrap_or(false);
    let upsert = cmd.get_bool("upsert").unwrap_or(false);
    let fields = match cmd.get("fields") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(f)) if f.is_empty() => None,
        Some(Bson::Document(f)) => Some(f.clone()),
        Some(_) => return Err(CommandError::type_mismatch("fields", "object")),
    };
    let u = match (remove, cmd.get("update")) {
        (true, Some(_)) => {
            return Err(CommandError::new(
                ErrorCode::FailedToParse,
                "Cannot specify both an update and remove=true",
            ));
        }
        (true, None) => None,
        (false, Some(u)) => Some(Update::parse(u)?),
        (false, None) => {
            return Err(CommandError::new(
                ErrorCode::FailedToParse,
                "Either an update or remove=true must be specified",
            ));
        }
    };
    if remove && (upsert || want_new) {
        return Err(CommandError::new(
            ErrorCode::FailedToParse,
            "Cannot specify both upsert=true and remove=true, or new=true and remove=true",
        ));
    }
    let t = target(shared, db, cmd, name, exec, Open::CreateIfMissing)
        .await?
        .ok_or_else(|| {
            CommandError::new(ErrorCode::InternalError, "database could not be opened")
        })?;
    if !t.qe
        && let Some(Update::Modifiers(m) | Update::Replacement(m)) = &u
    {
        qe::check_plain_document(m, qe::Collection::Plain)?;
    }
    let filter = check_filter(&t, &query)?;
    let (value, last_error) = match &u {
        None => {
            let found = in_write_tx!(exec, &t.dbh, |tx| async {
                let opts = FindOptions {
                    sort: sort.clone(),
                    limit: Some(1),
                    ..FindOptions::default()
                };
                let doc = tx.find(&t.coll, &filter, &opts).await?.into_iter().next();
                if let Some(d) = &doc {
                    let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                    tx.delete_one(&t.coll, &Filter::eq("_id", id)).await?;
                }
                Ok::<_, CommandError>(doc)
            }
            .await);
            let found = found?;
            let n = i32::from(found.is_some());
            (found, doc! {"n": n})
        }
        Some(u) => {
            let stmt = Stmt {
                query: &query,
                filter: &filter,
                update: u,
                multi: false,
                upsert,
                sort: &sort,
            };
            let o = in_write_tx!(exec, &t.dbh, |tx| update_in(tx, &t.coll, &stmt).await)?;
            let mut le = doc! {"n": i32::from(o.matched > 0 || o.upserted.is_some()), "updatedExisting": o.matched > 0};
            if let Some(id) = &o.upserted {
                le.insert("upserted", id.clone());
            }
            (if want_new { o.after } else { o.before }, le)
        }
    };
    let value = match (value, &fields) {
        (Some(v), Some(f)) => Bson::Document(cipherdoc_engine::project(v, f)?),
        (Some(v), None) => Bson::Document(v),
        (None, _) => Bson::Null,
    };
    Ok(doc! {"lastErrorObject": last_error, "value": value})
}

/// `compactStructuredEncryptionData` or `cleanupStructuredEncryptionData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Maintenance {
    Compact,
    Cleanup,
}

async fn maintain(shared: &Shared, db: &str, cmd: &Document, what: Maintenance) -> CommandResult {
    let (field, tokens_field) = match what {
        Maintenance::Compact => ("compactStructuredEncryptionData", "compactionTokens"),
        Maintenance::Cleanup => ("cleanupStructuredEncryptionData", "cleanupTokens"),
    };
    let coll = collection_name(cmd, field)?;
    let not_found = || {
        CommandError::new(
            ErrorCode::NamespaceNotFound,
            format!("{db}.{coll} does not exist"),
        )
    };
    let dbh = shared
        .databases
        .get(db, Open::ExistingOnly)
        .await?
        .ok_or_else(not_found)?;
    let info = dbh
        .qe
        .describe_collection(&coll)
        .await?
        .ok_or_else(not_found)?;
    if info.options.encrypted_fields.is_none() {
        return Err(CommandError::new(
            ErrorCode::Location(6_346_807),
            format!("Target namespace {db}.{coll} is not an encrypted collection"),
        ));
    }
    let tokens = qe::tokens(cmd, tokens_field, &info)?;
    let stats = match what {
        Maintenance::Compact => dbh.qe.compact(&coll, &tokens).await?,
        Maintenance::Cleanup => dbh.qe.cleanup(&coll, &tokens).await?,
    };
    Ok(qe::stats_reply(&stats))
}
