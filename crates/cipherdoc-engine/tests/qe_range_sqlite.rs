//! Range fields through the QE server role on SQLite (qe-protocol §8, §9.4,
//! §9.6–§9.8): for every range type and several sparsity/trimFactor
//! settings, random values (duplicates, negatives, the ends of the domain,
//! -0.0, decimals with different exponents) and random bounds, every query
//! returns exactly what the same query returns on the plaintext — before and
//! after compaction and cleanup, and after replacements.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::too_many_arguments,
    clippy::cast_possible_wrap
)]

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use cipherdoc_crypto::client::UserKey;
use cipherdoc_crypto::client_range::{
    RangeFindOperators, encrypt_range_find, encrypt_range_insert, range_options_from_document,
    range_value_from_bson, range_value_to_bson, resolve_range_options,
};
use cipherdoc_crypto::payload::RangeOperator;
use cipherdoc_crypto::range::{RangeIndex, decimal128_from_str};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom, RandomSource};
use cipherdoc_engine::qe_server::{CompactionTokens, QeServer};
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions};

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
}

/// The plaintext order of a value (the oracle).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Key {
    I(i128),
    F(f64),
}

fn cmp(a: Key, b: Key) -> Ordering {
    a.partial_cmp(&b).expect("comparable plaintext values")
}

#[derive(Debug, Clone)]
struct Val {
    bson: Bson,
    key: Key,
}

fn dec(s: &str) -> Val {
    Val {
        bson: Bson::Decimal128(decimal128_from_str(s).unwrap()),
        // Every test decimal has at most 15 significant digits, so the
        // nearest double keeps their order and equality.
        key: Key::F(s.parse::<f64>().unwrap()),
    }
}

fn val(b: Bson) -> Val {
    let key = match &b {
        Bson::Int32(n) => Key::I(i128::from(*n)),
        Bson::Int64(n) => Key::I(i128::from(*n)),
        Bson::DateTime(d) => Key::I(i128::from(d.timestamp_millis())),
        Bson::Double(d) => Key::F(*d),
        other => panic!("no key for {other:?}"),
    };
    Val { bson: b, key }
}

/// One range field configuration and a value generator.
struct Config {
    name: &'static str,
    bson_type: &'static str,
    /// `min`, `max`, `precision` (sparsity and trimFactor are added).
    options: Document,
    sparsity: i64,
    trim_factor: Option<i32>,
    contention: u64,
    /// Values with special meaning (domain ends, zeros, equal decimals).
    specials: Vec<Val>,
    random: fn(&mut Rng) -> Val,
}

fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "int32_small_sp1_tf0",
            bson_type: "int",
            options: doc! {"min": -100, "max": 100},
            sparsity: 1,
            trim_factor: Some(0),
            contention: 0,
            specials: [-100, 100, 0, -1, 1].map(|n| val(Bson::Int32(n))).to_vec(),
            random: |r| val(Bson::Int32(i32::try_from(r.below(201)).unwrap() - 100)),
        },
        Config {
            name: "int32_full_sp2_tfdefault_cm2",
            bson_type: "int",
            options: doc! {"min": i32::MIN, "max": i32::MAX},
            sparsity: 2,
            trim_factor: None,
            contention: 2,
            specials: [i32::MIN, i32::MAX, i32::MIN + 1, 0, -1]
                .map(|n| val(Bson::Int32(n)))
                .to_vec(),
            #[allow(clippy::cast_possible_truncation)]
            random: |r| val(Bson::Int32(r.next() as i32 >> r.below(31))),
        },
        Config {
            name: "int64_2e40_sp3_tf4",
            bson_type: "long",
            options: doc! {"min": -(1_i64 << 40), "max": 1_i64 << 40},
            sparsity: 3,
            trim_factor: Some(4),
            contention: 1,
            specials: [-(1_i64 << 40), 1 << 40, 0, -1]
                .map(|n| val(Bson::Int64(n)))
                .to_vec(),
            #[allow(clippy::cast_possible_wrap)]
            random: |r| val(Bson::Int64((r.next() as i64) >> (23 + r.below(40)))),
        },
        Config {
            name: "int64_full_sp4_tf2",
            bson_type: "long",
            options: doc! {"min": i64::MIN, "max": i64::MAX},
            sparsity: 4,
            trim_factor: Some(2),
            contention: 0,
            specials: [i64::MIN, i64::MAX, i64::MAX - 1, 0]
                .map(|n| val(Bson::Int64(n)))
                .to_vec(),
            #[allow(clippy::cast_possible_wrap)]
            random: |r| val(Bson::Int64((r.next() as i64) >> r.below(63))),
        },
        Config {
            name: "date_sp2_tf1",
            bson_type: "date",
            options: doc! {"min": bson::DateTime::from_millis(-86_400_000), "max": bson::DateTime::from_millis(4_102_444_800_000)},
            sparsity: 2,
            trim_factor: Some(1),
            contention: 0,
            specials: [-86_400_000, 4_102_444_800_000, 0]
                .map(|n| val(Bson::DateTime(bson::DateTime::from_millis(n))))
                .to_vec(),
            random: |r| {
                let ms = i64::try_from(r.below(4_102_444_800_000 + 86_400_000 + 1)).unwrap();
                val(Bson::DateTime(bson::DateTime::from_millis(ms - 86_400_000)))
            },
        },
        Config {
            name: "double_sp2_tfdefault",
            bson_type: "double",
            options: doc! {},
            sparsity: 2,
            trim_factor: None,
            contention: 0,
            specials: [
                f64::MAX,
                -f64::MAX,
                0.0,
                -0.0,
                1.5,
                -1.5,
                f64::MIN_POSITIVE,
                1e300,
            ]
            .map(|d| val(Bson::Double(d)))
            .to_vec(),
            random: |r| {
                let d = f64::from(i32::try_from(r.below(2001)).unwrap() - 1000) / 8.0;
                val(Bson::Double(d))
            },
        },
        Config {
            name: "double_precision2_sp1_tf3",
            bson_type: "double",
            options: doc! {"min": -100.0, "max": 100.0, "precision": 2},
            sparsity: 1,
            trim_factor: Some(3),
            contention: 0,
            specials: [-100.0, 100.0, 0.0, -0.0, 0.01, -0.01]
                .map(|d| val(Bson::Double(d)))
                .to_vec(),
            random: |r| {
                // Values at the index's precision (two decimals).
                let n = i32::try_from(r.below(20_001)).unwrap() - 10_000;
                val(Bson::Double(f64::from(n) / 100.0))
            },
        },
        Config {
            name: "decimal_sp4_tfdefault",
            bson_type: "decimal",
            options: doc! {},
            sparsity: 4,
            trim_factor: None,
            contention: 0,
            specials: [
                "1.5", "150E-2", "1.50", "-0", "0", "0E+3", "-1.5", "1E+20", "-1E+20",
            ]
            .map(dec)
            .to_vec(),
            random: |r| {
                let n = i64::try_from(r.below(20_001)).unwrap() - 10_000;
                let e = i64::try_from(r.below(5)).unwrap() - 3;
                dec(&format!("{n}E{e}"))
            },
        },
        Config {
            name: "decimal_precision2_sp2_tf0",
            bson_type: "decimal",
            options: doc! {
                "min": Bson::Decimal128(decimal128_from_str("-100").unwrap()),
                "max": Bson::Decimal128(decimal128_from_str("100").unwrap()),
                "precision": 2,
            },
            sparsity: 2,
            trim_factor: Some(0),
            contention: 0,
            specials: ["-100", "100", "0", "0.10", "0.1", "10E-2", "-0.01"]
                .map(dec)
                .to_vec(),
            random: |r| {
                let n = i64::try_from(r.below(20_001)).unwrap() - 10_000;
                dec(&format!("{n}E-2"))
            },
        },
    ]
}

fn enc(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Encrypted,
        bytes,
    })
}

/// Client side of one range collection.
struct Client {
    key_id: KeyId,
    key: DataKey,
    tokens: IndexKeyTokens,
    index: RangeIndex,
    contention: u64,
}

impl Client {
    fn insert(&self, v: &Bson) -> Bson {
        let p = encrypt_range_insert(
            v,
            &self.index,
            &self.tokens,
            UserKey {
                id: self.key_id,
                key: &self.key,
            },
            self.contention,
            &mut OsRandom,
        )
        .unwrap();
        enc(p.encode())
    }

    /// The filter for `lo (≤|<) v (≤|<) hi` (`None` = open end), or `None`
    /// when the client refuses the range as empty.
    fn query(&self, lo: Option<(&Bson, bool)>, hi: Option<(&Bson, bool)>) -> Option<Filter> {
        let min = range_value_to_bson(self.index.index_min());
        let max = range_value_to_bson(self.index.index_max());
        let (lo, lo_inc) = lo.unwrap_or((&min, true));
        let (hi, hi_inc) = hi.unwrap_or((&max, true));
        let ops = RangeFindOperators {
            payload_id: 0,
            first: if lo_inc {
                RangeOperator::Gte
            } else {
                RangeOperator::Gt
            },
            second: Some(if hi_inc {
                RangeOperator::Lte
            } else {
                RangeOperator::Lt
            }),
        };
        let p = encrypt_range_find(
            lo,
            lo_inc,
            hi,
            hi_inc,
            &self.index,
            &self.tokens,
            self.contention,
            ops,
        )
        .ok()?;
        Some(Filter::gte("v", enc(p.encode())))
    }

    fn tokens(&self) -> CompactionTokens {
        CompactionTokens::new().with_range_field(
            "v",
            self.tokens.ecoc().clone(),
            self.tokens.anchor_padding_root(),
        )
    }
}

fn in_range(k: Key, lo: Option<(Key, bool)>, hi: Option<(Key, bool)>) -> bool {
    let lo_ok = lo.is_none_or(|(b, inc)| match cmp(k, b) {
        Ordering::Greater => true,
        Ordering::Equal => inc,
        Ordering::Less => false,
    });
    let hi_ok = hi.is_none_or(|(b, inc)| match cmp(k, b) {
        Ordering::Less => true,
        Ordering::Equal => inc,
        Ordering::Greater => false,
    });
    lo_ok && hi_ok
}

async fn ids(e: &QeServer, c: &str, f: &Filter) -> BTreeSet<i64> {
    e.find(c, f, &FindOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i64("_id").unwrap())
        .collect()
}

/// Random queries against the plaintext `docs` (`_id` → value).
async fn check_queries(
    e: &QeServer,
    c: &str,
    client: &Client,
    docs: &[(i64, Val)],
    pool: &[Val],
    rng: &mut Rng,
    n: usize,
    stage: &str,
) -> (usize, usize) {
    let (mut run, mut selective) = (0, 0);
    let all: BTreeSet<i64> = docs.iter().map(|(i, _)| *i).collect();
    for q in 0..n {
        let bound = |rng: &mut Rng| -> Option<(Val, bool)> {
            (rng.below(5) != 0).then(|| (rng.pick(pool).clone(), rng.below(2) == 0))
        };
        let (mut lo, mut hi) = (bound(rng), bound(rng));
        if q % 7 == 0 {
            // Equality as the range [v, v].
            let v = rng.pick(pool).clone();
            lo = Some((v.clone(), true));
            hi = Some((v, true));
        }
        let lo_k = lo.as_ref().map(|(v, i)| (v.key, *i));
        let hi_k = hi.as_ref().map(|(v, i)| (v.key, *i));
        let want: BTreeSet<i64> = docs
            .iter()
            .filter(|(_, v)| in_range(v.key, lo_k, hi_k))
            .map(|(i, _)| *i)
            .collect();
        let Some(f) = client.query(
            lo.as_ref().map(|(v, i)| (&v.bson, *i)),
            hi.as_ref().map(|(v, i)| (&v.bson, *i)),
        ) else {
            assert!(
                want.is_empty(),
                "{c} {stage}: the client called {lo:?}..{hi:?} empty but plaintext matches {want:?}"
            );
            continue;
        };
        let got = ids(e, c, &f).await;
        assert_eq!(got, want, "{c} {stage}: query {lo:?} .. {hi:?}");
        if !want.is_empty() && want.len() < all.len() {
            // Counted so the test shows it is not answering trivially.
            selective += 1;
        }
        // Negation and a two-sided query written as full payload + stub.
        if q % 3 == 0 {
            let not = ids(e, c, &Filter::Not(Box::new(f.clone()))).await;
            let comp: BTreeSet<i64> = all.difference(&want).copied().collect();
            assert_eq!(not, comp, "{c} {stage}: not {lo:?} .. {hi:?}");
            let stub =
                cipherdoc_crypto::client_range::encrypt_range_find_stub(RangeFindOperators {
                    payload_id: 0,
                    first: RangeOperator::Lte,
                    second: None,
                });
            let with_stub = Filter::And(vec![f, Filter::lte("v", enc(stub.encode()))]);
            assert_eq!(ids(e, c, &with_stub).await, want, "{c} {stage}: with stub");
            assert_eq!(e.count(c, &with_stub).await.unwrap(), want.len() as u64);
        }
        run += 1;
    }
    (run, selective)
}

fn tally(total: &mut (usize, usize), (run, selective): (usize, usize)) {
    total.0 += run;
    total.1 += selective;
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    OsRandom.fill(&mut b).unwrap();
    let s = u64::from_le_bytes(b) | 1;
    std::env::var("RANGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_match_plaintext_before_and_after_compaction() {
    let seed = seed();
    println!("RANGE_SEED={seed}");
    let mut rng = Rng(seed);
    let e = QeServer::new(Arc::new(SqliteEngine::temporary().unwrap()));
    let mut total_queries = (0, 0);
    for cfg in configs() {
        let c = cfg.name;
        let key_id = KeyId::generate(&mut OsRandom).unwrap();
        let key = DataKey::generate(&mut OsRandom).unwrap();
        let mut q = cfg.options.clone();
        q.insert("queryType", "range");
        q.insert("contention", i64::try_from(cfg.contention).unwrap());
        q.insert("sparsity", cfg.sparsity);
        if let Some(tf) = cfg.trim_factor {
            q.insert("trimFactor", tf);
        }
        e.create_collection(
            c,
            CreateCollectionOptions {
                encrypted_fields: Some(doc! {"fields": [{
                    "path": "v", "keyId": key_id.to_binary(), "bsonType": cfg.bson_type, "queries": q,
                }]}),
            },
        )
        .await
        .unwrap();
        let mut opts = cfg.options.clone();
        opts.insert("sparsity", cfg.sparsity);
        if let Some(tf) = cfg.trim_factor {
            opts.insert("trimFactor", tf);
        }
        let options = range_options_from_document(&opts).unwrap();
        let index = resolve_range_options(&options, &cfg.specials[0].bson).unwrap();
        let client = Client {
            tokens: IndexKeyTokens::new(key_id, &key),
            key_id,
            key,
            index,
            contention: cfg.contention,
        };

        // Values: the specials, random ones, and duplicates of both.
        let mut pool: Vec<Val> = cfg.specials.clone();
        for _ in 0..12 {
            pool.push((cfg.random)(&mut rng));
        }
        let mut docs: Vec<(i64, Val)> = Vec::new();
        for i in 0..30_i64 {
            let v = if i < pool.len() as i64 {
                pool[usize::try_from(i).unwrap()].clone()
            } else {
                rng.pick(&pool).clone()
            };
            docs.push((i, v));
        }
        let batch: Vec<Document> = docs
            .iter()
            .map(|(i, v)| doc! {"_id": *i, "v": client.insert(&v.bson)})
            .collect();
        e.insert_many(c, batch).await.unwrap();

        // Every stored value has exactly its edges' tags.
        let edges = client.index.edge_count();
        for d in e
            .find(c, &Filter::And(vec![]), &FindOptions::default())
            .await
            .unwrap()
        {
            let sc = d.get_array("__safeContent__").unwrap();
            assert_eq!(sc.len(), edges, "{c}: one tag per edge");
            let blob = match d.get("v") {
                Some(Bson::Binary(b)) => b.bytes.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(blob.first(), Some(&15), "{c}: stored as subtype 15");
        }

        tally(
            &mut total_queries,
            check_queries(&e, c, &client, &docs, &pool, &mut rng, 25, "fresh").await,
        );

        // Compaction (with padding), more inserts, a replacement, cleanup.
        let stats = e.compact(c, &client.tokens()).await.unwrap();
        assert!(stats.anchors_inserted > 0, "{c}: {stats:?}");
        if cfg.contention == 0 {
            // §9.7 step 4: pathLength × uniqueLeaves − uniqueTokens pads.
            let mut leaves = BTreeSet::new();
            let mut strings = BTreeSet::new();
            for (_, v) in &docs {
                let rv = range_value_from_bson(&v.bson).unwrap();
                let es = client.index.edges(&rv).unwrap();
                leaves.insert(es.leaf().to_owned());
                strings.extend(es.to_strings());
            }
            assert_eq!(stats.unique_counters, strings.len() as u64, "{c}");
            assert_eq!(
                stats.padding_anchors_inserted,
                (edges * leaves.len() - strings.len()) as u64,
                "{c}: {stats:?}"
            );
        }
        assert!(stats.non_anchors_deleted > 0, "{c}: {stats:?}");
        tally(
            &mut total_queries,
            check_queries(&e, c, &client, &docs, &pool, &mut rng, 15, "compacted").await,
        );

        for i in 30..40_i64 {
            let v = rng.pick(&pool).clone();
            e.insert_one(c, doc! {"_id": i, "v": client.insert(&v.bson)})
                .await
                .unwrap();
            docs.push((i, v));
        }
        let new = (cfg.random)(&mut rng);
        assert!(
            e.replace_one(
                c,
                &Bson::Int64(3),
                doc! {"_id": 3_i64, "v": client.insert(&new.bson)}
            )
            .await
            .unwrap()
        );
        docs[3].1 = new.clone();
        pool.push(new);
        let d = e
            .find(c, &Filter::eq("_id", 3_i64), &FindOptions::default())
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(d.get_array("__safeContent__").unwrap().len(), edges);
        tally(
            &mut total_queries,
            check_queries(&e, c, &client, &docs, &pool, &mut rng, 15, "after inserts").await,
        );

        let stats = e.cleanup(c, &client.tokens()).await.unwrap();
        assert!(stats.null_anchors_written > 0, "{c}: {stats:?}");
        tally(
            &mut total_queries,
            check_queries(&e, c, &client, &docs, &pool, &mut rng, 15, "cleaned").await,
        );
        e.compact(c, &client.tokens()).await.unwrap();
        e.cleanup(c, &client.tokens()).await.unwrap();
        tally(
            &mut total_queries,
            check_queries(
                &e,
                c,
                &client,
                &docs,
                &pool,
                &mut rng,
                10,
                "compacted twice",
            )
            .await,
        );
    }
    let (all, selective) = total_queries;
    println!(
        "{all} range queries matched their plaintext answers ({selective} matched some but not all documents)"
    );
    assert!(all > 400 && selective > 150, "{all} {selective}");
}

/// What the server role refuses on a range field, and that a refusal
/// writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_refusals() {
    use cipherdoc_engine::EngineError;
    use cipherdoc_engine::qe_server::QeError;
    let e = QeServer::new(Arc::new(SqliteEngine::temporary().unwrap()));
    let key_id = KeyId::generate(&mut OsRandom).unwrap();
    let key = DataKey::generate(&mut OsRandom).unwrap();
    e.create_collection(
        "r",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {"fields": [{"path": "v", "keyId": key_id.to_binary(), "bsonType": "int",
                "queries": {"queryType": "range", "contention": 0, "min": 0, "max": 200, "sparsity": 1}}]}),
        },
    )
    .await
    .unwrap();
    let opts = range_options_from_document(&doc! {"min": 0, "max": 200, "sparsity": 1}).unwrap();
    let client = Client {
        tokens: IndexKeyTokens::new(key_id, &key),
        key_id,
        key,
        index: resolve_range_options(&opts, &Bson::Int32(0)).unwrap(),
        contention: 0,
    };
    e.insert_one(
        "r",
        doc! {"_id": 1_i64, "v": client.insert(&Bson::Int32(5))},
    )
    .await
    .unwrap();
    let esc_before = {
        let mut tx = e.begin_read().await.unwrap();
        tx.qe_state().unwrap().esc_count("r").await.unwrap()
    };
    assert_eq!(esc_before, client.index.edge_count() as u64);

    // An insert payload made for other range options (another sparsity:
    // another edge count) is refused.
    let other = resolve_range_options(
        &range_options_from_document(&doc! {"min": 0, "max": 200, "sparsity": 2}).unwrap(),
        &Bson::Int32(0),
    )
    .unwrap();
    let wrong = Client {
        index: other,
        tokens: client.tokens.clone(),
        key_id,
        key: DataKey::generate(&mut OsRandom).unwrap(),
        contention: 0,
    };
    let err = e
        .insert_one("r", doc! {"_id": 2, "v": wrong.insert(&Bson::Int32(5))})
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Qe(QeError::InvalidDocument { .. })),
        "{err}"
    );
    // A find payload made for other range options is refused by name, not
    // answered with the matches its edges happen to share.
    let other_min = Client {
        index: resolve_range_options(
            &range_options_from_document(&doc! {"min": -10, "max": 200, "sparsity": 1}).unwrap(),
            &Bson::Int32(0),
        )
        .unwrap(),
        tokens: client.tokens.clone(),
        key_id,
        key: DataKey::generate(&mut OsRandom).unwrap(),
        contention: 0,
    };
    for (c, option) in [(&wrong, "sparsity 2"), (&other_min, "min -10")] {
        let q = c.query(Some((&Bson::Int32(1), true)), None).unwrap();
        let err = e.find("r", &q, &FindOptions::default()).await.unwrap_err();
        assert!(
            matches!(&err, EngineError::Qe(QeError::InvalidQuery { path, .. }) if path == "v"),
            "{err}"
        );
        assert!(err.to_string().contains(option), "{err}");
    }
    // The right options still find the document.
    let q = client.query(Some((&Bson::Int32(1), true)), None).unwrap();
    assert_eq!(
        e.find("r", &q, &FindOptions::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // Plaintext, and operators that cannot carry a range payload.
    let err = e
        .insert_one("r", doc! {"_id": 3, "v": 5})
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Qe(QeError::InvalidDocument { .. })),
        "{err}"
    );
    let q = client.query(Some((&Bson::Int32(1), true)), None).unwrap();
    let Filter::Field {
        op: cipherdoc_engine::FieldOp::Gte(payload),
        ..
    } = q
    else {
        panic!("a range query is a $gte on the field")
    };
    for f in [
        Filter::ne("v", payload.clone()),
        Filter::is_in("v", vec![payload.clone()]),
        Filter::gte("v", 5),
    ] {
        let err = e.find("r", &f, &FindOptions::default()).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Qe(QeError::InvalidQuery { .. })),
            "{err}"
        );
    }
    // Compaction of a range field needs the anchor padding token.
    let err = e
        .compact(
            "r",
            &CompactionTokens::new().with_field("v", client.tokens.ecoc().clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Qe(QeError::Tokens { .. })),
        "{err}"
    );
    let mut tx = e.begin_read().await.unwrap();
    assert_eq!(
        tx.qe_state().unwrap().esc_count("r").await.unwrap(),
        esc_before,
        "nothing written"
    );
    assert_eq!(
        tx.qe_state().unwrap().ecoc_count("r").await.unwrap(),
        esc_before
    );
    drop(tx);
    assert_eq!(
        ids(&e, "r", &Filter::gte("v", payload)).await,
        BTreeSet::from([1])
    );
}
