//! One pooled connection with its statement pipeline: the schema's table
//! names and lock keys, a pending prefix (`BEGIN …`, `SAVEPOINT …`) that is
//! pipelined with the next statement instead of costing a round trip of its
//! own, and the per-transaction catalog cache.

use std::collections::HashMap;
use std::sync::Arc;

use bson::Document;
use deadpool_postgres::{ClientWrapper, Object};
use futures_util::future::{try_join, try_join3};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::engine::{CollectionInfo, CreateCollectionOptions, IndexSpec};
use crate::{EngineError, Result};

/// Longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones
/// are silently truncated by the server, so we shorten them ourselves.
const MAX_IDENT: usize = 63;

/// FNV-1a, 64 bit: a stable hash for lock keys and shortened identifiers.
/// Hand-written because it is four lines and must never change between
/// versions (lock keys are shared by every process using a schema).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Quote an SQL identifier.
pub(crate) fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL table name for a logical name: the name itself when it
/// fits in 63 bytes, else a prefix plus a hash of the whole name.
pub(crate) fn ident(raw: &str) -> String {
    if raw.len() <= MAX_IDENT {
        return raw.to_owned();
    }
    let mut cut = MAX_IDENT - 17;
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}~{:016x}",
        raw.get(..cut).unwrap_or_default(),
        fnv64(raw.as_bytes())
    )
}

fn lock_key(bytes: &[u8]) -> i64 {
    i64::from_ne_bytes(fnv64(bytes).to_ne_bytes())
}

/// Names and lock keys of one cipherdoc database (= one PostgreSQL schema).
#[derive(Debug)]
pub(crate) struct Schema {
    pub(crate) name: String,
    quoted: String,
    pub(crate) meta_sql: String,
}

impl Schema {
    pub(crate) fn new(name: &str) -> Self {
        let quoted = q(name);
        let meta_sql = format!(
            "SELECT c.encrypted_fields, i.name, i.path, i.is_unique, i.sparse \
             FROM {quoted}.\"$catalog\" c LEFT JOIN {quoted}.\"$indexes\" i ON i.collection = c.name \
             WHERE c.name = $1 ORDER BY i.name COLLATE \"C\""
        );
        Self {
            name: name.to_owned(),
            quoted,
            meta_sql,
        }
    }
    /// Schema-qualified, quoted table for a logical table name.
    pub(crate) fn table(&self, raw: &str) -> String {
        format!("{}.{}", self.quoted, q(&ident(raw)))
    }
    pub(crate) fn quoted(&self) -> &str {
        &self.quoted
    }
    pub(crate) fn catalog(&self) -> String {
        format!("{}.\"$catalog\"", self.quoted)
    }
    pub(crate) fn indexes(&self) -> String {
        format!("{}.\"$indexes\"", self.quoted)
    }
    /// Advisory lock key of a collection: writers take it shared, DDL on
    /// the collection takes it exclusive.
    pub(crate) fn collection_key(&self, c: &str) -> i64 {
        lock_key(format!("cipherdoc\0{}\0{c}", self.name).as_bytes())
    }
    /// Advisory lock key serialising every catalog change of the schema.
    /// (`$` cannot appear in a collection name, so it never collides.)
    pub(crate) fn ddl_key(&self) -> i64 {
        lock_key(format!("cipherdoc\0{}\0$ddl", self.name).as_bytes())
    }
    /// Advisory lock key serialising compactions of one collection.
    pub(crate) fn compact_key(&self, c: &str) -> i64 {
        lock_key(format!("cipherdoc\0{}\0{c}\0$compact", self.name).as_bytes())
    }
    /// Advisory lock key for creating the schema itself.
    pub(crate) fn init_key(&self) -> i64 {
        lock_key(format!("cipherdoc\0{}\0$init", self.name).as_bytes())
    }
}

/// A collection's catalog entry.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) name: String,
    pub(crate) encrypted_fields: Option<Document>,
    pub(crate) indexes: Vec<IndexSpec>,
}

impl Meta {
    pub(crate) fn encrypted(&self) -> bool {
        self.encrypted_fields.is_some()
    }
    pub(crate) fn info(&self) -> CollectionInfo {
        CollectionInfo {
            name: self.name.clone(),
            options: CreateCollectionOptions {
                encrypted_fields: self.encrypted_fields.clone(),
            },
            indexes: self.indexes.clone(),
        }
    }
}

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A pooled connection in use. While `dirty` (a transaction may be open on
/// it, e.g. because an operation was cancelled midway) it is never handed
/// back to the pool: dropping it closes the connection, and the server
/// rolls back whatever was open.
pub(crate) struct Ctx {
    obj: Option<Object>,
    dirty: bool,
    pub(crate) s: Arc<Schema>,
    /// Simple statements to send just before the next statement, in the
    /// same round trip (pipelined).
    prefix: Option<String>,
    /// Take the shared collection lock when reading the catalog, and cache
    /// what was read for the rest of the transaction (writers only).
    pub(crate) locked: bool,
    cache: HashMap<String, Arc<Meta>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("schema", &self.s.name)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) fn new(obj: Object, s: Arc<Schema>, locked: bool) -> Self {
        Self {
            obj: Some(obj),
            dirty: false,
            s,
            prefix: None,
            locked,
            cache: HashMap::new(),
        }
    }

    /// Move the connection (and its state) out, leaving `self` without one.
    pub(crate) fn detach(&mut self) -> Ctx {
        Ctx {
            obj: self.obj.take(),
            dirty: std::mem::take(&mut self.dirty),
            s: Arc::clone(&self.s),
            prefix: self.prefix.take(),
            locked: self.locked,
            cache: std::mem::take(&mut self.cache),
        }
    }

    /// Whether a transaction may be open on the connection.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn client(&self) -> Result<&ClientWrapper> {
        self.obj.as_deref().ok_or(EngineError::TransactionClosed(
            "its connection was released",
        ))
    }

    pub(crate) fn set_prefix(&mut self, p: String) {
        self.prefix = Some(p);
    }
    /// Whether the prefix set last was sent; clears it if it was not.
    pub(crate) fn prefix_was_sent(&mut self) -> bool {
        self.prefix.take().is_none()
    }
    fn take_prefix(&mut self) -> Option<String> {
        let p = self.prefix.take();
        if p.is_some() {
            self.dirty = true;
        }
        p
    }
    /// A transaction may be open on the connection from now on.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }
    /// The connection is known to have no transaction open.
    pub(crate) fn mark_clean(&mut self) {
        self.dirty = false;
    }
    pub(crate) fn clear_cache(&mut self) {
        self.cache.clear();
    }
    pub(crate) fn cached(&self, name: &str) -> Option<Arc<Meta>> {
        if self.locked {
            self.cache.get(name).cloned()
        } else {
            None
        }
    }
    pub(crate) fn remember(&mut self, meta: Arc<Meta>) {
        if self.locked {
            self.cache.insert(meta.name.clone(), meta);
        }
    }
    pub(crate) fn forget(&mut self, name: &str) {
        self.cache.remove(name);
    }

    /// Send the pending prefix on its own (before DDL batches).
    async fn flush_prefix(&mut self) -> Result<()> {
        if let Some(p) = self.take_prefix() {
            self.client()?.batch_execute(&p).await?;
        }
        Ok(())
    }

    pub(crate) async fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let stmt = self.client()?.prepare_cached(sql).await?;
        let prefix = self.take_prefix();
        let c = self.client()?;
        Ok(match prefix {
            Some(p) => {
                try_join(c.batch_execute(&p), c.query(&stmt, params))
                    .await?
                    .1
            }
            None => c.query(&stmt, params).await?,
        })
    }

    pub(crate) async fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let stmt = self.client()?.prepare_cached(sql).await?;
        let prefix = self.take_prefix();
        let c = self.client()?;
        Ok(match prefix {
            Some(p) => {
                try_join(c.batch_execute(&p), c.execute(&stmt, params))
                    .await?
                    .1
            }
            None => c.execute(&stmt, params).await?,
        })
    }

    /// Run `first` (typically a lock) and then `second` in one round trip
    /// (with the prefix before them); `second` starts after `first` has
    /// finished, so under READ COMMITTED it reads a snapshot taken after
    /// the lock was granted.
    pub(crate) async fn execute_then_query(
        &mut self,
        first: &str,
        first_params: &Params<'_>,
        second: &str,
        second_params: &Params<'_>,
    ) -> Result<Vec<Row>> {
        let s1 = self.client()?.prepare_cached(first).await?;
        let s2 = self.client()?.prepare_cached(second).await?;
        let prefix = self.take_prefix();
        let c = self.client()?;
        let pre = async {
            match &prefix {
                Some(p) => c.batch_execute(p).await,
                None => Ok(()),
            }
        };
        let ((), _, rows) = try_join3(
            pre,
            c.execute(&s1, first_params),
            c.query(&s2, second_params),
        )
        .await?;
        Ok(rows)
    }

    /// Simple-protocol statements (DDL); no parameters.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        self.flush_prefix().await?;
        self.client()?.batch_execute(sql).await?;
        Ok(())
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if self.dirty {
            if let Some(obj) = self.obj.take() {
                // Detach from the pool; dropping the client closes the
                // socket and the server rolls the open transaction back.
                drop(Object::take(obj));
            }
        }
    }
}
