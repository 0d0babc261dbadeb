//! Each command is logged at debug level by name, database and collection,
//! and no value ever reaches the log: a canary written in documents,
//! filters, updates, failing commands and collection options never shows up
//! in the debug log, while the commands do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use bson::{Document, doc};
use cipherdoc_wire::frame::{self, HEADER_LEN, Header};
use cipherdoc_wire::{Backend, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const CANARY: &str = "CANARY-7f3a-do-not-log";

async fn command(s: &mut TcpStream, body: &Document) -> Document {
    s.write_all(&frame::encode_msg(1, 0, 0, body).unwrap())
        .await
        .unwrap();
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).await.unwrap();
    let h = Header::parse(&head).unwrap();
    let mut rest = vec![0u8; h.length - HEADER_LEN];
    s.read_exact(&mut rest).await.unwrap();
    frame::decode_reply(&h, &rest).unwrap()
}

#[tokio::test]
async fn debug_log_names_commands_and_never_values() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new(ServerConfig::new(Backend::Sqlite {
            dir: dir.path().to_owned(),
        }))
        .serve(listener, async {
            let _ = stopped.await;
        }),
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    let db = "logdb";
    let cmds = [
        doc! {"createIndexes": "c", "indexes": [{"key": {"secret": 1}, "name": "secret_1", "unique": true}], "$db": db},
        doc! {"insert": "c", "documents": [{"_id": 1, "secret": CANARY}], "$db": db},
        // A duplicate: the error names the key in its reply, not in the log.
        doc! {"insert": "c", "documents": [{"_id": 2, "secret": CANARY}], "$db": db},
        doc! {"find": "c", "filter": {"secret": CANARY}, "$db": db},
        doc! {"update": "c", "updates": [{"q": {"secret": CANARY}, "u": {"$set": {"other": CANARY}}}], "$db": db},
        doc! {"find": "c", "filter": {"secret": {"$regex": CANARY}}, "$db": db},
        doc! {"aggregate": "c", "pipeline": [{"$match": {"secret": CANARY}}, {"$bogus": CANARY}], "cursor": {}, "$db": db},
        doc! {"delete": "c", "deletes": [{"q": {"secret": CANARY}, "limit": 1}], "$db": db},
    ];
    let mut replies = Vec::new();
    for c in &cmds {
        replies.push(command(&mut s, c).await);
    }
    assert_eq!(replies[1].get_i32("n").unwrap(), 1);
    assert_eq!(
        replies[2].get_array("writeErrors").unwrap().len(),
        1,
        "{}",
        replies[2]
    );
    drop(s);
    let _ = stop.send(());
    server.await.unwrap();
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    for name in [
        "insert",
        "find",
        "update",
        "aggregate",
        "delete",
        "createIndexes",
    ] {
        assert!(
            text.contains(&format!("command={name}")),
            "{name} not logged:\n{text}"
        );
    }
    assert!(text.contains("collection=\"c\""), "{text}");
    assert!(!text.contains("CANARY"), "a value reached the log:\n{text}");
}
