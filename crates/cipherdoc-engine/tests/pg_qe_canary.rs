//! Invariant 1 on PostgreSQL with a real QE workload: documents whose
//! encrypted fields hold unique canaries go through the QE server role
//! (inserts, queries, replacements, compaction); then the files of the
//! server's data directory (tables, WAL) and its log are scanned. Encrypted
//! canaries must be absent, raw or hex; plaintext canaries must be found
//! (the scan sees the data). Runs when `CIPHERDOC_TEST_POSTGRES_URL` is set
//! and the data directory is readable; skipped with the reason otherwise.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    clippy::many_single_char_names
)]

use std::sync::Arc;

use bson::Bson;
use cipherdoc_engine::postgres::{PgEngine, testing};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::qe_server::suite::TestClient;
use cipherdoc_engine::{Engine, Filter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qe_workload_leaves_no_canary_in_postgres_files_or_log() {
    let Some(url) = testing::test_url() else {
        return;
    };
    let pg = PgEngine::temporary(&url).await.unwrap();
    let e = QeServer::new(Arc::new(pg));
    let client = TestClient::new(2);
    let c = "canary";
    client.create_collection(&e, c).await;
    // Unique per run, so that no earlier run's data can match.
    let mut r = [0u8; 8];
    cipherdoc_crypto::RandomSource::fill(&mut cipherdoc_crypto::OsRandom, &mut r).unwrap();
    let run = format!("{:016x}", u64::from_le_bytes(r));
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut publics: Vec<Vec<u8>> = Vec::new();
    let age_base: i64 =
        0x3a5c_7e91_0000_0000 + i64::from(u16::from_le_bytes([r[0], r[1]])) * 0x1_0000;
    for i in 0..30i32 {
        let name = format!("QESECRETNAME{run}{i:03}");
        let note = format!("QESECRETNOTE{run}{i:03}");
        let age = age_base + i64::from(i);
        let mut d = client.document(i, &name, age, &note);
        let public = format!("QEPUBLIC{run}{i:03}");
        d.insert("public", public.clone());
        e.insert_one(c, d).await.unwrap();
        secrets.extend([
            name.into_bytes(),
            note.into_bytes(),
            age.to_le_bytes().to_vec(),
        ]);
        publics.push(public.into_bytes());
    }
    // Queries, a replacement and a compaction run too.
    let q = client.find_payload("name", &Bson::String(format!("QESECRETNAME{run}005")));
    assert_eq!(e.count(c, &Filter::eq("name", q)).await.unwrap(), 1);
    let mut d = client.document(
        7,
        &format!("QESECRETNAME{run}R07"),
        age_base - 1,
        &format!("QESECRETNOTE{run}R07"),
    );
    d.insert("public", format!("QEPUBLIC{run}R07"));
    secrets.extend([
        format!("QESECRETNAME{run}R07").into_bytes(),
        format!("QESECRETNOTE{run}R07").into_bytes(),
        (age_base - 1).to_le_bytes().to_vec(),
    ]);
    assert!(e.replace_one(c, &Bson::Int32(7), d).await.unwrap());
    e.compact(c, &client.compaction_tokens()).await.unwrap();

    let Some(files) = testing::server_files(&url).await.unwrap() else {
        return;
    };
    let mut canaries: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    canaries.extend(publics.iter().map(Vec::as_slice));
    let scan = testing::scan_for_canaries(&files, &canaries);
    println!(
        "canary scan: {} files, {} bytes, {} hits",
        scan.files,
        scan.bytes,
        scan.hits.len()
    );
    let leaked: Vec<_> = scan
        .hits
        .iter()
        .filter(|h| h.canary < secrets.len())
        .collect();
    assert!(leaked.is_empty(), "encrypted canaries found: {leaked:?}");
    for i in 0..publics.len() {
        assert!(
            scan.found(secrets.len() + i),
            "plaintext canary {i} not found: the scan sees no data"
        );
    }
}
