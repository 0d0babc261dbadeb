//! Fuzz targets for what reads attacker-controlled bytes, and a runner that
//! works on the stable toolchain.
//!
//! Whoever can write to the database, or answer in a KMS's place, chooses
//! the bytes these parsers read: stored documents (the engine's document
//! and value codec), the JSON key vault, KMIP TTLV, and the JSON (or XML)
//! answers of AWS, Azure, GCP and token endpoints. Each target is a plain
//! `fn(&[u8]) -> Result<(), String>`: `Err` is a broken property (a
//! round trip that does not hold, a token kept past the cap), a panic is a
//! crash. Either is a finding.
//!
//! Only the stable toolchain is available here and in CI, so `cargo fuzz`
//! (libFuzzer needs nightly's sanitizer flags) is out. [`fuzz`] is a small
//! mutation fuzzer instead: each iteration takes a seed input or a previous
//! input and applies random mutations (bit flips, byte and integer edits,
//! insertions, deletions, truncations, splices of other inputs, "interesting"
//! values), or draws a fresh random buffer; panics are caught and reported
//! with the input in hex and the RNG seed to replay it. It is deterministic
//! for a given seed. `tests/fuzz.rs` runs every target for a bounded number
//! of iterations (`CIPHERDOC_FUZZ_ITERS`, `CIPHERDOC_FUZZ_SEED`) as part of
//! `cargo test`; `cargo run -p cipherdoc-fuzz --release -- <target> <iters>`
//! runs longer. The targets take byte slices, so a libFuzzer harness can
//! wrap them unchanged where nightly exists.

use std::cmp::Ordering;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bson::{Bson, Document, RawDocument};
use cipherdoc_engine::value;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name (`engine_document`, `kmip_ttlv`, ...).
    pub name: &'static str,
    /// The property check; `Err` or a panic is a finding.
    pub run: fn(&[u8]) -> Result<(), String>,
    /// Valid inputs to start mutating from.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// The longest input tried.
    pub max_len: usize,
}

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "engine_document",
            run: engine_document,
            seeds: seeds::engine_document,
            // Bounded so that nesting stays shallow: the depth limit of
            // stored documents is tested on its own.
            max_len: 1024,
        },
        Target {
            name: "json_key_vault",
            run: json_key_vault,
            seeds: seeds::json_key_vault,
            max_len: 4096,
        },
        Target {
            name: "kmip_ttlv",
            run: cipherdoc_kms::fuzzing::kmip_ttlv,
            seeds: seeds::kmip_ttlv,
            max_len: 2048,
        },
        Target {
            name: "token_response",
            run: cipherdoc_kms::fuzzing::token_response,
            seeds: seeds::token_response,
            max_len: 1024,
        },
        Target {
            name: "kms_json",
            run: cipherdoc_kms::fuzzing::kms_json,
            seeds: seeds::kms_json,
            max_len: 2048,
        },
    ]
}

/// The engine's decoding of a stored document, then what it computes from
/// one: index keys (order-preserving encoding), comparisons, tags, filters.
pub fn engine_document(data: &[u8]) -> Result<(), String> {
    let Ok(raw) = RawDocument::from_bytes(data) else {
        return Ok(());
    };
    let Ok(doc) = Document::try_from(raw) else {
        return Ok(());
    };
    let mut bytes = Vec::new();
    doc.to_writer(&mut bytes)
        .map_err(|e| format!("re-encoding: {e}"))?;
    let again = Document::from_reader(bytes.as_slice()).map_err(|e| format!("re-decoding: {e}"))?;
    if again != doc && !has_nan(&Bson::Document(doc.clone())) {
        return Err("decode(encode(doc)) differs from doc".into());
    }
    let values: Vec<&Bson> = doc.values().collect();
    for a in &values {
        let ka = value::encode_key(a);
        if !value::is_nan(a) && value::compare(a, a) != Ordering::Equal {
            return Err("a value does not compare equal to itself".into());
        }
        for b in &values {
            if has_decimal(a) || has_decimal(b) {
                continue; // compared through f64: documented caveat
            }
            let kb = value::encode_key(b);
            if ka.cmp(&kb) != value::compare(a, b) {
                return Err(format!(
                    "key order {:?} differs from compare order {:?}",
                    ka.cmp(&kb),
                    value::compare(a, b)
                ));
            }
        }
    }
    let _ = cipherdoc_engine::Filter::parse(&doc);
    if let Some((k, v)) = doc.iter().next() {
        let _ = cipherdoc_engine::Filter::eq(k.clone(), v.clone()).matches(&doc);
    }
    Ok(())
}

fn has_decimal(v: &Bson) -> bool {
    match v {
        Bson::Decimal128(_) => true,
        Bson::Array(a) => a.iter().any(has_decimal),
        Bson::Document(d) => d.values().any(has_decimal),
        _ => false,
    }
}

fn has_nan(v: &Bson) -> bool {
    match v {
        Bson::Double(f) => f.is_nan(),
        Bson::Array(a) => a.iter().any(has_nan),
        Bson::Document(d) => d.values().any(has_nan),
        _ => false,
    }
}

/// A JSON key vault file, then every check a key document meets before use:
/// its id and alt names, the strict key-document parse, the `masterKey`
/// parse (regions, hosts).
pub fn json_key_vault(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let Ok(docs) = cipherdoc::key_vault::parse_json_key_vault(text) else {
        return Ok(());
    };
    for d in &docs {
        let _ = cipherdoc::key_vault::key_id_of(d);
        let _ = cipherdoc::key_vault::alt_names_of(d);
        if let Ok(k) = cipherdoc_crypto::KeyDocument::from_document(d)
            && let Ok(mk) = cipherdoc_kms::MasterKey::from_document(&k.master_key)
        {
            // What parses must print back to something that parses the same.
            let again = cipherdoc_kms::MasterKey::from_document(&mk.to_document())
                .map_err(|e| format!("masterKey does not re-parse: {e}"))?;
            if again != mk {
                return Err("masterKey round trip differs".into());
            }
        }
        if let Some(Bson::Document(m)) = d.get("masterKey") {
            let _ = cipherdoc_kms::MasterKey::from_document(m);
        }
    }
    Ok(())
}

/// xorshift64*: small, seedable, good enough to drive mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n.max(1) as u64)).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }
}

const INTERESTING: &[&[u8]] = &[
    &[0],
    &[0xFF],
    &[0x7F],
    &[0x80],
    &[0xFF, 0xFF, 0xFF, 0xFF],
    &[0xFF, 0xFF, 0xFF, 0x7F],
    &[0, 0, 0, 0x80],
    &[1, 0, 0, 0],
    &[0xFF; 8],
    b"{",
    b"}",
    b"[",
    b"\"",
    b"\\u0000",
    b"1e999999",
    b"-0",
    b"18446744073709551615",
    b"$binary",
    b"$numberLong",
];

/// One mutation of `input` (or a fresh random buffer).
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    if rng.below(16) == 0 {
        let n = rng.below(max_len.min(256) + 1);
        return (0..n).map(|_| rng.byte()).collect();
    }
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => out.truncate(rng.below(len)),
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a) + 1;
                    let i = rng.below(len + 1);
                    out.splice(i..i, other[a..b].iter().copied());
                }
            }
            6 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(len + 1);
                if rng.below(2) == 0 || i + v.len() > len {
                    out.splice(i..i, v.iter().copied());
                } else {
                    out[i..i + v.len()].copy_from_slice(v);
                }
            }
            _ if len >= 4 => {
                // A little-endian length field nudged by a small amount.
                let i = rng.below(len - 3);
                let mut w = [0u8; 4];
                w.copy_from_slice(&out[i..i + 4]);
                let delta = i32::try_from(rng.below(17)).unwrap_or(0) - 8;
                let n = i32::from_le_bytes(w).wrapping_add(delta);
                out[i..i + 4].copy_from_slice(&n.to_le_bytes());
            }
            _ => {}
        }
    }
    out.truncate(max_len);
    out
}

/// What a run found: the input, in hex, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The target.
    pub target: &'static str,
    /// The input, hex-encoded.
    pub input_hex: String,
    /// The broken property or the panic message.
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz target {}: {} (input hex: {})",
            self.target, self.what, self.input_hex
        )
    }
}

/// Runs `target` on its seeds and then `iterations` mutated inputs;
/// returns the first finding. Deterministic for a given `seed`.
pub fn fuzz(target: &Target, iterations: u64, seed: u64) -> Result<u64, Finding> {
    let mut rng = Rng::new(seed ^ name_hash(target.name));
    let mut corpus = (target.seeds)();
    let check = |input: &[u8]| -> Result<(), Finding> {
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
        let what = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(p) => format!(
                "panic: {}",
                p.downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| p.downcast_ref::<&str>().copied())
                    .unwrap_or("(not a string)")
            ),
        };
        Err(Finding {
            target: target.name,
            input_hex: hex::encode(input),
            what,
        })
    };
    for s in &corpus {
        check(s)?;
    }
    let mut runs = corpus.len() as u64;
    for _ in 0..iterations {
        let base = if corpus.is_empty() {
            Vec::new()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        let input = mutate(&mut rng, &base, &corpus, target.max_len);
        check(&input)?;
        runs += 1;
        // Keep some mutants as new bases, so that mutations accumulate.
        if rng.below(8) == 0 && corpus.len() < 256 {
            corpus.push(input);
        }
    }
    Ok(runs)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Seed inputs: valid examples of each format.
pub mod seeds {
    use bson::spec::BinarySubtype;
    use bson::{Binary, Bson, doc};
    use cipherdoc_kms::kmip::ttlv::{Item, tag};

    fn bytes(d: &bson::Document) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing a document built here to a Vec cannot fail.
        let _ = d.to_writer(&mut out);
        out
    }

    /// Stored documents of the shapes the engine keeps.
    pub fn engine_document() -> Vec<Vec<u8>> {
        let blob = |sub: u8, n: usize| Binary {
            subtype: BinarySubtype::Encrypted,
            bytes: std::iter::once(sub)
                .chain(std::iter::repeat_n(7, n))
                .collect(),
        };
        vec![
            bytes(&doc! {"_id": 1, "a": "x", "b": 2.5, "c": [1, "two", {"d": null}], "e": true}),
            bytes(&doc! {
                "_id": bson::oid::ObjectId::from_bytes([1; 12]),
                "ssn": Bson::Binary(blob(14, 80)),
                "__safeContent__": [Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: vec![3; 32] })],
                "n": {"deep": {"deeper": [1_i64, i64::MIN, f64::NAN, -0.0]}},
            }),
            bytes(
                &doc! {"k": bson::DateTime::from_millis(-1), "t": bson::Timestamp { time: 1, increment: 2 }, "r": bson::Regex { pattern: "a".into(), options: "i".into() }},
            ),
        ]
    }

    /// JSON key vault files (canonical extended JSON).
    pub fn json_key_vault() -> Vec<Vec<u8>> {
        let key = |mk: bson::Document| {
            doc! {
                "_id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![4; 16] },
                "keyAltNames": ["a"],
                "keyMaterial": Binary { subtype: BinarySubtype::Generic, bytes: vec![9; 64] },
                "creationDate": bson::DateTime::from_millis(0),
                "updateDate": bson::DateTime::from_millis(0),
                "status": 0,
                "masterKey": mk,
            }
        };
        let docs = [
            key(doc! {"provider": "local"}),
            key(
                doc! {"provider": "aws", "region": "us-east-1", "key": "arn:k", "endpoint": "kms.example:443"},
            ),
            key(
                doc! {"provider": "azure:prod", "keyVaultEndpoint": "v.vault.azure.net", "keyName": "k", "keyVersion": "1"},
            ),
            key(
                doc! {"provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k"},
            ),
            key(
                doc! {"provider": "kmip", "keyId": "12", "endpoint": "[::1]:5696", "delegated": true},
            ),
        ];
        let arr: Vec<_> = docs
            .iter()
            .map(|d| Bson::Document(d.clone()).into_canonical_extjson())
            .collect();
        vec![
            bson::Bson::Array(vec![])
                .into_canonical_extjson()
                .to_string()
                .into_bytes(),
            serde_json_text(&arr),
        ]
    }

    fn serde_json_text(items: &[impl std::fmt::Display]) -> Vec<u8> {
        let parts: Vec<String> = items.iter().map(ToString::to_string).collect();
        format!("[{}]", parts.join(",")).into_bytes()
    }

    /// KMIP response messages.
    pub fn kmip_ttlv() -> Vec<Vec<u8>> {
        let response = |status: u32, payload: Vec<Item>| {
            Item::structure(
                tag::RESPONSE_MESSAGE,
                vec![
                    Item::structure(tag::RESPONSE_HEADER, vec![Item::int(tag::BATCH_COUNT, 1)]),
                    Item::structure(
                        tag::BATCH_ITEM,
                        vec![
                            Item::enumeration(tag::RESULT_STATUS, status),
                            Item::text(tag::RESULT_MESSAGE, "m"),
                            Item::structure(tag::RESPONSE_PAYLOAD, payload),
                        ],
                    ),
                ],
            )
            .encode()
        };
        vec![
            response(0, vec![Item::text(tag::UNIQUE_IDENTIFIER, "42")]),
            response(
                0,
                vec![
                    Item::enumeration(tag::OBJECT_TYPE, 7),
                    Item::structure(
                        tag::SECRET_DATA,
                        vec![Item::structure(
                            tag::KEY_BLOCK,
                            vec![Item::structure(
                                tag::KEY_VALUE,
                                vec![Item::bytes(tag::KEY_MATERIAL, &[5; 96])],
                            )],
                        )],
                    ),
                ],
            ),
            response(1, vec![Item::boolean(tag::RANDOM_IV, true)]),
        ]
    }

    fn with_status(status: u16, body: &str) -> Vec<u8> {
        // The targets read the status as 100 + (first two bytes mod 500).
        let mut out = (status - 100).to_be_bytes().to_vec();
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// OAuth token endpoint answers.
    pub fn token_response() -> Vec<Vec<u8>> {
        vec![
            with_status(
                200,
                r#"{"access_token":"t","expires_in":3599,"token_type":"Bearer"}"#,
            ),
            with_status(200, r#"{"access_token":"t","expires_in":"3600"}"#),
            with_status(
                200,
                r#"{"access_token":"t","expires_in":18446744073709551615}"#,
            ),
            with_status(
                400,
                r#"{"error":"invalid_client","error_description":"bad"}"#,
            ),
            with_status(503, "not json"),
        ]
    }

    /// AWS, Azure and GCP answers, successes and errors.
    pub fn kms_json() -> Vec<Vec<u8>> {
        vec![
            with_status(200, r#"{"Plaintext":"AAECAw==","KeyId":"arn:k"}"#),
            with_status(200, r#"{"CiphertextBlob":"AAECAw=="}"#),
            with_status(200, r#"{"kid":"https://v/keys/k/1","value":"AAECAw"}"#),
            with_status(200, r#"{"plaintext":"AAECAw==","ciphertext":"AAEC"}"#),
            with_status(
                400,
                r#"{"__type":"com.amazon#NotFoundException","message":"m"}"#,
            ),
            with_status(
                403,
                "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>m</Message></Error></ErrorResponse>",
            ),
            with_status(
                403,
                r#"{"error":{"code":"Forbidden","message":"m","innererror":{"code":"KeyDisabled"}}}"#,
            ),
            with_status(
                400,
                r#"{"error":{"code":400,"message":"m","status":"FAILED_PRECONDITION"}}"#,
            ),
        ]
    }
}
