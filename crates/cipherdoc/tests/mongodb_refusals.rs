//! What the model layer refuses on `engine = "mongodb"` because of the
//! server's state, against `cipherdoc serve` (over SQLite files): a key
//! vault without its unique index on `keyAltNames` (reported by `check
//! --deploy`, created when cipherdoc opens the database, as on SQLite and
//! PostgreSQL, so that a second key of the same name is refused), and a
//! server whose `encryptedFields` differ from the pinned
//! `encrypted_fields_map` (reads and writes refused with
//! `PinnedMapProblem::Differs`, nothing sent or stored in plaintext).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "models_common/mod.rs"]
mod models;

use std::path::Path;

use bson::{Document, doc};
use cipherdoc::deploy::{
    DeployFinding, DeployOptions, check_deploy, key_vault_has_unique_alt_names,
};
use cipherdoc::key_vault::KeyVaultError;
use cipherdoc::migrations::{
    MigrateOptions, Severity, encrypted_fields_map, encrypted_fields_map_json, initial_migrations,
    migrate,
};
use cipherdoc::settings::Settings;
use cipherdoc::{App, Error, PinnedMapProblem};
use cipherdoc_engine::key_vault::KEY_ALT_NAMES_INDEX;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions};
use cipherdoc_mongodb::MongoEngine;
use cipherdoc_wire::client::RecordingProxy;
use models::{Patient, patient};

/// Settings with database `encrypted` on the server at `url`, database
/// `name`, and app `myapp` routed to it; `pin` adds the pinned map.
fn settings(dir: &Path, url: &str, name: &str, pin: Pin) -> Settings {
    let pin = match pin {
        Pin::Pinned => "encrypted_fields_map = \"encrypted_fields_map.json\"",
        Pin::Unpinned => "",
    };
    common::mongodb_settings(dir, url, name, "myapp", pin)
}

#[derive(Debug, Clone, Copy)]
enum Pin {
    Pinned,
    Unpinned,
}

async fn open(dir: &Path, url: &str, name: &str, pin: Pin) -> App {
    App::open(settings(dir, url, name, pin))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap()
}

async fn raw(url: &str, name: &str) -> MongoEngine {
    MongoEngine::connect(url, name).await.unwrap()
}

fn index_missing(found: &[DeployFinding]) -> Vec<&DeployFinding> {
    found
        .iter()
        .filter(|f| matches!(f, DeployFinding::KeyVaultIndexMissing { .. }))
        .collect()
}

async fn deploy_findings(app: &App) -> Vec<DeployFinding> {
    check_deploy(
        app,
        DeployOptions {
            leakage: None,
            ..DeployOptions::default()
        },
    )
    .await
    .unwrap()
}

/// The key vault's indexes as the server lists them.
async fn vault_indexes(raw: &MongoEngine) -> Vec<Document> {
    let r = raw
        .run_command(doc! {"listIndexes": "__keyVault"})
        .await
        .unwrap();
    r.get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .map(|b| b.as_document().unwrap().clone())
        .collect()
}

/// A second data key named like the first is refused by the server's
/// index; keys without a name are not constrained by it.
async fn second_key_of_a_name_is_refused(app: &App, name: &str) {
    let ce = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .client_encryption();
    ce.create_data_key("local", vec![name.to_owned()])
        .await
        .unwrap();
    let err = ce
        .create_data_key("local", vec![name.to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::KeyVault(KeyVaultError::DuplicateAltName(n)) if n == name),
        "{err:?}"
    );
    ce.create_data_key("local", Vec::new()).await.unwrap();
    ce.create_data_key("local", Vec::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_vault_without_its_unique_index_is_reported_and_created_on_open() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("mongodb://{}/", common::serve_sqlite(data.path(), |c| c));
    let dir = tempfile::tempdir().unwrap();
    common::write_secret(&dir.path().join("master.key"), &common::MASTER_KEY);
    let raw = raw(&url, "kv_db").await;

    // A key vault someone created by hand, without the index.
    raw.create_collection("__keyVault", CreateCollectionOptions::default())
        .await
        .unwrap();
    assert!(
        !key_vault_has_unique_alt_names(&raw, "__keyVault")
            .await
            .unwrap()
    );

    // Opening the database creates it, with the shape drivers document:
    // unique where `keyAltNames` exists.
    let app = open(dir.path(), &url, "kv_db", Pin::Unpinned).await;
    assert!(
        key_vault_has_unique_alt_names(&raw, "__keyVault")
            .await
            .unwrap()
    );
    let indexes = vault_indexes(&raw).await;
    let alt = indexes
        .iter()
        .find(|i| i.get_str("name") == Ok(KEY_ALT_NAMES_INDEX))
        .unwrap_or_else(|| panic!("{indexes:?}"));
    assert_eq!(alt.get_document("key").unwrap(), &doc! {"keyAltNames": 1});
    assert_eq!(alt.get_bool("unique"), Ok(true), "{alt}");
    // `cipherdoc serve` lists it without its partialFilterExpression; that
    // keys without a name are left out is checked by behaviour below.
    assert!(index_missing(&deploy_findings(&app).await).is_empty());
    second_key_of_a_name_is_refused(&app, "ssn-key").await;

    // The vault is restored from a dump without its indexes, behind the
    // open application's back: `check --deploy` reports it.
    let keys = raw
        .find("__keyVault", &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(keys.len(), 3);
    assert!(raw.drop_collection("__keyVault").await.unwrap());
    raw.create_collection("__keyVault", CreateCollectionOptions::default())
        .await
        .unwrap();
    raw.insert_many("__keyVault", keys).await.unwrap();
    assert!(
        !key_vault_has_unique_alt_names(&raw, "__keyVault")
            .await
            .unwrap()
    );
    let found = deploy_findings(&app).await;
    let missing = index_missing(&found);
    assert_eq!(missing.len(), 1, "{found:?}");
    assert!(
        matches!(missing[0], DeployFinding::KeyVaultIndexMissing { alias, namespace }
            if alias == "encrypted" && namespace == "kv_db.__keyVault"),
        "{missing:?}"
    );
    assert_eq!(missing[0].severity(), Severity::Error);
    let text = missing[0].to_string();
    assert!(
        text.contains("kv_db.__keyVault") && text.contains(KEY_ALT_NAMES_INDEX),
        "{text}"
    );
    drop(app);

    // Opened again, cipherdoc recreates it, and the names stay unique.
    let app = open(dir.path(), &url, "kv_db", Pin::Unpinned).await;
    assert!(
        key_vault_has_unique_alt_names(&raw, "__keyVault")
            .await
            .unwrap()
    );
    assert!(index_missing(&deploy_findings(&app).await).is_empty());
    let err = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .client_encryption()
        .create_data_key("local", vec!["ssn-key".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::KeyVault(KeyVaultError::DuplicateAltName(n)) if n == "ssn-key"),
        "{err:?}"
    );
    second_key_of_a_name_is_refused(&app, "billing-key").await;
}

const CANARY_SSN: &str = "987-65-4329";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_encrypted_fields_differ_from_the_pinned_map_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = common::serve_sqlite(data.path(), |c| c);
    let dir = tempfile::tempdir().unwrap();
    common::write_secret(&dir.path().join("master.key"), &common::MASTER_KEY);
    let direct = format!("mongodb://{server}/");

    // Migrate, then pin the map `showencryptedfieldsmap` prints.
    let app = open(dir.path(), &direct, "pin_db", Pin::Unpinned).await;
    let source = initial_migrations(&app).unwrap();
    migrate(&app, &source, &MigrateOptions::database("encrypted"))
        .await
        .unwrap();
    let map = encrypted_fields_map(&app, "encrypted").await.unwrap();
    std::fs::write(
        dir.path().join("encrypted_fields_map.json"),
        encrypted_fields_map_json(&map),
    )
    .unwrap();
    drop(app);

    // The server's collection is recreated with the billing field only
    // (same key): the SSN would go in plaintext.
    let pinned = map.get_document("pin_db.myapp_patient").unwrap();
    let billing = pinned.get_array("fields").unwrap()[1].clone();
    assert_eq!(
        billing.as_document().unwrap().get_str("path"),
        Ok("patient_record.billing")
    );
    let raw = raw(&direct, "pin_db").await;
    assert!(raw.drop_collection("myapp_patient").await.unwrap());
    raw.create_collection(
        "myapp_patient",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {"fields": [billing]}),
        },
    )
    .await
    .unwrap();

    // Through a recording proxy (a direct connection, so that the driver
    // does not discover the server's own address and bypass it).
    let proxy = RecordingProxy::start(server).await.unwrap();
    let url = format!("mongodb://{}/?directConnection=true", proxy.addr);
    let app = open(dir.path(), &url, "pin_db", Pin::Pinned).await;
    let differs = |err: &Error| {
        matches!(err, Error::PinnedMap { alias, namespace, problem }
            if alias == "encrypted"
                && namespace == "pin_db.myapp_patient"
                && **problem == PinnedMapProblem::Differs)
    };
    let objects = app.objects::<Patient>();
    let err = objects
        .create(patient("Mallory Victim", CANARY_SSN, 4242))
        .await
        .unwrap_err();
    assert!(differs(&err), "{err:?}");
    assert!(!err.to_string().contains(CANARY_SSN), "{err}");
    let f = Patient::fields();
    let err = objects
        .filter(f.patient_record.ssn.eq(CANARY_SSN))
        .count()
        .await
        .unwrap_err();
    assert!(differs(&err), "{err:?}");
    drop(objects);
    drop(app);

    // Nothing was stored, nothing went over the wire or to disk in
    // plaintext.
    assert_eq!(raw.count("myapp_patient", &Filter::all()).await.unwrap(), 0);
    let sent = proxy.sent.lock().unwrap().clone();
    assert!(!sent.is_empty());
    assert!(!common::contains(&sent, CANARY_SSN.as_bytes()));
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !common::contains(&bytes, CANARY_SSN.as_bytes()),
            "plaintext SSN in {}",
            path.display()
        );
    }
}
