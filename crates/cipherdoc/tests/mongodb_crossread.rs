//! Cross-reading between the official stack and cipherdoc's models, both
//! through `cipherdoc serve` (over SQLite files, started here):
//!
//! - pymongo with pymongocrypt (libmongocrypt) makes the data keys, creates
//!   the encrypted collection and inserts documents whose equality, range
//!   and unindexed fields libmongocrypt encrypted; cipherdoc's models read
//!   them through `engine = "mongodb"`, decrypted, and find them by the
//!   equality field and by a range;
//! - the reverse: cipherdoc migrates and saves; pymongo with pymongocrypt
//!   reads every document (decrypted by libmongocrypt) and finds them by
//!   the equality field and a range with payloads libmongocrypt makes from
//!   the collection's `encryptedFields`.
//!
//! The Python side is `crates/cipherdoc-mongodb/tests/python/crossread.py`,
//! run in the venv of `crates/cipherdoc-wire/tests/python/setup.sh`
//! (`CIPHERDOC_WIRE_PEERS_DIR`, default `target/wire-peers`); skipped with
//! the reason when it is missing, unless `CIPHERDOC_REQUIRE_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use cipherdoc::App;
use cipherdoc::migrations::{
    AppState, MigrateOptions, Migration, autodetect_with, migrate, model_state,
};
use cipherdoc::model::Model;

const APP: &str = "xr";
const COLL: &str = "xr_patient";
const MASTER: [u8; 96] = common::MASTER_KEY;

#[derive(cipherdoc::Model, Debug, Clone, PartialEq)]
#[model(app = "xr", collection = "xr_patient")]
pub struct Patient {
    pub id: ObjectId,
    pub name: String,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
    pub age: i64,
    #[encrypted]
    pub note: String,
}

fn patients() -> Vec<Patient> {
    let mut out: Vec<Patient> = [
        ("Ann", "111-11-1111", 34, "allergic to penicillin"),
        ("Bob", "222-22-2222", 61, "knee"),
        ("Cat", "111-11-1111", 47, "shares Ann's number by mistake"),
        ("Dan", "444-44-4444", 5, "vaccinated"),
        ("Eve", "555-55-5555", 58, ""),
    ]
    .into_iter()
    .map(|(name, ssn, age, note)| Patient {
        id: ObjectId::new(),
        name: name.into(),
        ssn: ssn.into(),
        age,
        note: note.into(),
    })
    .collect();
    out.sort_by_key(|p| p.id);
    out
}

fn python() -> Option<PathBuf> {
    let dir = std::env::var_os("CIPHERDOC_WIRE_PEERS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wire-peers"),
        PathBuf::from,
    );
    let py = dir.join("venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    let why = format!(
        "no pymongo + pymongocrypt venv at {} (run crates/cipherdoc-wire/tests/python/setup.sh)",
        py.display()
    );
    assert!(
        std::env::var("CIPHERDOC_REQUIRE_PEERS").as_deref() != Ok("1"),
        "CIPHERDOC_REQUIRE_PEERS=1 but {why}"
    );
    println!("skipped: {why}");
    None
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn fresh_name() -> String {
    format!(
        "{}xr_{}",
        cipherdoc_engine::postgres::testing::TEMP_SCHEMA_PREFIX,
        ObjectId::new().to_hex()
    )
}

/// Run `crossread.py <mode>` with `input`; its output, decoded.
async fn crossread(py: &Path, mode: &str, url: &str, db: &str, input: Document) -> Document {
    let input = Bson::Document(input).into_canonical_extjson().to_string();
    let out = tokio::process::Command::new(py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../cipherdoc-mongodb/tests/python/crossread.py"
        ))
        .arg(mode)
        .env("XR_URI", url)
        .env("XR_DB", db)
        .env("XR_COLL", COLL)
        .env("XR_MASTER_KEY", hex(&MASTER))
        .env("XR_INPUT", input)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "crossread.py {mode} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    match Bson::try_from(json).unwrap() {
        Bson::Document(d) => d,
        other => panic!("crossread.py printed {other}"),
    }
}

async fn open(dir: &Path, url: &str, db: &str) -> App {
    App::open(common::mongodb_settings(dir, url, db, APP, ""))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap()
}

fn with_ssn<'a>(all: &'a [Patient], ssn: &str) -> Vec<&'a Patient> {
    all.iter().filter(|p| p.ssn == ssn).collect()
}

fn aged(all: &[Patient], lo: i64, hi: i64) -> Vec<&Patient> {
    all.iter().filter(|p| (lo..hi).contains(&p.age)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_read_what_pymongocrypt_wrote() {
    let Some(py) = python() else { return };
    let data = tempfile::tempdir().unwrap();
    let url = format!("mongodb://{}/", common::serve_sqlite(data.path(), |c| c));
    let db = fresh_name();
    let want = patients();

    // The official stack writes: keys, collection, documents.
    let fields: Vec<Bson> = Patient::schema()
        .encrypted_paths()
        .iter()
        .map(|p| Bson::Document(p.to_document()))
        .collect();
    let docs: Vec<Bson> = want
        .iter()
        .map(|p| Bson::Document(p.to_document().unwrap()))
        .collect();
    let wrote = crossread(
        &py,
        "write",
        &url,
        &db,
        doc! {"fields": fields, "docs": docs},
    )
    .await;
    assert_eq!(wrote.get_i32("inserted"), Ok(5), "{wrote}");

    // cipherdoc's models read them through the MongoDB engine.
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &url, &db).await;
    let raw = common::raw_docs::<Patient>(&app, "encrypted").await;
    assert_eq!(raw.len(), want.len());
    for d in &raw {
        for f in ["ssn", "age", "note"] {
            assert!(
                matches!(d.get(f), Some(Bson::Binary(b)) if b.subtype == bson::spec::BinarySubtype::Encrypted),
                "{f} is stored encrypted by libmongocrypt: {d}"
            );
        }
    }
    let patients = app.objects::<Patient>();
    let mut all = patients.all().await.unwrap();
    all.sort_by_key(|p| p.id);
    assert_eq!(all, want);
    let mut found = patients
        .filter(Patient::fields().ssn.eq("111-11-1111"))
        .all()
        .await
        .unwrap();
    found.sort_by_key(|p| p.id);
    assert_eq!(
        found.iter().collect::<Vec<_>>(),
        with_ssn(&want, "111-11-1111")
    );
    let mut in_range = patients
        .filter(Patient::fields().age.gte(30))
        .filter(Patient::fields().age.lt(60))
        .all()
        .await
        .unwrap();
    in_range.sort_by_key(|p| p.id);
    assert_eq!(in_range.iter().collect::<Vec<_>>(), aged(&want, 30, 60));
    assert_eq!(
        patients
            .filter(Patient::fields().ssn.eq("999-99-9999"))
            .count()
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongocrypt_reads_what_models_wrote() {
    let Some(py) = python() else { return };
    let data = tempfile::tempdir().unwrap();
    let url = format!("mongodb://{}/", common::serve_sqlite(data.path(), |c| c));
    let db = fresh_name();
    let want = patients();

    // cipherdoc migrates and saves.
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path(), &url, &db).await;
    let ops = autodetect_with(
        APP,
        &AppState::default(),
        &[model_state(Patient::schema())],
        &[],
    )
    .unwrap();
    let initial = Migration {
        app: APP.to_owned(),
        name: "0001_initial".to_owned(),
        operations: ops,
    };
    migrate(&app, &vec![initial], &MigrateOptions::database("encrypted"))
        .await
        .unwrap();
    app.objects::<Patient>()
        .bulk_create(want.clone())
        .await
        .unwrap();

    // The official stack reads, finds and decrypts.
    let read = crossread(
        &py,
        "read",
        &url,
        &db,
        doc! {
            "eq": {"path": "ssn", "value": "111-11-1111"},
            "range": {"path": "age", "gte": 30_i64, "lt": 60_i64},
        },
    )
    .await;
    let as_patients = |key: &str| -> Vec<Patient> {
        read.get_array(key)
            .unwrap()
            .iter()
            .map(|d| {
                let d = d.as_document().unwrap();
                Patient {
                    id: d.get_object_id("_id").unwrap(),
                    name: d.get_str("name").unwrap().to_owned(),
                    ssn: d.get_str("ssn").unwrap().to_owned(),
                    age: d.get_i64("age").unwrap(),
                    note: d.get_str("note").unwrap().to_owned(),
                }
            })
            .collect()
    };
    assert_eq!(as_patients("all"), want);
    assert_eq!(
        as_patients("eq").iter().collect::<Vec<_>>(),
        with_ssn(&want, "111-11-1111")
    );
    assert_eq!(
        as_patients("range").iter().collect::<Vec<_>>(),
        aged(&want, 30, 60)
    );
}
