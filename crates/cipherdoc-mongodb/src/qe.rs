//! What libmongocrypt adds to a command for a collection with
//! `encryptedFields`, so that the server (which plays the QE server role)
//! receives exactly what a MongoDB driver with libmongocrypt would send.
//!
//! The rules, from libmongocrypt's `mongocrypt-ctx-encrypt.c` (read, not
//! copied):
//! - `encryptionInformation` is `{type: 1, schema: {<db>.<coll>: <efc>}}`
//!   where `<efc>` is the collection's `encryptedFields` with
//!   `escCollection` and `ecocCollection` appended (after the existing
//!   fields) when missing, defaulting to `enxcol_.<coll>.esc`/`.ecoc`; it
//!   is appended at the end of the command.
//! - `create`, `collMod`, `createIndexes` and
//!   `cleanupStructuredEncryptionData` never carry it.
//! - `compactStructuredEncryptionData` carries it only when a range (or
//!   text search) field is configured: MongoDB 7.0 refuses it there, 8.0
//!   needs it for range fields.
//! - `find`, `aggregate`, `distinct`, `count` and `insert` carry it only
//!   when the command holds a QE payload that needs it (insert/update
//!   payloads, find payloads: BinData 6 of subtypes 4, 5, 11, 12, 13, 18).
//! - Every other command on the collection (`update`, `delete`,
//!   `findAndModify`, `explain`) carries it.
//! - Commands of the bypass list (`drop`, `listCollections`, `getMore`, …)
//!   are sent as they are.

use bson::{Bson, Document, spec::BinarySubtype};
use cipherdoc_engine::EngineError;
use cipherdoc_engine::qe_server::{CompactionStats, CompactionTokens};

use crate::{MongoTopology, ServerInfo, WIRE_VERSION_7_0, WIRE_VERSION_8_0};

/// The commands this engine sends to an encrypted collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// `insert`
    Insert,
    /// `find`
    Find,
    /// `count`
    Count,
    /// `update`
    Update,
    /// `delete`
    Delete,
    /// `compactStructuredEncryptionData`
    Compact,
    /// `cleanupStructuredEncryptionData`
    Cleanup,
    /// `findAndModify`
    FindAndModify,
    /// `aggregate` (and `distinct`)
    Aggregate,
    /// A command libmongocrypt sends as it is (`create`, `collMod`,
    /// `createIndexes`, `drop`, `listCollections`, …).
    Bypass,
}

impl Command {
    /// The command named `name` (the first key of a command document).
    pub(crate) fn of_name(name: &str) -> Self {
        match name {
            "insert" => Self::Insert,
            "find" => Self::Find,
            "count" => Self::Count,
            "update" => Self::Update,
            "delete" => Self::Delete,
            "findAndModify" | "findandmodify" => Self::FindAndModify,
            "aggregate" | "distinct" => Self::Aggregate,
            "compactStructuredEncryptionData" => Self::Compact,
            "cleanupStructuredEncryptionData" => Self::Cleanup,
            _ => Self::Bypass,
        }
    }
}

/// BinData 6 subtypes that make libmongocrypt keep `encryptionInformation`
/// on an eligible command (`_mongocrypt_fle2_insert_update_find`): FLE2
/// insert/update payloads v1 (4) and v2 (11), find payloads v1 (5) and v2
/// equality (12), range (13) and text (18).
const PAYLOAD_SUBTYPES: [u8; 6] = [4, 5, 11, 12, 13, 18];

/// Whether `v` holds a payload of [`PAYLOAD_SUBTYPES`] anywhere.
pub(crate) fn holds_payload(v: &Bson) -> bool {
    match v {
        Bson::Binary(b) => {
            b.subtype == BinarySubtype::Encrypted
                && b.bytes
                    .first()
                    .is_some_and(|s| PAYLOAD_SUBTYPES.contains(s))
        }
        Bson::Document(d) => d.values().any(holds_payload),
        Bson::Array(a) => a.iter().any(holds_payload),
        _ => false,
    }
}

/// Whether any `encryptedFields.fields[].queries` is of a type whose
/// compaction needs `encryptionInformation` on MongoDB 8.0 (range, and the
/// text-search types).
pub(crate) fn has_padded_fields(efc: &Document) -> bool {
    let Ok(fields) = efc.get_array("fields") else {
        return false;
    };
    fields.iter().any(|f| {
        let Some(f) = f.as_document() else {
            return false;
        };
        let types: Vec<&str> = match f.get("queries") {
            Some(Bson::Document(q)) => q.get_str("queryType").into_iter().collect(),
            Some(Bson::Array(qs)) => qs
                .iter()
                .filter_map(|q| q.as_document()?.get_str("queryType").ok())
                .collect(),
            _ => Vec::new(),
        };
        types.iter().any(|t| {
            matches!(
                *t,
                "range" | "rangePreview" | "substringPreview" | "suffixPreview" | "prefixPreview"
            )
        })
    })
}

/// Whether libmongocrypt would attach `encryptionInformation` to `cmd`.
pub(crate) fn attaches(command: Command, cmd: &Document, efc: &Document) -> bool {
    match command {
        Command::Cleanup | Command::Bypass => false,
        Command::Compact => has_padded_fields(efc),
        Command::Insert | Command::Find | Command::Count | Command::Aggregate => {
            cmd.values().any(holds_payload)
        }
        Command::Update | Command::Delete | Command::FindAndModify => true,
    }
}

/// `encryptionInformation` for collection `coll` of database `db`.
pub(crate) fn encryption_information(db: &str, coll: &str, efc: &Document) -> Document {
    let mut schema = efc.clone();
    if !schema.contains_key("escCollection") {
        schema.insert("escCollection", format!("enxcol_.{coll}.esc"));
    }
    if !schema.contains_key("ecocCollection") {
        schema.insert("ecocCollection", format!("enxcol_.{coll}.ecoc"));
    }
    let mut by_ns = Document::new();
    by_ns.insert(format!("{db}.{coll}"), schema);
    let mut ei = Document::new();
    ei.insert("type", 1_i32);
    ei.insert("schema", by_ns);
    ei
}

/// Append `encryptionInformation` to `cmd` when libmongocrypt would.
pub(crate) fn finish(command: Command, cmd: &mut Document, db: &str, coll: &str, efc: &Document) {
    if attaches(command, cmd, efc) {
        cmd.insert(
            "encryptionInformation",
            encryption_information(db, coll, efc),
        );
    }
}

/// The names of an encrypted collection's state collections, as the
/// drivers derive them.
pub(crate) fn state_collections(coll: &str, efc: &Document) -> (String, String) {
    let esc = efc
        .get_str("escCollection")
        .map_or_else(|_| format!("enxcol_.{coll}.esc"), str::to_owned);
    let ecoc = efc
        .get_str("ecocCollection")
        .map_or_else(|_| format!("enxcol_.{coll}.ecoc"), str::to_owned);
    (esc, ecoc)
}

/// `efc` for a new collection `coll` whose ESC and ECOC must not be any of
/// the `taken` collections: unchanged when its state collections' names
/// (the defaults `enxcol_.<coll>.esc`/`.ecoc`, or the names it gives) are
/// free; otherwise, for default names, the first free pair
/// `enxcol_.<coll>.<n>.esc`/`.ecoc` (n = 2, 3, …), recorded in
/// `escCollection`/`ecocCollection`. MongoDB needs this after a rename: the
/// renamed collection keeps the state collections of the name it was
/// created under (mongod only checks that the names start with `enxcol_.`
/// and end with `.esc`/`.ecoc`).
pub(crate) fn with_free_state_names(
    coll: &str,
    mut efc: Document,
    taken: &[String],
) -> Result<Document, EngineError> {
    let is_taken = |n: &str| taken.iter().any(|t| t == n);
    let (esc, ecoc) = state_collections(coll, &efc);
    if !is_taken(&esc) && !is_taken(&ecoc) {
        return Ok(efc);
    }
    let refuse = |reason: String| EngineError::InvalidEncryptedFields {
        collection: coll.to_owned(),
        reason,
    };
    if esc != format!("enxcol_.{coll}.esc") || ecoc != format!("enxcol_.{coll}.ecoc") {
        return Err(refuse(format!(
            "its state collections {esc:?} and {ecoc:?} must be new, and one of them exists"
        )));
    }
    for n in 2..=1000 {
        let esc = format!("enxcol_.{coll}.{n}.esc");
        let ecoc = format!("enxcol_.{coll}.{n}.ecoc");
        if !is_taken(&esc) && !is_taken(&ecoc) {
            efc.insert("escCollection", esc);
            efc.insert("ecocCollection", ecoc);
            return Ok(efc);
        }
    }
    Err(refuse(
        "no free name for its state collections among enxcol_.<name>.<n>.esc/.ecoc up to n = 1000; drop the unused enxcol_ collections".to_owned(),
    ))
}

/// Refuse an encrypted collection the server cannot serve: QE needs a
/// replica set or a sharded cluster, protocol v2 MongoDB 7.0 (wire 21),
/// range fields 8.0 (wire 25).
pub(crate) fn check_server_supports(
    collection: &str,
    efc: &Document,
    server: &ServerInfo,
) -> Result<(), EngineError> {
    let refuse = |reason: String| EngineError::InvalidEncryptedFields {
        collection: collection.to_owned(),
        reason,
    };
    if server.topology == MongoTopology::Standalone {
        return Err(refuse(
            "Queryable Encryption needs a replica set or a sharded cluster; the server is a standalone (a one-member replica set is enough)".to_owned(),
        ));
    }
    if server.max_wire_version < WIRE_VERSION_7_0 {
        return Err(refuse(format!(
            "Queryable Encryption needs MongoDB 7.0 or later (wire version {WIRE_VERSION_7_0}); the server reports wire version {}",
            server.max_wire_version
        )));
    }
    if has_range_fields(efc) && server.max_wire_version < WIRE_VERSION_8_0 {
        return Err(refuse(format!(
            "range fields need MongoDB 8.0 or later (wire version {WIRE_VERSION_8_0}); the server reports wire version {} (MongoDB 7.0 serves equality and unindexed fields only)",
            server.max_wire_version
        )));
    }
    Ok(())
}

/// Refuse an encrypted collection sharded on an encrypted field: MongoDB
/// routes documents by the shard key's value, which an encrypted field's
/// randomized ciphertext cannot be (its ESC and ECOC are unsharded, on the
/// collection's primary shard, and need no key of their own).
pub(crate) fn check_shard_key(
    collection: &str,
    efc: &Document,
    shard_key: Option<&Document>,
) -> Result<(), EngineError> {
    let Some(key) = shard_key else {
        return Ok(());
    };
    let paths: Vec<&str> = efc
        .get_array("fields")
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.as_document()?.get_str("path").ok())
                .collect()
        })
        .unwrap_or_default();
    let within =
        |a: &str, b: &str| a == b || (b.starts_with(a) && b.as_bytes().get(a.len()) == Some(&b'.'));
    for k in key.keys() {
        if let Some(p) = paths.iter().find(|p| within(k, p) || within(p, k)) {
            return Err(EngineError::InvalidEncryptedFields {
                collection: collection.to_owned(),
                reason: format!(
                    "the collection is sharded on {k:?}, which is the encrypted field {p:?} or part of it; a shard key may not be an encrypted path (reshard the collection on a plaintext field)"
                ),
            });
        }
    }
    Ok(())
}

/// Whether a field has `queryType: "range"`.
pub(crate) fn has_range_fields(efc: &Document) -> bool {
    efc.get_array("fields").is_ok_and(|fields| {
        fields.iter().any(|f| {
            f.as_document()
                .and_then(|f| match f.get("queries") {
                    Some(Bson::Document(q)) => Some(q.get_str("queryType") == Ok("range")),
                    Some(Bson::Array(qs)) => Some(qs.iter().any(|q| {
                        q.as_document()
                            .is_some_and(|q| q.get_str("queryType") == Ok("range"))
                    })),
                    _ => None,
                })
                .unwrap_or(false)
        })
    })
}

/// The tokens document in the order of the `encryptedFields`' fields, as
/// libmongocrypt sends it.
pub(crate) fn tokens_document(efc: &Document, tokens: &CompactionTokens) -> Document {
    let paths: Vec<&str> = efc
        .get_array("fields")
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.as_document()?.get_str("path").ok())
                .collect()
        })
        .unwrap_or_default();
    tokens.to_document(paths)
}

/// mongod's `stats` of `command` (compaction or cleanup) as
/// [`CompactionStats`]. mongod reports fewer counters: its inserted anchors
/// include padding anchors, and its deleted ESC entries are of both kinds.
/// A compaction deletes only non-anchors; a cleanup's deletions are
/// reported as `anchors_deleted` (the non-anchors it deletes among them).
pub(crate) fn stats_of(command: Command, reply: &Document) -> CompactionStats {
    let n = |d: Option<&Document>, k: &str| -> u64 {
        match d.and_then(|d| d.get(k)) {
            Some(Bson::Int32(v)) => u64::try_from(*v).unwrap_or(0),
            Some(Bson::Int64(v)) => u64::try_from(*v).unwrap_or(0),
            _ => 0,
        }
    };
    let stats = reply.get_document("stats").ok();
    let esc = stats.and_then(|s| s.get_document("esc").ok());
    let ecoc = stats.and_then(|s| s.get_document("ecoc").ok());
    let mut out = CompactionStats::default();
    out.ecoc_entries = n(ecoc, "read");
    out.unique_counters = n(esc, "read");
    out.anchors_inserted = n(esc, "inserted");
    out.null_anchors_written = n(esc, "updated");
    if command == Command::Cleanup {
        out.anchors_deleted = n(esc, "deleted");
    } else {
        out.non_anchors_deleted = n(esc, "deleted");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::{Binary, doc};

    fn payload(subtype: u8) -> Bson {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes: vec![subtype, 0, 0],
        })
    }

    fn efc(query: &str) -> Document {
        doc! {"fields": [{"path": "a", "bsonType": "int", "queries": {"queryType": query}}]}
    }

    #[test]
    fn schema_gets_default_state_collections_after_its_fields() {
        let ei = encryption_information("db", "c", &doc! {"fields": []});
        assert_eq!(
            ei,
            doc! {"type": 1, "schema": {"db.c": {
            "fields": [], "escCollection": "enxcol_.c.esc", "ecocCollection": "enxcol_.c.ecoc"}}}
        );
        let named = doc! {"escCollection": "e", "ecocCollection": "o", "fields": []};
        let ei = encryption_information("db", "c", &named);
        assert_eq!(
            ei.get_document("schema")
                .unwrap()
                .get_document("db.c")
                .unwrap(),
            &named
        );
    }

    #[test]
    fn eligible_commands_carry_it_only_with_payloads() {
        let e = efc("equality");
        let plain = doc! {"insert": "c", "documents": [{"a": 1}]};
        assert!(!attaches(Command::Insert, &plain, &e));
        let enc = doc! {"insert": "c", "documents": [{"a": payload(11)}]};
        assert!(attaches(Command::Insert, &enc, &e));
        // A stored value (14) or an unindexed value (16) needs none.
        let stored = doc! {"find": "c", "filter": {"a": {"$eq": payload(14)}}};
        assert!(!attaches(Command::Find, &stored, &e));
        let find = doc! {"find": "c", "filter": {"$and": [{"a": {"$in": [payload(12)]}}]}};
        assert!(attaches(Command::Find, &find, &e));
        assert!(attaches(
            Command::Count,
            &doc! {"count": "c", "query": {"a": payload(13)}},
            &e
        ));
        let plain = doc! {"aggregate": "c", "pipeline": [{"$match": {"a": 1}}], "cursor": {}};
        assert!(!attaches(Command::of_name("aggregate"), &plain, &e));
        let enc =
            doc! {"aggregate": "c", "pipeline": [{"$match": {"a": payload(12)}}], "cursor": {}};
        assert!(attaches(Command::of_name("aggregate"), &enc, &e));
        // findAndModify always carries it; DDL never.
        let fam = doc! {"findAndModify": "c", "query": {"_id": 1}, "remove": true};
        assert!(attaches(Command::of_name("findAndModify"), &fam, &e));
        let create = doc! {"createIndexes": "c", "indexes": []};
        assert!(!attaches(Command::of_name("createIndexes"), &create, &e));
    }

    #[test]
    fn shard_keys_on_encrypted_paths_are_refused() {
        let e = doc! {"fields": [{"path": "rec.ssn", "bsonType": "string"}]};
        for key in [
            doc! {"rec.ssn": 1},
            doc! {"rec": "hashed"},
            doc! {"region": 1, "rec.ssn.x": 1},
        ] {
            let err = check_shard_key("c", &e, Some(&key)).unwrap_err();
            assert!(
                matches!(&err, EngineError::InvalidEncryptedFields { collection, reason }
                    if collection == "c" && reason.contains("rec.ssn")),
                "{err}"
            );
        }
        for key in [
            doc! {"region": 1},
            doc! {"rec.ssnx": 1},
            doc! {"_id": "hashed"},
        ] {
            assert!(check_shard_key("c", &e, Some(&key)).is_ok(), "{key}");
        }
        assert!(check_shard_key("c", &e, None).is_ok());
    }

    #[test]
    fn state_names_taken_by_a_renamed_collection_are_not_reused() {
        let e = efc("equality");
        let none: Vec<String> = Vec::new();
        assert_eq!(with_free_state_names("t", e.clone(), &none).unwrap(), e);
        // `t` was renamed away and kept its state collections' names.
        let taken = vec![
            "enxcol_.t.esc".to_owned(),
            "enxcol_.t.ecoc".to_owned(),
            "enxcol_.t.2.ecoc".to_owned(),
        ];
        let got = with_free_state_names("t", e.clone(), &taken).unwrap();
        assert_eq!(got.get_str("escCollection"), Ok("enxcol_.t.3.esc"));
        assert_eq!(got.get_str("ecocCollection"), Ok("enxcol_.t.3.ecoc"));
        assert_eq!(got.get_array("fields"), e.get_array("fields"));
        assert_eq!(
            state_collections("t", &got),
            ("enxcol_.t.3.esc".to_owned(), "enxcol_.t.3.ecoc".to_owned())
        );
        // Names the caller chose are not replaced.
        let mut named = e;
        named.insert("escCollection", "enxcol_.t.esc");
        named.insert("ecocCollection", "enxcol_.t.ecoc");
        assert!(with_free_state_names("t", named.clone(), &none).is_ok());
        named.insert("escCollection", "enxcol_.x.esc");
        let err = with_free_state_names("t", named, &["enxcol_.x.esc".to_owned()]).unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidEncryptedFields { collection, .. } if collection == "t"),
            "{err}"
        );
    }

    #[test]
    fn writes_always_and_maintenance_by_field_types() {
        let plain = doc! {"delete": "c", "deletes": [{"q": {}, "limit": 1}]};
        assert!(attaches(Command::Delete, &plain, &efc("equality")));
        assert!(attaches(Command::Update, &doc! {}, &efc("equality")));
        assert!(!attaches(Command::Compact, &doc! {}, &efc("equality")));
        assert!(attaches(Command::Compact, &doc! {}, &efc("range")));
        assert!(!attaches(Command::Cleanup, &doc! {}, &efc("range")));
    }
}
