//! libmongocrypt's text-search vectors (`vectors/text-search/`), byte for
//! byte: the explicit insert and find fixtures, the stored values (17), the
//! automatic-encryption inserts next to text fields, compaction and cleanup
//! tokens, and the `encryptedFields` cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use bson::Bson;
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::client_text::{encrypt_text_find, encrypt_text_insert};
use cipherdoc_crypto::payload::*;
use cipherdoc_crypto::text::{StringOpts, TextIndexKind};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, ReplayRandom};
use common::*;

fn explicit_blob(file: &str) -> Vec<u8> {
    bin6(&ejson_file(&format!("text-search/{file}")), "v").to_vec()
}

fn keys() -> Vec<(KeyId, DataKey)> {
    [KEY123, KEYABC, "12345678123498761234123456789013"]
        .into_iter()
        .map(|k| (key_id(k), data_key(k)))
        .collect()
}

#[test]
fn explicit_text_cases() {
    let cases = json("text-search/explicit-text-cases.json");
    let mut inserts = 0;
    let mut finds = 0;
    for c in cases["cases"].as_array().unwrap() {
        let desc = c["desc"].as_str().unwrap();
        assert_eq!(c["algorithm"], "string", "{desc}");
        let id = c["user_key_id"].as_str().unwrap().replace('-', "");
        let key = data_key(&id);
        // Explicit encryption uses the one key as index and user key.
        let tokens = IndexKeyTokens::new(key_id(&id), &key);
        let user = UserKey {
            id: key_id(&id),
            key: &key,
        };
        // JSON integers become int32 in the options, as the file says.
        let opts = StringOpts::from_document(&ejson_doc(c["string_opts"].clone())).unwrap();
        let value = c["value"].as_str().unwrap();
        let cm = c["contention_factor"].as_u64().unwrap();
        let expected = explicit_blob(c["expect"].as_str().unwrap());
        let got = match c["query_type"].as_str() {
            None => {
                let rng_file = c["rng_data"].as_str().unwrap();
                let mut rng =
                    ReplayRandom::new(hex(json(&format!("text-search/{rng_file}"))["hex"]
                        .as_str()
                        .unwrap()));
                inserts += 1;
                let iup =
                    encrypt_text_insert(value, opts.index(), &tokens, user, cm, &mut rng).unwrap();
                // The value decrypts back.
                assert_eq!(
                    client::decrypt_insert_payload(&iup, &keys()[..]).unwrap(),
                    Bson::String(value.into()),
                    "{desc}"
                );
                iup.encode()
            }
            Some(q) => {
                let kind = TextIndexKind::from_query_type(q).unwrap();
                finds += 1;
                encrypt_text_find(value, opts.index(), kind.into(), &tokens, cm)
                    .unwrap()
                    .encode()
            }
        };
        assert_eq!(hex::encode(&got), hex::encode(&expected), "{desc}");
        // The codecs read the fixture and write it back unchanged.
        let again = match BlobSubtype::of(&expected).unwrap() {
            BlobSubtype::Fle2InsertUpdatePayloadV2 => {
                InsertUpdatePayloadV2::decode(&expected).unwrap().encode()
            }
            BlobSubtype::Fle2FindTextPayload => {
                FindTextPayload::decode(&expected).unwrap().encode()
            }
            other => panic!("{desc}: unexpected {other:?}"),
        };
        assert_eq!(again, expected, "{desc}: roundtrip");
    }
    assert_eq!((inserts, finds), (5, 7));
}

/// `iev-v2/FLECrudTest-insertOneText*.json`: server-made stored values (17)
/// with both keys in clear.
#[test]
fn stored_text_values() {
    for file in [
        "FLECrudTest-insertOneText.json",
        "FLECrudTest-insertOneTextLarge.json",
    ] {
        let t = json(&format!("text-search/iev-v2/{file}"));
        assert_eq!(t["type"], "text");
        let blob = hex(t["payload"].as_str().unwrap());
        let v = IndexedTextEncryptedValue::decode(&blob).unwrap();
        assert_eq!(v.encode().unwrap(), blob, "{file}: re-encoding");
        let s_id = KeyId::from_slice(&hex(t["S_KeyId"].as_str().unwrap())).unwrap();
        let k_id = KeyId::from_slice(&hex(t["K_KeyId"].as_str().unwrap())).unwrap();
        assert_eq!(v.index_key_id, s_id);
        assert_eq!(v.bson_type as i64, t["bson_value_type"].as_i64().unwrap());
        let keys = vec![
            (
                s_id,
                DataKey::from_slice(&hex(t["S_Key"].as_str().unwrap())).unwrap(),
            ),
            (
                k_id,
                DataKey::from_slice(&hex(t["K_Key"].as_str().unwrap())).unwrap(),
            ),
        ];
        let value = client::decrypt_indexed_text(&v, &keys[..]).unwrap();
        let expected = value_from_bytes(
            bson::spec::ElementType::String,
            &hex(t["bson_value"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(value, expected, "{file}: value");
        assert_eq!(
            client::decrypt_blob(&blob, &keys[..]).unwrap(),
            Some(expected),
            "{file}: dispatch"
        );
        assert_eq!(
            v.substring.len() as u64,
            t["substr_tag_count"].as_u64().unwrap()
        );
        assert_eq!(
            v.suffix.len() as u64,
            t["suffix_tag_count"].as_u64().unwrap()
        );
        let blocks: Vec<String> = v.metadata().map(|m| hex::encode(m.to_bytes())).collect();
        let want: Vec<String> = t["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_lowercase())
            .collect();
        assert_eq!(
            blocks, want,
            "{file}: metadata in exact, substring, suffix, prefix order"
        );
        assert_eq!(
            v.prefix.len(),
            want.len() - 1 - v.substring.len() - v.suffix.len()
        );
        // Truncations and bad counts are refused, never a panic.
        // (A shorter SEV is indistinguishable from a truncation: its length is
        // what the blocks leave, so only cuts below the minimum are errors.)
        for cut in [0, 1, 17, 18, 29, 30, 30 + 96 * v.metadata().count() + 31] {
            assert!(
                IndexedTextEncryptedValue::decode(&blob[..cut]).is_err(),
                "{file}: cut {cut}"
            );
        }
        let mut bad = blob.clone();
        bad[18..22].copy_from_slice(&0u32.to_le_bytes());
        assert!(IndexedTextEncryptedValue::decode(&bad).is_err());
    }
}
