//! Shared by the QE benchmarks (`qe_sqlite`, `qe_pg`): a client that
//! encrypts one equality field `ssn` the way a driver would (insert
//! payloads and find payloads, done outside every timed section), the
//! benchmark's value pattern and percentiles.
//!
//! Included with `mod common;` by each bench; not every bench uses every
//! item.

#![allow(dead_code)]

use std::sync::Arc;
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

/// The `ssn` of document `i`: each value repeats 10 times.
pub fn ssn(i: usize) -> String {
    format!("{:09}", i / 10)
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
        eprintln!("p50 n={n} {label}: {p50:.1?} (p90 {p90:.1?})");
    }
    let ratio = |i: usize| p50s[i].as_secs_f64() / p50s[2].as_secs_f64();
    eprintln!(
        "ratio n={n}: cm0 {:.2}x (target <= 3), cm8 {:.2}x (target <= 5)",
        ratio(0),
        ratio(1)
    );
}
