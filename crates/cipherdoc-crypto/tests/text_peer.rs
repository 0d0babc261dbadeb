//! Text search against libmongocrypt itself (pymongocrypt 1.21, set up by
//! `tests/peers/setup.sh`): folding, query-length checks and find payloads,
//! byte for byte; and the committed folding tables against their generator.
//!
//! Without the peers each test prints `skipped: <reason>` and passes, unless
//! `CIPHERDOC_REQUIRE_PEERS=1` (as `.ci/run` sets), where it fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use cipherdoc_crypto::Error;
use cipherdoc_crypto::client_text::encrypt_text_find;
use cipherdoc_crypto::text::fold::{UNICODE_VERSION, fold};
use cipherdoc_crypto::text::{
    CaseSensitivity, DiacriticSensitivity, StringOpts, TextError, TextIndexKind,
};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use common::*;
use serde_json::{Value, json};

/// The value of `var`, or `None` after printing why the test is skipped
/// (a failure when peers are required).
fn peer_var(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CIPHERDOC_REQUIRE_PEERS").as_deref() != Ok("1"),
                "CIPHERDOC_REQUIRE_PEERS=1 but {var} is not set (run crates/cipherdoc-crypto/tests/peers/setup.sh and source its env file)"
            );
            println!(
                "skipped: {var} is not set (run crates/cipherdoc-crypto/tests/peers/setup.sh)"
            );
            None
        }
    }
}

/// A corpus entry: the string and why it is there.
struct Sample {
    why: &'static str,
    value: String,
}

fn s(why: &'static str, value: &str) -> Sample {
    Sample {
        why,
        value: value.to_owned(),
    }
}

/// Hand-picked strings: scripts, combining marks, folds that change the
/// UTF-8 length, and code points at the edges of the tables' Unicode version.
fn handpicked() -> Vec<Sample> {
    vec![
        s("ascii", "Hello, World! ^caret `grave`"),
        s(
            "latin-1",
            "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞß àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ",
        ),
        s(
            "latin extended",
            "ĀĂĄĆĈĊČĎĐĒĔĖĘĚ ǄǅǆǇǈǉ ǕǗǙǛ ǘǚǜ Ǻǻ Ȁȁ ẞ ſ ﬁ ﬀ",
        ),
        s("vietnamese", "Tiếng Việt có dấu: Ở Ừ Ữ ự ỳ"),
        s("greek", "Ελληνικά ΑΒΓΔ ΆΈΉΊΌΎΏ ΐΰ ςσΣ ϐϑϕϖ ϴ Ω"),
        s("greek extended", "ἀἁἂἃἄἅἆἇ ᾈᾉᾼ ῼ ᾳ ῾"),
        s("cyrillic", "Русский ЁЙЎЇ ёйўї Ӂӂ Ѷѷ ҐґЄє"),
        s("armenian georgian", "Հայերեն Ծ ՙ ႠႡ ⴀ"),
        s(
            "combining marks",
            "e\u{301} a\u{308}\u{304} n\u{303} o\u{328}\u{301} \u{20DD} q\u{35C}u",
        ),
        s("only marks", "\u{301}\u{308}^`\u{A8}"),
        s("utf-8 length 2 to 3", "ȺȾⱯⱭⱮⱰ ɐɑɒ"),
        s("utf-8 length 3 to 2 or 1", "ẞ K Å Ω"),
        s("turkish i", "İı Iı"),
        s("cjk compatibility", "\u{F900}\u{F901}\u{2F800}\u{2FA1D}"),
        s("hangul", "한국어 각"),
        s("emoji", "😀 👍🏽 🇫🇷"),
        s(
            "unicode 9 to 13 (folded by libmongocrypt)",
            "\u{1E900}\u{1E921} \u{1C90}\u{1CBF} \u{16E40}",
        ),
        s(
            "unicode 14+ (unfolded)",
            "\u{10570}\u{10595} \u{1C89}\u{1C8A} \u{0897}\u{1E4EC} \u{A7C0}\u{A7D0}",
        ),
        s("unassigned", "\u{E01F0}\u{50000}\u{10FFFD}"),
        s("empty", ""),
    ]
}

/// Every code point of the folding tables, and what they fold to, each
/// after an `x` (so that no string folds to nothing), in strings of 100.
fn table_sweep() -> Vec<Sample> {
    let mut cps: Vec<char> = (0x80..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter(|&c| {
            let cs = fold(
                &c.to_string(),
                CaseSensitivity::Insensitive,
                DiacriticSensitivity::Sensitive,
            );
            let ds = fold(
                &c.to_string(),
                CaseSensitivity::Sensitive,
                DiacriticSensitivity::Insensitive,
            );
            *cs != c.to_string() || *ds != c.to_string()
        })
        .collect();
    // A few neighbours of the tables that must stay as they are.
    cps.extend(['\u{2C2F}', '\u{1E922}', '\u{10FFFF}']);
    cps.chunks(100)
        .map(|chunk| Sample {
            why: "table sweep",
            value: chunk.iter().flat_map(|&c| ['x', c]).collect(),
        })
        .collect()
}

fn opts(kind: TextIndexKind, case: bool, diac: bool, lb: i32, ub: i32) -> Value {
    let mut o = json!({"caseSensitive": case, "diacriticSensitive": diac});
    let lengths = match kind {
        TextIndexKind::Substring => {
            json!({"strMaxLength": 100_000, "strMinQueryLength": lb, "strMaxQueryLength": ub})
        }
        _ => json!({"strMinQueryLength": lb, "strMaxQueryLength": ub}),
    };
    o[kind.as_str()] = lengths;
    o
}

/// The substring of libmongocrypt's message for each of our query errors.
fn libmongocrypt_message(e: &Error) -> &'static str {
    match e {
        Error::Text(TextError::EmptyQuery { .. }) => "cannot be empty",
        Error::Text(TextError::QueryTooLong { .. }) => "longer than the maximum query length",
        Error::Text(TextError::QueryTooShort { .. }) => "shorter than the minimum query length",
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn find_payloads_match_libmongocrypt() {
    let (Some(py), Some(script)) = (
        peer_var("CIPHERDOC_TEST_MONGOCRYPT_PYTHON"),
        peer_var("CIPHERDOC_TEST_MONGOCRYPT_SCRIPT"),
    ) else {
        return;
    };
    let key_doc = json(&format!("keys/keys/{KEYABC}-local-document.json"));
    let key = data_key(KEYABC);
    let tokens = IndexKeyTokens::new(key_id(KEYABC), &key);

    // (sample, kind, caseSensitive, diacriticSensitive, lb, ub)
    let mut cases = Vec::new();
    let samples: Vec<Sample> = handpicked().into_iter().chain(table_sweep()).collect();
    for i in 0..samples.len() {
        for (case, diac) in [(false, true), (true, false), (false, false), (true, true)] {
            cases.push((i, TextIndexKind::Prefix, case, diac, 1, 100_000));
        }
        // Suffix and substring queries, and the length checks after folding.
        cases.push((i, TextIndexKind::Suffix, false, false, 1, 100_000));
        cases.push((i, TextIndexKind::Substring, false, false, 1, 100_000));
        cases.push((i, TextIndexKind::Prefix, false, false, 3, 12));
    }
    let request = json!({
        "key_document": key_doc,
        "cases": cases.iter().map(|&(i, kind, case, diac, lb, ub)| json!({
            "value": samples[i].value,
            "query_type": kind.as_str(),
            "contention": 0,
            "string_opts": opts(kind, case, diac, lb, ub),
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(&py)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {py}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the peer script failed");
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), cases.len());

    let (mut blobs, mut errors) = (0, 0);
    for (&(i, kind, case, diac, lb, ub), answer) in cases.iter().zip(&answers) {
        let smp = &samples[i];
        let o = StringOpts::from_document(&ejson_doc(opts(kind, case, diac, lb, ub))).unwrap();
        let ours = encrypt_text_find(&smp.value, o.index(), kind.into(), &tokens, 0);
        let label = || {
            let cps: Vec<String> = smp
                .value
                .chars()
                .take(12)
                .map(|c| format!("{:04X}", c as u32))
                .collect();
            format!(
                "{} ({}…), {kind}, caseSensitive {case}, diacriticSensitive {diac}, lengths {lb}..={ub}",
                smp.why,
                cps.join(" ")
            )
        };
        match (ours, answer.get("blob"), answer.get("error")) {
            (Ok(p), Some(b), None) => {
                assert_eq!(hex::encode(p.encode()), b.as_str().unwrap(), "{}", label());
                blobs += 1;
            }
            (Err(e), None, Some(m)) => {
                let m = m.as_str().unwrap();
                assert!(
                    m.contains(libmongocrypt_message(&e)),
                    "{}: ours {e}, libmongocrypt {m}",
                    label()
                );
                errors += 1;
            }
            (ours, _, _) => panic!(
                "{}: ours {:?}, libmongocrypt {answer}",
                label(),
                ours.map(|_| "a payload")
            ),
        }
    }
    println!("{blobs} payloads and {errors} errors identical to libmongocrypt's");
    assert!(
        blobs > 300 && errors > 10,
        "{blobs} payloads, {errors} errors"
    );
}

#[test]
fn fold_tables_match_their_generator() {
    let Some(ucd) = peer_var("CIPHERDOC_TEST_UCD_DIR") else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tools/gen-fold-tables.mjs"))
        .arg(&ucd)
        .output()
        .expect("node runs the generator");
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root.join("src/text/fold_tables.rs")).unwrap();
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "src/text/fold_tables.rs differs from its generator's output; regenerate it (see its header)"
    );
    assert_eq!(UNICODE_VERSION, "13.0.0");
}
