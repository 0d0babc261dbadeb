//! Synchronous storage operations on one SQLite connection inside an open
//! transaction. The async layer in `mod.rs` decides which connection and
//! which transaction; everything here is plain SQL plus the in-memory
//! evaluator.
//!
//! Layout (one database file):
//! - `"$catalog"(name, encrypted_fields)` and `"$indexes"(collection, name,
//!   path, is_unique, sparse)`;
//! - per collection `C`: table `"C"(rid INTEGER PRIMARY KEY, id BLOB UNIQUE,
//!   doc BLOB)` holding the BSON bytes, `id` being the order-preserving key
//!   encoding of `_id` (so `_id` 1 and 1.0 collide, as in MongoDB);
//! - per secondary index: `"C.$idx.<name>"(key BLOB, rid)` WITHOUT ROWID, primary
//!   key `(key)` when unique, `(key, rid)` otherwise; keys are
//!   [`crate::value::encode_key`] of every value the path reaches and, for
//!   arrays, of every element (multikey), plus `null` for a missing path
//!   unless sparse;
//! - per encrypted collection: `"C.$tags"(tag, rid)` WITHOUT ROWID, primary key
//!   `(tag, rid)`, maintained from `__safeContent__`; `"enxcol_.C.esc"(id
//!   PRIMARY KEY, value)`; `"enxcol_.C.ecoc"(rid, field, value)`.
//!
//! `$` cannot appear in collection names, so the helper tables never collide
//! with a collection.

use std::fmt::Write as _;
use std::rc::Rc;

use bson::{Bson, Document, RawDocumentBuf, oid::ObjectId};
use rusqlite::ToSql;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::documents::{
    FindShape, NewIndex, check_new_index, decode, doc_tags, ecoc_compact_name, encode, encode_raw,
    index_keys, normalize_encrypted_fields, window, with_id_first,
};
pub(crate) use crate::documents::{ecoc_name, esc_name};
use crate::engine::{
    CollectionInfo, CreateCollectionOptions, DeleteScope, FindOptions, IndexSpec, RenameTarget,
    bytes_as_stored,
};
use crate::filter::Filter;
use crate::plan::{self, Access, Dialect, Shape, SqlType};
use crate::qe_state::{EcocEntry, EcocGeneration, EscEntry, EscId, EscValue};
use crate::raw::{self, Found, Want};
use crate::value::encode_key;
use crate::{EngineError, Result};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS "$catalog"(
    name TEXT PRIMARY KEY NOT NULL,
    encrypted_fields BLOB
);
CREATE TABLE IF NOT EXISTS "$indexes"(
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    is_unique INTEGER NOT NULL,
    sparse INTEGER NOT NULL,
    multikey INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(collection, name)
);
"#;

/// Quote an SQL identifier.
pub(crate) fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn idx_table(c: &str, index: &str) -> String {
    q(&format!("{c}.$idx.{index}"))
}
fn tags_table(c: &str) -> String {
    q(&format!("{c}.$tags"))
}
/// The partial index of the ESC's anchors (documents with a `value`): it
/// answers "are there any?" at once, so that queries and inserts on a
/// collection never compacted skip emuBinary's anchor phase.
fn esc_anchors_index(c: &str) -> String {
    q(&format!("{c}.$esc_anchors"))
}

fn create_esc_anchors_index(conn: &Connection, c: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON {}(id) WHERE value IS NOT NULL;",
        esc_anchors_index(c),
        q(&esc_name(c))
    ))?;
    Ok(())
}

/// Create what a database made by an earlier version lacks: the ESC
/// anchors index of each encrypted collection, and the indexes' multikey
/// flag (see [`crate::plan`]; an index of an earlier version may hold
/// several keys per document, so it starts multikey). Run at open, on the
/// writer.
pub(crate) fn upgrade(conn: &Connection) -> Result<()> {
    let has_multikey: bool = conn
        .prepare(
            "SELECT EXISTS(SELECT 1 FROM pragma_table_info('$indexes') WHERE name = 'multikey')",
        )?
        .query_row([], |r| r.get(0))?;
    if !has_multikey {
        conn.execute_batch(
            "ALTER TABLE \"$indexes\" ADD COLUMN multikey INTEGER NOT NULL DEFAULT 1;",
        )?;
    }
    let names: Vec<String> = conn
        .prepare("SELECT name FROM \"$catalog\" WHERE encrypted_fields IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for c in names {
        create_esc_anchors_index(conn, &c)?;
    }
    Ok(())
}

/// A collection's catalog entry.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) name: String,
    /// The stored `encryptedFields` document, still encoded: most
    /// operations only need to know whether there is one, and decoding it
    /// on every operation showed up in profiles.
    pub(crate) encrypted_fields: Option<Vec<u8>>,
    pub(crate) indexes: Vec<IndexSpec>,
}

impl Shape for Meta {
    fn indexes(&self) -> &[IndexSpec] {
        &self.indexes
    }
    fn has_tag_index(&self) -> bool {
        self.encrypted()
    }
}

impl Meta {
    fn encrypted(&self) -> bool {
        self.encrypted_fields.is_some()
    }
    pub(crate) fn info(&self) -> Result<CollectionInfo> {
        Ok(CollectionInfo {
            name: self.name.clone(),
            options: CreateCollectionOptions {
                encrypted_fields: self
                    .encrypted_fields
                    .as_deref()
                    .map(|b| decode(&self.name, b))
                    .transpose()?,
            },
            indexes: self.indexes.clone(),
        })
    }
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn render(v: &Bson) -> String {
    v.clone().into_relaxed_extjson().to_string()
}

/// Run `f` atomically inside the enclosing transaction: on error, its
/// partial writes are undone and the transaction stays usable.
pub(crate) fn atomic<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached statements: a QE write runs several of these per document,
    // and parsing them each time showed up in profiles.
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            conn.execute_batch("ROLLBACK TO op; RELEASE op")?;
            Err(e)
        }
    }
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('$') || name.contains('\0') {
        Some("it contains '$' or a NUL byte")
    } else if name.to_ascii_lowercase().starts_with("sqlite_") {
        Some("names starting with 'sqlite_' are reserved by SQLite")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(EngineError::InvalidCollectionName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

pub(crate) fn load_meta(conn: &Connection, name: &str) -> Result<Option<Meta>> {
    let row: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT encrypted_fields FROM \"$catalog\" WHERE name=?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let Some(encrypted_fields) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT name, path, is_unique, sparse FROM \"$indexes\" WHERE collection=?1 ORDER BY name",
    )?;
    let indexes = stmt
        .query_map([name], |r| {
            Ok(IndexSpec {
                name: r.get(0)?,
                path: r.get(1)?,
                unique: r.get(2)?,
                sparse: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Meta {
        name: name.to_owned(),
        encrypted_fields,
        indexes,
    }))
}

/// Fail unless `name` is an encrypted collection (ESC/ECOC operations).
/// Only the catalog row's flag is read: the full [`Meta`] is not needed.
fn require_encrypted(conn: &Connection, name: &str) -> Result<()> {
    let encrypted: Option<bool> = conn
        .prepare_cached("SELECT encrypted_fields IS NOT NULL FROM \"$catalog\" WHERE name=?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    match encrypted {
        None => Err(EngineError::CollectionNotFound(name.to_owned())),
        Some(false) => Err(EngineError::NotEncrypted(name.to_owned())),
        Some(true) => Ok(()),
    }
}

pub(crate) fn create_collection(
    conn: &Connection,
    name: &str,
    opts: CreateCollectionOptions,
) -> Result<Meta> {
    validate_name(name)?;
    if load_meta(conn, name)?.is_some() {
        return Err(EngineError::CollectionExists(name.to_owned()));
    }
    let ef = opts
        .encrypted_fields
        .map(|ef| normalize_encrypted_fields(name, ef))
        .transpose()?;
    let mut tables = vec![name.to_owned()];
    if ef.is_some() {
        tables.extend([
            format!("{name}.$tags"),
            esc_name(name),
            ecoc_name(name),
            ecoc_compact_name(name),
        ]);
    }
    for t in &tables {
        if table_exists(conn, t)? {
            return Err(EngineError::InvalidCollectionName {
                name: name.to_owned(),
                reason: "one of its storage tables is already used by another collection's ESC/ECOC; choose another name",
            });
        }
    }
    conn.execute_batch(&format!(
        "CREATE TABLE {}(rid INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, doc BLOB NOT NULL);",
        q(name)
    ))?;
    let ef_bytes = match &ef {
        Some(d) => {
            conn.execute_batch(&format!(
                "CREATE TABLE {}(tag BLOB NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY(tag, rid)) WITHOUT ROWID;
                 CREATE TABLE {}(id BLOB PRIMARY KEY NOT NULL, value BLOB) WITHOUT ROWID;
                 CREATE TABLE {}(rid INTEGER PRIMARY KEY, field TEXT NOT NULL, value BLOB NOT NULL);",
                tags_table(name),
                q(&esc_name(name)),
                q(&ecoc_name(name))
            ))?;
            create_esc_anchors_index(conn, name)?;
            Some(bson::to_vec(d)?)
        }
        None => None,
    };
    conn.execute(
        "INSERT INTO \"$catalog\"(name, encrypted_fields) VALUES(?1, ?2)",
        params![name, ef_bytes],
    )?;
    Ok(Meta {
        name: name.to_owned(),
        encrypted_fields: ef_bytes,
        indexes: Vec::new(),
    })
}

pub(crate) fn ensure_collection(conn: &Connection, name: &str) -> Result<Meta> {
    match load_meta(conn, name)? {
        Some(m) => Ok(m),
        None => create_collection(conn, name, CreateCollectionOptions::default()),
    }
}

pub(crate) fn list_collections(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM \"$catalog\" ORDER BY name")?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

pub(crate) fn drop_collection(conn: &Connection, name: &str) -> Result<bool> {
    let Some(meta) = load_meta(conn, name)? else {
        return Ok(false);
    };
    let mut sql = format!("DROP TABLE IF EXISTS {};", q(name));
    for i in &meta.indexes {
        let _ = write!(sql, "DROP TABLE IF EXISTS {};", idx_table(name, &i.name));
    }
    if meta.encrypted() {
        for t in [esc_name(name), ecoc_name(name), ecoc_compact_name(name)] {
            let _ = write!(sql, "DROP TABLE IF EXISTS {};", q(&t));
        }
        let _ = write!(sql, "DROP TABLE IF EXISTS {};", tags_table(name));
    }
    conn.execute_batch(&sql)?;
    conn.execute("DELETE FROM \"$catalog\" WHERE name=?1", [name])?;
    conn.execute("DELETE FROM \"$indexes\" WHERE collection=?1", [name])?;
    Ok(true)
}

/// Renames `from` to `to` (see [`crate::Engine::rename_collection`]) inside
/// the caller's transaction. A replaced `to` is dropped under
/// `secure_delete`, so its pages are overwritten with zeros rather than
/// left on the free list.
pub(crate) fn rename_collection(
    conn: &Connection,
    from: &str,
    to: &str,
    target: RenameTarget,
) -> Result<()> {
    validate_name(to)?;
    let meta =
        load_meta(conn, from)?.ok_or_else(|| EngineError::CollectionNotFound(from.to_owned()))?;
    if from == to {
        return Ok(());
    }
    if load_meta(conn, to)?.is_some() {
        match target {
            RenameTarget::DropExisting => {
                let was: i64 = conn.query_row("PRAGMA secure_delete", [], |r| r.get(0))?;
                conn.execute_batch("PRAGMA secure_delete=ON")?;
                let dropped = drop_collection(conn, to);
                conn.execute_batch(&format!("PRAGMA secure_delete={was}"))?;
                dropped?;
            }
            _ => return Err(EngineError::CollectionExists(to.to_owned())),
        }
    }
    let mut pairs = vec![(q(from), q(to))];
    for i in &meta.indexes {
        pairs.push((idx_table(from, &i.name), idx_table(to, &i.name)));
    }
    if meta.encrypted() {
        pairs.push((tags_table(from), tags_table(to)));
        pairs.push((q(&esc_name(from)), q(&esc_name(to))));
        pairs.push((q(&ecoc_name(from)), q(&ecoc_name(to))));
        if table_exists(conn, &ecoc_compact_name(from))? {
            pairs.push((q(&ecoc_compact_name(from)), q(&ecoc_compact_name(to))));
        }
    }
    let mut sql = String::new();
    for (a, b) in &pairs {
        let _ = write!(sql, "ALTER TABLE {a} RENAME TO {b};");
    }
    if meta.encrypted() {
        // Index names are global in SQLite: the anchors index keeps the
        // name it was created with, which a new collection named `from`
        // would then find taken (`IF NOT EXISTS`) and go without.
        let _ = write!(sql, "DROP INDEX IF EXISTS {};", esc_anchors_index(from));
    }
    conn.execute_batch(&sql)?;
    let ef = match meta.encrypted_fields.as_deref() {
        Some(bytes) => {
            let mut ef = decode(from, bytes)?;
            ef.remove("escCollection");
            ef.remove("ecocCollection");
            create_esc_anchors_index(conn, to)?;
            Some(bson::to_vec(&normalize_encrypted_fields(to, ef)?)?)
        }
        None => None,
    };
    conn.execute(
        "UPDATE \"$catalog\" SET name=?2, encrypted_fields=?3 WHERE name=?1",
        params![from, to, ef],
    )?;
    conn.execute(
        "UPDATE \"$indexes\" SET collection=?2 WHERE collection=?1",
        params![from, to],
    )?;
    Ok(())
}

fn add_entries(conn: &Connection, meta: &Meta, rid: i64, doc: &Document) -> Result<()> {
    for spec in &meta.indexes {
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO {}(key, rid) VALUES(?1, ?2)",
            idx_table(&meta.name, &spec.name)
        ))?;
        let keys = index_keys(doc, spec);
        if keys.len() > 1 {
            // The index becomes multikey for good (see `crate::plan`).
            conn.prepare_cached(
                "UPDATE \"$indexes\" SET multikey=1 WHERE collection=?1 AND name=?2 AND multikey=0",
            )?
            .execute(params![meta.name, spec.name])?;
        }
        for (key, value) in keys {
            match stmt.execute(params![key, rid]) {
                Ok(_) => {}
                Err(e) if is_constraint(&e) => {
                    return Err(EngineError::DuplicateKey {
                        collection: meta.name.clone(),
                        index: spec.name.clone(),
                        key: format!("{{{}: {}}}", spec.path, render(&value)),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if meta.encrypted() {
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT OR IGNORE INTO {}(tag, rid) VALUES(?1, ?2)",
            tags_table(&meta.name)
        ))?;
        for t in doc_tags(doc) {
            stmt.execute(params![&t.as_bytes()[..], rid])?;
        }
    }
    Ok(())
}

fn remove_entries(conn: &Connection, meta: &Meta, rid: i64, doc: &Document) -> Result<()> {
    for spec in &meta.indexes {
        let mut stmt = conn.prepare_cached(&format!(
            "DELETE FROM {} WHERE key=?1 AND rid=?2",
            idx_table(&meta.name, &spec.name)
        ))?;
        for key in index_keys(doc, spec).into_keys() {
            stmt.execute(params![key, rid])?;
        }
    }
    if meta.encrypted() {
        let mut stmt = conn.prepare_cached(&format!(
            "DELETE FROM {} WHERE tag=?1 AND rid=?2",
            tags_table(&meta.name)
        ))?;
        for t in doc_tags(doc) {
            stmt.execute(params![&t.as_bytes()[..], rid])?;
        }
    }
    Ok(())
}

fn check_id(meta: &Meta, id: &Bson) -> Result<()> {
    if matches!(
        id,
        Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined
    ) {
        return Err(EngineError::InvalidDocument {
            collection: meta.name.clone(),
            reason: "_id cannot be an array, a regular expression or undefined".into(),
        });
    }
    Ok(())
}

pub(crate) fn insert_one(conn: &Connection, meta: &Meta, doc: Document) -> Result<Bson> {
    let (id, doc) = if let Some(id) = doc.get("_id") {
        (id.clone(), doc)
    } else {
        let id = Bson::ObjectId(ObjectId::new());
        (id.clone(), with_id_first(id, doc))
    };
    check_id(meta, &id)?;
    let bytes = encode(&meta.name, &doc)?;
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO {}(id, doc) VALUES(?1, ?2)",
        q(&meta.name)
    ))?;
    match stmt.execute(params![encode_key(&id), bytes]) {
        Ok(_) => {}
        Err(e) if is_constraint(&e) => {
            return Err(EngineError::DuplicateKey {
                collection: meta.name.clone(),
                index: "_id_".into(),
                key: format!("{{_id: {}}}", render(&id)),
            });
        }
        Err(e) => return Err(e.into()),
    }
    add_entries(conn, meta, conn.last_insert_rowid(), &doc)?;
    Ok(id)
}

pub(crate) fn replace_one(
    conn: &Connection,
    meta: &Meta,
    id: &Bson,
    doc: Document,
) -> Result<bool> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            &format!("SELECT rid, doc FROM {} WHERE id=?1", q(&meta.name)),
            [encode_key(id)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((rid, old)) = row else {
        return Ok(false);
    };
    let old = decode(&meta.name, &old)?;
    let doc = match doc.get("_id") {
        Some(new_id) if crate::value::equals(new_id, id) => doc,
        Some(_) => {
            return Err(EngineError::InvalidDocument {
                collection: meta.name.clone(),
                reason: "the replacement changes _id, which is immutable".into(),
            });
        }
        None => with_id_first(id.clone(), doc),
    };
    remove_entries(conn, meta, rid, &old)?;
    conn.execute(
        &format!("UPDATE {} SET doc=?1 WHERE rid=?2", q(&meta.name)),
        params![encode(&meta.name, &doc)?, rid],
    )?;
    add_entries(conn, meta, rid, &doc)?;
    Ok(true)
}

/// How a filter's candidates are fetched: the planner's [`Access`] as
/// SQLite SQL.
pub(crate) struct Plan {
    pub(crate) sql: String,
    pub(crate) params: Vec<Box<dyn ToSql>>,
}

/// Keys for `IN rarray(?)`.
fn keys_param(keys: Vec<Vec<u8>>) -> Box<dyn ToSql> {
    Box::new(Rc::new(
        keys.into_iter().map(Value::Blob).collect::<Vec<_>>(),
    ))
}

/// SQLite's parameters: numbered `?N`, boxed values.
struct Sqlite;

impl Dialect for Sqlite {
    type Param = Box<dyn ToSql>;
    fn placeholder(&self, n: usize, _: SqlType) -> String {
        format!("?{n}")
    }
    fn bytes(&self, key: Vec<u8>) -> Self::Param {
        Box::new(key)
    }
    fn text(&self, name: String) -> Self::Param {
        Box::new(name)
    }
    fn indexes_table(&self) -> String {
        "\"$indexes\"".to_owned()
    }
}

/// The candidate query of `filter` on `meta`'s collection (see
/// [`crate::plan::access`]).
pub(crate) fn plan(meta: &Meta, filter: &Filter) -> Plan {
    let table = q(&meta.name);
    let mut params: Vec<Box<dyn ToSql>> = Vec::new();
    let rids = match plan::access(meta, filter) {
        Access::Scan => {
            return Plan {
                sql: format!("SELECT rid, doc FROM {table} ORDER BY rid"),
                params,
            };
        }
        Access::Ids(keys) => {
            return Plan {
                sql: format!("SELECT rid, doc FROM {table} WHERE id IN rarray(?1) ORDER BY rid"),
                params: vec![keys_param(keys)],
            };
        }
        Access::Tags(tags) => {
            params.push(keys_param(tags));
            format!(
                "SELECT rid FROM {} WHERE tag IN rarray(?1)",
                tags_table(&meta.name)
            )
        }
        Access::Keys { index, keys } => {
            params.push(keys_param(keys));
            format!(
                "SELECT rid FROM {} WHERE key IN rarray(?1)",
                idx_table(&meta.name, &index.name)
            )
        }
        Access::Range { index, range } => {
            let cond = plan::key_conditions(&Sqlite, &meta.name, index, &range, &mut params);
            format!(
                "SELECT rid FROM {} WHERE {cond}",
                idx_table(&meta.name, &index.name)
            )
        }
    };
    Plan {
        sql: format!("SELECT rid, doc FROM {table} WHERE rid IN ({rids}) ORDER BY rid"),
        params,
    }
}

/// Feed every matching row to `f`, in the form `want` asks for, until it
/// returns `false`.
fn scan(
    conn: &Connection,
    meta: &Meta,
    filter: &Filter,
    want: Want,
    mut f: impl FnMut(i64, Found<'_>) -> Result<bool>,
) -> Result<()> {
    let plan = plan(meta, filter);
    let mut stmt = conn.prepare_cached(&plan.sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(plan.params.iter()))?;
    while let Some(row) = rows.next()? {
        let rid: i64 = row.get(0)?;
        // Straight from SQLite's row buffer: nothing is copied before the
        // filter has accepted the row.
        let bytes = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
        if let Some(found) = raw::judge(&meta.name, filter, want, bytes)?
            && !f(rid, found)?
        {
            break;
        }
    }
    Ok(())
}

pub(crate) fn explain(conn: &Connection, meta: &Meta, filter: &Filter) -> Result<Vec<String>> {
    let plan = plan(meta, filter);
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", plan.sql))?;
    let lines = stmt
        .query_map(rusqlite::params_from_iter(plan.params.iter()), |r| {
            r.get::<_, String>(3)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(lines)
}

pub(crate) fn find(
    conn: &Connection,
    name: &str,
    filter: &Filter,
    opts: &FindOptions,
) -> Result<Vec<Document>> {
    let Some(meta) = load_meta(conn, name)? else {
        return Ok(Vec::new());
    };
    let shape = FindShape::new(opts)?;
    let wanted = shape.wanted();
    let mut docs = Vec::new();
    if wanted > 0 {
        scan(conn, &meta, filter, Want::Documents, |_, found| {
            if let Found::Document(d) = found {
                docs.push(d);
            }
            Ok(docs.len() < wanted)
        })?;
    }
    Ok(shape.finish(docs))
}

/// [`find`] as the stored bytes, copied once each. With a sort or a
/// projection the documents are needed, so it is `find`'s answer encoded.
pub(crate) fn find_raw(
    conn: &Connection,
    name: &str,
    filter: &Filter,
    opts: &FindOptions,
) -> Result<Vec<RawDocumentBuf>> {
    if !bytes_as_stored(opts) {
        return find(conn, name, filter, opts)?
            .iter()
            .map(|d| encode_raw(name, d))
            .collect();
    }
    let Some(meta) = load_meta(conn, name)? else {
        return Ok(Vec::new());
    };
    let (skip, limit) = window(opts);
    let (mut seen, mut out) = (0usize, Vec::new());
    if limit > 0 {
        scan(conn, &meta, filter, Want::Bytes, |_, found| {
            seen += 1;
            if seen > skip
                && let Found::Bytes(raw) = found
            {
                out.push(raw.to_raw_document_buf());
            }
            Ok(out.len() < limit)
        })?;
    }
    Ok(out)
}

pub(crate) fn count(conn: &Connection, name: &str, filter: &Filter) -> Result<u64> {
    let Some(meta) = load_meta(conn, name)? else {
        return Ok(0);
    };
    let mut n = 0u64;
    scan(conn, &meta, filter, Want::Count, |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

pub(crate) fn delete(
    conn: &Connection,
    name: &str,
    filter: &Filter,
    scope: DeleteScope,
) -> Result<u64> {
    let Some(meta) = load_meta(conn, name)? else {
        return Ok(0);
    };
    let mut victims = Vec::new();
    scan(conn, &meta, filter, Want::Documents, |rid, found| {
        if let Found::Document(d) = found {
            victims.push((rid, d));
        }
        Ok(victims.len() < scope.limit())
    })?;
    let mut stmt = conn.prepare_cached(&format!("DELETE FROM {} WHERE rid=?1", q(name)))?;
    for (rid, d) in &victims {
        remove_entries(conn, &meta, *rid, d)?;
        stmt.execute([rid])?;
    }
    Ok(victims.len() as u64)
}

pub(crate) fn create_index(conn: &Connection, name: &str, spec: &IndexSpec) -> Result<()> {
    let meta = ensure_collection(conn, name)?;
    if check_new_index(name, spec, &meta.indexes)? == NewIndex::AlreadyThere {
        return Ok(());
    }
    let pk = if spec.unique {
        "PRIMARY KEY(key)"
    } else {
        "PRIMARY KEY(key, rid)"
    };
    conn.execute_batch(&format!(
        "CREATE TABLE {}(key BLOB NOT NULL, rid INTEGER NOT NULL, {pk}) WITHOUT ROWID;",
        idx_table(name, &spec.name)
    ))?;
    conn.execute(
        "INSERT INTO \"$indexes\"(collection, name, path, is_unique, sparse) VALUES(?1, ?2, ?3, ?4, ?5)",
        params![name, spec.name, spec.path, spec.unique, spec.sparse],
    )?;
    let only_new = Meta {
        indexes: vec![spec.clone()],
        encrypted_fields: None,
        name: name.to_owned(),
    };
    let mut stmt = conn.prepare(&format!("SELECT rid, doc FROM {}", q(name)))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let bytes: Vec<u8> = row.get(1)?;
        let doc = decode(name, &bytes)?;
        add_entries(conn, &only_new, row.get(0)?, &doc)?;
    }
    Ok(())
}

// ---- QE state ----

/// Run `f`, an operation on `c`'s ESC or ECOC table, without asking the
/// catalog first: these run several times in every QE operation. A
/// missing or unencrypted collection has no such table, so `f` fails; only
/// then is the catalog read, to report that in the engine's terms.
fn on_state_tables<T>(conn: &Connection, c: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    f().or_else(|e| {
        require_encrypted(conn, c)?;
        Err(e)
    })
}

pub(crate) fn esc_has_anchors(conn: &Connection, c: &str) -> Result<bool> {
    on_state_tables(conn, c, || {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT EXISTS(SELECT 1 FROM {} INDEXED BY {} WHERE value IS NOT NULL)",
                q(&esc_name(c)),
                esc_anchors_index(c)
            ))?
            .query_row([], |r| r.get(0))?)
    })
}

pub(crate) fn esc_get_many(
    conn: &Connection,
    c: &str,
    ids: &[EscId],
) -> Result<Vec<Option<EscEntry>>> {
    // One cached point lookup per id: a search asks for a handful of ids
    // at a time, for which this beats one `IN rarray(...)` statement (no
    // virtual table, no map to put the answers back in input order).
    on_state_tables(conn, c, || {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT value FROM {} WHERE id=?1",
            q(&esc_name(c))
        ))?;
        ids.iter()
            .map(|id| {
                let value: Option<Option<Vec<u8>>> = stmt
                    .query_row([&id.as_bytes()[..]], |r| r.get(0))
                    .optional()?;
                Ok(value.map(|v| EscEntry {
                    value: v.map(EscValue),
                }))
            })
            .collect()
    })
}

/// Insert ESC rows `(id, value)` (or, with `upsert`, replace their
/// values), with one prepared statement for all of them.
pub(crate) fn esc_insert<'a>(
    conn: &Connection,
    c: &str,
    rows: impl IntoIterator<Item = (&'a EscId, Option<&'a EscValue>)>,
    upsert: bool,
) -> Result<()> {
    let sql = if upsert {
        "INSERT INTO {}(id, value) VALUES(?1, ?2) ON CONFLICT(id) DO UPDATE SET value=excluded.value"
    } else {
        "INSERT INTO {}(id, value) VALUES(?1, ?2)"
    };
    on_state_tables(conn, c, || {
        let mut stmt = conn.prepare_cached(&sql.replace("{}", &q(&esc_name(c))))?;
        for (id, value) in rows {
            match stmt.execute(params![&id.as_bytes()[..], value.map(|v| &v.0[..])]) {
                Ok(_) => {}
                Err(e) if is_constraint(&e) => {
                    return Err(EngineError::EscIdConflict {
                        collection: c.to_owned(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}

pub(crate) fn esc_delete_many(conn: &Connection, c: &str, ids: &[EscId]) -> Result<u64> {
    require_encrypted(conn, c)?;
    let keys: Vec<Value> = ids
        .iter()
        .map(|i| Value::Blob(i.as_bytes().to_vec()))
        .collect();
    let n = conn.execute(
        &format!("DELETE FROM {} WHERE id IN rarray(?1)", q(&esc_name(c))),
        [Rc::new(keys)],
    )?;
    Ok(n as u64)
}

fn count_table(conn: &Connection, table: &str) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", q(table)), [], |r| {
        r.get(0)
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn esc_count(conn: &Connection, c: &str) -> Result<u64> {
    require_encrypted(conn, c)?;
    count_table(conn, &esc_name(c))
}

pub(crate) fn esc_non_anchor_ids(conn: &Connection, c: &str) -> Result<Vec<EscId>> {
    require_encrypted(conn, c)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id FROM {} WHERE value IS NULL",
        q(&esc_name(c))
    ))?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let raw: Vec<u8> = r.get(0)?;
        let id = EscId::from_slice(&raw).ok_or_else(|| EngineError::Corrupt {
            collection: esc_name(c),
            reason: format!("ESC id of {} bytes, expected 32", raw.len()),
        })?;
        out.push(id);
    }
    Ok(out)
}

/// Append ECOC entries `(field, value)`, with one prepared statement for
/// all of them.
pub(crate) fn ecoc_append<'a>(
    conn: &Connection,
    c: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<()> {
    on_state_tables(conn, c, || {
        let mut stmt = conn.prepare_cached(&format!(
            "INSERT INTO {}(field, value) VALUES(?1, ?2)",
            q(&ecoc_name(c))
        ))?;
        for (field, value) in entries {
            stmt.execute(params![field, value])?;
        }
        Ok(())
    })
}

pub(crate) fn ecoc_count(conn: &Connection, c: &str) -> Result<u64> {
    require_encrypted(conn, c)?;
    count_table(conn, &ecoc_name(c))
}

pub(crate) fn ecoc_begin_compaction(conn: &Connection, c: &str) -> Result<bool> {
    require_encrypted(conn, c)?;
    if table_exists(conn, &ecoc_compact_name(c))? {
        return Ok(false);
    }
    conn.execute_batch(&format!(
        "ALTER TABLE {live} RENAME TO {compact};
         CREATE TABLE {live}(rid INTEGER PRIMARY KEY, field TEXT NOT NULL, value BLOB NOT NULL);",
        live = q(&ecoc_name(c)),
        compact = q(&ecoc_compact_name(c)),
    ))?;
    Ok(true)
}

pub(crate) fn ecoc_read(
    conn: &Connection,
    c: &str,
    generation: EcocGeneration,
) -> Result<Vec<EcocEntry>> {
    require_encrypted(conn, c)?;
    let table = match generation {
        EcocGeneration::Live => ecoc_name(c),
        EcocGeneration::Compacting => ecoc_compact_name(c),
    };
    if !table_exists(conn, &table)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT field, value FROM {} ORDER BY rid",
        q(&table)
    ))?;
    let out = stmt
        .query_map([], |r| {
            Ok(EcocEntry {
                field_name: r.get(0)?,
                value: r.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(out)
}

pub(crate) fn ecoc_drop_compact(conn: &Connection, c: &str) -> Result<()> {
    require_encrypted(conn, c)?;
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}",
        q(&ecoc_compact_name(c))
    ))?;
    Ok(())
}
