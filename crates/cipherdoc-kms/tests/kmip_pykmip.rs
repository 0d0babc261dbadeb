//! KMIP provider against pykmip's server over TLS 1.2 with client
//! certificates (started by tests/peers/setup.sh).

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use cipherdoc_kms::{
    Endpoint, HttpOptions, KmipCredentials, KmipProvider, KmsError, KmsProvider, MasterKey,
    ProviderName, RetryPolicy, TlsOptions,
};
use common::{assert_clean_error, peer_env};

fn provider(name: &str) -> Option<KmipProvider> {
    let endpoint = peer_env("CIPHERDOC_TEST_KMIP_ENDPOINT")?;
    let tls = TlsOptions {
        ca_file: Some(PathBuf::from(peer_env("CIPHERDOC_TEST_KMIP_CA")?)),
        client_cert_file: Some(PathBuf::from(peer_env("CIPHERDOC_TEST_KMIP_CLIENT_CERT")?)),
        client_key_file: Some(PathBuf::from(peer_env("CIPHERDOC_TEST_KMIP_CLIENT_KEY")?)),
    };
    Some(
        KmipProvider::new(
            &name.parse::<ProviderName>().unwrap(),
            KmipCredentials {
                endpoint: Endpoint::parse(&endpoint).unwrap(),
            },
            &HttpOptions {
                retry: RetryPolicy::none(),
                ..HttpOptions::default()
            },
            &tls,
        )
        .unwrap(),
    )
}

fn dek() -> Vec<u8> {
    (0..96u8).map(|i| i.wrapping_mul(7)).collect()
}

#[tokio::test]
async fn non_delegated_registers_secret_and_wraps_locally() {
    let Some(p) = provider("kmip") else { return };
    let mk = MasterKey::from_document(&bson::doc! {"provider": "kmip"}).unwrap();
    let w = p.wrap(&mk, &dek()).await.unwrap();
    let MasterKey::Kmip(out) = &w.master_key else {
        panic!()
    };
    let key_id = out.key_id.clone().expect("wrap fills keyId");
    assert!(!out.delegated);
    // The local provider's FLE1 wrap under the fetched SecretData: IV(16)
    // ‖ AES-256-CBC(96 bytes) ‖ HMAC-SHA-512/256(32).
    assert_eq!(w.key_material.len(), 160);
    assert_eq!(
        w.master_key.to_document(),
        bson::doc! {"provider": "kmip", "keyId": key_id.clone()}
    );
    assert_eq!(
        &p.unwrap(&w.master_key, &w.key_material).await.unwrap()[..],
        &dek()[..]
    );

    // Wrapping again with the now-known keyId reuses the same secret.
    let w2 = p.wrap(&w.master_key, &dek()).await.unwrap();
    assert_eq!(w2.master_key, w.master_key);
    assert_eq!(
        &p.unwrap(&w.master_key, &w2.key_material).await.unwrap()[..],
        &dek()[..]
    );
}

#[tokio::test]
async fn delegated_encrypts_on_the_server_with_iv_prefix() {
    let Some(p) = provider("kmip:hsm") else {
        return;
    };
    let mk =
        MasterKey::from_document(&bson::doc! {"provider": "kmip:hsm", "delegated": true}).unwrap();
    let w = p.wrap(&mk, &dek()).await.unwrap();
    // IV(16) ‖ AES-CBC-PKCS5(96 bytes) = 16 + 112.
    assert_eq!(w.key_material.len(), 16 + 112);
    let MasterKey::Kmip(out) = &w.master_key else {
        panic!()
    };
    assert!(out.delegated && out.key_id.is_some());
    assert_eq!(
        &p.unwrap(&w.master_key, &w.key_material).await.unwrap()[..],
        &dek()[..]
    );

    // Tampered IV changes the first block: decrypt answers, but not our DEK.
    let mut bad = w.key_material.clone();
    bad[0] ^= 1;
    let out = p.unwrap(&w.master_key, &bad).await.unwrap();
    assert_ne!(&out[..], &dek()[..]);
}

#[tokio::test]
async fn unknown_key_id_is_key_not_found() {
    let Some(p) = provider("kmip") else { return };
    for delegated in [false, true] {
        let mk = MasterKey::from_document(
            &bson::doc! {"provider": "kmip", "keyId": "987654321", "delegated": delegated},
        )
        .unwrap();
        let err = p.unwrap(&mk, &[1u8; 64]).await.unwrap_err();
        assert!(matches!(err, KmsError::KeyNotFound { .. }), "{err:?}");
        assert_clean_error(&err, &err.to_string(), "kmip", &[]);
    }
}

#[tokio::test]
async fn unwrap_without_key_id_is_rejected() {
    let Some(p) = provider("kmip") else { return };
    let mk = MasterKey::from_document(&bson::doc! {"provider": "kmip"}).unwrap();
    let err = p.unwrap(&mk, &[1u8; 64]).await.unwrap_err();
    assert!(
        matches!(&err, KmsError::InvalidMasterKey { field, .. } if field == "keyId"),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_client_certificate_is_refused() {
    let Some(endpoint) = peer_env("CIPHERDOC_TEST_KMIP_ENDPOINT") else {
        return;
    };
    let Some(ca) = peer_env("CIPHERDOC_TEST_KMIP_CA") else {
        return;
    };
    // No client certificate: the server requires one, the handshake fails.
    let p = KmipProvider::new(
        &"kmip".parse().unwrap(),
        KmipCredentials {
            endpoint: Endpoint::parse(&endpoint).unwrap(),
        },
        &HttpOptions {
            retry: RetryPolicy::none(),
            ..HttpOptions::default()
        },
        &TlsOptions {
            ca_file: Some(ca.into()),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let mk = MasterKey::from_document(&bson::doc! {"provider": "kmip", "delegated": true}).unwrap();
    let err = p.wrap(&mk, &dek()).await.unwrap_err();
    assert!(matches!(err, KmsError::Network { .. }), "{err:?}");
    assert_clean_error(&err, &err.to_string(), "kmip", &[]);
}
