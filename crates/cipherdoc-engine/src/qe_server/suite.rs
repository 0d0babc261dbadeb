//! The QE property suite: every engine that plays the QE server role must
//! pass it unchanged — an engine of [`QeRole::Client`] wrapped in
//! [`QeServer`], or one whose database server plays the role itself
//! (MongoDB, [`QeRole::Server`]); [`serving`] picks.
//!
//! The suite reads the ESC/ECOC state only through
//! [`Engine::qe_state_sizes`], as a MongoDB client reads it (by counting
//! `enxcol_.<c>.esc`/`.ecoc`), so that it holds the same on both.
//!
//! ```ignore
//! async fn fresh() -> SqliteEngine { SqliteEngine::temporary().unwrap() }
//! cipherdoc_engine::qe_server_tests!(fresh);
//! ```
//!
//! The tests play the client with `cipherdoc_crypto::client` (insert and
//! find payloads, unindexed values, decryption) and keys from
//! `DataKey::generate`, and check the engine against a plain in-memory
//! model.

// A test suite shipped in the library so that other engines can run it;
// failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::too_many_lines,
    clippy::many_single_char_names
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use cipherdoc_crypto::client::{
    UserKey, decrypt_blob, encrypt_equality_find, encrypt_equality_insert, encrypt_unindexed,
};
use cipherdoc_crypto::payload::IndexedEqualityEncryptedValueV2;
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{DataKey, KeyId, OsRandom};

use super::{CompactionTokens, QeError, QeServer};
use crate::{
    CreateCollectionOptions, Engine, EngineError, Filter, FindOptions, QeRole, SortDirection, Tag,
};

/// `engine` as it serves encrypted collections: wrapped in [`QeServer`]
/// when cipherdoc plays the QE server role for it ([`QeRole::Client`]),
/// as it is when its database server plays the role ([`QeRole::Server`]).
pub fn serving(engine: Arc<dyn Engine>) -> Arc<dyn Engine> {
    match engine.qe_role() {
        QeRole::Client => Arc::new(QeServer::new(engine)),
        QeRole::Server => engine,
    }
}

/// Instantiate one `#[tokio::test]` per QE check. `$make` is an async
/// function producing a fresh, empty engine (not yet wrapped).
#[macro_export]
macro_rules! qe_server_tests {
    ($make:expr) => {
        $crate::qe_server_tests!(@each $make;
            equality_model_cm0, equality_model_cm4, equality_model_cm8, refusals,
            tamper, concurrent_inserts, compaction_during_inserts, transactions,
            wrong_compaction_token);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let engine = ($make)().await;
                $crate::qe_server::suite::$name(::std::sync::Arc::new(engine)).await;
            }
        )*
    };
}

/// A subtype-6 binary holding `bytes`.
pub(crate) fn enc(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Encrypted,
        bytes,
    })
}

/// One indexed or unindexed field the test client knows.
struct ClientField {
    key_id: KeyId,
    tokens: IndexKeyTokens,
}

/// The test client: keys, and the collection's fields `name` (string
/// equality), `age` (int64 equality) and `note` (unindexed string).
pub struct TestClient {
    keys: HashMap<KeyId, DataKey>,
    fields: BTreeMap<&'static str, ClientField>,
    /// Contention factor of the indexed fields.
    pub cm: u64,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("cm", &self.cm)
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Fresh keys for the three fields.
    pub fn new(cm: u64) -> Self {
        let mut keys = HashMap::new();
        let mut fields = BTreeMap::new();
        for name in ["name", "age", "note"] {
            let id = KeyId::generate(&mut OsRandom).unwrap();
            let key = DataKey::generate(&mut OsRandom).unwrap();
            fields.insert(
                name,
                ClientField {
                    key_id: id,
                    tokens: IndexKeyTokens::new(id, &key),
                },
            );
            keys.insert(id, key);
        }
        Self { keys, fields, cm }
    }

    fn field(&self, name: &str) -> &ClientField {
        self.fields.get(name).unwrap()
    }

    /// Create collection `name` on `e` with [`Self::encrypted_fields`].
    ///
    /// # Panics
    /// When the engine refuses (a test failure).
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

    /// The collection's `encryptedFields`.
    pub fn encrypted_fields(&self) -> Document {
        doc! {"fields": [
            {"path": "name", "keyId": self.field("name").key_id.to_binary(), "bsonType": "string",
             "queries": {"queryType": "equality", "contention": self.cm as i64}},
            {"path": "age", "keyId": self.field("age").key_id.to_binary(), "bsonType": "long",
             "queries": {"queryType": "equality", "contention": self.cm as i64}},
            {"path": "note", "keyId": self.field("note").key_id.to_binary(), "bsonType": "string"},
        ]}
    }

    /// An insert payload for an indexed field.
    pub fn insert_payload(&self, field: &str, v: &Bson) -> Bson {
        let f = self.field(field);
        let user = UserKey {
            id: f.key_id,
            key: self.keys.get(&f.key_id).unwrap(),
        };
        enc(
            encrypt_equality_insert(v, &f.tokens, user, self.cm, &mut OsRandom)
                .unwrap()
                .encode(),
        )
    }

    /// An unindexed value for `note`.
    pub fn unindexed(&self, v: &Bson) -> Bson {
        let f = self.field("note");
        let user = UserKey {
            id: f.key_id,
            key: self.keys.get(&f.key_id).unwrap(),
        };
        enc(encrypt_unindexed(v, user, &mut OsRandom).unwrap().encode())
    }

    /// A find payload for an indexed field.
    pub fn find_payload(&self, field: &str, v: &Bson) -> Bson {
        enc(encrypt_equality_find(v, &self.field(field).tokens, self.cm)
            .unwrap()
            .encode())
    }

    /// A document `{_id, i, name, age, note}` with its encrypted values.
    pub fn document(&self, i: i32, name: &str, age: i64, note: &str) -> Document {
        doc! {
            "_id": i,
            "i": i,
            "name": self.insert_payload("name", &Bson::String(name.into())),
            "age": self.insert_payload("age", &Bson::Int64(age)),
            "note": self.unindexed(&Bson::String(note.into())),
        }
    }

    /// Compaction/cleanup tokens for every encrypted field.
    pub fn compaction_tokens(&self) -> CompactionTokens {
        let mut t = CompactionTokens::new();
        for (name, f) in &self.fields {
            t = t.with_field(*name, f.tokens.ecoc().clone());
        }
        t
    }

    /// Decrypt every encrypted value of a stored document.
    pub fn decrypt(&self, doc: &Document) -> Document {
        let mut out = Document::new();
        for (k, v) in doc {
            match v {
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Encrypted,
                    bytes,
                }) => {
                    let p = decrypt_blob(bytes, &self.keys).unwrap().unwrap();
                    out.insert(k, p);
                }
                other => {
                    out.insert(k, other.clone());
                }
            }
        }
        out
    }
}

/// The in-memory model: `_id` → (name, age, note).
type Model = BTreeMap<i32, (String, i64, String)>;

const NAMES: [&str; 5] = ["ada", "bob", "cyd", "dee", "eve"];
const AGES: [i64; 4] = [30, 40, 50, 60];

/// The `_id`s an encrypted query finds, `find` and `find_raw` agreeing.
async fn ids(e: &dyn Engine, c: &str, f: &Filter) -> BTreeSet<i32> {
    let o = FindOptions::default();
    let docs = e.find(c, f, &o).await.unwrap();
    let raw = e.find_raw(c, f, &o).await.unwrap();
    assert_eq!(
        raw.iter().map(|r| r.as_bytes()).collect::<Vec<_>>(),
        docs.iter()
            .map(|d| bson::to_vec(d).unwrap())
            .collect::<Vec<_>>(),
        "find_raw of {f:?}"
    );
    docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
}

fn expect(model: &Model, pred: impl Fn(&(String, i64, String)) -> bool) -> BTreeSet<i32> {
    model
        .iter()
        .filter(|(_, v)| pred(v))
        .map(|(k, _)| *k)
        .collect()
}

fn tags_of(doc: &Document) -> BTreeSet<Tag> {
    let mut out = BTreeSet::new();
    for k in ["name", "age"] {
        if let Some(Bson::Binary(b)) = doc.get(k) {
            let v = IndexedEqualityEncryptedValueV2::decode(&b.bytes).unwrap();
            out.insert(v.metadata.tag);
        }
    }
    out
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
        None => BTreeSet::new(),
        other => panic!("__safeContent__ is {other:?}"),
    }
}

/// Every equality query (eq, in, ne, nin) on both indexed fields returns
/// exactly the model's documents; every stored document decrypts to the
/// model and its `__safeContent__` holds exactly its values' tags.
async fn check(e: &dyn Engine, c: &str, client: &TestClient, model: &Model, stage: &str) {
    let all = e
        .find(c, &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), model.len(), "{stage}: document count");
    for d in &all {
        let id = d.get_i32("_id").unwrap();
        let (name, age, note) = model.get(&id).unwrap();
        let p = client.decrypt(d);
        assert_eq!(p.get_str("name").unwrap(), name, "{stage}: doc {id}");
        assert_eq!(p.get_i64("age").unwrap(), *age, "{stage}: doc {id}");
        assert_eq!(p.get_str("note").unwrap(), note, "{stage}: doc {id}");
        assert_eq!(
            safe_content(d),
            tags_of(d),
            "{stage}: __safeContent__ of {id}"
        );
        assert_eq!(safe_content(d).len(), 2, "{stage}: doc {id} has two tags");
    }
    for n in NAMES {
        let v = Bson::String(n.into());
        let want = expect(model, |m| m.0 == n);
        let q = client.find_payload("name", &v);
        assert_eq!(
            ids(e, c, &Filter::eq("name", q.clone())).await,
            want,
            "{stage}: name == {n}"
        );
        assert_eq!(
            e.count(c, &Filter::eq("name", q.clone())).await.unwrap(),
            want.len() as u64
        );
        let not: BTreeSet<i32> = model
            .keys()
            .copied()
            .filter(|k| !want.contains(k))
            .collect();
        assert_eq!(
            ids(e, c, &Filter::ne("name", q.clone())).await,
            not,
            "{stage}: name != {n}"
        );
        assert_eq!(
            ids(e, c, &Filter::not_in("name", [q])).await,
            not,
            "{stage}: name nin [{n}]"
        );
    }
    for pair in NAMES.windows(2) {
        let want = expect(model, |m| pair.contains(&m.0.as_str()));
        let qs = pair
            .iter()
            .map(|n| client.find_payload("name", &Bson::String((*n).into())));
        assert_eq!(
            ids(e, c, &Filter::is_in("name", qs)).await,
            want,
            "{stage}: name in {pair:?}"
        );
    }
    for a in AGES {
        let want = expect(model, |m| m.1 == a);
        let q = client.find_payload("age", &Bson::Int64(a));
        assert_eq!(
            ids(e, c, &Filter::eq("age", q.clone())).await,
            want,
            "{stage}: age == {a}"
        );
        // Combined with a plaintext predicate.
        let want_late = expect(model, |m| m.1 == a)
            .into_iter()
            .filter(|k| *k >= 40)
            .collect::<BTreeSet<_>>();
        let f = Filter::and([Filter::eq("age", q), Filter::gte("i", 40)]);
        assert_eq!(
            ids(e, c, &f).await,
            want_late,
            "{stage}: age == {a} and i >= 40"
        );
    }
}

async fn esc_count(e: &dyn Engine, c: &str) -> u64 {
    e.qe_state_sizes(c).await.unwrap().esc
}

/// The property test for one contention factor.
pub async fn equality_model(engine: Arc<dyn Engine>, cm: u64) {
    let e = serving(engine);
    let client = TestClient::new(cm);
    let c = "patients";
    client.create_collection(&*e, c).await;
    let mut model = Model::new();
    let pick = |i: i32| {
        let i = usize::try_from(i).unwrap();
        (NAMES[(i * 7) % NAMES.len()], AGES[(i * 3) % AGES.len()])
    };
    // 30 single inserts, then a batch of 30.
    for i in 0..30 {
        let (n, a) = pick(i);
        let note = format!("note-{i}");
        e.insert_one(c, client.document(i, n, a, &note))
            .await
            .unwrap();
        model.insert(i, (n.into(), a, note));
    }
    let batch: Vec<Document> = (30..60)
        .map(|i| {
            let (n, a) = pick(i);
            let note = format!("note-{i}");
            model.insert(i, (n.into(), a, note.clone()));
            client.document(i, n, a, &note)
        })
        .collect();
    e.insert_many(c, batch).await.unwrap();
    check(&*e, c, &client, &model, "after inserts").await;

    let before = esc_count(&*e, c).await;
    let stats = e.compact(c, &client.compaction_tokens()).await.unwrap();
    let after = esc_count(&*e, c).await;
    assert_eq!(
        stats.non_anchors_deleted, before,
        "compaction deletes every non-anchor"
    );
    assert!(
        after < before,
        "ESC shrinks after compaction: {before} -> {after}"
    );
    assert_eq!(after, stats.anchors_inserted);
    check(&*e, c, &client, &model, "after compaction").await;

    // Inserting after compaction continues the counts.
    for i in 60..80 {
        let (n, a) = pick(i);
        let note = format!("note-{i}");
        e.insert_one(c, client.document(i, n, a, &note))
            .await
            .unwrap();
        model.insert(i, (n.into(), a, note));
    }
    check(
        &*e,
        c,
        &client,
        &model,
        "after inserts following compaction",
    )
    .await;
    // Cleanup works on the ECOC entries written since the compaction.
    let stats = e.cleanup(c, &client.compaction_tokens()).await.unwrap();
    assert!(stats.null_anchors_written > 0);
    assert!(
        stats.anchors_deleted > 0,
        "null anchors replace the anchors"
    );
    check(&*e, c, &client, &model, "after cleanup").await;
    for i in 80..85 {
        let (n, a) = pick(i);
        let note = format!("note-{i}");
        e.insert_one(c, client.document(i, n, a, &note))
            .await
            .unwrap();
        model.insert(i, (n.into(), a, note));
    }
    e.compact(c, &client.compaction_tokens()).await.unwrap();
    check(
        &*e,
        c,
        &client,
        &model,
        "after compaction following cleanup",
    )
    .await;

    // Deletes: by find payload, and by plaintext.
    let q = client.find_payload("name", &Bson::String("bob".into()));
    let n = e.delete_many(c, &Filter::eq("name", q)).await.unwrap();
    let gone: Vec<i32> = model
        .iter()
        .filter(|(_, v)| v.0 == "bob")
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(n, gone.len() as u64);
    for k in gone {
        model.remove(&k);
    }
    let victim = *model.keys().nth(3).unwrap();
    assert_eq!(e.delete_one(c, &Filter::eq("i", victim)).await.unwrap(), 1);
    model.remove(&victim);
    check(&*e, c, &client, &model, "after deletes").await;

    // Updates: new values for some documents; one keeps its stored name.
    let all = e
        .find(c, &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    for d in all.iter().filter(|d| d.get_i32("_id").unwrap() % 5 == 0) {
        let id = d.get_i32("_id").unwrap();
        let (old_name, _, _) = model.get(&id).unwrap().clone();
        let new_age = AGES[usize::try_from(id).unwrap() % 2];
        let note = format!("updated-{id}");
        let mut new = client.document(id, "dee", new_age, &note);
        let name = if id % 10 == 0 {
            // Keep the stored name as it is (no new ESC position).
            new.insert("name", d.get("name").unwrap().clone());
            old_name
        } else {
            "dee".to_owned()
        };
        assert!(e.replace_one(c, &Bson::Int32(id), new).await.unwrap());
        model.insert(id, (name, new_age, note));
    }
    check(&*e, c, &client, &model, "after updates").await;
    e.compact(c, &client.compaction_tokens()).await.unwrap();
    check(
        &*e,
        c,
        &client,
        &model,
        "after compaction following updates",
    )
    .await;
    for i in 85..95 {
        let (n, a) = pick(i);
        let note = format!("note-{i}");
        e.insert_one(c, client.document(i, n, a, &note))
            .await
            .unwrap();
        model.insert(i, (n.into(), a, note));
    }
    e.cleanup(c, &client.compaction_tokens()).await.unwrap();
    check(&*e, c, &client, &model, "after final inserts and cleanup").await;
    assert!(e.drop_collection(c).await.unwrap());
}

/// [`equality_model`] with contention 0.
pub async fn equality_model_cm0(e: Arc<dyn Engine>) {
    equality_model(e, 0).await;
}
/// [`equality_model`] with contention 4.
pub async fn equality_model_cm4(e: Arc<dyn Engine>) {
    equality_model(e, 4).await;
}
/// [`equality_model`] with contention 8.
pub async fn equality_model_cm8(e: Arc<dyn Engine>) {
    equality_model(e, 8).await;
}

fn is_qe(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Qe(
            QeError::InvalidDocument { .. }
                | QeError::InvalidQuery { .. }
                | QeError::Payload { .. }
        )
    ) || is_server_refusal(e)
}

/// A MongoDB server's refusal of what cipherdoc's QE server role refuses
/// itself, passed on by an engine of [`QeRole::Server`] with its code:
/// `BadValue` (2), the implicit validator's `DocumentValidationFailure`
/// (121), or one of mongod's numbered QE refusals (`Location<n>`).
pub(crate) fn is_server_refusal(e: &EngineError) -> bool {
    const BAD_VALUE: i32 = 2;
    const DOCUMENT_VALIDATION_FAILURE: i32 = 121;
    const DUPLICATE_KEY: i32 = 11_000;
    matches!(e, EngineError::Server { code, .. }
        if *code == BAD_VALUE
            || *code == DOCUMENT_VALIDATION_FAILURE
            || (*code >= 10_000 && *code != DUPLICATE_KEY))
}

/// Everything the server role must refuse, and that a refusal writes
/// nothing.
pub async fn refusals(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = TestClient::new(2);
    let c = "r";
    client.create_collection(&*e, c).await;
    e.insert_one(c, client.document(1, "ada", 30, "n"))
        .await
        .unwrap();
    let name = || client.insert_payload("name", &Bson::String("x".into()));
    let age = || client.insert_payload("age", &Bson::Int64(1));
    let find = client.find_payload("name", &Bson::String("ada".into()));
    let bad_docs = [
        ("plaintext at encrypted path", doc! {"name": "ada"}),
        ("null at encrypted path", doc! {"name": Bson::Null}),
        (
            "client __safeContent__",
            doc! {"name": name(), "__safeContent__": []},
        ),
        ("find payload stored", doc! {"name": find.clone()}),
        ("insert payload at plain path", doc! {"other": name()}),
        (
            "insert payload nested at plain path",
            doc! {"x": {"y": [name()]}},
        ),
        ("insert payload at unindexed field", doc! {"note": name()}),
        (
            "unindexed value at indexed field",
            doc! {"name": client.unindexed(&Bson::String("a".into()))},
        ),
        (
            "payload of the wrong field (key/type)",
            doc! {"name": age()},
        ),
        (
            "encrypted field inside an array",
            doc! {"x": 1, "name": [name()]},
        ),
        ("placeholder", doc! {"name": enc(vec![3, 5, 0, 0, 0, 0])}),
        ("empty blob", doc! {"name": enc(Vec::new())}),
        (
            "garbage insert payload",
            doc! {"name": enc(vec![11, 1, 2, 3])},
        ),
    ];
    for (what, d) in bad_docs {
        let err = e.insert_one(c, d.clone()).await.unwrap_err();
        assert!(is_qe(&err), "{what}: unexpected error {err}");
        let err = e
            .insert_many(c, vec![client.document(50, "a", 1, "n"), d])
            .await
            .unwrap_err();
        assert!(is_qe(&err), "{what} (batch): unexpected error {err}");
    }
    // Stored values copied from elsewhere are refused in a replacement too.
    let stored = e.find_one(c, &Filter::eq("_id", 1)).await.unwrap().unwrap();
    let mut copy = client.document(2, "bob", 40, "m");
    copy.insert("age", stored.get("name").unwrap().clone());
    assert!(is_qe(&e.insert_one(c, copy.clone()).await.unwrap_err()));
    copy.insert("_id", 1);
    assert!(is_qe(
        &e.replace_one(c, &Bson::Int32(1), copy).await.unwrap_err()
    ));
    // Nothing was written by any refusal.
    assert_eq!(e.count(c, &Filter::all()).await.unwrap(), 1);
    let sizes = e.qe_state_sizes(c).await.unwrap();
    assert_eq!((sizes.esc, sizes.ecoc), (2, 2));

    // Queries.
    let bad_filters = [
        ("plaintext eq on encrypted path", Filter::eq("name", "ada")),
        (
            "plaintext in on encrypted path",
            Filter::is_in("name", [Bson::String("ada".into())]),
        ),
        (
            "mixed in",
            Filter::is_in("name", [find.clone(), Bson::String("ada".into())]),
        ),
        ("order comparison", Filter::gt("name", find.clone())),
        ("find payload on plain path", Filter::eq("i", find.clone())),
        ("unindexed field", Filter::eq("note", find.clone())),
        ("inside an encrypted value", Filter::eq("name.x", 1)),
        ("insert payload as operand", Filter::eq("name", name())),
        (
            "range payload",
            Filter::eq("name", enc(vec![13, 5, 0, 0, 0, 0])),
        ),
        (
            "nested",
            Filter::or([Filter::eq("i", 1), Filter::eq("name", "ada").not()]),
        ),
    ];
    for (what, f) in bad_filters {
        let err = e.find(c, &f, &FindOptions::default()).await.unwrap_err();
        assert!(is_qe(&err), "{what}: unexpected error {err}");
        assert!(is_qe(&e.count(c, &f).await.unwrap_err()), "{what} (count)");
        assert!(
            is_qe(&e.delete_many(c, &f).await.unwrap_err()),
            "{what} (delete)"
        );
    }
    let wrong_cm =
        enc(
            encrypt_equality_find(&Bson::String("ada".into()), &client.field("name").tokens, 1)
                .unwrap()
                .encode(),
        );
    assert!(is_qe(
        &e.find(c, &Filter::eq("name", wrong_cm), &FindOptions::default())
            .await
            .unwrap_err()
    ));
    let sort = FindOptions {
        sort: vec![("name".into(), SortDirection::Ascending)],
        ..FindOptions::default()
    };
    assert!(is_qe(&e.find(c, &Filter::all(), &sort).await.unwrap_err()));
    assert_eq!(e.count(c, &Filter::eq("name", find)).await.unwrap(), 1);

    // A client whose payloads carry a larger contention factor than the field.
    let big = TestClient {
        keys: client.keys.iter().map(|(k, v)| (*k, v.clone())).collect(),
        fields: client
            .fields
            .iter()
            .map(|(n, f)| {
                (
                    *n,
                    ClientField {
                        key_id: f.key_id,
                        tokens: f.tokens.clone(),
                    },
                )
            })
            .collect(),
        cm: 1000,
    };
    let mut refused = 0;
    for i in 0..20 {
        match e.insert_one(c, big.document(100 + i, "a", 1, "n")).await {
            Err(err) => {
                assert!(is_qe(&err), "{err}");
                refused += 1;
            }
            Ok(_) => {
                e.delete_one(c, &Filter::eq("_id", 100 + i)).await.unwrap();
            }
        }
    }
    assert!(
        refused > 0,
        "contention factors above the field's are refused"
    );

    // Malformed range payloads are refused with a clear error: an insert
    // payload with no edges, a truncated range find payload.
    let rid = KeyId::generate(&mut OsRandom).unwrap();
    let rkey = DataKey::generate(&mut OsRandom).unwrap();
    e.create_collection(
        "range",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {"fields": [{"path": "n", "keyId": rid.to_binary(), "bsonType": "long",
                "queries": {"queryType": "range", "contention": 0, "min": 0_i64, "max": 100_i64, "sparsity": 1}}]}),
        },
    )
    .await
    .unwrap();
    let toks = IndexKeyTokens::new(rid, &rkey);
    let mut p = encrypt_equality_insert(
        &Bson::Int64(5),
        &toks,
        UserKey {
            id: rid,
            key: &rkey,
        },
        0,
        &mut OsRandom,
    )
    .unwrap();
    p.edge_token_sets = Some(Vec::new());
    let err = e
        .insert_one("range", doc! {"n": enc(p.encode())})
        .await
        .unwrap_err();
    assert!(is_qe(&err), "{err}");
    let err = e
        .find(
            "range",
            &Filter::gte("n", enc(vec![13, 5, 0, 0, 0, 0])),
            &FindOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(is_qe(&err), "{err}");

    // QE blobs in a collection without encryptedFields.
    let err = e.insert_one("plain", doc! {"a": name()}).await.unwrap_err();
    assert!(is_qe(&err), "{err}");
    // And an index on an encrypted field.
    assert!(
        e.create_index(c, crate::IndexSpec::new("name"))
            .await
            .is_err()
    );
}

/// Flipping any byte of a stored value 14 never yields a wrong plaintext.
pub async fn tamper(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = TestClient::new(0);
    let c = "t";
    client.create_collection(&*e, c).await;
    e.insert_one(c, client.document(1, "a secret name", 1_234_567, "n"))
        .await
        .unwrap();
    let d = e.find_one(c, &Filter::eq("_id", 1)).await.unwrap().unwrap();
    for (field, want) in [
        ("name", Bson::String("a secret name".into())),
        ("age", Bson::Int64(1_234_567)),
    ] {
        let Some(Bson::Binary(b)) = d.get(field) else {
            panic!("{field} is not binary")
        };
        let blob = b.bytes.clone();
        assert_eq!(blob.first(), Some(&14));
        assert_eq!(
            decrypt_blob(&blob, &client.keys).unwrap(),
            Some(want.clone())
        );
        let value_part = blob.len() - 96;
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for pos in 0..blob.len() {
            for mask in [0x01_u8, 0x80, 0xFF] {
                let mut t = blob.clone();
                t[pos] ^= mask;
                let r = decrypt_blob(&t, &client.keys);
                if pos < value_part {
                    let kind = match r {
                        Err(cipherdoc_crypto::Error::AuthenticationFailed) => "authentication",
                        Err(
                            cipherdoc_crypto::Error::Decode { .. }
                            | cipherdoc_crypto::Error::Decrypt(_)
                            | cipherdoc_crypto::Error::Bson(_),
                        ) => "decode",
                        Err(cipherdoc_crypto::Error::MissingKey(_)) => "unknown key id",
                        Err(other) => panic!("{field} byte {pos} ^ {mask:#x}: unexpected {other}"),
                        Ok(v) => panic!("{field} byte {pos} ^ {mask:#x}: decrypted to {v:?}"),
                    };
                    *by_kind.entry(kind.into()).or_default() += 1;
                } else {
                    // The metadata block is the server's (count, tag, zeros);
                    // the client never reads it, so the plaintext is intact.
                    assert_eq!(
                        r.unwrap(),
                        Some(want.clone()),
                        "{field} metadata byte {pos}"
                    );
                }
            }
        }
        assert!(by_kind.get("authentication").copied().unwrap_or(0) > value_part);
    }
}

/// 8 tasks × 200 inserts of one value with contention 0: all 1,600 found.
pub async fn concurrent_inserts(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = Arc::new(TestClient::new(0));
    let c = "con";
    client.create_collection(&*e, c).await;
    let mut handles = Vec::new();
    for task in 0..8 {
        let (e, client) = (Arc::clone(&e), Arc::clone(&client));
        handles.push(tokio::spawn(async move {
            for i in 0..200 {
                let id = task * 1000 + i;
                e.insert_one(c, client.document(id, "same", 7, "n"))
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let q = client.find_payload("name", &Bson::String("same".into()));
    assert_eq!(
        e.count(c, &Filter::eq("name", q.clone())).await.unwrap(),
        1600
    );
    assert_eq!(ids(&*e, c, &Filter::eq("name", q)).await.len(), 1600);
    let q = client.find_payload("age", &Bson::Int64(7));
    assert_eq!(e.count(c, &Filter::eq("age", q)).await.unwrap(), 1600);
    // Every document got its own ESC position per field.
    assert_eq!(e.qe_state_sizes(c).await.unwrap().esc, 3200);
}

/// Compactions and cleanups running while 4 writers insert a few hot values
/// (contention 0, so every insert of a value advances one counter): every
/// acknowledged insert is found by its value's equality query afterwards.
/// A writer's search must never take a position that a concurrent
/// compaction has just folded into an anchor.
pub async fn compaction_during_inserts(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = Arc::new(TestClient::new(0));
    let c = "compacting";
    client.create_collection(&*e, c).await;
    let values = ["v0", "v1", "v2"];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for task in 0..4_i32 {
        let (e, client) = (Arc::clone(&e), Arc::clone(&client));
        writers.push(tokio::spawn(async move {
            for i in 0..60_i32 {
                let id = task * 1000 + i;
                let v = values[usize::try_from(id % 3).unwrap_or(0)];
                e.insert_one(c, client.document(id, v, 7, "n"))
                    .await
                    .unwrap();
            }
        }));
    }
    let compactor = {
        let (e, client, done) = (Arc::clone(&e), Arc::clone(&client), Arc::clone(&done));
        tokio::spawn(async move {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || runs < 3 {
                if runs % 4 == 3 {
                    e.cleanup(c, &client.compaction_tokens()).await.unwrap();
                } else {
                    e.compact(c, &client.compaction_tokens()).await.unwrap();
                }
                runs += 1;
            }
            runs
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = compactor.await.unwrap();
    assert!(runs >= 3, "{runs} compactions");
    for (k, v) in values.iter().enumerate() {
        let q = client.find_payload("name", &Bson::String((*v).into()));
        let found = ids(&*e, c, &Filter::eq("name", q)).await;
        let want: std::collections::BTreeSet<i32> = (0..4_i32)
            .flat_map(|t| (0..60_i32).map(move |i| t * 1000 + i))
            .filter(|id| usize::try_from(id % 3).ok() == Some(k))
            .collect();
        let missing: Vec<_> = want.iter().filter(|id| !found.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{v}: not found after {runs} compactions: {missing:?}"
        );
        assert_eq!(found.len(), want.len(), "{v}");
    }
    // Every insert took a position of its own: no two documents share a
    // tag (which would show the store that they hold the same value).
    let all = e
        .find(c, &Filter::all(), &FindOptions::default())
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for d in &all {
        for t in safe_content(d) {
            assert!(
                seen.insert(t),
                "two documents share a tag (doc {:?})",
                d.get("_id")
            );
        }
    }
    assert_eq!(seen.len(), all.len() * 2);
}

/// Encrypted writes inside an explicit transaction commit or roll back with
/// it; queries inside it see its writes.
pub async fn transactions(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = TestClient::new(1);
    let c = "tx";
    client.create_collection(&*e, c).await;
    let q = client.find_payload("name", &Bson::String("ada".into()));
    let mut tx = e.begin().await.unwrap();
    tx.insert_one(c, client.document(1, "ada", 1, "n"))
        .await
        .unwrap();
    assert_eq!(
        tx.count(c, &Filter::eq("name", q.clone())).await.unwrap(),
        1
    );
    assert!(is_qe(
        &tx.insert_one(c, doc! {"name": "plain"}).await.unwrap_err()
    ));
    tx.rollback().await.unwrap();
    assert_eq!(e.count(c, &Filter::eq("name", q.clone())).await.unwrap(), 0);
    assert_eq!(
        e.qe_state_sizes(c).await.unwrap().esc,
        0,
        "rolled back ESC rows"
    );

    let mut tx = e.begin().await.unwrap();
    tx.insert_many(
        c,
        vec![
            client.document(1, "ada", 1, "n"),
            client.document(2, "ada", 2, "m"),
        ],
    )
    .await
    .unwrap();
    tx.replace_one(c, &Bson::Int32(2), client.document(2, "bob", 2, "m"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        ids(&*e, c, &Filter::eq("name", q)).await,
        BTreeSet::from([1])
    );
    let qb = client.find_payload("name", &Bson::String("bob".into()));
    assert_eq!(
        ids(&*e, c, &Filter::eq("name", qb)).await,
        BTreeSet::from([2])
    );
}

/// A wrong or missing compaction token changes nothing.
pub async fn wrong_compaction_token(engine: Arc<dyn Engine>) {
    let e = serving(engine);
    let client = TestClient::new(0);
    let other = TestClient::new(0);
    let c = "w";
    client.create_collection(&*e, c).await;
    for i in 0..5 {
        e.insert_one(c, client.document(i, "ada", 1, "n"))
            .await
            .unwrap();
    }
    let before = esc_count(&*e, c).await;
    for tokens in [other.compaction_tokens(), CompactionTokens::new()] {
        for err in [
            e.compact(c, &tokens).await.unwrap_err(),
            e.cleanup(c, &tokens).await.unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    EngineError::Qe(QeError::State { .. } | QeError::Tokens { .. })
                ) || is_server_refusal(&err),
                "{err}"
            );
        }
    }
    assert_eq!(esc_count(&*e, c).await, before);
    let q = client.find_payload("name", &Bson::String("ada".into()));
    assert_eq!(e.count(c, &Filter::eq("name", q)).await.unwrap(), 5);
    let stats = e.compact(c, &client.compaction_tokens()).await.unwrap();
    assert_eq!(stats.ecoc_entries, 10);
    assert_eq!(stats.unique_counters, 2);
}
