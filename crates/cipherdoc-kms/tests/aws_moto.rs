//! AWS KMS provider against moto in server mode with authentication on
//! (started by tests/peers/setup.sh).

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cipherdoc_kms::sigv4::{SigningInput, authorization};
use cipherdoc_kms::{
    AwsCredentials, Endpoint, HttpOptions, KeyTrust, KmsCredentials, KmsError, KmsProviders,
    MasterKey, ProviderName, ProviderSettings, Secret,
};
use common::{assert_clean_error, peer_env};

struct Peer {
    endpoint: String,
    akid: String,
    secret: String,
}

fn peer() -> Option<Peer> {
    Some(Peer {
        endpoint: peer_env("CIPHERDOC_TEST_AWS_ENDPOINT")?,
        akid: peer_env("CIPHERDOC_TEST_AWS_ACCESS_KEY_ID")?,
        secret: peer_env("CIPHERDOC_TEST_AWS_SECRET_ACCESS_KEY")?,
    })
}

/// CreateKey through moto's KMS API, signed with our own SigV4.
async fn create_key(p: &Peer) -> String {
    let url = reqwest::Url::parse(&p.endpoint).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let body = br#"{"Description":"cipherdoc test","KeyUsage":"ENCRYPT_DECRYPT"}"#;
    let amz_date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("host", host.as_str()),
        ("x-amz-date", amz_date.as_str()),
        ("x-amz-target", "TrentService.CreateKey"),
    ];
    let auth = authorization(
        &SigningInput {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
            amz_date: &amz_date,
            region: "us-east-1",
            service: "kms",
        },
        &p.akid,
        &p.secret,
    );
    let mut rb = reqwest::Client::new()
        .post(url)
        .header("authorization", auth);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let resp = rb.body(body.to_vec()).send().await.unwrap();
    let status = resp.status();
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{v}");
    v["KeyMetadata"]["Arn"].as_str().unwrap().to_owned()
}

fn providers(p: &Peer, name: &str, secret: &str) -> KmsProviders {
    let mut s = ProviderSettings::new(KmsCredentials::Aws(Some(AwsCredentials {
        access_key_id: p.akid.clone(),
        secret_access_key: Secret::new(secret),
        session_token: None,
    })));
    s.http = HttpOptions {
        endpoint_override: Some(p.endpoint.clone()),
        ..HttpOptions::default()
    };
    // Key ids are created by the test: trust AWS's host for us-east-1.
    s.trust = KeyTrust::new(
        vec![],
        &[Endpoint::parse("kms.us-east-1.amazonaws.com").unwrap()],
    );
    KmsProviders::from_settings(
        &[(name.parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

fn master_key(provider: &str, arn: &str) -> MasterKey {
    MasterKey::from_document(&bson::doc! {"provider": provider, "region": "us-east-1", "key": arn})
        .unwrap()
}

#[tokio::test]
async fn wrap_unwrap_roundtrip_signed() {
    let Some(p) = peer() else { return };
    let arn = create_key(&p).await;
    let kms = providers(&p, "aws:prod", &p.secret);
    let mk = master_key("aws:prod", &arn);
    let dek: Vec<u8> = (0..96u8).collect();
    let w = kms.wrap(&mk, &dek).await.unwrap();
    assert_eq!(w.master_key, mk);
    assert!(!w.key_material.is_empty());
    assert!(
        !w.key_material.windows(16).any(|win| win == &dek[..16]),
        "key material must not contain the DEK"
    );
    let back = kms.unwrap(&mk, &w.key_material).await.unwrap();
    assert_eq!(&back[..], &dek[..]);
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error_without_the_secret() {
    let Some(p) = peer() else { return };
    let arn = create_key(&p).await;
    let wrong = "WRONGsecretWRONGsecretWRONGsecret0000000";
    let kms = providers(&p, "aws", wrong);
    let err = kms
        .wrap(&master_key("aws", &arn), &[7u8; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 403, code, .. } if code == "SignatureDoesNotMatch"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "aws", &[wrong, &p.secret]);
}

#[tokio::test]
async fn unknown_access_key_is_an_auth_error() {
    let Some(mut p) = peer() else { return };
    let arn = create_key(&p).await;
    p.akid = "AKIAUNKNOWNUNKNOWN00".into();
    let kms = providers(&p, "aws", &p.secret.clone());
    let err = kms
        .wrap(&master_key("aws", &arn), &[7u8; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 403, code, .. } if code == "InvalidClientTokenId"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "aws", &[&p.secret]);
}

#[tokio::test]
async fn wrong_master_key_is_key_not_found() {
    let Some(p) = peer() else { return };
    let kms = providers(&p, "aws", &p.secret);
    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let err = kms
        .wrap(&master_key("aws", missing), &[7u8; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "NotFoundException"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "aws", &[&p.secret]);

    // Key material that is not a ciphertext: InvalidCiphertextException.
    let arn = create_key(&p).await;
    let err = kms
        .unwrap(&master_key("aws", &arn), &[0u8; 10])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "InvalidCiphertextException"),
        "{err:?}"
    );

    // A ciphertext naming a key that does not exist: AWS (and moto) answer
    // AccessDeniedException ("does not exist ... or you are not allowed to access").
    let err = kms
        .unwrap(&master_key("aws", &arn), &[0u8; 150])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { code, .. } if code == "AccessDeniedException"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "aws", &[&p.secret]);
}
