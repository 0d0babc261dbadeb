//! Azure Key Vault and GCP Cloud KMS providers against in-process fakes that
//! follow the public REST documentation: OAuth2 token endpoints that check
//! client credentials / verify the RS256 JWT, bearer-token checks, real
//! RSA-OAEP-256 (Azure) and AES-GCM (GCP) with test keys, and error bodies in
//! each service's JSON shape.

// Helpers outside #[test] fns are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use cipherdoc_crypto::LocalMasterKey;
use cipherdoc_kms::{
    AzureCredentials, Endpoint, GcpCredentials, HttpOptions, KeyTrust, KmsCredentials, KmsError,
    KmsProviders, LocalKeyOperation, MasterKey, ProviderName, ProviderSettings, RetryPolicy,
    Secret, SecretBytes,
};
use common::assert_clean_error;
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::signature::Verifier;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

fn new_token() -> String {
    let mut b = [0u8; 24];
    OsRng.fill_bytes(&mut b);
    B64URL.encode(b)
}

// ---------------------------------------------------------------- Azure ----

const AZ_TENANT: &str = "tenant-1";
const AZ_CLIENT: &str = "client-1";
const AZ_SECRET: &str = "azure-client-secret-do-not-print";

struct AzureFake {
    key: RsaPrivateKey,
    tokens: Mutex<HashSet<String>>,
    token_requests: AtomicU32,
}

fn az_error(status: StatusCode, code: &str, message: &str, inner: Option<&str>) -> Response {
    let mut err = json!({"code": code, "message": message});
    if let Some(i) = inner {
        err["innererror"] = json!({"code": i});
    }
    (status, Json(json!({ "error": err }))).into_response()
}

async fn az_token(
    State(s): State<Arc<AzureFake>>,
    Path(tenant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let ok = tenant == AZ_TENANT
        && f.get("grant_type").map(String::as_str) == Some("client_credentials")
        && f.get("scope").map(String::as_str) == Some("https://vault.azure.net/.default")
        && f.get("client_id").map(String::as_str) == Some(AZ_CLIENT)
        && f.get("client_secret").map(String::as_str) == Some(AZ_SECRET);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})),
        )
            .into_response();
    }
    let t = new_token();
    s.tokens.lock().unwrap().insert(t.clone());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t})).into_response()
}

async fn az_keyop(
    State(s): State<Arc<AzureFake>>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if q.get("api-version").map(String::as_str) != Some("7.4") {
        return az_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "api-version is missing or unsupported",
            None,
        );
    }
    match bearer(&headers) {
        Some(t) if s.tokens.lock().unwrap().contains(&t) => {}
        _ => {
            return az_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                None,
            );
        }
    }
    // /keys/{name}[/{version}]/{op}
    let segs: Vec<&str> = rest.split('/').collect();
    let (name, op) = match segs.as_slice() {
        [n, op] | [n, _, op] => (*n, *op),
        _ => return az_error(StatusCode::NOT_FOUND, "NotFound", "bad path", None),
    };
    if name == "disabled-key" {
        return az_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("Operation {op} is not allowed on a disabled key."),
            Some("KeyDisabled"),
        );
    }
    if name != "test-key" {
        return az_error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            &format!("A key with (name/id) {name} was not found in this key vault."),
            None,
        );
    }
    if body["alg"] != "RSA-OAEP-256" {
        return az_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Unsupported algorithm",
            None,
        );
    }
    let Some(value) = body["value"].as_str().and_then(|v| B64URL.decode(v).ok()) else {
        return az_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "value is not base64url",
            None,
        );
    };
    let out = match op {
        "wrapkey" => RsaPublicKey::from(&s.key)
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &value)
            .unwrap(),
        "unwrapkey" => match s.key.decrypt(Oaep::new::<Sha256>(), &value) {
            Ok(v) => v,
            Err(_) => {
                return az_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The parameter is incorrect.",
                    None,
                );
            }
        },
        _ => return az_error(StatusCode::NOT_FOUND, "NotFound", "unknown operation", None),
    };
    Json(json!({"kid": format!("https://vault.example/keys/{name}/v1"), "value": B64URL.encode(out)})).into_response()
}

async fn azure_fake() -> (String, Arc<AzureFake>) {
    let s = Arc::new(AzureFake {
        key: RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        tokens: Mutex::default(),
        token_requests: AtomicU32::new(0),
    });
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(az_token))
        .route("/keys/{*rest}", post(az_keyop))
        .with_state(s.clone());
    (serve(app).await, s)
}

fn azure_kms(base: &str, name: &str, creds: AzureCredentials) -> KmsProviders {
    let mut s = ProviderSettings::new(KmsCredentials::Azure(creds));
    s.http = HttpOptions {
        endpoint_override: Some(base.to_owned()),
        token_endpoint_override: Some(base.to_owned()),
        retry: RetryPolicy::none(),
        ..HttpOptions::default()
    };
    s.trust = KeyTrust::new(vec![], &[Endpoint::parse("vault.example").unwrap()]);
    KmsProviders::from_settings(
        &[(name.parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

fn az_creds(secret: &str) -> AzureCredentials {
    AzureCredentials::ClientSecret {
        tenant_id: AZ_TENANT.into(),
        client_id: AZ_CLIENT.into(),
        client_secret: Secret::new(secret),
        identity_platform_endpoint: None,
    }
}

fn az_mk(provider: &str, key: &str, version: Option<&str>) -> MasterKey {
    let mut d =
        bson::doc! {"provider": provider, "keyVaultEndpoint": "vault.example", "keyName": key};
    if let Some(v) = version {
        d.insert("keyVersion", v);
    }
    MasterKey::from_document(&d).unwrap()
}

#[tokio::test]
async fn azure_wrap_unwrap_with_client_credentials_and_cached_token() {
    let (base, fake) = azure_fake().await;
    let kms = azure_kms(&base, "azure:eu", az_creds(AZ_SECRET));
    let dek = vec![0x5a; 96];
    for version in [None, Some("v1")] {
        let mk = az_mk("azure:eu", "test-key", version);
        let w = kms.wrap(&mk, &dek).await.unwrap();
        assert_eq!(w.key_material.len(), 256, "RSA-2048 OAEP output");
        assert_eq!(
            &kms.unwrap(&mk, &w.key_material).await.unwrap()[..],
            &dek[..]
        );
    }
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        1,
        "token cached across calls"
    );
}

#[tokio::test]
async fn azure_given_access_token_and_unknown_token() {
    let (base, fake) = azure_fake().await;
    let good = new_token();
    fake.tokens.lock().unwrap().insert(good.clone());
    let kms = azure_kms(
        &base,
        "azure",
        AzureCredentials::AccessToken(Secret::new(good)),
    );
    let mk = az_mk("azure", "test-key", None);
    let w = kms.wrap(&mk, &[1; 96]).await.unwrap();
    assert_eq!(
        &kms.unwrap(&mk, &w.key_material).await.unwrap()[..],
        &[1; 96][..]
    );
    assert_eq!(fake.token_requests.load(Ordering::SeqCst), 0);

    let bogus = "bogus-token-never-print-me";
    let kms = azure_kms(
        &base,
        "azure",
        AzureCredentials::AccessToken(Secret::new(bogus)),
    );
    let err = kms.wrap(&mk, &[1; 96]).await.unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 401, code, .. } if code == "Unauthorized"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "azure", &[bogus]);
}

#[tokio::test]
async fn azure_wrong_client_secret_is_auth_error() {
    let (base, _fake) = azure_fake().await;
    let wrong = "wrong-secret-never-print-me";
    let kms = azure_kms(&base, "azure", az_creds(wrong));
    let err = kms
        .wrap(&az_mk("azure", "test-key", None), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 401, code, .. } if code == "invalid_client"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "azure", &[wrong, AZ_SECRET]);
}

#[tokio::test]
async fn azure_wrong_missing_and_disabled_keys() {
    let (base, _fake) = azure_fake().await;
    let kms = azure_kms(&base, "azure", az_creds(AZ_SECRET));
    let err = kms
        .wrap(&az_mk("azure", "no-such-key", None), &[1; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "KeyNotFound"),
        "{err:?}"
    );
    let err = kms
        .wrap(&az_mk("azure", "disabled-key", None), &[1; 96])
        .await
        .unwrap_err();
    assert!(matches!(&err, KmsError::KeyDisabled { .. }), "{err:?}");
    assert_clean_error(&err, &err.to_string(), "azure", &[AZ_SECRET]);
    // Key material that this key did not make: OAEP decryption fails.
    let err = kms
        .unwrap(&az_mk("azure", "test-key", None), &[3; 256])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "BadParameter"),
        "{err:?}"
    );
}

// ------------------------------------------------------------------ GCP ----

const GCP_EMAIL: &str = "svc@project.iam.gserviceaccount.com";

struct GcpFake {
    sa_public: RsaPublicKey,
    aud: Mutex<String>,
    tokens: Mutex<HashSet<String>>,
    token_requests: AtomicU32,
    keys: HashMap<String, [u8; 32]>,
}

fn gcp_error(status: StatusCode, grpc: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message, "status": grpc}})),
    )
        .into_response()
}

fn verify_jwt(s: &GcpFake, jwt: &str) -> Result<(), &'static str> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe");
    };
    let header: Value = serde_json::from_slice(&B64URL.decode(h).map_err(|_| "bad header")?)
        .map_err(|_| "bad header")?;
    if header["alg"] != "RS256" {
        return Err("Invalid JWT: unsupported alg");
    }
    let sig =
        rsa::pkcs1v15::Signature::try_from(B64URL.decode(sig).map_err(|_| "bad sig")?.as_slice())
            .map_err(|_| "bad sig")?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(s.sa_public.clone())
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "Invalid JWT Signature.")?;
    let claims: Value = serde_json::from_slice(&B64URL.decode(c).map_err(|_| "bad claims")?)
        .map_err(|_| "bad claims")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    if claims["iss"] != GCP_EMAIL
        || claims["aud"] != *s.aud.lock().unwrap()
        || claims["scope"] != "https://www.googleapis.com/auth/cloudkms"
        || exp <= now
        || exp - iat > 3600
        || iat > now + 60
    {
        return Err("Invalid JWT: claims rejected");
    }
    Ok(())
}

async fn gcp_token(
    State(s): State<Arc<GcpFake>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    if f.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}))).into_response();
    }
    if let Err(e) = verify_jwt(&s, f.get("assertion").map_or("", String::as_str)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": e})),
        )
            .into_response();
    }
    let t = new_token();
    s.tokens.lock().unwrap().insert(t.clone());
    Json(json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

async fn gcp_crypt(
    State(s): State<Arc<GcpFake>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    match bearer(&headers) {
        Some(t) if s.tokens.lock().unwrap().contains(&t) => {}
        _ => {
            return gcp_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            );
        }
    }
    // /v1/projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}[/cryptoKeyVersions/{v}]:{op}
    let segs: Vec<&str> = rest.split('/').collect();
    let last = segs.last().copied().unwrap_or_default();
    let Some((last_name, op)) = last.rsplit_once(':') else {
        return gcp_error(StatusCode::NOT_FOUND, "NOT_FOUND", "bad path");
    };
    let key = match segs.as_slice() {
        [
            _,
            "locations",
            "global",
            "keyRings",
            "ring",
            "cryptoKeys",
            _,
        ] => last_name.to_owned(),
        [
            _,
            "locations",
            "global",
            "keyRings",
            "ring",
            "cryptoKeys",
            k,
            "cryptoKeyVersions",
            _,
        ] if op == "encrypt" => (*k).to_owned(),
        _ => return gcp_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Resource not found."),
    };
    if key == "disabled" {
        return gcp_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            "projects/p/.../cryptoKeyVersions/1 is not enabled, current state is: DISABLED.",
        );
    }
    let Some(k) = s.keys.get(&key) else {
        return gcp_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "CryptoKey projects/p/locations/global/keyRings/ring/cryptoKeys/{key} not found."
            ),
        );
    };
    let c = Aes256Gcm::new_from_slice(k).unwrap();
    match op {
        "encrypt" => {
            let pt = B64
                .decode(body["plaintext"].as_str().unwrap_or(""))
                .unwrap();
            let mut nonce = [0u8; 12];
            OsRng.fill_bytes(&mut nonce);
            let mut out = nonce.to_vec();
            out.extend(c.encrypt(Nonce::from_slice(&nonce), pt.as_slice()).unwrap());
            Json(json!({"name": key, "ciphertext": B64.encode(out)})).into_response()
        }
        "decrypt" => {
            let ct = B64
                .decode(body["ciphertext"].as_str().unwrap_or(""))
                .unwrap_or_default();
            if ct.len() < 28 {
                return gcp_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "Decryption failed: the ciphertext is invalid.",
                );
            }
            match c.decrypt(Nonce::from_slice(&ct[..12]), &ct[12..]) {
                Ok(pt) => Json(json!({"plaintext": B64.encode(pt)})).into_response(),
                Err(_) => gcp_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    "Decryption failed: the ciphertext is invalid.",
                ),
            }
        }
        _ => gcp_error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown method"),
    }
}

async fn gcp_fake(sa: &RsaPrivateKey) -> (String, Arc<GcpFake>) {
    let mut keys = HashMap::new();
    keys.insert("key-a".to_owned(), [1u8; 32]);
    keys.insert("key-b".to_owned(), [2u8; 32]);
    let s = Arc::new(GcpFake {
        sa_public: RsaPublicKey::from(sa),
        aud: Mutex::new(String::new()),
        tokens: Mutex::default(),
        token_requests: AtomicU32::new(0),
        keys,
    });
    let app = Router::new()
        .route("/token", post(gcp_token))
        .route("/v1/projects/{*rest}", post(gcp_crypt))
        .with_state(s.clone());
    (serve(app).await, s)
}

fn gcp_kms(base: &str, name: &str, creds: GcpCredentials) -> KmsProviders {
    let mut s = ProviderSettings::new(KmsCredentials::Gcp(creds));
    s.http = HttpOptions {
        endpoint_override: Some(base.to_owned()),
        token_endpoint_override: Some(base.to_owned()),
        retry: RetryPolicy::none(),
        ..HttpOptions::default()
    };
    s.trust = KeyTrust::new(
        vec![],
        &[Endpoint::parse("cloudkms.googleapis.com").unwrap()],
    );
    KmsProviders::from_settings(
        &[(name.parse::<ProviderName>().unwrap(), s)]
            .into_iter()
            .collect(),
    )
    .unwrap()
}

fn gcp_mk(provider: &str, key: &str, version: Option<&str>) -> MasterKey {
    let mut d = bson::doc! {"provider": provider, "projectId": "proj", "location": "global", "keyRing": "ring", "keyName": key};
    if let Some(v) = version {
        d.insert("keyVersion", v);
    }
    MasterKey::from_document(&d).unwrap()
}

#[tokio::test]
async fn gcp_service_account_jwt_and_encrypt_decrypt() {
    let sa = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let (base, fake) = gcp_fake(&sa).await;
    *fake.aud.lock().unwrap() = "https://oauth2.googleapis.com/token".into();
    let der = sa.to_pkcs8_der().unwrap();
    let pem = sa.to_pkcs8_pem(LineEnding::LF).unwrap();
    // The key as DER, as PEM text, and as base64 of DER (what drivers pass).
    for key in [
        der.as_bytes().to_vec(),
        pem.as_bytes().to_vec(),
        B64.encode(der.as_bytes()).into_bytes(),
    ] {
        let kms = gcp_kms(
            &base,
            "gcp",
            GcpCredentials::ServiceAccount {
                email: GCP_EMAIL.into(),
                private_key: SecretBytes::new(key),
                endpoint: None,
            },
        );
        for version in [None, Some("1")] {
            let mk = gcp_mk("gcp", "key-a", version);
            let w = kms.wrap(&mk, &[9; 96]).await.unwrap();
            assert_eq!(w.key_material.len(), 12 + 96 + 16);
            assert_eq!(
                &kms.unwrap(&mk, &w.key_material).await.unwrap()[..],
                &[9; 96][..]
            );
        }
    }
    assert_eq!(
        fake.token_requests.load(Ordering::SeqCst),
        3,
        "one token per provider, cached after"
    );
}

#[tokio::test]
async fn gcp_jwt_signed_with_another_key_is_rejected() {
    let sa = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let other = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let (base, fake) = gcp_fake(&sa).await;
    *fake.aud.lock().unwrap() = "https://oauth2.googleapis.com/token".into();
    let kms = gcp_kms(
        &base,
        "gcp:x",
        GcpCredentials::ServiceAccount {
            email: GCP_EMAIL.into(),
            private_key: SecretBytes::new(other.to_pkcs8_der().unwrap().as_bytes().to_vec()),
            endpoint: None,
        },
    );
    let err = kms
        .wrap(&gcp_mk("gcp:x", "key-a", None), &[9; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 400, code, message, .. } if code == "invalid_grant" && message.contains("Signature")),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "gcp:x", &[]);
}

#[tokio::test]
async fn gcp_access_token_wrong_and_disabled_keys() {
    let sa = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
    let (base, fake) = gcp_fake(&sa).await;
    let tok = new_token();
    fake.tokens.lock().unwrap().insert(tok.clone());
    let kms = gcp_kms(
        &base,
        "gcp",
        GcpCredentials::AccessToken(Secret::new(tok.clone())),
    );
    let w = kms
        .wrap(&gcp_mk("gcp", "key-a", None), &[4; 96])
        .await
        .unwrap();
    // Unwrapping with another master key: Cloud KMS says the ciphertext is invalid.
    let err = kms
        .unwrap(&gcp_mk("gcp", "key-b", None), &w.key_material)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "INVALID_ARGUMENT"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "gcp", &[&tok]);
    let err = kms
        .wrap(&gcp_mk("gcp", "nope", None), &[4; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::KeyNotFound { code, .. } if code == "NOT_FOUND"),
        "{err:?}"
    );
    let err = kms
        .wrap(&gcp_mk("gcp", "disabled", None), &[4; 96])
        .await
        .unwrap_err();
    assert!(matches!(&err, KmsError::KeyDisabled { .. }), "{err:?}");
    let bad = "expired-token-never-print";
    let kms = gcp_kms(&base, "gcp", GcpCredentials::AccessToken(Secret::new(bad)));
    let err = kms
        .wrap(&gcp_mk("gcp", "key-a", None), &[4; 96])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KmsError::Auth { status: 401, code, .. } if code == "UNAUTHENTICATED"),
        "{err:?}"
    );
    assert_clean_error(&err, &err.to_string(), "gcp", &[bad]);
}

// ------------------------------------------------------ settings, rewrap ----

#[tokio::test]
async fn named_providers_from_settings_and_rewrap_local_to_azure() {
    let (base, _fake) = azure_fake().await;
    let mut az = ProviderSettings::new(KmsCredentials::Azure(az_creds(AZ_SECRET)));
    az.http = HttpOptions {
        endpoint_override: Some(base.clone()),
        token_endpoint_override: Some(base),
        ..HttpOptions::default()
    };
    az.trust = KeyTrust::new(vec![az_mk("azure:prod", "test-key", None)], &[]);
    let local = ProviderSettings::new(KmsCredentials::Local(cipherdoc_kms::LocalCredentials {
        key: LocalMasterKey::from_slice(&[3u8; 96]).unwrap(),
    }));
    let backup = ProviderSettings::new(KmsCredentials::Local(cipherdoc_kms::LocalCredentials {
        key: LocalMasterKey::from_slice(&[4u8; 96]).unwrap(),
    }));
    let settings = [
        ("local".parse::<ProviderName>().unwrap(), local),
        ("local:backup".parse().unwrap(), backup),
        ("azure:prod".parse().unwrap(), az),
    ]
    .into_iter()
    .collect();
    let kms = KmsProviders::from_settings(&settings).unwrap();
    assert_eq!(
        kms.names().map(ToString::to_string).collect::<Vec<_>>(),
        ["azure:prod", "local", "local:backup"]
    );

    let dek = vec![0x42; 96];
    let local_mk = MasterKey::from_document(&bson::doc! {"provider": "local"}).unwrap();
    let backup_mk = MasterKey::from_document(&bson::doc! {"provider": "local:backup"}).unwrap();
    let w = kms.wrap(&local_mk, &dek).await.unwrap();
    // Two named local providers hold different KEKs: the other one's
    // unwrap fails authentication, a typed error naming the provider.
    assert!(matches!(
        kms.unwrap(&backup_mk, &w.key_material).await,
        Err(KmsError::LocalKey {
            ref provider,
            operation: LocalKeyOperation::Unwrap,
            source: cipherdoc_crypto::Error::AuthenticationFailed,
        }) if provider == "local:backup"
    ));

    let az_mk = az_mk("azure:prod", "test-key", None);
    let moved = kms
        .rewrap(&local_mk, &w.key_material, &az_mk)
        .await
        .unwrap();
    assert_eq!(moved.master_key, az_mk);
    assert_eq!(
        &kms.unwrap(&az_mk, &moved.key_material).await.unwrap()[..],
        &dek[..]
    );

    // Credentials of the wrong kind are refused.
    let wrong = [(
        "aws".parse::<ProviderName>().unwrap(),
        ProviderSettings::new(KmsCredentials::Azure(az_creds("x"))),
    )]
    .into_iter()
    .collect();
    assert!(matches!(
        KmsProviders::from_settings(&wrong),
        Err(KmsError::Config { .. })
    ));
}
