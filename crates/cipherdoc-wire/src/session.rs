//! Logical sessions and transactions, and the dispatch that runs a command
//! inside or outside one.
//!
//! A MongoDB transaction (`lsid` + `txnNumber` + `autocommit: false`, the
//! first command with `startTransaction: true`) becomes one engine
//! transaction ([`cipherdoc_engine::Engine::begin`] of the QE server role),
//! begun when the transaction first touches a database. Each cipherdoc
//! database is its own engine (one SQLite file, one PostgreSQL schema), so a
//! transaction stays within one database; touching a second one is refused
//! with `OperationNotSupportedInTransaction`.
//!
//! As in mongod: a failed command aborts its transaction; later commands of
//! it get `NoSuchTransaction` labelled `TransientTransactionError`, and so do
//! write conflicts; `commitTransaction` may be retried after success;
//! a transaction open longer than the lifetime limit is aborted.
//! Retryable writes (`txnNumber` without `autocommit`) answer a retry of
//! the last write with its first reply instead of applying it twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use cipherdoc_engine::Transaction;

use crate::backend::Database;
use crate::error::{CommandError, CommandResult, ErrorCode, TRANSIENT_TRANSACTION_ERROR};
use crate::server::{Conn, Shared, admin_command};

/// Sessions idle this long are forgotten (mongod's
/// `logicalSessionTimeoutMinutes`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// An engine transaction bound to the database it first touched.
pub(crate) struct OpenTx {
    db: Arc<Database>,
    tx: Box<dyn Transaction>,
}

impl std::fmt::Debug for OpenTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTx")
            .field("db", &self.db.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum TxnState {
    None,
    Active {
        number: i64,
        started: Instant,
        open: Option<OpenTx>,
    },
    Committed {
        number: i64,
    },
    Aborted,
}

#[derive(Debug)]
struct Session {
    /// The highest `txnNumber` seen.
    txn_number: i64,
    state: TxnState,
    /// The last retryable write's `txnNumber` and reply.
    retry: Option<(i64, Document)>,
    used: Instant,
}

type SessionRef = Arc<tokio::sync::Mutex<Session>>;

/// The server's sessions, by `lsid.id`.
#[derive(Debug)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<Vec<u8>, SessionRef>>,
    lifetime: Duration,
}

/// Where a command's engine operations go.
pub(crate) enum Exec<'a> {
    /// Autocommit: each command is its own engine transaction(s).
    Auto,
    /// Inside the session's transaction (begun on first use).
    Txn(&'a mut Option<OpenTx>),
}

impl Exec<'_> {
    /// The transaction to use for `db`, or `None` for autocommit.
    pub(crate) async fn tx(
        &mut self,
        db: &Arc<Database>,
    ) -> CommandResult<Option<&mut (dyn Transaction + 'static)>> {
        let Exec::Txn(slot) = self else {
            return Ok(None);
        };
        if let Some(open) = slot.as_ref()
            && open.db.name != db.name
        {
            return Err(CommandError::new(
                ErrorCode::OperationNotSupportedInTransaction,
                format!(
                    "a transaction of cipherdoc serve stays in one database: it began in '{}' and cannot touch '{}'",
                    open.db.name, db.name
                ),
            ));
        }
        if slot.is_none() {
            let tx = cipherdoc_engine::Engine::begin(&db.qe).await?;
            **slot = Some(OpenTx {
                db: Arc::clone(db),
                tx,
            });
        }
        Ok(slot.as_mut().map(|o| &mut *o.tx))
    }
}

fn lsid_key(cmd: &Document) -> Option<Vec<u8>> {
    match cmd.get("lsid") {
        Some(Bson::Document(l)) => match l.get("id") {
            Some(Bson::Binary(b)) => Some(b.bytes.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn txn_number(cmd: &Document) -> Option<i64> {
    match cmd.get("txnNumber") {
        Some(Bson::Int64(n)) => Some(*n),
        Some(Bson::Int32(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

async fn finish(open: Option<OpenTx>, commit: bool) -> CommandResult<()> {
    let Some(open) = open else { return Ok(()) };
    if commit {
        open.tx.commit().await?;
    } else {
        open.tx.rollback().await?;
    }
    Ok(())
}

impl Sessions {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    fn get(&self, key: &[u8]) -> SessionRef {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key.to_vec()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Session {
                txn_number: -1,
                state: TxnState::None,
                retry: None,
                used: Instant::now(),
            }))
        }))
    }

    fn existing(&self, key: &[u8]) -> Option<SessionRef> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Abort transactions past their lifetime; forget idle sessions.
    pub(crate) async fn reap(&self) {
        let all: Vec<(Vec<u8>, SessionRef)> = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        for (key, s) in all {
            // A session busy with a command is not idle; skip it this round.
            let Ok(mut s) = s.try_lock() else { continue };
            if let TxnState::Active {
                number, started, ..
            } = &s.state
                && started.elapsed() > self.lifetime
            {
                let number = *number;
                tracing::info!(
                    txn_number = number,
                    "aborting a transaction that exceeded the lifetime limit"
                );
                if let TxnState::Active { open, .. } =
                    std::mem::replace(&mut s.state, TxnState::Aborted)
                {
                    let _ = finish(open, false).await;
                }
            }
            if s.used.elapsed() > SESSION_TIMEOUT && !matches!(s.state, TxnState::Active { .. }) {
                drop(s);
                self.map
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
            }
        }
    }

    /// `endSessions`: abort their transactions and forget them.
    async fn end(&self, keys: &[Vec<u8>]) {
        for key in keys {
            let s = self
                .map
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key);
            if let Some(s) = s {
                let mut s = s.lock().await;
                if let TxnState::Active { open, number, .. } =
                    std::mem::replace(&mut s.state, TxnState::None)
                {
                    tracing::debug!(
                        txn_number = number,
                        "session ended with an open transaction"
                    );
                    let _ = finish(open, false).await;
                }
            }
        }
    }

    /// Abort every open transaction (shutdown).
    pub(crate) async fn abort_all(&self) {
        let keys: Vec<Vec<u8>> = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        self.end(&keys).await;
    }
}

/// Lock the session of `key`, mark it used, and refuse a `txnNumber` older
/// than the newest it has seen (mongod's `TransactionTooOld`).
async fn use_session(
    shared: &Shared,
    key: &[u8],
    number: i64,
) -> CommandResult<tokio::sync::OwnedMutexGuard<Session>> {
    let mut s = shared.sessions.get(key).lock_owned().await;
    s.used = Instant::now();
    if number < s.txn_number {
        return Err(CommandError::new(
            ErrorCode::TransactionTooOld,
            format!(
                "Cannot start transaction {number} on session because a newer transaction {} has already started",
                s.txn_number
            ),
        ));
    }
    Ok(s)
}

/// mongod's `TransientTransactionError` label where it applies.
fn label_transient(e: CommandError) -> CommandError {
    if e.is_transient_in_transaction() {
        e.label(TRANSIENT_TRANSACTION_ERROR)
    } else {
        e
    }
}

fn no_such(number: i64) -> CommandError {
    CommandError::new(
        ErrorCode::NoSuchTransaction,
        format!("Transaction with {{ txnNumber: {number} }} has been aborted."),
    )
    .label(TRANSIENT_TRANSACTION_ERROR)
}

/// Route a command: handshake and admin commands, session commands, then
/// data commands inside or outside a transaction.
pub(crate) async fn dispatch(
    shared: &Shared,
    conn: &Conn,
    name: &str,
    db: &str,
    cmd: Document,
) -> CommandResult {
    if let Some(r) = admin_command(shared, conn, name, &cmd).await {
        return r;
    }
    match name {
        "endSessions" | "killSessions" => {
            let keys: Vec<Vec<u8>> = match cmd.get(name) {
                Some(Bson::Array(a)) => a
                    .iter()
                    .filter_map(|l| match l {
                        Bson::Document(l) => match l.get("id") {
                            Some(Bson::Binary(b)) => Some(b.bytes.clone()),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for key in &keys {
                let id = Bson::Binary(bson::Binary {
                    subtype: bson::spec::BinarySubtype::Uuid,
                    bytes: key.clone(),
                });
                shared.cursors.end_session(&id).await;
            }
            shared.sessions.end(&keys).await;
            return Ok(doc! {});
        }
        "refreshSessions" | "startSession" => return Ok(doc! {}),
        "commitTransaction" | "abortTransaction" => {
            return end_transaction(shared, name, &cmd).await;
        }
        _ => {}
    }
    let autocommit = cmd.get_bool("autocommit").ok();
    let key = lsid_key(&cmd);
    let number = txn_number(&cmd);
    if number.is_some() && shared.config.topology == crate::server::Topology::Standalone {
        // What a standalone mongod answers to transactions and retryable
        // writes.
        return Err(CommandError::new(
            ErrorCode::IllegalOperation,
            "Transaction numbers are only allowed on a replica set member or mongos",
        ));
    }
    if autocommit == Some(false) {
        let (Some(key), Some(number)) = (key, number) else {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "autocommit: false needs lsid and txnNumber",
            ));
        };
        return in_transaction(shared, conn, name, db, cmd, &key, number).await;
    }
    let is_write = matches!(name, "insert" | "update" | "delete" | "findAndModify");
    if let (Some(key), Some(number), true) = (&key, number, is_write) {
        // A retryable write: a retry of the last one gets its first reply.
        let mut s = use_session(shared, key, number).await?;
        if let Some((n, reply)) = &s.retry
            && *n == number
        {
            return Ok(reply.clone());
        }
        if number > s.txn_number {
            s.txn_number = number;
            if let TxnState::Active { open, .. } = std::mem::replace(&mut s.state, TxnState::None) {
                let _ = finish(open, false).await;
            }
        }
        let reply = crate::crud::data_command(shared, name, db, cmd, &mut Exec::Auto).await?;
        s.retry = Some((number, reply.clone()));
        return Ok(reply);
    }
    if let Some(key) = &key
        && let Some(s) = shared.sessions.existing(key)
        && let Ok(mut s) = s.try_lock()
    {
        s.used = Instant::now();
    }
    crate::crud::data_command(shared, name, db, cmd, &mut Exec::Auto).await
}

async fn in_transaction(
    shared: &Shared,
    conn: &Conn,
    name: &str,
    db: &str,
    cmd: Document,
    key: &[u8],
    number: i64,
) -> CommandResult {
    let _ = conn;
    let mut s = use_session(shared, key, number).await?;
    if cmd.get_bool("startTransaction").unwrap_or(false) {
        if number == s.txn_number && !matches!(s.state, TxnState::None) {
            return Err(CommandError::new(
                ErrorCode::Location(50911),
                format!(
                    "Cannot start a transaction with a transaction number {number} that was already used on this session"
                ),
            ));
        }
        if let TxnState::Active { open, .. } = std::mem::replace(&mut s.state, TxnState::None) {
            let _ = finish(open, false).await;
        }
        s.txn_number = number;
        s.state = TxnState::Active {
            number,
            started: Instant::now(),
            open: None,
        };
    } else if number > s.txn_number {
        s.txn_number = number;
        return Err(no_such(number));
    }
    match &s.state {
        TxnState::Active { number: n, .. } if *n == number => {}
        TxnState::Committed { number: n } if *n == number => {
            return Err(CommandError::new(
                ErrorCode::TransactionCommitted,
                format!("Transaction {number} has been committed."),
            ));
        }
        _ => return Err(no_such(number)),
    }
    if matches!(
        name,
        "create"
            | "drop"
            | "dropDatabase"
            | "renameCollection"
            | "createIndexes"
            | "dropIndexes"
            | "compactStructuredEncryptionData"
            | "cleanupStructuredEncryptionData"
    ) {
        let e = CommandError::new(
            ErrorCode::OperationNotSupportedInTransaction,
            format!("Cannot run '{name}' in a multi-document transaction."),
        );
        abort(&mut s).await;
        return Err(e);
    }
    let TxnState::Active { open, .. } = &mut s.state else {
        return Err(no_such(number));
    };
    let r = crate::crud::data_command(shared, name, db, cmd, &mut Exec::Txn(open)).await;
    let failed = match &r {
        Err(_) => true,
        Ok(reply) => reply.contains_key("writeErrors"),
    };
    if failed {
        abort(&mut s).await;
    }
    r.map_err(label_transient)
}

async fn abort(s: &mut Session) {
    if let TxnState::Active { open, .. } = std::mem::replace(&mut s.state, TxnState::None) {
        s.state = TxnState::Aborted;
        let _ = finish(open, false).await;
    }
}

async fn end_transaction(shared: &Shared, name: &str, cmd: &Document) -> CommandResult {
    let (Some(key), Some(number)) = (lsid_key(cmd), txn_number(cmd)) else {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            format!("{name} needs lsid and txnNumber"),
        ));
    };
    let mut s = use_session(shared, &key, number).await?;
    let commit = name == "commitTransaction";
    match std::mem::replace(&mut s.state, TxnState::None) {
        TxnState::Active {
            number: n, open, ..
        } if n == number => {
            let r = finish(open, commit).await;
            s.state = match (&r, commit) {
                (Ok(()), true) => TxnState::Committed { number },
                _ => TxnState::Aborted,
            };
            r.map_err(label_transient)?;
            Ok(doc! {})
        }
        TxnState::Committed { number: n } if n == number => {
            s.state = TxnState::Committed { number };
            if commit {
                Ok(doc! {})
            } else {
                Err(CommandError::new(
                    ErrorCode::TransactionCommitted,
                    format!("Transaction with {{ txnNumber: {number} }} has been committed."),
                ))
            }
        }
        other => {
            s.state = other;
            Err(no_such(number))
        }
    }
}
