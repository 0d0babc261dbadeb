//! The one error type of settings loading.

use std::path::PathBuf;

/// A mistake in the settings, named by the setting's dotted path.
///
/// `Display` reads `<path>: <problem>; <fix>` so that the first line of output
/// tells the user which line of `cipherdoc.toml` to change and how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The settings file could not be read.
    #[error("cannot read settings file {}: {source}; set CIPHERDOC_SETTINGS or create the file", path.display())]
    Read {
        /// The file that was tried.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("settings file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A setting is wrong; `path` is its dotted path, e.g.
    /// `databases.encrypted.encryption.kms_credentials.aws.region`.
    #[error("{path}: {problem}")]
    Invalid {
        /// Dotted path of the offending setting.
        path: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// A PostgreSQL connection (`path` is `databases.<alias>.url` or
    /// `.tls_ca_file`) refused: it could send data in plain text to another
    /// machine, its TLS settings contradict each other, or its CA file or
    /// TLS handshake failed.
    #[cfg(feature = "postgres")]
    #[error("{path}: {source}")]
    Postgres {
        /// Dotted path of the offending setting.
        path: String,
        /// What is wrong and how to fix it.
        source: cipherdoc_engine::postgres::PgConnectError,
    },
    /// The settings name an engine or a KMS provider that this build of
    /// cipherdoc was compiled without (its Cargo feature is off).
    #[error(
        "{path}: this build of cipherdoc has no {what}; enable the `{feature}` feature of cipherdoc (in Cargo.toml: cipherdoc = {{ features = [\"{feature}\"] }})"
    )]
    FeatureMissing {
        /// Dotted path of the setting, e.g. `databases.main.engine`.
        path: String,
        /// What is missing, e.g. `postgres engine` or `aws KMS provider`.
        what: String,
        /// The Cargo feature that brings it.
        feature: &'static str,
    },
}

impl SettingsError {
    pub(crate) fn invalid(path: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// The dotted path of the setting at fault, when there is one.
    pub fn setting_path(&self) -> Option<&str> {
        match self {
            Self::Invalid { path, .. } | Self::FeatureMissing { path, .. } => Some(path),
            #[cfg(feature = "postgres")]
            Self::Postgres { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Why no KMS provider could be chosen for a new data key (see
/// [`super::EncryptionSettings::provider_for`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderChoiceError {
    /// The name asked for is not a provider name.
    #[error("invalid KMS provider name {name:?}: {reason}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The provider asked for is not configured.
    #[error("KMS provider `{0}` is not configured; add it to kms_providers")]
    NotConfigured(String),
    /// Several providers, none asked for and no default.
    #[error(
        "several KMS providers are configured; name one with kms_provider on the model or field, or set encryption.default_kms_provider"
    )]
    Ambiguous,
    /// The provider is configured without a master key for new data keys.
    #[error("no master key configured for KMS provider `{0}`; add its master_key")]
    NoMasterKey(String),
}
