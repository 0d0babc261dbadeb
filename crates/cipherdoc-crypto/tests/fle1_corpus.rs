#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]
//! The drivers' FLE1 corpus, an optional cross-check.
//!
//! The corpus belongs to MongoDB's driver specifications (client-side
//! encryption tests, `corpus/`), whose licence (CC BY-NC-SA) does not let
//! this repository carry it. Point `CIPHERDOC_FLE1_CORPUS_DIR` at a copy of
//! that directory to run the check; without it the test says so and does
//! nothing. The protocol itself is covered by the vectors the repository
//! does carry (`tests/vectors`, from libmongocrypt, see its NOTICE).

mod common;

use bson::Bson;
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::payload::{Fle1Algorithm, Fle1EncryptedValue};
use cipherdoc_crypto::{KeyDocument, LocalMasterKey, OsRandom, unwrap_local};
use common::*;

const DRIVERS_LOCAL_MASTER_KEY_B64: &str = "Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk";

fn b64(s: &str) -> Vec<u8> {
    // Reuse the Extended JSON parser for base64 instead of adding a crate.
    let d = ejson_doc(serde_json::json!({"x": {"$binary": {"base64": s, "subType": "00"}}}));
    match d.get("x") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => unreachable!(),
    }
}

#[test]
fn fle1_corpus_local_entries() {
    let Some(dir) = std::env::var_os("CIPHERDOC_FLE1_CORPUS_DIR").map(std::path::PathBuf::from)
    else {
        println!(
            "SKIPPED: set CIPHERDOC_FLE1_CORPUS_DIR to the driver specifications' corpus directory to run this cross-check"
        );
        return;
    };
    assert!(
        dir.join("corpus.json").is_file(),
        "CIPHERDOC_FLE1_CORPUS_DIR={} holds no corpus.json",
        dir.display()
    );
    let load = |n: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(n)).unwrap()).unwrap()
    };
    let kek = LocalMasterKey::from_slice(&b64(DRIVERS_LOCAL_MASTER_KEY_B64)).unwrap();
    let kd = KeyDocument::from_document(&ejson_doc(load("corpus-key-local.json"))).unwrap();
    let dek = unwrap_local(&kek, &kd.key_material).unwrap();
    let keys = [(kd.id, dek.clone())];
    let user = UserKey {
        id: kd.id,
        key: &dek,
    };

    let plain = load("corpus.json");
    let enc = load("corpus-encrypted.json");
    let (mut exact, mut decrypted, mut refused, mut unparsed) = (0, 0, 0, 0);
    for (name, p) in plain.as_object().unwrap() {
        let Some(p) = p.as_object() else { continue };
        if p["kms"] != "local" {
            continue;
        }
        let det = p["algo"] == "det";
        let parsed = std::panic::catch_unwind(|| ejson_doc(serde_json::json!({"v": p["value"]})));
        let Ok(pdoc) = parsed else {
            unparsed += 1;
            continue;
        };
        let value = pdoc.get("v").unwrap().clone();
        let alg = if det {
            Fle1Algorithm::Deterministic
        } else {
            Fle1Algorithm::Random
        };
        if p["allowed"] == false {
            assert!(
                client::encrypt_fle1(&value, alg, user, &mut OsRandom).is_err(),
                "{name} must be refused"
            );
            refused += 1;
            continue;
        }
        let edoc = ejson_doc(serde_json::json!({"v": enc[name]["value"]}));
        let blob = bin6(&edoc, "v");
        assert_eq!(
            client::decrypt_blob(blob, &keys[..]).unwrap(),
            Some(value.clone()),
            "{name}"
        );
        decrypted += 1;
        if det {
            let ours = client::encrypt_fle1(&value, alg, user, &mut OsRandom)
                .unwrap()
                .encode();
            assert_eq!(
                hex::encode(ours),
                hex::encode(blob),
                "{name}: deterministic bytes"
            );
            assert_eq!(Fle1EncryptedValue::decode(blob).unwrap().encode(), blob);
            exact += 1;
        }
    }
    println!(
        "corpus: {decrypted} local entries decrypted, {exact} deterministic byte-exact, {refused} refused, {unparsed} plaintexts not parseable"
    );
    assert!(exact >= 40, "deterministic exact vectors: {exact}");
    assert!(decrypted >= 90);
}
