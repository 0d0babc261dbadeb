//! `QuerySet::using(alias)`: a query set runs on the database it names
//! instead of the routed one, and the encryption rules still hold there.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::testing::TestApp;
use cipherdoc::{Error, Filter, FindOptions, Model};

/// A plaintext model of an app the routers send to `default`.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "notes")]
struct Note {
    id: ObjectId,
    text: String,
}

/// A model with an encrypted field, routed to `encrypted`.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Secret {
    id: ObjectId,
    #[encrypted(queries = "equality")]
    value: String,
}

async fn raw_count(app: &TestApp, alias: &str, collection: &str) -> usize {
    app.database(alias)
        .unwrap()
        .engine()
        .find(
            collection,
            &Filter::And(Vec::new()),
            &FindOptions::default(),
        )
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn using_sends_reads_and_writes_to_the_named_database() {
    let app = TestApp::reference()
        .register::<Note>()
        .register::<Secret>()
        .migrated()
        .await
        .unwrap();
    let notes = app.objects::<Note>();
    notes
        .create(Note {
            id: ObjectId::new(),
            text: "routed".into(),
        })
        .await
        .unwrap();
    notes
        .using("encrypted")
        .create(Note {
            id: ObjectId::new(),
            text: "chosen".into(),
        })
        .await
        .unwrap();

    assert_eq!(raw_count(&app, "default", "notes_note").await, 1);
    assert_eq!(raw_count(&app, "encrypted", "notes_note").await, 1);
    let routed = notes.all().await.unwrap();
    let chosen = notes.using("encrypted").all().await.unwrap();
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].text, "routed");
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].text, "chosen");
    // `using` is kept by the query set's other builders.
    let f = Note::fields();
    assert_eq!(
        notes
            .using("encrypted")
            .filter(f.text.eq("chosen"))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(notes.filter(f.text.eq("chosen")).count().await.unwrap(), 0);
}

#[tokio::test]
async fn using_cannot_send_an_encrypted_field_to_a_database_without_encryption() {
    let app = TestApp::reference()
        .register::<Secret>()
        .migrated()
        .await
        .unwrap();
    let err = app
        .objects::<Secret>()
        .using("default")
        .create(Secret {
            id: ObjectId::new(),
            value: "canary-using-7f3a".into(),
        })
        .await
        .expect_err("an encrypted field may not be stored without encryption");
    let msg = err.to_string();
    assert!(msg.contains("default"), "{msg}");
    assert!(msg.contains("value"), "{msg}");
    assert!(!msg.contains("canary-using-7f3a"), "{msg}");
    assert_eq!(raw_count(&app, "default", "myapp_secret").await, 0);
}

#[tokio::test]
async fn using_an_unknown_alias_names_it() {
    let app = TestApp::reference()
        .register::<Note>()
        .migrated()
        .await
        .unwrap();
    let err = app
        .objects::<Note>()
        .using("archive")
        .count()
        .await
        .expect_err("there is no database `archive`");
    assert!(err.to_string().contains("archive"), "{err}");
    assert!(matches!(err, Error::UnknownDatabase { .. }), "{err:?}");
}
