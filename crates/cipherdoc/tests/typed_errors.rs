//! `cipherdoc::Error` variants a caller can match on: an unknown alias, a
//! refused operation, a key that is not in the vault, a pinned map that
//! disagrees, a database without encryption, a lookup given the wrong
//! shape. Each keeps the message a person reads, and none echoes a value.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use cipherdoc::bson::doc;
use cipherdoc::bson::oid::ObjectId;
use cipherdoc::model::Model as _;
use cipherdoc::testing::TestApp;
use cipherdoc::{Error, KeyRef, Model, Refusal};
use cipherdoc_crypto::efc::FieldKey;
use cipherdoc_engine::CreateCollectionOptions;

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Card {
    id: ObjectId,
    holder: String,
    #[encrypted(queries = "equality")]
    number: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "notes")]
struct Note {
    id: ObjectId,
    text: String,
}

#[tokio::test]
async fn an_unknown_alias_is_its_own_variant_listing_the_configured_ones() {
    let app = TestApp::reference()
        .register::<Note>()
        .open()
        .await
        .unwrap();
    let err = app.database("archive").unwrap_err();
    match &err {
        Error::UnknownDatabase { alias, configured } => {
            assert_eq!(alias, "archive");
            assert!(configured.contains(&"default".to_owned()), "{configured:?}");
            assert!(
                configured.contains(&"encrypted".to_owned()),
                "{configured:?}"
            );
        }
        other => panic!("expected UnknownDatabase, got {other:?}"),
    }
    assert!(err.to_string().contains("no database 'archive'"), "{err}");
}

#[tokio::test]
async fn refused_operations_name_model_and_reason_and_keep_the_reference_wording() {
    let app = TestApp::reference()
        .register::<Card>()
        .migrated()
        .await
        .unwrap();
    let cards = app.objects::<Card>();
    let err = cards.update(doc! {"holder": "x"}).await.unwrap_err();
    match &err {
        Error::Refused {
            model,
            refusal: Refusal::MultiDocumentUpdate { alias },
        } => {
            assert_eq!(model, "myapp.Card");
            assert_eq!(alias, "encrypted");
        }
        other => panic!("expected Refused(MultiDocumentUpdate), got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("Multi-document updates are not allowed with Queryable Encryption"),
        "{err}"
    );

    // Ordering by an encrypted field does not compile (typed paths).
    let err = cards.distinct("number").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Refused {
                refusal: Refusal::GroupByEncrypted { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("Cannot group on field 'number'")
    );

    // An encrypted model sent to the plaintext database.
    let err = cards
        .using("default")
        .create(Card {
            id: ObjectId::new(),
            holder: "ada".into(),
            number: "4111-CANARY".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Refused {
                refusal: Refusal::EncryptedFieldOnPlainDatabase { alias, .. },
                ..
            } if alias == "default"
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("CANARY"), "{err}");
}

#[tokio::test]
async fn a_missing_data_key_names_the_field_and_the_fix() {
    let app = TestApp::reference()
        .register::<Card>()
        .migrated()
        .await
        .unwrap();
    let db = app.database("encrypted").unwrap();
    // Forget the collection and its keys, as a restored backup without
    // the key vault would: the collection's encryptedFields name a key id
    // the vault no longer has.
    let efc = db
        .encrypted_fields(&Card::schema().collection)
        .await
        .unwrap()
        .unwrap();
    let FieldKey::Id(key_id) = efc.config().fields[0].key.clone() else {
        panic!("a collection's encryptedFields name key ids");
    };
    let keys = db.encryption().unwrap().keys();
    assert!(keys.delete_data_key(key_id).await.unwrap());
    let err = app
        .objects::<Card>()
        .create(Card {
            id: ObjectId::new(),
            holder: "ada".into(),
            number: "4111-CANARY".into(),
        })
        .await
        .unwrap_err();
    match &err {
        Error::KeyNotFound {
            key: KeyRef::Id(id),
            field,
            ..
        } => {
            assert_eq!(id, &key_id.to_string());
            assert_eq!(field.as_deref(), Some("number"));
        }
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("Have you migrated the database?"), "{msg}");
    assert!(!msg.contains("CANARY"), "{msg}");
}

#[tokio::test]
async fn compacting_a_plain_database_is_not_encrypted() {
    let app = TestApp::reference()
        .register::<Note>()
        .open()
        .await
        .unwrap();
    let err = app
        .database("default")
        .unwrap()
        .compact("notes_note")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotEncrypted { alias, operation: "compact" } if alias == "default"),
        "{err:?}"
    );
}

/// The catalog is read on every operation: a collection dropped and
/// re-created behind the application's back (another process, another
/// deployment) is seen at once, not served from a cache.
#[tokio::test]
async fn a_collection_recreated_elsewhere_is_seen_at_once() {
    let app = TestApp::reference()
        .register::<Card>()
        .migrated()
        .await
        .unwrap();
    let db = app.database("encrypted").unwrap();
    let coll = Card::schema().collection.clone();
    let before = db.encrypted_fields(&coll).await.unwrap().unwrap();
    // Twice: the second answer comes from the parsed-entry cache.
    assert_eq!(before, db.encrypted_fields(&coll).await.unwrap().unwrap());

    // Another process drops it and re-creates it plain.
    db.engine().drop_collection(&coll).await.unwrap();
    db.engine()
        .create_collection(&coll, CreateCollectionOptions::default())
        .await
        .unwrap();
    assert!(db.encrypted_fields(&coll).await.unwrap().is_none());
    let err = app
        .objects::<Card>()
        .create(Card {
            id: ObjectId::new(),
            holder: "ada".into(),
            number: "4111-CANARY".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::EncryptedFieldNotCovered { .. }),
        "{err:?}"
    );

    // ... and encrypted again, with other encryptedFields.
    db.engine().drop_collection(&coll).await.unwrap();
    let mut other = before.document().clone();
    other.insert("escCollection", format!("enxcol_.{coll}.esc"));
    let fields = other.get_array_mut("fields").unwrap();
    let mut f = fields[0].as_document().unwrap().clone();
    f.insert(
        "queries",
        doc! {"queryType": "equality", "contention": 2_i64},
    );
    fields[0] = f.into();
    db.engine()
        .create_collection(
            &coll,
            CreateCollectionOptions {
                encrypted_fields: Some(other.clone()),
            },
        )
        .await
        .unwrap();
    let after = db.encrypted_fields(&coll).await.unwrap().unwrap();
    assert_eq!(after.document(), &other);
    assert_ne!(after, before);
}
