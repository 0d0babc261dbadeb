//! Text-search fields end to end: a model with prefix, suffix (both on one
//! field) and substring fields saved through the app and queried with
//! `starts_with`, `ends_with`, `contains` and `eq`, each answer compared
//! with plaintext matching under the field's folding; queries outside the
//! field's lengths, empty queries and values too long are refused with
//! errors that name the field and never the value; compaction keeps the
//! answers.
#![allow(clippy::unwrap_used)]

mod common;

use bson::oid::ObjectId;
use cipherdoc::{App, Error, Model};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "texts")]
pub struct Contact {
    pub id: ObjectId,
    pub n: i64,
    /// Prefix and suffix, folding case and diacritics.
    #[encrypted(
        queries = "prefix, suffix",
        min_query_length = 2,
        max_query_length = 8,
        case_sensitive = false,
        diacritic_sensitive = false,
        contention = 0
    )]
    pub surname: String,
    /// Substring, case- and diacritic-sensitive (the defaults).
    #[encrypted(
        queries = "substring",
        max_length = 30,
        min_query_length = 3,
        max_query_length = 6
    )]
    pub email: String,
    /// Prefix only, default contention.
    #[encrypted(queries = "prefix", min_query_length = 1, max_query_length = 4)]
    pub city: String,
}

const SURNAMES: [&str; 8] = [
    "Müller",
    "Mueller",
    "MÜLLER",
    "Miller",
    "Álvarez",
    "alvarez",
    "Østergaard",
    "Mills",
];
const CITIES: [&str; 4] = ["Bern", "Berlin", "Basel", "Graz"];

fn row(n: i64) -> Contact {
    let i = usize::try_from(n).unwrap();
    Contact {
        id: ObjectId::new(),
        n,
        surname: SURNAMES[i % SURNAMES.len()].to_owned(),
        email: format!("user{n}@example.org"),
        city: CITIES[i % CITIES.len()].to_owned(),
    }
}

const ROWS: i64 = 16;

async fn app() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::settings(dir.path(), "texts", "encrypted"))
        .await
        .unwrap()
        .register::<Contact>()
        .unwrap();
    common::create_encrypted_collection::<Contact>(&app).await;
    (dir, app)
}

/// Lower case without diacritics, for the few letters the rows use (the
/// oracle of a case- and diacritic-insensitive field).
fn folded(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ü' | 'Ü' => 'u',
            'á' | 'Á' => 'a',
            'Ø' | 'ø' => 'ø',
            c => c.to_lowercase().next().unwrap(),
        })
        .collect()
}

fn ns(mut v: Vec<Contact>) -> Vec<i64> {
    v.sort_by_key(|p| p.n);
    v.into_iter().map(|p| p.n).collect()
}

fn want(rows: &[Contact], f: impl Fn(&Contact) -> bool) -> Vec<i64> {
    rows.iter().filter(|p| f(p)).map(|p| p.n).collect()
}

async fn check_all(app: &App, rows: &[Contact]) {
    let objects = app.objects::<Contact>();
    let f = Contact::fields();
    for q in ["mü", "MUELL", "mil", "ÁLV", "øs", "mi"] {
        let got = ns(objects
            .filter(f.surname.starts_with(q))
            .all()
            .await
            .unwrap());
        let fq = folded(q);
        assert_eq!(
            got,
            want(rows, |p| folded(&p.surname).starts_with(&fq)),
            "starts_with {q}"
        );
    }
    for q in ["ler", "LLER", "rez", "ls", "aard"] {
        let got = ns(objects.filter(f.surname.ends_with(q)).all().await.unwrap());
        let fq = folded(q);
        assert_eq!(
            got,
            want(rows, |p| folded(&p.surname).ends_with(&fq)),
            "ends_with {q}"
        );
    }
    for q in ["user1", "@exa", "r1@", "ser", "USER"] {
        let got = ns(objects.filter(f.email.contains(q)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.email.contains(q)), "contains {q}");
    }
    for q in ["B", "Ber", "Bern", "g"] {
        let got = ns(objects.filter(f.city.starts_with(q)).all().await.unwrap());
        assert_eq!(got, want(rows, |p| p.city.starts_with(q)), "city {q}");
    }
    // Equality is equality after folding.
    let got = ns(objects.filter(f.surname.eq("muller")).all().await.unwrap());
    assert_eq!(got, want(rows, |p| folded(&p.surname) == "muller"));
    let got = ns(objects.filter(f.city.eq("Bern")).all().await.unwrap());
    assert_eq!(got, want(rows, |p| p.city == "Bern"));
    // Combined with a plaintext condition and negated.
    let got = ns(objects
        .filter(f.surname.starts_with("mi") & !f.city.starts_with("B"))
        .all()
        .await
        .unwrap());
    assert_eq!(
        got,
        want(rows, |p| folded(&p.surname).starts_with("mi")
            && !p.city.starts_with('B'))
    );
}

fn refused_naming(e: &Error, field: &str, secret: &str) {
    let msg = e.to_string();
    assert!(msg.contains(field), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
    assert!(matches!(e, Error::TextSearch { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lookups_match_plaintext_and_refusals_name_the_field() {
    let (_dir, app) = app().await;
    let objects = app.objects::<Contact>();
    let rows: Vec<Contact> = (0..ROWS).map(row).collect();
    for r in &rows {
        objects.create(r.clone()).await.unwrap();
    }
    for r in &rows {
        let got = objects.get(Contact::fields().n.eq(r.n)).await.unwrap();
        assert_eq!(&got, r);
    }
    check_all(&app, &rows).await;

    let f = Contact::fields();
    // Longer than max_query_length, shorter than min_query_length, empty.
    for (q, field, secret) in [
        (f.surname.starts_with("Secretive"), "surname", "Secretive"),
        (f.surname.ends_with("Ž"), "surname", "Ž"),
        (f.email.contains("ab"), "email", "ab"),
        (f.email.contains("toolong"), "email", "toolong"),
        (f.city.starts_with(""), "city", "\u{1}"),
    ] {
        let e = objects.filter(q).all().await.unwrap_err();
        refused_naming(&e, field, secret);
    }
    // A value longer than the substring field's max_length.
    let mut long = row(99);
    long.email = format!("{}@example.org", "x".repeat(40));
    let e = objects.create(long).await.unwrap_err();
    refused_naming(&e, "email", "xxxxxxxxxx");
    assert_eq!(
        objects.all().await.unwrap().len(),
        rows.len(),
        "nothing written"
    );

    // Compaction keeps every answer.
    let db = app.database("encrypted").unwrap();
    let coll = <Contact as cipherdoc::model::Model>::schema()
        .collection
        .clone();
    let stats = db.compact(&coll).await.unwrap();
    assert!(stats.padding_anchors_inserted > 0, "{stats:?}");
    check_all(&app, &rows).await;
    db.cleanup(&coll).await.unwrap();
    check_all(&app, &rows).await;
}
