//! Transport options shared by all providers: timeouts, retries, TLS, and the
//! HTTP sender used by the AWS, Azure and GCP providers.

use std::path::PathBuf;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
#[cfg(feature = "_http")]
use reqwest::header::HeaderMap;
#[cfg(feature = "_http")]
use zeroize::Zeroizing;

#[cfg(feature = "_http")]
use crate::HostSet;
#[cfg(any(feature = "_http", feature = "kmip"))]
use crate::{KmsError, ProviderName};

/// Bounded retries with exponential backoff and full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; doubles each retry.
    pub initial_backoff: Duration,
    /// Upper bound of any backoff.
    pub max_backoff: Duration,
    /// Sleep a uniformly random time in `[0, ceiling]` instead of the ceiling.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The sleep before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let ceiling = exp.min(self.max_backoff);
        if !self.jitter || ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(OsRng.next_u64() % nanos.saturating_add(1))
    }
}

/// TLS options for one provider (MongoDB's `tlsOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust (in addition to the built-in
    /// web PKI roots for HTTP providers; instead of them for KMIP).
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file with the client private key (PKCS#8, PKCS#1 or SEC1); may be
    /// the same file as `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

/// The default of [`HttpOptions::deadline`]: a wrap or unwrap that takes
/// longer is abandoned rather than holding a write behind it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Transport options for one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Per-request timeout (connect + request + response).
    pub timeout: Duration,
    /// Bound on a whole wrap or unwrap, retries and token fetches
    /// included ([`crate::KmsError::DeadlineExceeded`] past it). `None`:
    /// only the per-request timeout and the retry policy bound it.
    pub deadline: Option<Duration>,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
    /// Base URL replacing the KMS endpoint (`http://127.0.0.1:5099`): for
    /// test servers and private endpoints; the only way to use plain HTTP.
    pub endpoint_override: Option<String>,
    /// Base URL replacing the OAuth token endpoint (Azure, GCP).
    pub token_endpoint_override: Option<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            deadline: Some(DEFAULT_DEADLINE),
            retry: RetryPolicy::default(),
            endpoint_override: None,
            token_endpoint_override: None,
        }
    }
}

#[cfg(any(feature = "_http", feature = "kmip"))]
pub(crate) fn read_file(
    provider: &ProviderName,
    what: &str,
    path: &PathBuf,
) -> Result<Vec<u8>, KmsError> {
    std::fs::read(path).map_err(|e| {
        KmsError::config(
            provider,
            format!("cannot read {what} {}: {e}", path.display()),
        )
    })
}

/// The largest answer a KMS or token endpoint may send. Real answers are
/// a few kilobytes; a hostile or broken server must not make us buffer more.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// An HTTP answer that was not a transport failure. The body may hold a
/// plaintext data key or an access token: it is zeroized when dropped.
#[cfg(feature = "_http")]
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub headers: HeaderMap,
    pub body: Zeroizing<Vec<u8>>,
    pub attempts: u32,
}

/// reqwest client plus the retry loop and the host guard.
#[cfg(feature = "_http")]
#[derive(Debug, Clone)]
pub(crate) struct HttpSender {
    client: reqwest::Client,
    pub(crate) provider: ProviderName,
    pub(crate) opts: HttpOptions,
    /// The only hosts a request may go to (see [`crate::trust`]).
    allowed: HostSet,
}

/// A request body that may hold a secret, as a `Bytes` whose owner zeroizes
/// the buffer when reqwest is done with it.
#[cfg(feature = "_http")]
pub(crate) fn secret_body(body: &Zeroizing<Vec<u8>>) -> bytes::Bytes {
    bytes::Bytes::from_owner(body.clone())
}

/// A JSON object of string fields, written straight into a zeroized buffer
/// (the `Value` that `json!` builds would keep an unzeroized copy of a
/// base64 data key). Room is reserved up front so that the buffer never
/// reallocates, which would leave a copy behind.
#[cfg(feature = "_http")]
pub(crate) fn json_object(
    fields: &[(&str, &str)],
) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    // Escaping at most sextuples a character (\u00XX).
    let cap = 2 + fields
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.len()) + 6)
        .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, v)?;
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(feature = "_http")]
impl HttpSender {
    pub(crate) fn new(
        provider: &ProviderName,
        opts: &HttpOptions,
        tls: &TlsOptions,
    ) -> Result<Self, KmsError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(ca) = &tls.ca_file {
            let pem = read_file(provider, "CA file", ca)?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| KmsError::config(provider, format!("CA file {}: {e}", ca.display())))?
            {
                b = b.add_root_certificate(c);
            }
        }
        match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(cert), key) => {
                let mut pem = read_file(provider, "client certificate", cert)?;
                if let Some(key) = key.as_ref().filter(|k| *k != cert) {
                    pem.push(b'\n');
                    pem.extend(read_file(provider, "client key", key)?);
                }
                let id = reqwest::Identity::from_pem(&pem);
                zeroize::Zeroize::zeroize(&mut pem);
                b = b.identity(id.map_err(|e| {
                    KmsError::config(provider, format!("client certificate/key: {e}"))
                })?);
            }
            (None, Some(_)) => {
                return Err(KmsError::config(
                    provider,
                    "client key given without client certificate",
                ));
            }
            (None, None) => {}
        }
        let client = b
            .build()
            .map_err(|e| KmsError::config(provider, format!("HTTP client: {e}")))?;
        let mut allowed = HostSet::default();
        for url in [&opts.endpoint_override, &opts.token_endpoint_override]
            .into_iter()
            .flatten()
        {
            allowed.insert_url(url);
        }
        Ok(Self {
            client,
            provider: provider.clone(),
            opts: opts.clone(),
            allowed,
        })
    }

    /// Admits the hosts of `set` too (the settings' master keys, the
    /// allowlist, the provider's fixed hosts).
    pub(crate) fn allow(&mut self, set: &HostSet, extra: &[(&str, Option<u16>)]) {
        for (h, p) in set.entries() {
            self.allowed.insert(h, p);
        }
        for (h, p) in extra {
            self.allowed.insert(h, *p);
        }
    }

    /// Sends the request built by `build` (called once per attempt, so that
    /// signatures and dates are fresh), retrying transport failures and
    /// HTTP 429/5xx per the policy. Other statuses are returned to the caller.
    /// A request whose URL names a host outside the allowed set is not sent.
    pub(crate) async fn send<F>(&self, endpoint: &str, build: F) -> Result<HttpResponse, KmsError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, KmsError>,
    {
        let max = self.opts.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = build(&self.client)?
                .build()
                .map_err(|e| KmsError::protocol(&self.provider, format!("request: {e}")))?;
            self.check_host(request.url())?;
            let outcome = match self.client.execute(request).await {
                Ok(resp) => self.read(endpoint, resp, attempt).await,
                Err(e) => Err(self.transport_error(endpoint, &e, attempt)),
            };
            let retry = match &outcome {
                Ok(r) => r.status == 429 || (500..600).contains(&r.status),
                Err(e) => e.is_transient(),
            };
            if !retry || attempt >= max {
                return outcome;
            }
            let wait = self.opts.retry.backoff(attempt);
            tracing::debug!(provider = %self.provider, attempt, ?wait, "transient KMS failure; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn check_host(&self, url: &reqwest::Url) -> Result<(), KmsError> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default();
        if self.allowed.permits(host, port) {
            return Ok(());
        }
        Err(KmsError::HostNotAllowed {
            provider: self.provider.to_string(),
            host: match port {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            },
            allowed: self.allowed.to_string(),
        })
    }

    /// Reads the body up to [`MAX_RESPONSE_BYTES`] into a zeroized buffer.
    /// (The transport's own chunk buffers are beyond our reach.)
    async fn read(
        &self,
        endpoint: &str,
        mut resp: reqwest::Response,
        attempt: u32,
    ) -> Result<HttpResponse, KmsError> {
        let too_large = || KmsError::ResponseTooLarge {
            provider: self.provider.to_string(),
            endpoint: endpoint.to_owned(),
            limit: MAX_RESPONSE_BYTES,
        };
        let announced = resp.content_length().unwrap_or(0);
        if announced > MAX_RESPONSE_BYTES as u64 {
            return Err(too_large());
        }
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        // Reserve the whole limit when the length is unknown, so that the
        // buffer never reallocates (which would leave a copy behind).
        let cap = if announced > 0 {
            usize::try_from(announced).unwrap_or(MAX_RESPONSE_BYTES)
        } else {
            MAX_RESPONSE_BYTES
        };
        let mut body = Zeroizing::new(Vec::with_capacity(cap));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return Err(too_large());
                    }
                    if body.len() + chunk.len() > body.capacity() {
                        // More than announced: move to a buffer of the full limit.
                        let mut bigger = Zeroizing::new(Vec::with_capacity(MAX_RESPONSE_BYTES));
                        bigger.extend_from_slice(&body);
                        body = bigger;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(self.transport_error(endpoint, &e, attempt)),
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
            attempts: attempt,
        })
    }

    fn transport_error(&self, endpoint: &str, e: &reqwest::Error, attempts: u32) -> KmsError {
        if e.is_timeout() {
            return KmsError::Timeout {
                provider: self.provider.to_string(),
                endpoint: endpoint.to_owned(),
                timeout_ms: u64::try_from(self.opts.timeout.as_millis()).unwrap_or(u64::MAX),
                attempts,
            };
        }
        // reqwest's messages carry the URL but no header or body, so no secret.
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        KmsError::Network {
            provider: self.provider.to_string(),
            endpoint: endpoint.to_owned(),
            reason,
            attempts,
        }
    }
}

/// Appends path segments (percent-encoded) to a base URL.
#[cfg(any(feature = "azure", feature = "gcp"))]
pub(crate) fn join(
    provider: &ProviderName,
    base: &str,
    segs: &[&str],
) -> Result<reqwest::Url, KmsError> {
    let mut url = reqwest::Url::parse(base)
        .map_err(|e| KmsError::config(provider, format!("endpoint {base:?}: {e}")))?;
    {
        let mut p = url.path_segments_mut().map_err(|()| {
            KmsError::config(provider, format!("endpoint {base:?} cannot be a base URL"))
        })?;
        p.pop_if_empty();
        p.extend(segs);
    }
    Ok(url)
}

/// Moves the string `field` out of a JSON answer, so that the (possibly
/// secret) base64 text is zeroized when dropped rather than left in the `Value`.
#[cfg(feature = "_http")]
pub(crate) fn take_str(
    provider: &ProviderName,
    v: &mut serde_json::Value,
    field: &str,
) -> Result<zeroize::Zeroizing<String>, KmsError> {
    match v.get_mut(field).map(serde_json::Value::take) {
        Some(serde_json::Value::String(s)) => Ok(zeroize::Zeroizing::new(s)),
        _ => Err(KmsError::protocol(
            provider,
            format!("response lacks string field {field}"),
        )),
    }
}

/// Trims a service message for inclusion in an error (bounded length, one line).
pub(crate) fn clip(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(300).collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(400));
        assert_eq!(p.backoff(30), Duration::from_secs(2));
        let j = RetryPolicy::default();
        for r in 1..10 {
            assert!(j.backoff(r) <= p.backoff(r));
        }
    }
}
