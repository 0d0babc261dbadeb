//! The embedded SQLite engine.
//!
//! ```no_run
//! # async fn demo() -> cipherdoc_engine::Result<()> {
//! use cipherdoc_engine::{Engine, Filter, FindOptions, sqlite::SqliteEngine};
//! let engine = SqliteEngine::open("var/encrypted.db")?;   // or SqliteEngine::temporary()?
//! engine.insert_one("people", bson::doc! {"name": "Ada"}).await?;
//! let found = engine.find("people", &Filter::eq("name", "Ada"), &FindOptions::default()).await?;
//! # Ok(()) }
//! ```
//!
//! # Concurrency and busy handling
//!
//! One database file is one `SqliteEngine`. It keeps **one writer
//! connection**, guarded by an async mutex, and a small pool of reader
//! connections. Every write — an autocommit operation or a whole
//! [`Transaction`] from `begin()` to `commit` — holds the writer for its
//! duration and runs `BEGIN IMMEDIATE`, so writes through one engine are
//! serialised in-process and never meet `SQLITE_BUSY` from each other: no
//! write is lost or has to be retried by the caller. In particular the QE
//! server role's "probe the ESC, then insert the next position" cannot
//! interleave with another writer of the same engine, so ESC id conflicts
//! cannot arise from it (they are still reported as `EscIdConflict` if they
//! do, e.g. with a second process). Readers use WAL snapshots and never block
//! the writer. Other processes (or a second engine) opening the same file
//! contend through SQLite's file locks; `BEGIN IMMEDIATE` takes the write lock
//! up front (so a transaction never fails later on lock upgrade) and a 10 s
//! busy timeout makes them wait rather than fail. We chose one writer over a
//! pool of writers because SQLite admits one writer at a time anyway: a pool
//! would only turn queueing into busy-retry loops.
//!
//! Storage calls run on tokio's blocking thread pool (`spawn_blocking`), so
//! the engine must be used inside a tokio runtime.
//!
//! # Checkpoints
//!
//! Each engine has one more thread, which copies the WAL back into the
//! database file (`PRAGMA wal_checkpoint(PASSIVE)` on a connection of its
//! own) once [`CHECKPOINT_PAGES`] pages have been committed since the last
//! copy, so that commits do not pay for checkpoints; the writer checkpoints
//! itself only if the WAL reaches [`WAL_LIMIT_PAGES`]. See `wal.rs`. The
//! thread ends, and its connection closes, when the engine is dropped.

mod ops;
mod wal;

pub use wal::{CHECKPOINT_PAGES, WAL_LIMIT_PAGES};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use crate::engine::DeleteScope;
use crate::engine::{
    CollectionInfo, CreateCollectionOptions, Engine, FindOptions, IndexSpec, QeRole, RenameTarget,
    Transaction, TxMode, TxOutput, TxWork,
};
use crate::filter::Filter;
use crate::qe_state::{EcocEntry, EcocGeneration, EscEntry, EscId, EscValue, QeState};
use crate::{EngineError, Result};

/// How many idle reader connections are kept.
const MAX_IDLE_READERS: usize = 4;

/// An embedded SQLite database (one file, WAL mode) behind [`Engine`].
#[derive(Clone)]
pub struct SqliteEngine {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    // Readers are declared (so dropped) first: the writer, closing last,
    // checkpoints the WAL into the database file and removes it.
    readers: Mutex<Vec<Connection>>,
    writer: Arc<tokio::sync::Mutex<wal::Writer>>,
    // Kept so a temporary database lives as long as the engine.
    _temp: Option<TempDir>,
}

/// What keeps [`SqliteEngine::temporary`]'s directory alive; without the
/// `testing` feature there is no such constructor (and no `tempfile`), so
/// nothing to keep.
#[cfg(feature = "testing")]
type TempDir = tempfile::TempDir;
#[cfg(not(feature = "testing"))]
type TempDir = std::convert::Infallible;

impl std::fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEngine")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Page cache per connection, in KiB (SQLite's default is 2 MiB). QE keys
/// (ESC ids, tags) are random, so every encrypted insert and query touches
/// random pages of the ESC and the tag index; with the default cache those
/// are re-read from the OS on almost every operation once a collection
/// passes a few thousand documents. The writer gets the larger share: its
/// transactions also keep dirty pages in the cache until they commit.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// See [`WRITER_CACHE_KIB`]; up to [`MAX_IDLE_READERS`] readers are kept.
const READER_CACHE_KIB: u32 = 16 * 1024;
/// Reads go through a memory map of up to this many bytes of the file
/// (no copy from the OS page cache per page read).
const MMAP_BYTES: u64 = 1 << 30;

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let cache = if flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        READER_CACHE_KIB
    } else {
        WRITER_CACHE_KIB
    };
    // temp_store=MEMORY keeps statement journals (one per savepoint, i.e.
    // per transaction operation) off the disk.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY; \
         PRAGMA cache_size=-{cache}; PRAGMA mmap_size={MMAP_BYTES};"
    ))?;
    rusqlite::vtab::array::load_module(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Creates a missing database file readable by its owner only, before
/// SQLite creates it with the process umask (often 0644). SQLite gives the
/// `-wal` and `-shm` files the mode of the database file, so they follow.
/// The file holds ciphertexts and wrapped keys, and the plaintext fields of
/// the models that are not encrypted: no reason for other users to read it.
/// An existing file keeps its mode (`check --deploy` reports it).
fn create_owner_only(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Worker(e.to_string()))
}

/// Roll back a transaction left open by a cancelled operation.
fn reset(conn: &Connection) -> Result<()> {
    if !conn.is_autocommit() {
        conn.execute_batch("ROLLBACK")?;
    }
    Ok(())
}

/// Options of [`SqliteEngine::open_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The most the database may grow to, in bytes (SQLite's
    /// `max_page_count` on the writer connection, rounded up to whole
    /// pages; never below the database's current size). A write past it
    /// fails with [`EngineError::StorageFull`] and is rolled back whole.
    /// `None`: as large as the disk allows.
    pub max_size_bytes: Option<u64>,
}

impl SqliteOptions {
    /// Set [`Self::max_size_bytes`].
    #[must_use]
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }
}

impl SqliteEngine {
    /// Open (creating if needed) the database file at `path`. Blocks briefly
    /// on file I/O.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(path.as_ref().to_path_buf(), None, SqliteOptions::default())
    }

    /// [`SqliteEngine::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        Self::open_inner(path.as_ref().to_path_buf(), None, options)
    }

    /// A fresh database in a temporary directory, deleted when the last clone
    /// of the engine is dropped. For tests (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn temporary() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cipherdoc.db");
        Self::open_inner(path, Some(dir), SqliteOptions::default())
    }

    fn open_inner(path: PathBuf, temp: Option<TempDir>, options: SqliteOptions) -> Result<Self> {
        create_owner_only(&path)?;
        let writer = open_conn(&path, OpenFlags::default())?;
        writer.execute_batch(ops::SCHEMA)?;
        ops::upgrade(&writer)?;
        if let Some(bytes) = options.max_size_bytes {
            // Per connection: only the writer grows the file (checkpoints
            // copy pages its transactions already counted).
            let page: u64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = bytes.div_ceil(page.max(1)).max(1);
            writer.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        }
        let writer = wal::Writer::new(writer, &path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
                readers: Mutex::new(Vec::new()),
                _temp: temp,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// SQLite's `EXPLAIN QUERY PLAN` lines for the candidate query `find`
    /// would run for `filter` (for tests and diagnosis).
    pub async fn explain(&self, collection: &str, filter: &Filter) -> Result<Vec<String>> {
        let (c, f) = (collection.to_owned(), filter.clone());
        self.read(move |conn| {
            let meta = ops::load_meta(conn, &c)?
                .ok_or_else(|| EngineError::CollectionNotFound(c.clone()))?;
            ops::explain(conn, &meta, &f)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_conn(&inner.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?,
            };
            reset(&conn)?;
            // One read transaction, so the catalog and the documents are
            // read from the same snapshot.
            conn.execute_batch("BEGIN")?;
            let r = f(&conn);
            conn.execute_batch("COMMIT")?;
            let mut idle = inner.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            r
        })
        .await?
    }

    async fn writer(&self) -> OwnedMutexGuard<wal::Writer> {
        Arc::clone(&self.inner.writer).lock_owned().await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let guard = self.writer().await;
        blocking(move || {
            reset(&guard)?;
            guard.execute_batch("BEGIN IMMEDIATE")?;
            match f(&guard) {
                Ok(v) => {
                    guard.execute_batch("COMMIT")?;
                    guard.committed();
                    Ok(v)
                }
                Err(e) => {
                    guard.execute_batch("ROLLBACK")?;
                    Err(e)
                }
            }
        })
        .await?
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn qe_role(&self) -> QeRole {
        QeRole::Client
    }

    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| ops::create_collection(c, &name, options).map(|_| ()))
            .await
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        self.read(ops::list_collections).await
    }

    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        let name = name.to_owned();
        self.read(move |c| ops::load_meta(c, &name)?.map(|m| m.info()).transpose())
            .await
    }

    async fn drop_collection(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| ops::drop_collection(c, &name)).await
    }

    async fn rename_collection(&self, from: &str, to: &str, target: RenameTarget) -> Result<()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write(move |c| ops::rename_collection(c, &from, &to, target))
            .await
    }

    async fn scrub_freed_space(&self) -> Result<()> {
        let guard = self.writer().await;
        blocking(move || {
            reset(&guard)?;
            guard.scrub()
        })
        .await?
    }

    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()> {
        let name = collection.to_owned();
        self.write(move |c| ops::create_index(c, &name, &spec))
            .await
    }

    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson> {
        let name = collection.to_owned();
        self.write(move |c| {
            let meta = ops::ensure_collection(c, &name)?;
            ops::insert_one(c, &meta, doc)
        })
        .await
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        let name = collection.to_owned();
        self.write(move |c| insert_many(c, &name, docs)).await
    }

    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        let (name, id) = (collection.to_owned(), id.clone());
        self.write(move |c| replace_one(c, &name, &id, doc)).await
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.write(move |c| ops::delete(c, &name, &f, DeleteScope::First))
            .await
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.write(move |c| ops::delete(c, &name, &f, DeleteScope::All))
            .await
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        let (name, f, o) = (collection.to_owned(), filter.clone(), options.clone());
        self.read(move |c| ops::find(c, &name, &f, &o)).await
    }

    async fn find_raw(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        let (name, f, o) = (collection.to_owned(), filter.clone(), options.clone());
        self.read(move |c| ops::find_raw(c, &name, &f, &o)).await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.read(move |c| ops::count(c, &name, &f)).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        let guard = self.writer().await;
        let guard = blocking(move || -> Result<_> {
            reset(&guard)?;
            guard.execute_batch("BEGIN IMMEDIATE")?;
            Ok(guard)
        })
        .await??;
        Ok(Box::new(SqliteTransaction {
            conn: Some(Held::Writer(guard)),
            pool: None,
            inline: false,
            fail_fast: false,
            failed: false,
        }))
    }

    /// The whole of `work` on one blocking thread: the transaction's
    /// operations run in place (`work`'s future is driven there with a
    /// local executor; the operations of a transaction in this mode
    /// complete without waiting on anything), so a QE write or query costs
    /// one thread hand-off instead of one per operation. Once started, the
    /// work runs to its end even if the caller stops waiting for it.
    async fn transact(&self, mode: TxMode, work: TxWork) -> Result<TxOutput> {
        let (held, pool) = match mode {
            TxMode::Write => (Some(Held::Writer(self.writer().await)), None),
            TxMode::Read => (
                self.inner
                    .readers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop()
                    .map(Held::Reader),
                Some(Arc::clone(&self.inner)),
            ),
        };
        let path = self.inner.path.clone();
        blocking(move || {
            let held = match held {
                Some(h) => h,
                None => Held::Reader(open_conn(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?),
            };
            reset(&held)?;
            held.prepare_cached(match mode {
                TxMode::Write => "BEGIN IMMEDIATE",
                TxMode::Read => "BEGIN",
            })?
            .execute([])?;
            let mut tx = SqliteTransaction {
                conn: Some(held),
                pool,
                inline: true,
                fail_fast: false,
                failed: false,
            };
            let r = futures_executor::block_on(work(&mut tx));
            let end = match &r {
                Ok(_) => "COMMIT",
                Err(_) => "ROLLBACK",
            };
            let ended = tx.end_in_place(end);
            let v = r?;
            ended?;
            Ok(v)
        })
        .await?
    }

    /// A read-only snapshot on a pooled reader connection (WAL): it does not
    /// take the writer, so queries that need several statements on one
    /// snapshot (the QE server's ESC probes, then the tag lookup) run
    /// concurrently with writers. Writes through it fail.
    async fn begin_read(&self) -> Result<Box<dyn Transaction>> {
        // Done inline rather than on the blocking pool: a deferred BEGIN on
        // a pooled connection touches no file (the snapshot is taken by the
        // first read), and skipping the thread hand-off is a large share of
        // a short query's latency. Only opening a new reader does I/O.
        let pooled = self
            .inner
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = if let Some(c) = pooled {
            c
        } else {
            let path = self.inner.path.clone();
            blocking(move || open_conn(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)).await??
        };
        reset(&conn)?;
        conn.execute_batch("BEGIN")?;
        Ok(Box::new(SqliteTransaction {
            conn: Some(Held::Reader(conn)),
            pool: Some(Arc::clone(&self.inner)),
            inline: false,
            fail_fast: false,
            failed: false,
        }))
    }
}

/// The connection a transaction holds: the engine's writer, or a pooled
/// reader for a read-only snapshot.
enum Held {
    Writer(OwnedMutexGuard<wal::Writer>),
    Reader(Connection),
}

impl std::ops::Deref for Held {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Held::Writer(g) => g,
            Held::Reader(c) => c,
        }
    }
}

/// Give a reader connection back to the pool (closing it when the pool is
/// full or the connection is still in a transaction).
fn return_reader(pool: &Inner, conn: Connection) {
    if reset(&conn).is_err() {
        return;
    }
    let mut idle = pool.readers.lock().unwrap_or_else(PoisonError::into_inner);
    if idle.len() < MAX_IDLE_READERS {
        idle.push(conn);
    }
}

fn insert_many(c: &Connection, name: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
    let meta = ops::ensure_collection(c, name)?;
    docs.into_iter()
        .map(|d| ops::insert_one(c, &meta, d))
        .collect()
}

fn replace_one(c: &Connection, name: &str, id: &Bson, doc: Document) -> Result<bool> {
    match ops::load_meta(c, name)? {
        Some(meta) => ops::replace_one(c, &meta, id, doc),
        None => Ok(false),
    }
}

/// A write transaction on a [`SqliteEngine`]; holds the engine's writer
/// connection until it is committed, rolled back or dropped (which rolls
/// back).
pub struct SqliteTransaction {
    conn: Option<Held>,
    /// Set for read snapshots: where the reader connection goes back to.
    pool: Option<Arc<Inner>>,
    /// Set inside [`Engine::transact`]: the transaction already runs on a
    /// blocking thread, so its operations run in place.
    inline: bool,
    /// [`Transaction::fail_fast`]: operations run without a savepoint.
    fail_fast: bool,
    /// An operation failed under `fail_fast`: its partial writes may be
    /// there, so only a rollback remains.
    failed: bool,
}

impl std::fmt::Debug for SqliteTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteTransaction")
            .field("open", &self.conn.is_some())
            .field("read_only", &self.pool.is_some())
            .field("inline", &self.inline)
            .field("fail_fast", &self.fail_fast)
            .field("failed", &self.failed)
            .finish()
    }
}

impl SqliteTransaction {
    /// Run one operation atomically (a savepoint) on the transaction's
    /// connection. If the future is cancelled midway, the connection is lost
    /// to this handle; the engine rolls the transaction back the next time it
    /// takes the writer.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.exec(true, f).await
    }

    /// [`Self::run`] for an operation that writes nothing: no savepoint is
    /// needed to keep a failure from leaving anything behind.
    async fn query<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.exec(false, f).await
    }

    async fn exec<T: Send + 'static>(
        &mut self,
        savepoint: bool,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.failed {
            return Err(EngineError::FAIL_FAST_FAILED);
        }
        // Under fail_fast an operation is not atomic on its own: the
        // savepoint (a copy of every page it changes, in the statement
        // journal) is not worth it when a failure ends the transaction.
        let savepoint = savepoint && !self.fail_fast;
        let op = move |c: &Connection| if savepoint { ops::atomic(c, f) } else { f(c) };
        let r = if self.inline {
            let conn = self
                .conn
                .as_ref()
                .ok_or(EngineError::TransactionClosed("it was already finished"))?;
            op(conn)
        } else {
            let guard = self.conn.take().ok_or(EngineError::TransactionClosed(
                "an earlier operation on it was cancelled or it was already finished",
            ))?;
            let (guard, r) = blocking(move || {
                let r = op(&guard);
                (guard, r)
            })
            .await?;
            self.conn = Some(guard);
            r
        };
        if r.is_err() && self.fail_fast {
            self.failed = true;
        }
        r
    }

    /// The statement that ends the transaction for a requested `sql`, and
    /// what the caller gets once it ran: after a failed fail-fast
    /// operation a `COMMIT` becomes a `ROLLBACK` and is reported.
    fn ending(&self, sql: &'static str) -> (&'static str, Result<()>) {
        if self.failed && sql == "COMMIT" {
            ("ROLLBACK", Err(EngineError::FAIL_FAST_FAILED))
        } else {
            (sql, Ok(()))
        }
    }

    /// Commit or roll back on the current thread (inside `transact`).
    fn end_in_place(&mut self, sql: &'static str) -> Result<()> {
        let (ending, outcome) = self.ending(sql);
        match self.conn.take() {
            Some(guard) => end(guard, self.pool.take(), ending)?,
            None => return Ok(()),
        }
        outcome
    }

    async fn finish(mut self: Box<Self>, sql: &'static str) -> Result<()> {
        let guard = self
            .conn
            .take()
            .ok_or(EngineError::TransactionClosed("it was already finished"))?;
        let pool = self.pool.take();
        let (ending, outcome) = self.ending(sql);
        blocking(move || end(guard, pool, ending)).await??;
        outcome
    }
}

/// Run `sql` (`COMMIT` or `ROLLBACK`) to end a transaction, then hand a
/// reader back to `pool`.
fn end(guard: Held, pool: Option<Arc<Inner>>, sql: &'static str) -> Result<()> {
    let r = guard
        .prepare_cached(sql)
        .and_then(|mut s| s.execute([]).map(drop));
    match (&r, &guard) {
        // Never hand the writer on with a transaction open.
        (Err(_), _) => drop(reset(&guard)),
        (Ok(()), Held::Writer(w)) if sql == "COMMIT" => w.committed(),
        (Ok(()), _) => {}
    }
    if let (Held::Reader(conn), Some(pool)) = (guard, pool) {
        return_reader(&pool, conn);
    }
    Ok(r?)
}

impl Drop for SqliteTransaction {
    fn drop(&mut self) {
        if let Some(guard) = self.conn.take() {
            // A rollback is a short local operation; doing it here keeps the
            // "drop means rollback" promise even outside a runtime.
            if let Err(e) = reset(&guard) {
                tracing::warn!(error = %e, "rollback of a dropped transaction failed");
            }
            if let (Held::Reader(conn), Some(pool)) = (guard, self.pool.take()) {
                return_reader(&pool, conn);
            }
        }
    }
}

#[async_trait]
impl Transaction for SqliteTransaction {
    fn fail_fast(&mut self) {
        self.fail_fast = true;
    }

    fn qe_state(&mut self) -> Option<&mut dyn QeState> {
        Some(self)
    }

    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson> {
        let name = collection.to_owned();
        self.run(move |c| {
            let meta = ops::ensure_collection(c, &name)?;
            ops::insert_one(c, &meta, doc)
        })
        .await
    }

    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        let name = collection.to_owned();
        self.run(move |c| insert_many(c, &name, docs)).await
    }

    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        let (name, id) = (collection.to_owned(), id.clone());
        self.run(move |c| replace_one(c, &name, &id, doc)).await
    }

    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.run(move |c| ops::delete(c, &name, &f, DeleteScope::First))
            .await
    }

    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.run(move |c| ops::delete(c, &name, &f, DeleteScope::All))
            .await
    }

    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        let (name, f, o) = (collection.to_owned(), filter.clone(), options.clone());
        self.query(move |c| ops::find(c, &name, &f, &o)).await
    }

    async fn find_raw(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        let (name, f, o) = (collection.to_owned(), filter.clone(), options.clone());
        self.query(move |c| ops::find_raw(c, &name, &f, &o)).await
    }

    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        let (name, f) = (collection.to_owned(), filter.clone());
        self.query(move |c| ops::count(c, &name, &f)).await
    }

    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>> {
        let name = name.to_owned();
        self.query(move |c| ops::load_meta(c, &name)?.map(|m| m.info()).transpose())
            .await
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.finish("COMMIT").await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.finish("ROLLBACK").await
    }
}

#[async_trait]
impl QeState for SqliteTransaction {
    fn cheap_round_trips(&self) -> bool {
        self.inline
    }

    async fn esc_has_anchors(&mut self, collection: &str) -> Result<bool> {
        let name = collection.to_owned();
        self.query(move |c| ops::esc_has_anchors(c, &name)).await
    }

    async fn esc_get_many(
        &mut self,
        collection: &str,
        ids: &[EscId],
    ) -> Result<Vec<Option<EscEntry>>> {
        let (name, ids) = (collection.to_owned(), ids.to_vec());
        self.query(move |c| ops::esc_get_many(c, &name, &ids)).await
    }

    async fn esc_insert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()> {
        let (name, id) = (collection.to_owned(), *id);
        self.run(move |c| ops::esc_insert(c, &name, [(&id, value.as_ref())], false))
            .await
    }

    async fn esc_insert_many(
        &mut self,
        collection: &str,
        docs: &[(EscId, Option<EscValue>)],
    ) -> Result<()> {
        let (name, docs) = (collection.to_owned(), docs.to_vec());
        self.run(move |c| {
            let rows = docs.iter().map(|(id, value)| (id, value.as_ref()));
            ops::esc_insert(c, &name, rows, false)
        })
        .await
    }

    async fn ecoc_append_many(&mut self, collection: &str, entries: &[EcocEntry]) -> Result<()> {
        let (name, entries) = (collection.to_owned(), entries.to_vec());
        self.run(move |c| {
            let rows = entries
                .iter()
                .map(|e| (e.field_name.as_str(), e.value.as_slice()));
            ops::ecoc_append(c, &name, rows)
        })
        .await
    }

    async fn esc_upsert(
        &mut self,
        collection: &str,
        id: &EscId,
        value: Option<EscValue>,
    ) -> Result<()> {
        let (name, id) = (collection.to_owned(), *id);
        self.run(move |c| ops::esc_insert(c, &name, [(&id, value.as_ref())], true))
            .await
    }

    async fn esc_delete_many(&mut self, collection: &str, ids: &[EscId]) -> Result<u64> {
        let (name, ids) = (collection.to_owned(), ids.to_vec());
        self.run(move |c| ops::esc_delete_many(c, &name, &ids))
            .await
    }

    async fn esc_count(&mut self, collection: &str) -> Result<u64> {
        let name = collection.to_owned();
        self.query(move |c| ops::esc_count(c, &name)).await
    }

    async fn esc_non_anchor_ids(&mut self, collection: &str) -> Result<Vec<EscId>> {
        let name = collection.to_owned();
        self.query(move |c| ops::esc_non_anchor_ids(c, &name)).await
    }

    async fn ecoc_append(
        &mut self,
        collection: &str,
        field_name: &str,
        value: &[u8],
    ) -> Result<()> {
        let (name, field, value) = (collection.to_owned(), field_name.to_owned(), value.to_vec());
        self.run(move |c| ops::ecoc_append(c, &name, [(field.as_str(), value.as_slice())]))
            .await
    }

    async fn ecoc_count(&mut self, collection: &str) -> Result<u64> {
        let name = collection.to_owned();
        self.query(move |c| ops::ecoc_count(c, &name)).await
    }

    async fn ecoc_begin_compaction(&mut self, collection: &str) -> Result<bool> {
        let name = collection.to_owned();
        self.run(move |c| ops::ecoc_begin_compaction(c, &name))
            .await
    }

    async fn ecoc_read(
        &mut self,
        collection: &str,
        generation: EcocGeneration,
    ) -> Result<Vec<EcocEntry>> {
        let name = collection.to_owned();
        self.query(move |c| ops::ecoc_read(c, &name, generation))
            .await
    }

    async fn ecoc_drop_compact(&mut self, collection: &str) -> Result<()> {
        let name = collection.to_owned();
        self.run(move |c| ops::ecoc_drop_compact(c, &name)).await
    }
}
