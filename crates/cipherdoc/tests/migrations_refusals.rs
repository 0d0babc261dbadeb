//! Every change Queryable Encryption cannot make to an existing collection is
//! a copy migration (issue 19) or, where a copy cannot do it, refused with
//! why and what to do instead; so is an encrypted model routed
//! to a database without encryption; and settings mistakes found only when
//! the databases open are named by their setting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "models_common/mod.rs"]
mod common;
#[path = "common/mod.rs"]
mod e2e_common;

use e2e_common::write_secret;

use cipherdoc::migrations::{
    AppState, CopyKeys, MigrateOptions, Migration, MigrationError, ModelState, Operation,
    RenamedField, autodetect, migrate, model_state,
};
use cipherdoc::model::Model as _;
use cipherdoc::settings::Settings;
use cipherdoc::testing::TestApp;
use common::{Patient, Room};

fn migrated_patient() -> AppState {
    let mut s = AppState::default();
    let p = model_state(Patient::schema());
    s.models.insert(p.model.clone(), p);
    s
}

fn refused(new: &ModelState) -> String {
    match autodetect("myapp", &migrated_patient(), std::slice::from_ref(new)) {
        Err(MigrationError::Refused(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn assert_why_and_instead(msg: &str) {
    assert!(
        msg.contains("Queryable Encryption fixes a collection's encrypted fields when the collection is created")
            || msg.contains("belong to the collection it was created as"),
        "{msg}"
    );
    assert!(msg.contains("Instead, create a new model"), "{msg}");
    assert!(msg.contains("copy the data"), "{msg}");
}

/// What `makemigrations` refused before issue 19 is now a copy: one
/// `copy_model` with the model's new fields and the change described.
fn copy(new: &ModelState) -> (Vec<String>, Vec<RenamedField>) {
    match autodetect("myapp", &migrated_patient(), std::slice::from_ref(new)) {
        Ok(ops) => match &ops[..] {
            [
                Operation::CopyModel {
                    model,
                    collection,
                    fields,
                    renamed,
                    keys,
                    changes,
                    ..
                },
            ] => {
                assert_eq!(
                    (model.as_str(), collection.as_str()),
                    ("Patient", "myapp_patient")
                );
                assert_eq!(fields, &new.fields);
                assert_eq!(*keys, CopyKeys::KeepUnchanged);
                (changes.clone(), renamed.clone())
            }
            other => panic!("expected one copy, got {other:?}"),
        },
        Err(e) => panic!("expected a copy, got {e}"),
    }
}

#[test]
fn adding_an_encrypted_field_is_a_copy() {
    let mut p = model_state(Patient::schema());
    let mut f = p.field("patient_record.ssn").unwrap().clone();
    f.path = "patient_record.mrn".into();
    f.queries = None;
    p.fields.push(f);
    let (changes, _) = copy(&p);
    assert_eq!(changes, ["encrypted field 'patient_record.mrn' added"]);
}

#[test]
fn removing_an_encrypted_field_is_a_copy() {
    let mut p = model_state(Patient::schema());
    p.fields.retain(|f| f.path != "patient_record.billing");
    let (changes, _) = copy(&p);
    assert_eq!(
        changes,
        ["encrypted field 'patient_record.billing' removed (its values are not copied)"]
    );
}

#[test]
fn altering_an_encrypted_field_is_a_copy_unless_a_copy_cannot_do_it() {
    // Making the billing field queryable (the reference's own example).
    let mut p = model_state(Patient::schema());
    let ssn_queries = p.field("patient_record.ssn").unwrap().queries.clone();
    for f in &mut p.fields {
        if f.path == "patient_record.billing" {
            f.queries.clone_from(&ssn_queries);
        }
    }
    let (changes, _) = copy(&p);
    assert!(
        changes[0].starts_with(
            "encrypted field 'patient_record.billing' changes its queries from none to"
        ),
        "{changes:?}"
    );

    // Encrypting a plaintext field.
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "name" {
            f.encrypted = true;
        }
    }
    let (changes, _) = copy(&p);
    assert_eq!(changes, ["plaintext field 'name' becomes encrypted"]);

    // What a copy cannot do stays refused, saying so. Moving a key to
    // another provider points at rewrapdatakeys.
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "patient_record.ssn" {
            f.kms_provider = Some("aws".into());
        }
    }
    let m = refused(&p);
    assert!(m.contains("rewrapdatakeys"), "{m}");
    assert_why_and_instead(&m);

    // Decrypting a field into plaintext.
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "patient_record.ssn" {
            f.encrypted = false;
            f.queries = None;
        }
    }
    let m = refused(&p);
    assert!(
        m.contains("'patient_record.ssn'") && m.contains("it would stop being encrypted"),
        "{m}"
    );

    // Another BSON type.
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "patient_record.ssn" {
            f.bson_type = "long".into();
        }
    }
    let m = refused(&p);
    assert!(
        m.contains("its type would change from string to long"),
        "{m}"
    );
}

#[test]
fn renaming_an_encrypted_field_is_a_copy() {
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "patient_record.ssn" {
            f.path = "patient_record.social".into();
        }
    }
    let (changes, renamed) = copy(&p);
    assert_eq!(
        changes,
        ["encrypted field 'patient_record.ssn' renamed to 'patient_record.social'"]
    );
    assert_eq!(
        renamed,
        [RenamedField {
            from: "patient_record.ssn".into(),
            to: "patient_record.social".into()
        }]
    );
}

#[test]
fn renaming_an_encrypted_collection_is_refused() {
    let mut p = model_state(Patient::schema());
    p.collection = "patients".into();
    let m = refused(&p);
    assert!(
        m.starts_with(
            "cannot rename encrypted collection 'myapp_patient' to 'patients' (myapp.Patient)"
        ),
        "{m}"
    );
    assert_why_and_instead(&m);
    // Renaming the model (and so its default collection) too.
    let mut p = model_state(Patient::schema());
    p.model = "Person".into();
    p.collection = "myapp_person".into();
    let m = refused(&p);
    assert!(
        m.contains("cannot rename encrypted collection 'myapp_patient' to 'myapp_person'"),
        "{m}"
    );
}

#[test]
fn plaintext_changes_are_allowed() {
    let mut p = model_state(Patient::schema());
    for f in &mut p.fields {
        if f.path == "name" {
            f.max_length = Some(300);
        }
    }
    p.fields.retain(|f| f.path != "patient_id");
    let ops = autodetect("myapp", &migrated_patient(), &[p]).unwrap();
    assert!(matches!(
        &ops[..],
        [Operation::AlterField { field, .. }, Operation::RemoveField { path, .. }]
            if field.path == "name" && path == "patient_id"
    ));
    // A plaintext collection may be renamed.
    let mut room = model_state(Room::schema());
    let mut old = AppState::default();
    old.models.insert(room.model.clone(), room.clone());
    room.collection = "rooms".into();
    let ops = autodetect("clinic", &old, &[room]).unwrap();
    assert!(
        matches!(&ops[..], [Operation::RenameModel { new_collection, .. }] if new_collection == "rooms")
    );
}

#[tokio::test]
async fn a_hand_written_migration_adding_an_encrypted_field_is_refused_at_migrate() {
    let app = TestApp::reference()
        .register::<Patient>()
        .open()
        .await
        .unwrap();
    let initial = cipherdoc::migrations::initial_migrations(&app).unwrap();
    let mut f = model_state(Patient::schema())
        .field("patient_record.ssn")
        .unwrap()
        .clone();
    f.path = "patient_record.mrn".into();
    let second = Migration {
        app: "myapp".into(),
        name: "0002_patient_mrn".into(),
        operations: vec![Operation::AddField {
            model: "Patient".into(),
            collection: "myapp_patient".into(),
            field: f,
        }],
    };
    let source = vec![initial[0].clone(), second];
    let err = migrate(&app, &source, &MigrateOptions::database("encrypted"))
        .await
        .unwrap_err();
    let m = err.to_string();
    assert!(
        m.starts_with(
            "migration myapp.0002_patient_mrn: cannot add encrypted field 'patient_record.mrn'"
        ),
        "{m}"
    );
    // The first migration was applied and recorded; the refused one was not.
    let done = cipherdoc::migrations::applied_migrations(app.database("encrypted").unwrap())
        .await
        .unwrap();
    assert_eq!(done, vec![("myapp".to_owned(), "0001_initial".to_owned())]);
}

const NO_ENCRYPTION: &str = r#"
[databases.default]
engine = "sqlite"
path = "default.db"
"#;

#[tokio::test]
async fn an_encrypted_model_on_a_database_without_encryption_is_refused() {
    let err = TestApp::new(NO_ENCRYPTION)
        .register::<Patient>()
        .migrated()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "myapp.Patient has encrypted fields (patient_record.ssn, patient_record.billing) but is routed to database 'default', which has no encryption settings; the reference refuses it too. Route the model's app to an encrypted database with a router (`[[routers]] app = \"myapp\", database = \"encrypted\"`) or add a [databases.default.encryption] table"
    );
    // `check` says the same before anything runs.
    let app = TestApp::new(NO_ENCRYPTION)
        .register::<Patient>()
        .open()
        .await
        .unwrap();
    let found = cipherdoc::migrations::check(&app).await.unwrap();
    assert!(
        found
            .iter()
            .any(|c| c.severity == cipherdoc::migrations::Severity::Error
                && c.text.contains("the reference refuses it too")),
        "{found:?}"
    );
}

// Settings mistakes that only show when the databases open.

fn settings_in(dir: &std::path::Path, extra: &str) -> Settings {
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
{extra}
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

async fn open_err(settings: Settings) -> String {
    cipherdoc::App::open(settings)
        .await
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn missing_or_short_local_master_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = open_err(settings_in(dir.path(), "")).await;
    assert!(
        m.starts_with(
            "databases.encrypted.encryption.kms_providers.local.key_file: cannot read secret file"
        ),
        "{m}"
    );
    write_secret(&dir.path().join("master.key"), &[7u8; 32]);
    let m = open_err(settings_in(dir.path(), "")).await;
    assert_eq!(
        m,
        "databases.encrypted.encryption.kms_providers.local.key_file: the local master key must be 96 bytes, found 32"
    );
}

#[tokio::test]
async fn unreadable_or_foreign_pinned_map() {
    let dir = tempfile::tempdir().unwrap();
    cipherdoc::client_encryption::generate_local_master_key_file(&dir.path().join("master.key"))
        .unwrap();
    let pin = "encrypted_fields_map = \"map.json\"";
    let m = open_err(settings_in(dir.path(), pin)).await;
    assert!(
        m.starts_with("databases.encrypted.encryption.encrypted_fields_map: cannot read"),
        "{m}"
    );
    std::fs::write(dir.path().join("map.json"), "{not json").unwrap();
    let m = open_err(settings_in(dir.path(), pin)).await;
    assert!(
        m.starts_with("databases.encrypted.encryption.encrypted_fields_map:")
            && m.contains("is not JSON"),
        "{m}"
    );
    std::fs::write(
        dir.path().join("map.json"),
        r#"{"other_db.myapp_patient": {"fields": []}}"#,
    )
    .unwrap();
    let m = open_err(settings_in(dir.path(), pin)).await;
    assert!(
        m.ends_with("namespace \"other_db.myapp_patient\" belongs to database 'other_db', not 'encrypted_db'"),
        "{m}"
    );
    std::fs::write(
        dir.path().join("map.json"),
        r#"{"encrypted_db.myapp_patient": {"fields": [{"path": "a"}]}}"#,
    )
    .unwrap();
    let m = open_err(settings_in(dir.path(), pin)).await;
    assert!(
        m.starts_with("databases.encrypted.encryption.encrypted_fields_map: \"encrypted_db.myapp_patient\": encryptedFields.fields[0]"),
        "{m}"
    );
}

#[tokio::test]
async fn a_database_file_that_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the SQLite file should be.
    std::fs::create_dir(dir.path().join("default.db")).unwrap();
    let text = "[databases.default]\nengine = \"sqlite\"\npath = \"default.db\"\n";
    let m = open_err(Settings::from_toml(text, dir.path()).unwrap()).await;
    assert!(m.starts_with("databases.default.path: cannot open"), "{m}");
}

#[test]
fn database_names_and_cache_ttl() {
    let dir = std::path::Path::new("/app");
    let text = "[databases.default]\nengine = \"sqlite\"\npath = \"d.db\"\nname = \"a.b\"\n";
    let m = Settings::from_toml(text, dir).unwrap_err().to_string();
    assert_eq!(
        m,
        "databases.default.name: a database name may not be empty or contain `.`"
    );
    let text = r#"
[databases.default]
engine = "sqlite"
path = "d.db"
[databases.default.encryption]
key_vault_namespace = "default.__keyVault"
kms_providers.local.key_file = "m.key"
data_key_cache_ttl_secs = -1
"#;
    let m = Settings::from_toml(text, dir).unwrap_err().to_string();
    assert_eq!(
        m,
        "databases.default.encryption.data_key_cache_ttl_secs: must be 0 or more seconds"
    );
}
