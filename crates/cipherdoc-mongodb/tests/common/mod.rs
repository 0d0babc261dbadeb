//! Shared by the MongoDB engine's tests: `cipherdoc serve` in this process
//! (one per storage backend and test binary, on a thread and runtime of
//! its own, so that it outlives each test's runtime) and engines on fresh
//! databases of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cipherdoc_engine::postgres::testing;
use cipherdoc_mongodb::MongoEngine;
use cipherdoc_wire::{Backend, ServerConfig};

/// What `cipherdoc serve` stores its databases in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// One SQLite file per database, under the test's target directory.
    Sqlite,
    /// One schema per database on `CIPHERDOC_TEST_POSTGRES_URL`.
    Postgres,
}

/// Start a server with `config` on a loopback port; its address.
pub fn start(config: ServerConfig) -> String {
    cipherdoc_wire::testing::serve_in_background(config).unwrap()
}

fn backend(store: Store) -> Option<Backend> {
    match store {
        Store::Sqlite => {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("mongodb-serve-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Some(Backend::Sqlite { dir })
        }
        Store::Postgres => Some(Backend::Postgres {
            url: testing::test_url()?,
            max_connections: 8,
        }),
    }
}

/// The address of this binary's server over `store` (`None`: PostgreSQL
/// is not configured, and the test is skipped).
pub fn server(store: Store) -> Option<String> {
    static SQLITE: OnceLock<String> = OnceLock::new();
    static POSTGRES: OnceLock<Option<String>> = OnceLock::new();
    match store {
        Store::Sqlite => Some(
            SQLITE
                .get_or_init(|| start(ServerConfig::new(backend(Store::Sqlite).unwrap())))
                .clone(),
        ),
        Store::Postgres => POSTGRES
            .get_or_init(|| backend(Store::Postgres).map(|b| start(ServerConfig::new(b))))
            .clone(),
    }
}

/// A server of its own over SQLite (files in a fresh directory), with
/// `tweak` applied to its configuration (reported wire version, topology);
/// its address.
pub fn sqlite_server_with(tweak: impl FnOnce(ServerConfig) -> ServerConfig) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "mongodb-serve-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed) + 1
    ));
    let _ = std::fs::remove_dir_all(&dir);
    start(tweak(ServerConfig::new(Backend::Sqlite { dir })))
}

/// An engine on database `name` of the server at `addr`.
pub async fn engine_at(addr: &str, name: &str) -> MongoEngine {
    MongoEngine::connect(&format!("mongodb://{addr}/"), name)
        .await
        .unwrap()
}

/// A fresh database name, in the form of the PostgreSQL test schemas
/// (`cdtest_<time>_<pid>_<n>`) so that the sweep of stale test schemas
/// removes those a crashed run leaves.
pub fn fresh_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}{now}_{}_{}",
        testing::TEMP_SCHEMA_PREFIX,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An engine on a fresh database of the server over `store`.
pub async fn engine(store: Store) -> Option<MongoEngine> {
    let addr = server(store)?;
    Some(
        MongoEngine::connect(&format!("mongodb://{addr}/"), &fresh_name())
            .await
            .unwrap(),
    )
}
