#![allow(clippy::pedantic, clippy::all)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]
use bson::{Bson, Document, doc};
use cipherdoc_crypto::client::{UserKey, encrypt_equality_find, encrypt_equality_insert};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions, IndexSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};
struct Client {
    id: KeyId,
    key: DataKey,
    tokens: IndexKeyTokens,
}

impl Client {
    fn new() -> Self {
        let id = KeyId::generate(&mut OsRandom).unwrap();
        let key = DataKey::generate(&mut OsRandom).unwrap();
        let tokens = IndexKeyTokens::new(id, &key);
        Self { id, key, tokens }
    }
    fn ef(&self, cm: u64) -> Document {
        doc! {"fields": [{"path": "ssn", "keyId": self.id.to_binary(), "bsonType": "string",
        "queries": {"queryType": "equality", "contention": cm as i64}}]}
    }
    fn insert(&self, v: &str, cm: u64) -> Bson {
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
    fn find(&self, v: &str, cm: u64) -> Bson {
        let p = encrypt_equality_find(&Bson::String(v.into()), &self.tokens, cm).unwrap();
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: p.encode(),
        })
    }
}

fn ssn(i: usize) -> String {
    format!("{:09}", i / 10)
}

fn cpu_ns() -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let p = e.unwrap().path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(p) {
            total += s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        }
    }
    total
}

fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = SqliteEngine::open(dir.path().join("p.db")).unwrap();
    let qe = QeServer::new(Arc::new(raw.clone()));
    let client = Client::new();
    let t = Instant::now();
    rt.block_on(async {
        for cm in [0u64, 8] {
            qe.create_collection(
                &format!("enc{cm}"),
                CreateCollectionOptions {
                    encrypted_fields: Some(client.ef(cm)),
                },
            )
            .await
            .unwrap();
        }
        raw.create_index("plain", IndexSpec::new("ssn"))
            .await
            .unwrap();
        for start in (0..n).step_by(1000) {
            let end = (start + 1000).min(n);
            for cm in [0u64, 8] {
                let docs: Vec<Document> = (start..end)
                    .map(|i| doc! {"n": i as i64, "ssn": client.insert(&ssn(i), cm)})
                    .collect();
                qe.insert_many(&format!("enc{cm}"), docs).await.unwrap();
            }
            let docs: Vec<Document> = (start..end)
                .map(|i| doc! {"n": i as i64, "ssn": ssn(i)})
                .collect();
            raw.insert_many("plain", docs).await.unwrap();
        }
    });
    eprintln!("built in {:?}", t.elapsed());
    let values: Vec<String> = (0..500).map(|k| ssn((k * 7919) % n)).collect();
    let p0: Vec<Bson> = values.iter().map(|v| client.find(v, 0)).collect();
    let p8: Vec<Bson> = values.iter().map(|v| client.find(v, 8)).collect();
    if let Some(only) = std::env::args().nth(2) {
        let k: usize = only.parse().unwrap();
        if k == 3 {
            let docs: Vec<Document> = (0..20000)
                .map(|i| doc! {"n": (n + i) as i64, "ssn": client.insert(&ssn(n + i), 8)})
                .collect();
            eprintln!("LOOP");
            let t = Instant::now();
            for d in docs {
                rt.block_on(qe.insert_one("enc8", d)).unwrap();
            }
            eprintln!("{:?}/insert", t.elapsed() / 20000);
            return;
        }
        eprintln!("LOOP");
        for i in 0..30000 {
            let j = i % 500;
            let r = match k {
                0 => rt
                    .block_on(raw.find(
                        "plain",
                        &Filter::eq("ssn", values[j].clone()),
                        &FindOptions::default(),
                    ))
                    .unwrap(),
                1 => rt
                    .block_on(qe.find(
                        "enc0",
                        &Filter::eq("ssn", p0[j].clone()),
                        &FindOptions::default(),
                    ))
                    .unwrap(),
                _ => rt
                    .block_on(qe.find(
                        "enc8",
                        &Filter::eq("ssn", p8[j].clone()),
                        &FindOptions::default(),
                    ))
                    .unwrap(),
            };
            assert_eq!(r.len(), 10);
        }
        return;
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    let mut cpu = [0u64; 3];
    for round in 0..10 {
        for (k, t) in times.iter_mut().enumerate() {
            let c0 = cpu_ns();
            for i in 0..500 {
                let j = (i + round * 37) % 500;
                let t0 = Instant::now();
                let r = match k {
                    0 => rt
                        .block_on(raw.find(
                            "plain",
                            &Filter::eq("ssn", values[j].clone()),
                            &FindOptions::default(),
                        ))
                        .unwrap(),
                    1 => rt
                        .block_on(qe.find(
                            "enc0",
                            &Filter::eq("ssn", p0[j].clone()),
                            &FindOptions::default(),
                        ))
                        .unwrap(),
                    _ => rt
                        .block_on(qe.find(
                            "enc8",
                            &Filter::eq("ssn", p8[j].clone()),
                            &FindOptions::default(),
                        ))
                        .unwrap(),
                };
                t.push(t0.elapsed());
                assert_eq!(r.len(), 10);
            }
            cpu[k] += cpu_ns() - c0;
        }
    }
    // Inserts, interleaved: encrypted cm8 insert_one vs plaintext insert_one.
    let mut wall = [Duration::ZERO; 4];
    let mut icpu = [0u64; 4];
    let mut next = n;
    for _round in 0..10 {
        let enc: Vec<Document> = (0..300)
            .map(|i| doc! {"n": (next + i) as i64, "ssn": client.insert(&ssn(next + i), 8)})
            .collect();
        let enc_many: Vec<Vec<Document>> = (0..3).map(|b| (0..100).map(|i| doc! {"n": (next + b * 100 + i) as i64, "ssn": client.insert(&ssn(next + b * 100 + i), 8)}).collect()).collect();
        let plain: Vec<Document> = (0..300)
            .map(|i| doc! {"n": (next + i) as i64, "ssn": ssn(next + i)})
            .collect();
        let plain_many: Vec<Vec<Document>> = (0..3)
            .map(|b| {
                (0..100)
                    .map(
                        |i| doc! {"n": (next + b * 100 + i) as i64, "ssn": ssn(next + b * 100 + i)},
                    )
                    .collect()
            })
            .collect();
        next += 300;
        let (c0, t0) = (cpu_ns(), Instant::now());
        for d in enc {
            rt.block_on(qe.insert_one("enc8", d)).unwrap();
        }
        wall[0] += t0.elapsed();
        icpu[0] += cpu_ns() - c0;
        let (c0, t0) = (cpu_ns(), Instant::now());
        for d in plain {
            rt.block_on(raw.insert_one("plain", d)).unwrap();
        }
        wall[1] += t0.elapsed();
        icpu[1] += cpu_ns() - c0;
        let (c0, t0) = (cpu_ns(), Instant::now());
        for d in enc_many {
            rt.block_on(qe.insert_many("enc8", d)).unwrap();
        }
        wall[2] += t0.elapsed();
        icpu[2] += cpu_ns() - c0;
        let (c0, t0) = (cpu_ns(), Instant::now());
        for d in plain_many {
            rt.block_on(raw.insert_many("plain", d)).unwrap();
        }
        wall[3] += t0.elapsed();
        icpu[3] += cpu_ns() - c0;
    }
    let rate = |k: usize| 3000.0 / wall[k].as_secs_f64();
    let crate_ = |k: usize| 3000.0 / (icpu[k] as f64 / 1e9);
    eprintln!(
        "n={n} insert_one docs/s: enc8 {:.0} plain {:.0} ({:.0}%); CPU-based {:.0} vs {:.0} ({:.0}%)",
        rate(0),
        rate(1),
        100.0 * rate(0) / rate(1),
        crate_(0),
        crate_(1),
        100.0 * crate_(0) / crate_(1)
    );
    eprintln!(
        "n={n} insert_many(100) docs/s: enc8 {:.0} plain {:.0} ({:.0}%); CPU-based {:.0} vs {:.0} ({:.0}%)",
        rate(2),
        rate(3),
        100.0 * rate(2) / rate(3),
        crate_(2),
        crate_(3),
        100.0 * crate_(2) / crate_(3)
    );
    let per = |k: usize| cpu[k] as f64 / 5000.0 / 1000.0;
    eprintln!(
        "n={n} CPU per query: plain {:.1}us enc0 {:.1}us ({:.2}x) enc8 {:.1}us ({:.2}x)",
        per(0),
        per(1),
        per(1) / per(0),
        per(2),
        per(2) / per(0)
    );
    let p50: Vec<Duration> = times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect();
    eprintln!(
        "n={n} plain {:?} enc0 {:?} ({:.2}x) enc8 {:?} ({:.2}x)",
        p50[0],
        p50[1],
        p50[1].as_secs_f64() / p50[0].as_secs_f64(),
        p50[2],
        p50[2].as_secs_f64() / p50[0].as_secs_f64()
    );
}
