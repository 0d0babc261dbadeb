//! WAL checkpoints off the writer's path.
//!
//! SQLite's default (`wal_autocheckpoint`) runs a checkpoint inside the
//! `COMMIT` that takes the WAL past 1,000 pages: that commit copies every
//! page of the WAL back into the database file before it returns. Encrypted
//! inserts write random keys (ESC ids, tags), so each batch dirties a few
//! hundred pages and about one commit in four paid for a checkpoint: a
//! quarter of an encrypted bulk insert's time was spent there.
//!
//! Instead the writer connection has automatic checkpoints turned off and a
//! WAL hook that records how many frames the WAL holds after each commit.
//! After a commit, [`Writer::committed`] looks at that count:
//!
//! - once [`CHECKPOINT_PAGES`] frames have been written since the last
//!   checkpoint, it wakes a background thread, which runs a `PASSIVE`
//!   checkpoint on its own connection while the writer goes on (SQLite
//!   lets a checkpoint run alongside a writer and readers: it copies only
//!   the frames no reader still needs);
//! - if the WAL nevertheless reaches [`WAL_LIMIT_PAGES`] (the background
//!   checkpoints cannot catch up with a writer that never pauses, so the WAL
//!   is never fully copied and never restarts from its beginning), the
//!   writer checkpoints itself before it returns, as SQLite would. The
//!   next write transaction then restarts the WAL, and `journal_size_limit`
//!   trims the file. This bounds the WAL's size.
//!
//! Durability is unchanged: with `synchronous=NORMAL` a commit is in the WAL
//! either way, and the checkpoint syncs the WAL before it copies.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};

use crate::Result;

/// WAL frames written since the last checkpoint that start a background
/// checkpoint (SQLite's own `wal_autocheckpoint` default).
pub const CHECKPOINT_PAGES: u32 = 1000;
/// WAL size (frames) at which the writer checkpoints itself.
pub const WAL_LIMIT_PAGES: u32 = 8 * CHECKPOINT_PAGES;
/// The WAL file is truncated to this size when it restarts after growing
/// past it (`journal_size_limit`).
pub(super) const WAL_KEEP_BYTES: u64 = 64 << 20;

thread_local! {
    /// Frames in the WAL after the last commit on this thread's writer.
    ///
    /// SQLite's WAL hook is a plain function (rusqlite takes a `fn`, not a
    /// closure), so it cannot reach the engine it belongs to. It runs
    /// inside `COMMIT`, on the thread that runs it; the engine reads and
    /// clears the count on that same thread right after the commit.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

#[allow(clippy::unnecessary_wraps)] // the hook's signature
fn record_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(u32::try_from(frames).unwrap_or(0)));
    Ok(())
}

/// The engine's writer connection and its background checkpointer.
pub(super) struct Writer {
    conn: Connection,
    wake: Option<SyncSender<()>>,
    /// Frames the last checkpoint copied (a checkpoint's `log` count when it
    /// copied everything, else what it reached).
    checkpointed: Arc<AtomicU32>,
    /// Held while a checkpoint runs, by the background thread or by the
    /// writer: SQLite refuses a second concurrent checkpoint (busy) rather
    /// than waiting for it, and the writer must not give up at the limit.
    running: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::ops::Deref for Writer {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// One `PASSIVE` checkpoint (copies what no reader still needs, waits for
/// nobody) and record the frames it reached (nothing is recorded when
/// another checkpoint was running: SQLite then reports -1).
fn checkpoint(conn: &Connection, checkpointed: &AtomicU32) -> rusqlite::Result<()> {
    let done: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(2))?;
    if let Ok(done) = u32::try_from(done) {
        checkpointed.store(done, Ordering::Relaxed);
    }
    Ok(())
}

fn run(conn: &Connection, wake: &Receiver<()>, checkpointed: &AtomicU32, running: &Mutex<()>) {
    while wake.recv().is_ok() {
        let _running = running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = checkpoint(conn, checkpointed) {
            tracing::warn!(error = %e, "background WAL checkpoint failed");
        }
    }
}

impl Writer {
    /// Take over `conn` (the writer) and start the checkpointer on a
    /// connection of its own to `path`.
    pub(super) fn new(conn: Connection, path: &Path) -> Result<Self> {
        // Order matters: setting wal_autocheckpoint installs SQLite's own
        // hook, which ours then replaces.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={WAL_KEEP_BYTES};"
        ))?;
        conn.wal_hook(Some(record_frames));
        let ckpt_conn = Connection::open_with_flags(path, OpenFlags::default())?;
        ckpt_conn.busy_timeout(std::time::Duration::from_secs(10))?;
        ckpt_conn.execute_batch("PRAGMA wal_autocheckpoint=0;")?;
        let (wake, rx) = sync_channel(1);
        let checkpointed = Arc::new(AtomicU32::new(0));
        let running = Arc::new(Mutex::new(()));
        let (done, lock) = (Arc::clone(&checkpointed), Arc::clone(&running));
        let thread = std::thread::Builder::new()
            .name("cipherdoc-sqlite-checkpoint".into())
            .spawn(move || run(&ckpt_conn, &rx, &done, &lock))?;
        Ok(Self {
            conn,
            wake: Some(wake),
            checkpointed,
            running,
            thread: Some(thread),
        })
    }

    /// Copies the WAL into the database file and truncates it, rewrites
    /// the file (`VACUUM`: every page written anew, free pages gone), and
    /// truncates the WAL that wrote it. Afterwards neither file holds a
    /// page a dropped collection or a deleted document used. Waits for a
    /// background checkpoint in progress; a reader of another process that
    /// keeps an old snapshot makes it fail with `ScrubIncomplete`.
    pub(super) fn scrub(&self) -> Result<()> {
        let _running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let truncate = || -> Result<()> {
            let (busy, log, done): (i64, i64, i64) =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
            if busy != 0 || log != done {
                return Err(crate::EngineError::ScrubIncomplete {
                    engine: "sqlite",
                    reason: format!(
                        "the WAL checkpoint copied {done} of {log} frames (busy: {busy})"
                    ),
                });
            }
            Ok(())
        };
        truncate()?;
        self.conn.execute_batch("VACUUM")?;
        truncate()?;
        self.checkpointed.store(0, Ordering::Relaxed);
        WAL_FRAMES.with(|f| f.set(0));
        Ok(())
    }

    /// Call on the writer's thread after each successful `COMMIT`.
    pub(super) fn committed(&self) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        if frames == 0 {
            return;
        }
        let done = self.checkpointed.load(Ordering::Relaxed);
        let fresh = if frames < done {
            // The WAL restarted since that checkpoint: its mark no longer
            // applies (left as it was, it would delay the next background
            // checkpoint until the new WAL passed it).
            let _ =
                self.checkpointed
                    .compare_exchange(done, 0, Ordering::Relaxed, Ordering::Relaxed);
            frames
        } else {
            frames - done
        };
        if frames >= WAL_LIMIT_PAGES {
            // Wait for a background checkpoint in progress, then copy the
            // rest here; the next write transaction restarts the WAL.
            let _running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = checkpoint(&self.conn, &self.checkpointed) {
                tracing::warn!(error = %e, "WAL checkpoint by the writer failed");
            }
        } else if fresh >= CHECKPOINT_PAGES
            && let Some(w) = &self.wake
            && let Err(TrySendError::Disconnected(())) = w.try_send(())
        {
            tracing::warn!("the WAL checkpointer thread has stopped");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread; joining it means the
        // checkpointer's connection is closed when the engine is gone.
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
