//! cipherdoc's MongoDB engine (`engine = "mongodb"`): a MongoDB replica set
//! or sharded cluster (MongoDB 7.0 or 8.0, or `cipherdoc serve`) behind the
//! [`Engine`] trait, through the official `mongodb` driver **without** its
//! `in-use-encryption` feature: nothing links libmongocrypt or crypt_shared.
//!
//! Unlike SQLite and PostgreSQL, the database server plays the Queryable
//! Encryption server role itself ([`QeRole::Server`]): cipherdoc's client
//! side computes the insert and find payloads, and this engine sends them in
//! the commands a MongoDB driver with libmongocrypt sends — with
//! `encryptionInformation` attached and omitted by libmongocrypt's rules
//! (`qe`), encrypted collections created and dropped as drivers do them,
//! and `compactStructuredEncryptionData`/`cleanupStructuredEncryptionData`
//! with their tokens; copy migrations switch collections with
//! `renameCollection` ([`Engine::rename_collection`]). The server's ESC and
//! ECOC are none of the client's business: they are read only as a MongoDB
//! client reads them, by counting `enxcol_.<c>.esc`/`.ecoc`
//! ([`Engine::qe_state_sizes`]).
//!
//! ```no_run
//! # async fn demo() -> cipherdoc_engine::Result<()> {
//! use cipherdoc_mongodb::MongoEngine;
//! let engine = MongoEngine::connect("mongodb://127.0.0.1:27017/", "encrypted_db").await?;
//! println!("{:?}", engine.server());
//! # Ok(()) }
//! ```
//!
//! Transactions are MongoDB's (a session with `startTransaction`): as in
//! MongoDB, a failed operation aborts its transaction
//! ([`FailedOperation::EndsTransaction`]). `insert_many` outside a
//! transaction runs in one, so that it is all or nothing as the engine
//! contract requires (on a standalone server, which has no transactions, it
//! is an ordered insert).

mod error;
mod filter;
mod qe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bson::{Bson, Document, doc, oid::ObjectId};
use cipherdoc_engine::qe_server::{CompactionStats, CompactionTokens};
use cipherdoc_engine::{
    CollectionInfo, CreateCollectionOptions, Engine, EngineError, FailedOperation, Filter,
    FindOptions, IndexSpec, QeRole, QeStateSizes, RenameTarget, Result, SortDirection, Transaction,
};
use mongodb::options::ClientOptions;
use mongodb::{Client, ClientSession};

use crate::error::{check_write, from_driver};
use crate::qe::Command;

/// The wire version of MongoDB 8.0, needed by range fields.
pub const WIRE_VERSION_8_0: i32 = 25;
/// The wire version of MongoDB 7.0, the first with QE protocol v2.
pub const WIRE_VERSION_7_0: i32 = 21;

/// What `hello` said the deployment is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MongoTopology {
    /// A standalone `mongod`: no sessions' transactions, no QE.
    Standalone,
    /// A replica set member (`setName`).
    ReplicaSet {
        /// The replica set's name.
        set_name: String,
    },
    /// A `mongos` of a sharded cluster.
    Sharded,
}

impl std::fmt::Display for MongoTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standalone => write!(f, "standalone"),
            Self::ReplicaSet { set_name } => write!(f, "replica set {set_name:?}"),
            Self::Sharded => write!(f, "sharded cluster (mongos)"),
        }
    }
}

/// The server the engine is connected to, as `hello` described it at
/// connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Replica set, `mongos` or standalone.
    pub topology: MongoTopology,
    /// `maxWireVersion` (21: MongoDB 7.0; 25: 8.0).
    pub max_wire_version: i32,
}

impl ServerInfo {
    fn from_hello(hello: &Document) -> Self {
        let topology = if hello.get_str("msg") == Ok("isdbgrid") {
            MongoTopology::Sharded
        } else if let Ok(set_name) = hello.get_str("setName") {
            MongoTopology::ReplicaSet {
                set_name: set_name.to_owned(),
            }
        } else {
            MongoTopology::Standalone
        };
        let max_wire_version = match hello.get("maxWireVersion") {
            Some(Bson::Int32(v)) => *v,
            Some(Bson::Int64(v)) => i32::try_from(*v).unwrap_or(i32::MAX),
            _ => 0,
        };
        Self {
            topology,
            max_wire_version,
        }
    }

    /// Whether the deployment runs multi-document transactions.
    pub fn has_transactions(&self) -> bool {
        !matches!(self.topology, MongoTopology::Standalone)
    }
}

/// How long the engine trusts what `listCollections` said about a
/// collection's `encryptedFields` (libmongocrypt caches collection infos
/// too). Creations and drops through this engine forget it at once.
const CATALOG_TTL: Duration = Duration::from_secs(1);

struct Inner {
    client: Client,
    db: mongodb::Database,
    name: String,
    server: ServerInfo,
    /// `encryptedFields` by collection (`None`: plain or missing), and when
    /// it was read.
    catalog: Mutex<HashMap<String, (Instant, Option<Document>)>>,
}

/// The MongoDB engine. Cheap to clone (one driver pool).
#[derive(Clone)]
pub struct MongoEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MongoEngine {
    // The client's options hold the URL's credentials: only the database
    // and the server are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoEngine")
            .field("database", &self.inner.name)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl MongoEngine {
    /// Connect to the deployment at `url` (`mongodb://…`), database `name`,
    /// and ask it what it is (`hello`).
    ///
    /// # Errors
    /// [`EngineError::Config`] for a URL the driver refuses or an invalid
    /// database name; [`EngineError::Connection`] when no server answers.
    pub async fn connect(url: &str, name: &str) -> Result<Self> {
        validate_db_name(name)?;
        let mut options = ClientOptions::parse(url)
            .await
            .map_err(|e| EngineError::Config(format!("MongoDB connection string: {}", e.kind)))?;
        options.app_name.get_or_insert_with(|| "cipherdoc".into());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(10));
        // The driver specifications' default (the Rust driver's own is 10):
        // autocommit writers waiting behind open transactions must not take
        // every connection their commits need.
        options.max_pool_size.get_or_insert(100);
        let client = Client::with_options(options)
            .map_err(|e| EngineError::Config(format!("MongoDB client: {}", e.kind)))?;
        let hello = client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .map_err(|e| from_driver(e, ""))?;
        let server = ServerInfo::from_hello(&hello);
        tracing::debug!(database = name, topology = %server.topology, wire = server.max_wire_version, "connected to MongoDB");
        Ok(Self {
            inner: Arc::new(Inner {
                db: client.database(name),
                client,
                name: name.to_owned(),
                server,
                catalog: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The server as `hello` described it at connect.
    pub fn server(&self) -> &ServerInfo {
        &self.inner.server
    }

    /// The MongoDB database name.
    pub fn database_name(&self) -> &str {
        &self.inner.name
    }

    /// Run `cmd` on the engine's database as it is (no
    /// `encryptionInformation`): for checks and tests that need a command
    /// the engine does not send itself (`listIndexes`, a count of
    /// `enxcol_.<c>.esc`).
    ///
    /// # Errors
    /// The server's error, mapped.
    pub async fn run_command(&self, cmd: Document) -> Result<Document> {
        Exec::new(&self.inner, None).command(cmd, "").await
    }

    /// Run `cmd`, a command on `collection` of the engine's database, as a
    /// MongoDB driver with libmongocrypt sends it: `encryptionInformation`
    /// is appended when libmongocrypt's rules for the command's name want
    /// it (`findAndModify`, `update`, `delete` always; `aggregate`,
    /// `distinct`, `find`, `count`, `insert` only when they hold a QE
    /// payload; DDL never). For the commands the [`Engine`] trait has no
    /// operation for, such as `findAndModify` and `aggregate`; the payloads
    /// in `cmd` are the caller's (cipherdoc's encrypter makes them).
    ///
    /// # Errors
    /// The server's error, mapped; `InvalidDocument` for an empty command.
    pub async fn run_command_on(&self, collection: &str, mut cmd: Document) -> Result<Document> {
        let Some(name) = cmd.keys().next().cloned() else {
            return Err(EngineError::InvalidDocument {
                collection: collection.to_owned(),
                reason: "an empty command".into(),
            });
        };
        let mut exec = Exec::new(&self.inner, None);
        exec.finish(Command::of_name(&name), &mut cmd, collection)
            .await?;
        let reply = exec.command(cmd, collection).await?;
        check_write(&reply, collection)?;
        Ok(reply)
    }
}

fn validate_db_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(EngineError::Config(format!(
            "{name:?} is not a valid MongoDB database name (1 to 63 characters, none of /\\. \"$)"
        )));
    }
    Ok(())
}

/// Where a command runs: autocommit, or inside a transaction's session.
/// `cmd` on the engine's database, in `session` when there is one.
async fn run(
    inner: &Inner,
    session: Option<&mut ClientSession>,
    cmd: Document,
    collection: &str,
) -> Result<Document> {
    let r = match session {
        Some(s) => inner.db.run_command(cmd).session(s).await,
        None => inner.db.run_command(cmd).await,
    };
    r.map_err(|e| from_driver(e, collection))
}

struct Exec<'a> {
    inner: &'a Inner,
    session: Option<&'a mut ClientSession>,
}

impl<'a> Exec<'a> {
    fn new(inner: &'a Inner, session: Option<&'a mut ClientSession>) -> Self {
        Self { inner, session }
    }

    async fn command(&mut self, cmd: Document, collection: &str) -> Result<Document> {
        run(self.inner, self.session.as_deref_mut(), cmd, collection).await
    }

    /// A write command: its reply's `writeErrors` become errors.
    async fn write(&mut self, cmd: Document, collection: &str) -> Result<Document> {
        let reply = self.command(cmd, collection).await?;
        check_write(&reply, collection)?;
        Ok(reply)
    }

    /// Every document of a cursor-returning command (`find`,
    /// `listCollections`, `listIndexes`), following `getMore`.
    ///
    /// A cursor belongs to the session that opened it: MongoDB refuses a
    /// `getMore` from any other (code 50737). Outside the caller's session,
    /// each command would take whichever implicit session the driver's pool
    /// hands out, which under concurrent operations is not the same one, so
    /// the cursor gets an explicit session of its own for its whole life.
    async fn cursor(&mut self, cmd: Document, collection: &str) -> Result<Vec<Document>> {
        let mut own = match self.session {
            Some(_) => None,
            None => Some(
                self.inner
                    .client
                    .start_session()
                    .await
                    .map_err(|e| from_driver(e, collection))?,
            ),
        };
        let mut session = match own.as_mut() {
            Some(s) => Some(s),
            None => self.session.as_deref_mut(),
        };
        let reply = run(self.inner, session.as_deref_mut(), cmd, collection).await?;
        let mut out = Vec::new();
        let mut cursor = cursor_of(&reply, "firstBatch", &mut out)?;
        while let Some((id, coll)) = cursor {
            let more = run(
                self.inner,
                session.as_deref_mut(),
                doc! {"getMore": id, "collection": coll},
                collection,
            )
            .await?;
            cursor = cursor_of(&more, "nextBatch", &mut out)?;
        }
        Ok(out)
    }

    /// `encryptedFields` of `collection` (`None`: plain or missing), from
    /// `listCollections` (never inside the session: MongoDB refuses
    /// `listCollections` in a transaction, and the catalog is not
    /// transactional there anyway).
    async fn encrypted_fields(&mut self, collection: &str) -> Result<Option<Document>> {
        if let Some((at, efc)) = self
            .inner
            .catalog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(collection)
            && at.elapsed() < CATALOG_TTL
        {
            return Ok(efc.clone());
        }
        let info = list_collection(self.inner, collection).await?;
        let efc = info.and_then(|i| {
            i.get_document("options")
                .ok()?
                .get_document("encryptedFields")
                .ok()
                .cloned()
        });
        if let Some(efc) = &efc
            && self.inner.server.topology == MongoTopology::Sharded
        {
            let key = shard_key(self.inner, collection).await?;
            qe::check_shard_key(collection, efc, key.as_ref())?;
        }
        self.inner
            .catalog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(collection.to_owned(), (Instant::now(), efc.clone()));
        Ok(efc)
    }

    /// Append `encryptionInformation` when libmongocrypt would.
    async fn finish(&mut self, command: Command, cmd: &mut Document, coll: &str) -> Result<()> {
        if let Some(efc) = self.encrypted_fields(coll).await? {
            qe::finish(command, cmd, &self.inner.name, coll, &efc);
        }
        Ok(())
    }

    async fn insert(&mut self, coll: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        let mut ids = Vec::with_capacity(docs.len());
        let mut documents = Vec::with_capacity(docs.len());
        for doc in docs {
            let doc = with_id(doc, coll)?;
            ids.push(doc.get("_id").cloned().unwrap_or(Bson::Null));
            documents.push(Bson::Document(doc));
        }
        let mut cmd = doc! {"insert": coll, "ordered": true, "documents": documents};
        self.finish(Command::Insert, &mut cmd, coll).await?;
        self.write(cmd, coll).await?;
        Ok(ids)
    }

    async fn replace(&mut self, coll: &str, id: &Bson, doc: Document) -> Result<bool> {
        // mongod refuses it too (ImmutableField); refused here without a
        // round trip, naming the collection as the other engines do.
        if doc.get("_id").is_some_and(|new| new != id) {
            return Err(EngineError::InvalidDocument {
                collection: coll.to_owned(),
                reason: "a replacement may not change the document's _id".into(),
            });
        }
        let mut cmd = doc! {
            "update": coll,
            "ordered": true,
            "updates": [{"q": {"_id": id.clone()}, "u": doc, "multi": false, "upsert": false}],
        };
        self.finish(Command::Update, &mut cmd, coll).await?;
        let reply = self.write(cmd, coll).await?;
        Ok(count_of(&reply, "n") > 0)
    }

    async fn delete(&mut self, coll: &str, filter: &Filter, limit: i32) -> Result<u64> {
        if limit == 0 && self.encrypted_fields(coll).await?.is_some() {
            return self.delete_each(coll, filter).await;
        }
        self.delete_query(coll, filter::to_query(filter)?, limit)
            .await
    }

    async fn delete_query(&mut self, coll: &str, query: Document, limit: i32) -> Result<u64> {
        let mut cmd = doc! {
            "delete": coll,
            "ordered": true,
            "deletes": [{"q": query, "limit": limit}],
        };
        self.finish(Command::Delete, &mut cmd, coll).await?;
        let reply = self.write(cmd, coll).await?;
        Ok(count_of(&reply, "n"))
    }

    /// A multi-document delete on an encrypted collection, which MongoDB
    /// refuses ("FLE only supports single document deletes", as
    /// libmongocrypt's users meet it): the matching `_id`s, then one
    /// single-document delete each. The caller runs it in a transaction
    /// (`Engine::delete_many`), so that it is all or nothing.
    async fn delete_each(&mut self, coll: &str, filter: &Filter) -> Result<u64> {
        let only_ids = FindOptions {
            projection: Some(doc! {"_id": 1}),
            ..FindOptions::default()
        };
        let found = self.find(coll, filter, &only_ids).await?;
        let mut n = 0;
        for d in found {
            let Some(id) = d.get("_id") else { continue };
            n += self.delete_query(coll, doc! {"_id": id.clone()}, 1).await?;
        }
        Ok(n)
    }

    async fn find(
        &mut self,
        coll: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        let mut cmd = doc! {"find": coll, "filter": filter::to_query(filter)?};
        if !options.sort.is_empty() {
            let mut sort = Document::new();
            for (path, dir) in &options.sort {
                sort.insert(
                    path.clone(),
                    match dir {
                        SortDirection::Ascending => 1_i32,
                        SortDirection::Descending => -1_i32,
                    },
                );
            }
            cmd.insert("sort", sort);
        }
        if let Some(p) = &options.projection {
            cmd.insert("projection", p.clone());
        }
        if options.skip > 0 {
            cmd.insert("skip", i64::try_from(options.skip).unwrap_or(i64::MAX));
        }
        if let Some(l) = options.limit {
            if l == 0 {
                // MongoDB reads limit 0 as "no limit".
                return Ok(Vec::new());
            }
            cmd.insert("limit", i64::try_from(l).unwrap_or(i64::MAX));
        }
        self.finish(Command::Find, &mut cmd, coll).await?;
        self.cursor(cmd, coll).await
    }

    async fn count(&mut self, coll: &str, filter: &Filter) -> Result<u64> {
        let mut cmd = doc! {"count": coll, "query": filter::to_query(filter)?};
        self.finish(Command::Count, &mut cmd, coll).await?;
        let reply = self.command(cmd, coll).await?;
        Ok(count_of(&reply, "n"))
    }
}

fn count_of(reply: &Document, field: &str) -> u64 {
    match reply.get(field) {
        Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) if *n >= 0.0 => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = *n as u64;
            n
        }
        _ => 0,
    }
}

/// Collect a cursor reply's batch into `out`; the cursor to continue, if
/// any.
fn cursor_of(
    reply: &Document,
    batch: &str,
    out: &mut Vec<Document>,
) -> Result<Option<(i64, String)>> {
    let bad = || EngineError::Corrupt {
        collection: String::new(),
        reason: "the server's cursor reply has no cursor document".into(),
    };
    let cursor = reply.get_document("cursor").map_err(|_| bad())?;
    for d in cursor.get_array(batch).map_err(|_| bad())? {
        if let Bson::Document(d) = d {
            out.push(d.clone());
        }
    }
    let id = cursor.get_i64("id").unwrap_or(0);
    if id == 0 {
        return Ok(None);
    }
    let ns = cursor.get_str("ns").unwrap_or_default();
    let coll = ns.split_once('.').map_or(ns, |(_, c)| c).to_owned();
    Ok(Some((id, coll)))
}

/// `doc` with an `_id` (a new ObjectId, first) when it has none; an `_id`
/// MongoDB refuses (an array, a regular expression, undefined) is refused
/// here, as the other engines refuse it.
fn with_id(doc: Document, collection: &str) -> Result<Document> {
    match doc.get("_id") {
        Some(Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined) => {
            Err(EngineError::InvalidDocument {
                collection: collection.to_owned(),
                reason: "_id cannot be an array, a regular expression or undefined".into(),
            })
        }
        Some(_) => Ok(doc),
        None => {
            let mut out = Document::new();
            out.insert("_id", ObjectId::new());
            out.extend(doc);
            Ok(out)
        }
    }
}

/// The shard key of `collection` on a sharded cluster, from the config
/// server's `config.collections` as `mongos` serves it (`None`: not
/// sharded).
async fn shard_key(inner: &Inner, collection: &str) -> Result<Option<Document>> {
    let ns = format!("{}.{collection}", inner.name);
    let reply = inner
        .client
        .database("config")
        .run_command(doc! {"find": "collections", "filter": {"_id": &ns}, "limit": 1_i64})
        .await
        .map_err(|e| from_driver(e, collection))?;
    let mut found = Vec::new();
    cursor_of(&reply, "firstBatch", &mut found)?;
    Ok(found
        .into_iter()
        .next()
        .and_then(|d| d.get_document("key").ok().cloned()))
}

/// `listCollections` for one name: its info document.
async fn list_collection(inner: &Inner, name: &str) -> Result<Option<Document>> {
    let mut exec = Exec::new(inner, None);
    let infos = exec
        .cursor(doc! {"listCollections": 1, "filter": {"name": name}}, name)
        .await?;
    Ok(infos.into_iter().next())
}

/// The `encryptedFields` of a `listCollections` entry.
fn encrypted_fields_of(info: &Document) -> Option<Document> {
    info.get_document("options")
        .ok()?
        .get_document("encryptedFields")
        .ok()
        .cloned()
}

/// The state collections' and system collections' prefixes: not the
/// user's.
fn is_internal(name: &str) -> bool {
    name.starts_with("enxcol_.") || name.starts_with("system.")
}

/// `IndexSpec` of a `listIndexes` entry: single ascending key, unique,
/// sparse (`sparse: true`, or the key vault's partial index
/// `{path: {$exists: true}}`). `None` for `_id_` and for what an
/// `IndexSpec` cannot describe.
fn index_spec(ix: &Document) -> Option<IndexSpec> {
    let name = ix.get_str("name").ok()?;
    let key = ix.get_document("key").ok()?;
    if name == "_id_" || key.len() != 1 {
        return None;
    }
    let (path, _) = key.iter().next()?;
    let mut spec = IndexSpec::new(path.clone()).named(name);
    if ix.get_bool("unique").unwrap_or(false) {
        spec = spec.unique();
    }
    let partial_exists = ix
        .get_document("partialFilterExpression")
        .ok()
        .is_some_and(|p| p == &doc! {path.clone(): {"$exists": true}});
    if ix.get_bool("sparse").unwrap_or(false) || partial_exists {
        spec = spec.sparse();
    }
    Some(spec)
}

impl MongoEngine {
    /// The names of every collection of the database, state collections
    /// included.
    async fn existing_names(&self) -> Result<Vec<String>> {
        let infos = Exec::new(&self.inner, None)
            .cursor(doc! {"listCollections": 1, "nameOnly": true}, "")
            .await?;
        Ok(infos
            .iter()
            .filter_map(|i| i.get_str("name").ok().map(str::to_owned))
            .collect())
    }

    fn forget(&self, collection: &str) {
        self.inner
            .catalog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(collection);
    }

    /// `insert_many` outside a transaction: in one, so that it is all or
    /// nothing (a standalone server has no transactions: ordered insert).
    async fn insert_atomic(&self, coll: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        if docs.len() <= 1 || !self.inner.server.has_transactions() {
            return Exec::new(&self.inner, None).insert(coll, docs).await;
        }
        let mut tx = self.begin_tx().await?;
        let ids = Exec::new(&self.inner, Some(&mut tx.session))
            .insert(coll, docs)
            .await;
        tx.end(ids, coll).await
    }

    /// `delete_many` outside a transaction: on an encrypted collection it
    /// is one delete per document ([`Exec::delete_each`]), run in one
    /// transaction so that it is all or nothing.
    async fn delete_many_atomic(&self, coll: &str, filter: &Filter) -> Result<u64> {
        let mut exec = Exec::new(&self.inner, None);
        if exec.encrypted_fields(coll).await?.is_none() || !self.inner.server.has_transactions() {
            return exec.delete(coll, filter, 0).await;
        }
        let mut tx = self.begin_tx().await?;
        let n = Exec::new(&self.inner, Some(&mut tx.session))
            .delete(coll, filter, 0)
            .await;
        tx.end(n, coll).await
    }

    async fn begin_tx(&self) -> Result<MongoTransaction> {
        if !self.inner.server.has_transactions() {
            return Err(EngineError::Config(format!(
                "MongoDB database {:?}: a standalone server has no transactions; use a replica set (a one-member replica set is enough)",
                self.inner.name
            )));
        }
        let mut session = self
            .inner
            .client
            .start_session()
            .await
            .map_err(|e| from_driver(e, ""))?;
        session
            .start_transaction()
            .await
            .map_err(|e| from_driver(e, ""))?;
        Ok(MongoTransaction {
            inner: Arc::clone(&self.inner),
            session,
            failed: false,
        })
    }

    async fn maintain(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
        command: Command,
    ) -> Result<CompactionStats> {
        let mut exec = Exec::new(&self.inner, None);
        let Some(efc) = exec.encrypted_fields(collection).await? else {
            return Err(EngineError::NotEncrypted(collection.to_owned()));
        };
        let (name, tokens_field) = match command {
            Command::Cleanup => ("cleanupStructuredEncryptionData", "cleanupTokens"),
            _ => ("compactStructuredEncryptionData", "compactionTokens"),
        };
        let mut cmd = doc! {name: collection};
        qe::finish(command, &mut cmd, &self.inner.name, collection, &efc);
        cmd.insert(tokens_field, qe::tokens_document(&efc, tokens));
        let reply = exec.command(cmd, collection).await?;
        Ok(qe::stats_of(command, &reply))
    }
}

#[async_trait]
impl Engine for MongoEngine {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn qe_role(&self) -> QeRole {
        QeRole::Server
    }

    fn failed_operation(&self) -> FailedOperation {
        FailedOperation::EndsTransaction
    }

    fn deployment(&self) -> Option<String> {
        let s = &self.inner.server;
        Some(format!(
            "MongoDB {}, wire version {}",
            s.topology, s.max_wire_version
        ))
    }

    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()> {
        self.forget(name);
        let mut exec = Exec::new(&self.inner, None);
        let Some(efc) = options.encrypted_fields else {
            exec.command(doc! {"create": name}, name).await?;
            return Ok(());
        };
        cipherdoc_engine::qe_server::check_encrypted_fields(name, &efc)?;
        qe::check_server_supports(name, &efc, &self.inner.server)?;
        if list_collection(&self.inner, name).await?.is_some() {
            return Err(EngineError::CollectionExists(name.to_owned()));
        }
        // As drivers create an encrypted collection: the ESC and the ECOC
        // (clustered on `_id`), the collection with its `encryptedFields`,
        // then the index on `__safeContent__`. On MongoDB a renamed
        // collection keeps its state collections' names, so the default
        // names may belong to another collection (after a copy migration,
        // the collection renamed from this temporary name): free names are
        // then recorded in the `encryptedFields`.
        let taken = self.existing_names().await?;
        let efc = qe::with_free_state_names(name, efc, &taken)?;
        let (esc, ecoc) = qe::state_collections(name, &efc);
        for state in [&esc, &ecoc] {
            exec.command(
                doc! {"create": state.as_str(), "clusteredIndex": {"key": {"_id": 1}, "unique": true}},
                name,
            )
            .await?;
        }
        exec.command(doc! {"create": name, "encryptedFields": efc}, name)
            .await?;
        exec.command(
            doc! {"createIndexes": name, "indexes": [{"name": "__safeContent___1", "key": {"__safeContent__": 1}}]},
            name,
        )
        .await?;
        self.forget(name);
        Ok(())
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        let infos = Exec::new(&self.inner, None)
            .cursor(doc! {"listCollections": 1, "nameOnly": true}, "")
            .await?;
        let mut names: Vec<String> = infos
            .iter()
            .filter_map(|i| i.get_str("name").ok())
            .filter(|n| !is_internal(n))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        let Some(info) = list_collection(&self.inner, name).await? else {
            return Ok(None);
        };
        let encrypted_fields = info
            .get_document("options")
            .ok()
            .and_then(|o| o.get_document("encryptedFields").ok())
            .map(|efc| {
                let mut efc = efc.clone();
                let (esc, ecoc) = qe::state_collections(name, &efc);
                if !efc.contains_key("escCollection") {
                    efc.insert("escCollection", esc);
                }
                if !efc.contains_key("ecocCollection") {
                    efc.insert("ecocCollection", ecoc);
                }
                efc
            });
        let encrypted = encrypted_fields.is_some();
        let indexes = Exec::new(&self.inner, None)
            .cursor(doc! {"listIndexes": name}, name)
            .await?
            .iter()
            .filter_map(index_spec)
            // The tag index of an encrypted collection is the server's
            // business, as it is the other engines'.
            .filter(|s| !(encrypted && s.path == "__safeContent__"))
            .collect();
        Ok(Some(CollectionInfo {
            name: name.to_owned(),
            options: CreateCollectionOptions { encrypted_fields },
            indexes,
        }))
    }

    async fn drop_collection(&self, name: &str) -> Result<bool> {
        let mut exec = Exec::new(&self.inner, None);
        let Some(info) = list_collection(&self.inner, name).await? else {
            self.forget(name);
            return Ok(false);
        };
        let efc = info
            .get_document("options")
            .ok()
            .and_then(|o| o.get_document("encryptedFields").ok())
            .cloned();
        // As drivers drop an encrypted collection: its ESC and ECOC, then
        // the collection.
        if let Some(efc) = &efc {
            let (esc, ecoc) = qe::state_collections(name, efc);
            for state in [esc, ecoc] {
                exec.command(doc! {"drop": state}, name).await?;
            }
        }
        exec.command(doc! {"drop": name}, name).await?;
        self.forget(name);
        Ok(true)
    }

    /// `renameCollection` (an admin command) with `dropTarget` for
    /// [`RenameTarget::DropExisting`]: MongoDB switches the name in one
    /// step, so readers see the old target or the renamed collection, never
    /// neither. MongoDB renames an encrypted collection (or onto an
    /// encrypted target) only for a user holding the cluster action
    /// `setUserWriteBlockMode`; without it the refusal names that
    /// privilege. A renamed collection keeps its ESC and ECOC under the
    /// names its `encryptedFields` record; a dropped encrypted target's
    /// ESC and ECOC, which MongoDB leaves behind, are dropped afterwards
    /// (unless the server renamed them into the new collection's, as
    /// `cipherdoc serve` does).
    async fn rename_collection(&self, from: &str, to: &str, target: RenameTarget) -> Result<()> {
        let Some(source) = list_collection(&self.inner, from).await? else {
            return Err(EngineError::CollectionNotFound(from.to_owned()));
        };
        if from == to {
            return Ok(());
        }
        let drop_target = matches!(target, RenameTarget::DropExisting);
        let old = list_collection(&self.inner, to).await?;
        if old.is_some() && !drop_target {
            return Err(EngineError::CollectionExists(to.to_owned()));
        }
        if let Some(efc) = encrypted_fields_of(&source) {
            qe::check_server_supports(from, &efc, &self.inner.server)?;
        }
        let old_state = old
            .as_ref()
            .and_then(encrypted_fields_of)
            .map(|efc| qe::state_collections(to, &efc));
        let db = &self.inner.name;
        let cmd = doc! {
            "renameCollection": format!("{db}.{from}"),
            "to": format!("{db}.{to}"),
            "dropTarget": drop_target,
        };
        self.forget(from);
        self.forget(to);
        let renamed = self.inner.client.database("admin").run_command(cmd).await;
        self.forget(from);
        self.forget(to);
        renamed.map_err(|e| error::rename_error(e, from, to))?;
        if let Some((esc, ecoc)) = old_state {
            let kept = list_collection(&self.inner, to)
                .await?
                .as_ref()
                .and_then(encrypted_fields_of)
                .map(|efc| qe::state_collections(to, &efc));
            let mut exec = Exec::new(&self.inner, None);
            for state in [esc, ecoc] {
                let in_use = kept
                    .as_ref()
                    .is_some_and(|(e, o)| *e == state || *o == state);
                if in_use {
                    continue;
                }
                // MongoDB before 7.0 answers NamespaceNotFound for a
                // collection that is already gone.
                match exec.command(doc! {"drop": state}, to).await {
                    Ok(_) | Err(EngineError::CollectionNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Refused with [`EngineError::Unsupported`]: a client cannot make
    /// WiredTiger overwrite what it freed. A dropped collection's files are
    /// unlinked (their blocks stay on the disk until reused), and what was
    /// written also lives in the journal, the oplog (until it wraps), every
    /// replica set member and every backup; compacting or resyncing members
    /// is the operator's business (`docs/guide.md`). A copy migration
    /// reports it as a note, never silently.
    async fn scrub_freed_space(&self) -> Result<()> {
        Err(EngineError::Unsupported {
            engine: "mongodb",
            operation: "scrub freed space (WiredTiger's freed blocks, journal and oplog, the replica set members and backups are out of a client's reach)",
        })
    }

    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()> {
        let mut index = doc! {"key": {spec.path.clone(): 1}, "name": spec.name.clone()};
        if spec.unique {
            index.insert("unique", true);
        }
        if spec.sparse {
            // The key vault's shape (`keyAltNames` unique where present),
            // which is what drivers create.
            index.insert(
                "partialFilterExpression",
                doc! {spec.path.clone(): {"$exists": true}},
            );
        }
        let r = Exec::new(&self.inner, None)
            .command(
                doc! {"createIndexes": collection, "indexes": [index]},
                collection,
            )
            .await;
        r.map(|_| ())
            .map_err(|e| error::index_error(e, collection, &spec.name))
    }

    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson> {
        let mut ids = Exec::new(&self.inner, None)
            .insert(collection, vec![doc])
            .await?;
        ids.pop()
            .ok_or(EngineError::TransactionClosed("the insert returned no id"))
    }

    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        self.insert_atomic(collection, docs).await
    }

    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        Exec::new(&self.inner, None)
            .replace(collection, id, doc)
            .await
    }

    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64> {
        Exec::new(&self.inner, None)
            .delete(collection, filter, 1)
            .await
    }

    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.delete_many_atomic(collection, filter).await
    }

    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        Exec::new(&self.inner, None)
            .find(collection, filter, options)
            .await
    }

    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        Exec::new(&self.inner, None).count(collection, filter).await
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(self.begin_tx().await?))
    }

    async fn compact(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        self.maintain(collection, tokens, Command::Compact).await
    }

    async fn cleanup(
        &self,
        collection: &str,
        tokens: &CompactionTokens,
    ) -> Result<CompactionStats> {
        self.maintain(collection, tokens, Command::Cleanup).await
    }

    async fn qe_state_sizes(&self, collection: &str) -> Result<QeStateSizes> {
        let mut exec = Exec::new(&self.inner, None);
        let Some(efc) = exec.encrypted_fields(collection).await? else {
            return Err(EngineError::NotEncrypted(collection.to_owned()));
        };
        let (esc, ecoc) = qe::state_collections(collection, &efc);
        let esc = exec.command(doc! {"count": esc}, collection).await?;
        let ecoc = exec.command(doc! {"count": ecoc}, collection).await?;
        Ok(QeStateSizes {
            esc: count_of(&esc, "n"),
            ecoc: count_of(&ecoc, "n"),
        })
    }
}

/// A MongoDB transaction: a session with `startTransaction`. Dropping it
/// without `commit` aborts it (the driver does so when the session ends).
pub struct MongoTransaction {
    inner: Arc<Inner>,
    session: ClientSession,
    /// An operation failed: MongoDB aborted the transaction.
    failed: bool,
}

impl std::fmt::Debug for MongoTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoTransaction")
            .field("database", &self.inner.name)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// What every operation of a transaction answers once one of them failed.
const ABORTED: EngineError = EngineError::TransactionClosed(
    "an operation of this MongoDB transaction failed and MongoDB aborted the transaction; nothing of it is committed",
);

impl MongoTransaction {
    fn check(&self) -> Result<()> {
        if self.failed { Err(ABORTED) } else { Ok(()) }
    }

    /// A failure ends the transaction, as in MongoDB.
    fn note<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn exec(&mut self) -> Exec<'_> {
        Exec::new(&self.inner, Some(&mut self.session))
    }

    /// End a transaction the engine opened for one operation: commit when
    /// `r` is a success, abort otherwise.
    async fn end<T>(mut self, r: Result<T>, coll: &str) -> Result<T> {
        match r {
            Ok(v) => {
                self.session
                    .commit_transaction()
                    .await
                    .map_err(|e| from_driver(e, coll))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.session.abort_transaction().await;
                Err(e)
            }
        }
    }
}

/// One operation of a transaction: refused after a failure, and a failure
/// of its own ends the transaction.
macro_rules! tx_op {
    ($self:ident, $op:ident($($arg:expr),*)) => {{
        $self.check()?;
        let r = $self.exec().$op($($arg),*).await;
        $self.note(r)
    }};
}

#[async_trait]
impl Transaction for MongoTransaction {
    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson> {
        let mut ids = tx_op!(self, insert(collection, vec![doc]))?;
        ids.pop()
            .ok_or(EngineError::TransactionClosed("the insert returned no id"))
    }

    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        tx_op!(self, insert(collection, docs))
    }

    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        tx_op!(self, replace(collection, id, doc))
    }

    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        tx_op!(self, delete(collection, filter, 1))
    }

    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        tx_op!(self, delete(collection, filter, 0))
    }

    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        tx_op!(self, find(collection, filter, options))
    }

    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        tx_op!(self, count(collection, filter))
    }

    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>> {
        // MongoDB refuses `listCollections` inside a transaction, and its
        // catalog is not transactional: read it outside.
        MongoEngine {
            inner: Arc::clone(&self.inner),
        }
        .describe_collection(name)
        .await
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if self.failed {
            let _ = self.session.abort_transaction().await;
            return Err(ABORTED);
        }
        self.session
            .commit_transaction()
            .await
            .map_err(|e| from_driver(e, ""))
    }

    async fn rollback(mut self: Box<Self>) -> Result<()> {
        if self.failed {
            // The server already aborted it.
            return Ok(());
        }
        self.session
            .abort_transaction()
            .await
            .map_err(|e| from_driver(e, ""))
    }
}
