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
        let keys = [
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

fn to_bytes(d: &bson::Document) -> Vec<u8> {
    let mut v = Vec::new();
    d.to_writer(&mut v).unwrap();
    v
}

fn one_schema(map: &bson::Document) -> bson::Document {
    assert_eq!(map.len(), 1);
    map.values().next().unwrap().as_document().unwrap().clone()
}

/// `efc/efc-textSearchFields*.json` and the bad `strEncodeVersion` files,
/// as libmongocrypt's parser reads them.
#[test]
fn encrypted_fields_parsing() {
    use cipherdoc_crypto::efc::*;
    let efc = EncryptedFieldConfig::from_document(&ejson_file(
        "text-search/efc/efc-textSearchFields.json",
    ))
    .unwrap();
    let kinds: Vec<Vec<(TextIndexKind, QueryTypeSpelling)>> = efc
        .fields
        .iter()
        .map(|f| {
            f.queries
                .iter()
                .map(|q| match q {
                    QueryTypeConfig::Text { query_type, .. } => {
                        (query_type.kind, query_type.spelling)
                    }
                    other => panic!("{other:?}"),
                })
                .collect()
        })
        .collect();
    use QueryTypeSpelling::*;
    use TextIndexKind::*;
    assert_eq!(
        kinds,
        vec![
            vec![(Substring, Preview)],
            vec![(Suffix, Stable), (Prefix, Stable)],
            vec![(Suffix, Stable), (Prefix, Stable)],
            vec![(Substring, Stable)],
        ]
    );
    // No version given, text fields present: libmongocrypt defaults to 1.
    assert_eq!(efc.str_encode_version, None);
    assert_eq!(efc.effective_str_encode_version(), 1);
    // The 8.2 preview names are accepted (fle2-insert-text-search-preview).
    for name in ["prefixPreview", "suffixPreview"] {
        let map = ejson_file(&format!(
            "text-search/fle2-insert-text-search-preview/encrypted-field-map-{name}.json"
        ));
        let efc = EncryptedFieldConfig::from_document(&one_schema(&map)).unwrap();
        assert!(efc.has_text_fields(), "{name}");
        assert!(matches!(
            efc.fields[0].queries[0],
            QueryTypeConfig::Text { query_type, .. } if query_type.as_str() == name
        ));
    }
    let good = EncryptedFieldConfig::from_document(&ejson_file(
        "text-search/efc/efc-textSearchFields-goodVersionSet.json",
    ))
    .unwrap();
    assert_eq!(good.str_encode_version, Some(1));
    for (file, base) in [
        (
            "text-search/efc/efc-textSearchFields-badVersionSet.json",
            None,
        ),
        (
            "text-search/fle2-bad-str-encode-version/bad-collinfo.json",
            Some("options"),
        ),
        (
            "text-search/fle2-bad-str-encode-version/bad-encrypted-field-config-map.json",
            None,
        ),
    ] {
        let mut d = ejson_file(file);
        if let Some(b) = base {
            d = d
                .get_document(b)
                .unwrap()
                .get_document("encryptedFields")
                .unwrap()
                .clone();
        } else if !d.contains_key("fields") {
            d = one_schema(&d);
        }
        let e = EncryptedFieldConfig::from_document(&d).unwrap_err();
        assert_eq!(
            e.text,
            Some(TextFieldError::UnsupportedStrEncodeVersion { version: 99 }),
            "{file}"
        );
        assert!(
            e.to_string()
                .contains("'strEncodeVersion' of 99 is not supported"),
            "{e}"
        );
    }
    // An equality-only configuration has no version to send.
    let mut eq = one_schema(&ejson_file(
        "text-search/fle2-create-encrypted-collection-with-str-encode-version/encrypted-field-config-map.json",
    ));
    eq.remove("strEncodeVersion");
    let eq = EncryptedFieldConfig::from_document(&eq).unwrap();
    assert_eq!(eq.effective_str_encode_version(), 0);
}

/// The `create` cases: what libmongocrypt does to the command's
/// `encryptedFields` given the configured map.
#[test]
fn create_command_str_encode_version() {
    use cipherdoc_crypto::efc::*;
    let map_efc = |dir: &str| {
        EncryptedFieldConfig::from_document(&one_schema(&ejson_file(&format!(
            "text-search/{dir}/encrypted-field-config-map.json"
        ))))
        .unwrap()
    };
    let cmd_fields = |file: &str| {
        ejson_file(&format!("text-search/{file}"))
            .get_document("encryptedFields")
            .unwrap()
            .clone()
    };
    let with = "fle2-create-encrypted-collection-with-str-encode-version";
    let text = "fle2-text-search-create-encrypted-collection";
    let text_with = "fle2-text-search-create-encrypted-collection-with-str-encode-version";
    // (configuration, command, expected command)
    let mut unset = cmd_fields(&format!("{with}/cmd.json"));
    unset.remove("strEncodeVersion"); // upstream fle2-create-encrypted-collection/cmd.json
    let cases = [
        (
            map_efc(with),
            cmd_fields(&format!("{with}/cmd.json")),
            format!("{with}/encrypted-payload.json"),
        ),
        (
            map_efc(with),
            unset,
            format!("{with}/encrypted-payload.json"),
        ),
        (
            map_efc(text),
            cmd_fields(&format!("{text}/cmd.json")),
            format!("{text}/encrypted-payload.json"),
        ),
        (
            map_efc(text_with),
            cmd_fields(&format!("{text_with}/cmd.json")),
            format!("{text_with}/encrypted-payload.json"),
        ),
        (
            map_efc(text_with),
            cmd_fields(&format!("{text}/cmd.json")),
            format!("{text_with}/encrypted-payload.json"),
        ),
        (
            map_efc(text),
            cmd_fields(&format!("{text_with}/cmd.json")),
            format!("{text_with}/encrypted-payload.json"),
        ),
    ];
    for (i, (efc, mut fields, expected)) in cases.into_iter().enumerate() {
        efc.apply_str_encode_version(&mut fields).unwrap();
        let want = cmd_fields(&expected);
        assert_eq!(to_bytes(&fields), to_bytes(&want), "case {i}: {expected}");
    }
    // The configuration has no text field (version 0) but the command says 1.
    let mut no_version = one_schema(&ejson_file(&format!(
        "text-search/{with}/encrypted-field-config-map.json"
    )));
    no_version.remove("strEncodeVersion"); // upstream fle2-create-encrypted-collection's map
    let efc = EncryptedFieldConfig::from_document(&no_version).unwrap();
    let e = efc
        .apply_str_encode_version(&mut cmd_fields(&format!("{with}/cmd.json")))
        .unwrap_err();
    assert_eq!(
        e.text,
        Some(TextFieldError::StrEncodeVersionMismatch {
            given: 1,
            configured: 0
        })
    );
}

/// The `encryptionInformation` schema libmongocrypt attaches next to text
/// fields, and the automatic-encryption inserts of those directories (an
/// equality placeholder; the payload is byte-exact with the directory's RNG).
#[test]
fn encryption_information_and_auto_inserts() {
    use cipherdoc_crypto::efc::EncryptedFieldConfig;
    // These directories reuse fle2-insert-v2's random bytes upstream.
    let rng_hex = json("payloads/auto-encrypt-cases.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dir"] == "payloads/fle2-insert-v2")
        .unwrap()["rngHex"]
        .as_str()
        .unwrap()
        .to_owned();
    for dir in [
        "fle2-insert-text-search",
        "fle2-insert-text-search-with-str-encode-version",
        "fle2-insert-v2-with-str-encode-version",
    ] {
        let map = ejson_file(&format!("text-search/{dir}/encrypted-field-map.json"));
        let payload = ejson_file(&format!("text-search/{dir}/encrypted-payload.json"));
        let want = payload
            .get_document("encryptionInformation")
            .unwrap()
            .get_document("schema")
            .unwrap()
            .get_document("db.test")
            .unwrap();
        let got =
            EncryptedFieldConfig::encryption_information_schema(&one_schema(&map), "test").unwrap();
        assert_eq!(to_bytes(&got), to_bytes(want), "{dir}");

        // The placeholder from query analysis becomes the payload's blob.
        let reply = ejson_file(&format!("text-search/{dir}/mongocryptd-reply.json"));
        let docs = reply
            .get_document("result")
            .unwrap()
            .get_array("documents")
            .unwrap();
        let ph_blob = bin6(docs[0].as_document().unwrap(), "ssn").to_vec();
        let ph = EncryptionPlaceholder::decode(&ph_blob).unwrap();
        assert_eq!(ph.algorithm, PlaceholderAlgorithm::Equality);
        let (ki, ku) = (
            data_key(&hex::encode(ph.index_key_id.as_bytes())),
            data_key(&hex::encode(ph.user_key_id.as_bytes())),
        );
        let tokens = IndexKeyTokens::new(ph.index_key_id, &ki);
        let user = UserKey {
            id: ph.user_key_id,
            key: &ku,
        };
        let mut rng = ReplayRandom::new(hex(&rng_hex));
        let iup = client::encrypt_equality_insert(&ph.value, &tokens, user, 0, &mut rng).unwrap();
        let docs = payload.get_array("documents").unwrap();
        assert_eq!(
            hex::encode(iup.encode()),
            hex::encode(bin6(docs[0].as_document().unwrap(), "ssn")),
            "{dir}: payload"
        );
    }
}

/// `compact/text-search`, `cleanup/text-search`: the tokens libmongocrypt
/// sends, text fields with the anchor padding token, in its order.
#[test]
fn compaction_and_cleanup_tokens() {
    use cipherdoc_crypto::efc::EncryptedFieldConfig;
    for (dir, key) in [
        ("compact/text-search", "compactionTokens"),
        ("cleanup/text-search", "cleanupTokens"),
    ] {
        let map = ejson_file(&format!(
            "text-search/{dir}/encrypted-field-config-map.json"
        ));
        let efc = EncryptedFieldConfig::from_document(&one_schema(&map)).unwrap();
        let got = efc
            .compaction_tokens(|f| {
                let cipherdoc_crypto::efc::FieldKey::Id(id) = &f.key else {
                    panic!()
                };
                let k = data_key(&hex::encode(id.as_bytes()));
                Ok::<_, ()>(IndexKeyTokens::new(*id, &k))
            })
            .unwrap();
        let payload = ejson_file(&format!("text-search/{dir}/encrypted-payload.json"));
        assert_eq!(
            to_bytes(&got),
            to_bytes(payload.get_document(key).unwrap()),
            "{dir}"
        );
        if dir.starts_with("compact") {
            let want = payload
                .get_document("encryptionInformation")
                .unwrap()
                .get_document("schema")
                .unwrap()
                .get_document("db.test")
                .unwrap();
            let got =
                EncryptedFieldConfig::encryption_information_schema(&one_schema(&map), "test")
                    .unwrap();
            assert_eq!(
                to_bytes(&got),
                to_bytes(want),
                "{dir}: encryptionInformation"
            );
        }
    }
}

/// Every byte of the text fixtures changed, and every truncation: the
/// decoders return errors or values, never panic.
#[test]
fn mutated_text_blobs_never_panic() {
    let mut blobs = vec![
        explicit_blob("fle2-explicit/insert-prefix-suffix.json"),
        explicit_blob("fle2-explicit/find-substring.json"),
    ];
    blobs.push(hex(json(
        "text-search/iev-v2/FLECrudTest-insertOneText.json",
    )["payload"]
        .as_str()
        .unwrap()));
    for blob in blobs {
        for i in 0..blob.len() {
            for x in [0x00, 0x01, 0x7F, 0xFF] {
                let mut b = blob.clone();
                b[i] ^= x;
                let _ = InsertUpdatePayloadV2::decode(&b);
                let _ = FindTextPayload::decode(&b);
                let _ = IndexedTextEncryptedValue::decode(&b);
            }
            let _ = InsertUpdatePayloadV2::decode(&blob[..i]);
            let _ = FindTextPayload::decode(&blob[..i]);
            let _ = IndexedTextEncryptedValue::decode(&blob[..i]);
        }
    }
}
