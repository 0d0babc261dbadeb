//! The leakage report on a skewed field: a two-valued field split 120/80
//! at contention 0 is warned (with a contention factor to use), the same
//! split at contention 8 is not, and the report's numbers equal counts read
//! straight from the SQLite file (ESC, ECOC and tag tables) and from
//! queries. No value ever appears in the report.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use cipherdoc::Model;
use cipherdoc::bson::oid::ObjectId;
use cipherdoc::deploy::{DeployFinding, DeployOptions, check_deploy};
use cipherdoc::leakage::{
    CollectionLeakage, FieldIndex, LeakageOptions, LeakageReport, leakage_report,
};
use cipherdoc::model::Model as _;
use cipherdoc::testing::TestApp;

const FREQUENT: &str = "status-frequent-plaintext";
const RARE: &str = "status-rare-plaintext";

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Flat {
    id: ObjectId,
    #[encrypted(queries = "equality", contention = 0)]
    status: String,
    #[encrypted]
    note: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Spread {
    id: ObjectId,
    #[encrypted(queries = "equality", contention = 8)]
    status: String,
    #[encrypted(queries = "range", min = 0, max = 200, contention = 8)]
    age: i32,
}

fn statuses() -> impl Iterator<Item = (usize, &'static str)> {
    (0..200).map(|i| (i, if i % 5 < 3 { FREQUENT } else { RARE }))
}

/// `SELECT count(*)` over a table of the SQLite file.
fn count(db: &rusqlite::Connection, table: &str, filter: &str) -> u64 {
    db.query_row(
        &format!("SELECT count(*) FROM \"{table}\" {filter}"),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| u64::try_from(n).unwrap())
    .unwrap()
}

fn collection<'r>(report: &'r LeakageReport, name: &str) -> &'r CollectionLeakage {
    report
        .collections
        .iter()
        .find(|c| c.collection == name)
        .unwrap_or_else(|| panic!("{name} missing from {report:?}"))
}

#[tokio::test]
async fn a_skewed_field_warns_at_contention_0_not_at_8_and_its_numbers_are_the_databases() {
    let app = TestApp::reference()
        .register::<Flat>()
        .register::<Spread>()
        .migrated()
        .await
        .unwrap();
    let flat = app.objects::<Flat>();
    let spread = app.objects::<Spread>();
    flat.bulk_create(
        statuses()
            .map(|(i, s)| Flat {
                id: ObjectId::new(),
                status: s.into(),
                note: format!("note {i}"),
            })
            .collect(),
    )
    .await
    .unwrap();
    spread
        .bulk_create(
            statuses()
                .map(|(i, s)| Spread {
                    id: ObjectId::new(),
                    status: s.into(),
                    age: i32::try_from(i).unwrap(),
                })
                .collect(),
        )
        .await
        .unwrap();

    let db = app.app().database("encrypted").unwrap();
    let report = leakage_report(db, LeakageOptions::default()).await.unwrap();
    let text = report.to_string();
    println!("{text}");
    for secret in [FREQUENT, RARE, "note 1"] {
        assert!(!text.contains(secret), "a value in the report: {text}");
    }

    // Counts straight from the file.
    let file = rusqlite::Connection::open(app.database_file("encrypted")).unwrap();
    let flat_name = Flat::schema().collection.clone();
    let spread_name = Spread::schema().collection.clone();
    let frequent = flat
        .filter(Flat::fields().status.eq(FREQUENT))
        .count()
        .await
        .unwrap();
    assert_eq!(frequent, 120);

    // Contention 0: two counters, 120 and 80, the largest 60 % > 15 %.
    let c = collection(&report, &flat_name);
    assert_eq!(c.documents, count(&file, &flat_name, ""));
    let state = c.state.unwrap();
    assert_eq!(
        state.esc,
        count(&file, &format!("enxcol_.{flat_name}.esc"), "")
    );
    assert_eq!(
        state.ecoc,
        count(&file, &format!("enxcol_.{flat_name}.ecoc"), "")
    );
    let status = c.fields.iter().find(|f| f.path == "status").unwrap();
    assert_eq!(status.index, FieldIndex::Equality { contention: 0 });
    assert_eq!(status.documents, 200);
    let o = status.observed.unwrap();
    assert_eq!(o.value_counters, 2);
    assert_eq!(o.largest_counter, frequent);
    assert_eq!(
        o.value_inserts,
        count(
            &file,
            &format!("enxcol_.{flat_name}.ecoc"),
            "WHERE field = 'status'"
        )
    );
    // One tag per document, all of them status's.
    assert_eq!(
        o.value_inserts,
        count(&file, &format!("{flat_name}.$tags"), "")
    );
    let w = status.warning.expect("contention 0 at 60 % is warned");
    assert_eq!((w.largest_percent, w.contention), (60, 0));
    assert!(w.suggested_contention >= 4, "{w:?}");
    let note = c.fields.iter().find(|f| f.path == "note").unwrap();
    assert_eq!(note.index, FieldIndex::Unindexed);
    assert!(note.observed.is_none() && note.warning.is_none());
    assert!(note.observes().contains("length"));
    assert!(
        text.contains("WARNING: field 'status' of")
            && text.contains(&format!("contention {}", w.suggested_contention)),
        "{text}"
    );

    // Contention 8: the same split over up to 18 counters, none past 15 %.
    let c = collection(&report, &spread_name);
    let status = c.fields.iter().find(|f| f.path == "status").unwrap();
    let o = status.observed.unwrap();
    assert!((2..=18).contains(&o.value_counters), "{o:?}");
    assert_eq!(o.value_inserts, 200);
    assert!(o.largest_counter * 100 <= 15 * 200, "{o:?}");
    assert!(status.warning.is_none(), "{status:?}");
    // Range: one leaf counter per (value, bucket), and as many tokens per
    // insert as the ECOC holds entries per document.
    let age = c.fields.iter().find(|f| f.path == "age").unwrap();
    let o = age.observed.unwrap();
    assert_eq!(o.value_inserts, 200);
    let age_entries = count(
        &file,
        &format!("enxcol_.{spread_name}.ecoc"),
        "WHERE field = 'age'",
    );
    assert_eq!(o.tokens_per_insert, Some(age_entries / 200));
    assert!(
        o.tokens_per_insert.unwrap() > 1 && o.other_counters > 0,
        "{o:?}"
    );
    assert!(age.warning.is_none(), "distinct ages: {age:?}");
    assert_eq!(report.warnings().count(), 1);

    // check --deploy carries the warning; --skip-leakage leaves it out.
    let found = check_deploy(app.app(), DeployOptions::default())
        .await
        .unwrap();
    let leak: Vec<_> = found
        .iter()
        .filter(|f| matches!(f, DeployFinding::ContentionTooLow(_)))
        .collect();
    assert_eq!(leak.len(), 1, "{found:?}");
    assert_eq!(leak[0].id(), "deploy.leakage");
    assert!(
        leak[0]
            .to_string()
            .contains("showleakage --database encrypted")
    );
    let skipped = check_deploy(
        app.app(),
        DeployOptions {
            leakage: None,
            ..DeployOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(
        !skipped
            .iter()
            .any(|f| matches!(f, DeployFinding::ContentionTooLow(_)))
    );

    // A higher threshold accepts the skew.
    let lenient = leakage_report(
        db,
        LeakageOptions {
            max_bucket_percent: 70,
        },
    )
    .await
    .unwrap();
    assert_eq!(lenient.warnings().count(), 0);
}
