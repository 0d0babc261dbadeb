//! Entry points for the fuzz targets (`crates/cipherdoc-fuzz`): the parsers
//! of bytes that a KMS, or whoever answers in its place, sends us. Each
//! returns `Err` when a property fails (a panic is a finding too). Not a
//! stable API.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use reqwest::header::HeaderMap;
use zeroize::Zeroizing;

use crate::http::HttpResponse;
use crate::kmip::ttlv::Item;
use crate::{
    AwsCredentials, AwsProvider, AzureCredentials, AzureProvider, GcpCredentials, GcpProvider,
    HttpOptions, ProviderName, Secret, TlsOptions,
};

/// Splits fuzz input into an HTTP status (first two bytes) and a body.
fn response(data: &[u8]) -> HttpResponse {
    let (status, body) = match data {
        [a, b, rest @ ..] => (100 + u16::from_be_bytes([*a, *b]) % 500, rest),
        _ => (200, data),
    };
    HttpResponse {
        status,
        headers: HeaderMap::new(),
        body: Zeroizing::new(body.to_vec()),
        attempts: 1,
    }
}

/// KMIP TTLV: decoding never panics, and what decodes re-encodes to bytes
/// that decode to the same item.
pub fn kmip_ttlv(data: &[u8]) -> Result<(), String> {
    if let Some(header) = data.first_chunk::<8>() {
        let _ = crate::kmip::ttlv::frame_len(header);
    }
    let Ok(item) = Item::decode(data) else {
        return Ok(());
    };
    let again = Item::decode(&item.encode()).map_err(|e| format!("re-decoding: {e}"))?;
    if again == item {
        Ok(())
    } else {
        Err("decode(encode(item)) differs from item".into())
    }
}

/// An OAuth token endpoint's answer: never a panic, and a lifetime within
/// the cap whatever `expires_in` says.
pub fn token_response(data: &[u8]) -> Result<(), String> {
    let name = ProviderName::new(crate::ProviderKind::Azure);
    if let Ok((_, lifetime)) = crate::token::parse_token_response(&name, &response(data))
        && lifetime > crate::token::MAX_TOKEN_LIFETIME
    {
        return Err(format!("token lifetime {lifetime:?} above the cap"));
    }
    Ok(())
}

struct Providers {
    aws: AwsProvider,
    azure: AzureProvider,
    gcp: GcpProvider,
}

fn providers() -> Option<&'static Arc<Providers>> {
    static P: OnceLock<Option<Arc<Providers>>> = OnceLock::new();
    P.get_or_init(|| {
        let http = HttpOptions::default();
        let tls = TlsOptions::default();
        let aws = AwsProvider::new(
            &ProviderName::new(crate::ProviderKind::Aws),
            Some(AwsCredentials {
                access_key_id: "AKID".into(),
                secret_access_key: Secret::new("s"),
                session_token: None,
            }),
            &http,
            &tls,
        )
        .ok()?;
        let azure = AzureProvider::new(
            &ProviderName::new(crate::ProviderKind::Azure),
            AzureCredentials::AccessToken(Secret::new("t")),
            &http,
            &tls,
        )
        .ok()?;
        let gcp = GcpProvider::new(
            &ProviderName::new(crate::ProviderKind::Gcp),
            GcpCredentials::AccessToken(Secret::new("t")),
            &http,
            &tls,
        )
        .ok()?;
        Some(Arc::new(Providers { aws, azure, gcp }))
    })
    .as_ref()
}

/// AWS, Azure and GCP answers (JSON or XML errors, successes with base64
/// fields): classified without a panic; a success's key field decodes or
/// is a protocol error.
pub fn kms_json(data: &[u8]) -> Result<(), String> {
    let p = providers().ok_or("cannot build the providers")?;
    let resp = response(data);
    if let Ok(mut v) = p.aws.check(&resp) {
        let _ = crate::aws::b64_field(
            &ProviderName::new(crate::ProviderKind::Aws),
            &mut v,
            "Plaintext",
        );
    }
    if let Ok(mut v) = p.azure.check(&resp)
        && let Ok(s) = crate::http::take_str(
            &ProviderName::new(crate::ProviderKind::Azure),
            &mut v,
            "value",
        )
    {
        let _ = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    }
    for op in ["encrypt", "decrypt"] {
        let _ = p.gcp.check(&resp, op);
    }
    Ok(())
}
