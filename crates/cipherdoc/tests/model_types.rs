//! Every field type: schema kind/bsonType, and to_document/from_document
//! round trips including edge values.
#![allow(clippy::unwrap_used, clippy::panic, clippy::too_many_lines)]

use std::net::IpAddr;
use std::time::Duration;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Decimal128, oid::ObjectId};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use cipherdoc::model::{
    FieldKind, FieldValue, Model as _, ModelError, TIME_EPOCH_MILLIS, ValueError,
};
use cipherdoc::{EmbeddedModel, Model};
use rust_decimal::Decimal;
use uuid::Uuid;

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Tag {
    pub label: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "types", collection = "all_types")]
pub struct AllTypes {
    pub id: ObjectId,
    pub char: String,
    #[field(kind = "text")]
    pub text: String,
    #[encrypted(kind = "email", queries = "equality")]
    pub email: String,
    #[field(kind = "url")]
    pub url: String,
    pub small: i16,
    pub integer: i32,
    pub big: i64,
    pub psmall: u16,
    pub pint: u32,
    pub pbig: u64,
    pub flag: bool,
    pub blob: Vec<u8>,
    pub date: NaiveDate,
    pub datetime: DateTime<Utc>,
    pub naive_datetime: NaiveDateTime,
    pub time: NaiveTime,
    pub duration: TimeDelta,
    pub std_duration: Duration,
    pub decimal: Decimal,
    pub decimal128: Decimal128,
    pub float: f64,
    pub uuid: Uuid,
    pub oid: ObjectId,
    pub ip: IpAddr,
    pub numbers: Vec<i32>,
    pub tags: Vec<Tag>,
    pub tag: Tag,
    pub maybe: Option<String>,
    #[field(db_column = "renamed")]
    pub stored_elsewhere: i64,
}

fn sample(
    small: i16,
    big: i64,
    pbig: u64,
    float: f64,
    decimal: Decimal,
    date: NaiveDate,
    time: NaiveTime,
) -> AllTypes {
    AllTypes {
        id: ObjectId::new(),
        char: "héllo — ☃".into(),
        text: String::new(),
        email: "a@example.org".into(),
        url: "https://example.org/".into(),
        small,
        integer: i32::MIN,
        big,
        psmall: u16::MAX,
        pint: u32::MAX,
        pbig,
        flag: true,
        blob: vec![0, 255, 1],
        date,
        datetime: DateTime::from_timestamp_millis(-1).unwrap(),
        naive_datetime: DateTime::from_timestamp_millis(1_700_000_000_123)
            .unwrap()
            .naive_utc(),
        time,
        duration: TimeDelta::try_milliseconds(-86_400_001).unwrap(),
        std_duration: Duration::from_millis(u64::try_from(i64::MAX).unwrap()),
        decimal,
        decimal128: "-1.05E+3".parse().unwrap(),
        float,
        uuid: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        oid: ObjectId::new(),
        ip: "2001:db8::1".parse().unwrap(),
        numbers: vec![i32::MAX, 0, -1],
        tags: vec![Tag { label: "a".into() }, Tag { label: "b".into() }],
        tag: Tag { label: "c".into() },
        maybe: None,
        stored_elsewhere: 7,
    }
}

fn round_trip(m: &AllTypes) -> AllTypes {
    AllTypes::from_document(m.to_document().unwrap()).unwrap()
}

#[test]
fn kinds_and_bson_types() {
    let s = AllTypes::schema();
    assert_eq!(s.collection, "all_types");
    let expect: &[(&str, FieldKind, &str)] = &[
        ("_id", FieldKind::ObjectId, "objectId"),
        ("char", FieldKind::Char, "string"),
        ("text", FieldKind::Text, "string"),
        ("email", FieldKind::Email, "string"),
        ("url", FieldKind::Url, "string"),
        ("small", FieldKind::SmallInteger, "int"),
        ("integer", FieldKind::Integer, "long"),
        ("big", FieldKind::BigInteger, "long"),
        ("psmall", FieldKind::PositiveSmallInteger, "int"),
        ("pint", FieldKind::PositiveInteger, "long"),
        ("pbig", FieldKind::PositiveBigInteger, "long"),
        ("flag", FieldKind::Boolean, "bool"),
        ("blob", FieldKind::Binary, "binData"),
        ("date", FieldKind::Date, "date"),
        ("datetime", FieldKind::DateTime, "date"),
        ("naive_datetime", FieldKind::DateTime, "date"),
        ("time", FieldKind::Time, "date"),
        ("duration", FieldKind::Duration, "long"),
        ("std_duration", FieldKind::Duration, "long"),
        ("decimal", FieldKind::Decimal, "decimal"),
        ("decimal128", FieldKind::Decimal, "decimal"),
        ("float", FieldKind::Float, "double"),
        ("uuid", FieldKind::Uuid, "binData"),
        ("oid", FieldKind::ObjectId, "objectId"),
        ("ip", FieldKind::GenericIpAddress, "string"),
        (
            "numbers",
            FieldKind::Array(Box::new(FieldKind::Integer)),
            "array",
        ),
        (
            "tags",
            FieldKind::EmbeddedArray(cipherdoc::model::EmbeddedRef::of::<Tag>()),
            "array",
        ),
        (
            "tag",
            FieldKind::Embedded(cipherdoc::model::EmbeddedRef::of::<Tag>()),
            "object",
        ),
        ("maybe", FieldKind::Char, "string"),
        ("renamed", FieldKind::BigInteger, "long"),
    ];
    assert_eq!(s.fields.len(), expect.len());
    for (f, (name, kind, bt)) in s.fields.iter().zip(expect) {
        assert_eq!(
            (f.name.as_str(), &f.kind, f.bson_type.as_str()),
            (*name, kind, *bt)
        );
    }
    assert!(s.field("maybe").unwrap().null);
    assert!(!s.field("char").unwrap().null);
    assert_eq!(s.field("renamed").unwrap().rust_name, "stored_elsewhere");
    assert_eq!(s.field("numbers").unwrap().rust_type, "Vec<i32>");
    assert_eq!(s.field("datetime").unwrap().rust_type, "DateTime<Utc>");
    cipherdoc::model::validate(s).unwrap();
}

#[test]
fn stored_representation() {
    let m = sample(
        i16::MIN,
        i64::MIN,
        u64::try_from(i64::MAX).unwrap(),
        -0.0,
        Decimal::new(150, 2),
        NaiveDate::from_ymd_opt(1969, 12, 31).unwrap(),
        NaiveTime::from_hms_milli_opt(23, 59, 59, 999).unwrap(),
    );
    let d = m.to_document().unwrap();
    assert_eq!(d.get("small"), Some(&Bson::Int32(-32768)));
    assert_eq!(d.get("integer"), Some(&Bson::Int64(i64::from(i32::MIN))));
    assert_eq!(d.get("big"), Some(&Bson::Int64(i64::MIN)));
    assert_eq!(d.get("psmall"), Some(&Bson::Int32(65535)));
    assert_eq!(d.get("pint"), Some(&Bson::Int64(i64::from(u32::MAX))));
    assert_eq!(d.get("pbig"), Some(&Bson::Int64(i64::MAX)));
    assert_eq!(
        d.get("blob"),
        Some(&Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![0, 255, 1]
        }))
    );
    assert_eq!(
        d.get("date"),
        Some(&Bson::DateTime(bson::DateTime::from_millis(-86_400_000)))
    );
    assert_eq!(
        d.get("datetime"),
        Some(&Bson::DateTime(bson::DateTime::from_millis(-1)))
    );
    // Django MongoDB Backend: datetime.combine(datetime.min.date(), value).
    let t0 = NaiveDate::from_ymd_opt(1, 1, 1)
        .unwrap()
        .and_time(NaiveTime::MIN)
        .and_utc()
        .timestamp_millis();
    assert_eq!(t0, TIME_EPOCH_MILLIS);
    assert_eq!(
        d.get("time"),
        Some(&Bson::DateTime(bson::DateTime::from_millis(
            TIME_EPOCH_MILLIS + 86_399_999
        )))
    );
    assert_eq!(d.get("duration"), Some(&Bson::Int64(-86_400_001)));
    assert_eq!(
        d.get("decimal"),
        Some(&Bson::Decimal128("1.50".parse().unwrap()))
    );
    let Some(Bson::Double(z)) = d.get("float") else {
        panic!()
    };
    assert!(z.is_sign_negative() && *z == 0.0);
    assert_eq!(
        d.get("uuid"),
        Some(&Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)
                .as_bytes()
                .to_vec()
        }))
    );
    assert_eq!(d.get("ip"), Some(&Bson::String("2001:db8::1".into())));
    assert_eq!(
        d.get("numbers"),
        Some(&Bson::Array(vec![
            Bson::Int64(2_147_483_647),
            Bson::Int64(0),
            Bson::Int64(-1)
        ]))
    );
    assert_eq!(
        d.get("tags"),
        Some(&bson::bson!([{ "label": "a" }, { "label": "b" }]))
    );
    assert_eq!(d.get("maybe"), Some(&Bson::Null));
    assert_eq!(d.get("renamed"), Some(&Bson::Int64(7)));
    assert!(!d.contains_key("stored_elsewhere"));
}

#[test]
fn round_trips_with_edge_values() {
    let cases = [
        sample(
            i16::MIN,
            i64::MIN,
            0,
            f64::MIN_POSITIVE,
            Decimal::MAX,
            NaiveDate::MIN,
            NaiveTime::MIN,
        ),
        sample(
            i16::MAX,
            i64::MAX,
            u64::try_from(i64::MAX).unwrap(),
            f64::MAX,
            Decimal::MIN,
            NaiveDate::MAX,
            NaiveTime::from_hms_milli_opt(23, 59, 59, 999).unwrap(),
        ),
        sample(
            0,
            0,
            1,
            -0.0,
            Decimal::new(1, 28),
            NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
            NaiveTime::MIN,
        ),
        sample(
            -1,
            -1,
            42,
            f64::INFINITY,
            Decimal::new(-25075, 2),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            NaiveTime::MIN,
        ),
        sample(
            1,
            1,
            42,
            f64::NEG_INFINITY,
            Decimal::ZERO,
            NaiveDate::from_ymd_opt(1, 1, 1).unwrap(),
            NaiveTime::MIN,
        ),
    ];
    for m in &cases {
        let back = round_trip(m);
        // f64 compared bit for bit (-0.0, infinities).
        assert_eq!(back.float.to_bits(), m.float.to_bits());
        assert_eq!(&back, m);
        // Decimal scale is kept (1.50 is not 1.5).
        assert_eq!(back.decimal.scale(), m.decimal.scale());
    }
    let mut m = cases[0].clone();
    m.float = f64::NAN;
    m.maybe = Some("present".into());
    let back = round_trip(&m);
    assert!(back.float.is_nan());
    assert_eq!(back.maybe.as_deref(), Some("present"));
}

#[test]
fn sub_millisecond_parts_round_down_like_django() {
    let mut m = sample(
        0,
        0,
        0,
        0.0,
        Decimal::ZERO,
        NaiveDate::MIN,
        NaiveTime::from_hms_nano_opt(1, 2, 3, 4_999_999).unwrap(),
    );
    m.datetime = DateTime::from_timestamp(-1, 999_999).unwrap(); // -0.999000001 s
    m.duration = TimeDelta::nanoseconds(-1); // floors to -1 ms, as Python's // does
    m.std_duration = Duration::from_nanos(1_999_999);
    let back = round_trip(&m);
    assert_eq!(
        back.time,
        NaiveTime::from_hms_milli_opt(1, 2, 3, 4).unwrap()
    );
    assert_eq!(back.datetime.timestamp_millis(), -1000);
    assert_eq!(back.duration, TimeDelta::try_milliseconds(-1).unwrap());
    assert_eq!(back.std_duration, Duration::from_millis(1));
}

#[test]
fn absent_option_reads_as_none_and_unknown_keys_are_ignored() {
    let m = sample(0, 0, 0, 0.0, Decimal::ZERO, NaiveDate::MIN, NaiveTime::MIN);
    let mut d = m.to_document().unwrap();
    d.remove("maybe");
    d.insert("__safeContent__", Bson::Array(vec![]));
    assert_eq!(AllTypes::from_document(d).unwrap(), m);
}

fn load_error(key: &str, value: Bson) -> ModelError {
    let m = sample(0, 0, 0, 0.0, Decimal::ZERO, NaiveDate::MIN, NaiveTime::MIN);
    let mut d = m.to_document().unwrap();
    d.insert(key, value);
    AllTypes::from_document(d).unwrap_err()
}

#[test]
fn load_refuses_out_of_range_and_wrong_types() {
    let cases: Vec<(&str, Bson, &str)> = vec![
        ("small", Bson::Int32(40_000), "value out of range for i16"),
        ("small", Bson::Int64(-40_000), "value out of range for i16"),
        (
            "integer",
            Bson::Int64(i64::from(i32::MAX) + 1),
            "value out of range for i32",
        ),
        ("psmall", Bson::Int32(-1), "value out of range for u16"),
        ("pint", Bson::Int64(-5), "value out of range for u32"),
        ("pbig", Bson::Int64(-1), "value out of range for u64"),
        (
            "std_duration",
            Bson::Int64(-1),
            "value out of range for Duration",
        ),
        (
            "big",
            Bson::Double(1.0),
            "expected BSON long, found BSON double",
        ),
        (
            "uuid",
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![1; 3],
            }),
            "invalid UUID",
        ),
        (
            "uuid",
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1; 16],
            }),
            "invalid UUID",
        ),
        (
            "blob",
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes: vec![1; 16],
            }),
            "invalid binary value",
        ),
        ("ip", Bson::String("999.1.1.1".into()), "invalid IP address"),
        (
            "decimal",
            Bson::Decimal128("NaN".parse().unwrap()),
            "value out of range for Decimal",
        ),
        (
            "decimal",
            Bson::Decimal128("1E+40".parse().unwrap()),
            "value out of range for Decimal",
        ),
        (
            "date",
            Bson::DateTime(bson::DateTime::from_millis(i64::MAX)),
            "value out of range for NaiveDate",
        ),
        (
            "tag",
            Bson::String("x".into()),
            "expected BSON object, found BSON string",
        ),
        ("char", Bson::Null, "expected BSON string, found BSON null"),
    ];
    for (key, value, msg) in cases {
        let e = load_error(key, value);
        let ModelError::Value { model, path, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((model.as_str(), path.as_str()), ("types.AllTypes", key));
        let text = e.to_string();
        assert!(
            text.contains(msg) && text.contains(&format!("'{key}'")),
            "{key}: {text}"
        );
    }
    let e = load_error("numbers", bson::bson!([1, "two"]));
    assert!(
        e.to_string()
            .starts_with("types.AllTypes: field 'numbers.1' expected BSON long"),
        "{e}"
    );
    let e = load_error("tags", bson::bson!([{ "label": "a" }, { "nolabel": 1 }]));
    assert!(
        e.to_string()
            .starts_with("types.AllTypes: field 'tags.1.label' missing"),
        "{e}"
    );
}

#[test]
fn save_refuses_values_without_a_bson_form() {
    let mut m = sample(0, 0, 0, 0.0, Decimal::ZERO, NaiveDate::MIN, NaiveTime::MIN);
    m.pbig = u64::MAX;
    let e = m.to_document().unwrap_err();
    assert_eq!(
        e.to_string(),
        "types.AllTypes: field 'pbig' value out of range for u64: larger than the BSON long maximum"
    );
    let mut m = sample(0, 0, 0, 0.0, Decimal::ZERO, NaiveDate::MIN, NaiveTime::MIN);
    m.std_duration = Duration::MAX;
    assert!(
        m.to_document()
            .unwrap_err()
            .to_string()
            .contains("'std_duration'")
    );
}

#[test]
fn integers_are_read_from_int_or_long() {
    assert_eq!(i64::from_bson(Bson::Int32(-3)).unwrap(), -3);
    assert_eq!(i16::from_bson(Bson::Int64(3)).unwrap(), 3);
    assert_eq!(
        u32::from_bson(Bson::Int64(i64::from(u32::MAX))).unwrap(),
        u32::MAX
    );
    assert_eq!(
        f64::from_bson(Bson::Int32(2)).unwrap().to_bits(),
        2.0_f64.to_bits()
    );
    assert_eq!(
        u32::from_bson(Bson::Int64(i64::from(u32::MAX) + 1)),
        Err(ValueError::OutOfRange {
            rust_type: "u32",
            reason: "negative or above u32::MAX"
        })
    );
    assert_eq!(Option::<i32>::from_bson(Bson::Null).unwrap(), None);
    assert_eq!(Option::<i32>::from_missing().unwrap(), None);
    assert_eq!(i32::from_missing(), Err(ValueError::Missing));
}
