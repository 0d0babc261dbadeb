#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]
//! Range payloads and stored values against libmongocrypt / server vectors:
//! auto-encryption fixtures (insert and find, all seven types, no-trimFactor,
//! range-sends-cryptoParams), explicit cases, explicit-decrypt blobs and the
//! server-produced stored value 15.

mod common;

use std::collections::HashMap;

use bson::{Bson, Document};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::client_range::*;
use cipherdoc_crypto::payload::*;
use cipherdoc_crypto::range::{RangeIndex, RangeValue};
use cipherdoc_crypto::server::{self, insert_token_sets, range_query_tags, range_value_matches};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, ReplayRandom};
use common::*;

/// libmongocrypt's TEST_BIN(1024): `01 02 03 01 02 03 …`.
fn rng_pattern() -> Vec<u8> {
    (0..1024).map(|i| (i % 3) as u8 + 1).collect()
}

fn rng_file(rel: &str) -> Vec<u8> {
    hex(json(rel)["rngHex"].as_str().unwrap())
}

/// Every BSON binary subtype 6 value in `b`, in document order.
fn blobs(b: &Bson, out: &mut Vec<Vec<u8>>) {
    match b {
        Bson::Binary(bin) if bin.subtype == bson::spec::BinarySubtype::Encrypted => {
            out.push(bin.bytes.clone())
        }
        Bson::Document(d) => d.values().for_each(|v| blobs(v, out)),
        Bson::Array(a) => a.iter().for_each(|v| blobs(v, out)),
        _ => {}
    }
}

fn doc_blobs(d: &Document) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    blobs(&Bson::Document(d.clone()), &mut out);
    out
}

/// How many random bytes an insert payload must consume (§6.9).
fn insert_rng_len(iup: &InsertUpdatePayloadV2, cm: i64) -> usize {
    let draw = if cm > 0 { 8 } else { 0 };
    draw + 32 + 16 * iup.edge_token_sets.as_ref().unwrap().len()
}

/// Replaces every range placeholder of a query-analysis reply by its payload
/// and compares with libmongocrypt's output. Returns the number of payloads.
fn auto_dir(dir: &str, rng: Vec<u8>) -> usize {
    let reply = ejson_file(&format!("{dir}/mongocryptd-reply.json"));
    let result = reply.get_document("result").unwrap();
    let expected = ejson_file(&format!("{dir}/encrypted-payload.json"));
    let got_in = doc_blobs(result);
    let want = doc_blobs(&expected);
    assert_eq!(got_in.len(), want.len(), "{dir}: blob count");
    assert!(!got_in.is_empty(), "{dir}: no placeholders");
    let mut rng = ReplayRandom::new(rng);
    let mut n = 0;
    for (ph_bytes, want) in got_in.iter().zip(&want) {
        let ph = EncryptionPlaceholder::decode(ph_bytes).unwrap();
        assert_eq!(
            ph.encode().unwrap(),
            *ph_bytes,
            "{dir}: placeholder re-encodes"
        );
        assert_eq!(ph.algorithm, PlaceholderAlgorithm::Range, "{dir}");
        let ki = data_key(&hex::encode(ph.index_key_id.as_bytes()));
        let ku = data_key(&hex::encode(ph.user_key_id.as_bytes()));
        let tokens = IndexKeyTokens::new(ph.index_key_id, &ki);
        let user = UserKey {
            id: ph.user_key_id,
            key: &ku,
        };
        let before = rng.remaining();
        let payload = encrypt_range_placeholder(&ph, &tokens, user, &mut rng)
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        let blob = payload.encode();
        assert_eq!(hex::encode(&blob), hex::encode(want), "{dir}");
        match &payload {
            RangePayload::Insert(iup) => {
                assert_eq!(
                    before - rng.remaining(),
                    insert_rng_len(iup, ph.max_contention),
                    "{dir}: random bytes consumed"
                );
                assert_eq!(&InsertUpdatePayloadV2::decode(&blob).unwrap(), iup);
                // The payload decrypts back to the value inside the spec.
                let keys: HashMap<KeyId, DataKey> =
                    [(ph.index_key_id, ki.clone()), (ph.user_key_id, ku.clone())]
                        .into_iter()
                        .collect();
                let Bson::Document(spec) = &ph.value else {
                    panic!()
                };
                assert_eq!(
                    client::decrypt_blob(&blob, &keys).unwrap().as_ref(),
                    spec.get("v"),
                    "{dir}"
                );
            }
            RangePayload::Find(f) => {
                assert_eq!(before, rng.remaining(), "{dir}: find draws nothing");
                assert_eq!(&FindRangePayloadV2::decode(&blob).unwrap(), f);
                assert_eq!(FindRangePayloadV2::decode(&blob).unwrap().encode(), blob);
            }
        }
        n += 1;
    }
    n
}

const TYPES: [&str; 7] = [
    "int32",
    "int64",
    "date",
    "double",
    "double-precision",
    "decimal128",
    "decimal128-precision",
];

#[test]
fn auto_insert_range_all_types() {
    let mut n = 0;
    for t in TYPES {
        let dir = format!("range/fle2-insert-range/{t}-v2");
        n += auto_dir(&dir, rng_file(&format!("{dir}/RNG_DATA.json")));
    }
    assert_eq!(n, 7);
}

#[test]
fn auto_find_range_all_types() {
    let mut n = 0;
    for t in TYPES {
        n += auto_dir(&format!("range/fle2-find-range/{t}-v2"), Vec::new());
    }
    assert_eq!(n, 7);
}

#[test]
fn auto_no_trim_factor_and_crypto_params() {
    let mut n = 0;
    for dir in [
        "range/no-trimFactor/insert",
        "range/no-trimFactor/find",
        "range/range-sends-cryptoParams/auto-insert-int32",
        "range/range-sends-cryptoParams/auto-find-int32",
    ] {
        let k = auto_dir(dir, rng_pattern());
        println!("{dir}: {k} payloads");
        n += k;
    }
    assert_eq!(n, 6);
}

fn opts_doc(c: &serde_json::Value) -> Document {
    match (c.get("rangeOpts"), c.get("rangeOptsInline")) {
        (Some(p), _) => ejson_file(p.as_str().unwrap()),
        (None, Some(inline)) => ejson_doc(inline.clone()),
        _ => panic!("no range options"),
    }
}

fn msg_value(c: &serde_json::Value) -> Bson {
    let msg = match c.get("msgFile") {
        Some(p) => ejson_file(p.as_str().unwrap()),
        None => ejson_doc(c["msg"].clone()),
    };
    msg.get("v").unwrap().clone()
}

fn case_rng(c: &serde_json::Value) -> Vec<u8> {
    if let Some(f) = c.get("rngFile") {
        rng_file(f.as_str().unwrap())
    } else if let Some(h) = c.get("rngHex") {
        hex(h.as_str().unwrap())
    } else if c
        .get("rng")
        .and_then(|r| r.as_str())
        .is_some_and(|r| r.starts_with("rngPattern"))
    {
        rng_pattern()
    } else {
        Vec::new()
    }
}

/// Runs one explicit range case: `Ok(blob document)` or the error.
fn explicit_range(
    opts: &Document,
    value: &Bson,
    is_find: bool,
    user_id: &str,
    index_id: &str,
    cm: u64,
    rng: &mut ReplayRandom,
) -> Result<Bson, cipherdoc_crypto::Error> {
    let user_key = data_key(user_id);
    let index_key = data_key(index_id);
    let tokens = IndexKeyTokens::new(key_id(index_id), &index_key);
    let user = UserKey {
        id: key_id(user_id),
        key: &user_key,
    };
    let options = range_options_from_document(opts)?;
    if is_find {
        let Bson::Document(expr) = value else {
            panic!("expression expected")
        };
        // The index type comes from the first bound, as in libmongocrypt.
        let (_, first) = expr.get_array("$and").unwrap()[0]
            .as_document()
            .unwrap()
            .iter()
            .next()
            .unwrap();
        let bound = first.as_document().unwrap().iter().next().unwrap().1;
        let index = resolve_range_options(&options, bound)?;
        encrypt_range_expression(expr, &index, &tokens, cm, 0).map(Bson::Document)
    } else {
        let index = resolve_range_options(&options, value)?;
        let iup = encrypt_range_insert(value, &index, &tokens, user, cm, rng)?;
        assert_eq!(InsertUpdatePayloadV2::decode(&iup.encode()).unwrap(), iup);
        Ok(Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: iup.encode(),
        }))
    }
}

#[test]
fn explicit_encrypt_range_cases() {
    let cases = json("payloads/explicit-encrypt-cases.json");
    let (mut ok, mut errors) = (0, 0);
    for c in cases["cases"].as_array().unwrap() {
        if c["algorithm"] != "Range" {
            continue;
        }
        let desc = c["desc"].as_str().unwrap();
        let user_id = c["userKeyId"].as_str().unwrap();
        let index_id = c["indexKeyId"].as_str().unwrap_or(user_id);
        let cm = c["contentionFactor"].as_u64().unwrap();
        let is_find = c.get("queryType").is_some();
        let mut rng = ReplayRandom::new(case_rng(c));
        let got = explicit_range(
            &opts_doc(c),
            &msg_value(c),
            is_find,
            user_id,
            index_id,
            cm,
            &mut rng,
        );
        if let Some(e) = c.get("expectError") {
            let err = got.expect_err(desc);
            println!("{desc}: libmongocrypt says {e}; we say: {err}");
            errors += 1;
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{desc}: {e}"));
        let expected = ejson_file(c["expect"].as_str().unwrap());
        assert_eq!(
            doc_blobs(&bson::doc! {"v": got.clone()})
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>(),
            doc_blobs(&expected)
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>(),
            "{desc}"
        );
        // Whole structure equal too (expression shape, operators, field).
        assert_eq!(&got, expected.get("v").unwrap(), "{desc}");
        ok += 1;
    }
    assert_eq!(ok, 12);
    assert_eq!(errors, 3);
}

/// `range-sends-cryptoParams/explicit-find-int32`: not in the case list;
/// parameters of `_test_range_sends_cryptoParams` (min 0, max 1234567,
/// sparsity 3, trimFactor 4, cm 1, key123 for both keys).
#[test]
fn explicit_find_sends_crypto_params() {
    let dir = "range/range-sends-cryptoParams/explicit-find-int32";
    let opts = bson::doc! {"min": 0, "max": 1_234_567, "sparsity": 3_i64, "trimFactor": 4};
    let value = ejson_file(&format!("{dir}/to-encrypt.json"))
        .get("v")
        .unwrap()
        .clone();
    let mut rng = ReplayRandom::new(Vec::new());
    let got = explicit_range(&opts, &value, true, KEY123, KEY123, 1, &mut rng).unwrap();
    let expected = ejson_file(&format!("{dir}/expected.json"));
    assert_eq!(&got, expected.get("v").unwrap());
    let b = doc_blobs(&expected);
    assert_eq!(b.len(), 2);
    let full = FindRangePayloadV2::decode(&b[0]).unwrap();
    assert_eq!(full.sparsity, Some(3));
    assert_eq!(full.trim_factor, Some(4));
    assert_eq!(full.max_contention_factor(), Some(1));
    let stub = FindRangePayloadV2::decode(&b[1]).unwrap();
    assert!(stub.is_stub());
    assert_eq!(stub.payload_id, full.payload_id);
    assert_eq!(stub.first_operator, RangeOperator::Gte);
    assert_eq!(stub.second_operator, Some(RangeOperator::Lte));
}

fn all_keys() -> HashMap<KeyId, DataKey> {
    [KEY123, KEYABC, "12345678123498761234123456789013"]
        .into_iter()
        .map(|k| (key_id(k), data_key(k)))
        .collect()
}

#[test]
fn explicit_decrypt_range_blobs() {
    let keys = all_keys();
    let doc = ejson_file("payloads/explicit-decrypt/FLE2IndexedRangeEncryptedValueV2.json");
    let blob = bin6(&doc, "v");
    let v = IndexedRangeEncryptedValueV2::decode(blob).unwrap();
    assert_eq!(v.encode().unwrap(), blob);
    assert_eq!(v.bson_type, bson::spec::ElementType::Int32);
    assert!(!v.metadata.is_empty());
    assert_eq!(
        client::decrypt_indexed_range(&v, &keys).unwrap(),
        Bson::Int32(123)
    );
    assert_eq!(
        client::decrypt_blob(blob, &keys).unwrap(),
        Some(Bson::Int32(123))
    );

    let doc = ejson_file("payloads/explicit-decrypt/FLE2InsertUpdatePayloadV2-RangeV2.json");
    let blob = bin6(&doc, "v");
    let iup = InsertUpdatePayloadV2::decode(blob).unwrap();
    assert_eq!(iup.encode(), blob);
    assert!(iup.edge_token_sets.as_ref().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        client::decrypt_blob(blob, &keys).unwrap(),
        Some(Bson::Int32(123_456))
    );
    // Server token sets: one per edge, each ECOC value carries isLeaf and
    // exactly one edge is the leaf.
    let ki = data_key(&hex::encode(iup.index_key_id.as_bytes()));
    let t = IndexKeyTokens::new(iup.index_key_id, &ki);
    let sets = insert_token_sets(&iup);
    assert_eq!(sets.len(), iup.edge_token_sets.as_ref().unwrap().len());
    let leaves = sets
        .iter()
        .map(|s| {
            let e = server::decrypt_ecoc_value(t.ecoc(), s.ecoc_value).unwrap();
            assert_eq!(&e.esc_token, s.esc);
            e.range_is_leaf.unwrap()
        })
        .filter(|l| *l)
        .count();
    assert_eq!(leaves, 1);
}

#[test]
fn iev_v2_range_vector() {
    let v = json("payloads/iev-v2/FLECrudTest-insertOneRangeV2.json");
    assert_eq!(v["type"], "range");
    let blob = hex(v["payload"].as_str().unwrap());
    let s_id = KeyId::from_slice(&hex(v["S_KeyId"].as_str().unwrap())).unwrap();
    let k_id = KeyId::from_slice(&hex(v["K_KeyId"].as_str().unwrap())).unwrap();
    let s_key = DataKey::from_slice(&hex(v["S_Key"].as_str().unwrap())).unwrap();
    let k_key = DataKey::from_slice(&hex(v["K_Key"].as_str().unwrap())).unwrap();
    let iev = IndexedRangeEncryptedValueV2::decode(&blob).unwrap();
    assert_eq!(iev.encode().unwrap(), blob);
    assert_eq!(iev.index_key_id, s_id);
    assert_eq!(
        iev.bson_type as u8,
        v["bson_value_type"].as_u64().unwrap() as u8
    );
    let keys: HashMap<KeyId, DataKey> =
        [(s_id, s_key.clone()), (k_id, k_key)].into_iter().collect();
    let value = client::decrypt_blob(&blob, &keys).unwrap().unwrap();
    assert_eq!(value, Bson::Int32(5));
    assert_eq!(
        &*value_bytes(&value).unwrap(),
        &hex(v["bson_value"].as_str().unwrap())[..]
    );

    // Metadata blocks: as listed, one per edge root, 0101, 0, 01, 010.
    let metas: Vec<MetadataBlock> = v["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| MetadataBlock::from_slice(&hex(m.as_str().unwrap())).unwrap())
        .collect();
    assert_eq!(metas, iev.metadata);
    let edges = ["root", "0101", "0", "01", "010"];
    assert_eq!(metas.len(), edges.len());
    // The same edges come out of the range maths for int32 5 in [0, 8],
    // sparsity 1, trimFactor 0.
    let index =
        RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(8), None, 1, Some(0)).unwrap();
    assert_eq!(
        index.edges(&RangeValue::Int32(5)).unwrap().to_strings(),
        edges
    );
    let t = IndexKeyTokens::new(s_id, &s_key);
    for (m, e) in metas.iter().zip(edges) {
        let l = t
            .server_token_derivation_level1()
            .derive_from_data(e.as_bytes());
        assert_eq!(m.decrypt_count(&l).unwrap(), (1, 0), "edge {e}");
        assert!(m.matches(&l), "edge {e}");
        let d = t.edc().derive_from_data(e.as_bytes()).with_contention(0);
        assert_eq!(m.tag, d.twice_derived().tag(1), "edge {e}");
    }
    assert_eq!(
        iev.tags().collect::<Vec<_>>(),
        metas.iter().map(|m| m.tag).collect::<Vec<_>>()
    );

    // Queries: [5, 5] and [4, 7] reach the value's tags; [6, 8] does not.
    let ops = RangeFindOperators {
        payload_id: 0,
        first: RangeOperator::Gte,
        second: Some(RangeOperator::Lte),
    };
    for (lo, hi, hit) in [
        (5, 5, true),
        (4, 7, true),
        (0, 8, true),
        (6, 8, false),
        (0, 4, false),
    ] {
        let f = encrypt_range_find(
            &Bson::Int32(lo),
            true,
            &Bson::Int32(hi),
            true,
            &index,
            &t,
            0,
            ops,
        )
        .unwrap();
        assert_eq!(range_value_matches(&iev, &f), hit, "[{lo}, {hi}]");
        let counts = vec![1; f.contention_tokens().len()];
        let tags = range_query_tags(&f, &counts).unwrap();
        assert_eq!(
            iev.tags().any(|t| tags.contains(&t)),
            hit,
            "[{lo}, {hi}] tags"
        );
    }
}
