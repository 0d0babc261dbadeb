//! The crate's error type.

use crate::name::ProviderKind;

/// Everything that can go wrong while wrapping or unwrapping a data key.
///
/// Messages name the provider (`aws:prod`, `kmip`, ...) and the failure;
/// they never contain key bytes, tokens, secrets or plaintexts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// A provider name such as `aws:prod` is malformed.
    #[error("invalid KMS provider name {name:?}: {reason}")]
    InvalidProviderName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A `masterKey` document is malformed; `field` names the offending field.
    #[error("invalid masterKey for provider {provider:?}: field {field:?} {reason}")]
    InvalidMasterKey {
        /// The provider named in the document (or as far as it was read).
        provider: String,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Provider configuration (credentials, TLS files, endpoint) is unusable.
    #[error("KMS provider {provider}: invalid configuration: {reason}")]
    Config {
        /// Provider name.
        provider: String,
        /// What is wrong (never a secret value).
        reason: String,
    },
    /// The master key given to a provider is of another kind.
    #[error("KMS provider {provider} cannot use a masterKey of kind {got}")]
    WrongMasterKeyKind {
        /// Provider name.
        provider: String,
        /// Kind of the master key that was given.
        got: ProviderKind,
    },
    /// The KMS could not be reached (connection refused/reset, DNS, TLS handshake).
    #[error(
        "KMS provider {provider}: cannot reach {endpoint}: {reason} (after {attempts} attempt(s))"
    )]
    Network {
        /// Provider name.
        provider: String,
        /// `host:port` or URL that was tried.
        endpoint: String,
        /// Transport-level reason.
        reason: String,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// No answer within the configured per-request timeout.
    #[error(
        "KMS provider {provider}: request to {endpoint} timed out after {timeout_ms} ms (after {attempts} attempt(s))"
    )]
    Timeout {
        /// Provider name.
        provider: String,
        /// Endpoint that was tried.
        endpoint: String,
        /// Per-request timeout in milliseconds.
        timeout_ms: u64,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The whole operation (token fetch, requests, retries and their
    /// backoff) did not finish within the provider's deadline
    /// (`timeout_ms` in the settings); it was abandoned.
    #[error(
        "KMS provider {provider}: {operation} did not finish within {timeout_ms} ms and was abandoned; check that the KMS is reachable and healthy, or raise kms_providers.{provider}.timeout_ms"
    )]
    DeadlineExceeded {
        /// Provider name.
        provider: String,
        /// `wrap` or `unwrap`.
        operation: &'static str,
        /// The deadline in milliseconds.
        timeout_ms: u64,
    },
    /// Authentication or authorization failed (HTTP 401/403, OAuth error,
    /// KMIP authentication failure). Never retried.
    #[error("KMS provider {provider}: authentication failed (status {status}, {code}): {message}")]
    Auth {
        /// Provider name.
        provider: String,
        /// HTTP status (0 for KMIP).
        status: u16,
        /// Service error code, e.g. `SignatureDoesNotMatch`, `invalid_client`.
        code: String,
        /// Service message (as sent by the service; it contains no secret of ours).
        message: String,
    },
    /// The master key is disabled or not usable for this operation
    /// (AWS `DisabledException`/`KMSInvalidStateException`, Azure/GCP
    /// `FAILED_PRECONDITION`-like answers, KMIP `PERMISSION_DENIED` on a non-active key).
    #[error("KMS provider {provider}: master key is disabled or not usable ({code}): {message}")]
    KeyDisabled {
        /// Provider name.
        provider: String,
        /// Service error code.
        code: String,
        /// Service message.
        message: String,
    },
    /// The master key does not exist or the key material was not made with it
    /// (AWS `NotFoundException`/`IncorrectKeyException`/`InvalidCiphertextException`,
    /// HTTP 404, KMIP `ITEM_NOT_FOUND`).
    #[error("KMS provider {provider}: wrong or unknown master key ({code}): {message}")]
    KeyNotFound {
        /// Provider name.
        provider: String,
        /// Service error code.
        code: String,
        /// Service message.
        message: String,
    },
    /// Any other error answer from the service, after retries for transient ones.
    #[error(
        "KMS provider {provider}: service error (status {status}, {code}): {message} (after {attempts} attempt(s))"
    )]
    Service {
        /// Provider name.
        provider: String,
        /// HTTP status, or the KMIP result status.
        status: u16,
        /// Service error code.
        code: String,
        /// Service message.
        message: String,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The service answered something that does not follow its protocol.
    #[error("KMS provider {provider}: malformed response: {reason}")]
    Protocol {
        /// Provider name.
        provider: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// Input to wrap/unwrap is unusable (e.g. key material of the wrong length).
    #[error("KMS provider {provider}: {reason}")]
    InvalidInput {
        /// Provider name.
        provider: String,
        /// What is wrong.
        reason: String,
    },
    /// A `masterKey` (from a key document) that the settings neither
    /// configure nor allow: nothing was sent.
    #[error(
        "KMS provider {provider}: refusing the masterKey{}: {reason}. Nothing was sent. If this key is yours, add its master key to kms_credentials or its host to kms_providers.{provider}.allowed_hosts",
        host.as_deref().map(|h| format!(" that points at {h}")).unwrap_or_default()
    )]
    UntrustedMasterKey {
        /// Provider name.
        provider: String,
        /// The host the key would have made us contact, when it names one.
        host: Option<String>,
        /// Why it is refused.
        reason: String,
    },
    /// A request would have gone to a host that the provider's settings do
    /// not name; it was not sent.
    #[error(
        "KMS provider {provider}: refusing to contact {host}, which the settings do not name (allowed: {allowed}); nothing was sent"
    )]
    HostNotAllowed {
        /// Provider name.
        provider: String,
        /// The host (and port) refused.
        host: String,
        /// The hosts the settings allow.
        allowed: String,
    },
    /// The service's answer exceeded the size limit; it was not read further.
    #[error(
        "KMS provider {provider}: the answer from {endpoint} exceeds {limit} bytes and was refused"
    )]
    ResponseTooLarge {
        /// Provider name.
        provider: String,
        /// Endpoint that answered.
        endpoint: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Wrapping or unwrapping with a 96-byte local key (the `local`
    /// provider's, or the SecretData of KMIP without `delegated`) failed.
    /// On unwrap, `source` is [`cipherdoc_crypto::Error::AuthenticationFailed`]
    /// when the key is not the one the data key was wrapped with or the
    /// key material was modified.
    #[error(
        "KMS provider {provider}: cannot {operation} the data key with the local key: {source}; check that the provider's key is the one the data key was made with"
    )]
    LocalKey {
        /// Provider name.
        provider: String,
        /// Wrap or unwrap.
        operation: LocalKeyOperation,
        /// What cipherdoc-crypto refused (never key bytes).
        #[source]
        source: cipherdoc_crypto::Error,
    },
    /// The provider's kind was left out of this build: its Cargo feature
    /// (`aws`, `azure`, `gcp` or `kmip`) is off.
    #[error(
        "KMS provider {provider}: this build has no {feature} provider; enable the `{feature}` feature of cipherdoc (or of cipherdoc-kms)"
    )]
    FeatureMissing {
        /// Provider name.
        provider: String,
        /// The Cargo feature that brings the provider.
        feature: &'static str,
    },
}

/// What a [`KmsError::LocalKey`] failed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKeyOperation {
    /// Wrapping a new data key.
    Wrap,
    /// Unwrapping a key document's `keyMaterial`.
    Unwrap,
}

impl std::fmt::Display for LocalKeyOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Wrap => "wrap",
            Self::Unwrap => "unwrap",
        })
    }
}

impl KmsError {
    /// True for failures worth retrying (timeouts, connection errors, HTTP 429/5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Timeout { .. } | Self::DeadlineExceeded { .. } => true,
            Self::Service { status, .. } => *status == 429 || (500..600).contains(status),
            _ => false,
        }
    }

    pub(crate) fn config(provider: &impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::Config {
            provider: provider.to_string(),
            reason: reason.into(),
        }
    }

    #[cfg(any(feature = "_http", feature = "kmip"))]
    pub(crate) fn protocol(provider: &impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Self::Protocol {
            provider: provider.to_string(),
            reason: reason.into(),
        }
    }

    #[cfg(feature = "kmip")]
    pub(crate) fn set_attempts(&mut self, n: u32) {
        match self {
            Self::Network { attempts, .. }
            | Self::Timeout { attempts, .. }
            | Self::Service { attempts, .. } => *attempts = n,
            _ => {}
        }
    }
}
