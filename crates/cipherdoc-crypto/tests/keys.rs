#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use bson::{Bson, doc};
use cipherdoc_crypto::{
    Error, KeyDocument, KeyId, LocalMasterKey, ReplayRandom, unwrap_local, wrap_local,
};
use common::*;

fn zero_kek() -> LocalMasterKey {
    LocalMasterKey::from_slice(&[0u8; 96]).unwrap()
}

#[test]
fn unwrap_every_local_key_document() {
    let mut n = 0;
    for entry in std::fs::read_dir(vectors().join("keys/keys")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(uuid) = name.strip_suffix("-local-document.json") else {
            continue;
        };
        let doc = ejson_file(&format!("keys/keys/{name}"));
        let kd = KeyDocument::from_document(&doc).unwrap();
        assert_eq!(kd.id, key_id(uuid));
        assert_eq!(kd.master_key, doc! {"provider": "local"});
        assert_eq!(kd.key_material.len(), 160);
        let dek = unwrap_local(&zero_kek(), &kd.key_material).unwrap();
        assert_eq!(dek, data_key(uuid), "{uuid}");
        // Writing back gives the same document (libmongocrypt order).
        assert_eq!(kd.to_document(), doc, "{uuid}");
        n += 1;
    }
    assert_eq!(n, 4);
    let kd = KeyDocument::from_document(&ejson_file("keys/key-document-local.json")).unwrap();
    assert_eq!(kd.id, KeyId::from_bytes([0x61; 16]));
    unwrap_local(&zero_kek(), &kd.key_material).unwrap();
}

#[test]
fn wrong_master_key_is_authentication_failure() {
    let kd = KeyDocument::from_document(&ejson_file(
        "keys/keys/12345678123498761234123456789012-local-document.json",
    ))
    .unwrap();
    let other = LocalMasterKey::from_slice(&[1u8; 96]).unwrap();
    assert_eq!(
        unwrap_local(&other, &kd.key_material),
        Err(Error::AuthenticationFailed)
    );
    let mut m = kd.key_material.clone();
    m[40] ^= 1;
    assert_eq!(
        unwrap_local(&zero_kek(), &m),
        Err(Error::AuthenticationFailed)
    );
    assert!(matches!(
        unwrap_local(&zero_kek(), &m[..20]),
        Err(Error::Decrypt(_))
    ));
}

#[test]
fn wrap_roundtrip_is_160_bytes_and_replayable() {
    let dek = data_key(KEY123);
    let kd = KeyDocument::from_document(&ejson_file(
        "keys/keys/12345678123498761234123456789012-local-document.json",
    ))
    .unwrap();
    // Re-wrapping with the IV from the fixture reproduces it byte for byte.
    let mut rng = ReplayRandom::new(kd.key_material[..16].to_vec());
    let wrapped = wrap_local(&zero_kek(), &dek, &mut rng).unwrap();
    assert_eq!(wrapped, kd.key_material);
    let wrapped = wrap_local(&zero_kek(), &dek, &mut cipherdoc_crypto::OsRandom).unwrap();
    assert_eq!(wrapped.len(), 160);
    assert_eq!(unwrap_local(&zero_kek(), &wrapped).unwrap(), dek);
}

#[test]
fn master_key_length_is_checked() {
    assert!(matches!(
        LocalMasterKey::from_slice(&[0u8; 95]),
        Err(Error::KeyLength {
            expected: 96,
            actual: 95,
            ..
        })
    ));
}

#[test]
fn parse_full_and_alt_name_documents() {
    let full = KeyDocument::from_document(&ejson_file("keys/key-document-full.json")).unwrap();
    assert_eq!(full.key_alt_names, vec!["altname1", "altname2"]);
    assert_eq!(full.status, Bson::Int32(1));
    assert_eq!(
        full.master_key,
        doc! {
            "key": "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0",
            "region": "us-east-1",
            "provider": "aws",
        }
    );
    let alt =
        KeyDocument::from_document(&ejson_file("keys/key-document-with-alt-name.json")).unwrap();
    assert_eq!(alt.key_alt_names, vec!["Sharlene", "Kasey"]);
    assert_eq!(alt.id, KeyId::from_bytes([0x61; 16]));
    // Written back in libmongocrypt order, re-parsed equal.
    let written = alt.to_document();
    let keys: Vec<_> = written.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "_id",
            "keyAltNames",
            "keyMaterial",
            "creationDate",
            "updateDate",
            "status",
            "masterKey"
        ]
    );
    let mk: Vec<_> = written
        .get_document("masterKey")
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // `masterKey` is written back as stored; a new one is written in
    // libmongocrypt's order by `cipherdoc_kms::MasterKey::to_document`.
    assert_eq!(mk, ["region", "key", "provider"]);
    assert_eq!(KeyDocument::from_document(&written).unwrap(), alt);
}

#[test]
fn rejections() {
    let base = ejson_file("keys/keys/12345678123498761234123456789012-local-document.json");
    let reject = |d: bson::Document, needle: &str| {
        let e = KeyDocument::from_document(&d).unwrap_err();
        assert!(matches!(e, Error::KeyDocument(_)), "{e:?}");
        assert!(
            e.to_string().contains(needle),
            "{e} should mention {needle}"
        );
    };
    let mut d = base.clone();
    d.insert("extra", 1);
    reject(d, "unrecognized field 'extra'");
    for f in [
        "_id",
        "keyMaterial",
        "creationDate",
        "updateDate",
        "status",
        "masterKey",
    ] {
        let mut d = base.clone();
        d.remove(f);
        reject(d, f);
    }
    let mut d = base.clone();
    d.insert(
        "keyMaterial",
        bson::Binary {
            subtype: bson::spec::BinarySubtype::Encrypted,
            bytes: vec![1; 160],
        },
    );
    reject(d, "subtype 0");
    let mut d = base.clone();
    d.insert("version", 1);
    reject(d, "version");
    let mut d = base.clone();
    d.insert("version", 0_i64);
    KeyDocument::from_document(&d).unwrap();
    let mut d = base.clone();
    d.insert("keyAltNames", vec!["a", "a"]);
    reject(d, "duplicate");
    let mut d = base.clone();
    d.insert("keyAltNames", vec![Bson::Int32(1)]);
    reject(d, "keyAltName");
    let mut d = base.clone();
    d.insert(
        "_id",
        bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: vec![1; 16],
        },
    );
    reject(d, "_id");
    let mut d = base.clone();
    d.insert("creationDate", 5);
    reject(d, "creationDate");
    // Only the shape is the protocol's: the fields of `masterKey` are
    // checked by `cipherdoc_kms::MasterKey::from_document` (its own tests).
    let mut d = base.clone();
    d.insert("masterKey", "local");
    reject(d, "masterKey");
}

#[test]
fn master_key_is_kept_as_stored() {
    let base = ejson_file("keys/keys/12345678123498761234123456789012-local-document.json");
    for mk in [
        doc! {"provider": "local:backup"},
        doc! {"provider": "aws:eu", "region": "eu-west-1", "key": "arn", "endpoint": "kms.example"},
        doc! {"provider": "azure", "keyVaultEndpoint": "v.example", "keyName": "k", "keyVersion": "1"},
        doc! {"provider": "gcp", "projectId": "p", "location": "l", "keyRing": "r", "keyName": "k", "keyVersion": "2", "endpoint": "e"},
        doc! {"provider": "kmip", "endpoint": "e", "keyId": "1", "delegated": true},
    ] {
        let mut d = base.clone();
        d.insert("masterKey", mk.clone());
        let parsed = KeyDocument::from_document(&d).unwrap();
        assert_eq!(parsed.master_key, mk);
        let written = parsed.to_document();
        let order: Vec<_> = written.get_document("masterKey").unwrap().keys().collect();
        assert_eq!(order, mk.keys().collect::<Vec<_>>(), "field order kept");
    }
}

#[test]
fn key_id_conversions() {
    let id = key_id(KEY123);
    assert_eq!(id.to_string(), "12345678-1234-9876-1234-123456789012");
    assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    let u: uuid::Uuid = id.into();
    assert_eq!(KeyId::from(u), id);
    let b = id.to_binary();
    assert_eq!(KeyId::try_from(&b).unwrap(), id);
    let bad = bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes: b.bytes.clone(),
    };
    assert!(KeyId::try_from(&bad).is_err());
    assert_eq!(format!("{:?}", data_key(KEY123)), "DataKey(..)");
    let g = KeyId::generate(&mut cipherdoc_crypto::OsRandom).unwrap();
    assert_eq!(g.as_bytes()[6] >> 4, 4);
    assert_eq!(g.as_bytes()[8] >> 6, 2);
}
