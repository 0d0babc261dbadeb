//! Migrations end to end on temporary SQLite databases: files, keys,
//! encrypted collections, routers, records, reversal, the encrypted fields map.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "models_common/mod.rs"]
mod common;

use bson::spec::BinarySubtype;
use bson::{Bson, oid::ObjectId};
use cipherdoc::key_vault::{alt_names_of, key_id_of};
use cipherdoc::migrations::{
    MigrateOptions, Migration, MigrationDir, MigrationSource, Operation, WriteFiles,
    applied_migrations, encrypted_fields_map, encrypted_fields_map_json, makemigrations, migrate,
    show_migrations,
};
use cipherdoc::testing::TestApp;
use common::{Patient, Room};

const SSN_ALT: &str = "myapp_patient.patient_record.ssn";
const BILLING_ALT: &str = "myapp_patient.patient_record.billing";

async fn key_alt_names(app: &cipherdoc::App) -> Vec<(bson::Uuid, Vec<String>)> {
    let db = app.database("encrypted").unwrap();
    let keys = db
        .encryption()
        .unwrap()
        .keys()
        .vault()
        .list()
        .await
        .unwrap();
    keys.iter()
        .map(|k| (key_id_of(k).unwrap(), alt_names_of(k).unwrap()))
        .collect()
}

#[tokio::test]
async fn migrate_creates_keys_and_the_encrypted_collection_where_routed() {
    let app = TestApp::reference()
        .register::<Patient>()
        .register::<Room>()
        .migrated()
        .await
        .unwrap();

    // One data key per encrypted field, named "<collection>.<path>".
    let keys = key_alt_names(&app).await;
    let names: Vec<&str> = keys.iter().map(|(_, n)| n[0].as_str()).collect();
    assert_eq!(names, [SSN_ALT, BILLING_ALT]);

    // The encrypted collection, fields in definition order with their keys.
    let enc = app.database("encrypted").unwrap();
    let info = enc
        .engine()
        .describe_collection("myapp_patient")
        .await
        .unwrap()
        .expect("collection created");
    let efc = info.options.encrypted_fields.expect("encrypted");
    let fields = efc.get_array("fields").unwrap();
    assert_eq!(fields.len(), 2);
    let f0 = fields[0].as_document().unwrap();
    assert_eq!(f0.get_str("path").unwrap(), "patient_record.ssn");
    assert_eq!(f0.get_str("bsonType").unwrap(), "string");
    assert_eq!(
        f0.get_document("queries")
            .unwrap()
            .get_str("queryType")
            .unwrap(),
        "equality"
    );
    let Some(Bson::Binary(k0)) = f0.get("keyId") else {
        panic!("keyId")
    };
    assert_eq!(k0.subtype, BinarySubtype::Uuid);
    assert_eq!(k0.bytes, keys[0].0.bytes().to_vec());
    let f1 = fields[1].as_document().unwrap();
    assert_eq!(f1.get_str("path").unwrap(), "patient_record.billing");
    assert_eq!(f1.get_str("bsonType").unwrap(), "object");
    assert!(f1.get("queries").is_none());

    // The routers keep myapp out of default and other apps out of encrypted.
    let default = app.database("default").unwrap();
    assert!(
        default
            .engine()
            .describe_collection("myapp_patient")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        enc.engine()
            .describe_collection("clinic_room")
            .await
            .unwrap()
            .is_none()
    );
    let room = default
        .engine()
        .describe_collection("clinic_room")
        .await
        .unwrap()
        .expect("room created in default");
    assert!(room.options.encrypted_fields.is_none());
    assert!(room.indexes.iter().any(|i| i.path == "number" && i.unique));

    // Each database records what it applied.
    let recorded = applied_migrations(enc).await.unwrap();
    assert!(recorded.contains(&("myapp".into(), "0001_initial".into())));
    assert!(recorded.contains(&("clinic".into(), "0001_initial".into())));
}

#[tokio::test]
async fn plaintext_models_save_and_query_end_to_end() {
    let app = TestApp::reference()
        .register::<Room>()
        .migrated()
        .await
        .unwrap();
    let rooms = app.objects::<Room>();
    rooms
        .create(Room {
            id: ObjectId::new(),
            number: "101".into(),
            floor: 1,
        })
        .await
        .unwrap();
    rooms
        .create(Room {
            id: ObjectId::new(),
            number: "201".into(),
            floor: 2,
        })
        .await
        .unwrap();
    let r = rooms.get(Room::fields().number.eq("201")).await.unwrap();
    assert_eq!(r.floor, 2);
    // The unique index made by the migration holds.
    let dup = rooms
        .create(Room {
            id: ObjectId::new(),
            number: "101".into(),
            floor: 9,
        })
        .await;
    assert!(dup.is_err(), "duplicate room number accepted");
}

#[tokio::test]
async fn the_encrypted_fields_map_is_pasteable_canonical_extended_json() {
    let app = TestApp::reference()
        .register::<Patient>()
        .migrated()
        .await
        .unwrap();
    let map = encrypted_fields_map(&app, "encrypted").await.unwrap();
    let keys: Vec<&String> = map.keys().collect();
    assert_eq!(keys, ["encrypted_db.myapp_patient"]);
    let json = encrypted_fields_map_json(&map);
    assert!(json.contains("\"$binary\""), "{json}");
    assert!(json.contains("\"subType\": \"04\""), "{json}");
    assert!(
        json.find("patient_record.ssn").unwrap() < json.find("patient_record.billing").unwrap()
    );
    // It reads back as the pinned map of this database.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("map.json");
    std::fs::write(&file, &json).unwrap();
    let pinned = cipherdoc::app::read_pinned_map(&file, "encrypted_db", "encrypted").unwrap();
    let want = map.get_document("encrypted_db.myapp_patient").unwrap();
    assert_eq!(pinned.get("myapp_patient"), Some(want));
    // Matches the catalog the migration created.
    let cat = app
        .database("encrypted")
        .unwrap()
        .engine()
        .describe_collection("myapp_patient")
        .await
        .unwrap()
        .unwrap()
        .options
        .encrypted_fields
        .unwrap();
    assert_eq!(
        cat.get_array("fields").unwrap(),
        want.get_array("fields").unwrap()
    );
}

#[tokio::test]
async fn showencryptedfieldsmap_never_creates_keys() {
    let app = TestApp::reference()
        .register::<Patient>()
        .open()
        .await
        .unwrap();
    let err = encrypted_fields_map(&app, "encrypted").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Encryption key 'myapp_patient.patient_record.ssn' not found. Have you migrated the database 'encrypted'? Run `migrate --database encrypted`"
    );
    assert!(key_alt_names(&app).await.is_empty());
    let err = encrypted_fields_map(&app, "default").await.unwrap_err();
    assert!(err.to_string().contains("no encryption settings"), "{err}");
}

#[tokio::test]
async fn migrate_zero_drops_the_collection_keeps_the_keys_and_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = MigrationDir::new(dir.path().join("migrations"));
    let app = TestApp::reference()
        .register::<Patient>()
        .with_migrations(files.clone())
        .open()
        .await
        .unwrap();
    let written = makemigrations(&app, &files, &[], WriteFiles::Yes).unwrap();
    assert_eq!(written.len(), 1);
    let path = written[0].1.clone().unwrap();
    assert!(path.ends_with("migrations/myapp/0001_initial.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("op = \"create_model\""), "{text}");
    assert!(text.contains("collection = \"myapp_patient\""), "{text}");
    // Nothing changed: nothing new.
    assert!(
        makemigrations(&app, &files, &[], WriteFiles::Yes)
            .unwrap()
            .is_empty()
    );
    // The file reads back as what was written.
    assert_eq!(
        files.migrations("myapp").unwrap(),
        vec![written[0].0.clone()]
    );

    let opts = MigrateOptions::database("encrypted");
    let r = migrate(&app, &files, &opts).await.unwrap();
    assert_eq!(r.applied, ["myapp.0001_initial"]);
    let before = key_alt_names(&app).await;
    // Applying again does nothing.
    let r = migrate(&app, &files, &opts).await.unwrap();
    assert!(r.applied.is_empty());

    let zero = MigrateOptions {
        app: Some("myapp".into()),
        target: Some("zero".into()),
        ..MigrateOptions::database("encrypted")
    };
    let r = migrate(&app, &files, &zero).await.unwrap();
    assert_eq!(r.unapplied, ["myapp.0001_initial"]);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("data keys") && n.contains(SSN_ALT)),
        "{:?}",
        r.notes
    );
    let enc = app.database("encrypted").unwrap();
    assert!(
        enc.engine()
            .describe_collection("myapp_patient")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(key_alt_names(&app).await, before, "keys are kept");
    let shown = show_migrations(&app, &files, "encrypted").await.unwrap();
    assert_eq!(
        shown,
        vec![("myapp".to_owned(), vec![("0001_initial".to_owned(), false)])]
    );

    // Re-created with the same keys, not an error.
    migrate(&app, &files, &opts).await.unwrap();
    assert_eq!(key_alt_names(&app).await, before);
    let efc = enc
        .engine()
        .describe_collection("myapp_patient")
        .await
        .unwrap()
        .unwrap()
        .options
        .encrypted_fields
        .unwrap();
    let Some(Bson::Binary(k)) = efc.get_array("fields").unwrap()[0]
        .as_document()
        .unwrap()
        .get("keyId")
        .cloned()
    else {
        panic!("keyId")
    };
    assert_eq!(k.bytes, before[0].0.bytes().to_vec());
}

#[tokio::test]
async fn plaintext_field_changes_make_a_second_migration() {
    let dir = tempfile::tempdir().unwrap();
    let files = MigrationDir::new(dir.path());
    let app = TestApp::reference()
        .register::<Room>()
        .open()
        .await
        .unwrap();
    makemigrations(&app, &files, &[], WriteFiles::Yes).unwrap();
    // Simulate an older model: drop `floor` from the recorded state.
    let mut first = files.migrations("clinic").unwrap().remove(0);
    if let Operation::CreateModel { fields, .. } = &mut first.operations[0] {
        fields.retain(|f| f.path != "floor");
    }
    let p = dir.path().join("clinic/0001_initial.toml");
    std::fs::write(&p, first.to_toml().unwrap()).unwrap();
    let made = makemigrations(&app, &files, &["clinic".into()], WriteFiles::Yes).unwrap();
    assert_eq!(made.len(), 1);
    let m: &Migration = &made[0].0;
    assert_eq!(m.name, "0002_room_floor");
    assert!(
        matches!(&m.operations[..], [Operation::AddField { field, .. }] if field.path == "floor")
    );
    // An unknown app is an error naming the registered ones.
    let err = makemigrations(&app, &files, &["nope".into()], WriteFiles::No).unwrap_err();
    assert!(err.to_string().contains("registered apps: clinic"), "{err}");
}
