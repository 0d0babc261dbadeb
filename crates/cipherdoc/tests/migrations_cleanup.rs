//! Issue 14: a migration refused part way leaves nothing behind — no
//! collection (nor its ESC/ECOC), no data key, no history row — and `check`
//! reports the error a migrated collection's lookup meets instead of
//! dropping it. SQLite and (with `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bson::oid::ObjectId;
use cipherdoc::migrations::{
    MigrateOptions, Migration, Operation, Severity, applied_migrations, check, migrate, model_state,
};
use cipherdoc::model::Model as _;
use cipherdoc::{App, Model};
use common::Backend;

/// Its data keys come from the configured local provider.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "clean", collection = "clean_first")]
pub struct First {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub a: String,
    #[encrypted]
    pub b: String,
}

/// One field's key needs a KMS provider the settings do not configure.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "clean", collection = "clean_second")]
pub struct Second {
    pub id: ObjectId,
    #[encrypted]
    pub c: String,
    #[encrypted(kms_provider = "aws")]
    pub d: String,
}

fn create(schema: &'static cipherdoc::model::ModelSchema) -> Operation {
    let ms = model_state(schema);
    Operation::CreateModel {
        model: ms.model,
        collection: ms.collection,
        kms_provider: ms.kms_provider,
        fields: ms.fields,
    }
}

async fn assert_nothing_left(app: &App) {
    let db = app.database("encrypted").unwrap();
    for c in ["clean_first", "clean_second"] {
        assert!(
            db.engine().describe_collection(c).await.unwrap().is_none(),
            "{c} was left behind"
        );
    }
    let keys = db
        .encryption()
        .unwrap()
        .keys()
        .vault()
        .list()
        .await
        .unwrap();
    assert!(keys.is_empty(), "data keys left behind: {}", keys.len());
    assert!(applied_migrations(db).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_migration_refused_part_way_leaves_nothing() {
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::open(backend.settings(dir.path(), "clean", "encrypted"))
            .await
            .unwrap();
        // First's collection and both its keys are made before Second fails.
        let source = vec![Migration {
            app: "clean".into(),
            name: "0001_initial".into(),
            operations: vec![create(First::schema()), create(Second::schema())],
        }];
        let err = migrate(&app, &source, &MigrateOptions::database("encrypted"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("field 'd'"), "{err}");
        assert_nothing_left(&app).await;

        // Second alone: refused before its first key is created.
        let source = vec![Migration {
            app: "clean".into(),
            name: "0001_initial".into(),
            operations: vec![create(Second::schema())],
        }];
        migrate(&app, &source, &MigrateOptions::database("encrypted"))
            .await
            .unwrap_err();
        assert_nothing_left(&app).await;

        // The same migration without Second succeeds, and leaves two keys.
        let source = vec![Migration {
            app: "clean".into(),
            name: "0001_initial".into(),
            operations: vec![create(First::schema())],
        }];
        migrate(&app, &source, &MigrateOptions::database("encrypted"))
            .await
            .unwrap();
        let db = app.database("encrypted").unwrap();
        assert_eq!(
            db.encryption()
                .unwrap()
                .keys()
                .vault()
                .list()
                .await
                .unwrap()
                .len(),
            2
        );
        backend.cleanup(&app).await;
    }
}

/// `First` after gaining an encrypted field, with no migration made.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "clean", collection = "clean_first")]
pub struct FirstGrown {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub a: String,
    #[encrypted]
    pub b: String,
    #[encrypted]
    pub extra: String,
}

#[tokio::test]
async fn check_reports_a_field_the_collection_does_not_encrypt() {
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let app = App::open(backend.settings(dir.path(), "clean", "encrypted"))
            .await
            .unwrap();
        let source = vec![Migration {
            app: "clean".into(),
            name: "0001_initial".into(),
            operations: vec![create(First::schema())],
        }];
        migrate(&app, &source, &MigrateOptions::database("encrypted"))
            .await
            .unwrap();
        let app = app.register::<FirstGrown>().unwrap();
        let found = check(&app).await.unwrap();
        let errors: Vec<&str> = found
            .iter()
            .filter(|c| c.severity == Severity::Error)
            .map(|c| c.text.as_str())
            .collect();
        // The key lookup's error, once swallowed by a catch-all arm…
        assert!(
            errors
                .iter()
                .any(|t| t.contains("cannot compare") && t.contains("clean_first.extra")),
            "{errors:?}"
        );
        // …and the coverage rule, naming the field and the fix.
        assert!(
            errors
                .iter()
                .any(|t| t.contains("'extra' is not covered") && t.contains("makemigrations")),
            "{errors:?}"
        );
        backend.cleanup(&app).await;
    }
}
