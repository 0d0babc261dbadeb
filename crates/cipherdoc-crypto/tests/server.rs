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

use bson::Bson;
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::payload::{IndexedEqualityEncryptedValueV2, MetadataBlock};
use cipherdoc_crypto::server::*;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, Error, KeyId, OsRandom};
use common::*;
use proptest::prelude::*;

#[test]
fn iev_v2_vector() {
    let v = json("payloads/iev-v2/FLECrudTest-insertOneV2.json");
    let blob = hex(v["payload"].as_str().unwrap());
    let s_id = KeyId::from_slice(&hex(v["S_KeyId"].as_str().unwrap())).unwrap();
    let k_id = KeyId::from_slice(&hex(v["K_KeyId"].as_str().unwrap())).unwrap();
    let s_key = DataKey::from_slice(&hex(v["S_Key"].as_str().unwrap())).unwrap();
    let k_key = DataKey::from_slice(&hex(v["K_Key"].as_str().unwrap())).unwrap();
    let iev = IndexedEqualityEncryptedValueV2::decode(&blob).unwrap();
    assert_eq!(iev.encode(), blob);
    assert_eq!(iev.index_key_id, s_id);
    assert_eq!(
        iev.bson_type as u8,
        v["bson_value_type"].as_u64().unwrap() as u8
    );
    let keys: HashMap<KeyId, DataKey> =
        [(s_id, s_key.clone()), (k_id, k_key)].into_iter().collect();
    let value = client::decrypt_indexed_equality(&iev, &keys).unwrap();
    let vb = hex(v["bson_value"].as_str().unwrap());
    assert_eq!(
        &*cipherdoc_crypto::payload::value_bytes(&value).unwrap(),
        &vb[..]
    );
    // Metadata: tokens from the value bytes, count 1, contention 0.
    let metas = v["metadata"].as_array().unwrap();
    assert_eq!(metas.len(), 1);
    let meta = MetadataBlock::from_slice(&hex(metas[0].as_str().unwrap())).unwrap();
    assert_eq!(meta, iev.metadata);
    let t = IndexKeyTokens::new(s_id, &s_key);
    let l = t.server_token_derivation_level1().derive_from_data(&vb);
    assert_eq!(meta.decrypt_count(&l).unwrap(), (1, 0));
    assert!(meta.matches(&l));
    let other = t
        .server_token_derivation_level1()
        .derive_from_data(b"other");
    assert!(!meta.matches(&other));
    let d = t.edc().derive_from_data(&vb).with_contention(0);
    assert_eq!(meta.tag, d.twice_derived().tag(1));
    // The query side reaches the same tag.
    let find = client::encrypt_equality_find(&value, &t, 0).unwrap();
    assert_eq!(equality_query_tags(&find, &[1]).unwrap(), vec![meta.tag]);
}

#[test]
fn tags_with_the_key_scheduled_once_are_the_tags_one_by_one() {
    let t = IndexKeyTokens::new(key_id(KEY123), &data_key(KEY123));
    let d = t
        .edc()
        .derive_from_data(b"value")
        .with_contention(3)
        .twice_derived();
    let batch: Vec<Tag> = d.tags(300).collect();
    let one_by_one: Vec<Tag> = (1..=300).map(|i| d.tag(i)).collect();
    assert_eq!(batch, one_by_one);
    assert_eq!(d.tags(0).count(), 0);
}

#[test]
fn insert_payload_to_stored_value() {
    let ki = data_key(KEY123);
    let ku = data_key(KEYABC);
    let t = IndexKeyTokens::new(key_id(KEY123), &ki);
    let user = UserKey {
        id: key_id(KEYABC),
        key: &ku,
    };
    let value = Bson::String("value123".into());
    let iup = client::encrypt_equality_insert(&value, &t, user, 3, &mut OsRandom).unwrap();
    let iev = build_indexed_equality_value(&iup, 7, &mut OsRandom).unwrap();
    let blob = iev.encode();
    let keys: HashMap<KeyId, DataKey> = [(key_id(KEY123), ki.clone()), (key_id(KEYABC), ku)]
        .into_iter()
        .collect();
    assert_eq!(
        client::decrypt_blob(&blob, &keys).unwrap(),
        Some(value.clone())
    );
    assert_eq!(
        iev.metadata
            .decrypt_count(&iup.server_derived_from_data_token)
            .unwrap(),
        (7, iup.contention_factor)
    );
    // The find payload's tag for (k, 7) equals the stored tag.
    let find = client::encrypt_equality_find(&value, &t, 3).unwrap();
    let ct = find
        .contention_tokens()
        .nth(iup.contention_factor as usize)
        .unwrap();
    assert_eq!(ct.tags(7).last().unwrap(), iev.metadata.tag);
    assert_eq!(ct.esc, EscTokens::new(&iup.esc_derived_token));
    // ECOC entry decrypts to the payload's s.
    let e = decrypt_ecoc_value(t.ecoc(), &iup.encrypted_tokens).unwrap();
    assert_eq!(e.esc_token, iup.esc_derived_token);
    assert_eq!(e.range_is_leaf, None);
    assert!(decrypt_ecoc_value(t.ecoc(), &iup.encrypted_tokens[..40]).is_err());
}

#[test]
fn anchor_values_roundtrip() {
    let s =
        cipherdoc_crypto::tokens::EscDerivedFromDataTokenAndContentionFactor::from_bytes([5; 32]);
    let tok = EscTokens::new(&s);
    let a = AnchorValue { apos: 3, cpos: 99 };
    let enc = a.encrypt(&tok.value, &mut OsRandom).unwrap();
    assert_eq!(enc.len(), 32);
    assert_eq!(AnchorValue::decrypt(&tok.value, &enc).unwrap(), a);
    assert!(AnchorValue::decrypt(&tok.value, &enc[..31]).is_err());
    assert_eq!(null_anchor_id(&tok.tag), anchor_id(&tok.tag, 0));
    assert_ne!(anchor_id(&tok.tag, 1), non_anchor_id(&tok.tag, 1));
}

// ---------------------------------------------------------------------------
// A simulated ESC: id → optional anchor value.

#[derive(Default)]
struct Esc {
    docs: HashMap<EscId, Option<Vec<u8>>>,
    /// Values inserted since the last compaction/cleanup (the ECOC, deduplicated).
    ecoc: std::collections::BTreeSet<usize>,
    probes: usize,
}

impl Esc {
    fn search(&mut self, t: &EscTokens) -> EmuBinaryResult {
        let n = self.docs.len() as u64;
        let docs = &self.docs;
        let probes = &mut self.probes;
        emu_binary::<Error>(t, n, |id| {
            *probes += 1;
            Ok(docs.get(id).cloned())
        })
        .unwrap()
    }

    fn insert(&mut self, v: usize, t: &EscTokens) -> u64 {
        self.ecoc.insert(v);
        let c = self.search(t).insert_count().unwrap();
        assert!(
            self.docs.insert(non_anchor_id(&t.tag, c), None).is_none(),
            "duplicate ESC id"
        );
        c
    }

    fn compact(&mut self, values: &[EscTokens]) {
        let non_anchors: Vec<EscId> = self
            .docs
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        for v in std::mem::take(&mut self.ecoc) {
            let t = &values[v];
            let r = self.search(t);
            if let Some((apos, v)) = compaction_anchor(&r).unwrap() {
                let id = anchor_id(&t.tag, apos);
                assert!(
                    self.docs
                        .insert(id, Some(v.encrypt(&t.value, &mut OsRandom).unwrap()))
                        .is_none()
                );
            }
        }
        for id in non_anchors {
            self.docs.remove(&id);
        }
    }

    fn cleanup(&mut self, values: &[EscTokens]) {
        let non_anchors: Vec<EscId> = self
            .docs
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        for v in std::mem::take(&mut self.ecoc) {
            let t = &values[v];
            let r = self.search(t);
            let plan = cleanup_plan(&r).unwrap();
            if let Some(n) = plan.null_anchor {
                self.docs.insert(
                    null_anchor_id(&t.tag),
                    Some(n.encrypt(&t.value, &mut OsRandom).unwrap()),
                );
            }
            if let Some((a, b)) = plan.delete_anchors {
                for p in a..=b {
                    self.docs.remove(&anchor_id(&t.tag, p));
                }
            }
        }
        for id in non_anchors {
            self.docs.remove(&id);
        }
    }
}

fn value_tokens(i: u8) -> EscTokens {
    EscTokens::new(
        &cipherdoc_crypto::tokens::EscDerivedFromDataTokenAndContentionFactor::from_bytes([i; 32]),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8),
    Compact,
    Cleanup,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..3).prop_map(Op::Insert),
        1 => Just(Op::Compact),
        1 => Just(Op::Cleanup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn esc_counts_survive_compaction_and_cleanup(ops in proptest::collection::vec(op(), 0..80)) {
        let values: Vec<EscTokens> = (0..3).map(value_tokens).collect();
        let mut esc = Esc::default();
        let mut inserted = [0u64; 3];
        for o in ops {
            match o {
                Op::Insert(v) => {
                    let c = esc.insert(v as usize, &values[v as usize]);
                    inserted[v as usize] += 1;
                    prop_assert_eq!(c, inserted[v as usize], "inserts receive counts 1, 2, 3, …");
                }
                Op::Compact => esc.compact(&values),
                Op::Cleanup => esc.cleanup(&values),
            }
            for (i, t) in values.iter().enumerate() {
                prop_assert_eq!(esc.search(t).query_count(), inserted[i]);
            }
        }
    }
}

#[test]
fn probes_grow_logarithmically() {
    let t = value_tokens(9);
    let mut esc = Esc::default();
    for _ in 0..1000 {
        esc.insert(0, &t);
    }
    esc.probes = 0;
    assert_eq!(esc.search(&t).query_count(), 1000);
    assert!(esc.probes < 40, "{} probes", esc.probes);
}

#[test]
fn state_machine_can_be_driven_by_hand() {
    let t = value_tokens(1);
    let mut esc = Esc::default();
    for _ in 0..5 {
        esc.insert(0, &t);
    }
    let mut m = EmuBinary::new(&t, esc.docs.len() as u64);
    let mut kinds = (0, 0);
    while let Some(id) = m.next_probe().unwrap() {
        // `next_probe` is `probe_id(next_probe_at)`, and the positions
        // name the public id functions' ids.
        let at = m.next_probe_at().unwrap().unwrap();
        assert_eq!(m.probe_id(at), id);
        let expected = match at {
            ProbeAt::Anchor(a) => {
                kinds.0 += 1;
                anchor_id(&t.tag, a)
            }
            ProbeAt::NonAnchor(c) => {
                kinds.1 += 1;
                non_anchor_id(&t.tag, c)
            }
        };
        assert_eq!(id, expected, "{at:?}");
        match esc.docs.get(&id) {
            None => m.feed(ProbeResult::Absent).unwrap(),
            Some(v) => m
                .feed(ProbeResult::Present {
                    value: v.as_deref(),
                })
                .unwrap(),
        }
    }
    let r = m.result().unwrap();
    assert_eq!((r.cpos, r.apos), (Some(5), Some(0)));
    assert!(
        kinds.0 > 0 && kinds.1 > 0,
        "both kinds were probed: {kinds:?}"
    );
    assert_eq!(m.next_probe_at().unwrap(), None);
    // A stored anchor whose value is missing is reported, not trusted.
    let mut m = EmuBinary::new(&t, 0);
    assert!(m.feed(ProbeResult::Present { value: None }).is_err());
}

#[test]
fn padding_anchors() {
    let root = cipherdoc_crypto::tokens::EscToken::from_bytes([3; 32]).anchor_padding_root();
    let key = root.key();
    let val = root.value();
    let mut docs: HashMap<EscId, Option<Vec<u8>>> = HashMap::new();
    let run = |docs: &HashMap<EscId, Option<Vec<u8>>>| {
        EmuBinary::anchor_padding(&root)
            .run::<Error>(|id| Ok(docs.get(id).cloned()))
            .unwrap()
    };
    let r = run(&docs);
    assert_eq!(r.apos, Some(0));
    for p in padding_anchor_positions(&r, 5).unwrap() {
        docs.insert(
            anchor_id(&key, p),
            Some(
                AnchorValue { apos: 0, cpos: 0 }
                    .encrypt(&val, &mut OsRandom)
                    .unwrap(),
            ),
        );
    }
    let r = run(&docs);
    assert_eq!(r.apos, Some(5));
    let plan = cleanup_padding_plan(&r);
    assert_eq!(plan.null_anchor, Some(AnchorValue { apos: 5, cpos: 0 }));
    assert_eq!(plan.delete_anchors, Some((1, 5)));
    docs.insert(
        null_anchor_id(&key),
        Some(
            AnchorValue { apos: 5, cpos: 0 }
                .encrypt(&val, &mut OsRandom)
                .unwrap(),
        ),
    );
    for p in 1..=5 {
        docs.remove(&anchor_id(&key, p));
    }
    let r = run(&docs);
    assert_eq!(r.apos, None);
    assert_eq!(padding_anchor_positions(&r, 2).unwrap(), 6..=7);
}

/// `assume_no_anchors` gives exactly the probes' answers on an ESC without
/// anchors, with fewer probes: for 0..40 inserts of a value (and of a second
/// value in between), for value searches and padding searches.
#[test]
fn assuming_no_anchors_matches_probing_an_anchor_free_esc() {
    let t = value_tokens(4);
    let other = value_tokens(5);
    let root = cipherdoc_crypto::tokens::EscToken::from_bytes([6; 32]).anchor_padding_root();
    let mut esc = Esc::default();
    for n in 0..40u64 {
        let run = |m: EmuBinary, docs: &HashMap<EscId, Option<Vec<u8>>>, probes: &mut usize| {
            m.run::<Error>(|id| {
                *probes += 1;
                Ok(docs.get(id).cloned())
            })
            .unwrap()
        };
        for make in [
            &(|| EmuBinary::new(&t, 0)) as &dyn Fn() -> EmuBinary,
            &|| EmuBinary::anchor_padding(&root),
        ] {
            let (mut full, mut short) = (0, 0);
            let expected = run(make(), &esc.docs, &mut full);
            let mut m = make();
            m.assume_no_anchors().unwrap();
            assert_eq!(run(m, &esc.docs, &mut short), expected, "after {n} inserts");
            assert!(short < full, "after {n} inserts: {short} vs {full} probes");
        }
        assert_eq!(esc.search(&t).query_count(), n);
        esc.insert(0, &t);
        esc.insert(1, &other);
    }
    // After the anchor phase it changes nothing.
    let mut m = EmuBinary::new(&t, 0);
    m.assume_no_anchors().unwrap();
    let before = format!("{m:?}");
    m.assume_no_anchors().unwrap();
    assert_eq!(format!("{m:?}"), before);
}
