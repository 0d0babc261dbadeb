//! `App::builder`: models, routers and settings are validated together at
//! `open`, before any database is opened.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::model::Model as _;
use cipherdoc::model::ModelError;
use cipherdoc::settings::{ModelRef, Router, Settings};
use cipherdoc::{App, EmbeddedModel, Error, Model};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "notes")]
struct Note {
    id: ObjectId,
    text: String,
}

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
struct Card {
    #[encrypted]
    number: String,
}

/// Compiles, but breaks a rule only visible at registration: an
/// encrypted field inside a list of embedded models.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "notes")]
struct Wallet {
    id: ObjectId,
    cards: Vec<Card>,
}

/// Sends every model to a database the settings do not have.
#[derive(Debug)]
struct ToAnalytics;

impl Router for ToAnalytics {
    fn db_for_read(&self, _: ModelRef<'_>) -> Option<String> {
        Some("analytics".into())
    }
    fn db_for_write(&self, _: ModelRef<'_>) -> Option<String> {
        Some("analytics".into())
    }
    fn allow_migrate(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
}

fn settings(dir: &Path) -> Settings {
    let text = "[databases.default]\nengine = \"sqlite\"\npath = \"default.db\"\n";
    Settings::from_toml_with(text, &dir.join("cipherdoc.toml"), dir, &|_| None).unwrap()
}

#[tokio::test]
async fn a_valid_app_opens_and_its_models_are_registered() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::builder(settings(dir.path()))
        .model::<Note>()
        .model::<Note>()
        .open()
        .await
        .unwrap();
    assert_eq!(
        app.models().len(),
        1,
        "a model added twice is registered once"
    );
    assert_eq!(app.models()[0].label(), Note::schema().label());
    let note = Note {
        id: ObjectId::new(),
        text: "hello".into(),
    };
    app.objects::<Note>().create(note.clone()).await.unwrap();
    let got = app
        .objects::<Note>()
        .get(Note::fields().text.eq("hello"))
        .await
        .unwrap();
    assert_eq!(got, note);
}

#[tokio::test]
async fn an_invalid_model_is_refused_before_any_database_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let err = App::builder(settings(dir.path()))
        .model::<Note>()
        .model::<Wallet>()
        .open()
        .await
        .unwrap_err();
    let Error::Model(ModelError::InvalidSchema { model, field, .. }) = &err else {
        panic!("expected InvalidSchema, got {err:?}");
    };
    assert_eq!(model, &Wallet::schema().label());
    assert!(field.starts_with("cards"), "{field}");
    assert!(
        !dir.path().join("default.db").exists(),
        "nothing may be created when the app is refused"
    );
}

#[tokio::test]
async fn a_router_to_an_unknown_database_is_refused_before_opening() {
    let dir = tempfile::tempdir().unwrap();
    let err = App::builder(settings(dir.path()))
        .model::<Note>()
        .router(ToAnalytics)
        .open()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("'analytics'"), "{text}");
    assert!(text.contains("default"), "names what is configured: {text}");
    assert!(!dir.path().join("default.db").exists());
}
