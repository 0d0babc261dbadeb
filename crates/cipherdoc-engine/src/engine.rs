//! The engine-independent interface: the [`Engine`] trait, its
//! [`Transaction`] handle, and their option types.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bson::{Bson, Document, RawDocumentBuf};

use crate::Result;
use crate::filter::Filter;
use crate::qe_server::{CompactionStats, CompactionTokens, CounterCount};
use crate::qe_state::QeState;

/// Who plays the QE server role (qe-protocol.md §9) for an engine's
/// encrypted collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QeRole {
    /// cipherdoc does, on the client side: the engine only stores ESC/ECOC
    /// state ([`Transaction::qe_state`]) and must be wrapped in
    /// [`crate::qe_server::QeServer`] before it sees an insert or find
    /// payload (SQLite, PostgreSQL).
    Client,
    /// The database server does (MongoDB, or an engine already wrapped in
    /// `QeServer`): payloads go to it as they are, and compaction is
    /// [`Engine::compact`].
    Server,
}

/// What a failed operation does to the transaction it ran in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailedOperation {
    /// It is undone alone and the transaction stays usable (SQLite and
    /// PostgreSQL, through a savepoint per operation), unless the caller
    /// chose [`Transaction::fail_fast`].
    UndoneAlone,
    /// It ends the transaction: later operations and `commit` fail with
    /// [`crate::EngineError::TransactionClosed`] and nothing of it is
    /// committed (MongoDB aborts a transaction whose command failed).
    EndsTransaction,
}

/// How many documents an encrypted collection's ESC and ECOC hold
/// (`enxcol_.<c>.esc` / `.ecoc`), as [`Engine::qe_state_sizes`] reports
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QeStateSizes {
    /// ESC documents (non-anchors, anchors and null anchors).
    pub esc: u64,
    /// Documents of the live ECOC.
    pub ecoc: u64,
}

/// Which transaction [`Engine::transact`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// [`Engine::begin_read`]: a read-only snapshot.
    Read,
    /// [`Engine::begin`]: a read-write transaction.
    Write,
}

/// What a [`TxWork`] returns: any value, type-erased so that [`Engine`]
/// stays object-safe (see [`transact`] for the typed entry point).
pub type TxOutput = Box<dyn Any + Send>;

/// The future a [`TxWork`] returns, borrowing the transaction.
pub type TxFuture<'t> = Pin<Box<dyn Future<Output = Result<TxOutput>> + Send + 't>>;

/// A whole transaction's work, given to [`Engine::transact`].
pub type TxWork = Box<dyn for<'t> FnOnce(&'t mut dyn Transaction) -> TxFuture<'t> + Send>;

/// Run `work` in one transaction of `engine` ([`Engine::transact`]) and
/// return its typed result.
///
/// # Errors
/// `work`'s error (the transaction is then rolled back), or the engine's
/// error opening or committing the transaction.
pub async fn transact<T, F>(engine: &dyn Engine, mode: TxMode, work: F) -> Result<T>
where
    T: Send + 'static,
    F: for<'t> FnOnce(
            &'t mut dyn Transaction,
        ) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 't>>
        + Send
        + 'static,
{
    let out = engine
        .transact(
            mode,
            Box::new(move |tx| {
                let fut = work(tx);
                Box::pin(async move { fut.await.map(|v| Box::new(v) as TxOutput) })
            }),
        )
        .await?;
    out.downcast::<T>()
        .map(|b| *b)
        .map_err(|_| crate::EngineError::Worker("transact: the work's result changed type".into()))
}

/// What [`Engine::rename_collection`] does when the new name is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenameTarget {
    /// Refuse with [`crate::EngineError::CollectionExists`].
    MustNotExist,
    /// Drop the existing collection (with its indexes, tag index, ESC and
    /// ECOC) in the same transaction as the rename, as MongoDB's
    /// `renameCollection` with `dropTarget: true`: readers see the old
    /// collection or the renamed one, never neither.
    DropExisting,
}

/// Options of `create_collection`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateCollectionOptions {
    /// The collection's `encryptedFields` (qe-protocol.md §7.1). `Some` makes
    /// it an encrypted collection: the engine creates its ESC and ECOC
    /// storage (`enxcol_.<coll>.esc`/`.ecoc`) and its tag index.
    pub encrypted_fields: Option<Document>,
}

/// What `describe_collection` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionInfo {
    /// The collection name.
    pub name: String,
    /// The options it was created with (`encryptedFields` as stored, with
    /// `escCollection`/`ecocCollection` filled in with their defaults).
    pub options: CreateCollectionOptions,
    /// Its secondary indexes (the implicit `_id_` index is not listed).
    pub indexes: Vec<IndexSpec>,
}

/// A secondary index on one plaintext path (ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Index name, unique within the collection (MongoDB's default is
    /// `"<path>_1"`).
    pub name: String,
    /// Dotted path. Arrays on the path are indexed element by element
    /// (multikey), as MongoDB does.
    pub path: String,
    /// Refuse two documents with an equal key.
    pub unique: bool,
    /// Skip documents where the path is missing (otherwise they are indexed
    /// under `null`, and a unique index allows only one of them).
    pub sparse: bool,
}

impl IndexSpec {
    /// A non-unique, non-sparse index named `"<path>_1"`.
    pub fn new(path: impl Into<String>) -> Self {
        let path = path.into();
        Self {
            name: format!("{path}_1"),
            path,
            unique: false,
            sparse: false,
        }
    }
    /// Make it unique.
    #[must_use]
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    /// Make it sparse.
    #[must_use]
    pub fn sparse(mut self) -> Self {
        self.sparse = true;
        self
    }
    /// Rename it.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Sort direction of one sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    /// Smallest first (an array sorts by its smallest element).
    Ascending,
    /// Largest first (an array sorts by its largest element).
    Descending,
}

/// Options of `find`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindOptions {
    /// Sort keys in priority order; ties keep insertion order.
    pub sort: Vec<(String, SortDirection)>,
    /// Documents to skip after sorting.
    pub skip: u64,
    /// At most this many documents (`None`: all).
    pub limit: Option<u64>,
    /// MongoDB projection: `{a: 1, "b.c": 1}` (inclusion, `_id` kept unless
    /// `_id: 0`) or `{a: 0}` (exclusion).
    pub projection: Option<Document>,
}

/// Document operations, shared by the autocommit engine and transactions.
/// Writes on an engine each run in their own transaction.
#[async_trait]
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Short engine name (`"sqlite"`, `"postgres"`).
    fn kind(&self) -> &'static str;

    /// Who plays the QE server role for this engine's encrypted
    /// collections: the application wraps a [`QeRole::Client`] engine in
    /// [`crate::qe_server::QeServer`] and hands payloads to a
    /// [`QeRole::Server`] engine as they are.
    fn qe_role(&self) -> QeRole;

    /// What a failed operation does to its transaction. The QE server
    /// role only runs fail-fast work, which is correct under both.
    fn failed_operation(&self) -> FailedOperation {
        FailedOperation::UndoneAlone
    }

    /// What the engine learned of the deployment it is connected to, for
    /// `check` (MongoDB: the topology and wire version `hello` reported);
    /// `None` when there is nothing to say.
    fn deployment(&self) -> Option<String> {
        None
    }

    /// `compactStructuredEncryptionData` (qe-protocol.md §9.7) of an
    /// encrypted collection. Only engines that play the QE server role
    /// ([`QeRole::Server`]) can; the default refuses.
    async fn compact(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        let _ = (collection, tokens);
        Err(crate::EngineError::NoQeServerRole {
            engine: self.kind(),
            operation: "compact",
        })
    }

    /// `cleanupStructuredEncryptionData` (§9.8); see [`Engine::compact`].
    async fn cleanup(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        let _ = (collection, tokens);
        Err(crate::EngineError::NoQeServerRole {
            engine: self.kind(),
            operation: "cleanup",
        })
    }

    /// The ESC counters the live ECOC of an encrypted collection names, each
    /// with its insert count (`qe_server::stats`): what the leakage report
    /// reads. `tokens` are the client's compaction tokens, which decrypt
    /// the ECOC entries. The default refuses (a server playing the QE role
    /// itself does not expose its ECOC this way).
    async fn qe_counters(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<Vec<CounterCount>> {
        let _ = (collection, tokens);
        Err(crate::EngineError::NoQeServerRole {
            engine: self.kind(),
            operation: "count ESC counters",
        })
    }

    /// The sizes of an encrypted collection's ESC and ECOC, read as a
    /// MongoDB client reads them (a count of `enxcol_.<c>.esc`/`.ecoc`).
    /// The default refuses (engines that play no QE role have none).
    async fn qe_state_sizes(&self, collection: &str) -> Result<QeStateSizes> {
        let _ = collection;
        Err(crate::EngineError::NoQeServerRole {
            engine: self.kind(),
            operation: "read ESC/ECOC sizes",
        })
    }

    /// Create a collection; fails with `CollectionExists` if present.
    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()>;
    /// Names of all collections, sorted.
    async fn list_collections(&self) -> Result<Vec<String>>;
    /// Options and indexes of a collection, `None` if it does not exist.
    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>>;
    /// Drop a collection with its indexes, tag index, ESC and ECOC storage.
    /// Returns whether it existed.
    async fn drop_collection(&self, name: &str) -> Result<bool>;
    /// Rename collection `from` to `to` with its documents, indexes, tag
    /// index, ESC and ECOC in one transaction (its `encryptedFields` then
    /// name the ESC/ECOC of `to`). What happens to an existing `to` is
    /// `target`'s choice. Fails with `CollectionNotFound` when `from` does
    /// not exist. Engines that cannot rename atomically refuse with
    /// [`crate::EngineError::Unsupported`] (the default).
    async fn rename_collection(&self, from: &str, to: &str, target: RenameTarget) -> Result<()> {
        let _ = (from, to, target);
        Err(crate::EngineError::Unsupported {
            engine: self.kind(),
            operation: "rename a collection",
        })
    }

    /// Make the space freed by dropped collections and deleted documents
    /// unreadable in the engine's own files, so that plaintext a copy
    /// migration replaced does not survive in them. SQLite: a WAL
    /// checkpoint that truncates the WAL, `VACUUM` (every page rewritten,
    /// free pages gone), and a truncating checkpoint again; drops made by
    /// [`Engine::rename_collection`] already ran under `secure_delete`.
    /// PostgreSQL: a dropped table's files are unlinked at commit, so
    /// there is nothing to do here; what the server's WAL, replicas and
    /// backups still hold is out of the client's reach (see
    /// `docs/guide.md`). The default refuses with
    /// [`crate::EngineError::Unsupported`].
    async fn scrub_freed_space(&self) -> Result<()> {
        Err(crate::EngineError::Unsupported {
            engine: self.kind(),
            operation: "scrub freed space",
        })
    }

    /// Create a secondary index (building it over existing documents; a
    /// unique violation among them fails the whole call). Creating an
    /// identical index again is a no-op. Creates the collection if missing.
    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()>;

    /// Insert one document (an `_id` ObjectId is added when missing, first);
    /// returns its `_id`. Creates the collection if missing, as MongoDB does.
    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson>;
    /// Insert documents atomically (all or none); returns their `_id`s.
    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>>;
    /// Replace the document whose `_id` is `id`; returns whether it existed.
    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool>;
    /// Delete the first matching document; returns 0 or 1.
    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64>;
    /// Delete every matching document; returns how many.
    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64>;
    /// Matching documents (empty for a missing collection).
    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>>;
    /// The same documents as [`Engine::find`], in the same order, as BSON
    /// bytes: for callers that pass documents on as bytes (the wire
    /// server's cursor batches) or decode them themselves. An engine that
    /// stores BSON returns the stored bytes without building an owned
    /// [`Document`] per match, which is most of the cost of a query whose
    /// documents are large (an encrypted document is mostly its stored
    /// values and `__safeContent__` tags). The default encodes what `find`
    /// returns. [`crate::decode_raw`] turns one into a [`Document`].
    async fn find_raw(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        encode_found(collection, &self.find(collection, filter, options).await?)
    }
    /// Number of matching documents.
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64>;

    /// Start a read-write transaction. Dropping the handle without
    /// `commit` rolls it back.
    async fn begin(&self) -> Result<Box<dyn Transaction>>;

    /// Start a read-only snapshot: every read through the handle sees the
    /// same committed state, and it should not block writers. The QE server
    /// role runs a query's ESC probes and its tag lookup on one snapshot
    /// (emuBinary across snapshots could miss a concurrent compaction's
    /// anchor and lose matches). Writes through it may fail. The default
    /// is [`Engine::begin`], which is correct but serialises with writers;
    /// engines with cheap snapshots should override it.
    async fn begin_read(&self) -> Result<Box<dyn Transaction>> {
        self.begin().await
    }

    /// Run `work` inside one transaction (`mode` says which): commit when
    /// it returns `Ok`, roll back when it returns `Err`. Prefer
    /// the typed [`transact`] function.
    ///
    /// This is how the QE server role runs a whole encrypted write or query
    /// (schema, ESC probes, ESC/ECOC writes, the document, the tag lookup)
    /// as **one engine call**. The default opens the transaction with
    /// [`Engine::begin`] or [`Engine::begin_read`] and awaits every
    /// operation as usual. An embedded engine whose operations are
    /// synchronous calls should override it to run the whole of `work` on
    /// one blocking thread, so that the ten-odd operations of a QE write cost
    /// one thread hand-off instead of ten (`SqliteEngine` does).
    ///
    /// `work` must only use the transaction it is given: reaching the engine
    /// itself from inside it (another transaction, an autocommit write)
    /// waits for the transaction it runs in, forever on a single-writer
    /// engine.
    async fn transact(&self, mode: TxMode, work: TxWork) -> Result<TxOutput> {
        let mut tx = match mode {
            TxMode::Read => self.begin_read().await?,
            TxMode::Write => self.begin().await?,
        };
        match work(&mut *tx).await {
            Ok(v) => {
                if mode == TxMode::Read {
                    // Nothing to undo in a read: dropping ends it without
                    // another round trip (engines roll back on drop).
                    drop(tx);
                } else {
                    tx.commit().await?;
                }
                Ok(v)
            }
            Err(e) => {
                // The work's error is the one to report; a rollback error
                // would only hide it (dropping rolls back as well).
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// The first matching document, if any.
    async fn find_one(&self, collection: &str, filter: &Filter) -> Result<Option<Document>> {
        let opts = FindOptions {
            limit: Some(1),
            ..FindOptions::default()
        };
        Ok(self
            .find(collection, filter, &opts)
            .await?
            .into_iter()
            .next())
    }
}

/// An open transaction: the same document operations as [`Engine`], plus,
/// for engines whose QE role cipherdoc plays ([`QeRole::Client`]), the QE
/// state operations ([`Transaction::qe_state`]), all committed or rolled
/// back together. A failed
/// operation leaves the transaction as it was before that operation (it is
/// atomic on its own), so the caller may retry or carry on — unless the
/// caller gave that up with [`Transaction::fail_fast`], or the engine's
/// failures end their transaction ([`FailedOperation::EndsTransaction`]).
#[async_trait]
pub trait Transaction: Send + std::fmt::Debug {
    /// The transaction's ESC/ECOC storage, for the QE server role
    /// ([`crate::qe_server::QeServer`]): `Some` on engines of
    /// [`QeRole::Client`] (every write through it commits with the
    /// transaction's documents), `None` where the database server plays
    /// the role itself and its state is none of the client's business.
    fn qe_state(&mut self) -> Option<&mut dyn QeState> {
        None
    }

    /// The caller's promise that the first failed operation ends the
    /// transaction: it will not carry on after an error. Autocommit work
    /// (the QE server role's writes and reads) makes it, since its error
    /// rolls everything back anyway. An engine may then stop making each
    /// operation atomic on its own (SQLite and PostgreSQL drop the
    /// savepoint around every operation, whose cost shows in encrypted
    /// bulk inserts). After a failed operation the transaction can only
    /// be rolled back: further operations and `commit` fail with
    /// [`crate::EngineError::TransactionClosed`], and nothing of it is
    /// ever committed. The default ignores the promise, which is always
    /// correct.
    fn fail_fast(&mut self) {}

    /// See [`Engine::insert_one`].
    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson>;
    /// See [`Engine::insert_many`].
    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>>;
    /// See [`Engine::replace_one`].
    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool>;
    /// See [`Engine::delete_one`].
    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64>;
    /// See [`Engine::delete_many`].
    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64>;
    /// See [`Engine::find`]; sees this transaction's own writes.
    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>>;
    /// See [`Engine::find_raw`]; sees this transaction's own writes.
    async fn find_raw(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<RawDocumentBuf>> {
        encode_found(collection, &self.find(collection, filter, options).await?)
    }
    /// See [`Engine::count`].
    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64>;
    /// See [`Engine::describe_collection`] (QE needs the `encryptedFields`
    /// inside the write's transaction).
    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>>;
    /// Make every write of the transaction durable.
    async fn commit(self: Box<Self>) -> Result<()>;
    /// Discard every write of the transaction.
    async fn rollback(self: Box<Self>) -> Result<()>;
}

/// `find`'s documents as BSON bytes: the default [`Engine::find_raw`].
fn encode_found(collection: &str, docs: &[Document]) -> Result<Vec<RawDocumentBuf>> {
    docs.iter()
        .map(|d| crate::documents::encode_raw(collection, d))
        .collect()
}

/// Whether a `find` can hand over stored bytes as they are: without a sort
/// or a projection, which need the documents.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn bytes_as_stored(options: &FindOptions) -> bool {
    options.sort.is_empty() && options.projection.is_none()
}

/// How many of the matching documents a delete removes (`delete_one` and
/// `delete_many` share one implementation per engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) enum DeleteScope {
    /// The first match, in insertion order.
    First,
    /// Every match.
    All,
}

impl DeleteScope {
    /// The most documents the delete removes.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn limit(self) -> usize {
        match self {
            DeleteScope::First => 1,
            DeleteScope::All => usize::MAX,
        }
    }
}
