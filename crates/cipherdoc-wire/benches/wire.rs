//! Encrypted inserts and equality finds through the wire (`cipherdoc
//! serve`'s server in-process, clients speaking OP_MSG over loopback TCP),
//! against the same operations on the engine directly (the QE server role
//! over a SQLite engine), with 1 and 8 concurrent clients.
//!
//! ```console
//! cargo bench -p cipherdoc-wire --bench wire
//! ```
//!
//! Payloads are made outside the timed sections by the engine benches'
//! client (`cipherdoc-engine/benches/common`), as a driver would make them.
//! The wire client is this crate's own framing (`frame`): a driver adds its
//! own encoding cost on top, which is the client's, not the server's.
//! Each measured iteration is one operation; with 8 clients, the operations
//! are split over 8 connections (or 8 tasks on the engine) running at once,
//! so the time per iteration is the inverse of the total throughput.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The engine benches' driver-like client; their lint allowances are theirs.
#[path = "../../cipherdoc-engine/benches/common/mod.rs"]
#[allow(
    clippy::cast_possible_wrap,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions};
use cipherdoc_wire::client::Client;
use cipherdoc_wire::{Backend, Server, ServerConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const DB: &str = "bench";
const COLL: &str = "people";
/// Documents present before the finds (each value once).
const PRELOAD: usize = 2_000;

/// Document `i`'s value: each value once.
fn value(i: usize) -> String {
    format!("{i:09}")
}

/// A wire client that insists on `ok: 1`.
struct Wire(Client);

impl Wire {
    async fn connect(addr: &str) -> Self {
        Self(Client::connect(addr).await.unwrap())
    }

    async fn command(&mut self, body: &Document) -> Document {
        let reply = self.0.command(body).await.unwrap();
        assert!(
            reply.get_f64("ok").is_ok_and(|ok| ok > 0.5),
            "command failed: {reply}"
        );
        reply
    }
}

fn encryption_information(ef: &Document) -> Document {
    let mut schema = ef.clone();
    schema.insert("escCollection", format!("enxcol_.{COLL}.esc"));
    schema.insert("ecocCollection", format!("enxcol_.{COLL}.ecoc"));
    doc! {"type": 1, "schema": {format!("{DB}.{COLL}"): schema}}
}

struct Setup {
    rt: Runtime,
    client: common::Client,
    ef: Document,
    direct: QeServer,
    addr: String,
    counter: AtomicUsize,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = common::Client::new();
    let ef = client.ef(0);
    let direct_dir = tempfile::tempdir().unwrap();
    let wire_dir = tempfile::tempdir().unwrap();
    let direct = QeServer::new(Arc::new(
        SqliteEngine::open(direct_dir.path().join("direct.db")).unwrap(),
    ));
    let addr = rt.block_on(async {
        direct
            .create_collection(
                COLL,
                CreateCollectionOptions {
                    encrypted_fields: Some(ef.clone()),
                },
            )
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = Server::new(ServerConfig::new(Backend::Sqlite {
            dir: wire_dir.path().to_owned(),
        }));
        tokio::spawn(server.serve(listener, std::future::pending()));
        let mut w = Wire::connect(&addr).await;
        w.command(&doc! {"create": COLL, "encryptedFields": ef.clone(), "$db": DB})
            .await;
        addr
    });
    let s = Setup {
        rt,
        client,
        ef,
        direct,
        addr,
        counter: AtomicUsize::new(0),
        _dirs: (direct_dir, wire_dir),
    };
    // The same documents on both sides before the finds.
    let docs: Vec<Document> = (0..PRELOAD).map(|i| s.doc(i)).collect();
    s.rt.block_on(async {
        s.direct.insert_many(COLL, docs.clone()).await.unwrap();
        let mut w = Wire::connect(&s.addr).await;
        for chunk in docs.chunks(100) {
            w.command(
                &doc! {"insert": COLL, "documents": chunk.to_vec(), "$db": DB,
                "encryptionInformation": encryption_information(&s.ef)},
            )
            .await;
        }
    });
    s.counter.store(PRELOAD, Ordering::Relaxed);
    s
}

impl Setup {
    fn doc(&self, i: usize) -> Document {
        doc! {"n": i64::try_from(i).unwrap(), "ssn": self.client.insert(&value(i), 0)}
    }

    /// `n` fresh documents (values never inserted before).
    fn fresh(&self, n: usize) -> Vec<Document> {
        let start = self.counter.fetch_add(n, Ordering::Relaxed);
        (start..start + n).map(|i| self.doc(i)).collect()
    }
}

/// Split `items` over `clients` and time them all running at once.
fn split<T: Clone>(items: &[T], clients: usize) -> Vec<Vec<T>> {
    let per = items.len().div_ceil(clients).max(1);
    items.chunks(per).map(<[T]>::to_vec).collect()
}

/// Run `work` over `clients` shares of `items` at once, each share with its
/// own state made by `open` before the clock starts; the elapsed time.
async fn timed<T, S, O, OF, W, WF>(items: &[T], clients: usize, open: O, work: W) -> Duration
where
    T: Clone + Send + 'static,
    S: Send + 'static,
    O: Fn() -> OF,
    OF: Future<Output = S>,
    W: Fn(S, Vec<T>) -> WF,
    WF: Future<Output = ()> + Send + 'static,
{
    let mut shares = Vec::new();
    for part in split(items, clients) {
        shares.push((open().await, part));
    }
    let start = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|(state, part)| tokio::spawn(work(state, part)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn inserts(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("encrypted insert_one");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let ei = encryption_information(&s.ef);
    for clients in [1usize, 8] {
        g.bench_function(format!("engine/{clients} clients"), |b| {
            b.iter_custom(|iters| {
                let docs = s.fresh(usize::try_from(iters).unwrap());
                s.rt.block_on(timed(
                    &docs,
                    clients,
                    || async { s.direct.clone() },
                    |qe, part| async move {
                        for d in part {
                            qe.insert_one(COLL, d).await.unwrap();
                        }
                    },
                ))
            });
        });
        g.bench_function(format!("wire/{clients} clients"), |b| {
            b.iter_custom(|iters| {
                let docs = s.fresh(usize::try_from(iters).unwrap());
                s.rt.block_on(timed(
                    &docs,
                    clients,
                    || Wire::connect(&s.addr),
                    |mut w, part| {
                        let ei = ei.clone();
                        async move {
                            for d in part {
                                let r = w
                                    .command(&doc! {"insert": COLL, "documents": [d], "$db": DB,
                                    "encryptionInformation": ei.clone()})
                                    .await;
                                assert_eq!(r.get_i32("n").unwrap(), 1);
                            }
                        }
                    },
                ))
            });
        });
    }
    g.finish();
}

fn finds(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("encrypted equality find (1 match)");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    // Payloads for values inserted once each, made before timing.
    let payloads: Vec<Bson> = (0..512)
        .map(|i| s.client.find(&value(i * 3 % PRELOAD), 0))
        .collect();
    let take = |iters: u64| -> Vec<Bson> {
        (0..usize::try_from(iters).unwrap())
            .map(|i| payloads[i % payloads.len()].clone())
            .collect()
    };
    let ei = encryption_information(&s.ef);
    for clients in [1usize, 8] {
        g.bench_function(format!("engine/{clients} clients"), |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(timed(
                    &take(iters),
                    clients,
                    || async { s.direct.clone() },
                    |qe, part| async move {
                        for p in part {
                            let found = qe
                                .find(COLL, &Filter::eq("ssn", p), &FindOptions::default())
                                .await
                                .unwrap();
                            assert_eq!(found.len(), 1);
                        }
                    },
                ))
            });
        });
        g.bench_function(format!("wire/{clients} clients"), |b| {
            b.iter_custom(|iters| {
                s.rt.block_on(timed(
                    &take(iters),
                    clients,
                    || Wire::connect(&s.addr),
                    |mut w, part| {
                        let ei = ei.clone();
                        async move {
                            for p in part {
                                let r = w
                                    .command(&doc! {"find": COLL, "filter": {"ssn": {"$eq": p}},
                                    "$db": DB, "encryptionInformation": ei.clone()})
                                    .await;
                                let batch = r
                                    .get_document("cursor")
                                    .unwrap()
                                    .get_array("firstBatch")
                                    .unwrap();
                                assert_eq!(batch.len(), 1);
                            }
                        }
                    },
                ))
            });
        });
    }
    g.finish();
}

fn all(c: &mut Criterion) {
    let s = setup();
    inserts(c, &s);
    finds(c, &s);
}

criterion_group!(benches, all);
criterion_main!(benches);
