//! The QE text-search property suite: every engine that plays the QE
//! server role (wrapped in [`QeServer`], or MongoDB's own, as
//! [`serving`] picks) must pass it unchanged.
//!
//! ```ignore
//! async fn fresh() -> SqliteEngine { SqliteEngine::temporary().unwrap() }
//! cipherdoc_engine::qe_server_text_tests!(fresh);
//! ```
//!
//! The tests play the client with `cipherdoc_crypto::client_text` and check
//! the engine against plaintext matching with the field's own folding: for
//! random strings and random queries within the field's lengths, every
//! prefix, suffix, substring and normalized-equality query returns exactly
//! the documents whose folded value starts with, ends with, contains or
//! equals the folded query — at contention 0 and 8, before and after
//! compaction and cleanup, after replacements and deletions.

// A test suite shipped in the library so that other engines can run it;
// failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bson::spec::BinarySubtype;
use bson::{Bson, Document, doc};
use cipherdoc_crypto::client::{UserKey, decrypt_blob, encrypt_equality_find};
use cipherdoc_crypto::client_text::{encrypt_text_find, encrypt_text_insert};
use cipherdoc_crypto::efc::{EncryptedFieldConfig, FieldKey};
use cipherdoc_crypto::payload::IndexedTextEncryptedValue;
use cipherdoc_crypto::text::fold::fold;
use cipherdoc_crypto::text::{
    AffixIndex, CaseSensitivity, DiacriticSensitivity, TextIndex, TextIndexKind, TextQuery,
};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};

#[cfg(doc)]
use super::QeServer;
use super::suite::{enc, is_server_refusal, serving};
use super::{CompactionTokens, QeError};
use crate::contract::Rng;
use crate::{CreateCollectionOptions, EncStrOp, Engine, EngineError, Filter, FindOptions, Tag};

/// Instantiate one `#[tokio::test]` per text-search check. `$make` is an
/// async function producing a fresh, empty engine (not yet wrapped).
#[macro_export]
macro_rules! qe_server_text_tests {
    ($make:expr) => {
        $crate::qe_server_text_tests!(@each $make;
            text_model_cm0, text_model_cm8, text_refusals);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let engine = ($make)().await;
                $crate::qe_server::text_suite::$name(::std::sync::Arc::new(engine)).await;
            }
        )*
    };
}

/// A random seed, printed by the test so that a failure can be replayed
/// with [`Rng::new`] (the contract suite's generator).
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    cipherdoc_crypto::RandomSource::fill(&mut OsRandom, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Letters that fold: case pairs, precomposed diacritics, a combining
/// mark, Greek final sigma, and a character whose folding changes its
/// UTF-8 length (K, the Kelvin sign, folds to `k`).
const ALPHABET: [char; 14] = [
    'a', 'A', 'b', 'B', 'á', 'Á', 'e', 'é', '\u{301}', 'σ', 'Σ', 'ς', 'K', '\u{212A}',
];

fn random_string(rng: &mut Rng, max_len: usize) -> String {
    let n = 1 + rng.below(max_len);
    (0..n)
        .map(|_| ALPHABET[rng.below(ALPHABET.len())])
        .collect()
}

/// A test field: its key and text index.
struct TextField {
    key_id: KeyId,
    tokens: IndexKeyTokens,
    index: TextIndex,
}

/// The test client: `name` (prefix 1–6 and suffix 1–6, case- and
/// diacritic-insensitive), `bio` (substring 2–5 of values up to 16 code
/// points, case-insensitive, diacritic-sensitive) and `ssn` (string
/// equality), all at contention `cm`.
pub struct TextClient {
    keys: HashMap<KeyId, DataKey>,
    fields: BTreeMap<&'static str, TextField>,
    cm: u64,
}

impl std::fmt::Debug for TextClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextClient")
            .field("cm", &self.cm)
            .finish_non_exhaustive()
    }
}

/// Longest value the suite stores (below `bio`'s `strMaxLength`).
const MAX_VALUE_LEN: usize = 12;

impl TextClient {
    /// Fresh keys; the fields' text indexes come from parsing
    /// [`Self::encrypted_fields`], as a client would.
    pub fn new(cm: u64) -> Self {
        let mut keys = HashMap::new();
        let mut ids = BTreeMap::new();
        for name in ["name", "bio", "ssn"] {
            let id = KeyId::generate(&mut OsRandom).unwrap();
            keys.insert(id, DataKey::generate(&mut OsRandom).unwrap());
            ids.insert(name, id);
        }
        let ef = Self::fields_document(&ids, cm);
        let efc = EncryptedFieldConfig::from_document(&ef).unwrap();
        efc.validate().unwrap();
        let mut fields = BTreeMap::new();
        for (i, f) in efc.fields.iter().enumerate() {
            let FieldKey::Id(id) = f.key else {
                unreachable!()
            };
            let name = *ids.iter().find(|(_, v)| **v == id).unwrap().0;
            let index = f
                .text_index(&format!("fields[{i}]"))
                .unwrap()
                .map_or_else(Self::no_text, |t| t.index);
            fields.insert(
                name,
                TextField {
                    key_id: id,
                    tokens: IndexKeyTokens::new(id, keys.get(&id).unwrap()),
                    index,
                },
            );
        }
        Self { keys, fields, cm }
    }

    fn no_text() -> TextIndex {
        TextIndex {
            case: CaseSensitivity::Sensitive,
            diacritics: DiacriticSensitivity::Sensitive,
            prefix: None,
            suffix: None,
            substring: None,
        }
    }

    fn fields_document(ids: &BTreeMap<&str, KeyId>, cm: u64) -> Document {
        let cm = cm as i64;
        let affix = |kind: &str| {
            doc! {"queryType": kind, "contention": cm, "strMinQueryLength": 1,
            "strMaxQueryLength": 6, "caseSensitive": false, "diacriticSensitive": false}
        };
        doc! {"fields": [
            {"path": "name", "keyId": ids["name"].to_binary(), "bsonType": "string",
             "queries": [affix("prefix"), affix("suffixPreview")]},
            {"path": "bio", "keyId": ids["bio"].to_binary(), "bsonType": "string",
             "queries": {"queryType": "substring", "contention": cm, "strMaxLength": 16,
                         "strMinQueryLength": 2, "strMaxQueryLength": 5,
                         "caseSensitive": false, "diacriticSensitive": true}},
            {"path": "ssn", "keyId": ids["ssn"].to_binary(), "bsonType": "string",
             "queries": {"queryType": "equality", "contention": cm}},
        ]}
    }

    fn field(&self, name: &str) -> &TextField {
        self.fields.get(name).unwrap()
    }

    /// The collection's `encryptedFields`.
    pub fn encrypted_fields(&self) -> Document {
        let ids = self.fields.iter().map(|(n, f)| (*n, f.key_id)).collect();
        Self::fields_document(&ids, self.cm)
    }

    /// Create collection `name` on `e` with [`Self::encrypted_fields`].
    pub async fn create_collection(&self, e: &dyn Engine, name: &str) {
        e.create_collection(
            name,
            CreateCollectionOptions {
                encrypted_fields: Some(self.encrypted_fields()),
            },
        )
        .await
        .unwrap();
    }

    /// A text insert payload for `name` or `bio`.
    pub fn insert_payload(&self, field: &str, v: &str) -> Bson {
        let f = self.field(field);
        let user = UserKey {
            id: f.key_id,
            key: self.keys.get(&f.key_id).unwrap(),
        };
        enc(
            encrypt_text_insert(v, &f.index, &f.tokens, user, self.cm, &mut OsRandom)
                .unwrap()
                .encode(),
        )
    }

    /// A text insert payload with `keys`' key for `index` (which may be
    /// another field's, to make payloads a field must refuse).
    pub fn insert_payload_with(&self, keys: &str, index: &TextIndex, v: &str) -> Bson {
        let f = self.field(keys);
        let user = UserKey {
            id: f.key_id,
            key: self.keys.get(&f.key_id).unwrap(),
        };
        enc(
            encrypt_text_insert(v, index, &f.tokens, user, self.cm, &mut OsRandom)
                .unwrap()
                .encode(),
        )
    }

    /// A text find payload (18).
    pub fn find_payload(&self, field: &str, query: TextQuery, v: &str) -> Bson {
        let f = self.field(field);
        enc(encrypt_text_find(v, &f.index, query, &f.tokens, self.cm)
            .unwrap()
            .encode())
    }

    /// The folded form of `v` under `field`'s folding.
    pub fn folded(&self, field: &str, v: &str) -> String {
        let ix = self.field(field).index;
        fold(v, ix.case, ix.diacritics).to_string()
    }

    /// A document `{_id, name, bio}` with its insert payloads.
    pub fn document(&self, id: i32, name: &str, bio: &str) -> Document {
        doc! {
            "_id": id,
            "name": self.insert_payload("name", name),
            "bio": self.insert_payload("bio", bio),
        }
    }

    /// Compaction tokens as libmongocrypt sends them
    /// (`EncryptedFieldConfig::compaction_tokens`), parsed as the server
    /// parses them.
    pub fn compaction_tokens(&self) -> CompactionTokens {
        let efc = EncryptedFieldConfig::from_document(&self.encrypted_fields()).unwrap();
        let d = efc
            .compaction_tokens(|f| {
                let FieldKey::Id(id) = &f.key else {
                    unreachable!()
                };
                Ok::<_, ()>(IndexKeyTokens::new(*id, self.keys.get(id).unwrap()))
            })
            .unwrap();
        CompactionTokens::from_document(&d).unwrap()
    }

    /// The plaintext of an encrypted value.
    pub fn decrypt(&self, v: &Bson) -> Bson {
        let Bson::Binary(b) = v else {
            panic!("not encrypted: {v:?}")
        };
        decrypt_blob(&b.bytes, &self.keys).unwrap().unwrap()
    }
}

/// `_id` → (name, bio).
type Model = BTreeMap<i32, (String, String)>;

async fn ids(e: &dyn Engine, c: &str, f: &Filter) -> BTreeSet<i32> {
    e.find(c, f, &FindOptions::default())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get_i32("_id").unwrap())
        .collect()
}

fn safe_content(doc: &Document) -> BTreeSet<Tag> {
    match doc.get("__safeContent__") {
        Some(Bson::Array(a)) => a
            .iter()
            .map(|t| match t {
                Bson::Binary(b) if b.subtype == BinarySubtype::Generic => {
                    Tag::from_slice(&b.bytes).unwrap()
                }
                other => panic!("__safeContent__ holds {other:?}"),
            })
            .collect(),
        other => panic!("__safeContent__ is {other:?}"),
    }
}

fn stored_tags(doc: &Document) -> BTreeSet<Tag> {
    let mut out = BTreeSet::new();
    for k in ["name", "bio"] {
        let Some(Bson::Binary(b)) = doc.get(k) else {
            panic!("{k} missing")
        };
        assert_eq!(b.bytes.first(), Some(&17), "{k} is stored as blob 17");
        let v = IndexedTextEncryptedValue::decode(&b.bytes).unwrap();
        out.extend(v.tags());
    }
    out
}

/// A random query of `kind` on `field` with a folded length within
/// `lengths`: a slice of a stored value (re-cased at random, so that it
/// matches only through folding) or a random string.
fn random_query(
    rng: &mut Rng,
    client: &TextClient,
    model: &Model,
    field: &str,
    lengths: AffixIndex,
) -> Option<String> {
    for _ in 0..20 {
        let q: String = if rng.below(3) > 0 && !model.is_empty() {
            let (name, bio) = model.values().nth(rng.below(model.len())).unwrap();
            let v: Vec<char> = if field == "name" { name } else { bio }.chars().collect();
            let a = rng.below(v.len());
            let b = a + 1 + rng.below(v.len() - a);
            v[a..b]
                .iter()
                .map(|c| match (rng.below(3), *c) {
                    (0, 'a') => 'A',
                    (0, 'σ') => 'Σ',
                    (0, 'e') => 'É',
                    (_, c) => c,
                })
                .collect()
        } else {
            random_string(rng, 6)
        };
        let n = client.folded(field, &q).chars().count() as u32;
        if (lengths.min_query_length()..=lengths.max_query_length()).contains(&n) {
            return Some(q);
        }
    }
    None
}

/// Every stored document decrypts to the model and carries exactly its
/// values' tags; random prefix, suffix, substring and normalized-equality
/// queries return exactly what plaintext matching with the field's folding
/// returns.
async fn check(
    e: &dyn Engine,
    c: &str,
    client: &TextClient,
    model: &Model,
    rng: &mut Rng,
    stage: &str,
) {
    let all = e
        .find(c, &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), model.len(), "{stage}: document count");
    for d in &all {
        let id = d.get_i32("_id").unwrap();
        let (name, bio) = model.get(&id).unwrap();
        assert_eq!(
            client.decrypt(d.get("name").unwrap()),
            Bson::String(name.clone())
        );
        assert_eq!(
            client.decrypt(d.get("bio").unwrap()),
            Bson::String(bio.clone())
        );
        assert_eq!(safe_content(d), stored_tags(d), "{stage}: tags of {id}");
    }
    let name_ix = client.field("name").index;
    let bio_ix = client.field("bio").index;
    let cases: [(&str, TextQuery, EncStrOp, AffixIndex); 3] = [
        (
            "name",
            TextQuery::Prefix,
            EncStrOp::StartsWith,
            name_ix.prefix.unwrap(),
        ),
        (
            "name",
            TextQuery::Suffix,
            EncStrOp::EndsWith,
            name_ix.suffix.unwrap(),
        ),
        (
            "bio",
            TextQuery::Substring,
            EncStrOp::Contains,
            bio_ix.query_lengths(TextIndexKind::Substring).unwrap(),
        ),
    ];
    let mut nonempty = 0;
    for (field, query, op, lengths) in cases {
        for _ in 0..12 {
            let Some(q) = random_query(rng, client, model, field, lengths) else {
                continue;
            };
            let fq = client.folded(field, &q);
            let want: BTreeSet<i32> = model
                .iter()
                .filter(|(_, (name, bio))| {
                    let v = client.folded(field, if field == "name" { name } else { bio });
                    match query {
                        TextQuery::Prefix => v.starts_with(&fq),
                        TextQuery::Suffix => v.ends_with(&fq),
                        _ => v.contains(&fq),
                    }
                })
                .map(|(k, _)| *k)
                .collect();
            nonempty += usize::from(!want.is_empty());
            let p = client.find_payload(field, query, &q);
            let f = Filter::enc_str(field, op, p.clone());
            assert_eq!(ids(e, c, &f).await, want, "{stage}: {field} {query} {q:?}");
            // The driver's filter document parses to the same filter.
            let parsed = Filter::parse(&op.to_document(field, p)).unwrap();
            assert_eq!(parsed, f);
            assert_eq!(
                e.count(c, &f.not()).await.unwrap(),
                (model.len() - want.len()) as u64
            );
        }
    }
    assert!(
        model.is_empty() || nonempty > 0,
        "{stage}: some query matched"
    );
    // Normalized equality on both fields.
    for (id, (name, bio)) in model.iter().take(4) {
        for (field, v) in [("name", name), ("bio", bio)] {
            let fv = client.folded(field, v);
            let want: BTreeSet<i32> = model
                .iter()
                .filter(|(_, (n, b))| {
                    client.folded(field, if field == "name" { n } else { b }) == fv
                })
                .map(|(k, _)| *k)
                .collect();
            assert!(want.contains(id));
            let f = Filter::enc_str(
                field,
                EncStrOp::NormalizedEq,
                client.find_payload(field, TextQuery::Exact, &v.to_uppercase()),
            );
            let got = ids(e, c, &f).await;
            if client.folded(field, &v.to_uppercase()) == fv {
                assert_eq!(got, want, "{stage}: {field} normalized eq");
            }
        }
    }
}

/// The property test for one contention factor.
pub async fn text_model(engine: Arc<dyn Engine>, cm: u64) {
    let e = serving(engine);
    let client = TextClient::new(cm);
    let seed = random_seed();
    eprintln!("text_model cm={cm} seed={seed}");
    let mut rng = Rng::new(seed);
    let c = "people";
    client.create_collection(&*e, c).await;
    let mut model = Model::new();
    let value = |rng: &mut Rng| {
        (
            random_string(rng, MAX_VALUE_LEN),
            random_string(rng, MAX_VALUE_LEN),
        )
    };
    for i in 0..12 {
        let (n, b) = value(&mut rng);
        e.insert_one(c, client.document(i, &n, &b)).await.unwrap();
        model.insert(i, (n, b));
    }
    // A batch, with a value repeated inside it (its token sets take
    // consecutive positions) and one equal to an earlier document's.
    let mut batch = Vec::new();
    for i in 12..24 {
        let (n, b) = if i == 13 || i == 14 {
            model.get(&3).cloned().unwrap_or_else(|| value(&mut rng))
        } else {
            value(&mut rng)
        };
        batch.push(client.document(i, &n, &b));
        model.insert(i, (n, b));
    }
    e.insert_many(c, batch).await.unwrap();
    check(&*e, c, &client, &model, &mut rng, "after inserts").await;

    let stats = e.compact(c, &client.compaction_tokens()).await.unwrap();
    assert!(stats.anchors_inserted > 0);
    // A MongoDB server counts padding among the inserted anchors: more
    // anchors than counters read is padding there.
    assert!(
        stats.padding_anchors_inserted > 0 || stats.anchors_inserted > stats.unique_counters,
        "text fields get padding anchors: {stats:?}"
    );
    check(&*e, c, &client, &model, &mut rng, "after compaction").await;

    // Inserts, a replacement and a deletion after compaction.
    for i in 24..32 {
        let (n, b) = value(&mut rng);
        e.insert_one(c, client.document(i, &n, &b)).await.unwrap();
        model.insert(i, (n, b));
    }
    let (n, b) = value(&mut rng);
    assert!(
        e.replace_one(c, &Bson::Int32(5), client.document(5, &n, &b))
            .await
            .unwrap()
    );
    model.insert(5, (n, b));
    let q = client.find_payload("name", TextQuery::Exact, &model.get(&7).unwrap().0.clone());
    let deleted = e
        .delete_many(c, &Filter::enc_str("name", EncStrOp::NormalizedEq, q))
        .await
        .unwrap();
    let gone: Vec<i32> = {
        let f7 = client.folded("name", &model.get(&7).unwrap().0);
        model
            .iter()
            .filter(|(_, (n, _))| client.folded("name", n) == f7)
            .map(|(k, _)| *k)
            .collect()
    };
    assert_eq!(deleted, gone.len() as u64);
    for k in gone {
        model.remove(&k);
    }
    check(
        &*e,
        c,
        &client,
        &model,
        &mut rng,
        "after compaction and writes",
    )
    .await;

    let stats = e.cleanup(c, &client.compaction_tokens()).await.unwrap();
    assert!(stats.null_anchors_written > 0);
    check(&*e, c, &client, &model, &mut rng, "after cleanup").await;
    for i in 32..36 {
        let (n, b) = value(&mut rng);
        e.insert_one(c, client.document(i, &n, &b)).await.unwrap();
        model.insert(i, (n, b));
    }
    e.compact(c, &client.compaction_tokens()).await.unwrap();
    check(
        &*e,
        c,
        &client,
        &model,
        &mut rng,
        "after cleanup, inserts, compaction",
    )
    .await;
}

/// At contention 0.
pub async fn text_model_cm0(engine: Arc<dyn Engine>) {
    text_model(engine, 0).await;
}

/// At contention 8 (MongoDB's default).
pub async fn text_model_cm8(engine: Arc<dyn Engine>) {
    text_model(engine, 8).await;
}

fn is_refusal(r: &Result<impl std::fmt::Debug, EngineError>, path: &str) -> bool {
    match r {
        Err(EngineError::Qe(
            QeError::InvalidQuery { path: p, .. } | QeError::InvalidDocument { path: p, .. },
        )) => p == path,
        // A MongoDB server's refusal, passed on with its code; it names the
        // field in its message.
        Err(e @ EngineError::Server { message, .. }) => {
            is_server_refusal(e) && message.contains(path)
        }
        _ => false,
    }
}

/// What the server role refuses on text fields, each naming the field and
/// never the value, with nothing written.
pub async fn text_refusals(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = TextClient::new(2);
    let c = "people";
    client.create_collection(&*e, c).await;
    e.insert_one(c, client.document(1, "Ada", "analyst"))
        .await
        .unwrap();
    let secret = "Adaq";
    let prefix = client.find_payload("name", TextQuery::Prefix, secret);
    let substring = client.find_payload("bio", TextQuery::Substring, "naly");
    let find = |f: Filter| {
        let e = e.clone();
        async move { e.find(c, &f, &FindOptions::default()).await }
    };
    // A payload of another family than the expression.
    let r = find(Filter::enc_str("name", EncStrOp::EndsWith, prefix.clone())).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // A family the field does not index (a substring payload on `name`).
    let other = TextClient::new(2);
    let mut wrong = other.field("bio").index;
    wrong.case = client.field("name").index.case;
    let p = enc(encrypt_text_find(
        "ada",
        &wrong,
        TextQuery::Substring,
        &client.field("name").tokens,
        2,
    )
    .unwrap()
    .encode());
    let r = find(Filter::enc_str("name", EncStrOp::Contains, p)).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // Other query lengths than the field's.
    let mut longer = client.field("name").index;
    longer.prefix = Some(AffixIndex::new(TextIndexKind::Prefix, 1, 9).unwrap());
    let p = enc(encrypt_text_find(
        secret,
        &longer,
        TextQuery::Prefix,
        &client.field("name").tokens,
        2,
    )
    .unwrap()
    .encode());
    let r = find(Filter::enc_str("name", EncStrOp::StartsWith, p)).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // Another contention factor than the field's.
    let f = client.field("name");
    let p = enc(
        encrypt_text_find(secret, &f.index, TextQuery::Prefix, &f.tokens, 3)
            .unwrap()
            .encode(),
    );
    let r = find(Filter::enc_str("name", EncStrOp::StartsWith, p)).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // A plaintext operand, on a text field and on a plain field.
    let r = find(Filter::enc_str("name", EncStrOp::StartsWith, secret)).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    let r = find(Filter::enc_str(
        "plain",
        EncStrOp::StartsWith,
        prefix.clone(),
    ))
    .await;
    assert!(is_refusal(&r, "plain"), "{r:?}");
    // A text expression on an equality field, equality on a text field.
    let r = find(Filter::enc_str("ssn", EncStrOp::StartsWith, prefix.clone())).await;
    assert!(is_refusal(&r, "ssn"), "{r:?}");
    let eq = enc(encrypt_equality_find(
        &Bson::String(secret.into()),
        &client.field("name").tokens,
        2,
    )
    .unwrap()
    .encode());
    let r = find(Filter::eq("name", eq)).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    let r = find(Filter::eq("name", prefix.clone())).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // No message holds the query.
    for f in [
        Filter::enc_str("name", EncStrOp::EndsWith, prefix.clone()),
        Filter::enc_str("name", EncStrOp::StartsWith, secret),
    ] {
        let msg = find(f).await.unwrap_err().to_string();
        assert!(!msg.contains(secret), "{msg}");
        assert!(msg.contains("name"), "{msg}");
    }
    // Writes: a text payload made for other query types, an equality
    // payload on a text field, a text payload on an equality field.
    let name_ix = client.field("name").index;
    let mut d = client.document(2, "Bob", "builder");
    d.insert("bio", client.insert_payload_with("bio", &name_ix, "Bob"));
    let r = e.insert_one(c, d).await;
    assert!(is_refusal(&r, "bio"), "{r:?}");
    let mut d = client.document(3, "Cyd", "cook");
    d.insert("ssn", client.insert_payload_with("ssn", &name_ix, "123"));
    let r = e.insert_one(c, d).await;
    assert!(is_refusal(&r, "ssn"), "{r:?}");
    let mut d = client.document(4, "Dee", "dancer");
    d.insert("name", Bson::String("Dee".into()));
    let r = e.insert_one(c, d).await;
    assert!(is_refusal(&r, "name"), "{r:?}");
    // Nothing of the refused writes was stored, and the good query works.
    let all = ids(&*e, c, &Filter::all()).await;
    assert_eq!(all, BTreeSet::from([1]));
    let r = ids(
        &*e,
        c,
        &Filter::enc_str("bio", EncStrOp::Contains, substring),
    )
    .await;
    assert_eq!(r, BTreeSet::from([1]));
}
