#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::similar_names,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use cipherdoc_crypto::aead::{self, RawCtrKey};
use cipherdoc_crypto::{DataKey, Error};
use common::*;

fn expect_err(e: &Error, msg: &str) {
    let ok = match msg {
        "HMAC validation failure" => matches!(e, Error::AuthenticationFailed),
        m if m.contains("ciphertext too small") => {
            matches!(e, Error::Decrypt(s) if s.contains("ciphertext too small"))
        }
        m if m.contains("plaintext too small") => {
            matches!(e, Error::Encrypt(s) if s.contains("plaintext too small"))
        }
        _ => false,
    };
    assert!(ok, "expected error like {msg:?}, got {e:?}");
}

#[test]
fn roundtrip_vectors() {
    let mut count = 0;
    let mut errors = 0;
    for entry in std::fs::read_dir(vectors().join("aead/roundtrip")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        let cases = json(&format!("aead/roundtrip/{name}"));
        for c in cases.as_array().unwrap() {
            let s = |k: &str| c.get(k).and_then(|v| v.as_str()).map(hex);
            let (algo, key, iv, pt, ct) = (
                c["algo"].as_str().unwrap(),
                s("key").unwrap(),
                s("iv").unwrap(),
                s("plaintext").unwrap(),
                s("ciphertext").unwrap_or_default(),
            );
            let aad = s("aad").unwrap_or_default();
            let iv: [u8; 16] = iv.try_into().unwrap();
            let ignore_mismatch = c
                .get("ignore_ciphertext_mismatch_on_encrypt")
                .and_then(|v| v.as_bool())
                == Some(true);
            let label = format!("{name}: {}", c["name"]);
            let (enc, dec): (Result<Vec<u8>, Error>, Result<Vec<u8>, Error>) = match algo {
                "AES-256-CBC/SHA-512-256" => {
                    let k = DataKey::from_slice(&key).unwrap();
                    (
                        aead::fle1_encrypt_with_iv(&k, &iv, &aad, &pt),
                        aead::fle1_decrypt(&k, &aad, &ct).map(|z| z.to_vec()),
                    )
                }
                "AES-256-CTR/SHA-256" => {
                    let k = DataKey::from_slice(&key).unwrap();
                    (
                        aead::fle2v1_ctr_aead_encrypt_with_iv(&k, &iv, &aad, &pt),
                        aead::fle2v1_ctr_aead_decrypt(&k, &aad, &ct).map(|z| z.to_vec()),
                    )
                }
                "AES-256-CBC/SHA-256" => {
                    let k = DataKey::from_slice(&key).unwrap();
                    (
                        aead::cbc_aead_encrypt_with_iv(&k, &iv, &aad, &pt),
                        aead::cbc_aead_decrypt(&k, &aad, &ct).map(|z| z.to_vec()),
                    )
                }
                "AES-256-CTR/NONE" => {
                    let k = RawCtrKey::from_slice(&key).unwrap();
                    (
                        Ok(aead::encrypt_ctr_with_iv(&k, &iv, &pt)),
                        aead::decrypt_ctr(&k, &ct).map(|z| z.to_vec()),
                    )
                }
                other => panic!("unknown algo {other}"),
            };
            match c.get("encrypt_error").and_then(|v| v.as_str()) {
                Some(msg) => {
                    expect_err(&enc.unwrap_err(), msg);
                    errors += 1;
                }
                None if !ignore_mismatch => {
                    assert_eq!(hex::encode(enc.unwrap()), hex::encode(&ct), "{label}")
                }
                None => {}
            }
            match c.get("decrypt_error").and_then(|v| v.as_str()) {
                Some(msg) => {
                    expect_err(&dec.unwrap_err(), msg);
                    errors += 1;
                }
                None if c.get("encrypt_error").is_some() => {}
                None => assert_eq!(dec.unwrap(), pt, "{label}"),
            }
            count += 1;
        }
    }
    assert_eq!(count, 44, "number of roundtrip vectors");
    assert_eq!(errors, 5);
}

#[test]
fn tampering_is_detected_everywhere() {
    let k = data_key(KEYABC);
    let ct = aead::cbc_aead_encrypt_with_iv(&k, &[7; 16], b"ad", b"hello world").unwrap();
    for i in 0..ct.len() {
        let mut c = ct.clone();
        c[i] ^= 0x80;
        assert_eq!(
            aead::cbc_aead_decrypt(&k, b"ad", &c).unwrap_err(),
            Error::AuthenticationFailed
        );
    }
    assert_eq!(
        aead::cbc_aead_decrypt(&k, b"ae", &ct).unwrap_err(),
        Error::AuthenticationFailed
    );
    let ct = aead::fle1_encrypt_deterministic(&k, b"ad", b"hello").unwrap();
    assert_eq!(
        ct,
        aead::fle1_encrypt_deterministic(&k, b"ad", b"hello").unwrap()
    );
    let mut c = ct.clone();
    c[20] ^= 1;
    assert_eq!(
        aead::fle1_decrypt(&k, b"ad", &c).unwrap_err(),
        Error::AuthenticationFailed
    );
    assert_eq!(&*aead::fle1_decrypt(&k, b"ad", &ct).unwrap(), b"hello");
    // Sizes: 16 + 16*(n/16+1) + 32.
    for n in [1usize, 15, 16, 17, 32] {
        let pt = vec![1u8; n];
        assert_eq!(
            aead::cbc_aead_encrypt_with_iv(&k, &[0; 16], &[], &pt)
                .unwrap()
                .len(),
            16 + 16 * (n / 16 + 1) + 32
        );
    }
}
