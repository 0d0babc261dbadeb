//! Storage operations as SQL over one [`Ctx`]. The caller decides whether
//! they run in an autocommit transaction, inside a savepoint of a user
//! transaction, or (reads only) without a transaction.
//!
//! Layout, per schema (= cipherdoc database):
//! - `"$catalog"(name, encrypted_fields)`, `"$indexes"(collection, name,
//!   path, is_unique, sparse)`;
//! - per collection `C`: `"C"(rid bigint identity PRIMARY KEY, id bytea
//!   UNIQUE, doc bytea)` — the BSON bytes keyed by the order-preserving
//!   encoding of `_id`;
//! - per secondary index: `"C.$idx.<name>"(key bytea, rid bigint)`, primary
//!   key `(key)` when unique, `(key, rid)` otherwise, keys being
//!   [`crate::value::encode_key`] of every value the path reaches (multikey);
//! - per encrypted collection: `"C.$tags"(tag, rid)` primary key
//!   `(tag, rid)`; `"enxcol_.C.esc"(id bytea PRIMARY KEY, value bytea)`;
//!   `"enxcol_.C.ecoc"(rid identity, field, value)`.
//!
//! `bytea` compares with `memcmp` and then by length — there is no
//! collation for `bytea` — so btree order on keys is exactly the byte order
//! of `encode_key`, which is MongoDB's comparison order; range predicates
//! on an index table are plain key ranges. Text columns (`name`) are only
//! compared for equality, and sorted with `COLLATE "C"` (byte order) where
//! an order is reported.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use bson::{Bson, Document, RawDocumentBuf};
use tokio_postgres::error::SqlState;

use super::ctx::{CatalogRead, Ctx, Meta, Schema, ident};
use super::documents::{
    FindShape, NewIndex, check_new_index, decode, doc_tags, ecoc_compact_name, ecoc_name, encode,
    ensure_id, esc_name, index_keys, normalize_encrypted_fields, render, validate_name,
    with_id_first,
};
use crate::documents::{encode_raw, window};
use crate::engine::{
    CreateCollectionOptions, DeleteScope, FindOptions, IndexSpec, RenameTarget, bytes_as_stored,
};
use crate::filter::Filter;
use crate::plan::{self, Access, Dialect, Shape, SqlType};
use crate::qe_state::{EcocEntry, EcocGeneration, EscEntry, EscId, EscValue};
use crate::raw::{self, Found, Want};
use crate::value::{encode_key, equals};
use crate::{EngineError, Result};

const LOCK_SHARED: &str = "SELECT pg_advisory_xact_lock_shared($1)";
const LOCK_EXCLUSIVE: &str = "SELECT pg_advisory_xact_lock($1)";

fn idx_raw(c: &str, index: &str) -> String {
    format!("{c}.$idx.{index}")
}
fn tags_raw(c: &str) -> String {
    format!("{c}.$tags")
}

/// Whether an error is PostgreSQL's "relation does not exist" (a
/// collection dropped between reading the catalog and reading its table).
pub(crate) fn is_undefined_table(e: &EngineError) -> bool {
    postgres_error(e).and_then(tokio_postgres::Error::code) == Some(&SqlState::UNDEFINED_TABLE)
}

/// PostgreSQL's own error inside an [`EngineError::Backend`], when it is one.
pub(crate) fn postgres_error(e: &EngineError) -> Option<&tokio_postgres::Error> {
    match e {
        EngineError::Backend(b) => b.driver(),
        _ => None,
    }
}

fn parse_meta(name: &str, rows: &[tokio_postgres::Row]) -> Result<Option<Meta>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let ef: Option<&[u8]> = first.try_get(0)?;
    let encrypted_fields = ef.map(|b| decode(name, b)).transpose()?;
    let mut indexes = Vec::new();
    for r in rows {
        let iname: Option<String> = r.try_get(1)?;
        if let Some(iname) = iname {
            indexes.push(IndexSpec {
                name: iname,
                path: r.try_get(2)?,
                unique: r.try_get(3)?,
                sparse: r.try_get(4)?,
            });
        }
    }
    Ok(Some(Meta {
        name: name.to_owned(),
        encrypted_fields,
        indexes,
    }))
}

/// The catalog entry of `name`. In a writer context this first takes the
/// collection's shared advisory lock (so no DDL on it can interleave with
/// this transaction) and caches the answer for the rest of the transaction.
pub(crate) async fn load_meta(cx: &mut Ctx, name: &str) -> Result<Option<Arc<Meta>>> {
    if let Some(m) = cx.cached(name) {
        return Ok(Some(m));
    }
    let s = Arc::clone(&cx.s);
    let rows = if cx.catalog == CatalogRead::Locked {
        let key = s.collection_key(name);
        cx.execute_then_query(LOCK_SHARED, &[&key], &s.meta_sql, &[&name])
            .await?
    } else {
        cx.query(&s.meta_sql, &[&name]).await?
    };
    let meta = parse_meta(name, &rows)?.map(Arc::new);
    if let Some(m) = &meta {
        cx.remember(Arc::clone(m));
    }
    Ok(meta)
}

/// Re-read the catalog entry (after taking a lock), bypassing the cache.
async fn reload_meta(cx: &mut Ctx, name: &str) -> Result<Option<Arc<Meta>>> {
    let s = Arc::clone(&cx.s);
    let rows = cx.query(&s.meta_sql, &[&name]).await?;
    let meta = parse_meta(name, &rows)?.map(Arc::new);
    match &meta {
        Some(m) => cx.remember(Arc::clone(m)),
        None => cx.forget(name),
    }
    Ok(meta)
}

async fn lock_exclusive(cx: &mut Ctx, key: i64) -> Result<()> {
    cx.execute(LOCK_EXCLUSIVE, &[&key]).await?;
    Ok(())
}

async fn require_meta(cx: &mut Ctx, name: &str) -> Result<Arc<Meta>> {
    load_meta(cx, name)
        .await?
        .ok_or_else(|| EngineError::CollectionNotFound(name.to_owned()))
}

async fn require_encrypted(cx: &mut Ctx, name: &str) -> Result<Arc<Meta>> {
    let m = require_meta(cx, name).await?;
    if m.encrypted() {
        Ok(m)
    } else {
        Err(EngineError::NotEncrypted(name.to_owned()))
    }
}

async fn tables_exist(cx: &mut Ctx, logical: &[String]) -> Result<bool> {
    let idents: Vec<String> = logical.iter().map(|r| ident(r)).collect();
    let schema = cx.s.name.clone();
    let found = cx
        .query(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = ANY($2::text[])",
            &[&schema, &idents],
        )
        .await?;
    Ok(!found.is_empty())
}

/// Create a collection; the caller holds the schema's DDL lock.
async fn create_locked(
    cx: &mut Ctx,
    name: &str,
    opts: CreateCollectionOptions,
) -> Result<Arc<Meta>> {
    let ef = opts
        .encrypted_fields
        .map(|ef| normalize_encrypted_fields(name, ef))
        .transpose()?;
    let mut raws = vec![name.to_owned()];
    if ef.is_some() {
        raws.extend([
            tags_raw(name),
            esc_name(name),
            ecoc_name(name),
            ecoc_compact_name(name),
        ]);
    }
    if tables_exist(cx, &raws).await? {
        return Err(EngineError::InvalidCollectionName {
            name: name.to_owned(),
            reason: "one of its storage tables is already used by another collection's ESC/ECOC; choose another name",
        });
    }
    let s = Arc::clone(&cx.s);
    let mut ddl = format!(
        "CREATE TABLE {}(rid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id bytea NOT NULL UNIQUE, doc bytea NOT NULL);",
        s.table(name)
    );
    if ef.is_some() {
        let _ = write!(
            ddl,
            "CREATE TABLE {}(tag bytea NOT NULL, rid bigint NOT NULL, PRIMARY KEY(tag, rid));
             CREATE TABLE {}(id bytea PRIMARY KEY, value bytea);
             CREATE TABLE {};",
            s.table(&tags_raw(name)),
            s.table(&esc_name(name)),
            ecoc_def(&s, name),
        );
    }
    cx.batch(&ddl).await?;
    let ef_bytes = ef.as_ref().map(bson::to_vec).transpose()?;
    cx.execute(
        &format!(
            "INSERT INTO {}(name, encrypted_fields) VALUES($1, $2)",
            s.catalog()
        ),
        &[&name, &ef_bytes],
    )
    .await?;
    let meta = Arc::new(Meta {
        name: name.to_owned(),
        encrypted_fields: ef,
        indexes: Vec::new(),
    });
    cx.remember(Arc::clone(&meta));
    Ok(meta)
}

/// The tables a collection always has: its documents, one per index and,
/// when encrypted, its tags, ESC and ECOC (not the ECOC being compacted,
/// which exists only during a compaction).
fn tables_of(s: &Schema, meta: &Meta) -> Vec<String> {
    let c = &meta.name;
    let mut out = vec![s.table(c)];
    out.extend(meta.indexes.iter().map(|i| s.table(&idx_raw(c, &i.name))));
    if meta.encrypted() {
        out.extend([tags_raw(c), esc_name(c), ecoc_name(c)].map(|t| s.table(&t)));
    }
    out
}

fn ecoc_def(s: &Schema, c: &str) -> String {
    format!(
        "{}(rid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, field text NOT NULL, value bytea NOT NULL)",
        s.table(&ecoc_name(c))
    )
}

pub(crate) async fn create_collection(
    cx: &mut Ctx,
    name: &str,
    opts: CreateCollectionOptions,
) -> Result<()> {
    validate_name(name)?;
    let s = Arc::clone(&cx.s);
    lock_exclusive(cx, s.collection_key(name)).await?;
    lock_exclusive(cx, s.ddl_key()).await?;
    if reload_meta(cx, name).await?.is_some() {
        return Err(EngineError::CollectionExists(name.to_owned()));
    }
    create_locked(cx, name, opts).await.map(|_| ())
}

/// The collection's catalog entry, creating the collection when missing
/// (as MongoDB does on first insert).
pub(crate) async fn ensure_collection(cx: &mut Ctx, name: &str) -> Result<Arc<Meta>> {
    if let Some(m) = load_meta(cx, name).await? {
        return Ok(m);
    }
    validate_name(name)?;
    // We hold the collection's shared lock already, so take only the DDL
    // lock (taking the exclusive collection lock here would deadlock two
    // concurrent first inserts); then look again: another writer may have
    // created it while we waited.
    let s = Arc::clone(&cx.s);
    lock_exclusive(cx, s.ddl_key()).await?;
    if let Some(m) = reload_meta(cx, name).await? {
        return Ok(m);
    }
    create_locked(cx, name, CreateCollectionOptions::default()).await
}

pub(crate) async fn list_collections(cx: &mut Ctx) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT name FROM {} ORDER BY name COLLATE \"C\"",
        cx.s.catalog()
    );
    let rows = cx.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(EngineError::from))
        .collect()
}

pub(crate) async fn drop_collection(cx: &mut Ctx, name: &str) -> Result<bool> {
    let s = Arc::clone(&cx.s);
    lock_exclusive(cx, s.collection_key(name)).await?;
    lock_exclusive(cx, s.ddl_key()).await?;
    let Some(meta) = reload_meta(cx, name).await? else {
        return Ok(false);
    };
    s.forget_growth(name);
    let mut sql = String::new();
    for t in tables_of(&s, &meta) {
        let _ = write!(sql, "DROP TABLE IF EXISTS {t};");
    }
    if meta.encrypted() {
        let _ = write!(
            sql,
            "DROP TABLE IF EXISTS {};",
            s.table(&ecoc_compact_name(name))
        );
    }
    cx.batch(&sql).await?;
    cx.execute(
        &format!("DELETE FROM {} WHERE name = $1", s.catalog()),
        &[&name],
    )
    .await?;
    cx.execute(
        &format!("DELETE FROM {} WHERE collection = $1", s.indexes()),
        &[&name],
    )
    .await?;
    cx.forget(name);
    Ok(true)
}

/// Renames `from` to `to` (see [`crate::Engine::rename_collection`]):
/// `ALTER TABLE … RENAME` of every table of the collection and its catalog
/// rows, in the caller's transaction, under both collections' exclusive
/// locks (taken in name order, so two renames cannot deadlock).
pub(crate) async fn rename_collection(
    cx: &mut Ctx,
    from: &str,
    to: &str,
    target: RenameTarget,
) -> Result<()> {
    validate_name(to)?;
    let s = Arc::clone(&cx.s);
    let (first, second) = if from <= to { (from, to) } else { (to, from) };
    lock_exclusive(cx, s.collection_key(first)).await?;
    lock_exclusive(cx, s.collection_key(second)).await?;
    lock_exclusive(cx, s.ddl_key()).await?;
    s.forget_growth(from);
    s.forget_growth(to);
    let meta = reload_meta(cx, from)
        .await?
        .ok_or_else(|| EngineError::CollectionNotFound(from.to_owned()))?;
    if from == to {
        return Ok(());
    }
    if reload_meta(cx, to).await?.is_some() {
        match target {
            RenameTarget::DropExisting => {
                drop_collection(cx, to).await?;
            }
            _ => return Err(EngineError::CollectionExists(to.to_owned())),
        }
    }
    let mut pairs = vec![(from.to_owned(), to.to_owned())];
    for i in &meta.indexes {
        pairs.push((idx_raw(from, &i.name), idx_raw(to, &i.name)));
    }
    if meta.encrypted() {
        pairs.push((tags_raw(from), tags_raw(to)));
        pairs.push((esc_name(from), esc_name(to)));
        pairs.push((ecoc_name(from), ecoc_name(to)));
        if tables_exist(cx, &[ecoc_compact_name(from)]).await? {
            pairs.push((ecoc_compact_name(from), ecoc_compact_name(to)));
        }
    }
    let mut sql = String::new();
    for (a, b) in &pairs {
        let _ = write!(
            sql,
            "ALTER TABLE {} RENAME TO {};",
            s.table(a),
            super::ctx::q(&ident(b))
        );
    }
    cx.batch(&sql).await?;
    let ef = match &meta.encrypted_fields {
        Some(ef) => {
            let mut ef = ef.clone();
            ef.remove("escCollection");
            ef.remove("ecocCollection");
            Some(bson::to_vec(&normalize_encrypted_fields(to, ef)?)?)
        }
        None => None,
    };
    cx.execute(
        &format!(
            "UPDATE {} SET name = $2, encrypted_fields = $3 WHERE name = $1",
            s.catalog()
        ),
        &[&from, &to, &ef],
    )
    .await?;
    cx.execute(
        &format!(
            "UPDATE {} SET collection = $2 WHERE collection = $1",
            s.indexes()
        ),
        &[&from, &to],
    )
    .await?;
    cx.forget(from);
    cx.forget(to);
    Ok(())
}

pub(crate) async fn create_index(cx: &mut Ctx, name: &str, spec: &IndexSpec) -> Result<()> {
    validate_name(name)?;
    let invalid = |reason: &str| EngineError::InvalidIndex {
        collection: name.to_owned(),
        index: spec.name.clone(),
        reason: reason.to_owned(),
    };
    // Checked before any lock or write; checked again below against the
    // indexes the locked catalog holds.
    check_new_index(name, spec, &[])?;
    let s = Arc::clone(&cx.s);
    // Exclusive: waits for every open writer of the collection and keeps
    // new ones out until the index is built and committed, so no document
    // can miss the new index.
    lock_exclusive(cx, s.collection_key(name)).await?;
    lock_exclusive(cx, s.ddl_key()).await?;
    let meta = match reload_meta(cx, name).await? {
        Some(m) => m,
        None => create_locked(cx, name, CreateCollectionOptions::default()).await?,
    };
    if check_new_index(name, spec, &meta.indexes)? == NewIndex::AlreadyThere {
        return Ok(());
    }
    let raw = idx_raw(name, &spec.name);
    if tables_exist(cx, std::slice::from_ref(&raw)).await? {
        return Err(invalid(
            "its storage table name is taken (a very long name shortened to the same table); pick another name",
        ));
    }
    let table = s.table(&raw);
    let pk = if spec.unique {
        "PRIMARY KEY(key)"
    } else {
        "PRIMARY KEY(key, rid)"
    };
    cx.batch(&format!(
        "CREATE TABLE {table}(key bytea NOT NULL, rid bigint NOT NULL, {pk});"
    ))
    .await?;
    cx.execute(
        &format!(
            "INSERT INTO {}(collection, name, path, is_unique, sparse) VALUES($1, $2, $3, $4, $5)",
            s.indexes()
        ),
        &[&name, &spec.name, &spec.path, &spec.unique, &spec.sparse],
    )
    .await?;
    // Build over the existing documents. Nobody else writes the collection
    // now, so a duplicate found here is the whole truth.
    let rows = cx
        .query(&format!("SELECT rid, doc FROM {}", s.table(name)), &[])
        .await?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let (mut keys, mut rids) = (Vec::new(), Vec::new());
    let mut multikey = false;
    for r in &rows {
        let rid: i64 = r.try_get(0)?;
        let doc = decode(name, r.try_get(1)?)?;
        let doc_keys = index_keys(&doc, spec);
        multikey |= doc_keys.len() > 1;
        for (k, v) in doc_keys {
            if spec.unique && !seen.insert(k.clone()) {
                return Err(EngineError::DuplicateKey {
                    collection: name.to_owned(),
                    index: spec.name.clone(),
                    key: format!("{{{}: {}}}", spec.path, render(&v)),
                });
            }
            keys.push(k);
            rids.push(rid);
        }
    }
    let insert =
        format!("INSERT INTO {table}(key, rid) SELECT * FROM unnest($1::bytea[], $2::int8[])");
    for (k, r) in keys.chunks(20_000).zip(rids.chunks(20_000)) {
        let (k, r) = (k.to_vec(), r.to_vec());
        cx.execute(&insert, &[&k, &r]).await?;
    }
    if multikey {
        cx.execute(
            &format!(
                "UPDATE {} SET multikey = true WHERE collection = $1 AND name = $2",
                s.indexes()
            ),
            &[&name, &spec.name],
        )
        .await?;
    }
    let mut m = (*meta).clone();
    m.indexes.push(spec.clone());
    m.indexes
        .sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    cx.remember(Arc::new(m));
    Ok(())
}

/// Two parallel `bytea[]` parameters (e.g. document ids and index keys).
type KeyColumns = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Candidate keys of one unique constraint, for naming the offending key
/// when PostgreSQL reports a unique violation.
struct UniqueCands {
    table: String,
    index: String,
    path: String,
    keys: HashMap<Vec<u8>, Bson>,
}

/// The key bytes PostgreSQL puts in a unique violation's detail
/// (`Key (key)=(\x0b61…) already exists.`).
fn detail_key(detail: Option<&str>) -> Option<Vec<u8>> {
    let d = detail?;
    let start = d.find("=(\\x")? + 4;
    let hex = d.get(start..)?;
    let end = hex.find(')')?;
    let hex = hex.get(..end)?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Turn PostgreSQL's unique violation (SQLSTATE 23505) into the typed
/// [`EngineError::DuplicateKey`], naming the index and the key.
fn map_unique(err: EngineError, collection: &str, cands: &[UniqueCands]) -> EngineError {
    let Some(pe) = postgres_error(&err) else {
        return err;
    };
    let Some(db) = pe.as_db_error() else {
        return err;
    };
    if db.code() != &SqlState::UNIQUE_VIOLATION {
        return err;
    }
    let Some(c) = cands.iter().find(|c| Some(c.table.as_str()) == db.table()) else {
        return err;
    };
    let value = detail_key(db.detail())
        .and_then(|k| c.keys.get(&k))
        .or_else(|| {
            if c.keys.len() == 1 {
                c.keys.values().next()
            } else {
                None
            }
        });
    let rendered = value.map_or_else(|| "(one of the document's keys)".to_owned(), render);
    EngineError::DuplicateKey {
        collection: collection.to_owned(),
        index: c.index.clone(),
        key: format!("{{{}: {rendered}}}", c.path),
    }
}

fn dup(collection: &str, index: &str, path: &str, v: &Bson) -> EngineError {
    EngineError::DuplicateKey {
        collection: collection.to_owned(),
        index: index.to_owned(),
        key: format!("{{{path}: {}}}", render(v)),
    }
}

/// Insert documents in one statement: the documents, their index entries
/// and their tags go in through data-modifying CTEs joined on the encoded
/// `_id`, so a bulk insert is one round trip.
pub(crate) async fn insert_docs(
    cx: &mut Ctx,
    name: &str,
    docs: Vec<Document>,
) -> Result<Vec<Bson>> {
    let meta = ensure_collection(cx, name).await?;
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let s = Arc::clone(&cx.s);
    let n = docs.len();
    s.note_growth(name, n, || tables_of(&s, &meta));
    let (mut ids, mut id_keys, mut bytes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut id_cands = UniqueCands {
        table: ident(name),
        index: "_id_".into(),
        path: "_id".into(),
        keys: HashMap::with_capacity(n),
    };
    let mut idx_cols: Vec<KeyColumns> = vec![(Vec::new(), Vec::new()); meta.indexes.len()];
    let mut uniq: Vec<UniqueCands> = Vec::new();
    let mut uniq_pos: Vec<Option<usize>> = Vec::new();
    for spec in &meta.indexes {
        if spec.unique {
            uniq_pos.push(Some(uniq.len()));
            uniq.push(UniqueCands {
                table: ident(&idx_raw(name, &spec.name)),
                index: spec.name.clone(),
                path: spec.path.clone(),
                keys: HashMap::new(),
            });
        } else {
            uniq_pos.push(None);
        }
    }
    let (mut tag_ids, mut tags) = (Vec::new(), Vec::new());
    let mut multikey: BTreeSet<String> = BTreeSet::new();
    for doc in docs {
        let (id, doc) = ensure_id(name, doc)?;
        let k = encode_key(&id);
        if id_cands.keys.insert(k.clone(), id.clone()).is_some() {
            return Err(dup(name, "_id_", "_id", &id));
        }
        for ((spec, cols), pos) in meta.indexes.iter().zip(&mut idx_cols).zip(&uniq_pos) {
            let keys = index_keys(&doc, spec);
            if keys.len() > 1 {
                multikey.insert(spec.name.clone());
            }
            for (key, v) in keys {
                if let Some(u) = pos.and_then(|p| uniq.get_mut(p)) {
                    if u.keys.insert(key.clone(), v.clone()).is_some() {
                        return Err(dup(name, &spec.name, &spec.path, &v));
                    }
                }
                cols.0.push(k.clone());
                cols.1.push(key);
            }
        }
        if meta.encrypted() {
            for t in doc_tags(&doc) {
                tag_ids.push(k.clone());
                tags.push(t.as_bytes().to_vec());
            }
        }
        bytes.push(encode(name, &doc)?);
        id_keys.push(k);
        ids.push(id);
    }
    let mut sql = format!(
        "WITH d AS (INSERT INTO {}(id, doc) SELECT u.id, u.doc FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS u(id, doc, n) ORDER BY u.n RETURNING rid, id)",
        s.table(name)
    );
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id_keys, &bytes];
    for (i, (spec, cols)) in meta.indexes.iter().zip(&idx_cols).enumerate() {
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", i{i} AS (INSERT INTO {}(key, rid) SELECT e.key, d.rid FROM unnest(${p}::bytea[], ${}::bytea[]) AS e(id, key) JOIN d ON d.id = e.id)",
            s.table(&idx_raw(name, &spec.name)),
            p + 1
        );
        params.push(&cols.0);
        params.push(&cols.1);
    }
    if meta.encrypted() && !tags.is_empty() {
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", t AS (INSERT INTO {}(tag, rid) SELECT e.tag, d.rid FROM unnest(${p}::bytea[], ${}::bytea[]) AS e(id, tag) JOIN d ON d.id = e.id)",
            s.table(&tags_raw(name)),
            p + 1
        );
        params.push(&tag_ids);
        params.push(&tags);
    }
    let (collection, multikey): (String, Vec<String>) =
        (name.to_owned(), multikey.into_iter().collect());
    if !multikey.is_empty() {
        sql.push_str(&multikey_cte(&s, params.len() + 1));
        params.push(&collection);
        params.push(&multikey);
    }
    sql.push_str(" SELECT count(*) FROM d");
    match cx.execute(&sql, &params).await {
        Ok(_) => Ok(ids),
        Err(e) => {
            uniq.push(id_cands);
            Err(map_unique(e, name, &uniq))
        }
    }
}

/// A CTE that makes indexes multikey for good (see [`crate::plan`]): the
/// collection is parameter `$p`, the index names `$p+1` (`text[]`).
fn multikey_cte(s: &Schema, p: usize) -> String {
    format!(
        ", mk AS (UPDATE {} SET multikey = true WHERE collection = ${p} AND name = ANY(${}::text[]) AND NOT multikey)",
        s.indexes(),
        p + 1
    )
}

pub(crate) async fn replace_one(
    cx: &mut Ctx,
    name: &str,
    id: &Bson,
    doc: Document,
) -> Result<bool> {
    let Some(meta) = load_meta(cx, name).await? else {
        return Ok(false);
    };
    let s = Arc::clone(&cx.s);
    // FOR UPDATE: a concurrent replace of the same document waits, then
    // sees this one's result, so index entries are never computed from a
    // stale old version.
    let rows = cx
        .query(
            &format!(
                "SELECT rid, doc FROM {} WHERE id = $1 FOR UPDATE",
                s.table(name)
            ),
            &[&encode_key(id)],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let rid: i64 = row.try_get(0)?;
    let old = decode(name, row.try_get(1)?)?;
    let doc = match doc.get("_id") {
        Some(new_id) if equals(new_id, id) => doc,
        Some(_) => {
            return Err(EngineError::InvalidDocument {
                collection: name.to_owned(),
                reason: "the replacement changes _id, which is immutable".into(),
            });
        }
        None => with_id_first(id.clone(), doc),
    };
    let bytes = encode(name, &doc)?;
    let mut sql = format!(
        "WITH u AS (UPDATE {} SET doc = $1 WHERE rid = $2::int8)",
        s.table(name)
    );
    let mut cols: Vec<KeyColumns> = Vec::new();
    let mut uniq = Vec::new();
    let mut multikey = Vec::new();
    for spec in &meta.indexes {
        let old_keys = index_keys(&old, spec);
        let new_keys = index_keys(&doc, spec);
        if new_keys.len() > 1 {
            multikey.push(spec.name.clone());
        }
        let del: Vec<Vec<u8>> = old_keys
            .keys()
            .filter(|k| !new_keys.contains_key(*k))
            .cloned()
            .collect();
        let add: BTreeMap<Vec<u8>, Bson> = new_keys
            .into_iter()
            .filter(|(k, _)| !old_keys.contains_key(k))
            .collect();
        if spec.unique {
            uniq.push(UniqueCands {
                table: ident(&idx_raw(name, &spec.name)),
                index: spec.name.clone(),
                path: spec.path.clone(),
                keys: add.clone().into_iter().collect(),
            });
        }
        cols.push((del, add.into_keys().collect()));
    }
    let (old_tags, new_tags) = (doc_tags(&old), doc_tags(&doc));
    let tag_del: Vec<Vec<u8>> = old_tags
        .difference(&new_tags)
        .map(|t| t.as_bytes().to_vec())
        .collect();
    let tag_add: Vec<Vec<u8>> = new_tags
        .difference(&old_tags)
        .map(|t| t.as_bytes().to_vec())
        .collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&bytes, &rid];
    for (i, (spec, (del, add))) in meta.indexes.iter().zip(&cols).enumerate() {
        let t = s.table(&idx_raw(name, &spec.name));
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", d{i} AS (DELETE FROM {t} WHERE rid = $2::int8 AND key = ANY(${p}::bytea[])), a{i} AS (INSERT INTO {t}(key, rid) SELECT k, $2::int8 FROM unnest(${}::bytea[]) k)",
            p + 1
        );
        params.push(del);
        params.push(add);
    }
    if meta.encrypted() {
        let t = s.table(&tags_raw(name));
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", td AS (DELETE FROM {t} WHERE rid = $2::int8 AND tag = ANY(${p}::bytea[])), ta AS (INSERT INTO {t}(tag, rid) SELECT k, $2::int8 FROM unnest(${}::bytea[]) k)",
            p + 1
        );
        params.push(&tag_del);
        params.push(&tag_add);
    }
    let collection = name.to_owned();
    if !multikey.is_empty() {
        sql.push_str(&multikey_cte(&s, params.len() + 1));
        params.push(&collection);
        params.push(&multikey);
    }
    sql.push_str(" SELECT 1");
    match cx.execute(&sql, &params).await {
        Ok(_) => Ok(true),
        Err(e) => Err(map_unique(e, name, &uniq)),
    }
}

/// How a filter's candidates are fetched: the planner's [`Access`] as
/// PostgreSQL SQL.
pub(crate) struct Plan {
    sql: String,
    params: Vec<Param>,
}

enum Param {
    Keys(Vec<Vec<u8>>),
    Key(Vec<u8>),
    Text(String),
}

impl Plan {
    fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| match p {
                Param::Keys(k) => k as &(dyn tokio_postgres::types::ToSql + Sync),
                Param::Key(k) => k as &(dyn tokio_postgres::types::ToSql + Sync),
                Param::Text(t) => t as &(dyn tokio_postgres::types::ToSql + Sync),
            })
            .collect()
    }
}

impl Shape for Meta {
    fn indexes(&self) -> &[IndexSpec] {
        &self.indexes
    }
    fn has_tag_index(&self) -> bool {
        self.encrypted()
    }
}

/// Whether a read locks the rows it returns until the transaction ends
/// (`FOR UPDATE`: a delete's victims, so a concurrent writer waits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowLock {
    /// A plain read.
    None,
    /// `SELECT ... FOR UPDATE`.
    ForUpdate,
}

/// PostgreSQL's parameters: `$N` with a cast, typed values.
struct Postgres<'s>(&'s Schema);

impl Dialect for Postgres<'_> {
    type Param = Param;
    fn placeholder(&self, n: usize, ty: SqlType) -> String {
        match ty {
            SqlType::Bytes => format!("${n}::bytea"),
            SqlType::Text => format!("${n}::text"),
        }
    }
    fn bytes(&self, key: Vec<u8>) -> Param {
        Param::Key(key)
    }
    fn text(&self, name: String) -> Param {
        Param::Text(name)
    }
    fn indexes_table(&self) -> String {
        self.0.indexes()
    }
}

/// The candidate query of `filter` on `meta`'s collection (see
/// [`crate::plan::access`]).
pub(crate) fn plan(s: &Schema, meta: &Meta, filter: &Filter, lock: RowLock) -> Plan {
    let table = s.table(&meta.name);
    let lock = match lock {
        RowLock::ForUpdate => " FOR UPDATE",
        RowLock::None => "",
    };
    let mut params = Vec::new();
    let rids = match plan::access(meta, filter) {
        Access::Scan => {
            return Plan {
                sql: format!("SELECT rid, doc FROM {table} ORDER BY rid{lock}"),
                params,
            };
        }
        Access::Ids(keys) => {
            return Plan {
                sql: format!(
                    "SELECT rid, doc FROM {table} WHERE id = ANY($1::bytea[]) ORDER BY rid{lock}"
                ),
                params: vec![Param::Keys(keys)],
            };
        }
        Access::Tags(tags) => {
            params.push(Param::Keys(tags));
            format!(
                "SELECT rid FROM {} WHERE tag = ANY($1::bytea[])",
                s.table(&tags_raw(&meta.name))
            )
        }
        Access::Keys { index, keys } => {
            params.push(Param::Keys(keys));
            format!(
                "SELECT rid FROM {} WHERE key = ANY($1::bytea[])",
                s.table(&idx_raw(&meta.name, &index.name))
            )
        }
        Access::Range { index, range } => {
            let cond = plan::key_conditions(&Postgres(s), &meta.name, index, &range, &mut params);
            format!(
                "SELECT rid FROM {} WHERE {cond}",
                s.table(&idx_raw(&meta.name, &index.name))
            )
        }
    };
    Plan {
        sql: format!("SELECT rid, doc FROM {table} WHERE rid IN ({rids}) ORDER BY rid{lock}"),
        params,
    }
}

/// What `take` keeps of each matching row (in the form `want` asks for),
/// in insertion order, until it has kept `limit`.
#[allow(clippy::too_many_arguments)] // one scan for find, find_raw, count and delete
async fn scan<T>(
    cx: &mut Ctx,
    meta: &Meta,
    filter: &Filter,
    lock: RowLock,
    want: Want,
    limit: usize,
    mut take: impl FnMut(i64, Found<'_>) -> Option<T>,
) -> Result<Vec<T>> {
    let s = Arc::clone(&cx.s);
    let plan = plan(&s, meta, filter, lock);
    let rows = cx.query(&plan.sql, &plan.refs()).await?;
    let mut out = Vec::new();
    for r in &rows {
        if out.len() >= limit {
            break;
        }
        if let Some(found) = raw::judge(&meta.name, filter, want, r.try_get(1)?)? {
            out.extend(take(r.try_get(0)?, found));
        }
    }
    Ok(out)
}

/// A matching row's document ([`Want::Documents`]) with its rid.
fn document(rid: i64, found: Found<'_>) -> Option<(i64, Document)> {
    match found {
        Found::Document(d) => Some((rid, d)),
        Found::Counted | Found::Bytes(_) => None,
    }
}

pub(crate) async fn explain(cx: &mut Ctx, name: &str, filter: &Filter) -> Result<Vec<String>> {
    let meta = load_meta(cx, name)
        .await?
        .ok_or_else(|| EngineError::CollectionNotFound(name.to_owned()))?;
    let s = Arc::clone(&cx.s);
    let plan = plan(&s, &meta, filter, RowLock::None);
    let rows = cx
        .query(&format!("EXPLAIN {}", plan.sql), &plan.refs())
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, String>(0).map_err(EngineError::from))
        .collect()
}

pub(crate) async fn find(
    cx: &mut Ctx,
    name: &str,
    filter: &Filter,
    opts: &FindOptions,
) -> Result<Vec<Document>> {
    let Some(meta) = load_meta(cx, name).await? else {
        return Ok(Vec::new());
    };
    let shape = FindShape::new(opts)?;
    let wanted = shape.wanted();
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let docs = scan(
        cx,
        &meta,
        filter,
        RowLock::None,
        Want::Documents,
        wanted,
        document,
    )
    .await?;
    Ok(shape.finish(docs.into_iter().map(|(_, d)| d).collect()))
}

/// [`find`] as the stored bytes, copied once each. With a sort or a
/// projection the documents are needed, so it is `find`'s answer encoded.
pub(crate) async fn find_raw(
    cx: &mut Ctx,
    name: &str,
    filter: &Filter,
    opts: &FindOptions,
) -> Result<Vec<RawDocumentBuf>> {
    if !bytes_as_stored(opts) {
        return find(cx, name, filter, opts)
            .await?
            .iter()
            .map(|d| encode_raw(name, d))
            .collect();
    }
    let Some(meta) = load_meta(cx, name).await? else {
        return Ok(Vec::new());
    };
    let (skip, limit) = window(opts);
    let mut seen = 0usize;
    scan(
        cx,
        &meta,
        filter,
        RowLock::None,
        Want::Bytes,
        limit,
        |_, found| {
            seen += 1;
            match found {
                Found::Bytes(raw) if seen > skip => Some(raw.to_raw_document_buf()),
                _ => None,
            }
        },
    )
    .await
}

pub(crate) async fn count(cx: &mut Ctx, name: &str, filter: &Filter) -> Result<u64> {
    let Some(meta) = load_meta(cx, name).await? else {
        return Ok(0);
    };
    if matches!(filter, Filter::And(fs) if fs.is_empty()) {
        let s = Arc::clone(&cx.s);
        let rows = cx
            .query(&format!("SELECT count(*) FROM {}", s.table(name)), &[])
            .await?;
        let n: i64 = rows.first().map_or(Ok(0), |r| r.try_get(0))?;
        return Ok(u64::try_from(n).unwrap_or(0));
    }
    let counted = scan(
        cx,
        &meta,
        filter,
        RowLock::None,
        Want::Count,
        usize::MAX,
        |_, _| Some(()),
    )
    .await?;
    Ok(counted.len() as u64)
}

pub(crate) async fn delete(
    cx: &mut Ctx,
    name: &str,
    filter: &Filter,
    scope: DeleteScope,
) -> Result<u64> {
    let Some(meta) = load_meta(cx, name).await? else {
        return Ok(0);
    };
    let victims = scan(
        cx,
        &meta,
        filter,
        RowLock::ForUpdate,
        Want::Documents,
        scope.limit(),
        document,
    )
    .await?;
    if victims.is_empty() {
        return Ok(0);
    }
    let s = Arc::clone(&cx.s);
    let rids: Vec<i64> = victims.iter().map(|(r, _)| *r).collect();
    let mut cols: Vec<(Vec<Vec<u8>>, Vec<i64>)> = Vec::new();
    for spec in &meta.indexes {
        let mut c = (Vec::new(), Vec::new());
        for (rid, d) in &victims {
            for k in index_keys(d, spec).into_keys() {
                c.0.push(k);
                c.1.push(*rid);
            }
        }
        cols.push(c);
    }
    let (mut tags, mut tag_rids) = (Vec::new(), Vec::new());
    if meta.encrypted() {
        for (rid, d) in &victims {
            for t in doc_tags(d) {
                tags.push(t.as_bytes().to_vec());
                tag_rids.push(*rid);
            }
        }
    }
    let mut sql = String::from("WITH x AS (SELECT 1)");
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for (i, (spec, c)) in meta.indexes.iter().zip(&cols).enumerate() {
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", d{i} AS (DELETE FROM {} WHERE (key, rid) IN (SELECT * FROM unnest(${p}::bytea[], ${}::int8[])))",
            s.table(&idx_raw(name, &spec.name)),
            p + 1
        );
        params.push(&c.0);
        params.push(&c.1);
    }
    if meta.encrypted() {
        let p = params.len() + 1;
        let _ = write!(
            sql,
            ", td AS (DELETE FROM {} WHERE (tag, rid) IN (SELECT * FROM unnest(${p}::bytea[], ${}::int8[])))",
            s.table(&tags_raw(name)),
            p + 1
        );
        params.push(&tags);
        params.push(&tag_rids);
    }
    let p = params.len() + 1;
    let _ = write!(
        sql,
        " DELETE FROM {} WHERE rid = ANY(${p}::int8[])",
        s.table(name)
    );
    params.push(&rids);
    cx.execute(&sql, &params).await?;
    Ok(victims.len() as u64)
}

// ---- QE state ----

/// [`require_encrypted`], then `sql` (a read of the collection's ESC).
/// When the catalog entry is not known yet and the transaction has not
/// begun — a QE query's first probe — `sql` is sent speculatively in the
/// catalog read's round trip and its answer kept only if the collection is
/// encrypted (else the operation fails, undoing whatever the speculative
/// read did to the transaction).
async fn encrypted_then_query(
    cx: &mut Ctx,
    c: &str,
    sql: &str,
    params: &super::ctx::Params<'_>,
) -> Result<Vec<tokio_postgres::Row>> {
    if cx.catalog == CatalogRead::Locked && cx.before_begin && cx.cached(c).is_none() {
        let s = Arc::clone(&cx.s);
        let key = s.collection_key(c);
        if let Some((rows, speculative)) = cx
            .execute_query_then_try((LOCK_SHARED, &[&key]), (&s.meta_sql, &[&c]), (sql, params))
            .await?
        {
            let meta = parse_meta(c, &rows)?
                .map(Arc::new)
                .ok_or_else(|| EngineError::CollectionNotFound(c.to_owned()))?;
            if !meta.encrypted() {
                return Err(EngineError::NotEncrypted(c.to_owned()));
            }
            cx.remember(meta);
            return speculative;
        }
    }
    require_encrypted(cx, c).await?;
    cx.query(sql, params).await
}

pub(crate) async fn esc_get_many(
    cx: &mut Ctx,
    c: &str,
    ids: &[EscId],
) -> Result<Vec<Option<EscEntry>>> {
    if ids.is_empty() {
        require_encrypted(cx, c).await?;
        return Ok(Vec::new());
    }
    let keys: Vec<Vec<u8>> = ids.iter().map(|i| i.as_bytes().to_vec()).collect();
    let sql = format!(
        "SELECT id, value FROM {} WHERE id = ANY($1::bytea[])",
        cx.s.table(&esc_name(c))
    );
    let rows = encrypted_then_query(cx, c, &sql, &[&keys]).await?;
    let mut found: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::with_capacity(rows.len());
    for r in &rows {
        found.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(ids
        .iter()
        .map(|i| {
            found.get(&i.as_bytes()[..]).map(|v| EscEntry {
                value: v.clone().map(EscValue),
            })
        })
        .collect())
}

/// Insert an ESC row. `ON CONFLICT DO NOTHING` turns a taken id into "0
/// rows" instead of an error: the statement never fails on a conflict, so
/// the transaction needs no rollback to stay usable and the server log is
/// not filled with duplicate-key errors under contention. When the id is
/// held by a concurrent uncommitted insert, PostgreSQL waits for that
/// transaction and reports the conflict only if it commits.
pub(crate) async fn esc_insert(
    cx: &mut Ctx,
    c: &str,
    id: &EscId,
    value: Option<&EscValue>,
    upsert: bool,
) -> Result<()> {
    require_encrypted(cx, c).await?;
    let table = cx.s.table(&esc_name(c));
    let sql = if upsert {
        format!(
            "INSERT INTO {table}(id, value) VALUES($1, $2) ON CONFLICT (id) DO UPDATE SET value = excluded.value"
        )
    } else {
        format!("INSERT INTO {table}(id, value) VALUES($1, $2) ON CONFLICT (id) DO NOTHING")
    };
    let idb: &[u8] = id.as_bytes();
    let v: Option<&[u8]> = value.map(|v| v.0.as_slice());
    let n = cx.execute(&sql, &[&idb, &v]).await?;
    if n == 0 {
        return Err(EngineError::EscIdConflict {
            collection: c.to_owned(),
        });
    }
    Ok(())
}

/// Insert ESC rows in one statement: all of them, or — when an id is taken
/// (by an earlier transaction or twice in `docs`) — an
/// [`EngineError::EscIdConflict`], the rows that did go in being undone
/// with the operation's savepoint. In a fail-fast transaction the
/// statement is deferred into the next statement's round trip and its
/// row count checked there ([`Ctx::defer_expecting`]): the conflict then
/// fails that next operation, and the transaction never commits.
pub(crate) async fn esc_insert_many(
    cx: &mut Ctx,
    c: &str,
    docs: &[(EscId, Option<EscValue>)],
) -> Result<()> {
    require_encrypted(cx, c).await?;
    if docs.is_empty() {
        return Ok(());
    }
    let ids: Vec<Vec<u8>> = docs.iter().map(|(id, _)| id.as_bytes().to_vec()).collect();
    let values: Vec<Option<Vec<u8>>> = docs
        .iter()
        .map(|(_, v)| v.as_ref().map(|v| v.0.clone()))
        .collect();
    let sql = format!(
        "INSERT INTO {}(id, value) SELECT * FROM unnest($1::bytea[], $2::bytea[]) ON CONFLICT (id) DO NOTHING",
        cx.s.table(&esc_name(c))
    );
    cx.defer_expecting(
        sql,
        vec![Box::new(ids), Box::new(values)],
        docs.len() as u64,
        c,
    )
    .await
}

/// Compaction and cleanup: the compaction lock (one compaction at a time),
/// then the collection lock exclusively, so that no writer (they hold it
/// shared from their first statement) runs its ESC probes across the
/// compaction's commit. Taken before anything else in the transaction;
/// the transaction's own later shared requests do not conflict with it.
pub(crate) async fn lock_for_maintenance(cx: &mut Ctx, c: &str) -> Result<()> {
    let s = Arc::clone(&cx.s);
    lock_exclusive(cx, s.compact_key(c)).await?;
    lock_exclusive(cx, s.collection_key(c)).await
}

/// One transaction-scoped advisory lock per ESC counter. The key is the
/// counter's tag token (already uniformly random) folded with the
/// collection's name into 64 bits; a collision between two counters only
/// makes their writers queue, never wrong. The two-`int4` form of the lock
/// lives in a key space of its own, apart from the catalog's `bigint` locks.
/// Callers pass the counters sorted, so two writers lock in the same order
/// and cannot deadlock.
pub(crate) async fn esc_lock_counters(cx: &mut Ctx, c: &str, counters: &[[u8; 32]]) -> Result<()> {
    if counters.is_empty() {
        return Ok(());
    }
    let salt = c.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut keys: Vec<i64> = counters
        .iter()
        .map(|t| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[..8]);
            i64::from_le_bytes(b) ^ i64::from_le_bytes(salt.to_le_bytes())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    // Deferred: sent ahead of the next statement (the first ESC probe), in
    // its round trip. The probe starts after the locks are granted, so
    // under READ COMMITTED it still reads a snapshot taken after them.
    cx.defer(
        "SELECT pg_advisory_xact_lock((k >> 32)::int4, (k & 4294967295)::bit(32)::int4) \
         FROM unnest($1::bigint[]) WITH ORDINALITY AS t(k, n) ORDER BY n"
            .to_owned(),
        vec![Box::new(keys)],
    )
    .await
}

pub(crate) async fn esc_delete_many(cx: &mut Ctx, c: &str, ids: &[EscId]) -> Result<u64> {
    require_encrypted(cx, c).await?;
    let keys: Vec<Vec<u8>> = ids.iter().map(|i| i.as_bytes().to_vec()).collect();
    let sql = format!(
        "DELETE FROM {} WHERE id = ANY($1::bytea[])",
        cx.s.table(&esc_name(c))
    );
    cx.execute(&sql, &[&keys]).await
}

async fn count_table(cx: &mut Ctx, raw: &str) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM {}", cx.s.table(raw));
    let rows = cx.query(&sql, &[]).await?;
    let n: i64 = rows.first().map_or(Ok(0), |r| r.try_get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(crate) async fn esc_count(cx: &mut Ctx, c: &str) -> Result<u64> {
    require_encrypted(cx, c).await?;
    count_table(cx, &esc_name(c)).await
}

pub(crate) async fn esc_non_anchor_ids(cx: &mut Ctx, c: &str) -> Result<Vec<EscId>> {
    require_encrypted(cx, c).await?;
    let sql = format!(
        "SELECT id FROM {} WHERE value IS NULL ORDER BY id",
        cx.s.table(&esc_name(c))
    );
    let rows = cx.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| {
            let raw: &[u8] = r.try_get(0)?;
            EscId::from_slice(raw).ok_or_else(|| EngineError::Corrupt {
                collection: esc_name(c),
                reason: format!("ESC id of {} bytes, expected 32", raw.len()),
            })
        })
        .collect()
}

pub(crate) async fn ecoc_append(cx: &mut Ctx, c: &str, field: &str, value: &[u8]) -> Result<()> {
    require_encrypted(cx, c).await?;
    let sql = format!(
        "INSERT INTO {}(field, value) VALUES($1, $2)",
        cx.s.table(&ecoc_name(c))
    );
    // Deferred, as in `ecoc_append_many`.
    cx.defer(
        sql,
        vec![Box::new(field.to_owned()), Box::new(value.to_vec())],
    )
    .await
}

/// Append ECOC rows in one statement, in order. Deferred: the rows go out
/// ahead of the transaction's next statement (the document insert, or the
/// `COMMIT`), in its round trip. Nothing reads the ECOC in between but
/// compaction, whose statements come later in the same pipeline.
pub(crate) async fn ecoc_append_many(cx: &mut Ctx, c: &str, entries: &[EcocEntry]) -> Result<()> {
    require_encrypted(cx, c).await?;
    if entries.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = entries.iter().map(|e| e.field_name.clone()).collect();
    let values: Vec<Vec<u8>> = entries.iter().map(|e| e.value.clone()).collect();
    let sql = format!(
        "INSERT INTO {}(field, value) SELECT u.f, u.v FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(f, v, n) ORDER BY u.n",
        cx.s.table(&ecoc_name(c))
    );
    cx.defer(sql, vec![Box::new(fields), Box::new(values)])
        .await
}

pub(crate) async fn ecoc_count(cx: &mut Ctx, c: &str) -> Result<u64> {
    require_encrypted(cx, c).await?;
    count_table(cx, &ecoc_name(c)).await
}

pub(crate) async fn ecoc_begin_compaction(cx: &mut Ctx, c: &str) -> Result<bool> {
    require_encrypted(cx, c).await?;
    let s = Arc::clone(&cx.s);
    // Two compactions of one collection must not both rename: the second
    // waits here, then sees `.compact` and resumes instead.
    lock_exclusive(cx, s.compact_key(c)).await?;
    if tables_exist(cx, &[ecoc_compact_name(c)]).await? {
        return Ok(false);
    }
    cx.batch(&format!(
        "ALTER TABLE {} RENAME TO {}; CREATE TABLE {};",
        s.table(&ecoc_name(c)),
        super::ctx::q(&ident(&ecoc_compact_name(c))),
        ecoc_def(&s, c)
    ))
    .await?;
    Ok(true)
}

pub(crate) async fn ecoc_read(
    cx: &mut Ctx,
    c: &str,
    generation: EcocGeneration,
) -> Result<Vec<EcocEntry>> {
    require_encrypted(cx, c).await?;
    let table = match generation {
        EcocGeneration::Live => ecoc_name(c),
        EcocGeneration::Compacting => ecoc_compact_name(c),
    };
    if !tables_exist(cx, std::slice::from_ref(&table)).await? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT field, value FROM {} ORDER BY rid",
        cx.s.table(&table)
    );
    let rows = cx.query(&sql, &[]).await?;
    rows.iter()
        .map(|r| {
            Ok(EcocEntry {
                field_name: r.try_get(0)?,
                value: r.try_get(1)?,
            })
        })
        .collect()
}

pub(crate) async fn ecoc_drop_compact(cx: &mut Ctx, c: &str) -> Result<()> {
    require_encrypted(cx, c).await?;
    let sql = format!("DROP TABLE IF EXISTS {}", cx.s.table(&ecoc_compact_name(c)));
    cx.batch(&sql).await
}
