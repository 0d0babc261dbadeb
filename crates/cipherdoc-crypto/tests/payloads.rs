#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use std::collections::HashMap;

use bson::{Bson, Document};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::payload::*;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, Error, KeyId, ReplayRandom};
use common::*;

fn keys() -> HashMap<KeyId, DataKey> {
    [KEY123, KEYABC, "12345678123498761234123456789013"]
        .into_iter()
        .map(|k| (key_id(k), data_key(k)))
        .collect()
}

fn first_doc_field<'a>(cmd: &'a Document, field: &str) -> &'a [u8] {
    let docs = cmd.get_array("documents").unwrap();
    let Bson::Document(d) = &docs[0] else {
        panic!()
    };
    bin6(d, field)
}

#[test]
fn explicit_encrypt_cases() {
    let cases = json("payloads/explicit-encrypt-cases.json");
    let mut reproduced = 0;
    let mut errors = 0;
    for c in cases["cases"].as_array().unwrap() {
        let alg = c["algorithm"].as_str().unwrap();
        if alg == "Range" {
            continue; // range payloads are built by the range work
        }
        let user_id = c["userKeyId"].as_str().unwrap();
        let index_id = c["indexKeyId"].as_str().unwrap_or(user_id);
        let user = data_key(user_id);
        let index = data_key(index_id);
        let tokens = IndexKeyTokens::new(key_id(index_id), &index);
        let user = UserKey {
            id: key_id(user_id),
            key: &user,
        };
        if c.get("expectError").is_some() {
            // Contention factor validation (the explicit API's `cm` check).
            let cm = &c["contentionFactor"];
            let cm = cm
                .as_i64()
                .unwrap_or_else(|| cm.as_str().unwrap().parse().unwrap());
            assert!(
                cipherdoc_crypto::random::validate_max_contention(cm).is_err(),
                "{}",
                c["desc"]
            );
            errors += 1;
            continue;
        }
        let msg = &c["msg"];
        let value = ejson_doc(msg.clone()).get("v").unwrap().clone();
        let mut rng = ReplayRandom::new(hex(c["rngHex"].as_str().unwrap_or("")));
        let cm = c
            .get("contentionFactor")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let blob = match (alg, c.get("queryType").and_then(|q| q.as_str())) {
            ("Unindexed", _) => client::encrypt_unindexed(&value, user, &mut rng)
                .unwrap()
                .encode(),
            ("Indexed", Some("equality")) => client::encrypt_equality_find(&value, &tokens, cm)
                .unwrap()
                .encode(),
            ("Indexed", None) => {
                client::encrypt_equality_insert(&value, &tokens, user, cm, &mut rng)
                    .unwrap_or_else(|e| panic!("{}: {e}", c["desc"]))
                    .encode()
            }
            other => panic!("unexpected case {other:?}"),
        };
        assert_eq!(
            rng.remaining(),
            0,
            "{}: all random bytes consumed",
            c["desc"]
        );
        let expected = match c.get("expect").and_then(|e| e.as_str()) {
            Some(path) => ejson_file(path),
            None => ejson_doc(c["expectInline"].clone()),
        };
        assert_eq!(
            hex::encode(&blob),
            hex::encode(bin6(&expected, "v")),
            "{}",
            c["desc"]
        );
        // Decoding and re-encoding is the identity.
        let re = match BlobSubtype::of(&blob).unwrap() {
            BlobSubtype::Fle2InsertUpdatePayloadV2 => {
                InsertUpdatePayloadV2::decode(&blob).unwrap().encode()
            }
            BlobSubtype::Fle2FindEqualityPayloadV2 => {
                FindEqualityPayloadV2::decode(&blob).unwrap().encode()
            }
            BlobSubtype::Fle2UnindexedEncryptedValueV2 => {
                UnindexedEncryptedValueV2::decode(&blob).unwrap().encode()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(re, blob);
        // And what can be decrypted gives the value back.
        if let Some(v) = client::decrypt_blob(&blob, &keys()).unwrap() {
            assert_eq!(v, value);
        }
        reproduced += 1;
    }
    assert_eq!(reproduced, 7);
    assert_eq!(errors, 2);
}

fn auto_rng(dir: &str) -> Vec<u8> {
    let cases = json("payloads/auto-encrypt-cases.json");
    let c = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dir"] == dir)
        .unwrap();
    hex(c["rngHex"].as_str().unwrap())
}

/// Placeholder from the query-analysis reply, built into a payload.
fn auto_case(dir: &str, field: &str) -> (Vec<u8>, Vec<u8>) {
    let reply = ejson_file(&format!("{dir}/mongocryptd-reply.json"));
    let result = reply.get_document("result").unwrap();
    let ph_bytes = first_doc_field(result, field);
    let ph = EncryptionPlaceholder::decode(ph_bytes).unwrap();
    assert_eq!(
        ph.encode().unwrap(),
        ph_bytes,
        "placeholder re-encodes byte for byte"
    );
    let index = data_key(&hex::encode(ph.index_key_id.as_bytes()));
    let user = data_key(&hex::encode(ph.user_key_id.as_bytes()));
    let tokens = IndexKeyTokens::new(ph.index_key_id, &index);
    let user = UserKey {
        id: ph.user_key_id,
        key: &user,
    };
    let cm = cipherdoc_crypto::random::validate_max_contention(ph.max_contention).unwrap();
    let mut rng = ReplayRandom::new(auto_rng(dir));
    let blob = match (ph.kind, ph.algorithm) {
        (PlaceholderType::Insert, PlaceholderAlgorithm::Equality) => {
            client::encrypt_equality_insert(&ph.value, &tokens, user, cm, &mut rng)
                .unwrap()
                .encode()
        }
        (PlaceholderType::Find, PlaceholderAlgorithm::Equality) => {
            client::encrypt_equality_find(&ph.value, &tokens, cm)
                .unwrap()
                .encode()
        }
        (PlaceholderType::Insert, PlaceholderAlgorithm::Unindexed) => {
            client::encrypt_unindexed(&ph.value, user, &mut rng)
                .unwrap()
                .encode()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(rng.remaining(), 0);
    let expected = ejson_file(&format!("{dir}/encrypted-payload.json"));
    (blob, first_doc_field(&expected, field).to_vec())
}

#[test]
fn auto_encrypt_fixtures() {
    for (dir, field) in [
        ("payloads/fle2-insert-v2", "ssn"),
        ("payloads/fle2-find-equality-v2", "value"),
        ("payloads/fle2-insert-unindexed-v2", "encrypted"),
    ] {
        let (got, want) = auto_case(dir, field);
        assert_eq!(hex::encode(got), hex::encode(want), "{dir}");
    }
}

#[test]
fn explicit_decrypt_blobs() {
    let keys = keys();
    let expect: &[(&str, Option<Bson>)] = &[
        (
            "FLE1DeterministicEncryptedValue",
            Some(Bson::String("foo".into())),
        ),
        ("FLE1RandomEncryptedValue", Some(Bson::String("foo".into()))),
        (
            "FLE2InsertUpdatePayloadV2",
            Some(Bson::String("value123".into())),
        ),
        (
            "FLE2InsertUpdatePayloadV2-RangeV1",
            Some(Bson::Int32(123_456)),
        ),
        (
            "FLE2InsertUpdatePayloadV2-RangeV2",
            Some(Bson::Int32(123_456)),
        ),
        (
            "FLE2UnindexedEncryptedValueV2",
            Some(Bson::String("foo".into())),
        ),
        (
            "FLE2IndexedEqualityEncryptedValueV2",
            Some(Bson::String("foo".into())),
        ),
        ("FLE2IndexedRangeEncryptedValueV2", Some(Bson::Int32(123))),
        ("FLE2EncryptionPlaceholder", None),
        ("FLE2FindEqualityPayloadV2", None),
        ("FLE1EncryptionPlaceholder", None),
    ];
    for (name, want) in expect {
        let doc = ejson_file(&format!("payloads/explicit-decrypt/{name}.json"));
        let blob = bin6(&doc, "v");
        assert_eq!(&client::decrypt_blob(blob, &keys).unwrap(), want, "{name}");
        // Codecs of this crate re-encode what they decode.
        let re = match BlobSubtype::of(blob).unwrap() {
            BlobSubtype::Fle1DeterministicEncryptedValue
            | BlobSubtype::Fle1RandomEncryptedValue => {
                Some(Fle1EncryptedValue::decode(blob).unwrap().encode())
            }
            BlobSubtype::Fle2InsertUpdatePayloadV2 => {
                Some(InsertUpdatePayloadV2::decode(blob).unwrap().encode())
            }
            BlobSubtype::Fle2UnindexedEncryptedValueV2 => {
                Some(UnindexedEncryptedValueV2::decode(blob).unwrap().encode())
            }
            BlobSubtype::Fle2IndexedEqualityEncryptedValueV2 => Some(
                IndexedEqualityEncryptedValueV2::decode(blob)
                    .unwrap()
                    .encode(),
            ),
            BlobSubtype::Fle2FindEqualityPayloadV2 => {
                Some(FindEqualityPayloadV2::decode(blob).unwrap().encode())
            }
            BlobSubtype::Fle2EncryptionPlaceholder => Some(
                EncryptionPlaceholder::decode(blob)
                    .unwrap()
                    .encode()
                    .unwrap(),
            ),
            _ => None,
        };
        if let Some(re) = re {
            assert_eq!(hex::encode(re), hex::encode(blob), "{name} re-encodes");
        }
    }
    // Protocol v1 blobs are refused with a decode error, not a panic.
    for name in [
        "FLE2IndexedEqualityEncryptedValue",
        "FLE2UnindexedEncryptedValue",
        "FLE2InsertUpdatePayload",
    ] {
        let doc = ejson_file(&format!("payloads/explicit-decrypt/{name}.json"));
        assert!(
            matches!(
                client::decrypt_blob(bin6(&doc, "v"), &keys),
                Err(Error::Decode { .. })
            ),
            "{name}"
        );
    }
    // A missing key is reported by id.
    let doc = ejson_file("payloads/explicit-decrypt/FLE2UnindexedEncryptedValueV2.json");
    let none: HashMap<KeyId, DataKey> = HashMap::new();
    assert!(matches!(
        client::decrypt_blob(bin6(&doc, "v"), &none),
        Err(Error::MissingKey(_))
    ));
}

#[test]
fn fle1_roundtrip_and_determinism() {
    let k = data_key(KEYABC);
    let user = UserKey {
        id: key_id(KEYABC),
        key: &k,
    };
    let v = Bson::String("foo".into());
    let mut rng = cipherdoc_crypto::OsRandom;
    let det = client::encrypt_fle1(&v, Fle1Algorithm::Deterministic, user, &mut rng).unwrap();
    let doc = ejson_file("payloads/explicit-decrypt/FLE1DeterministicEncryptedValue.json");
    assert_eq!(hex::encode(det.encode()), hex::encode(bin6(&doc, "v")));
    let rnd = client::encrypt_fle1(&v, Fle1Algorithm::Random, user, &mut rng).unwrap();
    assert_eq!(
        client::decrypt_blob(&rnd.encode(), &keys()).unwrap(),
        Some(v)
    );
    assert!(
        client::encrypt_fle1(
            &Bson::Double(1.0),
            Fle1Algorithm::Deterministic,
            user,
            &mut rng
        )
        .is_err()
    );
    assert!(client::encrypt_fle1(&Bson::Null, Fle1Algorithm::Random, user, &mut rng).is_err());
}

#[test]
fn decoder_rejections() {
    let doc = ejson_file("payloads/fle2-explicit/insert-indexed-v2.json");
    let iup = bin6(&doc, "v");
    // Wrong first byte, truncations.
    let mut b = iup.to_vec();
    b[0] = 12;
    assert!(InsertUpdatePayloadV2::decode(&b).is_err());
    for n in 0..iup.len() {
        assert!(InsertUpdatePayloadV2::decode(&iup[..n]).is_err());
    }
    let decoded = InsertUpdatePayloadV2::decode(iup).unwrap();
    // Unknown field / duplicate field / missing field.
    let body = bson::Document::from_reader(&iup[1..]).unwrap();
    let reencode = |d: &bson::Document| {
        let mut v = vec![11u8];
        d.to_writer(&mut v).unwrap();
        v
    };
    let mut extra = body.clone();
    extra.insert("zz", 1);
    let e = InsertUpdatePayloadV2::decode(&reencode(&extra)).unwrap_err();
    assert!(e.to_string().contains("unknown field 'zz'"), "{e}");
    let mut missing = body.clone();
    missing.remove("l");
    let e = InsertUpdatePayloadV2::decode(&reencode(&missing)).unwrap_err();
    assert!(e.to_string().contains("missing field 'l'"), "{e}");
    let mut wrong = body.clone();
    wrong.insert("k", 1_i32);
    assert!(InsertUpdatePayloadV2::decode(&reencode(&wrong)).is_err());
    // Duplicate: append a second "d" by hand.
    let mut dup = reencode(&body);
    dup.pop();
    dup.pop();
    let mut extra_el = vec![0x10, b'd', 0, 1, 0, 0, 0];
    dup.pop();
    dup.append(&mut extra_el);
    dup.extend_from_slice(&[0]);
    let _ = decoded;
    // The hand-edited length prefix is now stale, so fix it.
    let len = (dup.len() - 1) as i32;
    dup[1..5].copy_from_slice(&len.to_le_bytes());
    assert!(InsertUpdatePayloadV2::decode(&dup).is_err());
    assert!(BlobSubtype::of(&[8]).is_err());
    assert!(BlobSubtype::of(&[]).is_err());
    assert!(IndexedEqualityEncryptedValueV2::decode(&[14; 40]).is_err());
    assert!(UnindexedEncryptedValueV2::decode(&[16; 18]).is_err());
    assert!(Fle1EncryptedValue::decode(&[1; 18]).is_err());
}
