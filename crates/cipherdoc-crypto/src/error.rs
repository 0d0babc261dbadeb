//! The crate's error type.

/// Everything that can go wrong in `cipherdoc-crypto`.
///
/// Messages never contain key bytes, tokens or plaintexts.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An authentication tag did not match: the ciphertext was changed, or the
    /// wrong key (or associated data) was used.
    #[error("authentication failed: the ciphertext was modified or the wrong key was used")]
    AuthenticationFailed,
    /// Bytes from outside could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded (e.g. "FLE2InsertUpdatePayloadV2").
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A key or token had the wrong length.
    #[error("{what} must be {expected} bytes, got {actual}")]
    KeyLength {
        /// Which key.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// A key-vault document does not follow the schema libmongocrypt accepts.
    #[error("invalid key document: {0}")]
    KeyDocument(String),
    /// Encryption refused its input (e.g. an empty plaintext).
    #[error("cannot encrypt: {0}")]
    Encrypt(&'static str),
    /// A ciphertext is structurally invalid (too short, bad padding).
    #[error("cannot decrypt: {0}")]
    Decrypt(&'static str),
    /// A key needed for decryption is not available.
    #[error("data key {0} is not available; load it from the key vault first")]
    MissingKey(crate::key::KeyId),
    /// A parameter is outside its allowed range (e.g. a contention factor).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A BSON value cannot be used here (e.g. its type is not allowed).
    #[error("invalid BSON value: {0}")]
    Bson(String),
    /// The random source could not deliver bytes.
    #[error("random source failed: {0}")]
    Random(String),
    /// The ESC state is inconsistent with the QE protocol (e.g. a referenced
    /// anchor is missing, or a count would overflow).
    #[error("inconsistent ESC state: {0}")]
    EscState(String),
    /// A value or query that a text-search field cannot take.
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    /// Text-search options (`StringOpts`) that libmongocrypt refuses.
    #[error(transparent)]
    StringOpts(#[from] crate::text::StringOptsError),
}

impl Error {
    pub(crate) fn decode(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Decode {
            what,
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
