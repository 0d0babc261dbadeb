//! The standalone `cipherdoc` command, run as a user would run it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let ws = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = ws.run(&[
            "key",
            "generate-master",
            "--out",
            ws.master().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn master(&self) -> PathBuf {
        self.path("master.key")
    }

    fn vault(&self) -> PathBuf {
        self.path("vault.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cipherdoc"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn keyed(&self, cmd: &[&str], rest: &[&str]) -> Output {
        let vault = self.vault();
        let master = self.master();
        let mut args: Vec<&str> = cmd.to_vec();
        args.extend([
            "--vault",
            vault.to_str().unwrap(),
            "--master-key",
            master.to_str().unwrap(),
        ]);
        args.extend(rest);
        self.run(&args)
    }

    fn ok(&self, cmd: &[&str], rest: &[&str]) -> String {
        let out = self.keyed(cmd, rest);
        assert!(
            out.status.success(),
            "{cmd:?} {rest:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Fails with exactly one line on stderr; returns it.
    fn fails(&self, cmd: &[&str], rest: &[&str]) -> String {
        let out = self.keyed(cmd, rest);
        assert!(!out.status.success(), "{cmd:?} {rest:?} should fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line expected: {err}"
        );
        err.trim().to_owned()
    }
}

fn canonical(json: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    bson::Bson::try_from(v).unwrap().into_canonical_extjson()
}

const EQUALITY_VALUES: &[&str] = &[
    r#""123-45-6789""#,
    r#"{"$numberInt": "-7"}"#,
    r#"{"$numberLong": "9007199254740993"}"#,
    r"true",
    r#"{"$date": {"$numberLong": "-62135596800000"}}"#,
    r#"{"$timestamp": {"t": 5, "i": 6}}"#,
    r#"{"$oid": "0123456789abcdef01234567"}"#,
    r#"{"$binary": {"base64": "AQID", "subType": "00"}}"#,
    r#"{"$binary": {"base64": "EjRWeBI0mHYSNBI0VniQEg==", "subType": "04"}}"#,
    r#"{"$regularExpression": {"pattern": "^a.*", "options": "i"}}"#,
    r#"{"$code": "function() { return 1; }"}"#,
    r#"{"$symbol": "sym"}"#,
    r#"{"$dbPointer": {"$ref": "db.coll", "$id": {"$oid": "0123456789abcdef01234567"}}}"#,
];

const UNINDEXED_ONLY_VALUES: &[&str] = &[
    r#"{"$numberDouble": "-0.0"}"#,
    r#"{"$numberDouble": "1.5"}"#,
    r#"{"$numberDecimal": "1.2300E+5"}"#,
    r#"{"a": {"$numberInt": "1"}, "b": ["x", {"$numberLong": "2"}]}"#,
    r#"[{"$numberInt": "1"}, "two"]"#,
    r#"{"$code": "f(x)", "$scope": {"x": {"$numberInt": "1"}}}"#,
];

#[test]
fn every_allowed_type_round_trips_with_its_bson_type() {
    let ws = Workspace::new();
    let id = ws.ok(&["key", "create"], &["--alt-name", "k"]);
    assert!(id.contains("\"subType\":\"04\""), "{id}");
    for value in EQUALITY_VALUES.iter().chain(UNINDEXED_ONLY_VALUES) {
        let mut algorithms = vec!["unindexed", "random"];
        if EQUALITY_VALUES.contains(value) {
            algorithms.extend(["indexed"]);
        }
        for alg in algorithms {
            let blob = ws.ok(
                &["encrypt"],
                &["--key-id", &id, "--algorithm", alg, "--value", value],
            );
            assert!(blob.contains("\"subType\":\"06\""), "{blob}");
            let back = ws.ok(&["decrypt"], &[&blob]);
            assert_eq!(canonical(&back), canonical(value), "{alg} {value}");
        }
    }
}

#[test]
fn deterministic_is_deterministic_and_find_payloads_are_not_decryptable() {
    let ws = Workspace::new();
    ws.ok(&["key", "create"], &["--alt-name", "k"]);
    let a = ws.ok(
        &["encrypt"],
        &[
            "--alt-name",
            "k",
            "--algorithm",
            "deterministic",
            "--value",
            "\"x\"",
        ],
    );
    let b = ws.ok(
        &["encrypt"],
        &[
            "--alt-name",
            "k",
            "--algorithm",
            "deterministic",
            "--value",
            "\"x\"",
        ],
    );
    assert_eq!(a, b);
    let find = ws.ok(
        &["encrypt"],
        &[
            "--alt-name",
            "k",
            "--algorithm",
            "indexed",
            "--query-type",
            "equality",
            "--contention",
            "0",
            "--value",
            "\"x\"",
        ],
    );
    let inspect = ws.run(&["inspect", &find]);
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("Fle2FindEqualityPayloadV2"));
    let err = ws.fails(&["decrypt"], &[&find]);
    assert!(err.contains("carries no ciphertext"), "{err}");
}

#[test]
fn inspect_needs_no_keys_and_accepts_base64() {
    let ws = Workspace::new();
    let id = ws.ok(&["key", "create"], &[]);
    let blob = ws.ok(
        &["encrypt"],
        &[
            "--key-id",
            &id,
            "--algorithm",
            "unindexed",
            "--value",
            "\"v\"",
        ],
    );
    let b64 = serde_json::from_str::<serde_json::Value>(&blob).unwrap()["$binary"]["base64"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = ws.run(&["inspect", &b64]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Fle2UnindexedEncryptedValueV2"), "{text}");
    assert!(text.contains("\"bsonType\":\"String\""), "{text}");
}

#[test]
fn bad_input_is_one_clear_line() {
    let ws = Workspace::new();
    let id = ws.ok(&["key", "create"], &["--alt-name", "k"]);
    let blob = ws.ok(
        &["encrypt"],
        &[
            "--key-id",
            &id,
            "--algorithm",
            "random",
            "--value",
            "\"secret\"",
        ],
    );

    // A master key of the wrong length.
    std::fs::write(ws.master(), [0u8; 50]).unwrap();
    let err = ws.fails(&["decrypt"], &[&blob]);
    assert!(
        err.contains("holds 50 bytes") && err.contains("exactly 96 bytes"),
        "{err}"
    );
    // A different (right-length) master key cannot unwrap the data key.
    std::fs::write(ws.master(), [7u8; 96]).unwrap();
    let err = ws.fails(&["decrypt"], &[&blob]);
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn unknown_keys_other_subtypes_and_changed_bytes() {
    let ws = Workspace::new();
    let id = ws.ok(&["key", "create"], &["--alt-name", "k"]);
    let err = ws.fails(
        &["encrypt"],
        &[
            "--alt-name",
            "nope",
            "--algorithm",
            "random",
            "--value",
            "1",
        ],
    );
    assert!(err.contains("no data key with keyAltName 'nope'"), "{err}");
    let err = ws.fails(
        &["encrypt"],
        &[
            "--key-id",
            "00000000-0000-4000-8000-000000000000",
            "--algorithm",
            "random",
            "--value",
            "1",
        ],
    );
    assert!(
        err.contains("no data key with id 00000000-0000-4000-8000-000000000000"),
        "{err}"
    );

    // A binary of another subtype, and an encrypted blob with an unknown first byte.
    let err = ws.fails(
        &["decrypt"],
        &[r#"{"$binary": {"base64": "AQID", "subType": "00"}}"#],
    );
    assert!(err.contains("binary subtype 6"), "{err}");
    let err = ws.fails(&["decrypt"], &["CAAA"]);
    assert!(err.contains("decode") || err.contains("subtype"), "{err}");

    // One changed byte in the ciphertext: authentication failed.
    for alg in ["random", "unindexed", "indexed", "deterministic"] {
        let blob = ws.ok(
            &["encrypt"],
            &["--key-id", &id, "--algorithm", alg, "--value", "\"abc\""],
        );
        let b64 = serde_json::from_str::<serde_json::Value>(&blob).unwrap()["$binary"]["base64"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        // The ciphertext is the blob's tail, except in an insert payload (a
        // BSON document) where it is the `v` field: flip a byte inside it.
        let at = match bytes.windows(3).position(|w| w == b"\x05v\x00") {
            Some(v) if alg == "indexed" => v + 3 + 4 + 1 + 16 + 20,
            _ => bytes.len() - 1,
        };
        bytes[at] ^= 0x01;
        let changed = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let err = ws.fails(&["decrypt"], &[&changed]);
        assert!(err.contains("authentication failed"), "{alg}: {err}");
    }
}

#[test]
fn a_database_file_can_be_the_vault() {
    let ws = Workspace::new();
    let db = ws.path("keys.db");
    let master = ws.master();
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--vault",
            db.to_str().unwrap(),
            "--master-key",
            master.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    let run = |cmd: &[&str], extra: &[&str]| {
        let mut all: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        all.extend(args(extra));
        let out = ws.run(&all.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    run(&["key", "create"], &["--alt-name", "in-db"]);
    let blob = run(
        &["encrypt"],
        &[
            "--alt-name",
            "in-db",
            "--algorithm",
            "indexed",
            "--value",
            "\"v\"",
        ],
    );
    assert_eq!(run(&["decrypt"], &[&blob]), "\"v\"");
    let raw = std::fs::read(&db).unwrap();
    assert!(raw.starts_with(b"SQLite format 3"));
}

#[test]
fn range_insert_and_query_expression() {
    let ws = Workspace::new();
    let id = ws.ok(&["key", "create"], &["--alt-name", "r"]);
    let range = [
        "--min",
        r#"{"$numberInt": "0"}"#,
        "--max",
        r#"{"$numberInt": "200"}"#,
        "--sparsity",
        "1",
    ];
    let mut args = vec![
        "--key-id",
        id.as_str(),
        "--algorithm",
        "range",
        "--contention",
        "0",
        "--value",
        r#"{"$numberInt": "123"}"#,
    ];
    args.extend(range);
    let blob = ws.ok(&["encrypt"], &args);
    let inspect = ws.run(&["inspect", &blob]);
    let text = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(
        text.contains("Fle2InsertUpdatePayloadV2")
            && !text.contains("\"edges\":{\"$numberLong\":\"0\"}"),
        "{text}"
    );
    assert_eq!(
        canonical(&ws.ok(&["decrypt"], &[&blob])),
        canonical(r#"{"$numberInt": "123"}"#)
    );
    // Out of bounds: refused, and the message does not echo the value.
    let mut args = vec![
        "--key-id",
        id.as_str(),
        "--algorithm",
        "range",
        "--value",
        r#"{"$numberInt": "201"}"#,
    ];
    args.extend(range);
    let err = ws.fails(&["encrypt"], &args);
    assert!(err.contains("[0, 200]"), "{err}");
    // A two-sided query: the expression with a full payload and a stub.
    let mut args = vec![
        "--key-id",
        id.as_str(),
        "--algorithm",
        "range",
        "--query-type",
        "range",
        "--contention",
        "0",
        "--gte",
        r#"{"$numberInt": "10"}"#,
        "--lt",
        r#"{"$numberInt": "20"}"#,
    ];
    args.extend(range);
    let expr = ws.ok(&["encrypt"], &args);
    assert!(
        expr.starts_with(r#"{"$and":[{"v":{"$gte":{"$binary""#),
        "{expr}"
    );
    assert!(expr.contains(r#"{"v":{"$lt":{"$binary""#), "{expr}");
}

#[test]
fn generate_master_never_overwrites() {
    let ws = Workspace::new();
    let out = ws.run(&[
        "key",
        "generate-master",
        "--out",
        ws.master().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read(ws.master()).unwrap().len(), 96);
    let _ = Path::new("");
}

#[test]
fn string_algorithm_makes_text_payloads_and_refuses_out_of_range_queries() {
    let ws = Workspace::new();
    ws.ok(&["key", "create"], &["--alt-name", "k"]);
    let opts = r#"{"caseSensitive": false, "diacriticSensitive": true, "prefix": {"strMinQueryLength": 2, "strMaxQueryLength": 5}}"#;
    let args = |extra: &[&'static str], value: &'static str| {
        let mut a = vec![
            "--alt-name",
            "k",
            "--algorithm",
            "string",
            "--string-opts",
            opts,
            "--contention",
            "0",
            "--value",
            value,
        ];
        a.extend_from_slice(extra);
        a
    };
    let insert = ws.ok(&["encrypt"], &args(&[], "\"Ada Lovelace\""));
    let back = ws.ok(&["decrypt"], &[&insert]);
    assert_eq!(canonical(&back), canonical("\"Ada Lovelace\""));
    let find = ws.ok(&["encrypt"], &args(&["--query-type", "prefix"], "\"ADA\""));
    let inspect = ws.run(&["inspect", &find]);
    assert!(
        String::from_utf8_lossy(&inspect.stdout).contains("Fle2FindTextPayload"),
        "{}",
        String::from_utf8_lossy(&inspect.stdout)
    );
    // A query longer than strMaxQueryLength, and a kind the options lack.
    let err = ws.fails(
        &["encrypt"],
        &args(&["--query-type", "prefix"], "\"Lovelace\""),
    );
    assert!(err.contains("strMaxQueryLength"), "{err}");
    assert!(!err.contains("Lovelace"), "{err}");
    let err = ws.fails(&["encrypt"], &args(&["--query-type", "suffix"], "\"ace\""));
    assert!(err.contains("suffix"), "{err}");
    // The string algorithm needs its options.
    let err = ws.fails(
        &["encrypt"],
        &[
            "--alt-name",
            "k",
            "--algorithm",
            "string",
            "--value",
            "\"x\"",
        ],
    );
    assert!(err.contains("--string-opts"), "{err}");
}
