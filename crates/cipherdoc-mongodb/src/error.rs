//! The driver's and the server's errors as [`EngineError`]s, keeping the
//! server's code.

use bson::{Bson, Document};
use cipherdoc_engine::EngineError;
use mongodb::error::{Error, ErrorKind};

/// mongod's codes the engine maps to typed errors.
mod code {
    pub const NAMESPACE_NOT_FOUND: i32 = 26;
    pub const NAMESPACE_EXISTS: i32 = 48;
    pub const INDEX_OPTIONS_CONFLICT: i32 = 85;
    pub const INDEX_KEY_SPECS_CONFLICT: i32 = 86;
    pub const DUPLICATE_KEY: i32 = 11000;
    pub const INVALID_NAMESPACE: i32 = 73;
    pub const IMMUTABLE_FIELD: i32 = 66;
    pub const ILLEGAL_OPERATION: i32 = 20;
    /// "Cannot do exclusion on field … in inclusion projection" (and the
    /// reverse).
    pub const PROJECTION_EXCLUSION_IN_INCLUSION: i32 = 31254;
    pub const PROJECTION_INCLUSION_IN_EXCLUSION: i32 = 31253;
}

/// A server error with its code.
fn server(code: i32, code_name: &str, message: &str) -> EngineError {
    EngineError::Server {
        engine: "mongodb",
        code,
        code_name: code_name.to_owned(),
        message: message.to_owned(),
    }
}

/// `E11000 duplicate key error collection: db.c index: name_1 dup key: { … }`
/// → its index and key.
fn duplicate_key(collection: &str, message: &str) -> EngineError {
    let index = message
        .split_once("index: ")
        .map(|(_, rest)| rest.split(' ').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let key = message
        .split_once("dup key: ")
        .map(|(_, k)| k.trim().to_owned())
        .unwrap_or_default();
    EngineError::DuplicateKey {
        collection: collection.to_owned(),
        index,
        key,
    }
}

fn from_code(code: i32, code_name: &str, message: &str, collection: &str) -> EngineError {
    match code {
        code::DUPLICATE_KEY => duplicate_key(collection, message),
        code::NAMESPACE_EXISTS => EngineError::CollectionExists(collection.to_owned()),
        code::NAMESPACE_NOT_FOUND => EngineError::CollectionNotFound(collection.to_owned()),
        code::IMMUTABLE_FIELD => EngineError::InvalidDocument {
            collection: collection.to_owned(),
            reason: message.to_owned(),
        },
        code::INVALID_NAMESPACE => EngineError::InvalidCollectionName {
            name: collection.to_owned(),
            reason: "the MongoDB server refused it as a namespace (InvalidNamespace)",
        },
        code::PROJECTION_EXCLUSION_IN_INCLUSION | code::PROJECTION_INCLUSION_IN_EXCLUSION => {
            EngineError::InvalidProjection(message.to_owned())
        }
        _ => server(code, code_name, message),
    }
}

/// A driver error on an operation of `collection` ("" when none).
pub(crate) fn from_driver(e: Error, collection: &str) -> EngineError {
    match *e.kind {
        ErrorKind::Command(c) => from_code(c.code, &c.code_name, &c.message, collection),
        ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => from_code(
            w.code,
            w.code_name.as_deref().unwrap_or(""),
            &w.message,
            collection,
        ),
        ErrorKind::InvalidArgument { message, .. } => EngineError::Config(message),
        other => EngineError::Connection {
            engine: "mongodb",
            message: other.to_string(),
        },
    }
}

/// `renameCollection`'s error, for a rename of `from` to `to`: a missing
/// source, a taken target, and MongoDB's refusal to rename encrypted
/// collections without the cluster action `setUserWriteBlockMode` (which
/// keeps the server's code and says what to grant).
pub(crate) fn rename_error(e: Error, from: &str, to: &str) -> EngineError {
    renamed_error(from_driver(e, from), from, to)
}

/// [`rename_error`] of an error already mapped for collection `from`.
fn renamed_error(e: EngineError, from: &str, to: &str) -> EngineError {
    match e {
        EngineError::CollectionExists(_) => EngineError::CollectionExists(to.to_owned()),
        EngineError::Server {
            code,
            code_name,
            message,
            ..
        } if code == code::ILLEGAL_OPERATION && message.contains("encrypted collection") => server(
            code,
            &code_name,
            &format!(
                "{message} (renaming {from} to {to}): MongoDB renames encrypted collections only for a user holding the cluster action setUserWriteBlockMode; grant the user a role with that privilege on the cluster resource, or copy the data without renaming"
            ),
        ),
        other => other,
    }
}

/// An index build's error: conflicts name the index.
pub(crate) fn index_error(e: EngineError, collection: &str, index: &str) -> EngineError {
    match e {
        EngineError::Server { code, message, .. }
            if code == code::INDEX_OPTIONS_CONFLICT || code == code::INDEX_KEY_SPECS_CONFLICT =>
        {
            EngineError::InvalidIndex {
                collection: collection.to_owned(),
                index: index.to_owned(),
                reason: message,
            }
        }
        other => other,
    }
}

fn int(v: Option<&Bson>) -> i32 {
    match v {
        Some(Bson::Int32(n)) => *n,
        Some(Bson::Int64(n)) => i32::try_from(*n).unwrap_or(i32::MAX),
        _ => 0,
    }
}

/// A write command's reply: its first `writeErrors` entry (or its
/// `writeConcernError`) as an error.
pub(crate) fn check_write(reply: &Document, collection: &str) -> Result<(), EngineError> {
    if let Ok(errors) = reply.get_array("writeErrors")
        && let Some(Bson::Document(first)) = errors.first()
    {
        return Err(from_code(
            int(first.get("code")),
            first.get_str("codeName").unwrap_or_default(),
            first.get_str("errmsg").unwrap_or_default(),
            collection,
        ));
    }
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(server(
            int(wce.get("code")),
            wce.get_str("codeName").unwrap_or_default(),
            wce.get_str("errmsg").unwrap_or_default(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    #[test]
    fn duplicate_keys_name_their_index_and_key() {
        let reply = doc! {"ok": 1, "n": 0, "writeErrors": [{"index": 0, "code": 11000,
        "errmsg": "E11000 duplicate key error collection: db.c index: a_1 dup key: { a: 1 }"}]};
        let e = check_write(&reply, "c").unwrap_err();
        assert!(
            matches!(&e, EngineError::DuplicateKey { collection, index, key }
                if collection == "c" && index == "a_1" && key == "{ a: 1 }"),
            "{e:?}"
        );
    }

    #[test]
    fn rename_refusals_name_the_collections_and_the_privilege() {
        let taken = from_code(48, "NamespaceExists", "target namespace exists", "t");
        assert!(
            matches!(renamed_error(taken, "t", "c"), EngineError::CollectionExists(n) if n == "c")
        );
        let missing = from_code(
            26,
            "NamespaceNotFound",
            "Source collection db.t does not exist",
            "t",
        );
        assert!(
            matches!(renamed_error(missing, "t", "c"), EngineError::CollectionNotFound(n) if n == "t")
        );
        for message in [
            "Cannot rename an encrypted collection",
            "Cannot rename to an existing encrypted collection",
        ] {
            let refused = from_code(20, "IllegalOperation", message, "t");
            let e = renamed_error(refused, "t", "c");
            assert!(
                matches!(&e, EngineError::Server { code: 20, code_name, message: m, .. }
                    if code_name == "IllegalOperation" && m.starts_with(message)
                        && m.contains("setUserWriteBlockMode") && m.contains("renaming t to c")),
                "{e:?}"
            );
        }
        let other = from_code(
            20,
            "IllegalOperation",
            "Can't rename a collection to itself",
            "t",
        );
        assert!(
            matches!(renamed_error(other, "t", "c"), EngineError::Server { message, .. } if message == "Can't rename a collection to itself")
        );
    }

    #[test]
    fn other_codes_are_kept() {
        let reply = doc! {"ok": 1, "writeErrors": [{"index": 0, "code": 121, "codeName": "DocumentValidationFailure", "errmsg": "no"}]};
        let e = check_write(&reply, "c").unwrap_err();
        assert!(
            matches!(&e, EngineError::Server { code: 121, code_name, .. } if code_name == "DocumentValidationFailure"),
            "{e:?}"
        );
        assert!(check_write(&doc! {"ok": 1, "n": 1}, "c").is_ok());
    }
}
