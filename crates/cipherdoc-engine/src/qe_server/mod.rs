//! The QE server role (qe-protocol.md §9) for engines that lack it.
//!
//! [`QeServer`] wraps any `Arc<dyn Engine>` and is itself an [`Engine`]:
//!
//! ```no_run
//! # async fn demo() -> cipherdoc_engine::Result<()> {
//! use std::sync::Arc;
//! use cipherdoc_engine::{Engine, sqlite::SqliteEngine, qe_server::QeServer};
//! let engine = QeServer::new(Arc::new(SqliteEngine::open("var/encrypted.db")?));
//! // create_collection with encryptedFields, then insert documents holding
//! // insert payloads (BinData 6, subtype 11) and query with find payloads
//! // (subtype 12) as operands of Filter::eq / ne / is_in / not_in.
//! # Ok(()) }
//! ```
//!
//! - **Writes** (`insert_one`, `insert_many`, `replace_one`): every insert
//!   payload (11) at an encrypted path is validated (declared indexed field,
//!   matching index key id and BSON type, contention factor within the
//!   field's, index key ids unique within the document), its ESC counter is
//!   found with emuBinaryV2 (batched probes, see `probe`), the next
//!   non-anchor goes into the ESC and the payload's `p` into the ECOC, and
//!   the payload is replaced by the stored value (14, or 15 for range).
//!   Unindexed values (16) are kept as sent. `__safeContent__` is set to exactly the tags of the
//!   document's stored values, so after a replacement it never holds a tag of
//!   a value the document no longer has. Refused: plaintext at an encrypted
//!   path, any other QE blob (placeholders, find payloads, stored values —
//!   except, in a replacement, the unchanged stored value of the same path),
//!   QE blobs at plaintext paths, encrypted fields inside arrays, and a
//!   client-written `__safeContent__`. Autocommit writes run in one
//!   transaction (a batch of `insert_many` together: all or none).
//! - **Queries** (`find`, `count`, `delete_*`): see `query` for the accepted
//!   filter shapes; find payloads become [`Filter::TagIn`] answered by the
//!   engine's tag index. Reads run on one snapshot ([`Engine::begin_read`]);
//!   deletes inside their write transaction.
//! - **Compaction and cleanup**: [`Engine::compact`] and
//!   [`Engine::cleanup`] with [`CompactionTokens`].
//! - **The ESC/ECOC state** lives in the wrapped engine's transactions
//!   ([`Transaction::qe_state`]): only engines of [`QeRole::Client`] have
//!   it, and a `QeServer` is itself of [`QeRole::Server`].
//! - **Transactions**: [`Engine::begin`] returns a transaction that applies
//!   the same rules. An ESC conflict there is returned to the caller (who
//!   retries the whole transaction, as with MongoDB's transient transaction
//!   errors); an encrypted write that fails after it started writing
//!   poisons the transaction ([`QeError::TransactionAborted`]).
//!
//! Range fields (§9.4, §9.6): an insert payload with edges advances one
//! ESC counter per edge (one ECOC entry each) and becomes the stored value
//! (15) with one metadata block per edge, all of whose tags go into
//! `__safeContent__`; a range find payload (13) under `$gt/$gte/$lt/$lte`
//! (or `$eq`) becomes the tags of every mincover string × contention
//! factor, a stub becomes "always true". Compaction pads range fields with
//! anchors (§9.7 step 4) and cleanup folds the padding (§9.8).
//!
//! # Why concurrent encrypted inserts are safe
//!
//! An insert of value *v* with contention factor *k* reads the ESC to find
//! the counter's last position *c* (emuBinary) and writes the non-anchor at
//! *c + 1*; two writers that read the same *c* would both claim *c + 1*.
//! Both documents would then carry the same tag: queries would still find
//! both, but the store could see that the two hold the same value, which
//! per-insert positions exist to hide. Two mechanisms rule this out:
//!
//! 1. **Uniqueness of ESC ids.** The non-anchor's id is
//!    `HMAC(ESCTwiceDerivedTagToken, c + 1)`, a deterministic function of
//!    the position, and every engine stores ESC ids under a unique key. The
//!    second writer's `esc_insert` fails with
//!    [`EngineError::EscIdConflict`]
//!    instead of silently sharing the position (on PostgreSQL, in these
//!    fail-fast transactions, the insert rides in the next statement's
//!    round trip and that operation reports the conflict; a transaction
//!    with an unchecked ESC insert never commits). The ESC insert is the first
//!    write of the document's transaction, and the document, its tags and its
//!    ESC/ECOC rows commit together, so the loser's whole transaction is
//!    rolled back and retried from the emuBinary read (which then sees the
//!    winner's position) — up to [`QeServerConfig::max_write_attempts`]
//!    times with jittered backoff, after which the caller gets
//!    [`QeError::WriteConflict`] and nothing was written. An insert is
//!    therefore either committed at a position of its own or reported as
//!    failed; it is never lost.
//! 2. **SQLite: one writer.** `SqliteEngine` runs every write transaction on
//!    its single writer connection under `BEGIN IMMEDIATE`, so the read of
//!    *c* and the write of *c + 1* are never interleaved with another
//!    writer, in-process or (through SQLite's file lock) in another process.
//!    Conflicts cannot occur there; (1) is the safety net for engines with
//!    concurrent writers (PostgreSQL under read committed or repeatable
//!    read, where a unique violation or serialization failure plays the
//!    same role).
//!
//! Compaction deletes non-anchors that a concurrent writer's search may
//! not have looked at yet; where a writer's probes are several statements
//! on different snapshots (PostgreSQL), compaction first takes
//! [`crate::QeState::lock_for_maintenance`], so that no writer's search
//! spans its commit. The suite's `compaction_during_inserts` races
//! compactions against writers and checks that every insert is found and
//! that no two documents share a tag.
//!
//! Queries are unaffected by concurrent writers: they read one snapshot,
//! in which each counter's positions are contiguous, and see every document
//! committed before that snapshot. Contention factors (`cm > 0`) spread one
//! value over `cm + 1` independent counters, making such conflicts rarer.

mod compact;
mod error;
mod probe;
mod query;
mod schema;
mod stats;
#[cfg(feature = "testing")]
pub mod suite;
#[cfg(feature = "testing")]
pub mod text_suite;
mod write;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};

pub use compact::{CompactionStats, CompactionTokens, FieldTokens};
pub use error::QeError;
pub use stats::{CounterCount, CounterKind};

use crate::engine::{
    CollectionInfo, CreateCollectionOptions, Engine, FindOptions, IndexSpec, QeRole, QeStateSizes,
    RenameTarget, SortDirection, Transaction, TxMode, transact,
};
use crate::filter::Filter;
use crate::qe_state::QeState;
use crate::{EngineError, Result};
use schema::{PathRel, QeSchema};

/// Tuning of the server role.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QeServerConfig {
    /// How many times an autocommit encrypted write (or compaction) is tried
    /// when concurrent writers take its ESC positions. Default 10.
    pub max_write_attempts: u32,
    /// Upper bound on the tags one query may expand to (MongoDB switches
    /// to a collection scan past its `internalQueryFLERewriteMemoryLimit`;
    /// we refuse). Default 500,000.
    pub max_query_tags: usize,
    /// How long autocommit reads (`find`, `count`) may reuse a collection's
    /// `encryptedFields` without re-reading the catalog. Writes always read
    /// it inside their transaction (and refresh this cache), and drops and
    /// creations through this server clear it, so only a collection
    /// recreated with other `encryptedFields` through another handle can be
    /// misjudged by reads, for at most this long — which can refuse a query
    /// or miss matches, never store or reveal anything. Default 1 s;
    /// `Duration::ZERO` always re-reads.
    pub schema_ttl: Duration,
}

/// Validate the `encryptedFields` of collection `name` as the QE server
/// role (and mongod) does before creating it: an engine whose server plays
/// the role checks with it before it creates the state collections, so that
/// a refused configuration leaves nothing behind.
///
/// # Errors
/// [`EngineError::InvalidEncryptedFields`], naming the collection and why.
pub fn check_encrypted_fields(name: &str, ef: &Document) -> Result<()> {
    crate::documents::normalize_encrypted_fields(name, ef.clone())?;
    QeSchema::parse(name, ef)
        .map(|_| ())
        .map_err(|e| EngineError::InvalidEncryptedFields {
            collection: name.to_owned(),
            reason: match e {
                QeError::Schema { reason, .. } => reason,
                other => other.to_string(),
            },
        })
}

impl Default for QeServerConfig {
    fn default() -> Self {
        Self {
            max_write_attempts: 10,
            max_query_tags: 500_000,
            schema_ttl: Duration::from_secs(1),
        }
    }
}

impl QeServerConfig {
    /// Set [`Self::max_write_attempts`] (at least 1).
    #[must_use]
    pub fn max_write_attempts(mut self, n: u32) -> Self {
        self.max_write_attempts = n.max(1);
        self
    }
    /// Set [`Self::schema_ttl`].
    #[must_use]
    pub fn schema_ttl(mut self, ttl: Duration) -> Self {
        self.schema_ttl = ttl;
        self
    }
    /// Set [`Self::max_query_tags`].
    #[must_use]
    pub fn max_query_tags(mut self, n: usize) -> Self {
        self.max_query_tags = n;
        self
    }
}

/// When a read last learnt a collection's schema, and what it was.
type Recent = (Instant, Option<Arc<QeSchema>>);

/// State shared by the server and its transactions.
struct Shared {
    config: QeServerConfig,
    /// Parsed `encryptedFields` per collection, keyed by the document they
    /// were parsed from (re-read inside every operation; only the parse is
    /// cached, so a collection recreated elsewhere is never misjudged).
    schemas: Mutex<HashMap<String, (Document, Arc<QeSchema>)>>,
    /// What autocommit reads last learnt about each collection (`None`:
    /// plain or missing), and when.
    recent: Mutex<HashMap<String, Recent>>,
}

impl Shared {
    fn schema(
        &self,
        collection: &str,
        info: Option<&CollectionInfo>,
    ) -> Result<Option<Arc<QeSchema>>> {
        let Some(ef) = info.and_then(|i| i.options.encrypted_fields.as_ref()) else {
            return Ok(None);
        };
        let mut cache = self.schemas.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((doc, s)) = cache.get(collection)
            && doc == ef
        {
            return Ok(Some(Arc::clone(s)));
        }
        let s = Arc::new(QeSchema::parse(collection, ef)?);
        cache.insert(collection.to_owned(), (ef.clone(), Arc::clone(&s)));
        Ok(Some(s))
    }

    async fn schema_in(
        &self,
        tx: &mut dyn Transaction,
        collection: &str,
    ) -> Result<Option<Arc<QeSchema>>> {
        let info = tx.describe_collection(collection).await?;
        let s = self.schema(collection, info.as_ref())?;
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(collection.to_owned(), (Instant::now(), s.clone()));
        Ok(s)
    }

    /// [`Self::schema_in`], or its answer from less than `schema_ttl` ago.
    async fn schema_for_read(
        &self,
        tx: &mut dyn Transaction,
        collection: &str,
    ) -> Result<Option<Arc<QeSchema>>> {
        if let Some((at, s)) = self
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(collection)
            && at.elapsed() < self.config.schema_ttl
        {
            return Ok(s.clone());
        }
        self.schema_in(tx, collection).await
    }

    fn forget(&self, collection: &str) {
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(collection);
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(collection);
    }
}

/// One write operation, so that the retry loop is written once.
#[derive(Clone)]
enum WriteOp {
    Insert(Vec<Document>),
    Replace(Bson, Document),
    Delete(Filter, bool),
}

enum WriteOut {
    Ids(Vec<Bson>),
    Replaced(bool),
    Deleted(u64),
}

/// What each write operation returns, for the autocommit engine and its
/// transactions alike (a mismatch would be a bug in `write_in`).
impl WriteOut {
    fn mismatch() -> EngineError {
        EngineError::TransactionClosed("unexpected write result")
    }
    fn ids(self) -> Result<Vec<Bson>> {
        match self {
            Self::Ids(ids) => Ok(ids),
            _ => Err(Self::mismatch()),
        }
    }
    fn id(self) -> Result<Bson> {
        self.ids()?
            .pop()
            .ok_or(EngineError::TransactionClosed("the insert returned no id"))
    }
    fn replaced(self) -> Result<bool> {
        match self {
            Self::Replaced(b) => Ok(b),
            _ => Err(Self::mismatch()),
        }
    }
    fn deleted(self) -> Result<u64> {
        match self {
            Self::Deleted(n) => Ok(n),
            _ => Err(Self::mismatch()),
        }
    }
}

/// Run one write inside `tx`. `wrote` tells whether it started writing.
async fn write_in(
    shared: &Shared,
    tx: &mut dyn Transaction,
    collection: &str,
    op: WriteOp,
    wrote: &mut bool,
) -> Result<WriteOut> {
    let schema = shared.schema_in(tx, collection).await?;
    let schema = schema.as_deref();
    Ok(match op {
        WriteOp::Insert(docs) => {
            WriteOut::Ids(write::insert(tx, collection, schema, docs, wrote).await?)
        }
        WriteOp::Replace(id, doc) => {
            WriteOut::Replaced(write::replace(tx, collection, schema, &id, doc, wrote).await?)
        }
        WriteOp::Delete(filter, one) => {
            let f = query::rewrite(
                tx,
                collection,
                schema,
                &filter,
                shared.config.max_query_tags,
            )
            .await?;
            *wrote = true;
            WriteOut::Deleted(if one {
                tx.delete_one(collection, &f).await?
            } else {
                tx.delete_many(collection, &f).await?
            })
        }
    })
}

/// Where a read takes the collection's QE schema from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaSource {
    /// The short-lived read cache, else the catalog (autocommit reads).
    ReadCache,
    /// The catalog as the caller's transaction sees it.
    Transaction,
}

/// The filter to run inside `tx` for a read of `collection`: `filter` with
/// its encrypted predicates rewritten to tag lookups, after the sort has
/// been checked against the encrypted fields.
async fn rewrite_in(
    shared: &Shared,
    tx: &mut dyn Transaction,
    collection: &str,
    filter: &Filter,
    sort: &[(String, SortDirection)],
    source: SchemaSource,
) -> Result<Filter> {
    let schema = match source {
        SchemaSource::ReadCache => shared.schema_for_read(tx, collection).await?,
        SchemaSource::Transaction => shared.schema_in(tx, collection).await?,
    };
    let schema = schema.as_deref();
    query::check_sort(collection, schema, sort)?;
    query::rewrite(tx, collection, schema, filter, shared.config.max_query_tags).await
}

/// A read to run inside the transaction with the rewritten filter: the
/// transaction, the collection and the filter.
type ReadWork<T> = Box<
    dyn for<'t> FnOnce(
            &'t mut dyn Transaction,
            String,
            Filter,
        ) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 't>>
        + Send,
>;

/// The ESC/ECOC storage of a transaction of the wrapped engine, which must
/// be one whose QE role cipherdoc plays ([`QeRole::Client`]).
pub(crate) fn state(tx: &mut dyn Transaction) -> Result<&mut dyn QeState> {
    tx.qe_state().ok_or(EngineError::NoQeState)
}

async fn backoff(attempt: u32) {
    let mut b = [0u8; 1];
    let jitter = cipherdoc_crypto::RandomSource::fill(&mut cipherdoc_crypto::OsRandom, &mut b)
        .map_or(0, |()| u64::from(b[0]) % 4);
    let base = 1u64 << attempt.min(5);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

/// The QE server role over any engine. See the [module docs](self).
#[derive(Clone)]
pub struct QeServer {
    inner: Arc<dyn Engine>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for QeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QeServer")
            .field("inner", &self.inner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl QeServer {
    /// Wrap `inner` with the default configuration.
    pub fn new(inner: Arc<dyn Engine>) -> Self {
        Self::with_config(inner, QeServerConfig::default())
    }

    /// Wrap `inner`.
    pub fn with_config(inner: Arc<dyn Engine>, config: QeServerConfig) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                config,
                schemas: Mutex::new(HashMap::new()),
                recent: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The wrapped engine (raw access: no QE rules apply through it).
    pub fn inner(&self) -> &Arc<dyn Engine> {
        &self.inner
    }

    /// The configuration.
    pub fn config(&self) -> &QeServerConfig {
        &self.shared.config
    }

    /// One autocommit write in one engine call ([`Engine::transact`]),
    /// retried on ESC id conflicts.
    async fn write(&self, collection: &str, op: WriteOp) -> Result<WriteOut> {
        let attempts = self.shared.config.max_write_attempts.max(1);
        let op = Arc::new(op);
        for attempt in 1..=attempts {
            let (shared, coll, op) = (
                Arc::clone(&self.shared),
                collection.to_owned(),
                Arc::clone(&op),
            );
            let r = transact(&*self.inner, TxMode::Write, move |tx| {
                Box::pin(async move {
                    // Any error ends this work and rolls it all back.
                    tx.fail_fast();
                    let mut wrote = false;
                    // An attempt consumes its documents; the retry loop
                    // keeps the original for the next one.
                    write_in(&shared, tx, &coll, (*op).clone(), &mut wrote).await
                })
            })
            .await;
            match r {
                Err(EngineError::EscIdConflict { .. }) => {
                    tracing::debug!(collection, attempt, "ESC id conflict; retrying the write");
                    if attempt < attempts {
                        backoff(attempt).await;
                    }
                }
                other => return other,
            }
        }
        Err(QeError::WriteConflict {
            collection: collection.to_owned(),
            attempts,
        }
        .into())
    }

    /// One autocommit read on one snapshot, in one engine call: the
    /// filter rewritten, then `work`.
    async fn read<T: Send + 'static>(
        &self,
        collection: &str,
        filter: &Filter,
        sort: &[(String, SortDirection)],
        work: ReadWork<T>,
    ) -> Result<T> {
        let (shared, coll, filter, sort) = (
            Arc::clone(&self.shared),
            collection.to_owned(),
            filter.clone(),
            sort.to_vec(),
        );
        transact(&*self.inner, TxMode::Read, move |tx| {
            Box::pin(async move {
                tx.fail_fast();
                let f =
                    rewrite_in(&shared, tx, &coll, &filter, &sort, SchemaSource::ReadCache).await?;
                work(tx, coll, f).await
            })
        })
        .await
    }

    async fn maintain(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
        mode: compact::Mode,
    ) -> Result<CompactionStats> {
        let attempts = self.shared.config.max_write_attempts.max(1);
        for attempt in 1..=attempts {
            let mut tx = self.inner.begin().await?;
            let locked = match state(&mut *tx) {
                Ok(st) => st.lock_for_maintenance(collection).await,
                Err(e) => Err(e),
            };
            if let Err(e) = locked {
                let _ = tx.rollback().await;
                return Err(e);
            }
            let schema = match self.shared.schema_in(&mut *tx, collection).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    let _ = tx.rollback().await;
                    return Err(EngineError::NotEncrypted(collection.to_owned()));
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            };
            match compact::run(&mut *tx, collection, &schema, tokens, mode).await {
                Ok(stats) => {
                    tx.commit().await?;
                    return Ok(stats);
                }
                Err(EngineError::EscIdConflict { .. }) => {
                    tx.rollback().await?;
                    if attempt < attempts {
                        backoff(attempt).await;
                    }
                }
                Err(e) => {
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        Err(QeError::WriteConflict {
            collection: collection.to_owned(),
            attempts,
        }
        .into())
    }
}

#[async_trait]
impl Engine for QeServer {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    /// The wrapped engine's role is played here.
    fn qe_role(&self) -> QeRole {
        QeRole::Server
    }

    /// `compactStructuredEncryptionData` (§9.7): turn the ECOC's entries into
    /// ESC anchors and delete the non-anchors, so the ESC shrinks while every
    /// value's count is kept. `tokens` must hold the ECOC token of every
    /// indexed field (and the anchor padding token of range fields).
    async fn compact(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        self.maintain(collection, tokens, compact::Mode::Compact)
            .await
    }

    /// `cleanupStructuredEncryptionData` (§9.8): like compaction, but each
    /// value's anchors collapse into its null anchor.
    async fn cleanup(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        self.maintain(collection, tokens, compact::Mode::Cleanup)
            .await
    }

    async fn qe_counters(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<Vec<CounterCount>> {
        let mut tx = self.inner.begin_read().await?;
        stats::run(&mut *tx, collection, tokens).await
    }

    async fn qe_state_sizes(&self, collection: &str) -> Result<QeStateSizes> {
        let mut tx = self.inner.begin_read().await?;
        let st = state(&mut *tx)?;
        Ok(QeStateSizes {
            esc: st.esc_count(collection).await?,
            ecoc: st.ecoc_count(collection).await?,
        })
    }

    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()> {
        if let Some(ef) = &options.encrypted_fields {
            check_encrypted_fields(name, ef)?;
        }
        let r = self.inner.create_collection(name, options).await;
        self.shared.forget(name);
        r
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        self.inner.list_collections().await
    }

    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        self.inner.describe_collection(name).await
    }

    async fn drop_collection(&self, name: &str) -> Result<bool> {
        let r = self.inner.drop_collection(name).await;
        self.shared.forget(name);
        r
    }

    async fn rename_collection(&self, from: &str, to: &str, target: RenameTarget) -> Result<()> {
        let r = self.inner.rename_collection(from, to, target).await;
        self.shared.forget(from);
        self.shared.forget(to);
        r
    }

    async fn scrub_freed_space(&self) -> Result<()> {
        self.inner.scrub_freed_space().await
    }

    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()> {
        let info = self.inner.describe_collection(collection).await?;
        if let Some(s) = self.shared.schema(collection, info.as_ref())?
            && matches!(
                s.relation(&spec.path),
                PathRel::Exact(_) | PathRel::Below(_)
            )
        {
            return Err(EngineError::InvalidIndex {
                collection: collection.to_owned(),
                index: spec.name.clone(),
                reason: "an index on an encrypted field is useless (values are randomized); encrypted equality queries use the tag index".into(),
            });
        }
        self.inner.create_index(collection, spec).await
    }

    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson> {
        self.write(collection, WriteOp::Insert(vec![doc]))
            .await?
            .id()
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        self.write(collection, WriteOp::Insert(docs)).await?.ids()
    }

    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        self.write(collection, WriteOp::Replace(id.clone(), doc))
            .await?
            .replaced()
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.write(collection, WriteOp::Delete(filter.clone(), true))
            .await?
            .deleted()
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.write(collection, WriteOp::Delete(filter.clone(), false))
            .await?
            .deleted()
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        let o = options.clone();
        let work: ReadWork<_> =
            Box::new(move |tx, c, f| Box::pin(async move { tx.find(&c, &f, &o).await }));
        self.read(collection, filter, &options.sort, work).await
    }

    async fn find_raw(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        let o = options.clone();
        let work: ReadWork<_> =
            Box::new(move |tx, c, f| Box::pin(async move { tx.find_raw(&c, &f, &o).await }));
        self.read(collection, filter, &options.sort, work).await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let work: ReadWork<_> =
            Box::new(move |tx, c, f| Box::pin(async move { tx.count(&c, &f).await }));
        self.read(collection, filter, &[], work).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(QeTransaction {
            inner: self.inner.begin().await?,
            shared: Arc::clone(&self.shared),
            poisoned: None,
        }))
    }

    async fn begin_read(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(QeTransaction {
            inner: self.inner.begin_read().await?,
            shared: Arc::clone(&self.shared),
            poisoned: None,
        }))
    }
}

/// A transaction of a [`QeServer`]: the same QE rules inside the caller's
/// transaction.
pub struct QeTransaction {
    inner: Box<dyn Transaction>,
    shared: Arc<Shared>,
    /// Set when an encrypted write failed after it started writing.
    poisoned: Option<String>,
}

impl std::fmt::Debug for QeTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QeTransaction")
            .field("inner", &self.inner)
            .field("poisoned", &self.poisoned.is_some())
            .finish_non_exhaustive()
    }
}

impl QeTransaction {
    /// The filter a read runs on the inner transaction (see [`rewrite_in`]).
    async fn rewrite(
        &mut self,
        collection: &str,
        filter: &Filter,
        sort: &[(String, SortDirection)],
    ) -> Result<Filter> {
        self.check()?;
        rewrite_in(
            &self.shared,
            &mut *self.inner,
            collection,
            filter,
            sort,
            SchemaSource::Transaction,
        )
        .await
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(QeError::TransactionAborted(why.clone()).into()),
            None => Ok(()),
        }
    }

    async fn write(&mut self, collection: &str, op: WriteOp) -> Result<WriteOut> {
        self.check()?;
        let mut wrote = false;
        let r = write_in(&self.shared, &mut *self.inner, collection, op, &mut wrote).await;
        if let Err(e) = &r
            && wrote
        {
            self.poisoned = Some(e.to_string());
        }
        r
    }
}

#[async_trait]
impl Transaction for QeTransaction {
    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson> {
        self.write(collection, WriteOp::Insert(vec![doc]))
            .await?
            .id()
    }

    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        self.write(collection, WriteOp::Insert(docs)).await?.ids()
    }

    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        self.write(collection, WriteOp::Replace(id.clone(), doc))
            .await?
            .replaced()
    }

    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        self.write(collection, WriteOp::Delete(filter.clone(), true))
            .await?
            .deleted()
    }

    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        self.write(collection, WriteOp::Delete(filter.clone(), false))
            .await?
            .deleted()
    }

    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        let f = self.rewrite(collection, filter, &options.sort).await?;
        self.inner.find(collection, &f, options).await
    }

    async fn find_raw(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        let f = self.rewrite(collection, filter, &options.sort).await?;
        self.inner.find_raw(collection, &f, options).await
    }

    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        let f = self.rewrite(collection, filter, &[]).await?;
        self.inner.count(collection, &f).await
    }

    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>> {
        self.inner.describe_collection(name).await
    }

    /// Raw ESC/ECOC access, passed through (compaction tools and tests).
    fn qe_state(&mut self) -> Option<&mut dyn QeState> {
        self.inner.qe_state()
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        if let Some(why) = self.poisoned {
            let _ = self.inner.rollback().await;
            return Err(QeError::TransactionAborted(why).into());
        }
        self.inner.commit().await
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        self.inner.rollback().await
    }
}
