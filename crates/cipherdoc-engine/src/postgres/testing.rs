//! Test support for the PostgreSQL engine, public so that every crate's
//! tests (the QE server role, the `cipherdoc` crate) can use the same
//! helpers:
//!
//! - [`test_url`]: the server to test against, from
//!   `CIPHERDOC_TEST_POSTGRES_URL`; when unset it prints
//!   `skipped: CIPHERDOC_TEST_POSTGRES_URL is not set` and the test returns,
//!   unless `CIPHERDOC_REQUIRE_POSTGRES=1` (as `.ci/run` sets): then the test
//!   fails, so that a CI run without its server cannot pass silently;
//! - [`PgEngine::temporary`]: an engine on a fresh, uniquely named schema
//!   that is dropped when the last clone of the engine goes away;
//! - [`connect`]: a plain tokio-postgres client for the test's own SQL,
//!   connected the way the engine would (TLS as the URL says);
//! - [`server_files`] and [`scan_for_canaries`]: the raw bytes PostgreSQL
//!   keeps on disk (data directory after a `CHECKPOINT`, WAL, server log),
//!   searched for canary strings.
//!
//! ```no_run
//! # async fn t() {
//! use cipherdoc_engine::postgres::{PgEngine, testing};
//! let Some(url) = testing::test_url() else { return };
//! let engine = PgEngine::temporary(&url).await.unwrap();
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::tls::Dialer;
use super::{Lifetime, PgEngine, PgOptions};
use crate::Result;

/// The environment variable naming the test server.
pub const TEST_URL_VAR: &str = "CIPHERDOC_TEST_POSTGRES_URL";

/// Prefix of the schemas [`PgEngine::temporary`] creates.
pub const TEMP_SCHEMA_PREFIX: &str = "cdtest_";

/// Temporary schemas older than this are left over by crashed test runs and
/// are dropped by the next [`PgEngine::temporary`].
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The environment variable that turns a skipped PostgreSQL test into a
/// failed one (`.ci/run` sets it to `1`).
pub const REQUIRE_VAR: &str = "CIPHERDOC_REQUIRE_POSTGRES";

/// The test server's URL, or `None` after printing why the test is skipped.
///
/// # Panics
///
/// When [`REQUIRE_VAR`] is `1` and there is no URL: a test run that asked
/// for PostgreSQL must not pass without it.
pub fn test_url() -> Option<String> {
    match std::env::var(TEST_URL_VAR) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            skip(&format!("{TEST_URL_VAR} is not set"));
            None
        }
    }
}

/// Prints why a PostgreSQL test is skipped, or fails it when
/// [`REQUIRE_VAR`] says the run must have PostgreSQL.
///
/// # Panics
///
/// When [`REQUIRE_VAR`] is `1`.
pub fn skip(why: &str) {
    assert!(
        std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
        "{REQUIRE_VAR}=1 but this PostgreSQL test cannot run: {why}"
    );
    println!("skipped: {why}");
}

/// The environment variable naming the CA file of the test server's
/// certificate (`.ci/pg-tls` makes both), for the TLS tests.
pub const TEST_CA_VAR: &str = "CIPHERDOC_TEST_POSTGRES_CA";

/// The test server as the TLS tests see it: its TCP address, role and
/// database from [`TEST_URL_VAR`] (TLS parameters left out), and the CA of
/// its certificate from [`TEST_CA_VAR`].
pub struct TlsTestServer {
    host: String,
    port: u16,
    user: String,
    password: Option<zeroize::Zeroizing<String>>,
    dbname: String,
    ca: PathBuf,
}

impl std::fmt::Debug for TlsTestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTestServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// A `key=value` connection string value, quoted.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl TlsTestServer {
    /// A `key=value` connection string to the server, with `params` added
    /// (e.g. `sslmode=disable`).
    pub fn url(&self, params: &str) -> String {
        self.url_at(&self.host, params)
    }

    /// [`TlsTestServer::url`] with another host name (e.g. one the
    /// certificate does not name, with `hostaddr` giving the address).
    pub fn url_at(&self, host: &str, params: &str) -> String {
        let mut s = format!(
            "host={} port={} user={} dbname={}",
            quote(host),
            self.port,
            quote(&self.user),
            quote(&self.dbname)
        );
        if let Some(p) = &self.password {
            s.push_str(" password=");
            s.push_str(&quote(p));
        }
        format!("{s} {params}")
    }

    /// The host of the test URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The CA file that signed the server's certificate.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// `sslrootcert='<the CA>'`, to add to [`TlsTestServer::url`].
    pub fn sslrootcert(&self) -> String {
        format!("sslrootcert={}", quote(&self.ca.to_string_lossy()))
    }
}

/// The TLS test server, or `None` after printing why the test is skipped
/// (no test URL, no CA, or a test URL that is not a TCP address).
pub fn tls_test_server() -> Option<TlsTestServer> {
    let url = test_url()?;
    let Some(ca) = std::env::var_os(TEST_CA_VAR).filter(|v| !v.is_empty()) else {
        skip(&format!(
            "{TEST_CA_VAR} is not set (the CA of the test server's certificate; .ci/pg-tls makes one)"
        ));
        return None;
    };
    let cfg = match Dialer::new(&url, None) {
        Ok(d) => d.config().clone(),
        Err(e) => {
            skip(&format!("{TEST_URL_VAR} is refused: {e}"));
            return None;
        }
    };
    let Some(tokio_postgres::config::Host::Tcp(host)) = cfg.get_hosts().first() else {
        skip(&format!("{TEST_URL_VAR} names no TCP host"));
        return None;
    };
    Some(TlsTestServer {
        host: host.clone(),
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        user: cfg.get_user().unwrap_or("postgres").to_owned(),
        password: cfg
            .get_password()
            .map(|p| zeroize::Zeroizing::new(String::from_utf8_lossy(p).into_owned())),
        dbname: cfg.get_dbname().unwrap_or("postgres").to_owned(),
        ca: PathBuf::from(ca),
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PgEngine {
    /// An engine on a new schema `cdtest_<time>_<pid>_<n>` of the database
    /// at `url`, dropped (`DROP SCHEMA … CASCADE`) when the last clone of
    /// the engine is dropped. Also drops such schemas older than an hour,
    /// left over by test runs that crashed. For tests.
    pub async fn temporary(url: &str) -> Result<Self> {
        Self::temporary_with(url, PgOptions::default()).await
    }

    /// [`PgEngine::temporary`] with pool settings.
    pub async fn temporary_with(url: &str, options: PgOptions) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{TEMP_SCHEMA_PREFIX}{}_{}_{n}",
            now_secs(),
            std::process::id()
        );
        let dialer = Dialer::new(url, options.tls_ca_file.as_deref())?;
        drop_stale_schemas(&dialer).await;
        Self::open(dialer, &name, &options, Lifetime::DroppedWithEngine).await
    }
}

/// A tokio-postgres client of the server at `url`, connected as
/// [`PgEngine::connect`] would (TLS as the URL says), its connection
/// driven by a spawned task. For the tests' own SQL.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    Dialer::new(url, None)?.connect().await
}

/// Best effort: failures only mean some stale schema stays around.
async fn drop_stale_schemas(dialer: &Dialer) {
    let Ok(client) = dialer.connect().await else {
        return;
    };
    let Ok(rows) = client
        .query(
            "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE starts_with(nspname::text, $1)",
            &[&TEMP_SCHEMA_PREFIX],
        )
        .await
    else {
        return;
    };
    let now = now_secs();
    for r in rows {
        let Ok(name) = r.try_get::<_, String>(0) else {
            continue;
        };
        let created = name
            .strip_prefix(TEMP_SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_secs()) {
            let _ = client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    super::ctx::q(&name)
                ))
                .await;
        }
    }
}

/// Drop a temporary schema from a thread of its own (called from `Drop`,
/// which may run inside or outside a runtime).
pub(super) fn drop_schema_blocking(dialer: Dialer, schema: String) {
    let worker = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::warn!(error = %e, "no runtime to drop the temporary schema");
                return;
            }
        };
        let r: Result<()> = rt.block_on(async {
            let client = dialer.connect().await?;
            client
                .batch_execute(&format!(
                    "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS {} CASCADE",
                    super::ctx::q(&schema)
                ))
                .await?;
            Ok(())
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, schema, "dropping the temporary schema failed; the next test run drops it");
        }
    });
    let _ = worker.join();
}

/// The files PostgreSQL keeps the given test server's data in, after a
/// `CHECKPOINT` has written every dirty page: all files under the data
/// directory (tables, indexes, WAL, …) and the server log files. `None`
/// (with the reason printed) when they cannot be read from here, e.g. the
/// server runs on another machine or as a user whose files we cannot read.
///
/// Log files: those of the logging collector (`pg_current_logfile()` and
/// the rest of its `log_directory`), else `$CIPHERDOC_TEST_POSTGRES_LOG`,
/// else `/var/log/postgresql/*` (Debian's `pg_ctlcluster` log).
pub async fn server_files(url: &str) -> Result<Option<Vec<PathBuf>>> {
    let client = connect(url).await?;
    client.batch_execute("CHECKPOINT").await?;
    let data_dir: String = client
        .query_one("SHOW data_directory", &[])
        .await?
        .try_get(0)?;
    let data_dir = PathBuf::from(data_dir);
    if let Err(e) = std::fs::read_dir(&data_dir) {
        println!(
            "skipped: the server's data directory {} is not readable here ({e})",
            data_dir.display()
        );
        return Ok(None);
    }
    let mut files = Vec::new();
    walk(&data_dir, &mut files);
    let mut log_dirs = Vec::new();
    let current: Option<String> = client
        .query_one("SELECT pg_current_logfile()", &[])
        .await?
        .try_get(0)?;
    if let Some(f) = current {
        let p = data_dir.join(f);
        if let Some(d) = p.parent() {
            log_dirs.push(d.to_path_buf());
        }
        files.push(p);
    }
    if let Ok(p) = std::env::var("CIPHERDOC_TEST_POSTGRES_LOG") {
        files.push(PathBuf::from(p));
    } else {
        log_dirs.push(PathBuf::from("/var/log/postgresql"));
    }
    for d in log_dirs {
        walk(&d, &mut files);
    }
    files.sort();
    files.dedup();
    Ok(Some(files))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// Where one canary was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryHit {
    /// Index of the canary in the list given to [`scan_for_canaries`].
    pub canary: usize,
    /// The file it was found in.
    pub file: PathBuf,
    /// `"raw"` (the bytes themselves) or `"hex"` (lower-case hex, as
    /// PostgreSQL prints `bytea` in logs and error details).
    pub form: &'static str,
}

/// What [`scan_for_canaries`] read and found.
#[derive(Debug, Clone, Default)]
pub struct CanaryScan {
    /// Files read (files that vanished or could not be read are skipped).
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Every (canary, file, form) found.
    pub hits: Vec<CanaryHit>,
}

impl CanaryScan {
    /// Whether canary `i` was found anywhere.
    pub fn found(&self, i: usize) -> bool {
        self.hits.iter().any(|h| h.canary == i)
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    out
}

/// Search `files` for each canary, as raw bytes and as lower-case hex.
/// Canaries should be at least 8 bytes and random enough not to occur by
/// chance.
pub fn scan_for_canaries(files: &[PathBuf], canaries: &[&[u8]]) -> CanaryScan {
    let finders: Vec<[(memchr::memmem::Finder<'static>, &'static str); 2]> = canaries
        .iter()
        .map(|c| {
            [
                (memchr::memmem::Finder::new(c).into_owned(), "raw"),
                (memchr::memmem::Finder::new(&hex(c)).into_owned(), "hex"),
            ]
        })
        .collect();
    let mut scan = CanaryScan::default();
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        scan.files += 1;
        scan.bytes += bytes.len() as u64;
        for (i, pair) in finders.iter().enumerate() {
            for (finder, form) in pair {
                if finder.find(&bytes).is_some() {
                    scan.hits.push(CanaryHit {
                        canary: i,
                        file: f.clone(),
                        form,
                    });
                }
            }
        }
    }
    scan
}
