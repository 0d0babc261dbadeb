//! Crash tests' process handling, shared by the test binaries that
//! include it (`mod crash;`): the parent re-runs one of its own ignored
//! tests as a child process that writes batches and announces each
//! acknowledged one; the parent kills it with SIGKILL and checks the file.

// Test helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const DB_VAR: &str = "CIPHERDOC_CRASH_DB";

/// Child side: the database file to write to.
pub fn child_db() -> String {
    std::env::var(DB_VAR).expect("run by a crash test, which names the database")
}

/// Child side: batch `b`'s write has returned.
pub fn acked(b: i64) {
    println!("acked {b}");
}

/// Parent side: run the ignored test `child` of this test binary on `db`,
/// kill it once it has acknowledged batch `last`, and check that the file
/// passes SQLite's integrity check. Returns the last acknowledged batch.
pub fn kill_after_batch(child: &str, db: &Path, last: i64) -> i64 {
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_VAR, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = None;
    for line in BufReader::new(proc.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("acked ") {
            let n: i64 = n.parse().unwrap();
            seen = Some(n);
            if n >= last {
                break;
            }
        }
    }
    proc.kill().unwrap();
    proc.wait().unwrap();
    let seen = seen.expect("the child acknowledged no batch");
    assert!(seen >= last, "the child stopped after batch {seen}");
    let check: String = rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    seen
}
