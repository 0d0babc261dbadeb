//! Every encrypted field type: save then load returns an equal value, and
//! for every type that allows equality, `eq`, `ne` and `is_in` return
//! exactly the right documents from a collection with repeated values.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

mod common;

use std::net::IpAddr;

use bson::oid::ObjectId;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use cipherdoc::{App, EmbeddedModel, Model};
use rust_decimal::Decimal;

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Note {
    pub text: String,
    pub stars: i32,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "types")]
pub struct Everything {
    pub id: ObjectId,
    pub n: i64,
    #[encrypted(queries = "equality")]
    pub s: String,
    #[encrypted(queries = "equality")]
    pub small: i16,
    #[encrypted(queries = "equality")]
    pub int: i32,
    #[encrypted(queries = "equality")]
    pub big: i64,
    #[encrypted(queries = "equality")]
    pub psmall: u16,
    #[encrypted(queries = "equality")]
    pub pint: u32,
    #[encrypted(queries = "equality")]
    pub pbig: u64,
    #[encrypted(queries = "equality")]
    pub flag: bool,
    #[encrypted(queries = "equality")]
    pub bytes: Vec<u8>,
    #[encrypted(queries = "equality")]
    pub day: NaiveDate,
    #[encrypted(queries = "equality")]
    pub at: DateTime<Utc>,
    #[encrypted(queries = "equality")]
    pub time: NaiveTime,
    #[encrypted(queries = "equality")]
    pub took: TimeDelta,
    #[encrypted(queries = "equality")]
    pub uuid: uuid::Uuid,
    #[encrypted(queries = "equality")]
    pub oid: ObjectId,
    #[encrypted(queries = "equality")]
    pub ip: IpAddr,
    #[encrypted(queries = "equality", contention = 0)]
    pub email: String,
    #[encrypted]
    pub price: Decimal,
    #[encrypted]
    pub ratio: f64,
    #[encrypted]
    pub tags: Vec<String>,
    #[encrypted]
    pub note: Note,
    #[encrypted]
    pub notes: Vec<Note>,
}

/// Row `n` of the collection: each equality field takes one of three values.
fn row(n: i64) -> Everything {
    let k = n % 3;
    Everything {
        id: ObjectId::new(),
        n,
        s: format!("value-{k}"),
        small: i16::MIN + k as i16,
        int: i32::MAX - k as i32,
        big: i64::MIN + k,
        psmall: u16::MAX - k as u16,
        pint: k as u32,
        pbig: (i64::MAX - k) as u64,
        flag: k == 0,
        bytes: vec![k as u8; 3],
        day: NaiveDate::from_ymd_opt(1999, 12, 31 - k as u32).unwrap(),
        at: DateTime::from_timestamp_millis(1_700_000_000_000 + k).unwrap(),
        time: NaiveTime::from_hms_milli_opt(23, 59, 59, k as u32).unwrap(),
        took: TimeDelta::milliseconds(-k),
        uuid: uuid::Uuid::from_u128(k as u128 + 1),
        oid: ObjectId::from_bytes([k as u8; 12]),
        ip: if k == 0 {
            "::1".parse().unwrap()
        } else {
            format!("10.0.0.{k}").parse().unwrap()
        },
        email: format!("p{k}@example.com"),
        price: Decimal::new(1_999 + n, 2),
        ratio: if n == 0 { -0.0 } else { 1.0 / n as f64 },
        tags: vec![format!("t{n}"), "shared".into()],
        note: Note {
            text: format!("note {n}"),
            stars: (n % 5) as i32,
        },
        notes: vec![
            Note {
                text: "a".into(),
                stars: 1,
            },
            Note {
                text: format!("b{n}"),
                stars: 2,
            },
        ],
    }
}

const ROWS: i64 = 12;

async fn app() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::settings(dir.path(), "types", "encrypted"))
        .await
        .unwrap()
        .register::<Everything>()
        .unwrap();
    common::create_encrypted_collection::<Everything>(&app).await;
    (dir, app)
}

#[tokio::test]
async fn every_type_round_trips() {
    let (_dir, app) = app().await;
    let objects = app.objects::<Everything>();
    let rows: Vec<_> = (0..ROWS).map(row).collect();
    objects.bulk_create(rows.clone()).await.unwrap();
    let mut loaded = objects
        .order_by(Everything::fields().n.asc())
        .all()
        .await
        .unwrap();
    assert_eq!(loaded.len(), rows.len());
    for (a, b) in loaded.iter().zip(&rows) {
        assert_eq!(a, b);
        assert_eq!(a.ratio.to_bits(), b.ratio.to_bits(), "-0.0 keeps its sign");
    }
    // And every encrypted field is ciphertext in storage.
    let raw = common::raw_docs::<Everything>(&app, "encrypted").await;
    for d in &raw {
        for (k, v) in d {
            if !matches!(k.as_str(), "_id" | "n" | "__safeContent__") {
                assert!(
                    matches!(v, bson::Bson::Binary(b) if b.subtype == bson::spec::BinarySubtype::Encrypted),
                    "{k} must be stored encrypted"
                );
            }
        }
    }
    loaded.clear();
}

macro_rules! check_equality {
    ($objects:expr, $rows:expr, $($field:ident),+) => {$(
        for probe in 0..3 {
            let value = row(probe).$field.clone();
            let other = row((probe + 1) % 3).$field.clone();
            let path = &Everything::fields().$field;
            let want_eq: Vec<i64> = $rows.iter().filter(|r| r.$field == value).map(|r| r.n).collect();
            let want_in: Vec<i64> = $rows.iter().filter(|r| r.$field == value || r.$field == other).map(|r| r.n).collect();
            let mut got = ns($objects.filter(path.eq(value.clone())).all().await.unwrap());
            assert_eq!(got, want_eq, "{} eq", stringify!($field));
            got = ns($objects.filter(path.ne(value.clone())).all().await.unwrap());
            let want_ne: Vec<i64> = $rows.iter().filter(|r| r.$field != value).map(|r| r.n).collect();
            assert_eq!(got, want_ne, "{} ne", stringify!($field));
            got = ns($objects.filter(path.is_in([value.clone(), other.clone()])).all().await.unwrap());
            assert_eq!(got, want_in, "{} in", stringify!($field));
        }
    )+};
}

fn ns(v: Vec<Everything>) -> Vec<i64> {
    let mut n: Vec<i64> = v.into_iter().map(|r| r.n).collect();
    n.sort_unstable();
    n
}

#[tokio::test]
async fn equality_lookups_return_exactly_the_matching_documents() {
    let (_dir, app) = app().await;
    let objects = app.objects::<Everything>();
    let rows: Vec<_> = (0..ROWS).map(row).collect();
    for r in &rows {
        objects.create(r.clone()).await.unwrap();
    }
    check_equality!(
        objects, rows, s, small, int, big, psmall, pint, pbig, flag, bytes, day, at, time, took,
        uuid, oid, ip, email
    );
}
