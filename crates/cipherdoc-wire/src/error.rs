//! Command errors in MongoDB's shape: `{ok: 0.0, errmsg, code, codeName}`
//! plus `errorLabels` where mongod sets them, and the mapping from
//! cipherdoc's engine errors to the codes drivers act on.
//!
//! Messages come from cipherdoc's own errors, which never contain an
//! encrypted field's plaintext, a key or a token; the only values they may
//! name are plaintext keys of a unique index, which the client wrote.

use bson::{Bson, Document, doc};
use cipherdoc_engine::EngineError;
use cipherdoc_engine::qe_server::QeError;

/// A MongoDB error code this server answers with. The numbers and names are
/// mongod's (`src/mongo/base/error_codes.yml`); `Location` codes are the
/// assertion ids mongod raises for the same refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1
    InternalError,
    /// 2
    BadValue,
    /// 9
    FailedToParse,
    /// 13
    Unauthorized,
    /// 14
    TypeMismatch,
    /// 15
    Overflow,
    /// 20
    IllegalOperation,
    /// 26
    NamespaceNotFound,
    /// 43
    CursorNotFound,
    /// 48
    NamespaceExists,
    /// 59
    CommandNotFound,
    /// 67
    CannotCreateIndex,
    /// 72
    InvalidOptions,
    /// 73
    InvalidNamespace,
    /// 85
    IndexOptionsConflict,
    /// 112
    WriteConflict,
    /// 115
    CommandNotSupported,
    /// 121
    DocumentValidationFailure,
    /// 125
    CommandFailed,
    /// 225
    TransactionTooOld,
    /// 251
    NoSuchTransaction,
    /// 256
    TransactionCommitted,
    /// 263
    OperationNotSupportedInTransaction,
    /// 352
    UnsupportedOpQueryCommand,
    /// 11000
    DuplicateKey,
    /// An assertion id of mongod's (`Location<n>`).
    Location(i32),
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i32 {
        match self {
            Self::InternalError => 1,
            Self::BadValue => 2,
            Self::FailedToParse => 9,
            Self::Unauthorized => 13,
            Self::TypeMismatch => 14,
            Self::Overflow => 15,
            Self::IllegalOperation => 20,
            Self::NamespaceNotFound => 26,
            Self::CursorNotFound => 43,
            Self::NamespaceExists => 48,
            Self::CommandNotFound => 59,
            Self::CannotCreateIndex => 67,
            Self::InvalidOptions => 72,
            Self::InvalidNamespace => 73,
            Self::IndexOptionsConflict => 85,
            Self::WriteConflict => 112,
            Self::CommandNotSupported => 115,
            Self::DocumentValidationFailure => 121,
            Self::CommandFailed => 125,
            Self::TransactionTooOld => 225,
            Self::NoSuchTransaction => 251,
            Self::TransactionCommitted => 256,
            Self::OperationNotSupportedInTransaction => 263,
            Self::UnsupportedOpQueryCommand => 352,
            Self::DuplicateKey => 11000,
            Self::Location(n) => n,
        }
    }

    /// mongod's `codeName`.
    pub fn name(self) -> String {
        let s = match self {
            Self::InternalError => "InternalError",
            Self::BadValue => "BadValue",
            Self::FailedToParse => "FailedToParse",
            Self::Unauthorized => "Unauthorized",
            Self::TypeMismatch => "TypeMismatch",
            Self::Overflow => "Overflow",
            Self::IllegalOperation => "IllegalOperation",
            Self::NamespaceNotFound => "NamespaceNotFound",
            Self::CursorNotFound => "CursorNotFound",
            Self::NamespaceExists => "NamespaceExists",
            Self::CommandNotFound => "CommandNotFound",
            Self::CannotCreateIndex => "CannotCreateIndex",
            Self::InvalidOptions => "InvalidOptions",
            Self::InvalidNamespace => "InvalidNamespace",
            Self::IndexOptionsConflict => "IndexOptionsConflict",
            Self::WriteConflict => "WriteConflict",
            Self::CommandNotSupported => "CommandNotSupported",
            Self::DocumentValidationFailure => "DocumentValidationFailure",
            Self::CommandFailed => "CommandFailed",
            Self::TransactionTooOld => "TransactionTooOld",
            Self::NoSuchTransaction => "NoSuchTransaction",
            Self::TransactionCommitted => "TransactionCommitted",
            Self::OperationNotSupportedInTransaction => "OperationNotSupportedInTransaction",
            Self::UnsupportedOpQueryCommand => "UnsupportedOpQueryCommand",
            Self::DuplicateKey => "DuplicateKey",
            Self::Location(n) => return format!("Location{n}"),
        };
        s.to_owned()
    }
}

/// mongod's label for errors after which retrying the whole transaction
/// may succeed.
pub const TRANSIENT_TRANSACTION_ERROR: &str = "TransientTransactionError";

/// A failed command, rendered as MongoDB's error reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CommandError {
    /// The code.
    pub code: ErrorCode,
    /// `errmsg`.
    pub message: String,
    /// `errorLabels`.
    pub labels: Vec<&'static str>,
}

impl CommandError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            labels: Vec::new(),
        }
    }

    /// `BadValue` (2).
    pub fn bad_value(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadValue, message)
    }

    /// `TypeMismatch` (14), for a command field of the wrong BSON type.
    pub fn type_mismatch(field: &str, want: &str) -> Self {
        Self::new(
            ErrorCode::TypeMismatch,
            format!("BSON field '{field}' is the wrong type, expected type '{want}'"),
        )
    }

    /// Add an error label.
    #[must_use]
    pub fn label(mut self, label: &'static str) -> Self {
        if !self.labels.contains(&label) {
            self.labels.push(label);
        }
        self
    }

    /// The reply document.
    pub fn to_reply(&self) -> Document {
        let mut d = doc! {
            "ok": 0.0,
            "errmsg": self.message.clone(),
            "code": self.code.code(),
            "codeName": self.code.name(),
        };
        if !self.labels.is_empty() {
            d.insert(
                "errorLabels",
                self.labels
                    .iter()
                    .map(|l| Bson::String((*l).to_owned()))
                    .collect::<Vec<_>>(),
            );
        }
        d
    }

    /// The `writeErrors` entry for the write at `index`.
    pub fn to_write_error(&self, index: usize) -> Document {
        doc! {
            "index": i32::try_from(index).unwrap_or(i32::MAX),
            "code": self.code.code(),
            "codeName": self.code.name(),
            "errmsg": self.message.clone(),
        }
    }

    /// Whether mongod labels this error `TransientTransactionError` when it
    /// happens inside a transaction (`isTransientTransactionError`).
    pub fn is_transient_in_transaction(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::WriteConflict | ErrorCode::NoSuchTransaction
        )
    }

    /// Whether this error concerns one document of a write (it goes into
    /// `writeErrors`, as mongod reports it) rather than the whole command.
    pub fn is_write_error(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::DuplicateKey
                | ErrorCode::DocumentValidationFailure
                | ErrorCode::BadValue
                | ErrorCode::Location(_)
        )
    }
}

impl From<EngineError> for CommandError {
    fn from(e: EngineError) -> Self {
        let message = match &e {
            // mongod's wording, which drivers and the MongoDB engine read
            // the index and the key from.
            EngineError::DuplicateKey {
                collection,
                index,
                key,
            } => format!(
                "E11000 duplicate key error collection: {collection} index: {index} dup key: {key}"
            ),
            _ => e.to_string(),
        };
        let code = match &e {
            EngineError::Filter(_)
            | EngineError::InvalidEncryptedFields { .. }
            | EngineError::InvalidDocument { .. } => ErrorCode::BadValue,
            EngineError::InvalidCollectionName { .. } => ErrorCode::InvalidNamespace,
            EngineError::CollectionExists(_) => ErrorCode::NamespaceExists,
            EngineError::CollectionNotFound(_) => ErrorCode::NamespaceNotFound,
            // mongod: "Target namespace is not an encrypted collection".
            EngineError::NotEncrypted(_) => ErrorCode::Location(6_346_807),
            EngineError::DuplicateKey { .. } => ErrorCode::DuplicateKey,
            EngineError::EscIdConflict { .. } => ErrorCode::WriteConflict,
            EngineError::InvalidIndex { .. } => ErrorCode::IndexOptionsConflict,
            // mongod: "Cannot do exclusion on field ... in inclusion projection".
            EngineError::InvalidProjection(_) => ErrorCode::Location(31254),
            EngineError::TransactionClosed(_) => ErrorCode::NoSuchTransaction,
            EngineError::Qe(q) => return qe_error(q, message),
            _ => ErrorCode::InternalError,
        };
        Self::new(code, message)
    }
}

fn qe_error(e: &QeError, message: String) -> CommandError {
    let code = match e {
        // What mongod's implicit validator of an encrypted collection
        // answers for a plaintext (or otherwise unencrypted) value at an
        // encrypted path.
        QeError::InvalidDocument { .. } => ErrorCode::DocumentValidationFailure,
        QeError::WriteConflict { .. } => ErrorCode::WriteConflict,
        QeError::TransactionAborted(_) => ErrorCode::NoSuchTransaction,
        _ => ErrorCode::BadValue,
    };
    CommandError::new(code, message)
}

/// Result of a command.
pub type CommandResult<T = Document> = Result<T, CommandError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reply_shape() {
        let e = CommandError::new(ErrorCode::NoSuchTransaction, "gone")
            .label(TRANSIENT_TRANSACTION_ERROR);
        let r = e.to_reply();
        assert!(matches!(r.get("ok"), Some(Bson::Double(f)) if f.abs() < f64::EPSILON));
        assert_eq!(r.get_i32("code").unwrap(), 251);
        assert_eq!(r.get_str("codeName").unwrap(), "NoSuchTransaction");
        assert_eq!(
            r.get_array("errorLabels").unwrap(),
            &vec![Bson::String("TransientTransactionError".into())]
        );
        assert_eq!(ErrorCode::Location(6_371_503).name(), "Location6371503");
    }

    #[test]
    fn engine_errors_map_to_driver_codes() {
        let dup: CommandError = EngineError::DuplicateKey {
            collection: "c".into(),
            index: "_id_".into(),
            key: "1".into(),
        }
        .into();
        assert_eq!(dup.code.code(), 11000);
        assert_eq!(
            dup.message,
            "E11000 duplicate key error collection: c index: _id_ dup key: 1"
        );
        let conflict: CommandError = EngineError::EscIdConflict {
            collection: "c".into(),
        }
        .into();
        assert_eq!(conflict.code.code(), 112);
        assert!(
            conflict.labels.is_empty(),
            "labels are the dispatcher's to add"
        );
        let missing: CommandError = EngineError::CollectionNotFound("c".into()).into();
        assert_eq!(missing.code.code(), 26);
    }
}
