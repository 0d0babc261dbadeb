//! The reference's "Typical deployment workflow": migrate; showencryptedfieldsmap
//! into a file; restart with that file pinned; reads and writes work; then the
//! catalog's encryptedFields are changed behind cipherdoc's back, and writes
//! are refused with nothing stored in plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "models_common/mod.rs"]
mod common;

use std::path::Path;

use bson::doc;
use cipherdoc::App;
use cipherdoc::migrations::{
    MigrateOptions, encrypted_fields_map, encrypted_fields_map_json, initial_migrations, migrate,
};
use cipherdoc::settings::Settings;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions};
use common::{Patient, patient};

const CANARY_SSN: &str = "987-65-4329";

fn settings(dir: &Path, pinned: bool) -> Settings {
    let pin = if pinned {
        "encrypted_fields_map = \"encrypted_fields_map.json\""
    } else {
        ""
    };
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "sqlite"
path = "encrypted.db"
name = "encrypted_db"

[databases.encrypted.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
kms_providers.local.key_file = "master.key"
{pin}

[[routers]]
app = "myapp"
database = "encrypted"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

async fn open(dir: &Path, pinned: bool) -> App {
    App::open(settings(dir, pinned))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap()
}

/// Steps 1 and 2: migrate, then write `showencryptedfieldsmap` to a file.
async fn deploy(dir: &Path) {
    cipherdoc::client_encryption::generate_local_master_key_file(&dir.join("master.key")).unwrap();
    let app = open(dir, false).await;
    let source = initial_migrations(&app).unwrap();
    migrate(&app, &source, &MigrateOptions::database("encrypted"))
        .await
        .unwrap();
    let map = encrypted_fields_map(&app, "encrypted").await.unwrap();
    std::fs::write(
        dir.join("encrypted_fields_map.json"),
        encrypted_fields_map_json(&map),
    )
    .unwrap();
}

/// Every file of the test folder (databases, WAL and journal files) is
/// searched for the canary's bytes.
fn assert_no_plaintext(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        assert!(
            !bytes
                .windows(CANARY_SSN.len())
                .any(|w| w == CANARY_SSN.as_bytes()),
            "plaintext SSN found in {}",
            e.path().display()
        );
    }
}

/// Step 4: the catalog changes behind cipherdoc's back, through a raw engine
/// of its own on the same file.
async fn tamper(dir: &Path, encrypted_fields: Option<bson::Document>) {
    let raw = cipherdoc_engine::sqlite::SqliteEngine::open(dir.join("encrypted.db")).unwrap();
    raw.drop_collection("myapp_patient").await.unwrap();
    raw.create_collection(
        "myapp_patient",
        CreateCollectionOptions { encrypted_fields },
    )
    .await
    .unwrap();
}

async fn assert_write_refused(dir: &Path) {
    let app = open(dir, true).await;
    let err = app
        .objects::<Patient>()
        .create(patient("Mallory Victim", CANARY_SSN, 4242))
        .await
        .unwrap_err();
    let m = err.to_string();
    assert!(m.contains("encrypted_db.myapp_patient"), "{m}");
    assert!(m.contains("refusing"), "{m}");
    let raw = cipherdoc_engine::sqlite::SqliteEngine::open(dir.join("encrypted.db")).unwrap();
    let stored = raw
        .find(
            "myapp_patient",
            &Filter::And(Vec::new()),
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    drop(raw);
    drop(app);
    assert_no_plaintext(dir);
}

#[tokio::test]
async fn pinned_map_refuses_writes_when_the_catalog_loses_encryption() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path()).await;
    tamper(dir.path(), None).await;
    assert_write_refused(dir.path()).await;
}

#[tokio::test]
async fn pinned_map_refuses_writes_when_the_catalog_names_other_fields() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path()).await;
    // Same key, but only `billing` encrypted: the SSN would go in plaintext.
    let map: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("encrypted_fields_map.json")).unwrap(),
    )
    .unwrap();
    let bson::Bson::Document(map) = bson::Bson::try_from(map).unwrap() else {
        panic!("map")
    };
    let efc = map.get_document("encrypted_db.myapp_patient").unwrap();
    let billing = efc.get_array("fields").unwrap()[1].clone();
    tamper(dir.path(), Some(doc! { "fields": [billing] })).await;
    assert_write_refused(dir.path()).await;
}

#[tokio::test]
async fn pinned_map_is_used_when_the_catalog_agrees_and_check_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path()).await;
    let app = open(dir.path(), true).await;
    let db = app.database("encrypted").unwrap();
    assert!(db.encryption().unwrap().is_pinned());
    let efc = db.encrypted_fields("myapp_patient").await.unwrap().unwrap();
    assert_eq!(efc.config().fields.len(), 2);
    let found = cipherdoc::migrations::check(&app).await.unwrap();
    assert!(found.is_empty(), "{found:?}");
    // A pinned map that no longer matches the models is reported by check.
    tamper(dir.path(), None).await;
    let found = cipherdoc::migrations::check(&app).await.unwrap();
    assert!(
        found
            .iter()
            .any(|c| c.text.contains("exists without encryption")),
        "{found:?}"
    );
}

#[tokio::test]
async fn typical_deployment_workflow_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    deploy(dir.path()).await;
    // Step 3: restart with the map pinned; reads and writes work.
    {
        let app = open(dir.path(), true).await;
        let patients = app.objects::<Patient>();
        patients
            .create(patient("John Doe", "123-45-6789", 1001))
            .await
            .unwrap();
        let p = patients
            .get(Patient::fields().patient_record.ssn.eq("123-45-6789"))
            .await
            .unwrap();
        assert_eq!(p.name, "John Doe");
    }
    // Step 4: the catalog loses its encryption; writes are refused.
    let raw =
        cipherdoc_engine::sqlite::SqliteEngine::open(dir.path().join("encrypted.db")).unwrap();
    raw.drop_collection("myapp_patient").await.unwrap();
    raw.create_collection("myapp_patient", CreateCollectionOptions::default())
        .await
        .unwrap();
    drop(raw);
    assert_write_refused(dir.path()).await;
}
