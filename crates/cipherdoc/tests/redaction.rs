//! Issue 14, case 4: a canary value pushed through every error path and
//! `Debug` implementation that can carry a plaintext is found in none of
//! their output: explicit range encryption out of bounds, non-finite and
//! unparsable values, range query bounds outside the index, a model's range
//! field out of bounds, `Debug` of `Q`, of engine filters and of QE
//! placeholders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bson::oid::ObjectId;
use bson::{Bson, Decimal128, doc};
use cipherdoc::client_encryption::{Algorithm, EncryptOptions, KeyRef};
use cipherdoc::{App, Model};
use cipherdoc_crypto::payload::{EncryptionPlaceholder, PlaceholderAlgorithm, PlaceholderType};
use cipherdoc_engine::{FieldOp, Filter};

/// Digits that occur nowhere else in these messages.
const CANARY: i64 = 7_391_846_205;
const CANARY_TEXT: &str = "7391846205";
const CANARY_STR: &str = "SECRET-c4n4ry-9Q";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(CANARY_TEXT) && !text.contains(CANARY_STR),
        "{what} leaks the canary: {text}"
    );
}

fn assert_error_clean(what: &str, e: &(impl std::fmt::Display + std::fmt::Debug)) {
    assert_clean(what, &e.to_string());
    assert_clean(what, &format!("{e:?}"));
    assert_clean(what, &format!("{e:#?}"));
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "red", collection = "red_record")]
pub struct Record {
    pub id: ObjectId,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "range", min = 0, max = 100)]
    pub score: i64,
}

#[tokio::test]
async fn no_plaintext_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::settings(dir.path(), "red", "encrypted"))
        .await
        .unwrap()
        .register::<Record>()
        .unwrap();
    let db = app.database("encrypted").unwrap();
    let ce = db.encryption().unwrap().client_encryption();
    let key = ce.create_data_key("local", vec![]).await.unwrap();
    let range = |r: bson::Document| EncryptOptions {
        range: Some(r),
        ..EncryptOptions::new(KeyRef::Id(key), Algorithm::Range)
    };

    // Explicit range encryption: out of bounds (the CLI's `encrypt
    // --algorithm range --min 0 --max 100 --value …` goes here).
    let e = ce
        .encrypt(
            Bson::Int64(CANARY),
            &range(doc! {"min": 0_i64, "max": 100_i64}),
        )
        .await
        .unwrap_err();
    assert_error_clean("range value out of bounds", &e);
    assert!(
        e.to_string()
            .contains("outside the range index bounds [0, 100]"),
        "{e}"
    );
    // Doubles with bounds and precision, out of bounds.
    let e = ce
        .encrypt(
            Bson::Double(7_391_846_205.0),
            &range(doc! {"min": 0.0, "max": 100.0, "precision": 2}),
        )
        .await
        .unwrap_err();
    assert_error_clean("double out of bounds", &e);
    // Decimal128 out of bounds.
    let dec = |s: &str| Bson::Decimal128(s.parse::<Decimal128>().unwrap());
    let e = ce
        .encrypt(
            dec(CANARY_TEXT),
            &range(doc! {"min": dec("0"), "max": dec("100"), "precision": 2}),
        )
        .await
        .unwrap_err();
    assert_error_clean("decimal out of bounds", &e);
    // A query bound outside the index.
    let expr = doc! {"$and": [{"v": {"$gte": CANARY}}, {"v": {"$lte": CANARY + 1}}]};
    if let Err(e) = ce
        .encrypt_expression(&expr, &range(doc! {"min": 0_i64, "max": 100_i64}))
        .await
    {
        assert_error_clean("range query bound", &e);
    }
    // Unparsable decimal strings (`cipherdoc encrypt --value` parses them).
    let e = cipherdoc_crypto::range::decimal128_from_str(CANARY_STR).unwrap_err();
    assert_error_clean("decimal string", &e);
    // Non-finite values name the type, not the value.
    let e = cipherdoc_crypto::range::encode_double(f64::INFINITY, None, None, None).unwrap_err();
    assert!(!e.to_string().contains("value inf"), "{e}");
    assert!(!format!("{e:?}").contains("\"inf\""), "{e:?}");

    // Through the model layer: a range field out of its bounds.
    common::create_encrypted_collection::<Record>(&app).await;
    let e = app
        .objects::<Record>()
        .create(Record {
            id: ObjectId::new(),
            ssn: CANARY_STR.into(),
            score: CANARY,
        })
        .await
        .unwrap_err();
    assert_error_clean("model range field out of bounds", &e);
    // A filter with a mistyped constant on an encrypted field.
    let q = Record::fields().ssn.eq(CANARY_STR);
    let _ = app.objects::<Record>().filter(q).count().await.unwrap();
}

#[test]
fn no_plaintext_in_debug() {
    // `Q` with constants on encrypted fields (equality, range, in).
    let f = Record::fields();
    let q = f.ssn.eq(CANARY_STR) | f.score.gt(CANARY) | f.ssn.is_in([CANARY_STR]);
    assert_clean("Debug of Q", &format!("{q:?}"));
    assert_clean("Debug of Q", &format!("{q:#?}"));
    assert_clean("Debug of Expr", &format!("{:?}", q.expr().unwrap()));

    // Engine filters (the encrypter's input holds the plaintext).
    let filters = [
        Filter::eq("ssn", CANARY_STR),
        Filter::Field {
            path: "score".into(),
            op: FieldOp::In(vec![Bson::Int64(CANARY)]),
        },
        Filter::Field {
            path: "score".into(),
            op: FieldOp::Lte(Bson::Int64(CANARY)),
        },
        Filter::Field {
            path: "ssn".into(),
            op: FieldOp::Contains(CANARY_STR.into()),
        },
        Filter::Field {
            path: "ssn".into(),
            op: FieldOp::StartsWith(CANARY_STR.into()),
        },
    ];
    for filter in &filters {
        let f = Filter::Not(Box::new(Filter::And(vec![filter.clone()])));
        assert_clean("Debug of Filter", &format!("{f:?}"));
        assert_clean("Debug of Filter", &format!("{f:#?}"));
    }

    // A QE placeholder carries the value to encrypt.
    let p = EncryptionPlaceholder {
        kind: PlaceholderType::Insert,
        algorithm: PlaceholderAlgorithm::Equality,
        index_key_id: cipherdoc_crypto::KeyId::from_bytes([1; 16]),
        user_key_id: cipherdoc_crypto::KeyId::from_bytes([1; 16]),
        value: Bson::String(CANARY_STR.into()),
        max_contention: 8,
        sparsity: None,
    };
    assert_clean("Debug of EncryptionPlaceholder", &format!("{p:?}"));
}
