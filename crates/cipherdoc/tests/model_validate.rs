//! Rules checked when a model is registered (`validate`), and range options
//! in the schema.
#![allow(clippy::unwrap_used, clippy::panic, missing_debug_implementations)]

use bson::{Bson, doc, oid::ObjectId};
use chrono::{DateTime, Utc};
use cipherdoc::model::{
    FieldKind, FieldSchema, Model as _, ModelError, ModelSchema, QueryConfig, encrypted_paths,
    validate,
};
use cipherdoc::{EmbeddedModel, Model};
use rust_decimal::Decimal;

fn expect_invalid(schema: &ModelSchema, field: &str, fragments: &[&str]) {
    let e = validate(schema).unwrap_err();
    let ModelError::InvalidSchema {
        model, field: f, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(model, &schema.label());
    assert_eq!(f, field);
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}: field '{field}' ", schema.label())),
        "{text}"
    );
    for frag in fragments {
        assert!(text.contains(frag), "missing {frag:?} in: {text}");
    }
}

// --- Rules only visible at registration -------------------------------------

#[derive(EmbeddedModel)]
pub struct Card {
    #[encrypted]
    pub number: String,
}

#[derive(EmbeddedModel)]
pub struct Wallet {
    pub owner: String,
    pub card: Card,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct EncryptedHoldsEncrypted {
    pub id: ObjectId,
    #[encrypted]
    pub card: Card,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct DeepEncryptedHoldsEncrypted {
    pub id: ObjectId,
    #[encrypted]
    pub wallet: Wallet,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct ArrayHoldsEncrypted {
    pub id: ObjectId,
    pub cards: Vec<Card>,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct EncryptedArrayHoldsEncrypted {
    pub id: ObjectId,
    #[encrypted]
    pub wallets: Vec<Wallet>,
}

#[derive(EmbeddedModel)]
pub struct Holder {
    pub wallets: Vec<Wallet>,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct NestedArrayHoldsEncrypted {
    pub id: ObjectId,
    pub holder: Holder,
}

#[test]
fn encrypted_embedded_model_cannot_contain_encrypted_fields() {
    expect_invalid(
        EncryptedHoldsEncrypted::schema(),
        "card",
        &[
            "encrypted embedded model",
            "Card.number",
            "remove #[encrypted]",
        ],
    );
    expect_invalid(
        DeepEncryptedHoldsEncrypted::schema(),
        "wallet",
        &["Wallet.card.number"],
    );
    expect_invalid(
        EncryptedArrayHoldsEncrypted::schema(),
        "wallets",
        &["encrypted embedded model array", "Wallet.card.number"],
    );
}

#[test]
fn embedded_model_array_cannot_contain_encrypted_fields() {
    expect_invalid(
        ArrayHoldsEncrypted::schema(),
        "cards",
        &[
            "embedded model array",
            "Card.number",
            "encrypt the whole array with #[encrypted] on 'cards'",
        ],
    );
    expect_invalid(
        NestedArrayHoldsEncrypted::schema(),
        "holder.wallets",
        &["Wallet.card.number"],
    );
}

#[test]
fn plain_embedding_reaches_encrypted_fields_at_any_depth() {
    #[derive(Model)]
    #[model(app = "ok", kms_provider = "aws:prod")]
    pub struct Person {
        pub id: ObjectId,
        pub wallet: Wallet,
        #[encrypted(kms_provider = "local")]
        pub note: String,
    }
    validate(Person::schema()).unwrap();
    let paths = encrypted_paths(Person::schema());
    let got: Vec<_> = paths
        .iter()
        .map(|p| {
            (
                p.path.as_str(),
                p.bson_type.as_str(),
                p.kms_provider.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("wallet.card.number", "string", Some("aws:prod")),
            ("note", "string", Some("local"))
        ]
    );
    assert_eq!(Person::schema().collection, "ok_person");
    assert_eq!(
        Person::fields().wallet.card.number.path(),
        "wallet.card.number"
    );
}

// --- Range options ---------------------------------------------------------

#[derive(Model)]
#[model(app = "clinic")]
pub struct Vitals {
    pub id: ObjectId,
    #[encrypted(
        queries = "range",
        min = 0,
        max = 200,
        sparsity = 1,
        trim_factor = 0,
        contention = 4
    )]
    pub heart_rate: i32,
    #[encrypted(queries = "range", min = -10_i16, max = 10, contention = 0)]
    pub offset: i16,
    #[encrypted(queries = "range", min = 30.0, max = 45.0, precision = 1)]
    pub temperature: f64,
    #[encrypted(queries = "range", min = Decimal::new(0, 2), max = Decimal::new(100_000, 2), precision = 2)]
    pub fee: Decimal,
    #[encrypted(queries = "range", min = DateTime::<Utc>::UNIX_EPOCH, max = DateTime::<Utc>::MAX_UTC)]
    pub seen: DateTime<Utc>,
    #[encrypted(queries = "equality", contention = 16)]
    pub code: i64,
}

#[test]
fn range_options_are_typed_like_the_field() {
    validate(Vitals::schema()).unwrap();
    let docs: Vec<_> = encrypted_paths(Vitals::schema())
        .iter()
        .map(cipherdoc::model::EncryptedPath::to_document)
        .collect();
    assert_eq!(
        docs,
        [
            doc! { "path": "heart_rate", "bsonType": "long", "queries": {
            "queryType": "range", "contention": 4_i64, "min": 0_i64, "max": 200_i64, "sparsity": 1_i64, "trimFactor": 0_i32 } },
            doc! { "path": "offset", "bsonType": "int", "queries": {
            "queryType": "range", "contention": 0_i64, "min": -10_i32, "max": 10_i32 } },
            doc! { "path": "temperature", "bsonType": "double", "queries": {
            "queryType": "range", "min": 30.0, "max": 45.0, "precision": 1_i32 } },
            doc! { "path": "fee", "bsonType": "decimal", "queries": {
            "queryType": "range",
            "min": Bson::Decimal128("0.00".parse().unwrap()),
            "max": Bson::Decimal128("1000.00".parse().unwrap()), "precision": 2_i32 } },
            doc! { "path": "seen", "bsonType": "date", "queries": {
            "queryType": "range",
            "min": bson::DateTime::from_millis(0),
            "max": bson::DateTime::from_millis(DateTime::<Utc>::MAX_UTC.timestamp_millis()) } },
            doc! { "path": "code", "bsonType": "long", "queries": { "queryType": "equality", "contention": 16_i64 } },
        ]
    );
    let hr = Vitals::schema()
        .field("heart_rate")
        .unwrap()
        .queries
        .clone()
        .unwrap();
    assert_eq!(hr.bounds_contain(&Bson::Int64(200)), Some(true));
    assert_eq!(hr.bounds_contain(&Bson::Int64(201)), Some(false));
    assert_eq!(hr.bounds_contain(&Bson::Int32(5)), None);
}

#[derive(Model)]
#[model(app = "bad")]
pub struct MinNotBelowMax {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = 10, max = 10)]
    pub level: i64,
}

#[derive(Model)]
#[model(app = "bad")]
pub struct BoundWithoutBsonForm {
    pub id: ObjectId,
    #[encrypted(queries = "range", min = 0, max = u64::MAX)]
    pub counter: u64,
}

#[test]
fn range_bounds_are_checked_at_registration() {
    expect_invalid(
        MinNotBelowMax::schema(),
        "level",
        &["min that is not less than its max", "make `min` < `max`"],
    );
    expect_invalid(
        BoundWithoutBsonForm::schema(),
        "counter",
        &["range max of BSON type null, but the field is long"],
    );
}

// --- Hand-built schemas (what the derive refuses at compile time) ------------

fn with_field(f: FieldSchema) -> ModelSchema {
    let mut s = ModelSchema::new("hand", "Made", "hand_made");
    let mut id = FieldSchema::new("_id", FieldKind::ObjectId, "objectId");
    id.primary_key = true;
    s.fields = vec![id, f];
    s
}

fn enc(name: &str, kind: FieldKind, bt: &str) -> FieldSchema {
    let mut f = FieldSchema::new(name, kind, bt);
    f.encrypted = true;
    f
}

#[test]
fn hand_built_schemas_break_each_rule_with_a_message_naming_the_field() {
    let mut f = enc("ssn", FieldKind::Char, "string");
    f.null = true;
    expect_invalid(&with_field(f), "ssn", &["nullable", "non-Option"]);

    let mut f = enc("ssn", FieldKind::Char, "string");
    f.unique = true;
    expect_invalid(&with_field(f), "ssn", &["unique constraint"]);

    let mut f = enc("ssn", FieldKind::Char, "string");
    f.indexed = true;
    expect_invalid(&with_field(f), "ssn", &["can't be indexed"]);

    let mut f = enc("tags", FieldKind::Array(Box::new(FieldKind::Char)), "array");
    f.queries = Some(QueryConfig::Equality { contention: None });
    expect_invalid(
        &with_field(f),
        "tags",
        &["encrypted array", "remove `queries`"],
    );

    let mut f = enc("score", FieldKind::Float, "double");
    f.queries = Some(QueryConfig::Equality { contention: None });
    expect_invalid(&with_field(f), "score", &["BSON type double", "equality"]);

    let mut f = enc("name", FieldKind::Char, "string");
    f.queries = Some(QueryConfig::Range {
        min: Bson::String("a".into()),
        max: Bson::String("z".into()),
        sparsity: None,
        precision: None,
        trim_factor: None,
        contention: None,
    });
    expect_invalid(
        &with_field(f),
        "name",
        &["range queries need int, long, double, decimal or date"],
    );

    let range =
        |min: Bson, max: Bson, precision: Option<i32>, sparsity: Option<i64>| QueryConfig::Range {
            min,
            max,
            sparsity,
            precision,
            trim_factor: None,
            contention: None,
        };
    let mut f = enc("score", FieldKind::Float, "double");
    f.queries = Some(range(Bson::Double(0.0), Bson::Double(1.0), None, None));
    expect_invalid(
        &with_field(f),
        "score",
        &["no `precision`", "add `precision = N`"],
    );

    let mut f = enc("age", FieldKind::BigInteger, "long");
    f.queries = Some(range(Bson::Int64(0), Bson::Int64(1), Some(2), None));
    expect_invalid(&with_field(f), "age", &["`precision` on a long field"]);

    let mut f = enc("age", FieldKind::BigInteger, "long");
    f.queries = Some(range(Bson::Int32(0), Bson::Int64(1), None, None));
    expect_invalid(
        &with_field(f),
        "age",
        &["range min of BSON type int, but the field is long"],
    );

    let mut f = enc("age", FieldKind::BigInteger, "long");
    f.queries = Some(range(Bson::Int64(0), Bson::Int64(1), None, Some(9)));
    expect_invalid(&with_field(f), "age", &["sparsity"]);

    let mut f = enc("age", FieldKind::BigInteger, "long");
    f.queries = Some(QueryConfig::Equality {
        contention: Some(-1),
    });
    expect_invalid(&with_field(f), "age", &["negative `contention`"]);

    let mut f = FieldSchema::new("age", FieldKind::BigInteger, "long");
    f.queries = Some(QueryConfig::Equality { contention: None });
    expect_invalid(
        &with_field(f),
        "age",
        &["not encrypted", "add #[encrypted]"],
    );

    let mut s = with_field(FieldSchema::new("age", FieldKind::BigInteger, "long"));
    s.fields.remove(0);
    expect_invalid(&s, "_id", &["primary key", "pub id: ObjectId"]);

    let mut s = with_field(FieldSchema::new("age", FieldKind::BigInteger, "long"));
    s.fields[0].encrypted = true;
    expect_invalid(&s, "_id", &["primary key and cannot be encrypted"]);
}
