//! Range fields end to end: a model with `queries = "range"` fields saved
//! through the app and queried with `lt/lte/gt/gte/range/eq/ne/is_in`,
//! each answer compared with the same filter on the plaintext rows; values
//! outside `[min, max]` are refused on save; compaction keeps the answers.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use bson::oid::ObjectId;
use chrono::{DateTime, TimeDelta, Utc};
use cipherdoc::{App, Model};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "ranges")]
pub struct Person {
    pub id: ObjectId,
    pub n: i64,
    #[encrypted(queries = "range", min = 0, max = 200, sparsity = 1)]
    pub age: i32,
    #[encrypted(queries = "range", min = -1_000_000_000_000, max = 1_000_000_000_000, sparsity = 2, trim_factor = 4)]
    pub balance: i64,
    #[encrypted(queries = "range", min = DateTime::from_timestamp_millis(0).unwrap(), max = DateTime::from_timestamp_millis(4_102_444_800_000).unwrap(), sparsity = 2)]
    pub joined: DateTime<Utc>,
}

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
}

/// Row `n`: ages with duplicates and both domain ends, negative balances.
fn row(n: i64) -> Person {
    let ages = [0, 200, 17, 18, 18, 65, 99, 100, 150, 199, 1, 42];
    Person {
        id: ObjectId::new(),
        n,
        age: ages[(n as usize) % ages.len()],
        balance: (n - 10) * 123_456_789 * if n % 2 == 0 { 1 } else { -1 },
        joined: base() + TimeDelta::days(n % 7) - TimeDelta::milliseconds(n % 3),
    }
}

const ROWS: i64 = 30;

async fn app() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::settings(dir.path(), "ranges", "encrypted"))
        .await
        .unwrap()
        .register::<Person>()
        .unwrap();
    common::create_encrypted_collection::<Person>(&app).await;
    (dir, app)
}

fn ns(mut v: Vec<Person>) -> Vec<i64> {
    v.sort_by_key(|p| p.n);
    v.into_iter().map(|p| p.n).collect()
}

fn want(rows: &[Person], f: impl Fn(&Person) -> bool) -> Vec<i64> {
    rows.iter().filter(|p| f(p)).map(|p| p.n).collect()
}

async fn check_all(app: &App, rows: &[Person]) -> usize {
    let objects = app.objects::<Person>();
    let f = Person::fields();
    let mut checked = 0;
    for a in [0, 1, 17, 18, 19, 64, 65, 100, 150, 199, 200] {
        let cases = [
            (objects.filter(f.age.lt(a)), want(rows, |p| p.age < a), "lt"),
            (
                objects.filter(f.age.lte(a)),
                want(rows, |p| p.age <= a),
                "lte",
            ),
            (objects.filter(f.age.gt(a)), want(rows, |p| p.age > a), "gt"),
            (
                objects.filter(f.age.gte(a)),
                want(rows, |p| p.age >= a),
                "gte",
            ),
            (
                objects.filter(f.age.eq(a)),
                want(rows, |p| p.age == a),
                "eq",
            ),
            (
                objects.filter(f.age.ne(a)),
                want(rows, |p| p.age != a),
                "ne",
            ),
            (
                objects.filter(f.age.range(a, a + 30)),
                want(rows, |p| (a..=a + 30).contains(&p.age)),
                "range",
            ),
            (
                objects.filter(f.age.is_in([a, 18, 200])),
                want(rows, |p| [a, 18, 200].contains(&p.age)),
                "in",
            ),
            (
                objects.filter(f.age.gte(a) & f.age.lt(a + 50) & !f.age.eq(99)),
                want(rows, |p| p.age >= a && p.age < a + 50 && p.age != 99),
                "and",
            ),
        ];
        for (qs, w, what) in cases {
            assert_eq!(ns(qs.all().await.unwrap()), w, "age {what} {a}");
            checked += 1;
        }
    }
    for b in [-2_000_000_000_i64, -1, 0, 123_456_789, 1_000_000_000_000] {
        let got = ns(objects.filter(f.balance.lt(b)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.balance < b), "balance lt {b}");
        let got = ns(objects.filter(f.balance.gte(b)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.balance >= b), "balance gte {b}");
        checked += 2;
    }
    for d in 0..8 {
        let t = base() + TimeDelta::days(d);
        let got = ns(objects.filter(f.joined.lte(t)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.joined <= t), "joined lte {t}");
        let got = ns(objects.filter(f.joined.gt(t)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.joined > t), "joined gt {t}");
        checked += 2;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_lookups_match_plaintext() {
    let (_dir, app) = app().await;
    let objects = app.objects::<Person>();
    let rows: Vec<_> = (0..ROWS).map(row).collect();
    objects.bulk_create(rows.clone()).await.unwrap();
    // Stored as range values (15) with one tag per edge of each field.
    let raw = common::raw_docs::<Person>(&app, "encrypted").await;
    for d in &raw {
        for k in ["age", "balance", "joined"] {
            assert!(
                matches!(d.get(k), Some(bson::Bson::Binary(b)) if b.bytes.first() == Some(&15)),
                "{k} is stored as a range value"
            );
        }
    }
    let checked = check_all(&app, &rows).await;
    assert!(checked > 100);

    // Empty ranges return nothing.
    let f = Person::fields();
    assert!(
        objects
            .filter(f.age.range(50, 40))
            .all()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(objects.filter(f.age.lt(0)).all().await.unwrap().is_empty());
    assert!(
        objects
            .filter(f.age.gt(200))
            .all()
            .await
            .unwrap()
            .is_empty()
    );

    // Compaction keeps every answer; so does a new row afterwards.
    let db = app.database("encrypted").unwrap();
    let coll = <Person as cipherdoc::model::Model>::schema()
        .collection
        .clone();
    let stats = db.compact(&coll).await.unwrap();
    assert!(stats.padding_anchors_inserted > 0, "{stats:?}");
    check_all(&app, &rows).await;
    db.cleanup(&coll).await.unwrap();
    let mut rows = rows;
    let extra = row(ROWS);
    objects.create(extra.clone()).await.unwrap();
    rows.push(extra);
    check_all(&app, &rows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_bounds_values_are_refused_on_save() {
    let (_dir, app) = app().await;
    let objects = app.objects::<Person>();
    let mut p = row(1);
    p.age = 201;
    let err = objects.create(p).await.unwrap_err().to_string();
    assert!(err.contains("age"), "{err}");
    assert!(err.contains('0') && err.contains("200"), "{err}");
    assert!(!err.contains("201"), "the value must not appear: {err}");
    let mut p = row(2);
    p.age = -7;
    let err = objects.create(p).await.unwrap_err().to_string();
    assert!(err.contains("age") && err.contains("200"), "{err}");
    assert!(!err.contains("-7"), "the value must not appear: {err}");
    assert_eq!(objects.count().await.unwrap(), 0, "nothing was stored");
}
