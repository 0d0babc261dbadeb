//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bson::{Bson, Document};
use cipherdoc_crypto::{DataKey, KeyId};

pub fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(vectors().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Parses Extended JSON (canonical or relaxed) into a BSON document, keeping key order.
pub fn ejson_doc(mut v: serde_json::Value) -> Document {
    normalize(&mut v);
    match Bson::try_from(v).expect("extended JSON") {
        Bson::Document(d) => d,
        other => panic!("expected a document, got {other:?}"),
    }
}

pub fn ejson_file(rel: &str) -> Document {
    ejson_doc(json(rel))
}

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).unwrap_or_else(|e| panic!("hex {s}: {e}"))
}

pub const KEY123: &str = "12345678123498761234123456789012";
pub const KEYABC: &str = "ABCDEFAB123498761234123456789012";

pub fn key_id(hexid: &str) -> KeyId {
    KeyId::from_slice(&hex(hexid)).unwrap()
}

/// The plaintext DEK of one of the fixture keys in keys/keys/.
pub fn data_key(hexid: &str) -> DataKey {
    let upper = hexid.to_uppercase();
    DataKey::from_slice(&hex(&read(&format!("keys/keys/{upper}-key-material.txt")))).unwrap()
}

/// Binary subtype 6 bytes of field `name` in `doc`.
pub fn bin6<'a>(doc: &'a Document, name: &str) -> &'a [u8] {
    match doc.get(name) {
        Some(Bson::Binary(b)) => {
            assert_eq!(b.subtype, bson::spec::BinarySubtype::Encrypted);
            &b.bytes
        }
        other => panic!("{name}: expected binary, got {other:?}"),
    }
}

/// Some upstream fixtures write `"subType": "6"`; Extended JSON wants two hex digits.
fn normalize(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "subType" {
                    if let serde_json::Value::String(s) = x {
                        if s.len() == 1 {
                            *s = format!("0{s}");
                        }
                    }
                }
                normalize(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}
