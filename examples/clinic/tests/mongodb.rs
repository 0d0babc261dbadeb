//! The clinic demo on `engine = "mongodb"` (`cipherdoc-mongodb.toml`),
//! against `cipherdoc serve` started by this test (over SQLite files, and
//! over PostgreSQL when `CIPHERDOC_TEST_POSTGRES_URL` is set): the same
//! application, other settings, the same results, twice in a row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cipherdoc_wire::testing::serve_in_background;
use cipherdoc_wire::{Backend, ServerConfig};

/// `cipherdoc serve` over `backend` on a loopback port; its `mongodb://`
/// URL.
fn serve(backend: Backend) -> String {
    format!(
        "mongodb://{}/",
        serve_in_background(ServerConfig::new(backend)).unwrap()
    )
}

/// Run the demo twice with `cipherdoc-mongodb.toml`, its MongoDB
/// databases renamed to fresh names of the PostgreSQL test schemas' form
/// (`cdtest_…`, which the sweep of stale test schemas removes), so that
/// runs never share a database.
fn run_demo_twice(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!(
        "{}{now}_{}",
        cipherdoc_engine::postgres::testing::TEMP_SCHEMA_PREFIX,
        std::process::id()
    );
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cipherdoc-mongodb.toml"),
    )
    .unwrap()
    .replace("\"encrypted_db", &format!("\"{prefix}_e"))
    .replace("\"clinic_default\"", &format!("\"{prefix}_d\""));
    assert!(
        text.contains(&format!("\"{prefix}_e.__keyVault\"")),
        "{text}"
    );
    let settings = dir.path().join("cipherdoc-mongodb.toml");
    std::fs::write(&settings, text).unwrap();
    for run in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clinic"))
            .arg("demo")
            .env("CIPHERDOC_SETTINGS", &settings)
            .env("CIPHERDOC_MONGODB_URL", url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {stderr}\n{stdout}");
        assert!(
            stdout.contains("found by SSN 123-45-6789: John Doe (1001)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("found by the first letters \"LOV\": Ada Lovelace (1003)"),
            "{stdout}"
        );
        assert!(stdout.contains("\"$encrypted\""), "{stdout}");
        // The copy migration 0004 ran (renameCollection): the visits are
        // found by their encrypted diagnosis, and the map is shown.
        assert!(
            stdout.contains("found the visit by its encrypted diagnosis \"sprained left ankle\""),
            "{stdout}"
        );
        assert!(stdout.contains("encrypted fields map"), "{stdout}");
        assert!(stdout.contains("myapp_visit"), "{stdout}");
        if run == 0 {
            assert!(stdout.contains("applied myapp.0004_copy_visit"), "{stdout}");
        }
        assert!(
            !stdout.contains("4111111111111111\","),
            "the stored document must not show the card number in plaintext"
        );
        assert_eq!(
            stdout.matches("created patient").count(),
            if run == 0 { 3 } else { 0 }
        );
    }
}

#[test]
fn demo_runs_on_mongodb_against_serve_over_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let url = serve(Backend::Sqlite {
        dir: data.path().to_path_buf(),
    });
    run_demo_twice(&url);
}

#[test]
fn demo_runs_on_mongodb_against_serve_over_postgres() {
    let Some(pg) = cipherdoc_engine::postgres::testing::test_url() else {
        return;
    };
    let url = serve(Backend::Postgres {
        url: pg,
        max_connections: 8,
    });
    run_demo_twice(&url);
}
