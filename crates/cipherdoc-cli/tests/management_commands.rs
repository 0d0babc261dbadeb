//! The management commands over a test application: help, the migration
//! workflow, the encrypted fields map, check, key creation and rotation,
//! inspection, compaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bson::{Bson, doc, oid::ObjectId};
use cipherdoc::Model;
use cipherdoc::client_encryption::{Algorithm, EncryptOptions, KeyRef};
use cipherdoc::testing::TestApp;
use cipherdoc_cli::Management;

#[derive(Model, Debug, Clone)]
#[model(app = "myapp")]
pub struct Patient {
    pub id: ObjectId,
    pub name: String,
    #[encrypted(queries = "equality", max_length = 11)]
    pub ssn: String,
}

#[derive(Model, Debug, Clone)]
#[model(app = "clinic")]
pub struct Room {
    pub id: ObjectId,
    pub number: String,
}

const SETTINGS: &str = r#"
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
kms_providers."local:backup".key_file = "backup.key"
default_kms_provider = "local"

[[routers]]
app = "myapp"
database = "encrypted"
"#;

/// The commands over fresh temporary databases; keep the folder alive.
async fn management(migrations: &std::path::Path) -> (Management, tempfile::TempDir) {
    let (app, dbs) = TestApp::new(SETTINGS)
        .register::<Patient>()
        .register::<Room>()
        .open()
        .await
        .unwrap()
        .into_parts();
    let m = Management::new(app)
        .name("manage")
        .migrations_dir(migrations);
    (m, dbs)
}

async fn run(m: &Management, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["manage"];
    all.extend_from_slice(args);
    m.execute(all).await
}

#[tokio::test]
async fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _dbs) = management(dir.path()).await;
    for cmd in [
        "makemigrations",
        "migrate",
        "showmigrations",
        "showencryptedfieldsmap",
        "check",
        "compact",
        "createdatakey",
        "rewrapdatakeys",
        "inspect",
    ] {
        let out = run(&m, &[cmd, "--help"]).await.unwrap();
        assert!(out.contains("Usage: manage"), "{cmd}: {out}");
    }
    let out = run(&m, &["--help"]).await.unwrap();
    assert!(out.contains("showencryptedfieldsmap"), "{out}");
    let err = run(&m, &["nonsense"]).await.unwrap_err();
    assert!(err.to_string().contains("unrecognized subcommand"), "{err}");
}

#[tokio::test]
async fn the_reference_workflow_through_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _dbs) = management(dir.path()).await;

    let out = run(&m, &["makemigrations"]).await.unwrap();
    assert!(out.contains("Migrations for 'myapp'"), "{out}");
    assert!(out.contains("Migrations for 'clinic'"), "{out}");
    assert!(dir.path().join("myapp/0001_initial.toml").exists());
    assert_eq!(
        run(&m, &["makemigrations"]).await.unwrap(),
        "No changes detected"
    );
    run(&m, &["makemigrations", "--check"]).await.unwrap();

    // The key has not been created yet: the reference's error.
    let err = run(&m, &["showencryptedfieldsmap", "--database", "encrypted"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Encryption key 'myapp_patient.ssn' not found. Have you migrated the database 'encrypted'?"),
        "{err}"
    );

    let out = run(&m, &["showmigrations", "--database", "encrypted"])
        .await
        .unwrap();
    assert!(out.contains("myapp\n [ ] 0001_initial"), "{out}");
    let out = run(&m, &["migrate", "--database", "encrypted"])
        .await
        .unwrap();
    assert!(out.contains("Applying myapp.0001_initial... OK"), "{out}");
    let out = run(&m, &["migrate"]).await.unwrap();
    assert!(out.contains("Applying clinic.0001_initial... OK"), "{out}");
    let out = run(&m, &["showmigrations", "--database", "encrypted", "myapp"])
        .await
        .unwrap();
    assert_eq!(out, "myapp\n [X] 0001_initial");

    let out = run(&m, &["showencryptedfieldsmap", "--database", "encrypted"])
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = &json["encrypted_db.myapp_patient"]["fields"][0];
    assert_eq!(f["path"], "ssn");
    assert_eq!(f["bsonType"], "string");
    assert_eq!(f["keyId"]["$binary"]["subType"], "04");
    assert_eq!(f["queries"]["queryType"], "equality");

    // The key check values of the map's keys, to pin beside it.
    let out = run(
        &m,
        &[
            "showencryptedfieldsmap",
            "--database",
            "encrypted",
            "--key-check-values",
        ],
    )
    .await
    .unwrap();
    let kcv = cipherdoc::keys::KeyCheckValues::from_json(&out).unwrap();
    let enc = m.app().database("encrypted").unwrap().encryption().unwrap();
    let key = enc
        .keys()
        .key_by_alt_name("myapp_patient.ssn")
        .await
        .unwrap();
    assert_eq!(kcv.len(), 1);
    assert_eq!(kcv.get(&key.id), Some(&key.key.check_value(&key.id)));

    assert_eq!(
        run(&m, &["check"]).await.unwrap(),
        "System check identified no issues."
    );

    let out = run(&m, &["migrate", "--database", "encrypted", "myapp", "zero"])
        .await
        .unwrap();
    assert!(out.contains("Unapplying myapp.0001_initial... OK"), "{out}");
    assert!(out.contains("are kept in the key vault"), "{out}");
    // The keys survive, so the map can still be shown.
    run(&m, &["showencryptedfieldsmap", "--database", "encrypted"])
        .await
        .unwrap();
    let err = run(&m, &["migrate", "--database", "encrypted", "myapp", "0007"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no migration '0007' in app 'myapp'; run `showmigrations` to list them"
    );
}

#[tokio::test]
async fn createdatakey_rewrapdatakeys_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _dbs) = management(dir.path()).await;
    let out = run(
        &m,
        &[
            "createdatakey",
            "--database",
            "encrypted",
            "--alt-name",
            "notes.body",
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("\"subType\":\"04\""), "{out}");
    run(
        &m,
        &[
            "createdatakey",
            "--database",
            "encrypted",
            "--alt-name",
            "other",
        ],
    )
    .await
    .unwrap();

    let db = m.app().database("encrypted").unwrap();
    let enc = db.encryption().unwrap();
    let dek = enc.keys().key_by_alt_name("notes.body").await.unwrap();
    let before = dek.key.as_bytes().to_vec();

    let out = run(
        &m,
        &[
            "rewrapdatakeys",
            "--database",
            "encrypted",
            "--filter-alt-name",
            "notes.body",
            "--to-provider",
            "local:backup",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        "Re-wrapped 1 data key(s) of 'encrypted' under KMS provider 'local:backup'; the data is unchanged"
    );
    let vault = enc.keys().vault();
    let doc = vault.find_by_alt_name("notes.body").await.unwrap().unwrap();
    let master = doc.get_document("masterKey").unwrap();
    assert_eq!(master.get_str("provider").unwrap(), "local:backup");
    assert!(doc.get_datetime("updateDate").is_ok());
    let Some(Bson::Binary(material)) = doc.get("keyMaterial") else {
        panic!("keyMaterial")
    };
    let mk = cipherdoc_kms::MasterKey::from_document(master).unwrap();
    let after = enc.keys().kms().unwrap(&mk, &material.bytes).await.unwrap();
    assert_eq!(after.to_vec(), before, "same data key, new wrapping");
    let other = vault.find_by_alt_name("other").await.unwrap().unwrap();
    assert_eq!(
        other
            .get_document("masterKey")
            .unwrap()
            .get_str("provider")
            .unwrap(),
        "local",
        "the filter left the other key alone"
    );

    // An explicitly encrypted value, stored raw, shown by subtype and key.
    let blob = enc
        .client_encryption()
        .encrypt(
            Bson::String("private".into()),
            &EncryptOptions::new(KeyRef::AltName("notes.body".into()), Algorithm::Unindexed),
        )
        .await
        .unwrap();
    // Stored through the QE server role, the value must sit at a declared
    // encrypted path of an encrypted collection.
    let body_key = enc.keys().key_by_alt_name("notes.body").await.unwrap().id;
    db.engine()
        .create_collection(
            "notes",
            cipherdoc_engine::CreateCollectionOptions {
                encrypted_fields: Some(doc! { "fields": [
                    { "path": "body", "keyId": body_key.to_binary(), "bsonType": "string" }
                ] }),
            },
        )
        .await
        .unwrap();
    let id = ObjectId::new();
    db.engine()
        .insert_one(
            "notes",
            doc! { "_id": id, "title": "visible", "body": blob },
        )
        .await
        .unwrap();
    let out = run(
        &m,
        &["inspect", "--database", "encrypted", "notes", &id.to_hex()],
    )
    .await
    .unwrap();
    assert!(out.contains("\"title\": \"visible\""), "{out}");
    assert!(out.contains("\"$encrypted\""), "{out}");
    assert!(out.contains("\"subtype\": 16"), "{out}");
    assert!(!out.contains("private"), "{out}");
    let err = run(&m, &["inspect", "--database", "encrypted", "notes", "nope"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no document with _id nope"),
        "{err}"
    );
}

/// The attacker plants a key document whose masterKey names their own
/// host: `rewrapdatakeys` refuses the whole run before contacting anything
/// or re-wrapping any key.
#[tokio::test]
async fn rewrapdatakeys_refuses_a_planted_key_document_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _dbs) = management(dir.path()).await;
    run(
        &m,
        &[
            "createdatakey",
            "--database",
            "encrypted",
            "--alt-name",
            "mine",
        ],
    )
    .await
    .unwrap();
    let db = m.app().database("encrypted").unwrap();
    db.engine()
        .insert_one(
            "__keyVault",
            doc! {
                "_id": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0xEE; 16] },
                "keyAltNames": ["planted"],
                "keyMaterial": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1; 128] },
                "creationDate": bson::DateTime::now(),
                "updateDate": bson::DateTime::now(),
                "status": 0,
                "masterKey": {"provider": "aws", "region": "us-east-1", "key": "k", "endpoint": "127.0.0.1:9"},
            },
        )
        .await
        .unwrap();
    let before = db
        .encryption()
        .unwrap()
        .keys()
        .vault()
        .list()
        .await
        .unwrap();
    let err = run(
        &m,
        &[
            "rewrapdatakeys",
            "--database",
            "encrypted",
            "--to-provider",
            "local:backup",
        ],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee")
            && err.contains("refusing the masterKey"),
        "{err}"
    );
    let after = db
        .encryption()
        .unwrap()
        .keys()
        .vault()
        .list()
        .await
        .unwrap();
    assert_eq!(before, after, "no key was re-wrapped");
}

#[tokio::test]
async fn compact_runs_on_encrypted_collections() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _dbs) = management(dir.path()).await;
    run(&m, &["makemigrations"]).await.unwrap();
    run(&m, &["migrate", "--database", "encrypted"])
        .await
        .unwrap();
    let out = run(&m, &["compact", "--database", "encrypted"])
        .await
        .unwrap();
    assert!(
        out.starts_with("compacted encrypted_db.myapp_patient:"),
        "{out}"
    );
    let err = run(&m, &["compact"]).await.unwrap_err();
    assert!(err.to_string().contains("no encryption settings"), "{err}");
}

#[tokio::test]
async fn check_fails_on_an_encrypted_model_without_an_encrypted_database() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _dbs) = TestApp::new("[databases.default]\nengine = \"sqlite\"\npath = \"d.db\"\n")
        .register::<Patient>()
        .open()
        .await
        .unwrap()
        .into_parts();
    let m = Management::new(app)
        .name("manage")
        .migrations_dir(dir.path());
    let err = run(&m, &["check"]).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("System check identified 1 issue(s) (1 error(s)):"),
        "{msg}"
    );
    assert!(
        msg.contains("ERROR: myapp.Patient has encrypted fields (ssn)"),
        "{msg}"
    );
}
