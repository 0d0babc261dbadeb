//! Each command is logged at debug level by name, database and collection,
//! and no value ever reaches the log: a canary written in documents,
//! filters, updates, failing commands and collection options never shows up
//! in the debug log, while the commands do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bson::doc;
use cipherdoc_wire::client::Client;

const CANARY: &str = "CANARY-7f3a-do-not-log";

#[tokio::test]
async fn debug_log_names_commands_and_never_values() {
    let logs = common::logs(tracing::Level::DEBUG);
    let server = common::start().await;
    let mut client = Client::connect(&server.addr).await.unwrap();
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
        replies.push(client.command(c).await.unwrap());
    }
    assert_eq!(replies[1].get_i32("n").unwrap(), 1);
    assert_eq!(
        replies[2].get_array("writeErrors").unwrap().len(),
        1,
        "{}",
        replies[2]
    );
    drop(client);
    let _ = server.stop.send(());
    server.task.await.unwrap();
    let text = logs.text();
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
