//! mongod's gatekeeping around the QE server role.
//!
//! The engine's [`QeServer`](cipherdoc_engine::qe_server::QeServer) does the
//! protocol work (payloads → stored values, tags, ESC/ECOC; find payloads →
//! tag lookups) and refuses anything unsafe. What mongod adds on top, and
//! this module reproduces:
//! - a command that carries `encryptionInformation` names the collection's
//!   schema (`{type: 1, schema: {"db.coll": <encryptedFields>}}`, codes
//!   6371205/6371207/6371208 when malformed); it must be the collection's
//!   own `encryptedFields` (cipherdoc answers a mismatch with `BadValue`,
//!   since it always encrypts by the catalog's schema);
//! - through that path, only single-document updates and deletes
//!   (`fle_crud`: 6371502/6371503, 6371302/6371303) and modifier or
//!   replacement updates (6371517);
//! - a client payload (placeholder, insert or find payload) in a command
//!   *without* `encryptionInformation` is refused: in a document as the
//!   collection's implicit validator refuses it (`DocumentValidationFailure`),
//!   in a filter with `BadValue` (mongod would compare it as a literal and
//!   never match, which hides a client bug);
//! - a client never writes `__safeContent__` (`BadValue`, "Cannot insert a
//!   document with field name __safeContent__").

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use cipherdoc_crypto::efc::EncryptedFieldConfig;
use cipherdoc_engine::CollectionInfo;
use cipherdoc_engine::filter::SAFE_CONTENT;
use cipherdoc_engine::qe_server::{CompactionStats, CompactionTokens};

use crate::error::{CommandError, CommandResult, ErrorCode};

/// Blob subtypes a client sends for the server to process (FLE2
/// placeholders and payloads of protocol v1 and v2, the text find payload
/// 18 included); stored values and FLE1 ciphertexts are not among them.
fn is_client_payload(first: u8) -> bool {
    matches!(first, 3 | 4 | 5 | 10 | 11 | 12 | 13 | 18)
}

/// Whether `v` holds a client payload anywhere (iteratively: documents are
/// depth-limited on arrival, but this needs no stack either way).
pub(crate) fn holds_client_payload(v: &Bson) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Encrypted,
                bytes,
            }) if bytes.first().copied().is_some_and(is_client_payload) => return true,
            Bson::Document(d) => stack.extend(d.values()),
            Bson::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    false
}

/// `encryptionInformation`'s schema for `ns`, if the command carries one.
pub(crate) fn encryption_information(cmd: &Document, ns: &str) -> CommandResult<Option<Document>> {
    let Some(ei) = cmd.get("encryptionInformation") else {
        return Ok(None);
    };
    let Bson::Document(ei) = ei else {
        return Err(CommandError::type_mismatch(
            "encryptionInformation",
            "object",
        ));
    };
    match ei.get("type") {
        None | Some(Bson::Int32(1) | Bson::Int64(1)) => {}
        Some(_) => {
            return Err(CommandError::bad_value(
                "encryptionInformation.type must be 1",
            ));
        }
    }
    let schema = match (
        ei.get("schema"),
        ei.get("schema").and_then(|s| match s {
            Bson::Document(s) => s.get(ns),
            _ => None,
        }),
    ) {
        (Some(Bson::Document(_)), Some(Bson::Document(s))) => s.clone(),
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location(6_371_205),
                "Expected an object for schema in EncryptionInformation",
            ));
        }
    };
    if !schema.contains_key("escCollection") {
        return Err(CommandError::new(
            ErrorCode::Location(6_371_207),
            "Expected a value for escCollection",
        ));
    }
    if !schema.contains_key("ecocCollection") {
        return Err(CommandError::new(
            ErrorCode::Location(6_371_208),
            "Expected a value for ecocCollection",
        ));
    }
    Ok(Some(schema))
}

fn sorted_fields(ef: &EncryptedFieldConfig) -> Vec<cipherdoc_crypto::efc::EncryptedField> {
    let mut f = ef.fields.clone();
    f.sort_by(|a, b| a.path.cmp(&b.path));
    f
}

/// Whether a command is on the QE path: it carries `encryptionInformation`
/// that matches the collection's `encryptedFields`. Errors when it carries
/// one that does not fit.
pub(crate) fn check_schema(
    ns: &str,
    given: Option<&Document>,
    info: Option<&CollectionInfo>,
) -> CommandResult<bool> {
    let Some(given) = given else {
        return Ok(false);
    };
    let Some(info) = info else {
        return Err(CommandError::new(
            ErrorCode::NamespaceNotFound,
            format!(
                "encryptionInformation names {ns}, which does not exist; create it with its encryptedFields first"
            ),
        ));
    };
    let Some(stored) = &info.options.encrypted_fields else {
        return Err(CommandError::bad_value(format!(
            "encryptionInformation names {ns}, which is not an encrypted collection"
        )));
    };
    let parse = |d: &Document, what: &str| {
        EncryptedFieldConfig::from_document(d)
            .map_err(|e| CommandError::bad_value(format!("{what} encryptedFields of {ns}: {e}")))
    };
    let given = parse(given, "encryptionInformation's")?;
    let stored = parse(stored, "the collection's")?;
    if sorted_fields(&given) != sorted_fields(&stored) {
        return Err(CommandError::bad_value(format!(
            "the encryptionInformation schema for {ns} does not match the collection's encryptedFields; refresh the client's encryptedFieldsMap from listCollections"
        )));
    }
    Ok(true)
}

/// `encryptionInformation` schemas recently found to match their
/// collection's `encryptedFields`, so that a stream of encrypted commands
/// does not read the catalog once more per command. This is only the gate:
/// the QE server role reads the catalog inside every operation's own
/// transaction and checks each payload against it, so a collection
/// recreated within the TTL can be refused there, never misprocessed.
#[derive(Debug, Default)]
pub(crate) struct CheckedSchemas {
    map: std::sync::Mutex<std::collections::HashMap<String, (Document, std::time::Instant)>>,
}

/// How long a successful check is reused (the QE server role's own schema
/// TTL is the same).
const CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl CheckedSchemas {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Document, std::time::Instant)>>
    {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `given` matched `ns` less than the TTL ago.
    pub(crate) fn recent(&self, ns: &str, given: &Document) -> bool {
        self.lock()
            .get(ns)
            .is_some_and(|(d, at)| d == given && at.elapsed() < CHECK_TTL)
    }

    pub(crate) fn remember(&self, ns: &str, given: Document) {
        self.lock()
            .insert(ns.to_owned(), (given, std::time::Instant::now()));
    }

    /// Forget `ns` (created, dropped), or every collection of a database
    /// (`ns` = `"<db>."`).
    pub(crate) fn forget(&self, ns: &str) {
        self.lock()
            .retain(|k, _| !(k == ns || (ns.ends_with('.') && k.starts_with(ns))));
    }
}

/// Whether a collection has `encryptedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Collection {
    Plain,
    Encrypted,
}

/// A document to insert (or a replacement) on the plain path.
pub(crate) fn check_plain_document(doc: &Document, collection: Collection) -> CommandResult<()> {
    if collection == Collection::Encrypted && doc.contains_key(SAFE_CONTENT) {
        return Err(safe_content_insert());
    }
    if doc.values().any(holds_client_payload) {
        return Err(CommandError::new(
            ErrorCode::DocumentValidationFailure,
            "Document failed validation: it holds a Queryable Encryption payload, which the server processes only in a command that carries encryptionInformation; send it through a client with encryption",
        ));
    }
    Ok(())
}

/// mongod's refusal of a client-written `__safeContent__`.
pub(crate) fn safe_content_insert() -> CommandError {
    CommandError::bad_value(format!(
        "Cannot insert a document with field name {SAFE_CONTENT}"
    ))
}

/// A filter on the plain path.
pub(crate) fn check_plain_filter(filter: &Document) -> CommandResult<()> {
    if filter.values().any(holds_client_payload) {
        return Err(CommandError::bad_value(
            "the filter holds a Queryable Encryption find payload, which the server processes only in a command that carries encryptionInformation; send it through a client with encryption",
        ));
    }
    Ok(())
}

/// The indexed paths of a collection's `encryptedFields`.
fn indexed_paths(info: &CollectionInfo) -> Vec<String> {
    info.options
        .encrypted_fields
        .as_ref()
        .and_then(|ef| EncryptedFieldConfig::from_document(ef).ok())
        .map(|ef| {
            ef.fields
                .into_iter()
                .filter(|f| !f.queries.is_empty())
                .map(|f| f.path)
                .collect()
        })
        .unwrap_or_default()
}

/// `compactionTokens` / `cleanupTokens`: libmongocrypt sends one per
/// encrypted field; mongod uses those of the indexed fields, so the others
/// are dropped here (the engine refuses tokens for unindexed paths).
pub(crate) fn tokens(
    cmd: &Document,
    field: &str,
    info: &CollectionInfo,
) -> CommandResult<CompactionTokens> {
    let Some(t) = cmd.get(field) else {
        return Err(CommandError::new(
            ErrorCode::Location(40414),
            format!("BSON field '{field}' is missing but a required field"),
        ));
    };
    let Bson::Document(t) = t else {
        return Err(CommandError::type_mismatch(field, "object"));
    };
    let indexed = indexed_paths(info);
    let mut kept = Document::new();
    for (k, v) in t {
        if indexed.contains(k) {
            kept.insert(k.clone(), v.clone());
        }
    }
    CompactionTokens::from_document(&kept).map_err(|e| CommandError::bad_value(e.to_string()))
}

/// mongod's `stats` of `compactStructuredEncryptionData` /
/// `cleanupStructuredEncryptionData`.
pub(crate) fn stats_reply(s: &CompactionStats) -> Document {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    doc! {
        "stats": {
            "ecoc": {"read": n(s.ecoc_entries), "deleted": n(s.ecoc_entries)},
            "esc": {
                "read": n(s.unique_counters),
                "inserted": n(s.anchors_inserted + s.padding_anchors_inserted),
                "updated": n(s.null_anchors_written),
                "deleted": n(s.non_anchors_deleted + s.anchors_deleted),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn blob(first: u8) -> Bson {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes: vec![first, 1, 2],
        })
    }

    #[test]
    fn payloads_are_found_at_any_depth() {
        assert!(holds_client_payload(&Bson::Document(
            doc! {"a": [{"b": blob(11)}]}
        )));
        assert!(!holds_client_payload(&Bson::Document(
            doc! {"a": [{"b": blob(14)}]}
        )));
        assert!(check_plain_filter(&doc! {"x": {"$eq": blob(12)}}).is_err());
        // A text query arrives inside `$expr`.
        assert!(
            check_plain_filter(
                &doc! {"$expr": {"$encStrStartsWith": {"input": "$x", "prefix": blob(18)}}}
            )
            .is_err()
        );
        assert!(!holds_client_payload(&blob(17)));
        assert!(check_plain_document(&doc! {"x": blob(16)}, Collection::Encrypted).is_ok());
        assert_eq!(
            check_plain_document(&doc! {"__safeContent__": []}, Collection::Encrypted)
                .unwrap_err()
                .code,
            ErrorCode::BadValue
        );
    }

    #[test]
    fn encryption_information_shape() {
        let ns = "db.c";
        let cmd = doc! {"encryptionInformation": {"type": 1, "schema": {"db.other": {}}}};
        assert_eq!(
            encryption_information(&cmd, ns).unwrap_err().code.code(),
            6_371_205
        );
        let cmd = doc! {"encryptionInformation": {"type": 1, "schema": {"db.c": {"ecocCollection": "x"}}}};
        assert_eq!(
            encryption_information(&cmd, ns).unwrap_err().code.code(),
            6_371_207
        );
        assert!(encryption_information(&doc! {}, ns).unwrap().is_none());
    }
}
