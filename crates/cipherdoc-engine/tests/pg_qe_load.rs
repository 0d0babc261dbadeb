//! Issue 8's load tests on PostgreSQL, through the QE server role:
//! 16 connections × 500 inserts of one encrypted value (contention 0 and 8),
//! and a 30-second mix of inserts, updates, deletes and queries from 8
//! clients whose every query is checked against a plain in-memory model.
//! Runs when `CIPHERDOC_TEST_POSTGRES_URL` is set; skipped (with the reason
//! printed) otherwise.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::Bson;
use cipherdoc_engine::postgres::{PgEngine, PgOptions, testing};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::qe_server::suite::TestClient;
use cipherdoc_engine::{Engine, Filter, FindOptions};

async fn engine(connections: usize) -> Option<Arc<QeServer>> {
    let url = testing::test_url()?;
    let pg = PgEngine::temporary_with(&url, PgOptions::default().max_connections(connections))
        .await
        .expect("a fresh schema on the test PostgreSQL server");
    Some(Arc::new(QeServer::new(Arc::new(pg))))
}

async fn ids(e: &dyn Engine, c: &str, f: &Filter) -> BTreeSet<i32> {
    e.find(c, f, &FindOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect()
}

async fn same_value(cm: u64) {
    let Some(e) = engine(16).await else { return };
    let client = Arc::new(TestClient::new(cm));
    let c = "hot";
    client.create_collection(&*e, c).await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (e, client) = (Arc::clone(&e), Arc::clone(&client));
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                e.insert_one(c, client.document(t * 1000 + i, "same", 7, "n"))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let q = client.find_payload("name", &Bson::String("same".into()));
    let found = ids(&*e, c, &Filter::eq("name", q)).await;
    assert_eq!(found.len(), 8000, "every document is found (cm {cm})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_connections_same_value_cm0() {
    same_value(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_connections_same_value_cm8() {
    same_value(8).await;
}

/// A tiny deterministic generator (no dependency needed for test noise).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_second_mixed_workload_matches_a_plain_model() {
    let Some(e) = engine(8).await else { return };
    let client = Arc::new(TestClient::new(2));
    let c = "mix";
    client.create_collection(&*e, c).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tasks = Vec::new();
    for t in 0..8i32 {
        let (e, client) = (Arc::clone(&e), Arc::clone(&client));
        tasks.push(tokio::spawn(async move {
            // Each client owns its ids and its values ("c<t>v<k>"), so its
            // own model is exact while it runs; the values of all clients
            // share the collection, the ESC and the tag index. "shared" is
            // written by everyone and checked once all are done.
            let mut model: BTreeMap<i32, String> = BTreeMap::new();
            let mut rng = Lcg(u64::try_from(t).unwrap() + 1);
            let mut next_id = t * 1_000_000;
            let mut ops = 0u32;
            while Instant::now() < deadline && ops < 20_000 {
                ops += 1;
                let value = |rng: &mut Lcg| {
                    if rng.next(5) == 0 {
                        "shared".to_owned()
                    } else {
                        format!("c{t}v{}", rng.next(4))
                    }
                };
                match rng.next(10) {
                    0..=3 => {
                        let v = value(&mut rng);
                        e.insert_one(c, client.document(next_id, &v, 1, "n"))
                            .await
                            .unwrap();
                        model.insert(next_id, v);
                        next_id += 1;
                    }
                    4..=5 if !model.is_empty() => {
                        let k = *model
                            .keys()
                            .nth(usize::try_from(rng.next(model.len() as u64)).unwrap())
                            .unwrap();
                        let v = value(&mut rng);
                        assert!(
                            e.replace_one(c, &Bson::Int32(k), client.document(k, &v, 2, "u"))
                                .await
                                .unwrap()
                        );
                        model.insert(k, v);
                    }
                    6 if !model.is_empty() => {
                        let k = *model
                            .keys()
                            .nth(usize::try_from(rng.next(model.len() as u64)).unwrap())
                            .unwrap();
                        assert_eq!(e.delete_one(c, &Filter::eq("_id", k)).await.unwrap(), 1);
                        model.remove(&k);
                    }
                    _ => {
                        let v = format!("c{t}v{}", rng.next(4));
                        let got = ids(
                            &*e,
                            c,
                            &Filter::eq(
                                "name",
                                client.find_payload("name", &Bson::String(v.clone())),
                            ),
                        )
                        .await;
                        let want: BTreeSet<i32> = model
                            .iter()
                            .filter(|(_, x)| **x == v)
                            .map(|(k, _)| *k)
                            .collect();
                        assert_eq!(got, want, "client {t}, query {v}");
                    }
                }
            }
            model
        }));
    }
    let mut all = BTreeMap::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let shared: BTreeSet<i32> = all
        .iter()
        .filter(|(_, v)| *v == "shared")
        .map(|(k, _)| *k)
        .collect();
    let got = ids(
        &*e,
        c,
        &Filter::eq(
            "name",
            client.find_payload("name", &Bson::String("shared".into())),
        ),
    )
    .await;
    assert_eq!(got, shared);
    assert_eq!(e.count(c, &Filter::all()).await.unwrap(), all.len() as u64);
}
