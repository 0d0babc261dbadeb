//! Connections, the handshake, and command dispatch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::time::Duration;

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backend::{Backend, Databases};
use crate::cursor::Cursors;
use crate::error::{CommandError, CommandResult, ErrorCode};
use crate::frame::{self, FrameError, HEADER_LEN, Header, Request};
use crate::session::Sessions;

/// What the server says it is in `hello`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// A one-member replica set whose member is primary (what QE and
    /// transactions need: drivers refuse both on a standalone).
    ReplicaSet {
        /// `setName`.
        set_name: String,
    },
    /// A standalone server (`--standalone`, for clients' refusal tests).
    Standalone,
    /// A `mongos` of a sharded cluster (`msg: "isdbgrid"` in `hello`), for
    /// clients' tests of what changes on sharded clusters; the shard keys
    /// it reports are the documents of its `config.collections`.
    Mongos,
}

/// Settings of a [`Server`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where the databases live.
    pub backend: Backend,
    /// What `hello` reports.
    pub topology: Topology,
    /// `maxWireVersion` (25 for MongoDB 8.0; lower it to look older).
    pub max_wire_version: i32,
    /// How long a transaction may stay open before it is aborted
    /// (mongod's `transactionLifetimeLimitSeconds`, 60 s).
    pub transaction_lifetime: Duration,
    /// How long an idle cursor lives (mongod's `cursorTimeoutMillis`,
    /// 10 minutes).
    pub cursor_timeout: Duration,
}

impl ServerConfig {
    /// A replica set primary of MongoDB 8.0 over `backend`.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            topology: Topology::ReplicaSet {
                set_name: "cipherdoc".into(),
            },
            max_wire_version: crate::MAX_WIRE_VERSION,
            transaction_lifetime: Duration::from_secs(60),
            cursor_timeout: Duration::from_secs(600),
        }
    }

    /// Set the topology.
    #[must_use]
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Set `maxWireVersion`.
    #[must_use]
    pub fn max_wire_version(mut self, v: i32) -> Self {
        self.max_wire_version = v;
        self
    }

    /// Set the transaction lifetime limit.
    #[must_use]
    pub fn transaction_lifetime(mut self, d: Duration) -> Self {
        self.transaction_lifetime = d;
        self
    }
}

/// State every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) databases: Databases,
    pub(crate) cursors: Cursors,
    pub(crate) sessions: Sessions,
    pub(crate) checked: crate::qe::CheckedSchemas,
    next_connection: AtomicI64,
    next_request: AtomicI32,
    process_id: ObjectId,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The `cipherdoc serve` server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

/// What a command needs to know about the connection it came on.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) id: i64,
    /// The address the client reached (reported as `me`, `hosts`,
    /// `primary`, so that drivers' discovery finds this server again).
    pub(crate) local: String,
}

impl Server {
    /// A server over `config.backend`; nothing is opened until a command
    /// needs it.
    pub fn new(config: ServerConfig) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let databases = Databases::new(config.backend.clone());
        Self {
            shared: Arc::new(Shared {
                cursors: Cursors::new(config.cursor_timeout),
                sessions: Sessions::new(config.transaction_lifetime),
                checked: crate::qe::CheckedSchemas::default(),
                config,
                databases,
                next_connection: AtomicI64::new(1),
                next_request: AtomicI32::new(1),
                process_id: ObjectId::new(),
                shutdown,
            }),
            stop,
        }
    }

    /// Accept connections on `listener` until `shutdown` completes; then
    /// stop accepting, let each connection finish the command it is
    /// running, abort open transactions and close the databases.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        let reaper = tokio::spawn(reap(Arc::clone(&self.shared)));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let shared = Arc::clone(&self.shared);
                        tasks.spawn(connection(shared, stream, peer));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: wait, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!("shutting down: no new connections");
        drop(listener);
        let _ = self.stop.send(true);
        // Connections end after their current command; give them a while.
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
        reaper.abort();
        self.shared.sessions.abort_all().await;
        self.shared.cursors.clear().await;
        self.shared.databases.close_all().await;
        tracing::info!("stopped");
    }
}

/// Aborts transactions past their lifetime and drops idle cursors.
async fn reap(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.sessions.reap().await;
        shared.cursors.reap().await;
    }
}

async fn connection(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let local = stream
        .local_addr()
        .map_or_else(|_| "127.0.0.1:27017".to_owned(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let conn = Conn { id, local };
    tracing::debug!(connection = id, %peer, "connection accepted");
    let mut shutdown = shared.shutdown.clone();
    let reason = loop {
        let mut head = [0u8; HEADER_LEN];
        let read = tokio::select! {
            r = stream.read_exact(&mut head) => r,
            _ = shutdown.changed() => break "server shutting down".to_owned(),
        };
        if let Err(e) = read {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "client closed the connection".to_owned()
            } else {
                format!("read failed: {e}")
            };
        }
        let header = match Header::parse(&head) {
            Ok(h) => h,
            Err(e) => break refused(id, &e),
        };
        let mut body = vec![0u8; header.length - HEADER_LEN];
        if let Err(e) = stream.read_exact(&mut body).await {
            break refused(
                id,
                &FrameError::Truncated(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "connection closed mid-message"
                } else {
                    "read failed mid-message"
                }),
            );
        }
        let request = match frame::decode(&header, &body) {
            Ok(r) => r,
            Err(e) => break refused(id, &e),
        };
        drop(body);
        let reply = match request {
            Request::Msg(msg) => {
                let silent = msg.more_to_come();
                let cmd = msg.into_command();
                let reply = match cmd {
                    Ok(cmd) => run(&shared, &conn, cmd).await,
                    Err(why) => CommandError::new(ErrorCode::InvalidOptions, why).to_reply(),
                };
                if silent {
                    continue;
                }
                frame::encode_msg(next_id(&shared), header.request_id, 0, &reply)
            }
            Request::Query(q) => {
                let reply = legacy_query(&shared, &conn, q).await;
                frame::encode_reply(next_id(&shared), header.request_id, &reply)
            }
        };
        let bytes = match reply {
            Ok(b) => b,
            Err(e) => {
                // Cannot happen for documents we built; answer rather than
                // hang the client.
                let err =
                    CommandError::new(ErrorCode::InternalError, format!("reply encoding: {e}"));
                match frame::encode_msg(next_id(&shared), header.request_id, 0, &err.to_reply()) {
                    Ok(b) => b,
                    Err(_) => break "reply could not be encoded".to_owned(),
                }
            }
        };
        if let Err(e) = stream.write_all(&bytes).await {
            break format!("write failed: {e}");
        }
    };
    tracing::debug!(connection = id, reason, "connection closed");
}

fn refused(id: i64, e: &FrameError) -> String {
    tracing::warn!(connection = id, reason = %e, "malformed message; closing the connection");
    format!("malformed message: {e}")
}

fn next_id(shared: &Shared) -> i32 {
    shared.next_request.fetch_add(1, Ordering::Relaxed)
}

/// `OP_QUERY` is answered only for the handshake (`isMaster`/`hello` on
/// `<db>.$cmd`), as mongod 6.0+ does; anything else gets mongod's
/// `UnsupportedOpQueryCommand`.
async fn legacy_query(shared: &Shared, conn: &Conn, q: frame::OpQuery) -> Document {
    let cmd = match q.query.get("$query") {
        Some(Bson::Document(inner)) => inner.clone(),
        _ => q.query,
    };
    let name = cmd.keys().next().cloned().unwrap_or_default();
    tracing::debug!(connection = conn.id, command = %name, "OP_QUERY");
    if q.full_collection_name.ends_with(".$cmd")
        && matches!(name.to_ascii_lowercase().as_str(), "ismaster" | "hello")
    {
        return match hello(shared, conn, &cmd, &name).await {
            Ok(d) => d,
            Err(e) => e.to_reply(),
        };
    }
    CommandError::new(
        ErrorCode::UnsupportedOpQueryCommand,
        format!("Unsupported OP_QUERY command: {name}. The client driver may require an upgrade."),
    )
    .to_reply()
}

/// Run one `OP_MSG` command and build its reply.
pub(crate) async fn run(shared: &Shared, conn: &Conn, cmd: Document) -> Document {
    let Some(name) = cmd.keys().next().cloned() else {
        return CommandError::new(ErrorCode::FailedToParse, "empty command").to_reply();
    };
    let Some(db) = cmd.get_str("$db").ok().map(str::to_owned) else {
        return CommandError::new(
            ErrorCode::FailedToParse,
            format!("OP_MSG command '{name}' has no $db field"),
        )
        .to_reply();
    };
    let collection = match cmd.get(&name) {
        Some(Bson::String(s)) => s.clone(),
        _ => String::new(),
    };
    // Names only: the command's values are never logged.
    tracing::debug!(connection = conn.id, command = %name, db = %db, collection = ?collection, "command");
    match crate::session::dispatch(shared, conn, &name, &db, cmd).await {
        Ok(mut reply) => {
            if !reply.contains_key("ok") {
                reply.insert("ok", 1.0);
            }
            reply
        }
        Err(e) => {
            tracing::debug!(connection = conn.id, command = %name, code = e.code.code(), "command failed");
            e.to_reply()
        }
    }
}

/// Commands that need no database: the handshake and diagnostics.
pub(crate) async fn admin_command(
    shared: &Shared,
    conn: &Conn,
    name: &str,
    cmd: &Document,
) -> Option<CommandResult> {
    Some(match name {
        "hello" | "isMaster" | "ismaster" => hello(shared, conn, cmd, name).await,
        "ping" => Ok(doc! {}),
        "buildInfo" | "buildinfo" => Ok(build_info()),
        "getParameter" => Ok(get_parameter(cmd)),
        "getCmdLineOpts" => Ok(doc! {"argv": ["cipherdoc", "serve"], "parsed": {}}),
        "hostInfo" => Ok(doc! {"system": {"hostname": conn.local.clone()}, "os": {}, "extra": {}}),
        "serverStatus" => Ok(doc! {
            "host": conn.local.clone(),
            "version": crate::SERVER_VERSION,
            "process": "cipherdoc",
            "connections": {"totalCreated": shared.next_connection.load(Ordering::Relaxed) - 1},
        }),
        "whatsmyuri" => Ok(doc! {"you": conn.local.clone()}),
        "connectionStatus" => {
            Ok(doc! {"authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}})
        }
        "getLog" => Ok(doc! {"totalLinesWritten": 0, "log": []}),
        "listDatabases" => list_databases(shared, cmd).await,
        _ => return None,
    })
}

async fn hello(shared: &Shared, conn: &Conn, cmd: &Document, name: &str) -> CommandResult {
    // The streaming protocol: a monitor that sent our current
    // topologyVersion waits up to maxAwaitTimeMS for a change. Ours never
    // changes, so the answer comes when the wait is over (or at shutdown).
    if let (Some(Bson::Document(tv)), Some(wait)) =
        (cmd.get("topologyVersion"), cmd.get("maxAwaitTimeMS"))
        && tv.get_object_id("processId").ok() == Some(shared.process_id)
    {
        let ms = match wait {
            Bson::Int32(n) => u64::try_from(*n).unwrap_or(0),
            Bson::Int64(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms.min(60_000))) => {}
            _ = shutdown.changed() => {}
        }
    }
    let cfg = &shared.config;
    let legacy = name != "hello";
    let mut d = Document::new();
    if cmd.get_bool("helloOk").unwrap_or(false) {
        d.insert("helloOk", true);
    }
    d.insert(
        "topologyVersion",
        doc! {"processId": shared.process_id, "counter": 0i64},
    );
    d.insert(
        if legacy {
            "ismaster"
        } else {
            "isWritablePrimary"
        },
        true,
    );
    if cfg.topology == Topology::Mongos {
        d.insert("msg", "isdbgrid");
    }
    if let Topology::ReplicaSet { set_name } = &cfg.topology {
        d.insert("hosts", vec![conn.local.clone()]);
        d.insert("setName", set_name.clone());
        d.insert("setVersion", 1);
        d.insert("secondary", false);
        d.insert("primary", conn.local.clone());
        d.insert("me", conn.local.clone());
        d.insert(
            "electionId",
            ObjectId::from_bytes([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]),
        );
        d.insert(
            "lastWrite",
            doc! {
                "lastWriteDate": bson::DateTime::now(),
                "majorityWriteDate": bson::DateTime::now(),
            },
        );
    }
    d.insert(
        "maxBsonObjectSize",
        i32::try_from(frame::MAX_BSON_OBJECT_SIZE).unwrap_or(i32::MAX),
    );
    d.insert(
        "maxMessageSizeBytes",
        i32::try_from(frame::MAX_MESSAGE_SIZE).unwrap_or(i32::MAX),
    );
    d.insert("maxWriteBatchSize", 100_000);
    d.insert("localTime", bson::DateTime::now());
    d.insert("logicalSessionTimeoutMinutes", 30);
    d.insert("connectionId", conn.id);
    d.insert("minWireVersion", 0);
    d.insert("maxWireVersion", cfg.max_wire_version);
    d.insert("readOnly", false);
    Ok(d)
}

fn build_info() -> Document {
    let parts: Vec<i32> = crate::SERVER_VERSION
        .split('.')
        .filter_map(|p| p.parse().ok())
        .chain(std::iter::once(0))
        .collect();
    doc! {
        "version": crate::SERVER_VERSION,
        "gitVersion": "cipherdoc",
        "versionArray": parts,
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": i32::try_from(frame::MAX_BSON_OBJECT_SIZE).unwrap_or(i32::MAX),
        "storageEngines": ["cipherdoc"],
        "modules": [],
    }
}

fn get_parameter(cmd: &Document) -> Document {
    let mut d = Document::new();
    let all = matches!(cmd.get("getParameter"), Some(Bson::String(s)) if s == "*")
        || matches!(cmd.get("getParameter"), Some(Bson::Document(o)) if o.get_bool("allParameters").unwrap_or(false));
    if all || cmd.contains_key("featureCompatibilityVersion") {
        d.insert("featureCompatibilityVersion", doc! {"version": "8.0"});
    }
    if all || cmd.contains_key("transactionLifetimeLimitSeconds") {
        d.insert("transactionLifetimeLimitSeconds", 60);
    }
    d
}

async fn list_databases(shared: &Shared, cmd: &Document) -> CommandResult {
    let name_only = cmd.get_bool("nameOnly").unwrap_or(false);
    let filter = match cmd.get("filter") {
        Some(Bson::Document(f)) => Some(
            cipherdoc_engine::Filter::parse(f)
                .map_err(|e| CommandError::bad_value(e.to_string()))?,
        ),
        _ => None,
    };
    let mut out = Vec::new();
    for name in shared.databases.names().await {
        let entry = if name_only {
            doc! {"name": name}
        } else {
            doc! {"name": name, "sizeOnDisk": 0i64, "empty": false}
        };
        if filter.as_ref().is_none_or(|f| f.matches(&entry)) {
            out.push(Bson::Document(entry));
        }
    }
    Ok(doc! {"databases": out, "totalSize": 0i64})
}
