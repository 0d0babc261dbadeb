//! Command conformance: what the MongoDB engine sends (recorded at the wire
//! by a proxy in front of `cipherdoc serve`) against what the official
//! stack — pymongo with pymongocrypt, i.e. libmongocrypt — sends for the
//! same operations on the same collections with the same data keys —
//! insert, find, count, update, delete, findAndModify, aggregate,
//! create/drop of an encrypted collection, compact, cleanup, and the
//! insert and two-sided query of a range field
//! (`tests/python/conformance.py`, in the venv that
//! `crates/cipherdoc-wire/tests/python/setup.sh` installs): the commands
//! field by field and in order; deterministic parts (find payloads,
//! compaction tokens, `encryptionInformation`) byte for byte, random parts
//! (insert payloads) by structure, their deterministic tokens and by
//! decrypting them. Skipped with the reason when the venv is missing,
//! unless `CIPHERDOC_REQUIRE_PEERS=1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines
)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use cipherdoc_crypto::client::{
    UserKey, decrypt_blob, encrypt_equality_find, encrypt_equality_insert,
};
use cipherdoc_crypto::client_range::{encrypt_range_expression, encrypt_range_insert};
use cipherdoc_crypto::key::{KeyDocument, LocalMasterKey, unwrap_local};
use cipherdoc_crypto::payload::InsertUpdatePayloadV2;
use cipherdoc_crypto::range::{RangeIndex, RangeValue};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};
use cipherdoc_engine::qe_server::CompactionTokens;
use cipherdoc_engine::{CreateCollectionOptions, Engine, Filter, FindOptions};
use cipherdoc_wire::client::RecordingProxy;

const SSN: &str = "123-45-6789";

/// What a driver adds to every command whatever the operation (sessions,
/// cluster time, the database): not part of the comparison.
const DRIVER_FIELDS: [&str; 8] = [
    "lsid",
    "$db",
    "$clusterTime",
    "txnNumber",
    "$readPreference",
    "autocommit",
    "startTransaction",
    "writeConcern",
];

fn python() -> Option<PathBuf> {
    let dir = std::env::var_os("CIPHERDOC_WIRE_PEERS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wire-peers"),
        PathBuf::from,
    );
    let py = dir.join("venv/bin/python");
    if py.exists() {
        return Some(py);
    }
    let why = format!(
        "no pymongo + pymongocrypt venv at {} (run crates/cipherdoc-wire/tests/python/setup.sh)",
        py.display()
    );
    assert!(
        std::env::var("CIPHERDOC_REQUIRE_PEERS").as_deref() != Ok("1"),
        "CIPHERDOC_REQUIRE_PEERS=1 but {why}"
    );
    println!("skipped: {why}");
    None
}

fn enc(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Encrypted,
        bytes,
    })
}

/// A command without [`DRIVER_FIELDS`], and with the write's array
/// (`documents`, `updates`, `deletes`) last: pymongo sends it as an
/// `OP_MSG` document sequence (which the recording folds in after the
/// body), the Rust driver's `run_command` inside the body; which one is a
/// transport choice that the server reads identically.
fn strip(mut cmd: Document) -> Document {
    for f in DRIVER_FIELDS {
        cmd.remove(f);
    }
    for f in ["documents", "updates", "deletes"] {
        if let Some(v) = cmd.remove(f) {
            cmd.insert(f, v);
        }
    }
    cmd
}

/// The recorded commands named `name` on `target` (the command's value).
fn named<'a>(cmds: &'a [Document], name: &str, target: &str) -> Vec<&'a Document> {
    cmds.iter()
        .filter(|c| {
            c.keys().next().map(String::as_str) == Some(name) && c.get_str(name) == Ok(target)
        })
        .collect()
}

fn one(cmds: &[Document], name: &str, target: &str, who: &str) -> Document {
    let found = named(cmds, name, target);
    assert_eq!(found.len(), 1, "{who}: {name} {target}: {found:?}");
    strip(found[0].clone())
}

fn keys(d: &Document) -> Vec<&str> {
    d.keys().map(String::as_str).collect()
}

fn bytes(v: &Bson) -> Vec<u8> {
    bson::to_vec(&doc! {"v": v.clone()}).unwrap()
}

/// Two insert payloads of the same value with the same key and contention
/// factor: the same fields in the same order, the deterministic tokens
/// equal, the random parts of equal length, both decrypting to `want`.
fn same_insert_payload(a: &Bson, b: &Bson, keys_by_id: &HashMap<KeyId, DataKey>, want: &Bson) {
    let (Bson::Binary(a), Bson::Binary(b)) = (a, b) else {
        panic!("insert payloads must be binaries: {a:?} / {b:?}")
    };
    assert_eq!(a.subtype, BinarySubtype::Encrypted);
    assert_eq!(b.subtype, BinarySubtype::Encrypted);
    assert_eq!((a.bytes[0], b.bytes[0]), (11, 11));
    let inner = |x: &Binary| bson::Document::from_reader(&x.bytes[1..]).unwrap();
    assert_eq!(keys(&inner(a)), keys(&inner(b)), "insert payload fields");
    let (pa, pb) = (
        InsertUpdatePayloadV2::decode(&a.bytes).unwrap(),
        InsertUpdatePayloadV2::decode(&b.bytes).unwrap(),
    );
    assert_eq!(pa.edc_derived_token, pb.edc_derived_token, "d");
    assert_eq!(pa.esc_derived_token, pb.esc_derived_token, "s");
    assert_eq!(
        pa.server_derived_from_data_token, pb.server_derived_from_data_token,
        "l"
    );
    assert_eq!(pa.server_encryption_token, pb.server_encryption_token, "e");
    assert_eq!(pa.index_key_id, pb.index_key_id, "u");
    assert_eq!(pa.bson_type, pb.bson_type, "t");
    assert_eq!(pa.contention_factor, pb.contention_factor, "k");
    assert_eq!(pa.encrypted_tokens.len(), pb.encrypted_tokens.len(), "p");
    assert_eq!(pa.value.len(), pb.value.len(), "v");
    assert_ne!(pa.value, pb.value, "v is randomized");
    for blob in [&a.bytes, &b.bytes] {
        assert_eq!(decrypt_blob(blob, keys_by_id).unwrap().as_ref(), Some(want));
    }
}

/// Compare two commands field by field in order: `exact` fields byte for
/// byte, `insert_payload_at` (a path into the command) by structure, the
/// rest by name only (values that differ by construction, e.g. `_id`s).
fn compare(ours: &Document, theirs: &Document, exact: &[&str], what: &str) {
    assert_eq!(
        keys(ours),
        keys(theirs),
        "{what}: fields\nours   {ours}\ntheirs {theirs}"
    );
    for f in exact {
        assert_eq!(
            ours.get(*f).map(bytes),
            theirs.get(*f).map(bytes),
            "{what}: {f} byte for byte\nours   {ours}\ntheirs {theirs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_match_pymongo_with_libmongocrypt() {
    let Some(py) = python() else { return };
    let server = common::sqlite_server_with(|c| c);
    let db = common::fresh_name();
    let master = [0x5a_u8; 96];

    // The official stack first, through a proxy of its own.
    let theirs_proxy = RecordingProxy::start(server.clone()).await.unwrap();
    let out = tokio::process::Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/conformance.py"
        ))
        .env(
            "CONF_URI",
            format!("mongodb://{}/?directConnection=true", theirs_proxy.addr),
        )
        .env("CONF_DB", &db)
        .env("CONF_MASTER_KEY", hex(&master))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "conformance.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<&str> = printed.split_whitespace().collect();
    let [key_hex, range_key_hex] = printed.as_slice() else {
        panic!("conformance.py printed {printed:?}")
    };
    let theirs = theirs_proxy.commands().unwrap();

    // The data keys pymongocrypt made, unwrapped with the same master key.
    let direct = common::engine_at(&server, &db).await;
    let unwrap_key = async |hex: &str| -> (KeyId, DataKey) {
        let key_id = KeyId::from_slice(&unhex(hex)).unwrap();
        let key_doc = direct
            .find_one("__keyVault", &Filter::eq("_id", key_id.to_binary()))
            .await
            .unwrap()
            .expect("the key pymongocrypt created");
        let kd = KeyDocument::from_document(&key_doc).unwrap();
        let data_key = unwrap_local(
            &LocalMasterKey::from_slice(&master).unwrap(),
            &kd.key_material,
        )
        .unwrap();
        (key_id, data_key)
    };
    let (key_id, data_key) = unwrap_key(key_hex).await;
    let (range_key_id, range_key) = unwrap_key(range_key_hex).await;
    let tokens = IndexKeyTokens::new(key_id, &data_key);
    let range_tokens = IndexKeyTokens::new(range_key_id, &range_key);
    let keys_by_id = HashMap::from([
        (key_id, data_key.clone()),
        (range_key_id, range_key.clone()),
    ]);
    let insert = || {
        enc(encrypt_equality_insert(
            &Bson::String(SSN.into()),
            &tokens,
            UserKey {
                id: key_id,
                key: &data_key,
            },
            0,
            &mut OsRandom,
        )
        .unwrap()
        .encode())
    };
    let find = enc(encrypt_equality_find(&Bson::String(SSN.into()), &tokens, 0)
        .unwrap()
        .encode());
    let efc = doc! {"fields": [{"path": "ssn", "bsonType": "string", "keyId": key_id.to_binary(),
    "queries": {"queryType": "equality", "contention": 0_i32}}]};

    // The engine, through a proxy of its own.
    let ours_proxy = RecordingProxy::start(server.clone()).await.unwrap();
    let e = cipherdoc_mongodb::MongoEngine::connect(
        &format!("mongodb://{}/?directConnection=true", ours_proxy.addr),
        &db,
    )
    .await
    .unwrap();
    e.create_collection(
        "created",
        CreateCollectionOptions {
            encrypted_fields: Some(efc.clone()),
        },
    )
    .await
    .unwrap();
    assert!(e.drop_collection("created").await.unwrap());
    e.insert_one("c", doc! {"_id": 1, "ssn": insert()})
        .await
        .unwrap();
    let found = e
        .find(
            "c",
            &Filter::eq("ssn", find.clone()),
            &FindOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        e.count("c", &Filter::eq("ssn", find.clone()))
            .await
            .unwrap(),
        1
    );
    assert!(
        e.replace_one("c", &Bson::Int32(1), doc! {"ssn": insert()})
            .await
            .unwrap()
    );
    assert_eq!(e.delete_one("c", &Filter::eq("_id", 1)).await.unwrap(), 1);
    let compaction = CompactionTokens::new().with_field("ssn", tokens.ecoc().clone());
    e.compact("c", &compaction).await.unwrap();
    e.cleanup("c", &compaction).await.unwrap();

    // findAndModify and aggregate, which the Engine trait has no operation
    // for: through run_command_on, as pymongo spells them. The collections
    // pymongo used ("m", "r") are made again, empty, by the engine.
    assert!(e.drop_collection("m").await.unwrap());
    assert!(e.drop_collection("r").await.unwrap());
    e.create_collection(
        "m",
        CreateCollectionOptions {
            encrypted_fields: Some(efc.clone()),
        },
    )
    .await
    .unwrap();
    e.insert_one("m", doc! {"_id": 1, "ssn": insert()})
        .await
        .unwrap();
    let replaced = e
        .run_command_on(
            "m",
            doc! {"findAndModify": "m", "query": {"_id": {"$eq": 1}}, "new": false,
            "update": {"ssn": insert()}, "upsert": false},
        )
        .await
        .unwrap();
    assert_eq!(
        replaced.get_document("value").unwrap().get_i32("_id"),
        Ok(1)
    );
    let aggregated = e
        .run_command_on(
            "m",
            doc! {"aggregate": "m", "pipeline": [{"$match": {"ssn": {"$eq": find.clone()}}}], "cursor": {}},
        )
        .await
        .unwrap();
    assert_eq!(
        aggregated
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .len(),
        1
    );

    // A range field: an insert, and the range query libmongocrypt's
    // encrypt_expression makes (payloadId 0, the first of its process).
    let index = RangeIndex::new(
        RangeValue::Int32(0),
        RangeValue::Int32(1000),
        None,
        2,
        Some(1),
    )
    .unwrap();
    e.create_collection(
        "r",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {"fields": [{"path": "v", "bsonType": "int",
            "keyId": range_key_id.to_binary(), "queries": {"queryType": "range",
            "contention": 0_i32, "sparsity": 2_i32, "trimFactor": 1_i32, "min": 0_i32, "max": 1000_i32}}]}),
        },
    )
    .await
    .unwrap();
    let range_insert = enc(encrypt_range_insert(
        &Bson::Int32(250),
        &index,
        &range_tokens,
        UserKey {
            id: range_key_id,
            key: &range_key,
        },
        0,
        &mut OsRandom,
    )
    .unwrap()
    .encode());
    e.insert_one("r", doc! {"_id": 1, "v": range_insert})
        .await
        .unwrap();
    let expr = encrypt_range_expression(
        &doc! {"$and": [{"v": {"$gte": 200}}, {"v": {"$lt": 300}}]},
        &index,
        &range_tokens,
        0,
        0,
    )
    .unwrap();
    let found = e
        .find("r", &Filter::parse(&expr).unwrap(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let ours = ours_proxy.commands().unwrap();

    // create and drop of an encrypted collection: the same commands in the
    // same order.
    let lifecycle = |cmds: &[Document]| -> Vec<Document> {
        cmds.iter()
            .filter(|c| {
                let name = c.keys().next().map(String::as_str).unwrap_or_default();
                matches!(name, "create" | "createIndexes" | "drop")
                    && c.get_str(name).is_ok_and(|t| t.contains("created"))
            })
            .cloned()
            .map(strip)
            .collect()
    };
    let (ol, tl) = (lifecycle(&ours), lifecycle(&theirs));
    assert_eq!(
        ol.iter()
            .map(|c| c.keys().next().cloned().unwrap_or_default()
                + " "
                + c.get_str(c.keys().next().unwrap()).unwrap_or_default())
            .collect::<Vec<_>>(),
        tl.iter()
            .map(|c| c.keys().next().cloned().unwrap_or_default()
                + " "
                + c.get_str(c.keys().next().unwrap()).unwrap_or_default())
            .collect::<Vec<_>>(),
        "create/drop sequence"
    );
    for (o, t) in ol.iter().zip(&tl) {
        assert_eq!(
            bson::to_vec(o).unwrap(),
            bson::to_vec(t).unwrap(),
            "byte for byte:\nours   {o}\ntheirs {t}"
        );
    }

    // insert: the command's fields in order, encryptionInformation byte for
    // byte, the payload by structure.
    let (o, t) = (
        one(&ours, "insert", "c", "ours"),
        one(&theirs, "insert", "c", "theirs"),
    );
    compare(
        &o,
        &t,
        &["insert", "ordered", "encryptionInformation"],
        "insert",
    );
    let doc_of = |c: &Document| {
        c.get_array("documents").unwrap()[0]
            .as_document()
            .unwrap()
            .clone()
    };
    assert_eq!(keys(&doc_of(&o)), keys(&doc_of(&t)), "inserted document");
    same_insert_payload(
        doc_of(&o).get("ssn").unwrap(),
        doc_of(&t).get("ssn").unwrap(),
        &keys_by_id,
        &Bson::String(SSN.into()),
    );

    // find and count: the find payload is deterministic: byte for byte.
    let pick_on = |cmds: &[Document], name: &str, coll: &str| -> Document {
        let found: Vec<&Document> = named(cmds, name, coll)
            .into_iter()
            .filter(|c| c.contains_key("encryptionInformation"))
            .collect();
        assert_eq!(found.len(), 1, "{name} {coll}: {found:?}");
        strip(found[0].clone())
    };
    let pick = |cmds: &[Document], name: &str| pick_on(cmds, name, "c");
    let (o, t) = (pick(&ours, "find"), pick(&theirs, "find"));
    compare(&o, &t, &["find", "filter", "encryptionInformation"], "find");
    let (o, t) = (pick(&ours, "count"), pick(&theirs, "count"));
    compare(
        &o,
        &t,
        &["count", "query", "encryptionInformation"],
        "count",
    );

    // update: a replacement carrying an insert payload.
    let (o, t) = (
        one(&ours, "update", "c", "ours"),
        one(&theirs, "update", "c", "theirs"),
    );
    compare(
        &o,
        &t,
        &["update", "ordered", "encryptionInformation"],
        "update",
    );
    let stmt = |c: &Document| {
        c.get_array("updates").unwrap()[0]
            .as_document()
            .unwrap()
            .clone()
    };
    let (os, ts) = (stmt(&o), stmt(&t));
    assert_eq!(keys(&os), keys(&ts), "update statement");
    for f in ["q", "multi", "upsert"] {
        assert_eq!(os.get(f), ts.get(f), "update statement {f}");
    }
    same_insert_payload(
        os.get_document("u").unwrap().get("ssn").unwrap(),
        ts.get_document("u").unwrap().get("ssn").unwrap(),
        &keys_by_id,
        &Bson::String(SSN.into()),
    );

    // delete: single-document, with encryptionInformation.
    let (o, t) = (
        one(&ours, "delete", "c", "ours"),
        one(&theirs, "delete", "c", "theirs"),
    );
    compare(
        &o,
        &t,
        &["delete", "ordered", "deletes", "encryptionInformation"],
        "delete",
    );

    // findAndModify: always with encryptionInformation; the replacement's
    // payload by structure.
    let (o, t) = (
        one(&ours, "findAndModify", "m", "ours"),
        one(&theirs, "findAndModify", "m", "theirs"),
    );
    compare(
        &o,
        &t,
        &[
            "findAndModify",
            "query",
            "new",
            "upsert",
            "encryptionInformation",
        ],
        "findAndModify",
    );
    same_insert_payload(
        o.get_document("update").unwrap().get("ssn").unwrap(),
        t.get_document("update").unwrap().get("ssn").unwrap(),
        &keys_by_id,
        &Bson::String(SSN.into()),
    );

    // aggregate with a find payload in $match: byte for byte.
    let (o, t) = (
        pick_on(&ours, "aggregate", "m"),
        pick_on(&theirs, "aggregate", "m"),
    );
    compare(
        &o,
        &t,
        &["aggregate", "pipeline", "cursor", "encryptionInformation"],
        "aggregate",
    );

    // The range field: the insert payload by structure, its edges' tokens
    // equal; the find's filter (full payload and stub) byte for byte.
    let (o, t) = (
        one(&ours, "insert", "r", "ours"),
        one(&theirs, "insert", "r", "theirs"),
    );
    compare(
        &o,
        &t,
        &["insert", "ordered", "encryptionInformation"],
        "range insert",
    );
    let (ov, tv) = (
        doc_of(&o).get("v").cloned().unwrap(),
        doc_of(&t).get("v").cloned().unwrap(),
    );
    same_insert_payload(&ov, &tv, &keys_by_id, &Bson::Int32(250));
    let decode = |v: &Bson| match v {
        Bson::Binary(b) => InsertUpdatePayloadV2::decode(&b.bytes).unwrap(),
        other => panic!("{other}"),
    };
    let (op, tp) = (decode(&ov), decode(&tv));
    let (og, tg) = (
        op.edge_token_sets.as_ref().unwrap(),
        tp.edge_token_sets.as_ref().unwrap(),
    );
    assert_eq!(og.len(), tg.len(), "edges");
    for (a, b) in og.iter().zip(tg) {
        assert_eq!(a.edc_derived_token, b.edc_derived_token, "edge d");
        assert_eq!(a.esc_derived_token, b.esc_derived_token, "edge s");
        assert_eq!(
            a.server_derived_from_data_token, b.server_derived_from_data_token,
            "edge l"
        );
        assert_eq!(a.encrypted_tokens.len(), b.encrypted_tokens.len(), "edge p");
    }
    assert_eq!(
        (
            op.sparsity,
            op.precision,
            op.trim_factor,
            &op.index_min,
            &op.index_max
        ),
        (
            tp.sparsity,
            tp.precision,
            tp.trim_factor,
            &tp.index_min,
            &tp.index_max
        ),
        "sp, pn, tf, mn, mx"
    );
    let (o, t) = (pick_on(&ours, "find", "r"), pick_on(&theirs, "find", "r"));
    compare(
        &o,
        &t,
        &["find", "filter", "encryptionInformation"],
        "range find",
    );

    // compact and cleanup: the tokens are deterministic: byte for byte.
    for name in [
        "compactStructuredEncryptionData",
        "cleanupStructuredEncryptionData",
    ] {
        let (o, t) = (
            one(&ours, name, "c", "ours"),
            one(&theirs, name, "c", "theirs"),
        );
        assert_eq!(
            bson::to_vec(&o).unwrap(),
            bson::to_vec(&t).unwrap(),
            "{name}:\nours   {o}\ntheirs {t}"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
