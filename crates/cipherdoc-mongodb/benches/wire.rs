//! The cost of the wire: the same encrypted workload (insert of a document
//! with an equality-indexed field, equality count) on the MongoDB engine
//! against `cipherdoc serve` over SQLite, and on the SQLite engine directly
//! (with the QE server role in process). Small N, so it runs in minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use bson::Bson;
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::qe_server::suite::TestClient;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{Engine, Filter};
use cipherdoc_mongodb::MongoEngine;
use cipherdoc_wire::testing::serve_in_background_on;
use cipherdoc_wire::{Backend, ServerConfig};
use criterion::{Criterion, criterion_group, criterion_main};

/// Documents present before the count is measured.
const PREFILL: i32 = 200;

/// `cipherdoc serve` over SQLite files in `dir`, on a thread and a
/// one-worker runtime of its own; its address.
fn serve(dir: std::path::PathBuf) -> String {
    serve_in_background_on(ServerConfig::new(Backend::Sqlite { dir }), 1).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(dir.path().to_path_buf());
    let client = TestClient::new(0);
    let engines: Vec<(&str, Arc<dyn Engine>)> = rt.block_on(async {
        let mongo: Arc<dyn Engine> = Arc::new(
            MongoEngine::connect(&format!("mongodb://{addr}/"), "bench")
                .await
                .unwrap(),
        );
        let sqlite: Arc<dyn Engine> =
            Arc::new(QeServer::new(Arc::new(SqliteEngine::temporary().unwrap())));
        vec![
            ("mongodb_via_serve_sqlite", mongo),
            ("sqlite_direct", sqlite),
        ]
    });
    for (name, e) in &engines {
        rt.block_on(async {
            client.create_collection(e.as_ref(), "people").await;
            for i in 0..PREFILL {
                e.insert_one(
                    "people",
                    client.document(i, &format!("n{}", i % 20), 30, "n"),
                )
                .await
                .unwrap();
            }
        });
        let next = AtomicI32::new(PREFILL);
        c.bench_function(&format!("wire/{name}/insert_encrypted"), |b| {
            b.to_async(&rt).iter(|| async {
                let i = next.fetch_add(1, Ordering::Relaxed);
                e.insert_one("people", client.document(i, "inserted", 30, "n"))
                    .await
                    .unwrap();
            });
        });
        let q = client.find_payload("name", &Bson::String("n7".into()));
        let filter = Filter::eq("name", q);
        c.bench_function(&format!("wire/{name}/count_equality"), |b| {
            b.to_async(&rt).iter(|| async {
                let n = e.count("people", &filter).await.unwrap();
                assert_eq!(n, u64::try_from(PREFILL / 20).unwrap());
            });
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
