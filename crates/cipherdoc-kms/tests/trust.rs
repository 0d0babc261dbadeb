//! The attacker writes key documents, nothing else: their `masterKey` names
//! a host the test listens on (which must see no connection at all), a
//! region with a host suffix, another key. Then hostile answers from a KMS:
//! an oversized body, an absurd token lifetime.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use cipherdoc_kms::{
    AwsCredentials, AwsMasterKeyDoc, AzureCredentials, Endpoint, GcpCredentials, HttpOptions,
    KeyTrust, KmsCredentials, KmsError, KmsProviders, MasterKey, ProviderName, ProviderSettings,
    RetryPolicy, Secret,
};
use common::assert_clean_error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "bearer-token-that-must-not-leave";
const AWS_SECRET: &str = "aws-secret-that-must-not-leave";

/// A loopback listener that counts the connections it accepts (and closes
/// them). A connection is already too much: it would carry a TLS
/// ClientHello, then the bearer token or the signed request.
async fn trap() -> (u16, Arc<AtomicU32>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

#[allow(clippy::needless_pass_by_value)]
fn mk(d: bson::Document) -> MasterKey {
    MasterKey::from_document(&d).unwrap()
}

fn providers(name: &str, creds: KmsCredentials, trust: KeyTrust) -> KmsProviders {
    let mut s = ProviderSettings::new(creds);
    s.http.retry = RetryPolicy::none();
    s.trust = trust;
    KmsProviders::from_settings(
        &[(name.parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

fn azure(trust: KeyTrust) -> KmsProviders {
    providers(
        "azure",
        KmsCredentials::Azure(AzureCredentials::AccessToken(Secret::new(TOKEN))),
        trust,
    )
}

fn configured_azure() -> MasterKey {
    mk(doc_azure("vault.example.invalid", "k"))
}

fn doc_azure(endpoint: &str, key: &str) -> bson::Document {
    bson::doc! {"provider": "azure", "keyVaultEndpoint": endpoint, "keyName": key}
}

fn assert_untrusted(err: &KmsError, host: &str) {
    assert!(
        matches!(err, KmsError::UntrustedMasterKey { host: Some(h), .. } if h == host),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("allowed_hosts") && text.contains("Nothing was sent"),
        "{text}"
    );
    assert_clean_error(err, &text, "azure", &[TOKEN, AWS_SECRET]);
}

#[tokio::test]
async fn a_key_document_pointing_at_the_attackers_host_gets_no_connection() {
    let (port, hits) = trap().await;
    let kms = azure(KeyTrust::new(vec![configured_azure()], &[]));
    let evil = mk(doc_azure(&format!("127.0.0.1:{port}"), "k"));
    let err = kms.unwrap(&evil, &[7; 256]).await.unwrap_err();
    assert_untrusted(&err, &format!("127.0.0.1:{port}"));
    // Wrapping with it, checking it, rewrapping from or to it: all refused.
    assert!(kms.wrap(&evil, &[1; 96]).await.is_err());
    assert!(kms.check(&evil).is_err());
    assert!(
        kms.rewrap(&evil, &[7; 256], &configured_azure())
            .await
            .is_err()
    );
    // Another key name on the configured vault is another master key.
    let other = mk(doc_azure("vault.example.invalid", "attackers-key"));
    assert!(matches!(
        kms.unwrap(&other, &[7; 256]).await,
        Err(KmsError::UntrustedMasterKey { .. })
    ));
    tokio::task::yield_now().await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the attacker's host was contacted"
    );

    // Control: once the settings allow that host, the same document does
    // reach it, so the listener above would have seen a leak.
    let allowed = azure(KeyTrust::new(
        vec![],
        &[Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap()],
    ));
    let err = allowed.unwrap(&evil, &[7; 256]).await.unwrap_err();
    assert!(matches!(err, KmsError::Network { .. }), "{err:?}");
    assert!(hits.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn gcp_and_unconfigured_providers_are_refused_too() {
    let (port, hits) = trap().await;
    let kms = providers(
        "gcp",
        KmsCredentials::Gcp(GcpCredentials::AccessToken(Secret::new(TOKEN))),
        KeyTrust::new(
            vec![mk(
                bson::doc! {"provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k"},
            )],
            &[],
        ),
    );
    let evil = mk(
        bson::doc! {"provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k", "endpoint": format!("127.0.0.1:{port}")},
    );
    let err = kms.unwrap(&evil, &[7; 64]).await.unwrap_err();
    assert!(
        matches!(&err, KmsError::UntrustedMasterKey { host: Some(h), .. } if *h == format!("127.0.0.1:{port}")),
        "{err:?}"
    );
    // A provider the settings do not configure at all.
    let err = kms
        .unwrap(&mk(doc_azure(&format!("127.0.0.1:{port}"), "k")), &[7; 64])
        .await
        .unwrap_err();
    assert!(
        matches!(err, KmsError::UntrustedMasterKey { .. }),
        "{err:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

fn aws(trust: KeyTrust, endpoint_override: Option<String>) -> KmsProviders {
    let mut s = ProviderSettings::new(KmsCredentials::Aws(Some(AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new(AWS_SECRET),
        session_token: None,
    })));
    s.http = HttpOptions {
        retry: RetryPolicy::none(),
        endpoint_override,
        ..HttpOptions::default()
    };
    s.trust = trust;
    KmsProviders::from_settings(
        &[("aws".parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_region_with_a_host_suffix_is_refused_before_any_connection() {
    let (port, hits) = trap().await;
    // `https://kms.{region}.amazonaws.com` with this region is a URL whose
    // host is 127.0.0.1 (`kms.x` becomes userinfo), and a dotted suffix
    // would name another domain.
    for region in [
        format!("x@127.0.0.1:{port}/#"),
        "us-east-1.attacker.example".to_owned(),
    ] {
        let d = bson::doc! {"provider": "aws", "region": region.clone(), "key": "k"};
        match MasterKey::from_document(&d) {
            Err(KmsError::InvalidMasterKey { field, .. }) => assert_eq!(field, "region"),
            other => panic!("{region}: {other:?}"),
        }
        // A master key built without the parser is still refused: by the
        // trust check, and below it by the transport's host guard.
        let forged = MasterKey::Aws(AwsMasterKeyDoc {
            provider: "aws".parse().unwrap(),
            region: region.clone(),
            key: "k".into(),
            endpoint: None,
        });
        let configured = mk(bson::doc! {"provider": "aws", "region": "us-east-1", "key": "k"});
        let kms = aws(KeyTrust::new(vec![configured], &[]), None);
        let err = kms.unwrap(&forged, &[7; 64]).await.unwrap_err();
        assert!(
            matches!(err, KmsError::UntrustedMasterKey { .. }),
            "{region}: {err:?}"
        );
        assert_clean_error(&err, &err.to_string(), "aws", &[AWS_SECRET]);
        // Allowlisting "127.0.0.1" would not help the forged region either:
        // the URL it makes is refused by the host guard.
        let kms = aws(
            KeyTrust::new(
                vec![],
                &[Endpoint::parse("kms.us-east-1.amazonaws.com").unwrap()],
            ),
            None,
        );
        assert!(kms.unwrap(&forged, &[7; 64]).await.is_err());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// Answers every HTTP request on a loopback port with `body` (200), with or
/// without a `Content-Length`.
async fn answering(body: Vec<u8>, chunked: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    )
                };
                let _ = s.write_all(head.as_bytes()).await;
                if chunked {
                    for c in body.chunks(16 * 1024) {
                        let _ = s.write_all(format!("{:x}\r\n", c.len()).as_bytes()).await;
                        let _ = s.write_all(c).await;
                        let _ = s.write_all(b"\r\n").await;
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                } else {
                    let _ = s.write_all(&body).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_oversized_kms_answer_is_refused() {
    let configured = mk(bson::doc! {"provider": "aws", "region": "us-east-1", "key": "k"});
    // A JSON answer padded to 1 MiB: the limit is 256 KiB.
    let mut body = br#"{"Plaintext":""#.to_vec();
    body.extend(std::iter::repeat_n(b'A', 1 << 20));
    body.extend(br#""}"#);
    for chunked in [false, true] {
        let base = answering(body.clone(), chunked).await;
        let kms = aws(KeyTrust::new(vec![configured.clone()], &[]), Some(base));
        let err = kms.unwrap(&configured, &[7; 64]).await.unwrap_err();
        assert!(
            matches!(err, KmsError::ResponseTooLarge { limit, .. } if limit == cipherdoc_kms::MAX_RESPONSE_BYTES),
            "chunked={chunked}: {err:?}"
        );
        assert_clean_error(&err, &err.to_string(), "aws", &[AWS_SECRET]);
    }
    // A normal-sized answer through the same path works.
    let dek = [0x5a; 96];
    let ok = format!(r#"{{"Plaintext":"{}","KeyId":"k"}}"#, B64.encode(dek));
    let base = answering(ok.into_bytes(), true).await;
    let kms = aws(KeyTrust::new(vec![configured.clone()], &[]), Some(base));
    assert_eq!(&kms.unwrap(&configured, &[7; 64]).await.unwrap()[..], &dek);
}

#[tokio::test]
async fn an_absurd_token_lifetime_neither_panics_nor_pins_the_token() {
    let token_calls = Arc::new(AtomicU32::new(0));
    let calls = token_calls.clone();
    let app = Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async {
                    axum::Json(serde_json::json!({
                        "access_token": "t",
                        "expires_in": u64::MAX,
                    }))
                }
            }),
        )
        .route(
            "/keys/{*rest}",
            post(|| async { axum::Json(serde_json::json!({"value": B64URL.encode([3u8; 96])})) }),
        );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let mut s = ProviderSettings::new(KmsCredentials::Azure(AzureCredentials::ClientSecret {
        tenant_id: "t".into(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        identity_platform_endpoint: None,
    }));
    s.http.endpoint_override = Some(base.clone());
    s.http.token_endpoint_override = Some(base);
    s.trust = KeyTrust::new(vec![configured_azure()], &[]);
    let kms = KmsProviders::from_settings(
        &[("azure".parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap();
    for _ in 0..2 {
        let dek = kms.unwrap(&configured_azure(), &[1; 256]).await.unwrap();
        assert_eq!(&dek[..], &[3u8; 96]);
    }
    assert_eq!(token_calls.load(Ordering::SeqCst), 1, "the token is cached");
}
