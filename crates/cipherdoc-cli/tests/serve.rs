//! `cipherdoc serve`, run as a user runs it: the listening line, the
//! refusal of non-loopback addresses, a clean stop on SIGTERM, and the
//! Python suite (`crates/cipherdoc-wire/tests/python`) — pymongo and
//! pymongocrypt, unmodified — against it on SQLite and, when
//! `CIPHERDOC_TEST_POSTGRES_URL` is set, on PostgreSQL.
//!
//! The suite runs with the pinned virtual environment that
//! `crates/cipherdoc-wire/tests/python/setup.sh` installs (`.ci/run` calls
//! it) under `$CIPHERDOC_WIRE_PEERS_DIR` (default `target/wire-peers`).
//! Without it the suite tests print `skipped: <reason>` and pass, unless
//! `CIPHERDOC_REQUIRE_PEERS=1`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use cipherdoc::Model;
use cipherdoc::testing::TestApp;

#[derive(Model, Debug, Clone)]
#[model(app = "myapp")]
pub struct Patient {
    pub id: ObjectId,
    pub name: String,
    #[encrypted(queries = "equality", max_length = 11)]
    pub ssn: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, or why the suite cannot run.
fn peers_python() -> Result<PathBuf, String> {
    let dir = std::env::var_os("CIPHERDOC_WIRE_PEERS_DIR")
        .map_or_else(|| workspace().join("target/wire-peers"), PathBuf::from);
    let py = dir.join("venv/bin/python");
    if py.exists() {
        Ok(py)
    } else {
        Err(format!(
            "no wire peers at {}; run crates/cipherdoc-wire/tests/python/setup.sh",
            dir.display()
        ))
    }
}

fn require_peers() -> bool {
    std::env::var("CIPHERDOC_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// A running `cipherdoc serve`, stopped with SIGTERM when dropped.
struct Served {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Served {
    fn start(args: &[&str], log: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cipherdoc"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "cipherdoc serve did not print its listening line; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Served {
            child,
            addr,
            log: log.to_owned(),
        }
    }

    fn uri(&self) -> String {
        format!("mongodb://{}/", self.addr)
    }

    /// SIGTERM, then wait for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cipherdoc serve did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

fn prefix(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cdw{}{}_{kind}_",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_suite(py: &Path, env: &[(&str, String)], logs: &[&Served]) {
    let suite = workspace().join("crates/cipherdoc-wire/tests/python");
    let start = Instant::now();
    let out = Command::new(py)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&suite)
        .args(["-p", "test_*.py"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    eprintln!("python suite took {:?}", start.elapsed());
    if !out.status.success() {
        for s in logs {
            eprintln!(
                "--- server log {}:\n{}",
                s.log.display(),
                std::fs::read_to_string(&s.log).unwrap_or_default()
            );
        }
        panic!("the Python wire suite failed");
    }
    assert!(
        stderr.contains("\nOK"),
        "the suite did not report OK:\n{stderr}"
    );
}

fn suite_python() -> Option<PathBuf> {
    match peers_python() {
        Ok(py) => Some(py),
        Err(why) if require_peers() => panic!("CIPHERDOC_REQUIRE_PEERS=1 but {why}"),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// Patients stored by cipherdoc's model layer in the SQLite file of the
/// database `encrypted_db`, copied to `data_dir` for the server; returns
/// the fixture file the Python suite reads.
async fn model_layer_fixture(data_dir: &Path, work: &Path) -> PathBuf {
    let app = TestApp::reference()
        .register::<Patient>()
        .migrated()
        .await
        .unwrap();
    let people = [
        ("ada", "123-45-6789"),
        ("bob", "987-65-4321"),
        ("cy", "555-55-5555"),
    ];
    for (name, ssn) in people {
        app.objects::<Patient>()
            .create(Patient {
                id: ObjectId::new(),
                name: name.into(),
                ssn: ssn.into(),
            })
            .await
            .unwrap();
    }
    let master = work.join("reverse.master.key");
    std::fs::copy(app.master_key_file("encrypted"), &master).unwrap();
    let db_file = app.database_file("encrypted");
    let (app, dir) = app.into_parts();
    // Closing the app closes its SQLite connections (the last one folds
    // the WAL into the file), so the file alone is the database.
    drop(app);
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::copy(&db_file, data_dir.join("encrypted_db.db")).unwrap();
    for ext in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{ext}", db_file.display()));
        if side.exists() {
            std::fs::copy(&side, data_dir.join(format!("encrypted_db.db{ext}"))).unwrap();
        }
    }
    drop(dir);
    let fixture = work.join("reverse.json");
    let expected: serde_json::Map<String, serde_json::Value> = people
        .iter()
        .map(|(n, s)| ((*n).to_owned(), serde_json::Value::String((*s).to_owned())))
        .collect();
    std::fs::write(
        &fixture,
        serde_json::json!({
            "database": "encrypted_db",
            "collection": <Patient as cipherdoc::model::Model>::schema().collection,
            "field": "ssn",
            "key_vault_namespace": "encrypted_db.__keyVault",
            "master_key_file": master,
            "expected": expected,
        })
        .to_string(),
    )
    .unwrap();
    fixture
}

#[tokio::test(flavor = "multi_thread")]
async fn python_suite_on_sqlite() {
    let Some(py) = suite_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = model_layer_fixture(&data, work.path()).await;
    let data_arg = data.to_str().unwrap();
    let main = Served::start(&["--data-dir", data_arg], &work.path().join("main.log"));
    let old = Served::start(
        &["--data-dir", data_arg, "--max-wire-version", "17"],
        &work.path().join("old.log"),
    );
    let standalone = Served::start(
        &["--data-dir", data_arg, "--standalone"],
        &work.path().join("standalone.log"),
    );
    let env = [
        ("CIPHERDOC_WIRE_URI", main.uri()),
        ("CIPHERDOC_WIRE_PREFIX", prefix("sq")),
        ("CIPHERDOC_WIRE_OLD_URI", old.uri()),
        ("CIPHERDOC_WIRE_STANDALONE_URI", standalone.uri()),
        ("CIPHERDOC_WIRE_REVERSE", fixture.display().to_string()),
    ];
    tokio::task::spawn_blocking(move || {
        run_suite(&py, &env, &[&main, &old, &standalone]);
    })
    .await
    .unwrap();
}

async fn drop_schemas(url: &str, prefix: &str) {
    // Connected as the engine connects: the URL may ask for TLS.
    let client = cipherdoc_engine::postgres::testing::connect(url)
        .await
        .unwrap();
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&prefix],
        )
        .await
        .unwrap();
    for r in rows {
        let name: String = r.get(0);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                name.replace('"', "\"\"")
            ))
            .await
            .unwrap();
    }
    drop(client);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_suite_on_postgres() {
    let Some(url) = cipherdoc_engine::postgres::testing::test_url() else {
        return;
    };
    let Some(py) = suite_python() else { return };
    let work = tempfile::tempdir().unwrap();
    let main = Served::start(&["--postgres", &url], &work.path().join("pg.log"));
    let pfx = prefix("pg");
    let env = [
        ("CIPHERDOC_WIRE_URI", main.uri()),
        ("CIPHERDOC_WIRE_PREFIX", pfx.clone()),
    ];
    let r = tokio::task::spawn_blocking(move || {
        run_suite(&py, &env, &[&main]);
        drop(main);
    })
    .await;
    drop_schemas(&url, &pfx).await;
    r.unwrap();
}

#[test]
fn refuses_a_non_loopback_address_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cipherdoc"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no authentication"), "{err}");
    assert!(err.contains("--allow-remote"), "{err}");
    assert!(out.stdout.is_empty(), "nothing listened");
}

#[test]
fn needs_exactly_one_storage() {
    let out = Command::new(env!("CARGO_BIN_EXE_cipherdoc"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--data-dir") && err.contains("--postgres"),
        "{err}"
    );
}

#[test]
fn stops_cleanly_on_sigterm_with_a_client_connected() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut s = Served::start(
        &[
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--log-level",
            "debug",
        ],
        &log,
    );
    // A client that completed a command, then holds its connection idle.
    let mut idle = std::net::TcpStream::connect(&s.addr).unwrap();
    let ping = cipherdoc_wire::frame::encode_msg(1, 0, 0, &bson::doc! {"ping": 1, "$db": "admin"})
        .unwrap();
    std::io::Write::write_all(&mut idle, &ping).unwrap();
    let mut head = [0u8; cipherdoc_wire::frame::HEADER_LEN];
    idle.read_exact(&mut head).unwrap();
    let h = cipherdoc_wire::frame::Header::parse(&head).unwrap();
    let mut rest = vec![0u8; h.length - head.len()];
    idle.read_exact(&mut rest).unwrap();
    let status = s.stop();
    assert!(status.success(), "exit status {status}");
    let mut buf = Vec::new();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = idle.read_to_end(&mut buf);
    assert!(
        buf.is_empty(),
        "the idle connection was closed without a reply"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("signal received"), "{text}");
    assert!(text.contains("stopped"), "{text}");
    assert!(text.contains("server shutting down"), "{text}");
}
