#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]
//! Property tests: decode(encode(x)) == x for every codec, and arbitrary bytes
//! never make a decoder panic.

use bson::Bson;
use bson::spec::ElementType;
use cipherdoc_crypto::KeyId;
use cipherdoc_crypto::client::{self, KeyLookup};
use cipherdoc_crypto::payload::*;
use cipherdoc_crypto::server::{Tag, decrypt_ecoc_value};
use cipherdoc_crypto::tokens::*;
use proptest::prelude::*;

fn b32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}
fn key_id() -> impl Strategy<Value = KeyId> {
    any::<[u8; 16]>().prop_map(KeyId::from_bytes)
}
fn bson_type() -> impl Strategy<Value = ElementType> {
    prop_oneof![
        Just(ElementType::String),
        Just(ElementType::Int32),
        Just(ElementType::Int64),
        Just(ElementType::Boolean),
        Just(ElementType::DateTime),
        Just(ElementType::Binary),
        Just(ElementType::Double),
    ]
}
fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), min..max)
}
fn number() -> impl Strategy<Value = Bson> {
    prop_oneof![
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<i64>().prop_map(|n| Bson::DateTime(bson::DateTime::from_millis(n))),
        (-1e9f64..1e9).prop_map(Bson::Double),
    ]
}

fn edge() -> impl Strategy<Value = EdgeTokenSetV2> {
    (b32(), b32(), b32(), bytes(0, 60)).prop_map(|(d, s, l, p)| EdgeTokenSetV2 {
        edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(d),
        esc_derived_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(s),
        server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(l),
        encrypted_tokens: p,
    })
}

fn iup() -> impl Strategy<Value = InsertUpdatePayloadV2> {
    let base = (
        b32(),
        b32(),
        bytes(0, 60),
        key_id(),
        bson_type(),
        bytes(16, 120),
        b32(),
        b32(),
        0..i64::MAX as u64,
    );
    let range = proptest::option::of((
        proptest::collection::vec(edge(), 0..4),
        any::<i64>(),
        proptest::option::of(any::<i32>()),
        any::<i32>(),
        number(),
        number(),
    ));
    (base, range).prop_map(|((d, s, p, u, t, v, e, l, k), range)| {
        let mut x = InsertUpdatePayloadV2 {
            edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(d),
            esc_derived_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(s),
            encrypted_tokens: p,
            index_key_id: u,
            bson_type: t,
            value: v,
            server_encryption_token: ServerDataEncryptionLevel1Token::from_bytes(e),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(l),
            contention_factor: k,
            edge_token_sets: None,
            sparsity: None,
            precision: None,
            trim_factor: None,
            index_min: None,
            index_max: None,
            text_search_token_sets: None,
        };
        if let Some((g, sp, pn, tf, mn, mx)) = range {
            x.edge_token_sets = Some(g);
            x.sparsity = Some(sp);
            x.precision = pn;
            x.trim_factor = Some(tf);
            x.index_min = Some(mn);
            x.index_max = Some(mx);
        }
        x
    })
}

struct NoKeys;
impl KeyLookup for NoKeys {
    fn data_key(&self, _: &KeyId) -> Option<&cipherdoc_crypto::DataKey> {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn iup_roundtrip(x in iup()) {
        prop_assert_eq!(InsertUpdatePayloadV2::decode(&x.encode()).unwrap(), x);
    }

    #[test]
    fn find_roundtrip(d in b32(), s in b32(), l in b32(), cm in 0..i64::MAX as u64) {
        let x = FindEqualityPayloadV2 {
            edc_derived_token: EdcDerivedFromDataToken::from_bytes(d),
            esc_derived_token: EscDerivedFromDataToken::from_bytes(s),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(l),
            max_contention_factor: cm,
        };
        prop_assert_eq!(FindEqualityPayloadV2::decode(&x.encode()).unwrap(), x);
    }

    #[test]
    fn iev_roundtrip(id in key_id(), t in bson_type(), sev in bytes(32, 200), c in b32(), tag in b32(), z in b32()) {
        let x = IndexedEqualityEncryptedValueV2 {
            index_key_id: id,
            bson_type: t,
            server_encrypted_value: sev,
            metadata: MetadataBlock { encrypted_count: c, tag: Tag::from_bytes(tag), encrypted_zeros: z },
        };
        prop_assert_eq!(IndexedEqualityEncryptedValueV2::decode(&x.encode()).unwrap(), x);
    }

    #[test]
    fn uev_roundtrip(id in key_id(), t in bson_type(), ct in bytes(1, 200)) {
        let x = UnindexedEncryptedValueV2 { key_id: id, bson_type: t, ciphertext: ct };
        prop_assert_eq!(UnindexedEncryptedValueV2::decode(&x.encode()).unwrap(), x);
    }

    #[test]
    fn fle1_roundtrip(det in any::<bool>(), id in key_id(), t in bson_type(), ct in bytes(1, 200)) {
        let algorithm = if det { Fle1Algorithm::Deterministic } else { Fle1Algorithm::Random };
        let x = Fle1EncryptedValue { algorithm, key_id: id, bson_type: t, ciphertext: ct };
        prop_assert_eq!(Fle1EncryptedValue::decode(&x.encode()).unwrap(), x);
    }

    #[test]
    fn placeholder_roundtrip(ins in any::<bool>(), a in 1i32..5, ki in key_id(), ku in key_id(), v in number(), cm in any::<i64>(), s in proptest::option::of(any::<i64>())) {
        let x = EncryptionPlaceholder {
            kind: if ins { PlaceholderType::Insert } else { PlaceholderType::Find },
            algorithm: match a { 1 => PlaceholderAlgorithm::Unindexed, 2 => PlaceholderAlgorithm::Equality, 3 => PlaceholderAlgorithm::Range, _ => PlaceholderAlgorithm::TextSearch },
            index_key_id: ki,
            user_key_id: ku,
            value: v,
            max_contention: cm,
            sparsity: s,
        };
        prop_assert_eq!(EncryptionPlaceholder::decode(&x.encode().unwrap()).unwrap(), x);
    }

    #[test]
    fn value_bytes_roundtrip(v in number()) {
        let vb = value_bytes(&v).unwrap();
        prop_assert_eq!(value_from_bytes(v.element_type(), &vb).unwrap(), v);
    }

    #[test]
    fn decoders_never_panic(first in 0u8..20, rest in bytes(0, 400)) {
        let mut b = vec![first];
        b.extend_from_slice(&rest);
        let _ = BlobSubtype::of(&b);
        let _ = InsertUpdatePayloadV2::decode(&b);
        let _ = FindEqualityPayloadV2::decode(&b);
        let _ = IndexedEqualityEncryptedValueV2::decode(&b);
        let _ = UnindexedEncryptedValueV2::decode(&b);
        let _ = Fle1EncryptedValue::decode(&b);
        let _ = EncryptionPlaceholder::decode(&b);
        let _ = FindTextPayload::decode(&b);
        let _ = IndexedTextEncryptedValue::decode(&b);
        let _ = client::decrypt_blob(&b, &NoKeys);
        let _ = decrypt_ecoc_value(&EcocToken::from_bytes([1; 32]), &rest);
        if let Some(t) = ElementType::from(first) {
            let _ = value_from_bytes(t, &rest);
        }
    }

    /// Mutations of a valid BSON payload (the interesting region for a BSON parser).
    #[test]
    fn mutated_payloads_never_panic(x in iup(), pos in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let mut b = x.encode();
        let i = pos.index(b.len());
        b[i] = byte;
        let _ = InsertUpdatePayloadV2::decode(&b);
        let n = cut.index(b.len() + 1);
        let _ = InsertUpdatePayloadV2::decode(&b[..n]);
    }
}
