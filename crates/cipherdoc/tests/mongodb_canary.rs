//! Invariant 18, tested: the MongoDB engine never sends a plaintext of an
//! encrypted field. The model layer saves, queries, updates and deletes
//! documents with unique canaries in encrypted and plaintext fields through
//! `engine = "mongodb"` against `cipherdoc serve` (over SQLite files),
//! through a loopback proxy that records every byte the driver sends. The
//! plaintext canaries must be in the recording and in the server's files
//! (the scans see the data); the encrypted ones in neither.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bson::oid::ObjectId;
use cipherdoc::{App, EmbeddedModel, Model};
use cipherdoc_wire::client::RecordingProxy;

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Card {
    pub kind: String,
    pub number: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "canary")]
pub struct Record {
    pub id: ObjectId,
    pub public_note: String,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "equality")]
    pub code: i64,
    #[encrypted(queries = "range", min = 0, max = 1_000_000)]
    pub score: i64,
    #[encrypted]
    pub card: Card,
    #[encrypted]
    pub diagnosis: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mongodb_engine_never_sends_an_encrypted_plaintext() {
    let data = tempfile::tempdir().unwrap();
    let server = common::serve_sqlite(data.path(), |c| c);
    let proxy = RecordingProxy::start(server).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A direct connection: the driver must not discover the server's own
    // address (which `hello` names) and bypass the proxy.
    let url = format!("mongodb://{}/?directConnection=true", proxy.addr);
    let app = App::open(common::mongodb_settings(
        dir.path(),
        &url,
        "canary_db",
        "canary",
        "",
    ))
    .await
    .unwrap()
    .register::<Record>()
    .unwrap();
    common::create_encrypted_collection::<Record>(&app).await;
    let objects = app.objects::<Record>();

    let run = ObjectId::new().to_hex();
    let secret = |i: u32, what: &str| format!("SECRET{what}{run}{i:04}");
    let code_base: i64 =
        7_391_000_000_000 + i64::from(u16::from_str_radix(&run[20..], 16).unwrap());
    let mut secrets = Vec::new();
    let mut publics = Vec::new();
    for i in 0..20u32 {
        let r = Record {
            id: ObjectId::new(),
            public_note: format!("PUBLIC{run}{i:04}"),
            ssn: secret(i, "SSN"),
            code: code_base + i64::from(i),
            score: 500_000 + i64::from(i),
            card: Card {
                kind: secret(i, "KIND"),
                number: secret(i, "CARD"),
            },
            diagnosis: secret(i, "DIAG"),
        };
        publics.push(r.public_note.clone());
        secrets.extend([
            r.ssn.clone(),
            r.card.kind.clone(),
            r.card.number.clone(),
            r.diagnosis.clone(),
        ]);
        objects.create(r).await.unwrap();
    }
    let f = Record::fields();
    assert_eq!(
        objects
            .filter(f.ssn.eq(secret(3, "SSN")))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        objects
            .filter(f.code.is_in([code_base, code_base + 1]))
            .count()
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        objects.filter(f.score.gte(500_015)).count().await.unwrap(),
        5
    );
    let mut one = objects.get(f.ssn.eq(secret(5, "SSN"))).await.unwrap();
    assert_eq!(one.diagnosis, secret(5, "DIAG"));
    one.diagnosis = secret(99, "DIAG");
    secrets.push(one.diagnosis.clone());
    objects.save(&one).await.unwrap();
    assert_eq!(
        objects
            .get(f.ssn.eq(secret(5, "SSN")))
            .await
            .unwrap()
            .diagnosis,
        secret(99, "DIAG")
    );
    objects
        .filter(f.ssn.eq(secret(7, "SSN")))
        .delete()
        .await
        .unwrap();
    assert_eq!(objects.count().await.unwrap(), 19);
    let err = objects
        .get(f.ssn.eq(secret(777, "SSN")))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("SECRET"), "{err}");
    drop(objects);
    drop(app);

    let sent = proxy.sent.lock().unwrap().clone();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let all_files: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for p in &publics {
        assert!(
            common::contains(&sent, p.as_bytes()),
            "{p} must be in what was sent"
        );
        assert!(
            common::contains(&all_files, p.as_bytes()),
            "{p} must be stored"
        );
    }
    for s in &secrets {
        assert!(
            !common::contains(&sent, s.as_bytes()),
            "encrypted canary sent"
        );
        for (name, bytes) in &files {
            assert!(
                !common::contains(bytes, s.as_bytes()),
                "encrypted canary in {name}"
            );
        }
    }
    for i in 0..20 {
        let le = (code_base + i).to_le_bytes();
        assert!(
            !common::contains(&sent, &le),
            "encrypted number canary sent"
        );
    }
}
