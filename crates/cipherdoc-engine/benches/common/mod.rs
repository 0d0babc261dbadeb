//! Shared by the QE benchmarks (`qe_sqlite`, `qe_pg`): a client that
//! encrypts one equality field `ssn` the way a driver would (insert
//! payloads and find payloads, done outside every timed section), the
//! benchmark's value pattern and percentiles.
//!
//! Included with `mod common;` by each bench; not every bench uses every
//! item.

#![allow(dead_code)]

use std::time::Duration;

use bson::{Bson, Document, doc};
use cipherdoc_crypto::client::{UserKey, encrypt_equality_find, encrypt_equality_insert};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};

/// A client holding one data key, used as the index key of `ssn`.
pub struct Client {
    id: KeyId,
    key: DataKey,
    tokens: IndexKeyTokens,
}

impl Client {
    pub fn new() -> Self {
        let id = KeyId::generate(&mut OsRandom).unwrap();
        let key = DataKey::generate(&mut OsRandom).unwrap();
        let tokens = IndexKeyTokens::new(id, &key);
        Self { id, key, tokens }
    }

    /// `encryptedFields`: `ssn`, an encrypted equality string field with
    /// contention factor `cm`.
    pub fn ef(&self, cm: u64) -> Document {
        doc! {"fields": [{"path": "ssn", "keyId": self.id.to_binary(), "bsonType": "string",
        "queries": {"queryType": "equality", "contention": cm as i64}}]}
    }

    /// An insert payload (BinData 6, subtype 11) for `v`.
    pub fn insert(&self, v: &str, cm: u64) -> Bson {
        let p = encrypt_equality_insert(
            &Bson::String(v.into()),
            &self.tokens,
            UserKey {
                id: self.id,
                key: &self.key,
            },
            cm,
            &mut OsRandom,
        )
        .unwrap();
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: p.encode(),
        })
    }

    /// A find payload (BinData 6, subtype 12) for `v`.
    pub fn find(&self, v: &str, cm: u64) -> Bson {
        let p = encrypt_equality_find(&Bson::String(v.into()), &self.tokens, cm).unwrap();
        Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: p.encode(),
        })
    }
}

/// The `ssn` of document `i`: each value repeats 10 times.
pub fn ssn(i: usize) -> String {
    format!("{:09}", i / 10)
}

/// p50 and p90 of `v`.
pub fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 9 / 10])
}
