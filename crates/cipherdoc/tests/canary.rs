//! Invariant 1, tested: no plaintext of an encrypted field reaches the
//! database files or the logs. Unique canaries go into encrypted and
//! plaintext fields through the whole stack (settings, App, encrypter, QE
//! server role, SQLite); then the raw bytes of every file in the database
//! folder (database, WAL, key vault) and everything logged at TRACE level are
//! scanned. The plaintext canaries must be found (the scan sees the data);
//! the encrypted ones must not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bson::oid::ObjectId;
use cipherdoc::{App, EmbeddedModel, Model};

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
    #[encrypted]
    pub card: Card,
    #[encrypted]
    pub diagnosis: String,
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_encrypted_plaintext_in_files_or_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let run = ObjectId::new().to_hex();
    let secret = |i: u32, what: &str| format!("SECRET{what}{run}{i:04}");
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(common::settings(dir.path(), "canary", "encrypted"))
        .await
        .unwrap()
        .register::<Record>()
        .unwrap();
    common::create_encrypted_collection::<Record>(&app).await;
    let objects = app.objects::<Record>();
    let mut secrets = Vec::new();
    let mut publics = Vec::new();
    // A number canary: unique digits that a plaintext int64 would store as
    // these exact 8 little-endian bytes.
    let code_base: i64 =
        7_391_000_000_000 + i64::from(u16::from_str_radix(&run[20..], 16).unwrap());
    for i in 0..40u32 {
        let r = Record {
            id: ObjectId::new(),
            public_note: format!("PUBLIC{run}{i:04}"),
            ssn: secret(i, "SSN"),
            code: code_base + i64::from(i),
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
    // Queries, an update, a failing query and a failing save also run.
    let ssn = &Record::fields().ssn;
    assert_eq!(
        objects
            .filter(ssn.eq(secret(3, "SSN")))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        objects
            .filter(Record::fields().code.is_in([code_base, code_base + 1]))
            .count()
            .await
            .unwrap(),
        2
    );
    let mut one = objects.get(ssn.eq(secret(5, "SSN"))).await.unwrap();
    one.diagnosis = secret(99, "DIAG");
    secrets.push(one.diagnosis.clone());
    objects.save(&one).await.unwrap();
    let err = objects
        .get(ssn.eq(secret(777, "SSN")))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("SECRET"), "{err}");
    drop(objects);
    drop(app);

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let logged = logs.0.lock().unwrap().clone();
    assert!(!logged.is_empty() || files.iter().any(|(_, b)| !b.is_empty()));

    let all_files: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    for p in &publics {
        assert!(
            common::contains(&all_files, p.as_bytes()),
            "plaintext canary {p} must be visible to the scan"
        );
    }
    for s in &secrets {
        for (name, bytes) in &files {
            assert!(
                !common::contains(bytes, s.as_bytes()),
                "encrypted canary found in {name}"
            );
        }
        assert!(
            !common::contains(&logged, s.as_bytes()),
            "encrypted canary found in the logs"
        );
    }
    for i in 0..40 {
        let le = (code_base + i).to_le_bytes();
        for (name, bytes) in &files {
            assert!(
                !common::contains(bytes, &le),
                "encrypted number canary found in {name}"
            );
        }
        assert!(
            !common::contains(&logged, (code_base + i).to_string().as_bytes()),
            "number canary in logs"
        );
    }
}
