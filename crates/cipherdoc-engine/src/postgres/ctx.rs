//! One pooled connection with its statement pipeline: the schema's table
//! names and lock keys, a pending prefix (`BEGIN …`, `SAVEPOINT …`) and
//! deferred statements that are pipelined with the next statement instead
//! of costing a round trip of their own, and the per-transaction catalog
//! cache.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bson::Document;
use deadpool_postgres::{ClientWrapper, Object};
use futures_util::future::{join3, poll_fn};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

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
    /// Documents this engine inserted per collection, and the `ANALYZE`
    /// statements that growth has made due (see [`Schema::note_growth`]).
    growth: std::sync::Mutex<Growth>,
}

#[derive(Debug, Default)]
struct Growth {
    inserted: HashMap<String, u64>,
    due: Vec<String>,
}

/// The first number of inserted documents at which a collection's tables
/// are analyzed; then at every doubling.
const ANALYZE_FROM: u64 = 1024;

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
            growth: std::sync::Mutex::default(),
        }
    }

    /// Counts `n` documents inserted into `collection`. When the count
    /// reaches 1024 and each doubling after it, an `ANALYZE` of the
    /// collection's `tables` becomes due; it runs after the transaction
    /// commits ([`Ctx::analyze_due`]).
    ///
    /// Why by hand: a cached statement keeps the generic plan made when its
    /// tables were nearly empty (a sequential scan for `id = ANY($1)`) until
    /// their statistics change. Autovacuum analyzes growing tables, but not
    /// at once, and not at all where it is off; a bulk load would then
    /// compare every row with every id, quadratic in the load. An analyze
    /// at each doubling costs O(log n) analyzes per load and keeps the plan
    /// cache's generic plans, so no statement pays for planning each time.
    pub(crate) fn note_growth(
        &self,
        collection: &str,
        n: usize,
        tables: impl FnOnce() -> Vec<String>,
    ) {
        let mut g = self
            .growth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up before inserting: no allocation on the insert path
        // once the collection is counted.
        let count = if let Some(c) = g.inserted.get_mut(collection) {
            c
        } else {
            g.inserted.entry(collection.to_owned()).or_default()
        };
        let before = *count;
        *count = before.saturating_add(n as u64);
        let after = *count;
        let doublings = |c: u64| (c / ANALYZE_FROM).checked_ilog2();
        if doublings(after) != doublings(before) {
            let sql = format!("ANALYZE {}", tables().join(", "));
            g.due.push(sql);
        }
    }

    /// Starts `collection`'s count again: its tables were dropped or
    /// renamed, so what was counted no longer describes them.
    pub(crate) fn forget_growth(&self, collection: &str) {
        self.growth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .inserted
            .remove(collection);
    }

    fn take_due(&self) -> Vec<String> {
        let mut g = self
            .growth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut g.due)
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

/// An owned statement parameter (for statements sent later).
pub(crate) type OwnedParam = Box<dyn ToSql + Sync + Send>;

/// A statement whose result nobody waits for: it is sent in the same round
/// trip as the next statement, ahead of it (see [`Ctx::defer`]).
struct Deferred {
    sql: String,
    params: Vec<OwnedParam>,
    /// [`Ctx::defer_expecting`]: the rows it must affect, and the
    /// collection whose ESC conflict fewer rows mean.
    expect: Option<(u64, String)>,
}

impl Deferred {
    /// The collection whose ESC conflict `affected` rows mean, if they are
    /// fewer than the statement must affect.
    fn short(&self, affected: u64) -> Option<&str> {
        match &self.expect {
            Some((rows, collection)) if affected < *rows => Some(collection),
            _ => None,
        }
    }
}

/// How the deferred statements sent ahead of a statement went wrong.
enum Failure {
    /// One failed: the transaction is aborted.
    Error(tokio_postgres::Error),
    /// An ESC insert affected fewer rows than it must (an id was taken):
    /// the transaction is intact but must not commit.
    Short { collection: String },
}

/// At most this many statements wait to be sent; one more sends them.
const MAX_DEFERRED: usize = 16;

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;
type BoxedExec<'a> = Pin<Box<dyn Future<Output = PgResult<u64>> + Send + 'a>>;

/// Await `futs` together, polling them in order every time, so that their
/// requests reach the connection in this order (tokio-postgres sends a
/// request on its future's first poll and answers requests in order).
async fn join_in_order(mut futs: Vec<BoxedExec<'_>>) -> Vec<PgResult<u64>> {
    let mut out: Vec<Option<PgResult<u64>>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// What goes out ahead of the next statement: the deferred statements
/// (prepared), then the prefix.
struct Ahead {
    deferred: Vec<(Statement, Deferred)>,
    prefix: Option<String>,
}

impl Ahead {
    /// Send everything ahead of `main`, in one round trip with it. A failed
    /// deferred statement is reported first (it aborts the transaction, so
    /// what follows it fails too).
    async fn run<T>(
        &self,
        c: &ClientWrapper,
        main: impl Future<Output = PgResult<T>> + Send,
    ) -> (Option<Failure>, PgResult<T>) {
        let deferred = join_in_order(
            self.deferred
                .iter()
                .map(|(stmt, d)| -> BoxedExec<'_> {
                    Box::pin(async move {
                        let params: Vec<&(dyn ToSql + Sync)> = d
                            .params
                            .iter()
                            .map(|p| &**p as &(dyn ToSql + Sync))
                            .collect();
                        c.execute(stmt, &params).await
                    })
                })
                .collect(),
        );
        let pre = async {
            match &self.prefix {
                Some(p) => c.batch_execute(p).await,
                None => Ok(()),
            }
        };
        let (sent, prefixed, answer) = join3(deferred, pre, main).await;
        let answer = prefixed.and(answer);
        let mut short = None;
        for (r, (_, def)) in sent.into_iter().zip(&self.deferred) {
            match r {
                Err(e) => return (Some(Failure::Error(e)), answer),
                Ok(n) => {
                    if let (None, Some(collection)) = (&short, def.short(n)) {
                        short = Some(Failure::Short {
                            collection: collection.to_owned(),
                        });
                    }
                }
            }
        }
        (short, answer)
    }
}

/// A pooled connection in use. While `dirty` (a transaction may be open on
/// it, e.g. because an operation was cancelled midway) it is never handed
/// back to the pool: dropping it closes the connection, and the server
/// rolls back whatever was open.
// Independent flags (connection state, locking mode, deferral); an enum
// would have to spell out their product.
/// How a context reads the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatalogRead {
    /// A plain read on every use (readers and DDL).
    Unlocked,
    /// Take the shared collection lock when reading the catalog, and cache
    /// what was read for the rest of the transaction (writers).
    Locked,
}

#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Ctx {
    obj: Option<Object>,
    dirty: bool,
    pub(crate) s: Arc<Schema>,
    /// Simple statements to send just before the next statement, in the
    /// same round trip (pipelined).
    prefix: Option<String>,
    /// How the catalog is read (writers lock and cache it).
    pub(crate) catalog: CatalogRead,
    cache: HashMap<String, Arc<Meta>>,
    /// Statements to send ahead of the next one (after the prefix was sent).
    deferred: Vec<Deferred>,
    /// Whether [`Ctx::defer`] may defer (else it executes at once).
    pub(crate) may_defer: bool,
    /// Whether [`Ctx::defer_expecting`] may defer: the transaction is
    /// fail-fast, so a short row count may fail a later operation instead
    /// of the one that made the statement (after which nothing commits).
    pub(crate) defer_checked: bool,
    /// The transaction was aborted outside the current operation's
    /// savepoint: a deferred statement failed, or a statement failed to
    /// prepare (before the operation's prefix went out).
    aborted: bool,
    /// The pending prefix opens the transaction (nothing was sent in it
    /// yet), so a failed prepare cannot abort it.
    pub(crate) before_begin: bool,
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
    pub(crate) fn new(obj: Object, s: Arc<Schema>, catalog: CatalogRead) -> Self {
        Self {
            obj: Some(obj),
            dirty: false,
            s,
            prefix: None,
            catalog,
            cache: HashMap::new(),
            deferred: Vec::new(),
            may_defer: false,
            defer_checked: false,
            aborted: false,
            before_begin: false,
        }
    }

    /// Move the connection (and its state) out, leaving `self` without one.
    pub(crate) fn detach(&mut self) -> Ctx {
        Ctx {
            obj: self.obj.take(),
            dirty: std::mem::take(&mut self.dirty),
            s: Arc::clone(&self.s),
            prefix: self.prefix.take(),
            catalog: self.catalog,
            cache: std::mem::take(&mut self.cache),
            deferred: std::mem::take(&mut self.deferred),
            may_defer: self.may_defer,
            defer_checked: self.defer_checked,
            aborted: self.aborted,
            before_begin: self.before_begin,
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
        if self.catalog == CatalogRead::Locked {
            self.cache.get(name).cloned()
        } else {
            None
        }
    }
    pub(crate) fn remember(&mut self, meta: Arc<Meta>) {
        if self.catalog == CatalogRead::Locked {
            self.cache.insert(meta.name.clone(), meta);
        }
    }
    pub(crate) fn forget(&mut self, name: &str) {
        self.cache.remove(name);
    }

    /// Send `sql` later, ahead of the next statement in the same round trip,
    /// instead of waiting for it now — when [`Ctx::may_defer`] allows (a
    /// transaction is open); otherwise it runs at once. For statements
    /// whose result is not needed and that practically never fail (locks,
    /// ECOC appends). If it fails after all, the next statement reports
    /// the error, [`Ctx::take_aborted`] says so, and the
    /// transaction can only be rolled back.
    pub(crate) async fn defer(&mut self, sql: String, params: Vec<OwnedParam>) -> Result<()> {
        let may = self.may_defer;
        self.enqueue(
            Deferred {
                sql,
                params,
                expect: None,
            },
            may,
        )
        .await
    }

    /// An ESC insert that must affect `rows` rows, fewer meaning that an
    /// id was taken ([`EngineError::EscIdConflict`] on `collection`).
    /// Deferred like [`Ctx::defer`] when [`Ctx::defer_checked`] allows
    /// (saving the insert's own round trip): the row count is then checked
    /// when the next statement's round trip returns, and a short count
    /// fails that operation, and `COMMIT` never goes out with such a
    /// statement unchecked. Otherwise it runs at once.
    pub(crate) async fn defer_expecting(
        &mut self,
        sql: String,
        params: Vec<OwnedParam>,
        rows: u64,
        collection: &str,
    ) -> Result<()> {
        let may = self.may_defer && self.defer_checked;
        self.enqueue(
            Deferred {
                sql,
                params,
                expect: Some((rows, collection.to_owned())),
            },
            may,
        )
        .await
    }

    /// Queue `d` for the next round trip when `may`, else run it now
    /// (checking its row count).
    async fn enqueue(&mut self, d: Deferred, may: bool) -> Result<()> {
        if !may {
            let refs: Vec<&(dyn ToSql + Sync)> = d
                .params
                .iter()
                .map(|p| &**p as &(dyn ToSql + Sync))
                .collect();
            let n = self.execute(&d.sql, &refs).await?;
            return match d.short(n) {
                Some(collection) => Err(EngineError::EscIdConflict {
                    collection: collection.to_owned(),
                }),
                None => Ok(()),
            };
        }
        if self.deferred.len() >= MAX_DEFERRED {
            self.flush().await?;
        }
        self.deferred.push(d);
        Ok(())
    }

    /// Whether the transaction was aborted outside the current operation's
    /// savepoint since the last call (see `aborted`): it can then only be
    /// rolled back.
    pub(crate) fn take_aborted(&mut self) -> bool {
        std::mem::take(&mut self.aborted)
    }

    /// `prepare_cached`. A statement that fails to prepare (a missing
    /// table) aborts an open transaction, and the operation's savepoint
    /// has not been sent yet to undo it alone.
    async fn prepare(&mut self, sql: &str) -> Result<Statement> {
        match self.client()?.prepare_cached(sql).await {
            Ok(s) => Ok(s),
            Err(e) => {
                if !self.before_begin {
                    self.aborted = true;
                }
                Err(e.into())
            }
        }
    }

    /// Forget the deferred statements (the transaction is rolled back).
    pub(crate) fn discard_deferred(&mut self) {
        self.deferred.clear();
    }

    /// Prepare what goes ahead of the next statement and take it out.
    async fn ahead(&mut self) -> Result<Ahead> {
        let mut deferred = Vec::with_capacity(self.deferred.len());
        for d in std::mem::take(&mut self.deferred) {
            let stmt = match self.client()?.prepare_cached(&d.sql).await {
                Ok(s) => s,
                Err(e) => {
                    self.aborted = true;
                    return Err(e.into());
                }
            };
            deferred.push((stmt, d));
        }
        Ok(Ahead {
            deferred,
            prefix: self.take_prefix(),
        })
    }

    /// The result of a pipeline: a failed deferred statement wins, then a
    /// short ESC insert.
    fn settle<T>(&mut self, r: (Option<Failure>, PgResult<T>)) -> Result<T> {
        match r {
            (Some(Failure::Error(e)), _) => {
                self.aborted = true;
                Err(e.into())
            }
            (Some(Failure::Short { collection }), _) => {
                Err(EngineError::EscIdConflict { collection })
            }
            (None, r) => Ok(r?),
        }
    }

    /// Send the deferred statements and the pending prefix on their own
    /// (before DDL batches).
    async fn flush(&mut self) -> Result<()> {
        let ahead = self.ahead().await?;
        if ahead.deferred.is_empty() && ahead.prefix.is_none() {
            return Ok(());
        }
        let r = ahead.run(self.client()?, async { Ok(()) }).await;
        self.settle(r)
    }

    /// Runs the `ANALYZE`s that inserts made due ([`Schema::note_growth`]),
    /// on this connection outside any transaction: call it after `COMMIT`.
    /// A failure (the collection was dropped meanwhile) only loses the
    /// statistics refresh, so it is logged, not returned.
    pub(crate) async fn analyze_due(&mut self) {
        for sql in self.s.take_due() {
            let r = match self.client() {
                Ok(c) => c.batch_execute(&sql).await.map_err(EngineError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "analyze after growth failed");
            }
        }
    }

    /// Send the deferred statements, then simple-protocol `sql` (`COMMIT`),
    /// in one round trip.
    pub(crate) async fn finish_with(&mut self, sql: &str) -> Result<()> {
        if self.deferred.iter().any(|d| d.expect.is_some()) {
            // Its row count must be seen before anything commits.
            self.flush().await?;
        }
        let ahead = self.ahead().await?;
        let c = self.client()?;
        let r = ahead.run(c, c.batch_execute(sql)).await;
        self.settle(r)
    }

    pub(crate) async fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>> {
        let stmt = self.prepare(sql).await?;
        let ahead = self.ahead().await?;
        let c = self.client()?;
        let r = ahead.run(c, c.query(&stmt, params)).await;
        self.settle(r)
    }

    pub(crate) async fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64> {
        let stmt = self.prepare(sql).await?;
        let ahead = self.ahead().await?;
        let c = self.client()?;
        let r = ahead.run(c, c.execute(&stmt, params)).await;
        self.settle(r)
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
        let s1 = self.prepare(first).await?;
        let s2 = self.prepare(second).await?;
        let ahead = self.ahead().await?;
        let c = self.client()?;
        let both = async {
            let (a, b) = futures_util::future::join(
                c.execute(&s1, first_params),
                c.query(&s2, second_params),
            )
            .await;
            a.and(b)
        };
        let r = ahead.run(c, both).await;
        self.settle(r)
    }

    /// [`Ctx::execute_then_query`], and `third` speculatively after them in
    /// the same round trip: its answer (or error) is returned apart, for
    /// the caller to use or drop after looking at `second`'s. A failed
    /// `third` aborts the transaction: the caller must then fail the
    /// operation (its savepoint is rolled back). `None` (nothing was sent)
    /// unless the transaction is about to begin — a failed prepare is
    /// harmless only then — or when `third` cannot be prepared.
    pub(crate) async fn execute_query_then_try(
        &mut self,
        first: (&str, &Params<'_>),
        second: (&str, &Params<'_>),
        third: (&str, &Params<'_>),
    ) -> Result<Option<(Vec<Row>, Result<Vec<Row>>)>> {
        if !self.before_begin {
            // A failed prepare would abort the open transaction.
            return Ok(None);
        }
        let Ok(s3) = self.client()?.prepare_cached(third.0).await else {
            return Ok(None);
        };
        let s1 = self.prepare(first.0).await?;
        let s2 = self.prepare(second.0).await?;
        let ahead = self.ahead().await?;
        let c = self.client()?;
        let all = async {
            let (a, b, t) = join3(
                c.execute(&s1, first.1),
                c.query(&s2, second.1),
                c.query(&s3, third.1),
            )
            .await;
            a.and(b).map(|rows| (rows, t))
        };
        let r = ahead.run(c, all).await;
        let (rows, t) = self.settle(r)?;
        Ok(Some((rows, t.map_err(EngineError::from))))
    }

    /// Simple-protocol statements (DDL); no parameters.
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        self.flush().await?;
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
