//! The PostgreSQL engine (`engine = "postgres"`).
//!
//! ```no_run
//! # async fn demo() -> cipherdoc_engine::Result<()> {
//! use cipherdoc_engine::{Engine, Filter, FindOptions, postgres::PgEngine};
//! let url = "postgres://app@db.internal/clinic?sslmode=verify-full&sslrootcert=/etc/cipherdoc/db-ca.pem";
//! let engine = PgEngine::connect(url, "encrypted_db").await?;
//! engine.insert_one("people", bson::doc! {"name": "Ada"}).await?;
//! let found = engine.find("people", &Filter::eq("name", "Ada"), &FindOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! # A cipherdoc database is a PostgreSQL schema
//!
//! `PgEngine::connect(url, "encrypted_db")` connects to the PostgreSQL
//! database named in the URL and keeps everything of the cipherdoc database
//! `encrypted_db` in the **schema** `encrypted_db` (created on first
//! connect): the catalog tables `"$catalog"` and `"$indexes"`, one table per
//! collection, its index tables, and for encrypted collections the tag table
//! and the ESC/ECOC tables named after MongoDB's (`"enxcol_.<coll>.esc"`).
//! We map to a schema rather than to a PostgreSQL database because:
//! - the two connections of a typical setup (`default` and `encrypted`)
//!   can share one server, one role and one connection URL, and one pool
//!   per cipherdoc database stays small;
//! - creating a schema needs only `CREATE` on the database, not the
//!   `CREATEDB` privilege that managed PostgreSQL services rarely grant;
//! - dropping a schema (`DROP SCHEMA … CASCADE`) removes a whole cipherdoc
//!   database atomically, which is what the test helper does;
//! - a PostgreSQL connection is bound to one database, so a database per
//!   cipherdoc database would force one pool per name with no upside.
//!
//! Table names longer than PostgreSQL's 63-byte limit are shortened to a
//! prefix plus a hash of the whole name (PostgreSQL would otherwise
//! truncate them silently and two collections could share a table).
//!
//! # Concurrency
//!
//! Every write runs in a `READ COMMITTED` transaction (set explicitly, so a
//! server default of `REPEATABLE READ` or `SERIALIZABLE` cannot change it);
//! reads outside a transaction run statement by statement in autocommit.
//! Many connections write at once; three mechanisms make that safe:
//!
//! 1. **QE inserts: ESC id uniqueness and retry, not a collection lock.**
//!    The ESC's `id` is its primary key. The QE server role probes the ESC
//!    (emuBinary), then inserts the next position `HMAC(tag, count)`. Two
//!    writers of the same value that probed the same state both try the
//!    same id: the second insert waits on the first transaction's
//!    uncommitted key, and when it commits, [`QeState::esc_insert`]
//!    reports [`EngineError::EscIdConflict`] (`INSERT … ON CONFLICT DO
//!    NOTHING` affecting no row; the statement does not fail, so the
//!    transaction stays usable and the server log stays clean). The QE
//!    server re-probes and retries. `READ COMMITTED` is what makes the
//!    retry converge: each statement takes a fresh snapshot, so the
//!    re-probe sees the winner's committed row and moves on to the next
//!    position (under `REPEATABLE READ` the re-probe would see the old
//!    snapshot forever). Positions stay contiguous — a position is only
//!    taken after its predecessor was seen committed — which is what
//!    emuBinary's binary search relies on. Nothing is lost: every insert
//!    ends with its own unique committed position. We chose this over
//!    serialising writers on a per-collection `pg_advisory_xact_lock`
//!    because writers of different values (and, with contention factor
//!    `cm`, of the same value in different counters) never conflict and
//!    run in parallel; only true collisions wait and retry.
//! 2. **Catalog changes vs. writers: advisory locks.** Every writer takes a
//!    *shared* transaction-level advisory lock on each collection it
//!    touches before reading its catalog entry; `create_index`,
//!    `create_collection` and `drop_collection` take it *exclusive*, plus a
//!    schema-wide DDL lock. So an index build waits for open writers and no
//!    writer that read the old index list can commit a document the new
//!    index misses. Inside a transaction the catalog entry is then cached
//!    (it cannot change under the shared lock). A first insert that creates
//!    a collection takes only the DDL lock and looks again after getting
//!    it, so concurrent first inserts create it once. Compaction and
//!    cleanup take the same lock *exclusive* too (`lock_for_maintenance`,
//!    after the collection's compaction lock): a writer's ESC probes are
//!    several READ COMMITTED statements, and a compaction committing
//!    between two of them could let the writer take a position below the
//!    new anchor that another document holds. Writers of the collection
//!    therefore wait while it is compacted.
//! 3. **Document updates: row locks.** `replace_one` and deletes lock the
//!    old row (`SELECT … FOR UPDATE`) before computing which index and tag
//!    entries to remove, so concurrent replaces of one document serialise.
//!
//! Reads outside a transaction take no lock: the catalog and the data are
//! read by two statements, which is safe because index tables are written
//! in the same transactions as their documents (an index missing from an
//! older catalog read only means a scan); a collection dropped between
//! the two statements is retried.
//!
//! [`Engine::begin_read`] opens a `REPEATABLE READ, READ ONLY` transaction:
//! every read through it (the QE server role's ESC probes, then its tag
//! lookup) sees one snapshot, and it never blocks writers.
//!
//! Each operation of a [`Transaction`] runs inside a savepoint, so a failed
//! operation is undone alone and the transaction stays usable; a
//! transaction made [`Transaction::fail_fast`] (autocommit work of the QE
//! server role) sends none, and after a failure it can only be rolled
//! back. Round trips are saved by pipelining (tokio-postgres sends
//! concurrently polled statements back to back; the server runs them in
//! order):
//! - `BEGIN`/`SAVEPOINT` and the lock go out with the first statement of
//!   the operation, and a savepoint is released together with the next one;
//! - statements whose answer nobody needs — the ESC counter locks and the
//!   ECOC appends — are *deferred* in a read-write transaction: they go out
//!   ahead of the transaction's next statement (the first ESC probe; the
//!   document insert or `COMMIT`). Should one fail there after all (a lock
//!   timeout, a table dropped under the transaction), the next operation
//!   reports the error and the transaction can only be rolled back, as
//!   after a cancelled operation; `commit` reports it too. A statement
//!   that fails to prepare inside an open transaction (its savepoint not
//!   sent yet) leaves it in the same state;
//! - in a fail-fast transaction the ESC insert is deferred too, its row
//!   count checked when that round trip returns: fewer rows (an id taken)
//!   fail the next operation with `EscIdConflict`, and a check still
//!   pending at `COMMIT` is sent on its own first, so a conflicting
//!   transaction never commits;
//! - a transaction's first ESC probe, when the collection's catalog entry
//!   is not known yet, is sent speculatively with the catalog read and
//!   used only if the collection is encrypted.
//!
//! So an encrypted `insert_one` through the QE server role costs 4 round
//! trips (catalog; counter locks + probe; ESC insert + ECOC + document;
//! `COMMIT`) against 3 for a plaintext one, and an encrypted query 2–3
//! (catalog + first probe; further probe rounds; tag lookup) against 2.
//!
//! Dropping a transaction without `commit` (the QE server role ends its
//! reads so) rolls it back from a spawned task, which then returns the
//! connection to the pool; a connection in an unknown state (an operation
//! cancelled midway), or dropped outside a tokio runtime, is closed
//! instead, and the server rolls the transaction back.
//!
//! # Connections: TLS off loopback
//!
//! A server on this machine (loopback address or Unix socket) is reached in
//! plain text unless the URL asks for TLS; any other host is reached over
//! TLS with the certificate verified — chain and host name, under every
//! `sslmode` that uses TLS — or, with `sslmode=disable`, in plain text on
//! the user's explicit word. A URL that could send data in plain text
//! without saying so is refused before anything is sent. The trust anchor
//! is `sslrootcert` in the URL or [`PgOptions::tls_ca_file`]
//! (`sslrootcert=system`: the public web roots). [`PgTransport`] says in
//! full how each `sslmode` maps; `PgEngine::transport` tells which one an
//! engine uses. The URL's password never appears in an error, a log line
//! or `Debug` ([`PgUrl`] carries it where it must be kept).

mod ctx;
use crate::documents;
mod ops;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod url;

pub use self::tls::{PgConnectError, PgSslMode, PgTransport, PgTrustAnchors};
pub use self::url::PgUrl;

use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};
use deadpool_postgres::Pool;

use self::ctx::{CatalogRead, Ctx, Schema};
use self::tls::Dialer;
use crate::engine::DeleteScope;
use crate::engine::{
    CollectionInfo, CreateCollectionOptions, Engine, FindOptions, IndexSpec, QeRole, RenameTarget,
    Transaction,
};
use crate::filter::Filter;
use crate::qe_state::{EcocEntry, EcocGeneration, EscEntry, EscId, EscValue, QeState};
use crate::{EngineError, Result};

/// Pool and connection settings of a [`PgEngine`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOptions {
    /// Most connections open at once (each open transaction holds one).
    pub max_connections: usize,
    /// The CA (PEM) the server's certificate must lead to, as the URL's
    /// `sslrootcert` would name it; given, it turns TLS on.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            tls_ca_file: None,
        }
    }
}

impl PgOptions {
    /// Set the pool size.
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Set the CA file (see [`PgOptions::tls_ca_file`]).
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }
}

/// A cipherdoc database stored in one schema of a PostgreSQL database,
/// behind [`Engine`]. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct PgEngine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    schema: Arc<Schema>,
    /// How connections are made (the pool's, and the test helpers').
    dialer: Dialer,
    /// A temporary test schema: dropped when the last clone goes away.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    temporary: Lifetime,
}

/// Whether the schema outlives the engine.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
enum Lifetime {
    Kept,
    DroppedWithEngine,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Only `testing::temporary` makes such a schema.
        #[cfg(feature = "testing")]
        if self.temporary == Lifetime::DroppedWithEngine {
            // Idle connections hold no locks, but close them first anyway.
            self.pool.close();
            testing::drop_schema_blocking(self.dialer.clone(), self.schema.name.clone());
        }
    }
}

impl std::fmt::Debug for PgEngine {
    // The URL may hold a password: only the schema is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEngine")
            .field("schema", &self.inner.schema.name)
            .finish_non_exhaustive()
    }
}

fn validate_database_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(EngineError::Config(format!(
            "database name {name:?} cannot be a PostgreSQL schema: {why}"
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 63 {
        return bad("it is longer than 63 bytes");
    }
    if name.contains('\0') {
        return bad("it contains a NUL byte");
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("pg_") || lower == "information_schema" {
        return bad("the name is reserved by PostgreSQL");
    }
    Ok(())
}

impl PgEngine {
    /// Connect to the PostgreSQL database named in `url`
    /// (`postgres://user:password@host:port/dbname`, or the key=value
    /// form) and open the cipherdoc database `database` — the schema of
    /// that name, created with its catalog if missing.
    pub async fn connect(url: &str, database: &str) -> Result<Self> {
        Self::connect_with(url, database, PgOptions::default()).await
    }

    /// [`PgEngine::connect`] with pool and TLS settings. The URL's
    /// `sslmode` and `sslrootcert` (and `options.tls_ca_file`) decide how
    /// connections are protected (see [`PgTransport`]); a URL that would
    /// send data in plain text to another machine without `sslmode=disable`
    /// is refused with [`PgConnectError`] before any connection is tried.
    pub async fn connect_with(url: &str, database: &str, options: PgOptions) -> Result<Self> {
        let dialer = Dialer::new(url, options.tls_ca_file.as_deref())?;
        Self::open(dialer, database, &options, Lifetime::Kept).await
    }

    async fn open(
        dialer: Dialer,
        database: &str,
        options: &PgOptions,
        temporary: Lifetime,
    ) -> Result<Self> {
        validate_database_name(database)?;
        let pool = Pool::builder(dialer.manager())
            .max_size(options.max_connections.max(1))
            .build()
            .map_err(|e| EngineError::PostgresPool(e.to_string()))?;
        let schema = Arc::new(Schema::new(database));
        let engine = Self {
            inner: Arc::new(Inner {
                pool,
                schema,
                dialer,
                temporary,
            }),
        };
        engine.init().await?;
        Ok(engine)
    }

    async fn init(&self) -> Result<()> {
        let mut cx = self.ctx(CatalogRead::Unlocked).await?;
        let s = Arc::clone(&self.inner.schema);
        // Concurrent first connects would race on CREATE SCHEMA; the lock
        // makes them take turns. A schema made by an earlier version gets
        // the indexes' multikey flag, set: its indexes may hold several
        // keys per document (see `crate::plan`).
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({key});
             CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {catalog}(name text PRIMARY KEY, encrypted_fields bytea);
             CREATE TABLE IF NOT EXISTS {indexes}(collection text NOT NULL, name text NOT NULL,
                 path text NOT NULL, is_unique boolean NOT NULL, sparse boolean NOT NULL,
                 multikey boolean NOT NULL DEFAULT false,
                 PRIMARY KEY(collection, name));
             DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{indexes_literal}'::regclass
                                AND attname = 'multikey' AND NOT attisdropped) THEN
                     ALTER TABLE {indexes} ADD COLUMN multikey boolean NOT NULL DEFAULT true;
                 END IF;
             END $$;
             COMMIT;",
            key = s.init_key(),
            schema = s.quoted(),
            catalog = s.catalog(),
            indexes = s.indexes(),
            indexes_literal = s.indexes().replace('\'', "''"),
        );
        cx.mark_dirty();
        cx.batch(&sql).await?;
        cx.mark_clean();
        Ok(())
    }

    /// The PostgreSQL schema holding this cipherdoc database.
    pub fn schema(&self) -> &str {
        &self.inner.schema.name
    }

    /// How this engine's connections are protected.
    pub fn transport(&self) -> &PgTransport {
        self.inner.dialer.transport()
    }

    /// PostgreSQL's `EXPLAIN` lines for the candidate query `find` would run
    /// for `filter` (for tests and diagnosis).
    pub async fn explain(&self, collection: &str, filter: &Filter) -> Result<Vec<String>> {
        let mut cx = self.ctx(CatalogRead::Unlocked).await?;
        ops::explain(&mut cx, collection, filter).await
    }

    async fn ctx(&self, catalog: CatalogRead) -> Result<Ctx> {
        let obj = self
            .inner
            .pool
            .get()
            .await
            .map_err(|e| self.inner.dialer.pool_error(e))?;
        Ok(Ctx::new(obj, Arc::clone(&self.inner.schema), catalog))
    }

    /// A context whose first statement opens a transaction.
    async fn writer(&self) -> Result<Ctx> {
        let mut cx = self.ctx(CatalogRead::Locked).await?;
        cx.set_prefix(BEGIN.to_owned());
        Ok(cx)
    }
}

const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
const SAVEPOINT: &str = "SAVEPOINT cd_op";
const RELEASE: &str = "RELEASE SAVEPOINT cd_op";
const UNDO: &str = "ROLLBACK TO SAVEPOINT cd_op; RELEASE SAVEPOINT cd_op";

/// Commit the autocommit transaction of `cx` if `r` is `Ok` (and a
/// statement was sent at all), else roll it back.
async fn finish<T>(mut cx: Ctx, r: Result<T>) -> Result<T> {
    if !cx.prefix_was_sent() {
        return r;
    }
    match r {
        Ok(v) => {
            cx.client()?.batch_execute("COMMIT").await?;
            cx.mark_clean();
            cx.analyze_due().await;
            Ok(v)
        }
        Err(e) => {
            if cx.client()?.batch_execute("ROLLBACK").await.is_ok() {
                cx.mark_clean();
            }
            Err(e)
        }
    }
}

/// Run a read without a transaction, retrying when a collection was
/// dropped between the catalog read and the data read.
macro_rules! read {
    ($self:ident, |$cx:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            let mut $cx = $self.ctx(CatalogRead::Unlocked).await?;
            let r = $body;
            match r {
                Err(e) if attempt < 3 && ops::is_undefined_table(&e) => attempt += 1,
                r => break r,
            }
        }
    }};
}

/// Run a write in its own transaction.
macro_rules! autocommit {
    ($self:ident, |$cx:ident| $body:expr) => {{
        let mut $cx = $self.writer().await?;
        let r = $body;
        finish($cx, r).await
    }};
}

#[async_trait]
impl Engine for PgEngine {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn qe_role(&self) -> QeRole {
        QeRole::Client
    }

    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()> {
        autocommit!(self, |cx| ops::create_collection(&mut cx, name, options)
            .await)
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        read!(self, |cx| ops::list_collections(&mut cx).await)
    }

    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        read!(self, |cx| ops::load_meta(&mut cx, name)
            .await
            .map(|m| m.map(|m| m.info())))
    }

    async fn drop_collection(&self, name: &str) -> Result<bool> {
        autocommit!(self, |cx| ops::drop_collection(&mut cx, name).await)
    }

    async fn rename_collection(&self, from: &str, to: &str, target: RenameTarget) -> Result<()> {
        autocommit!(self, |cx| ops::rename_collection(&mut cx, from, to, target)
            .await)
    }

    /// Nothing to do: PostgreSQL unlinks a dropped table's files when the
    /// drop commits. The server's WAL, replicas and base backups still
    /// hold what they held; that is the operator's to age out.
    async fn scrub_freed_space(&self) -> Result<()> {
        Ok(())
    }

    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()> {
        autocommit!(self, |cx| ops::create_index(&mut cx, collection, &spec)
            .await)
    }

    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson> {
        autocommit!(self, |cx| first_id(
            ops::insert_docs(&mut cx, collection, vec![doc]).await
        ))
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        autocommit!(self, |cx| ops::insert_docs(&mut cx, collection, docs).await)
    }

    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        autocommit!(self, |cx| ops::replace_one(&mut cx, collection, id, doc)
            .await)
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64> {
        autocommit!(self, |cx| ops::delete(
            &mut cx,
            collection,
            filter,
            DeleteScope::First
        )
        .await)
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64> {
        autocommit!(self, |cx| ops::delete(
            &mut cx,
            collection,
            filter,
            DeleteScope::All
        )
        .await)
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        read!(self, |cx| ops::find(&mut cx, collection, filter, options)
            .await)
    }

    async fn find_raw(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        read!(self, |cx| ops::find_raw(
            &mut cx, collection, filter, options
        )
        .await)
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        read!(self, |cx| ops::count(&mut cx, collection, filter).await)
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let cx = self.ctx(CatalogRead::Locked).await?;
        Ok(Box::new(PgTransaction::new(cx, BEGIN)))
    }

    /// A `REPEATABLE READ, READ ONLY` transaction: one snapshot for every
    /// read (the QE server role's probes and tag lookup), no blocking of
    /// writers, and writes through it fail.
    async fn begin_read(&self) -> Result<Box<dyn Transaction>> {
        let cx = self.ctx(CatalogRead::Locked).await?;
        Ok(Box::new(PgTransaction::new(cx, BEGIN_READ)))
    }
}

fn first_id(r: Result<Vec<Bson>>) -> Result<Bson> {
    r?.into_iter()
        .next()
        .ok_or(EngineError::TransactionClosed("the insert returned no _id"))
}

/// A read-write transaction on a [`PgEngine`]; holds one pooled connection
/// until it is committed, rolled back or dropped (which rolls back).
// Independent flags of the savepoint protocol; a state enum would
// have to spell out their product.
#[allow(clippy::struct_excessive_bools)]
pub struct PgTransaction {
    cx: Ctx,
    /// The `BEGIN` statement (read-write or read-only).
    begin: &'static str,
    /// `BEGIN` has not been sent yet (it goes out with the first statement).
    pending_begin: bool,
    /// The last operation's savepoint still exists (released lazily).
    savepoint_open: bool,
    /// An operation started and did not finish: it was cancelled midway.
    in_op: bool,
    /// The transaction can no longer be trusted; only rollback remains.
    broken: bool,
    /// [`Transaction::fail_fast`]: operations run without savepoints.
    fail_fast: bool,
    /// An operation failed under `fail_fast`; the connection's state is
    /// known (a failed transaction), but only a rollback remains.
    failed: bool,
}

impl std::fmt::Debug for PgTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("schema", &self.cx.s.name)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl PgTransaction {
    fn new(cx: Ctx, begin: &'static str) -> Self {
        Self {
            cx,
            begin,
            pending_begin: true,
            savepoint_open: false,
            in_op: false,
            broken: false,
            fail_fast: false,
            failed: false,
        }
    }

    /// Start one atomic operation: its first statement is preceded by a
    /// savepoint (and `BEGIN`, and the previous savepoint's release).
    fn start(&mut self) -> Result<&mut Ctx> {
        if self.in_op {
            self.broken = true;
        }
        if self.broken {
            return Err(EngineError::TransactionClosed(
                "an earlier operation on it was cancelled midway or could not be undone",
            ));
        }
        if self.failed {
            return Err(EngineError::FAIL_FAST_FAILED);
        }
        let mut p = String::new();
        if self.pending_begin {
            p.push_str(self.begin);
            p.push_str("; ");
        }
        // Deferring needs the transaction to have begun (a deferred
        // statement goes out ahead of the next prefix); in a read-only
        // one, writes fail, and should fail where they are made.
        self.cx.may_defer = !self.pending_begin && self.begin != BEGIN_READ;
        self.cx.defer_checked = self.fail_fast;
        self.cx.before_begin = self.pending_begin;
        if !self.fail_fast {
            if self.savepoint_open {
                p.push_str(RELEASE);
                p.push_str("; ");
            }
            p.push_str(SAVEPOINT);
        }
        if !p.is_empty() {
            self.cx.set_prefix(p);
        }
        self.in_op = true;
        Ok(&mut self.cx)
    }

    /// Finish the operation: keep its effects, or undo them alone.
    async fn end<T>(&mut self, r: Result<T>) -> Result<T> {
        self.in_op = false;
        if self.cx.take_aborted() {
            // A statement deferred by an earlier operation failed ahead of
            // this one's (that operation was reported done), or this one's
            // statement failed to prepare before its savepoint existed: no
            // savepoint gives the caller a consistent state back.
            tracing::warn!(
                "the transaction was aborted outside the operation's savepoint; it can only be rolled back"
            );
            self.broken = true;
            self.cx.clear_cache();
            return r;
        }
        if !self.cx.prefix_was_sent() {
            // No statement ran: nothing to keep or undo.
            return r;
        }
        self.pending_begin = false;
        match r {
            Ok(v) => {
                self.savepoint_open = !self.fail_fast;
                Ok(v)
            }
            Err(e) if self.fail_fast => {
                // No savepoint to undo it alone: the caller rolls back.
                self.failed = true;
                Err(e)
            }
            Err(e) => {
                self.savepoint_open = false;
                // Catalog entries read (and locks taken) inside the undone
                // savepoint are gone with it.
                self.cx.clear_cache();
                let undo = match self.cx.client() {
                    Ok(c) => c.batch_execute(UNDO).await.map_err(EngineError::from),
                    Err(e) => Err(e),
                };
                if let Err(u) = undo {
                    tracing::warn!(error = %u, "undoing a failed operation failed; the transaction is unusable");
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    async fn finish(mut self: Box<Self>, commit: bool) -> Result<()> {
        if self.pending_begin && !self.broken && !self.in_op {
            // Nothing was ever sent.
            self.cx.mark_clean();
            return Ok(());
        }
        if self.broken || self.in_op {
            // Dropping the connection rolls back.
            return Err(EngineError::TransactionClosed(
                "an earlier operation on it was cancelled midway or could not be undone; it was rolled back",
            ));
        }
        if commit && !self.failed {
            // Deferred statements go out with the COMMIT; if one fails the
            // server rolls back instead, and the error is reported.
            self.cx.finish_with("COMMIT").await?;
        } else {
            self.cx.discard_deferred();
            self.cx.client()?.batch_execute("ROLLBACK").await?;
        }
        self.cx.mark_clean();
        if commit && !self.failed {
            self.cx.analyze_due().await;
        }
        if commit && self.failed {
            // A fail-fast transaction whose operation failed never commits.
            return Err(EngineError::FAIL_FAST_FAILED);
        }
        Ok(())
    }
}

impl Drop for PgTransaction {
    /// Dropped without `commit` or `rollback` (the QE server role ends
    /// its reads so): roll back in the background and give the connection
    /// back to the pool, rather than closing it — a new connection costs a
    /// server process, a handshake and re-preparing every statement. A
    /// connection in an unknown state (an operation was cancelled midway)
    /// is still closed, by `Ctx`'s own drop.
    fn drop(&mut self) {
        if self.in_op || self.broken || !self.cx.is_dirty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut cx = self.cx.detach();
        cx.discard_deferred();
        // If the runtime drops the task before it finishes, `cx` is
        // dropped dirty and the connection is closed.
        drop(rt.spawn(async move {
            let rolled_back = match cx.client() {
                Ok(c) => c.batch_execute("ROLLBACK").await.is_ok(),
                Err(_) => false,
            };
            if rolled_back {
                cx.mark_clean();
            }
        }));
    }
}

/// One atomic operation of a transaction (unless it is fail-fast).
macro_rules! op {
    ($self:ident, |$cx:ident| $body:expr) => {{
        let $cx = $self.start()?;
        let r = $body;
        $self.end(r).await
    }};
}

#[async_trait]
impl Transaction for PgTransaction {
    fn fail_fast(&mut self) {
        self.fail_fast = true;
    }

    fn qe_state(&mut self) -> Option<&mut dyn QeState> {
        Some(self)
    }

    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson> {
        op!(self, |cx| first_id(
            ops::insert_docs(cx, collection, vec![doc]).await
        ))
    }

    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        op!(self, |cx| ops::insert_docs(cx, collection, docs).await)
    }

    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        op!(self, |cx| ops::replace_one(cx, collection, id, doc).await)
    }

    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        op!(self, |cx| ops::delete(
            cx,
            collection,
            filter,
            DeleteScope::First
        )
        .await)
    }

    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        op!(self, |cx| ops::delete(
            cx,
            collection,
            filter,
            DeleteScope::All
        )
        .await)
    }

    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        op!(self, |cx| ops::find(cx, collection, filter, options).await)
    }

    async fn find_raw(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        op!(self, |cx| ops::find_raw(cx, collection, filter, options)
            .await)
    }

    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        op!(self, |cx| ops::count(cx, collection, filter).await)
    }

    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>> {
        op!(self, |cx| ops::load_meta(cx, name)
            .await
            .map(|m| m.map(|m| m.info())))
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.finish(true).await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.finish(false).await
    }
}

#[async_trait]
impl QeState for PgTransaction {
    async fn esc_lock_counters(&mut self, collection: &str, counters: &[[u8; 32]]) -> Result<()> {
        op!(self, |cx| ops::esc_lock_counters(cx, collection, counters)
            .await)
    }

    async fn lock_for_maintenance(&mut self, collection: &str) -> Result<()> {
        op!(self, |cx| ops::lock_for_maintenance(cx, collection).await)
    }

    async fn esc_get_many(
        &mut self,
        collection: &str,
        ids: &[EscId],
    ) -> Result<Vec<Option<EscEntry>>> {
        op!(self, |cx| ops::esc_get_many(cx, collection, ids).await)
    }

    async fn esc_insert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()> {
        op!(self, |cx| ops::esc_insert(
            cx,
            collection,
            id,
            value.as_ref(),
            false
        )
        .await)
    }

    async fn esc_insert_many(
        &mut self,
        collection: &str,
        docs: &[(EscId, Option<EscValue>)],
    ) -> Result<()> {
        op!(self, |cx| ops::esc_insert_many(cx, collection, docs).await)
    }

    async fn esc_upsert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()> {
        op!(self, |cx| ops::esc_insert(
            cx,
            collection,
            id,
            value.as_ref(),
            true
        )
        .await)
    }

    async fn esc_delete_many(&mut self, collection: &str, ids: &[EscId]) -> Result<u64> {
        op!(self, |cx| ops::esc_delete_many(cx, collection, ids).await)
    }

    async fn esc_count(&mut self, collection: &str) -> Result<u64> {
        op!(self, |cx| ops::esc_count(cx, collection).await)
    }

    async fn esc_non_anchor_ids(&mut self, collection: &str) -> Result<Vec<EscId>> {
        op!(self, |cx| ops::esc_non_anchor_ids(cx, collection).await)
    }

    async fn ecoc_append(
        &mut self,
        collection: &str,
        field_name: &str,
        value: &[u8],
    ) -> Result<()> {
        op!(self, |cx| ops::ecoc_append(
            cx, collection, field_name, value
        )
        .await)
    }

    async fn ecoc_append_many(&mut self, collection: &str, entries: &[EcocEntry]) -> Result<()> {
        op!(self, |cx| ops::ecoc_append_many(cx, collection, entries)
            .await)
    }

    async fn ecoc_count(&mut self, collection: &str) -> Result<u64> {
        op!(self, |cx| ops::ecoc_count(cx, collection).await)
    }

    async fn ecoc_begin_compaction(&mut self, collection: &str) -> Result<bool> {
        op!(self, |cx| ops::ecoc_begin_compaction(cx, collection).await)
    }

    async fn ecoc_read(
        &mut self,
        collection: &str,
        generation: EcocGeneration,
    ) -> Result<Vec<EcocEntry>> {
        op!(self, |cx| ops::ecoc_read(cx, collection, generation).await)
    }

    async fn ecoc_drop_compact(&mut self, collection: &str) -> Result<()> {
        op!(self, |cx| ops::ecoc_drop_compact(cx, collection).await)
    }
}
