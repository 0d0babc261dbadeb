//! Fault behaviour: timeouts, transient answers that are retried, auth
//! failures that are not, disabled and wrong keys, unreachable endpoints.
//! The AWS faults come from an in-process endpoint that speaks the AWS KMS
//! JSON 1.1 protocol (canned answers; moto does not enforce key state).

// Helpers outside #[test] fns are test code too.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cipherdoc_kms::sigv4::{SigningInput, authorization};
use cipherdoc_kms::{
    AwsCredentials, Endpoint, HttpOptions, KeyTrust, KmipCredentials, KmipProvider, KmsCredentials,
    KmsError, KmsProvider, KmsProviders, MasterKey, ProviderName, ProviderSettings, RetryPolicy,
    Secret, TlsOptions,
};
use common::assert_clean_error;

const AKID: &str = "AKIDFAULTTEST";
const SECRET: &str = "fault-secret-key-never-in-errors";
const SESSION: &str = "fault-session-token-never-in-errors";

#[derive(Clone, Copy)]
enum Mode {
    Hang,
    FailTwiceThenOk,
    Forbidden,
    Throttle,
    Disabled,
    IncorrectKey,
}

struct Fake {
    mode: Mode,
    calls: AtomicU32,
}

fn aws_err(status: StatusCode, ty: &str, msg: &str) -> Response {
    (
        status,
        [("x-amzn-errortype", format!("{ty}:"))],
        format!(r#"{{"__type":"{ty}","message":"{msg}"}}"#),
    )
        .into_response()
}

/// Checks the request as AWS would (target, content type, credential scope,
/// signed headers, session token) and recomputes the signature from what
/// arrived, so that the Host we sign is the Host we send.
fn check_signed(headers: &HeaderMap, body: &[u8]) -> Result<String, Response> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let target = h("x-amz-target");
    if !matches!(
        target.as_str(),
        "TrentService.Encrypt" | "TrentService.Decrypt"
    ) || h("content-type") != "application/x-amz-json-1.1"
    {
        return Err(aws_err(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "bad target",
        ));
    }
    if h("x-amz-security-token") != SESSION {
        return Err(aws_err(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    let date = h("x-amz-date");
    let signed = [
        ("content-type", h("content-type")),
        ("host", h("host")),
        ("x-amz-date", date.clone()),
        ("x-amz-security-token", h("x-amz-security-token")),
        ("x-amz-target", target.clone()),
    ];
    let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let want = authorization(
        &SigningInput {
            method: "POST",
            path: "/",
            query: "",
            headers: &pairs,
            body,
            amz_date: &date,
            region: "us-east-1",
            service: "kms",
        },
        AKID,
        SECRET,
    );
    if h("authorization") != want {
        return Err(aws_err(
            StatusCode::BAD_REQUEST,
            "InvalidSignatureException",
            "The request signature we calculated does not match.",
        ));
    }
    Ok(target)
}

async fn handler(State(s): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let target = match check_signed(&headers, &body) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    match s.mode {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
        Mode::FailTwiceThenOk if n <= 2 => aws_err(
            StatusCode::SERVICE_UNAVAILABLE,
            "KMSInternalException",
            "try again",
        ),
        Mode::FailTwiceThenOk => {
            // A reversible stand-in "ciphertext": the canned answer needs no real key.
            if target == "TrentService.Encrypt" {
                let pt = B64.decode(v["Plaintext"].as_str().unwrap()).unwrap();
                let blob: Vec<u8> = pt.iter().map(|b| b ^ 0xAA).collect();
                // moto-like content type on success: the client must not insist on JSON.
                (
                    [("content-type", "text/html")],
                    format!(
                        r#"{{"CiphertextBlob":"{}","KeyId":"arn:aws:kms:us-east-1:1:key/k"}}"#,
                        B64.encode(blob)
                    ),
                )
                    .into_response()
            } else {
                let ct = B64.decode(v["CiphertextBlob"].as_str().unwrap()).unwrap();
                let pt: Vec<u8> = ct.iter().map(|b| b ^ 0xAA).collect();
                format!(
                    r#"{{"Plaintext":"{}","KeyId":"arn:aws:kms:us-east-1:1:key/k"}}"#,
                    B64.encode(pt)
                )
                .into_response()
            }
        }
        Mode::Forbidden => aws_err(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "User is not authorized to perform: kms:Encrypt",
        ),
        Mode::Throttle => aws_err(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded",
        ),
        Mode::Disabled => aws_err(
            StatusCode::BAD_REQUEST,
            "DisabledException",
            "arn:aws:kms:us-east-1:1:key/k is disabled.",
        ),
        Mode::IncorrectKey => aws_err(
            StatusCode::BAD_REQUEST,
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this operation.",
        ),
    }
}

async fn fake(mode: Mode) -> (String, Arc<Fake>) {
    let s = Arc::new(Fake {
        mode,
        calls: AtomicU32::new(0),
    });
    let app = Router::new()
        .route("/", post(handler))
        .with_state(s.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), s)
}

fn kms(endpoint: &str, timeout: Duration) -> KmsProviders {
    let mut s = ProviderSettings::new(KmsCredentials::Aws(Some(AwsCredentials {
        access_key_id: AKID.into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new(SESSION)),
    })));
    // No overall deadline: these tests count the per-request timeouts and
    // retries (the deadline is `cipherdoc/tests/kms_faults.rs`'s).
    s.http = HttpOptions {
        timeout,
        deadline: None,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            jitter: true,
        },
        endpoint_override: Some(endpoint.to_owned()),
        token_endpoint_override: None,
    };
    s.trust = KeyTrust::new(vec![mk()], &[]);
    KmsProviders::from_settings(
        &[("aws:prod".parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

fn mk() -> MasterKey {
    MasterKey::from_document(&bson::doc! {"provider": "aws:prod", "region": "us-east-1", "key": "arn:aws:kms:us-east-1:1:key/k"}).unwrap()
}

fn clean(err: &KmsError) {
    assert_clean_error(err, &err.to_string(), "aws:prod", &[SECRET, SESSION]);
}

#[tokio::test]
async fn timeout_is_retried_then_reported() {
    let (url, f) = fake(Mode::Hang).await;
    let start = Instant::now();
    let err = kms(&url, Duration::from_millis(300))
        .wrap(&mk(), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KmsError::Timeout {
                timeout_ms: 300,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "bounded by timeout × attempts + backoff"
    );
    assert!(err.to_string().contains("timed out"));
    clean(&err);
}

#[tokio::test]
async fn two_503_then_200_succeeds() {
    let (url, f) = fake(Mode::FailTwiceThenOk).await;
    let k = kms(&url, Duration::from_secs(5));
    let w = k.wrap(&mk(), &[7; 96]).await.unwrap();
    assert_eq!(f.calls.load(Ordering::SeqCst), 3, "two retries");
    assert_eq!(w.key_material, vec![7 ^ 0xAA; 96]);
    assert_eq!(
        &k.unwrap(&mk(), &w.key_material).await.unwrap()[..],
        &[7; 96][..]
    );
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let (url, f) = fake(Mode::Forbidden).await;
    let err = kms(&url, Duration::from_secs(5))
        .wrap(&mk(), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 403, code, .. } if code == "AccessDeniedException"),
        "{err:?}"
    );
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("authentication failed"));
    clean(&err);
}

#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times() {
    let (url, f) = fake(Mode::Throttle).await;
    let err = kms(&url, Duration::from_secs(5))
        .wrap(&mk(), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Service { status: 429, attempts: 3, code, .. } if code == "ThrottlingException"),
        "{err:?}"
    );
    assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    clean(&err);
}

#[tokio::test]
async fn disabled_key_is_reported_and_not_retried() {
    let (url, f) = fake(Mode::Disabled).await;
    let err = kms(&url, Duration::from_secs(5))
        .unwrap(&mk(), &[1; 160])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyDisabled { code, .. } if code == "DisabledException"),
        "{err:?}"
    );
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    assert!(err.to_string().contains("disabled"));
    clean(&err);
}

#[tokio::test]
async fn wrong_master_key_is_key_not_found() {
    let (url, _f) = fake(Mode::IncorrectKey).await;
    let err = kms(&url, Duration::from_secs(5))
        .unwrap(&mk(), &[1; 160])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "IncorrectKeyException"),
        "{err:?}"
    );
    clean(&err);
}

#[tokio::test]
async fn connection_refused_is_retried_then_network_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = kms(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
        .wrap(&mk(), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(err, KmsError::Network { attempts: 3, .. }),
        "{err:?}"
    );
    clean(&err);
}

#[tokio::test]
async fn provider_not_configured_or_wrong_kind() {
    let k = kms("http://127.0.0.1:9", Duration::from_secs(1));
    let other = MasterKey::from_document(
        &bson::doc! {"provider": "aws", "region": "us-east-1", "key": "k"},
    )
    .unwrap();
    let err = k.wrap(&other, &[1; 96]).await.unwrap_err();
    assert!(
        matches!(err, KmsError::UntrustedMasterKey { .. }),
        "{err:?}"
    );
    let p = k.get(&"aws:prod".parse().unwrap()).unwrap();
    let local = MasterKey::from_document(&bson::doc! {"provider": "local"}).unwrap();
    let err = p.wrap(&local, &[1; 96]).await.unwrap_err();
    assert!(
        matches!(err, KmsError::WrongMasterKeyKind { .. }),
        "{err:?}"
    );
}

/// A KMIP server that accepts TCP and never answers: the handshake times out.
#[tokio::test]
async fn kmip_timeout() {
    let Some(ca) = common::peer_env("CIPHERDOC_TEST_KMIP_CA") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let p = KmipProvider::new(
        &"kmip".parse().unwrap(),
        KmipCredentials {
            endpoint: Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap(),
        },
        &HttpOptions {
            timeout: Duration::from_millis(300),
            retry: RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::default()
            },
            ..HttpOptions::default()
        },
        &TlsOptions {
            ca_file: Some(PathBuf::from(ca)),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let mk =
        MasterKey::from_document(&bson::doc! {"provider": "kmip", "delegated": true, "keyId": "1"})
            .unwrap();
    let err = p.wrap(&mk, &[1; 96]).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("kmip"));
}

/// A KMIP flow that creates a server object (Create or Register, then
/// Activate) is never retried: a failure after the request went out may
/// have created the object, and a second run would create another. A flow
/// on an existing key id is retried as usual. The server accepts and drops
/// every connection, a transient failure.
#[tokio::test]
async fn kmip_create_and_register_are_never_retried() {
    let Some(ca) = common::peer_env("CIPHERDOC_TEST_KMIP_CA") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicU32::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let p = KmipProvider::new(
        &"kmip".parse().unwrap(),
        KmipCredentials {
            endpoint: Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap(),
        },
        &HttpOptions {
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                jitter: false,
            },
            ..HttpOptions::default()
        },
        &TlsOptions {
            ca_file: Some(PathBuf::from(ca)),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let creates =
        MasterKey::from_document(&bson::doc! {"provider": "kmip", "delegated": true}).unwrap();
    let err = p.wrap(&creates, &[1; 96]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "Create was retried");

    let existing =
        MasterKey::from_document(&bson::doc! {"provider": "kmip", "delegated": true, "keyId": "1"})
            .unwrap();
    let err = p.wrap(&existing, &[1; 96]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1 + 3);
}
