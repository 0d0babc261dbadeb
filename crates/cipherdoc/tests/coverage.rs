//! Issue 14, the coverage rule: a path a model declares `#[encrypted]` is
//! never sent to an engine unless the collection's encrypted fields (pinned
//! map or catalog) encrypt it exactly as the model declares. Each case runs
//! on SQLite and (with `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL, asserts the
//! typed refusal, that the raw engine holds nothing, and that the canary is
//! in no file of the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use cipherdoc::coverage::CoverageGap;
use cipherdoc::model::{Model as _, ModelError};
use cipherdoc::{App, EmbeddedModel, Error, Model};
use cipherdoc_engine::CreateCollectionOptions;
use common::Backend;

/// The model as migrated.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "cov", collection = "cov_record")]
pub struct RecordV1 {
    pub id: ObjectId,
    pub note: String,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
    pub score: i64,
    #[encrypted]
    pub diagnosis: String,
}

/// The same collection after the model gained an encrypted field, with no
/// migration made.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "cov", collection = "cov_record")]
pub struct RecordV2 {
    pub id: ObjectId,
    pub note: String,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
    pub score: i64,
    #[encrypted]
    pub diagnosis: String,
    #[encrypted]
    pub extra: String,
}

fn v1(canary: &str) -> RecordV1 {
    RecordV1 {
        id: ObjectId::new(),
        note: "public".into(),
        ssn: format!("{canary}S"),
        score: 7,
        diagnosis: format!("{canary}D"),
    }
}

fn v2(canary: &str) -> RecordV2 {
    RecordV2 {
        id: ObjectId::new(),
        note: "public".into(),
        ssn: format!("{canary}S"),
        score: 7,
        diagnosis: format!("{canary}D"),
        extra: format!("{canary}X"),
    }
}

fn canary() -> String {
    format!("CANARY{}", ObjectId::new().to_hex())
}

fn assert_gap(e: &Error, want_field: &str, want: fn(&CoverageGap) -> bool) {
    match e {
        Error::EncryptedFieldNotCovered {
            alias,
            model,
            field,
            reason,
            ..
        } => {
            assert_eq!(alias, "encrypted");
            assert_eq!(model, "cov.RecordV2");
            assert_eq!(field, want_field, "{e}");
            assert!(want(reason), "{reason:?}");
            let text = e.to_string();
            assert!(text.contains("makemigrations"), "{text}");
            assert!(text.contains("migrate --database encrypted"), "{text}");
        }
        other => panic!("expected EncryptedFieldNotCovered, got {other:?}"),
    }
}

async fn open(backend: &Backend, dir: &std::path::Path) -> App {
    App::open(backend.settings(dir, "cov", "encrypted"))
        .await
        .unwrap()
}

/// Every write and query path of `RecordV2` is refused with `check`; the
/// raw collection stays empty.
async fn every_path_refused(app: &App, c: &str, check: fn(&Error)) {
    let objects = app.objects::<RecordV2>();
    let f = RecordV2::fields();
    check(&objects.create(v2(c)).await.unwrap_err());
    check(&objects.bulk_create(vec![v2(c), v2(c)]).await.unwrap_err());
    check(&objects.save(&v2(c)).await.unwrap_err());
    check(
        &objects
            .get_or_create(f.ssn.eq(format!("{c}S")), || v2(c))
            .await
            .unwrap_err(),
    );
    check(
        &objects
            .update_or_create(f.ssn.eq(format!("{c}S")), |m| m, || v2(c))
            .await
            .unwrap_err(),
    );
    check(
        &objects
            .filter(f.ssn.eq(format!("{c}S")))
            .count()
            .await
            .unwrap_err(),
    );
    check(
        &objects
            .filter(f.ssn.eq(format!("{c}S")))
            .all()
            .await
            .unwrap_err(),
    );
    check(
        &objects
            .filter(f.ssn.eq(format!("{c}S")))
            .delete()
            .await
            .unwrap_err(),
    );
    assert!(
        common::raw_docs::<RecordV2>(app, "encrypted")
            .await
            .is_empty()
    );
}

async fn no_canary_on_disk(backend: &Backend, dir: &std::path::Path, c: &str) {
    let hits = backend.canaries_on_disk(dir, &[c.as_bytes()]).await;
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");
}

#[tokio::test]
async fn a_model_that_gained_an_encrypted_field_without_a_migration_is_refused() {
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let app = open(&backend, dir.path()).await;
        common::create_encrypted_collection::<RecordV1>(&app).await;
        let c = canary();
        every_path_refused(&app, &c, |e| {
            assert_gap(e, "extra", |r| *r == CoverageGap::Missing);
        })
        .await;
        // The migrated model itself still works.
        let ok = v1(&canary());
        app.objects::<RecordV1>().create(ok.clone()).await.unwrap();
        let got = app
            .objects::<RecordV1>()
            .get(RecordV1::fields().ssn.eq(ok.ssn.clone()))
            .await
            .unwrap();
        assert_eq!(got, ok);
        no_canary_on_disk(&backend, dir.path(), &c).await;
        backend.cleanup(&app).await;
    }
}

/// The encryptedFields `create_encrypted_collection` would make for
/// `RecordV2`, then changed by `lie`.
async fn lying_catalog(app: &App, lie: impl Fn(&mut Vec<Document>)) {
    let db = app.database("encrypted").unwrap();
    let enc = db.encryption().unwrap();
    let master = enc.master_key_for(None).unwrap();
    let mut fields = Vec::new();
    for p in RecordV2::schema().encrypted_paths() {
        let id = enc.keys().create_data_key(master, vec![]).await.unwrap();
        let mut f = p.to_document();
        f.insert("keyId", id.to_binary());
        fields.push(f);
    }
    lie(&mut fields);
    let fields: Vec<Bson> = fields.into_iter().map(Bson::Document).collect();
    let coll = &RecordV2::schema().collection;
    db.engine().drop_collection(coll).await.unwrap();
    db.engine()
        .create_collection(
            coll,
            CreateCollectionOptions {
                encrypted_fields: Some(doc! { "fields": fields }),
            },
        )
        .await
        .unwrap();
    db.forget_catalog();
}

fn set_query(fields: &mut [Document], path: &str, key: &str, v: Bson) {
    let f = fields
        .iter_mut()
        .find(|f| f.get_str("path") == Ok(path))
        .unwrap();
    f.get_document_mut("queries").unwrap().insert(key, v);
}

#[tokio::test]
async fn a_catalog_that_lies_is_refused() {
    type Lie = (
        &'static str,
        fn(&mut Vec<Document>),
        &'static str,
        fn(&CoverageGap) -> bool,
    );
    let queries = |r: &CoverageGap| matches!(r, CoverageGap::Queries { .. });
    let lies: Vec<Lie> = vec![
        (
            "an entry deleted",
            |f| f.retain(|d| d.get_str("path") != Ok("diagnosis")),
            "diagnosis",
            |r| *r == CoverageGap::Missing,
        ),
        (
            "an unindexed field made indexed",
            |f| {
                let d = f
                    .iter_mut()
                    .find(|d| d.get_str("path") == Ok("extra"))
                    .unwrap();
                d.insert(
                    "queries",
                    doc! {"queryType": "equality", "contention": 0_i64},
                );
            },
            "extra",
            queries,
        ),
        (
            "a lower contention",
            |f| set_query(f, "ssn", "contention", Bson::Int64(0)),
            "ssn",
            queries,
        ),
        (
            "a lower sparsity",
            |f| set_query(f, "score", "sparsity", Bson::Int64(1)),
            "score",
            queries,
        ),
        (
            "a lower trim factor",
            |f| set_query(f, "score", "trimFactor", Bson::Int32(0)),
            "score",
            queries,
        ),
        (
            "other bounds",
            |f| set_query(f, "score", "max", Bson::Int64(10)),
            "score",
            queries,
        ),
        (
            "another BSON type",
            |f| {
                let d = f
                    .iter_mut()
                    .find(|d| d.get_str("path") == Ok("extra"))
                    .unwrap();
                d.insert("bsonType", "binData");
            },
            "extra",
            |r| matches!(r, CoverageGap::BsonType { .. }),
        ),
    ];
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let app = open(&backend, dir.path()).await;
        let c = canary();
        for (what, lie, field, want) in &lies {
            lying_catalog(&app, lie).await;
            let objects = app.objects::<RecordV2>();
            let e = objects.create(v2(&c)).await.unwrap_err();
            println!("{what}: {e}");
            assert_gap(&e, field, *want);
            every_path_refused(&app, &c, |_| {}).await;
        }
        // The honest catalog is accepted.
        lying_catalog(&app, |_| {}).await;
        app.objects::<RecordV2>()
            .create(v2(&canary()))
            .await
            .unwrap();
        no_canary_on_disk(&backend, dir.path(), &c).await;
        backend.cleanup(&app).await;
    }
}

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Item {
    pub label: String,
    #[encrypted]
    pub value: String,
}

/// Never registered: an encrypted field inside a list of embedded models.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "cov", collection = "cov_listed")]
pub struct Listed {
    pub id: ObjectId,
    pub items: Vec<Item>,
}

/// Never registered: the same, one list deeper.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "cov", collection = "cov_nested_list")]
pub struct NestedList {
    pub id: ObjectId,
    pub rows: Vec<Vec<Item>>,
}

fn assert_invalid_schema(e: &Error, field: &str) {
    match e {
        Error::Model(ModelError::InvalidSchema { field: f, .. }) => assert_eq!(f, field, "{e}"),
        other => panic!("expected InvalidSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unregistered_model_is_validated_on_first_use() {
    // Registration refuses both models; first use refuses them the same way.
    assert!(
        App::open(common::settings(
            tempfile::tempdir().unwrap().path(),
            "cov",
            "encrypted"
        ))
        .await
        .unwrap()
        .register::<Listed>()
        .is_err()
    );
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let app = open(&backend, dir.path()).await;
        // Even a plain collection by that name does not let the value through.
        for coll in ["cov_listed", "cov_nested_list"] {
            app.database("encrypted")
                .unwrap()
                .engine()
                .create_collection(coll, CreateCollectionOptions::default())
                .await
                .unwrap();
        }
        let c = canary();
        let item = || Item {
            label: "l".into(),
            value: format!("{c}V"),
        };
        let listed = app.objects::<Listed>();
        let l = Listed {
            id: ObjectId::new(),
            items: vec![item()],
        };
        assert_invalid_schema(&listed.create(l.clone()).await.unwrap_err(), "items");
        assert_invalid_schema(&listed.save(&l).await.unwrap_err(), "items");
        assert_invalid_schema(&listed.bulk_create(vec![l]).await.unwrap_err(), "items");
        assert_invalid_schema(&listed.count().await.unwrap_err(), "items");
        let nested = app.objects::<NestedList>();
        let n = NestedList {
            id: ObjectId::new(),
            rows: vec![vec![item()]],
        };
        assert_invalid_schema(&nested.create(n).await.unwrap_err(), "rows");
        assert!(
            common::raw_docs::<Listed>(&app, "encrypted")
                .await
                .is_empty()
        );
        assert!(
            common::raw_docs::<NestedList>(&app, "encrypted")
                .await
                .is_empty()
        );
        no_canary_on_disk(&backend, dir.path(), &c).await;
        backend.cleanup(&app).await;
    }
}
