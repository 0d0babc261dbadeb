//! Shared by the benchmarks: `engine` (the groups `sqlite` and `pg_engine`
//! both run), and for the QE benchmarks (`qe_sqlite`, `qe_pg`) a client that
//! encrypts one equality field `ssn` the way a driver would (insert
//! payloads and find payloads, done outside every timed section), the
//! benchmark's value pattern and percentiles.
//!
//! Included with `mod common;` by each bench; not every bench uses every
//! item.

#![allow(dead_code)]

pub mod engine;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cipherdoc_engine::{Engine, Filter, FindOptions};
use criterion::Criterion;
use tokio::runtime::Runtime;

use bson::{Bson, Document, doc};
use cipherdoc_crypto::client::{UserKey, encrypt_equality_find, encrypt_equality_insert};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};

/// A client holding one data key, used as the index key of `ssn`.
pub struct Client {
    id: KeyId,
    key: DataKey,
    tokens: IndexKeyTokens,
}

impl Client {
    pub fn new() -> Self {
        let id = KeyId::generate(&mut OsRandom).unwrap();
        let key = DataKey::generate(&mut OsRandom).unwrap();
        let tokens = IndexKeyTokens::new(id, &key);
        Self { id, key, tokens }
    }

    /// `encryptedFields`: `ssn`, an encrypted equality string field with
    /// contention factor `cm`.
    pub fn ef(&self, cm: u64) -> Document {
        doc! {"fields": [{"path": "ssn", "keyId": self.id.to_binary(), "bsonType": "string",
        "queries": {"queryType": "equality", "contention": cm as i64}}]}
    }

    /// An insert payload (BinData 6, subtype 11) for `v`.
    pub fn insert(&self, v: &str, cm: u64) -> Bson {
        let p = encrypt_equality_insert(
            &Bson::String(v.into()),
            &self.tokens,
            UserKey {
                id: self.id,
                key: &self.key,
            },
            cm,
            &mut OsRandom,
        )
        .unwrap();
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: p.encode(),
        })
    }

    /// A find payload (BinData 6, subtype 12) for `v`.
    pub fn find(&self, v: &str, cm: u64) -> Bson {
        let p = encrypt_equality_find(&Bson::String(v.into()), &self.tokens, cm).unwrap();
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: p.encode(),
        })
    }
}

/// Whether values arrive shuffled (`CIPHERDOC_BENCH_ARRIVAL=shuffled`) or
/// in ascending order (the default, `sorted`).
pub fn shuffled() -> bool {
    static SHUFFLED: OnceLock<bool> = OnceLock::new();
    *SHUFFLED
        .get_or_init(|| std::env::var("CIPHERDOC_BENCH_ARRIVAL").is_ok_and(|v| v == "shuffled"))
}

/// `sorted` or `shuffled`, for the printed lines.
pub fn arrival() -> &'static str {
    if shuffled() { "shuffled" } else { "sorted" }
}

/// The `ssn` of document `i`. Each value is held by 10 documents (of every
/// 1,000 consecutive ones, when they are all there).
///
/// - `sorted`: documents `10k..10k+10` hold value `k`, so values arrive in
///   ascending order. A plaintext index then only ever appends at its right
///   edge: the best case for the plaintext side of the insert comparison.
///   (Encrypted inserts write random keys, ESC ids and tags, either way.)
/// - `shuffled`: within each block of 1,000 documents, positions are
///   permuted (919 is prime to 1,000) and the 100 groups of 10 are
///   scattered over the key space (a bijection of `0..10^9`: the multiplier
///   is prime to 10). Values arrive as, say, patients' SSNs would.
pub fn ssn(i: usize) -> String {
    if !shuffled() {
        return format!("{:09}", i / 10);
    }
    let pos = i / 1000 * 1000 + (i % 1000) * 919 % 1000;
    let group = (pos / 10) as u64;
    format!("{:09}", group * 387_420_489 % 1_000_000_000)
}

/// Whether documents are patient records (`CIPHERDOC_BENCH_DOC=record`)
/// or minimal (the default, `minimal`).
pub fn records() -> bool {
    static RECORDS: OnceLock<bool> = OnceLock::new();
    *RECORDS.get_or_init(|| std::env::var("CIPHERDOC_BENCH_DOC").is_ok_and(|v| v == "record"))
}

/// Document `i`: `ssn` as an insert payload for contention `cm`, or in
/// plaintext (`None`).
///
/// - `minimal` (the default): `{n, ssn}` and nothing else, so that the
///   encrypted field's cost is as large a share of a document's as it can
///   be: the hardest case for the encrypted/plaintext ratios.
/// - `record`: a patient record like the clinic demo's, with about 400
///   bytes of plaintext fields (name, birth date, contact details, notes)
///   beside `ssn`, the only encrypted (and indexed) field.
pub fn document(client: &Client, i: usize, cm: Option<u64>) -> Document {
    let v = ssn(i);
    let ssn = cm.map_or_else(|| Bson::String(v.clone()), |cm| client.insert(&v, cm));
    let mut d = doc! {"n": i as i64, "ssn": ssn};
    if records() {
        let k = i as i64;
        let blood_type = ["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"][i % 8];
        d.extend(doc! {
            "name": format!("Patient {k:07} Example-Surname"),
            "date_of_birth": bson::DateTime::from_millis(-315_619_200_000 + k % 20_000 * 86_400_000),
            "address": {"street": format!("{} Harbour Road", k % 997), "city": "Springfield", "postcode": format!("{:05}", k % 99_991)},
            "phone": format!("+1-555-{:07}", k % 10_000_000),
            "email": format!("patient{k}@example.org"),
            "blood_type": blood_type,
            "allergies": ["penicillin", "latex"],
            "notes": "Follow-up in six weeks; continue current medication and record blood pressure twice daily.",
            "created_at": bson::DateTime::from_millis(1_700_000_000_000 + k * 1000),
        });
    }
    d
}

/// `minimal` or `record`, for the printed lines.
pub fn doc_shape() -> &'static str {
    if records() { "record" } else { "minimal" }
}

/// p50 and p90 of `v`.
pub fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}

/// One query benchmark: label, engine, collection, filters to cycle through.
pub type Case = (String, Arc<dyn Engine>, String, Vec<Filter>);

/// The four query kinds over 500 values of an `n`-document load:
/// `encrypted_eq_cm0` and `_cm8` through `qe` (collections `enc0`,
/// `enc8`), then `plain_indexed_eq_raw` on `raw` and
/// `plain_indexed_eq_via_qe` on `plain_via_qe` (collection `plain`).
pub fn query_cases(
    client: &Client,
    n: usize,
    qe: &Arc<dyn Engine>,
    raw: &Arc<dyn Engine>,
    plain_via_qe: &Arc<dyn Engine>,
) -> Vec<Case> {
    let values: Vec<String> = (0..500).map(|k| ssn((k * 7919) % n)).collect();
    let plain: Vec<Filter> = values
        .iter()
        .map(|v| Filter::eq("ssn", v.clone()))
        .collect();
    let mut cases: Vec<Case> = [0_u64, 8]
        .into_iter()
        .map(|cm| {
            (
                format!("encrypted_eq_cm{cm}"),
                Arc::clone(qe),
                format!("enc{cm}"),
                values
                    .iter()
                    .map(|v| Filter::eq("ssn", client.find(v, cm)))
                    .collect(),
            )
        })
        .collect();
    cases.push((
        "plain_indexed_eq_raw".into(),
        Arc::clone(raw),
        "plain".into(),
        plain.clone(),
    ));
    cases.push((
        "plain_indexed_eq_via_qe".into(),
        Arc::clone(plain_via_qe),
        "plain".into(),
        plain,
    ));
    cases
}

/// Criterion's estimate of each case (one after another), in `group`.
pub fn criterion_cases(c: &mut Criterion, group: String, rt: &Runtime, cases: &[Case]) {
    let mut g = c.benchmark_group(group);
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for (label, e, coll, filters) in cases {
        let mut k = 0;
        g.bench_function(label.as_str(), |b| {
            b.iter(|| {
                k = (k + 1) % filters.len();
                let r = rt
                    .block_on(e.find(coll, &filters[k], &FindOptions::default()))
                    .unwrap();
                assert_eq!(r.len(), 10);
            });
        });
    }
    g.finish();
}

/// 2,000 rounds, each running one query of every case in turn, so that
/// all cases see the same machine load; each query must find 10
/// documents. Prints p50 (p90) per case and the encrypted/plaintext p50
/// ratios (cases as [`query_cases`] orders them).
pub fn timed_queries(rt: &Runtime, n: usize, cases: &[Case]) {
    let times = rt.block_on(async {
        let mut times = vec![Vec::with_capacity(2000); cases.len()];
        for i in 0..2000 {
            for ((_, e, coll, filters), out) in cases.iter().zip(&mut times) {
                let f = &filters[i % filters.len()];
                let t = Instant::now();
                let r = e.find(coll, f, &FindOptions::default()).await.unwrap();
                out.push(t.elapsed());
                assert_eq!(r.len(), 10);
            }
        }
        times
    });
    let p50s: Vec<Duration> = times.iter().map(|t| percentiles(t.clone()).0).collect();
    for ((label, ..), t) in cases.iter().zip(times) {
        let (p50, p90) = percentiles(t);
        eprintln!(
            "p50 n={n} arrival={} {label}: {p50:.1?} (p90 {p90:.1?})",
            arrival()
        );
    }
    let ratio = |i: usize| p50s[i].as_secs_f64() / p50s[2].as_secs_f64();
    eprintln!(
        "ratio n={n}: cm0 {:.2}x (target <= 3), cm8 {:.2}x (target <= 5)",
        ratio(0),
        ratio(1)
    );
}

/// Documents `from..from + count`: `ssn` encrypted for contention 8 (an
/// insert payload) or in plaintext; new values, 10 documents each.
pub fn new_docs(client: &Client, from: usize, count: usize, encrypted: bool) -> Vec<Document> {
    (from..from + count)
        .map(|i| document(client, i, encrypted.then_some(8)))
        .collect()
}

/// Encrypted inserts into `enc8` through `encrypted` and plaintext ones into
/// `plain` through `plain`, taking turns (`one` single documents each, then
/// `batches` batches of 100 each), so that both see the same load; prints
/// docs/s and the ratio. Documents are numbered from `first`; returns the
/// next free number.
pub fn timed_inserts(
    rt: &Runtime,
    n: usize,
    client: &Client,
    encrypted: &dyn Engine,
    plain: &dyn Engine,
    first: usize,
    (one, batches): (usize, usize),
) -> usize {
    let mut next = first;
    let mut take = |count: usize| {
        let from = next;
        next += count;
        from
    };
    let one_enc = new_docs(client, take(one), one, true);
    let one_plain = new_docs(client, take(one), one, false);
    let many_enc: Vec<Vec<Document>> = (0..batches)
        .map(|_| new_docs(client, take(100), 100, true))
        .collect();
    let many_plain: Vec<Vec<Document>> = (0..batches)
        .map(|_| new_docs(client, take(100), 100, false))
        .collect();
    let mut spent = [Duration::ZERO; 4];
    rt.block_on(async {
        for (de, dp) in one_enc.into_iter().zip(one_plain) {
            let t = Instant::now();
            encrypted.insert_one("enc8", de).await.unwrap();
            spent[0] += t.elapsed();
            let t = Instant::now();
            plain.insert_one("plain", dp).await.unwrap();
            spent[1] += t.elapsed();
        }
        for (be, bp) in many_enc.into_iter().zip(many_plain) {
            let t = Instant::now();
            encrypted.insert_many("enc8", be).await.unwrap();
            spent[2] += t.elapsed();
            let t = Instant::now();
            plain.insert_many("plain", bp).await.unwrap();
            spent[3] += t.elapsed();
        }
    });
    let rate = |i: usize, docs: usize| docs as f64 / spent[i].as_secs_f64();
    for (label, e, p) in [
        ("insert_one", rate(0, one), rate(1, one)),
        (
            "insert_many(100)",
            rate(2, batches * 100),
            rate(3, batches * 100),
        ),
    ] {
        eprintln!(
            "insert n={n} arrival={} doc={} {label}: encrypted_cm8 {e:.0} docs/s, plain_indexed {p:.0} docs/s ({:.0}%)",
            arrival(),
            doc_shape(),
            100.0 * e / p
        );
    }
    next
}
