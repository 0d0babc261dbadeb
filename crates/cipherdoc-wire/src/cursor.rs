//! Cursors: the rest of a result after its first batch, served by
//! `getMore` in batches, dropped by `killCursors`, at the end, or after
//! `cursorTimeoutMillis` idle.
//!
//! Results are materialised (the engine's `find` returns them whole), so a
//! cursor holds documents, not an open engine read; it therefore never
//! pins a snapshot or a connection. A find's documents stay as the engine
//! stored them ([`Row::Stored`], from `Engine::find_raw`) until a batch
//! sends them: sizing a batch reads their length, and only what is sent is
//! decoded.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bson::{Bson, Document, RawDocumentBuf, doc};
use tokio::sync::Mutex;

use crate::error::{CommandError, CommandResult, ErrorCode};
use crate::frame::MAX_BSON_OBJECT_SIZE;

/// mongod's default size of a first batch.
pub(crate) const DEFAULT_FIRST_BATCH: usize = 101;

/// Room kept free in a 16 MiB reply for the envelope around the batch.
const REPLY_OVERHEAD: usize = 16 * 1024;

/// One document of a result.
#[derive(Debug)]
pub(crate) enum Row {
    /// Built by the server (aggregation stages, catalog listings).
    Built(Document),
    /// As the engine stored it (a find through `Engine::find_raw`).
    Stored(RawDocumentBuf),
}

impl From<Document> for Row {
    fn from(d: Document) -> Self {
        Self::Built(d)
    }
}

impl From<RawDocumentBuf> for Row {
    fn from(d: RawDocumentBuf) -> Self {
        Self::Stored(d)
    }
}

impl Row {
    /// Its size in a reply.
    fn len(&self) -> usize {
        match self {
            Self::Built(d) => bson::to_vec(d).map_or(0, |b| b.len()),
            Self::Stored(d) => d.as_bytes().len(),
        }
    }

    /// The document to send; `ns` names the collection if a stored one
    /// does not decode.
    fn into_document(self, ns: &str) -> CommandResult<Document> {
        match self {
            Self::Built(d) => Ok(d),
            Self::Stored(d) => Ok(cipherdoc_engine::decode_raw(ns, &d)?),
        }
    }
}

#[derive(Debug)]
struct Cursor {
    ns: String,
    docs: VecDeque<Row>,
    /// The session that opened it (`getMore` from another is refused).
    lsid: Option<Bson>,
    used: Instant,
}

/// Whether a result may continue in a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batches {
    /// The rest stays in a cursor for `getMore`.
    Cursor,
    /// `singleBatch: true`: the first batch is all; no cursor is kept.
    Single,
}

/// The open cursors.
#[derive(Debug)]
pub(crate) struct Cursors {
    map: Mutex<HashMap<i64, Cursor>>,
    timeout: Duration,
}

/// A batch of at most `limit` documents (all when `None`) that fits in one
/// reply.
fn take_batch(
    docs: &mut VecDeque<Row>,
    limit: Option<usize>,
    ns: &str,
) -> CommandResult<Vec<Bson>> {
    let mut out = Vec::new();
    let mut size = 0usize;
    while let Some(d) = docs.front() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let len = d.len();
        if !out.is_empty() && size + len > MAX_BSON_OBJECT_SIZE - REPLY_OVERHEAD {
            break;
        }
        size += len;
        if let Some(d) = docs.pop_front() {
            out.push(Bson::Document(d.into_document(ns)?));
        }
    }
    Ok(out)
}

/// An integral number of any BSON numeric type (MongoDB accepts a
/// whole double where it wants an integer).
pub(crate) fn integer(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        #[allow(clippy::cast_possible_truncation)]
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
        _ => None,
    }
}

/// A positive batch size from a command field (`0` or missing: `None`).
pub(crate) fn batch_size(cmd: &Document, field: &str) -> CommandResult<Option<usize>> {
    match cmd.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => {
            let n = integer(v).ok_or_else(|| CommandError::type_mismatch(field, "long"))?;
            if n < 0 {
                return Err(CommandError::bad_value(format!(
                    "BSON field '{field}' value must be >= 0, actual value '{n}'"
                )));
            }
            Ok(usize::try_from(n).ok().filter(|n| *n > 0))
        }
    }
}

fn random_id() -> i64 {
    static FALLBACK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness: ids only need to be unique, not secret.
        return FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // Positive and non-zero, as mongod's.
    (i64::from_le_bytes(b) & i64::MAX).max(1)
}

impl Cursors {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            timeout,
        }
    }

    /// The `cursor` reply of a command whose result is `docs`: the first
    /// batch, and a cursor id for the rest (0 when nothing is left or
    /// `single_batch`).
    pub(crate) async fn first_batch<R: Into<Row>>(
        &self,
        ns: String,
        docs: Vec<R>,
        batch: Option<usize>,
        batches: Batches,
        lsid: Option<Bson>,
    ) -> CommandResult {
        let mut docs: VecDeque<Row> = docs.into_iter().map(Into::into).collect();
        let first = take_batch(&mut docs, Some(batch.unwrap_or(DEFAULT_FIRST_BATCH)), &ns)?;
        let id = if docs.is_empty() || batches == Batches::Single {
            0
        } else {
            let mut map = self.map.lock().await;
            let mut id = random_id();
            while map.contains_key(&id) {
                id = random_id();
            }
            map.insert(
                id,
                Cursor {
                    ns: ns.clone(),
                    docs,
                    lsid,
                    used: Instant::now(),
                },
            );
            id
        };
        Ok(doc! {"cursor": {"firstBatch": first, "id": id, "ns": ns}})
    }

    /// `getMore`.
    pub(crate) async fn get_more(
        &self,
        id: i64,
        ns: &str,
        batch: Option<usize>,
        lsid: Option<&Bson>,
    ) -> CommandResult {
        let mut map = self.map.lock().await;
        let Some(c) = map.get_mut(&id) else {
            return Err(CommandError::new(
                ErrorCode::CursorNotFound,
                format!("cursor id {id} not found"),
            ));
        };
        if c.ns != ns {
            return Err(CommandError::new(
                ErrorCode::Location(13),
                format!(
                    "Requested getMore on namespace '{ns}', but cursor belongs to a different namespace {}",
                    c.ns
                ),
            ));
        }
        if c.lsid.is_some() && c.lsid.as_ref() != lsid {
            return Err(CommandError::new(
                ErrorCode::Location(50737),
                format!(
                    "Cannot run getMore on cursor {id}, which was created in a different session"
                ),
            ));
        }
        c.used = Instant::now();
        let batch_docs = take_batch(&mut c.docs, batch, ns)?;
        let next = if c.docs.is_empty() {
            map.remove(&id);
            0
        } else {
            id
        };
        Ok(doc! {"cursor": {"nextBatch": batch_docs, "id": next, "ns": ns}})
    }

    /// `killCursors`.
    pub(crate) async fn kill(&self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let mut map = self.map.lock().await;
        let (mut killed, mut missing) = (Vec::new(), Vec::new());
        for id in ids {
            if map.remove(id).is_some() {
                killed.push(*id);
            } else {
                missing.push(*id);
            }
        }
        (killed, missing)
    }

    /// Drop cursors idle past the timeout.
    pub(crate) async fn reap(&self) {
        let timeout = self.timeout;
        self.map
            .lock()
            .await
            .retain(|_, c| c.used.elapsed() < timeout);
    }

    /// Drop cursors opened by a session (`endSessions`).
    pub(crate) async fn end_session(&self, lsid: &Bson) {
        self.map
            .lock()
            .await
            .retain(|_, c| c.lsid.as_ref() != Some(lsid));
    }

    /// Drop every cursor (shutdown).
    pub(crate) async fn clear(&self) {
        self.map.lock().await.clear();
    }
}
