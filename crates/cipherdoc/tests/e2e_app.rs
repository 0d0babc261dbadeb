//! The reference's example end to end on the embedded engine: settings with
//! two connections, routing, encrypted saves and queries, and refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod models_common;

use std::path::Path;

use bson::spec::BinarySubtype;
use bson::{Bson, Document, doc, oid::ObjectId};
use cipherdoc::settings::Settings;
use cipherdoc::{App, Error};
use models_common::{Billing, Patient, PatientRecord};
use rust_decimal::Decimal;

fn patient(n: i64, ssn: &str) -> Patient {
    Patient {
        id: ObjectId::new(),
        name: format!("Patient {n}"),
        patient_id: n,
        patient_record: PatientRecord {
            ssn: ssn.into(),
            billing: Billing {
                cc_type: "Visa".into(),
                cc_number: format!("4111-{n:04}"),
            },
            bill_amount: Decimal::new(25075 + n, 2),
        },
    }
}

fn settings(dir: &Path, routed_to: &str) -> Settings {
    common::settings(dir, "myapp", routed_to)
}

async fn create_encrypted_collection(app: &App) {
    common::create_encrypted_collection::<Patient>(app).await;
}

async fn raw_docs(app: &App, alias: &str) -> Vec<Document> {
    common::raw_docs::<Patient>(app, alias).await
}

#[tokio::test]
async fn save_and_query_the_reference_example() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(settings(dir.path(), "encrypted"))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap();
    create_encrypted_collection(&app).await;
    let patients = app.objects::<Patient>();
    let john = patient(1001, "123-45-6789");
    patients.create(john.clone()).await.unwrap();
    for n in 0..6 {
        patients
            .create(patient(
                n,
                if n % 2 == 0 {
                    "000-00-0000"
                } else {
                    "111-11-1111"
                },
            ))
            .await
            .unwrap();
    }

    let ssn = &Patient::fields().patient_record.ssn;
    let found = patients.get(ssn.eq("123-45-6789")).await.unwrap();
    assert_eq!(found, john);
    assert_eq!(
        patients
            .filter(ssn.eq("000-00-0000"))
            .count()
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        patients
            .filter(ssn.is_in(["000-00-0000", "123-45-6789"]))
            .count()
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        patients
            .filter(ssn.ne("000-00-0000"))
            .count()
            .await
            .unwrap(),
        4
    );
    let mut ordered = patients
        .filter(ssn.eq("111-11-1111"))
        .order_by(Patient::fields().patient_id.desc())
        .all()
        .await
        .unwrap();
    assert_eq!(
        ordered.iter().map(|p| p.patient_id).collect::<Vec<_>>(),
        [5, 3, 1]
    );
    assert!(matches!(
        patients.get(ssn.eq("999-99-9999")).await,
        Err(Error::DoesNotExist { .. })
    ));

    // save(): a single-document update by id; the old value is no longer found.
    let mut one = ordered.remove(0);
    one.patient_record.ssn = "555-55-5555".into();
    patients.save(&one).await.unwrap();
    assert_eq!(
        patients
            .get(ssn.eq("555-55-5555"))
            .await
            .unwrap()
            .patient_id,
        5
    );
    assert_eq!(
        patients
            .filter(ssn.eq("111-11-1111"))
            .count()
            .await
            .unwrap(),
        2
    );

    // The stored document: ciphertext for ssn and the whole billing, plaintext elsewhere.
    let raw = raw_docs(&app, "encrypted").await;
    let stored = raw
        .iter()
        .find(|d| d.get_i64("patient_id").unwrap() == 1001)
        .unwrap();
    let record = stored.get_document("patient_record").unwrap();
    for encrypted in ["ssn", "billing"] {
        match record.get(encrypted) {
            Some(Bson::Binary(b)) => assert_eq!(b.subtype, BinarySubtype::Encrypted, "{encrypted}"),
            other => panic!("{encrypted} should be ciphertext, found {other:?}"),
        }
    }
    assert_eq!(stored.get_str("name").unwrap(), "Patient 1001");
    assert!(matches!(
        record.get("bill_amount"),
        Some(Bson::Decimal128(_))
    ));
    assert!(
        stored
            .get_array("__safeContent__")
            .is_ok_and(|a| a.len() == 1)
    );
}

#[tokio::test]
async fn refusals_name_the_model_and_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Routed to a database without encryption settings.
    let app = App::open(settings(dir.path(), "default"))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap();
    let patients = app.objects::<Patient>();
    let err = patients
        .create(patient(1, "123-45-6789"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cannot save encrypted field 'ssn' of myapp.Patient in non-encrypted database 'default'; route the model to the encrypted database"
    );
    assert!(raw_docs(&app, "default").await.is_empty());
    let ssn = &Patient::fields().patient_record.ssn;
    let err = patients
        .filter(ssn.eq("x"))
        .count()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot query encrypted field 'patient_record.ssn' of myapp.Patient in non-encrypted database 'default'"), "{err}");

    // Routed to the encrypted database but not migrated: refused, nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(settings(dir.path(), "encrypted"))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap();
    let patients = app.objects::<Patient>();
    let err = patients
        .create(patient(1, "123-45-6789"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the collection is not an encrypted collection")
            && err.contains("`migrate --database encrypted`"),
        "{err}"
    );
    assert!(raw_docs(&app, "encrypted").await.is_empty());

    create_encrypted_collection(&app).await;
    let err = patients
        .update(doc! { "name": "x" })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "Multi-document updates are not allowed with Queryable Encryption (myapp.Patient"
        ),
        "{err}"
    );
    let err = patients
        .distinct("patient_record.billing.cc_type")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Cannot group on field 'patient_record.billing.cc_type' of myapp.Patient: the field 'patient_record.billing' is encrypted"), "{err}");
    let err = patients
        .distinct("patient_record.ssn")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("'patient_record.ssn' is encrypted"), "{err}");
    assert!(raw_docs(&app, "encrypted").await.is_empty());
}
