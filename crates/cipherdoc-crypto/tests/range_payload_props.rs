#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]
//! Range payload properties: codec round trips for blobs 13 and 15, decoders
//! never panic, insert → stored value → query agreement with plaintext
//! comparisons, random-byte accounting, expression parsing and refusals.

mod common;

use std::collections::HashMap;

use bson::spec::ElementType;
use bson::{Bson, doc};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::client_range::*;
use cipherdoc_crypto::payload::*;
use cipherdoc_crypto::range::{RangeIndex, RangeValue};
use cipherdoc_crypto::server::{
    Tag, build_indexed_range_value, decrypt_ecoc_value, insert_token_sets, range_query_tags,
    range_value_matches,
};
use cipherdoc_crypto::tokens::*;
use cipherdoc_crypto::{DataKey, Error, KeyId, OsRandom, RandomSource, ReplayRandom};
use common::*;
use proptest::prelude::*;

fn b32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn op() -> impl Strategy<Value = RangeOperator> {
    prop_oneof![
        Just(RangeOperator::Gt),
        Just(RangeOperator::Gte),
        Just(RangeOperator::Lt),
        Just(RangeOperator::Lte),
    ]
}

fn number() -> impl Strategy<Value = Bson> {
    prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<i64>().prop_map(|n| Bson::DateTime(bson::DateTime::from_millis(n))),
        (-1e300f64..1e300).prop_map(Bson::Double),
        any::<[u8; 16]>().prop_map(|b| Bson::Decimal128(bson::Decimal128::from_bytes(b))),
    ]
}

fn find_edge() -> impl Strategy<Value = EdgeFindTokenSetV2> {
    (b32(), b32(), b32()).prop_map(|(d, s, l)| EdgeFindTokenSetV2 {
        edc_derived_token: EdcDerivedFromDataToken::from_bytes(d),
        esc_derived_token: EscDerivedFromDataToken::from_bytes(s),
        server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(l),
    })
}

fn find_payload() -> impl Strategy<Value = FindRangePayloadV2> {
    let full = proptest::option::of((
        proptest::collection::vec(find_edge(), 0..6),
        0..i64::MAX as u64,
        any::<i64>(),
        proptest::option::of(any::<i32>()),
        any::<i32>(),
        number(),
        number(),
    ));
    (full, any::<i32>(), op(), proptest::option::of(op())).prop_map(|(full, id, first, second)| {
        let mut p = FindRangePayloadV2::stub(id, first, second);
        if let Some((edges, cm, sp, pn, tf, mn, mx)) = full {
            p.payload = Some(FindRangeEdgesInfoV2 {
                edges,
                max_contention_factor: cm,
            });
            p.sparsity = Some(sp);
            p.precision = pn;
            p.trim_factor = Some(tf);
            p.index_min = Some(mn);
            p.index_max = Some(mx);
        }
        p
    })
}

fn metadata() -> impl Strategy<Value = MetadataBlock> {
    (b32(), b32(), b32()).prop_map(|(c, t, z)| MetadataBlock {
        encrypted_count: c,
        tag: Tag::from_bytes(t),
        encrypted_zeros: z,
    })
}

fn range_value_15() -> impl Strategy<Value = IndexedRangeEncryptedValueV2> {
    (
        any::<[u8; 16]>(),
        prop_oneof![
            Just(ElementType::Int32),
            Just(ElementType::Int64),
            Just(ElementType::DateTime),
            Just(ElementType::Double),
            Just(ElementType::Decimal128),
        ],
        proptest::collection::vec(any::<u8>(), 32..200),
        proptest::collection::vec(metadata(), 1..12),
    )
        .prop_map(|(id, t, sev, metadata)| IndexedRangeEncryptedValueV2 {
            index_key_id: KeyId::from_bytes(id),
            bson_type: t,
            server_encrypted_value: sev,
            metadata,
        })
}

fn keys() -> (IndexKeyTokens, DataKey, HashMap<KeyId, DataKey>) {
    let ki = data_key(KEY123);
    let ku = data_key(KEYABC);
    let t = IndexKeyTokens::new(key_id(KEY123), &ki);
    let map = [(key_id(KEY123), ki), (key_id(KEYABC), ku.clone())]
        .into_iter()
        .collect();
    (t, ku, map)
}

/// Counts the random bytes a call draws.
struct Counting<R>(R, usize);
impl<R: RandomSource> RandomSource for Counting<R> {
    fn fill(&mut self, buf: &mut [u8]) -> cipherdoc_crypto::Result<()> {
        self.1 += buf.len();
        self.0.fill(buf)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn find_range_roundtrip(x in find_payload()) {
        let blob = x.encode();
        prop_assert_eq!(blob[0], 13);
        let y = FindRangePayloadV2::decode(&blob).unwrap();
        prop_assert_eq!(&y, &x);
        prop_assert_eq!(y.encode(), blob);
    }

    #[test]
    fn range_value_15_roundtrip(x in range_value_15()) {
        let blob = x.encode().unwrap();
        prop_assert_eq!(blob[0], 15);
        prop_assert_eq!(usize::from(blob[18]), x.metadata.len());
        let y = IndexedRangeEncryptedValueV2::decode(&blob).unwrap();
        prop_assert_eq!(&y, &x);
    }

    #[test]
    fn decoders_never_panic(first in prop_oneof![Just(13u8), Just(15u8), any::<u8>()], rest in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut b = vec![first];
        b.extend_from_slice(&rest);
        let _ = FindRangePayloadV2::decode(&b);
        let _ = IndexedRangeEncryptedValueV2::decode(&b);
        let _ = client::decrypt_blob(&b, &HashMap::<KeyId, DataKey>::new());
    }

    #[test]
    fn mutated_blobs_never_panic(x in find_payload(), v in range_value_15(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        for blob in [x.encode(), v.encode().unwrap()] {
            let mut m = blob.clone();
            let i = pos.index(m.len());
            m[i] = byte;
            let _ = FindRangePayloadV2::decode(&m);
            let _ = IndexedRangeEncryptedValueV2::decode(&m);
            let c = cut.index(blob.len());
            prop_assert!(FindRangePayloadV2::decode(&blob[..c]).is_err());
            let r = IndexedRangeEncryptedValueV2::decode(&blob[..c]);
            // A shorter 15 may still parse (the SEV absorbs the cut) but never panics.
            let _ = r;
        }
    }

    /// Insert → server stored value → query: the stored tags and the
    /// collection-scan match agree with the plaintext comparison, for random
    /// bounds, sparsity and trimFactor.
    #[test]
    fn insert_store_query_agree(
        v in 0i32..=1000,
        a in 0i32..=1000,
        b in 0i32..=1000,
        incl_lo in any::<bool>(),
        incl_hi in any::<bool>(),
        sp in 1i64..=4,
        tf in 0i32..=5,
        cm in 0u64..=2,
    ) {
        let (t, ku, map) = keys();
        let user = UserKey { id: key_id(KEYABC), key: &ku };
        let index = RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(1000), None, sp, Some(tf)).unwrap();
        let mut rng = Counting(OsRandom, 0);
        let iup = encrypt_range_insert(&Bson::Int32(v), &index, &t, user, cm, &mut rng).unwrap();
        let n_edges = iup.edge_token_sets.as_ref().unwrap().len();
        prop_assert_eq!(n_edges, index.edge_count());
        prop_assert_eq!(rng.1, if cm > 0 { 8 } else { 0 } + 32 + 16 * n_edges);
        // Exactly the leaf edge's ECOC plaintext ends in 1; top-level p ends in 0.
        let sets = insert_token_sets(&iup);
        let leaves: Vec<bool> = sets.iter().map(|s| decrypt_ecoc_value(t.ecoc(), s.ecoc_value).unwrap().range_is_leaf.unwrap()).collect();
        prop_assert_eq!(leaves.iter().filter(|l| **l).count(), 1);
        prop_assert_eq!(decrypt_ecoc_value(t.ecoc(), &iup.encrypted_tokens).unwrap().range_is_leaf, Some(false));
        let counts: Vec<u64> = (1..=n_edges as u64).collect();
        let stored = build_indexed_range_value(&iup, &counts, &mut OsRandom).unwrap();
        for ((m, s), &c) in stored.metadata.iter().zip(&sets).zip(&counts) {
            prop_assert_eq!(m.tag, s.tag(c));
            prop_assert_eq!(m.decrypt_count(s.server_derived).unwrap(), (c, iup.contention_factor));
        }
        let blob = stored.encode().unwrap();
        prop_assert_eq!(client::decrypt_blob(&blob, &map).unwrap(), Some(Bson::Int32(v)));

        let (lo, hi) = (a.min(b), a.max(b));
        let expect = (if incl_lo { v >= lo } else { v > lo }) && (if incl_hi { v <= hi } else { v < hi });
        let ops = RangeFindOperators { payload_id: 7, first: RangeOperator::Gt, second: Some(RangeOperator::Lt) };
        match encrypt_range_find(&Bson::Int32(lo), incl_lo, &Bson::Int32(hi), incl_hi, &index, &t, cm, ops) {
            Ok(find) => {
                prop_assert_eq!(range_value_matches(&stored, &find), expect);
                // Tags with each (edge, k) counted up to the largest count used.
                let cts = find.contention_tokens();
                prop_assert_eq!(cts.len(), find.data_tokens().len() * (cm as usize + 1));
                let q = vec![n_edges as u64; cts.len()];
                let tags = range_query_tags(&find, &q).unwrap();
                prop_assert_eq!(stored.tags().any(|x| tags.contains(&x)), expect);
                prop_assert_eq!(FindRangePayloadV2::decode(&find.encode()).unwrap(), find);
            }
            // An empty range (exclusive bounds that meet) is refused, as libmongocrypt does.
            Err(_) => prop_assert!(!expect),
        }
    }
}

#[test]
fn out_of_range_insert_names_the_bounds() {
    let (t, ku, _) = keys();
    let user = UserKey {
        id: key_id(KEYABC),
        key: &ku,
    };
    let index =
        RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(200), None, 1, None).unwrap();
    let mut rng = ReplayRandom::new(Vec::new());
    for v in [201, -1, i32::MAX] {
        let e = encrypt_range_insert(&Bson::Int32(v), &index, &t, user, 0, &mut rng).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("[0, 200]"), "{m}");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    // Nothing was drawn before refusing.
    assert_eq!(rng.remaining(), 0);
    // Wrong type.
    let e = encrypt_range_insert(&Bson::Int64(5), &index, &t, user, 0, &mut rng).unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
    let e =
        encrypt_range_insert(&Bson::String("x".into()), &index, &t, user, 0, &mut rng).unwrap_err();
    assert!(matches!(e, Error::Bson(_)), "{e:?}");
    // Double without precision: bounds are checked even though the encoding ignores them.
    let dindex = RangeIndex::new(
        RangeValue::Double(-1.0),
        RangeValue::Double(1.0),
        None,
        2,
        None,
    )
    .unwrap();
    let e = encrypt_range_insert(&Bson::Double(2.5), &dindex, &t, user, 0, &mut rng).unwrap_err();
    assert!(e.to_string().contains("[-1, 1]"), "{e}");
}

#[test]
fn expression_forms_and_refusals() {
    let (t, _, _) = keys();
    let index =
        RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(200), None, 1, None).unwrap();
    let enc = |e: bson::Document| encrypt_range_expression(&e, &index, &t, 0, 3);
    let matched = enc(doc! {"$and": [{"age": {"$gte": 23}}, {"age": {"$lte": 35}}]}).unwrap();
    let agg = enc(doc! {"$and": [{"$gte": ["age", 23]}, {"$lte": ["age", 35]}]}).unwrap();
    let blobs = |d: &bson::Document| {
        let mut out = Vec::new();
        for el in d.get_array("$and").unwrap() {
            let bson::Bson::Document(e) = el else {
                panic!()
            };
            let (_, v) = e.iter().next().unwrap();
            let b = match v {
                Bson::Document(inner) => inner.iter().next().unwrap().1.clone(),
                Bson::Array(a) => a[1].clone(),
                _ => panic!(),
            };
            let Bson::Binary(b) = b else { panic!() };
            out.push(b.bytes);
        }
        out
    };
    assert_eq!(blobs(&matched), blobs(&agg));
    let agg_arr = agg.get_array("$and").unwrap()[0].as_document().unwrap();
    assert_eq!(
        agg_arr.get_array("$gte").unwrap()[0],
        Bson::String("age".into())
    );
    let b = blobs(&matched);
    let full = FindRangePayloadV2::decode(&b[0]).unwrap();
    let stub = FindRangePayloadV2::decode(&b[1]).unwrap();
    assert!(!full.is_stub() && stub.is_stub());
    assert_eq!((full.payload_id, stub.payload_id), (3, 3));
    // Reversed order: first operator is $lt, still one full + one stub.
    let rev = enc(doc! {"$and": [{"age": {"$lt": 35}}, {"age": {"$gt": 23}}]}).unwrap();
    let rb = blobs(&rev);
    let f = FindRangePayloadV2::decode(&rb[0]).unwrap();
    assert_eq!(f.first_operator, RangeOperator::Lt);
    assert_eq!(f.second_operator, Some(RangeOperator::Gt));
    assert!(!f.is_stub());
    // Upper bound only: lower is the index min.
    let up = enc(doc! {"$and": [{"age": {"$lte": 35}}]}).unwrap();
    let ub = blobs(&up);
    assert_eq!(ub.len(), 1);
    let direct = encrypt_range_find(
        &Bson::Int32(0),
        true,
        &Bson::Int32(35),
        true,
        &index,
        &t,
        0,
        RangeFindOperators {
            payload_id: 3,
            first: RangeOperator::Lte,
            second: None,
        },
    )
    .unwrap();
    assert_eq!(ub[0], direct.encode());

    for bad in [
        doc! {"$or": []},
        doc! {"$and": 1},
        doc! {"$and": [], "x": 1},
        doc! {"$and": []},
        doc! {"$and": [1]},
        doc! {"$and": [{}]},
        doc! {"$and": [{"age": {"$eq": 1}}]},
        doc! {"$and": [{"age": {"$gt": 1, "$lt": 5}}]},
        doc! {"$and": [{"age": {"$gt": 1}}, {"age": {"$gte": 2}}]},
        doc! {"$and": [{"age": {"$gt": 1}}, {"other": {"$lt": 5}}]},
        doc! {"$and": [{"$gt": ["age"]}]},
        doc! {"$and": [{"$gt": [1, 2]}]},
        doc! {"$and": [{"age": {"$gt": "a"}}]},
        doc! {"$and": [{"age": {"$gt": 50}}, {"age": {"$lt": 10}}]},
        doc! {"$and": [{"age": {"$gt": 1}}, {"age": {"$lt": 5}}, {"age": {"$lt": 6}}]},
    ] {
        assert!(enc(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn stored_value_refusals() {
    let (t, ku, _) = keys();
    let user = UserKey {
        id: key_id(KEYABC),
        key: &ku,
    };
    let eq = client::encrypt_equality_insert(&Bson::Int32(1), &t, user, 0, &mut OsRandom).unwrap();
    assert!(build_indexed_range_value(&eq, &[1], &mut OsRandom).is_err());
    assert_eq!(insert_token_sets(&eq).len(), 1);
    let index =
        RangeIndex::new(RangeValue::Int32(0), RangeValue::Int32(200), None, 1, None).unwrap();
    let iup = encrypt_range_insert(&Bson::Int32(7), &index, &t, user, 0, &mut OsRandom).unwrap();
    assert!(build_indexed_range_value(&iup, &[1], &mut OsRandom).is_err());
    let empty = IndexedRangeEncryptedValueV2 {
        index_key_id: key_id(KEY123),
        bson_type: ElementType::Int32,
        server_encrypted_value: vec![0; 40],
        metadata: Vec::new(),
    };
    assert!(empty.encode().is_err());
    assert!(IndexedRangeEncryptedValueV2::decode(&[15; 19]).is_err());
    let mut zero_edges = vec![15u8];
    zero_edges.extend_from_slice(&[1; 17]);
    zero_edges.push(0x10);
    zero_edges.push(0);
    zero_edges.extend_from_slice(&[0; 64]);
    assert!(IndexedRangeEncryptedValueV2::decode(&zero_edges).is_err());
    // A stub has no tokens, no tags and matches everything.
    let stub = encrypt_range_find_stub(RangeFindOperators {
        payload_id: 1,
        first: RangeOperator::Gt,
        second: Some(RangeOperator::Lt),
    });
    assert!(stub.data_tokens().is_empty());
    assert!(range_query_tags(&stub, &[]).unwrap().is_empty());
    assert!(range_query_tags(&stub, &[1]).is_err());
    let counts = vec![1; index.edge_count()];
    let stored = build_indexed_range_value(&iup, &counts, &mut OsRandom).unwrap();
    assert!(range_value_matches(&stored, &stub));
}
