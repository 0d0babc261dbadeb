//! SQLite faults through the application's settings:
//!
//! - out of space: `max_size_mb` caps the file (SQLite's `max_page_count`
//!   on the writer connection, which only the engine's own connection can
//!   set, hence a setting); an encrypted write past it fails with
//!   `EngineError::StorageFull`, nothing of it is kept, and the database
//!   opens intact afterwards (integrity check, every acknowledged document,
//!   ESC and tags consistent with the documents);
//! - a read-only database file: a clear `EngineError::ReadOnly`, reads
//!   still work, and the database opens intact once writable again;
//! - two processes writing the same database with the same encrypted
//!   values: nothing lost, nothing duplicated (counts by value through the
//!   tags, ESC and ECOC entries, every id each process acknowledged).

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
#![cfg(unix)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::client_encryption::generate_local_master_key_file;
use cipherdoc::migrations::{MigrateOptions, initial_migrations, migrate};
use cipherdoc::settings::Settings;
use cipherdoc::{App, Error, Model};
use cipherdoc_engine::EngineError;

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "sqlfault")]
struct Visit {
    id: ObjectId,
    writer: String,
    #[encrypted(queries = "equality", contention = 2)]
    ward: String,
}

const WARDS: [&str; 4] = ["ward-a", "ward-b", "ward-c", "ward-d"];
const COLLECTION: &str = "sqlfault_visit";

fn settings(max_size_mb: Option<u64>) -> String {
    let cap = max_size_mb.map_or_else(String::new, |mb| format!("max_size_mb = {mb}"));
    format!(
        r#"
[databases.default]
engine = "sqlite"
path = "visits.db"
name = "visits_db"
{cap}

[databases.default.encryption]
key_vault_namespace = "visits_db.__keyVault"
kms_providers.local.key_file = "master.key"
"#
    )
}

async fn open(dir: &Path, max_size_mb: Option<u64>) -> cipherdoc::Result<App> {
    App::open(Settings::from_toml(&settings(max_size_mb), dir)?)
        .await?
        .register::<Visit>()
}

/// A fresh folder with a master key and the migrated collection.
async fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    generate_local_master_key_file(&dir.path().join("master.key")).unwrap();
    let app = open(dir.path(), None).await.unwrap();
    let source = initial_migrations(&app).unwrap();
    migrate(&app, &source, &MigrateOptions::database("default"))
        .await
        .unwrap();
    dir
}

fn visit(writer: &str, i: usize) -> Visit {
    Visit {
        id: ObjectId::new(),
        writer: writer.to_owned(),
        ward: WARDS[i % WARDS.len()].to_owned(),
    }
}

/// Counts straight from the file: documents, ESC and ECOC entries, tags,
/// and SQLite's own integrity check.
fn file_counts(dir: &Path) -> (u64, u64, u64, u64) {
    let db = rusqlite::Connection::open(dir.join("visits.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let count = |table: String| -> u64 {
        let n: i64 = db
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .unwrap();
        u64::try_from(n).unwrap()
    };
    (
        count(COLLECTION.to_owned()),
        count(format!("enxcol_.{COLLECTION}.esc")),
        count(format!("enxcol_.{COLLECTION}.ecoc")),
        count(format!("{COLLECTION}.$tags")),
    )
}

/// The database holds exactly `ids`, each ward's documents are found by
/// an encrypted query (so the ESC counts and the tags agree with the
/// documents), and ESC, ECOC and tags have one entry per document.
async fn assert_intact(dir: &Path, ids: &BTreeSet<ObjectId>) {
    let app = open(dir, None).await.unwrap();
    let visits = app.objects::<Visit>();
    let all: Vec<Visit> = visits.all().await.unwrap();
    let stored: BTreeSet<ObjectId> = all.iter().map(|v| v.id).collect();
    assert_eq!(stored.len(), all.len(), "a document is duplicated");
    assert_eq!(&stored, ids, "lost or unacknowledged documents");
    for ward in WARDS {
        let direct = all.iter().filter(|v| v.ward == ward).count() as u64;
        let queried = visits
            .filter(Visit::fields().ward.eq(ward))
            .count()
            .await
            .unwrap();
        assert_eq!(
            queried, direct,
            "{ward}: the query disagrees with the documents"
        );
    }
    drop(visits);
    drop(app);
    let n = ids.len() as u64;
    assert_eq!(file_counts(dir), (n, n, n, n));
}

#[tokio::test]
async fn a_full_database_refuses_the_write_whole_and_opens_intact() {
    let dir = prepared().await;
    let app = open(dir.path(), Some(1)).await.unwrap();
    let visits = app.objects::<Visit>();
    let mut acknowledged = BTreeSet::new();
    let mut full = None;
    'fill: for batch in 0..200 {
        let chunk: Vec<Visit> = (0..25).map(|i| visit("full", batch * 25 + i)).collect();
        match visits.bulk_create(chunk.clone()).await {
            Ok(done) => acknowledged.extend(done.iter().map(|v| v.id)),
            Err(e) => {
                full = Some(e);
                break 'fill;
            }
        }
    }
    let err = full.expect("1 MiB should fill up");
    assert!(
        matches!(err, Error::Engine(EngineError::StorageFull { .. })),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("full") && text.contains("rolled back"),
        "{text}"
    );
    assert!(!text.contains("ward-"), "{text}");
    // Single writes may still fit in the last free pages; once they stop
    // fitting they fail the same way and keep nothing.
    let mut single = None;
    for i in 0..1000 {
        match visits.create(visit("full", i)).await {
            Ok(v) => {
                acknowledged.insert(v.id);
            }
            Err(e) => {
                single = Some(e);
                break;
            }
        }
    }
    let one = single.expect("single writes fill the last pages");
    assert!(
        matches!(one, Error::Engine(EngineError::StorageFull { .. })),
        "{one:?}"
    );
    drop(visits);
    drop(app);
    assert!(!acknowledged.is_empty());
    assert_intact(dir.path(), &acknowledged).await;
    // Without the cap the database takes writes again.
    let app = open(dir.path(), None).await.unwrap();
    let v = app
        .objects::<Visit>()
        .create(visit("full", 1))
        .await
        .unwrap();
    acknowledged.insert(v.id);
    drop(app);
    assert_intact(dir.path(), &acknowledged).await;
}

/// Makes a file unwritable even for root (`chattr +i`), undone on drop.
struct Immutable<'p>(&'p Path);

impl<'p> Immutable<'p> {
    fn set(path: &'p Path) -> Option<Self> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(path))
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(self.0).status();
    }
}

fn writable_by_us(path: &Path) -> bool {
    std::fs::OpenOptions::new().append(true).open(path).is_ok()
}

#[tokio::test]
async fn a_read_only_database_file_gives_a_clear_error_and_opens_intact_afterwards() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = prepared().await;
    let mut ids = BTreeSet::new();
    {
        let app = open(dir.path(), None).await.unwrap();
        for i in 0..8 {
            ids.insert(
                app.objects::<Visit>()
                    .create(visit("ro", i))
                    .await
                    .unwrap()
                    .id,
            );
        }
    }
    let file = dir.path().join("visits.db");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    // Root ignores file modes: make the file immutable instead.
    let guard = if writable_by_us(&file) {
        let Some(g) = Immutable::set(&file) else {
            assert!(
                std::env::var_os("CIPHERDOC_REQUIRE_READONLY").is_none(),
                "cannot make the file read-only for this user"
            );
            println!(
                "skipped: running as a user that may write any file and `chattr +i` is unavailable, so no file is read-only to this process"
            );
            return;
        };
        Some(g)
    } else {
        None
    };
    assert!(!writable_by_us(&file));
    match open(dir.path(), None).await {
        // SQLite opens a read-only file read-only: reads work, writes are
        // refused with the typed error.
        Ok(app) => {
            let visits = app.objects::<Visit>();
            assert_eq!(visits.count().await.unwrap(), 8);
            let err = visits.create(visit("ro", 9)).await.unwrap_err();
            assert!(
                matches!(err, Error::Engine(EngineError::ReadOnly { .. })),
                "{err:?}"
            );
            assert!(!err.is_retryable());
            assert!(err.to_string().contains("read-only"), "{err}");
        }
        // Or opening refuses, naming the problem.
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains("read-only") || text.contains("readonly"),
                "{text}"
            );
        }
    }
    drop(guard);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_intact(dir.path(), &ids).await;
}

/// The environment variable that makes [`child_writer`] write.
const CHILD_DIR: &str = "CIPHERDOC_SQLITE_FAULTS_CHILD_DIR";
const PER_CHILD: usize = 120;

#[tokio::test]
async fn two_processes_writing_the_same_values_lose_and_duplicate_nothing() {
    let dir = prepared().await;
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|name| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_writer",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .env("CIPHERDOC_SQLITE_FAULTS_CHILD_NAME", name)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mine: Vec<ObjectId> = stdout
            .lines()
            // The first line also carries libtest's "test child_writer ...".
            .filter_map(|l| l.find("ACK ").map(|at| &l[at + 4..]))
            .map(|h| ObjectId::parse_str(h).unwrap())
            .collect();
        assert_eq!(mine.len(), PER_CHILD, "{stdout}");
        ids.extend(mine);
    }
    assert_eq!(ids.len(), 2 * PER_CHILD);
    assert_intact(dir.path(), &ids).await;
}

/// One of the two writers of the test above; does nothing unless that
/// test started it.
#[tokio::test]
#[ignore = "a child process of two_processes_writing_the_same_values_lose_and_duplicate_nothing"]
async fn child_writer() {
    let dir = std::env::var(CHILD_DIR).expect("started by the two-process test");
    let name = std::env::var("CIPHERDOC_SQLITE_FAULTS_CHILD_NAME").unwrap();
    let app = open(Path::new(&dir), None).await.unwrap();
    let visits = app.objects::<Visit>();
    for i in 0..PER_CHILD {
        // The same values as the other process, one transaction each.
        let v = visits.create(visit(&name, i)).await.unwrap();
        println!("ACK {}", v.id.to_hex());
    }
}
