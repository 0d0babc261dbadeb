#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use cipherdoc_crypto::tokens::*;
use common::*;

fn check(file: &str) -> usize {
    let v = json(file);
    let get = |k: &str| -> [u8; 32] {
        let s = v.get(k).or_else(|| {
            // server.json and mc.json differ in the case of the first letter.
            let mut c = k.chars();
            let flipped: String = match c.next() {
                Some(f) if f.is_lowercase() => f.to_uppercase().chain(c).collect(),
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => String::new(),
            };
            v.get(&flipped)
        });
        hex(s
            .unwrap_or_else(|| panic!("{file}: no {k}"))
            .as_str()
            .unwrap())
        .try_into()
        .unwrap()
    };
    let root = TokenKey::from_bytes(get("root"));
    let value = hex(v["value"].as_str().unwrap());
    let u = v["contentionFactor"].as_u64().unwrap();
    let mut n = 0;
    let mut eq = |name: &str, got: &[u8; 32]| {
        assert_eq!(hex::encode(got), hex::encode(get(name)), "{file}: {name}");
        n += 1;
    };
    let c1 = root.collections_level1();
    eq("collectionsLevel1Token", c1.as_bytes());
    let sd = root.server_data_encryption_level1();
    eq("serverDataEncryptionLevel1Token", sd.as_bytes());
    let st = root.server_token_derivation_level1();
    eq("ServerTokenDerivationLevel1Token", st.as_bytes());
    let (edc, esc, ecc, ecoc) = (c1.edc(), c1.esc(), c1.ecc(), c1.ecoc());
    eq("EDCToken", edc.as_bytes());
    eq("ESCToken", esc.as_bytes());
    eq("ECCToken", ecc.as_bytes());
    eq("ECOCToken", ecoc.as_bytes());
    let edcd = edc.derive_from_data(&value);
    let escd = esc.derive_from_data(&value);
    let eccd = ecc.derive_from_data(&value);
    let sdd = st.derive_from_data(&value);
    eq("EDCDerivedFromDataToken", edcd.as_bytes());
    eq("ESCDerivedFromDataToken", escd.as_bytes());
    eq("ECCDerivedFromDataToken", eccd.as_bytes());
    eq("serverDerivedFromDataToken", sdd.as_bytes());
    let edcc = edcd.with_contention(u);
    let escc = escd.with_contention(u);
    eq(
        "EDCDerivedFromDataTokenAndContentionFactor",
        edcc.as_bytes(),
    );
    eq(
        "ESCDerivedFromDataTokenAndContentionFactor",
        escc.as_bytes(),
    );
    eq(
        "ECCDerivedFromDataTokenAndContentionFactor",
        eccd.with_contention(u).as_bytes(),
    );
    eq("EDCTwiceDerivedToken", edcc.twice_derived().as_bytes());
    eq(
        "ESCTwiceDerivedTagToken",
        escc.twice_derived_tag().as_bytes(),
    );
    eq(
        "ESCTwiceDerivedValueToken",
        escc.twice_derived_value().as_bytes(),
    );
    eq(
        "serverCountAndContentionFactorEncryptionToken",
        sdd.count_and_contention_encryption().as_bytes(),
    );
    eq(
        "serverZerosEncryptionToken",
        sdd.zeros_encryption().as_bytes(),
    );
    let ap = esc.anchor_padding_root();
    eq("AnchorPaddingTokenRoot", ap.as_bytes());
    eq("AnchorPaddingKeyToken", ap.key().as_bytes());
    eq("AnchorPaddingValueToken", ap.value().as_bytes());

    // Text search: each family through its methods, names as in the files.
    macro_rules! family {
        ($name:literal, $m:ident) => {{
            let (e, s, r) = (edc.$m(), esc.$m(), st.$m());
            eq(concat!("EDCText", $name, "Token"), e.as_bytes());
            eq(concat!("ESCText", $name, "Token"), s.as_bytes());
            eq(concat!("ServerText", $name, "Token"), r.as_bytes());
            let (ed, sd, rd) = (
                e.derive_from_data(&value),
                s.derive_from_data(&value),
                r.derive_from_data(&value),
            );
            eq(
                concat!("EDCText", $name, "DerivedFromDataToken"),
                ed.as_bytes(),
            );
            eq(
                concat!("ESCText", $name, "DerivedFromDataToken"),
                sd.as_bytes(),
            );
            eq(
                concat!("ServerText", $name, "DerivedFromDataToken"),
                rd.as_bytes(),
            );
            eq(
                concat!(
                    "EDCText",
                    $name,
                    "DerivedFromDataTokenAndContentionFactorToken"
                ),
                ed.with_contention(u).as_bytes(),
            );
            eq(
                concat!(
                    "ESCText",
                    $name,
                    "DerivedFromDataTokenAndContentionFactorToken"
                ),
                sd.with_contention(u).as_bytes(),
            );
        }};
    }
    family!("Exact", text_exact);
    family!("Substring", text_substring);
    family!("Suffix", text_suffix);
    family!("Prefix", text_prefix);
    n
}

#[test]
fn mc_tokens() {
    // Every token in the file: 22 of equality and range, 32 of text search.
    assert_eq!(check("tokens/mc.json"), 54);
}

#[test]
fn server_tokens() {
    assert_eq!(check("tokens/server.json"), 54);
}

#[test]
fn index_key_tokens_match_the_hierarchy() {
    let k = data_key(KEY123);
    let t = IndexKeyTokens::new(key_id(KEY123), &k);
    let c1 = k.token_key().collections_level1();
    assert_eq!(t.edc(), &c1.edc());
    assert_eq!(t.esc(), &c1.esc());
    assert_eq!(t.ecoc(), &c1.ecoc());
    assert_eq!(
        t.server_data_encryption_level1(),
        &k.token_key().server_data_encryption_level1()
    );
    assert_eq!(format!("{:?}", t.edc()), "EdcToken(..)");
    assert!(format!("{t:?}").starts_with("IndexKeyTokens(12345678-"));
}
