//! Issue 14, the property: for random model shapes — encrypted fields at
//! random depths, in embedded models and in lists of them, registered or
//! not — against a collection that matches the model, lacks one of its
//! encrypted paths, weakens one, is plain or is missing, an engine wrapper
//! that sees every document and filter the application sends never sees
//! the plaintext of an encrypted field. Every write either carries
//! ciphertext at every encrypted path or is refused with nothing sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::spec::BinarySubtype;
use bson::{Bson, Document, doc};
use cipherdoc::model::{
    EmbeddedRef, EmbeddedSchema, FieldKind, FieldSchema, Model, ModelError, ModelSchema,
    QueryConfig,
};
use cipherdoc::{App, Error};
use cipherdoc_engine::{
    CollectionInfo, CreateCollectionOptions, Engine, Filter, FindOptions, IndexSpec, Result,
    Transaction,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Random shapes.

/// Marks every plaintext an encrypted field is given.
const MARK: &str = "PLAINTEXT-OF-AN-ENCRYPTED-FIELD";

#[derive(Debug, Clone)]
enum Leaf {
    Plain,
    Unindexed,
    Equality { contention: Option<i64> },
}

#[derive(Debug, Clone)]
enum Shape {
    Leaf(Leaf),
    /// An embedded model (not encrypted) with these fields.
    Embedded(Vec<Shape>),
    /// A list of such embedded models.
    List(Vec<Shape>),
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        Just(Leaf::Plain),
        Just(Leaf::Unindexed),
        prop::option::of(0i64..4).prop_map(|contention| Leaf::Equality { contention }),
    ]
}

fn shape() -> impl Strategy<Value = Shape> {
    leaf()
        .prop_map(Shape::Leaf)
        .prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(Shape::Embedded),
                prop::collection::vec(inner, 1..3).prop_map(Shape::List),
            ]
        })
}

/// What the collection's encrypted fields are, relative to the model.
#[derive(Debug, Clone, Copy)]
enum Collection {
    Matching,
    /// One encrypted path left out (the `n`th, modulo their number).
    Missing(usize),
    /// One equality field's contention lowered, or an unindexed field
    /// made indexed.
    Weakened(usize),
    Plain,
    Absent,
}

fn collection() -> impl Strategy<Value = Collection> {
    prop_oneof![
        3 => Just(Collection::Matching),
        1 => any::<usize>().prop_map(Collection::Missing),
        1 => any::<usize>().prop_map(Collection::Weakened),
        1 => Just(Collection::Plain),
        1 => Just(Collection::Absent),
    ]
}

// ---------------------------------------------------------------------------
// A model whose schema is chosen at run time. `EmbeddedRef` holds a function
// pointer, so embedded schemas live in numbered slots that the functions
// `slot::<N>` read.

static SCHEMA: Mutex<Option<&'static ModelSchema>> = Mutex::new(None);
static SLOTS: Mutex<Vec<&'static EmbeddedSchema>> = Mutex::new(Vec::new());
const SLOT_NAMES: [&str; 16] = [
    "E0", "E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8", "E9", "E10", "E11", "E12", "E13", "E14",
    "E15",
];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn slot<const N: usize>() -> &'static EmbeddedSchema {
    lock(&SLOTS)[N]
}

const SLOT_FNS: [fn() -> &'static EmbeddedSchema; 16] = [
    slot::<0>, slot::<1>, slot::<2>, slot::<3>, slot::<4>, slot::<5>, slot::<6>, slot::<7>,
    slot::<8>, slot::<9>, slot::<10>, slot::<11>, slot::<12>, slot::<13>, slot::<14>, slot::<15>,
];

#[derive(Debug, Clone)]
struct Dyn {
    id: ObjectId,
    doc: Document,
}

impl Model for Dyn {
    type Fields = ();
    fn schema() -> &'static ModelSchema {
        lock(&SCHEMA).expect("a schema is set")
    }
    fn fields() -> &'static Self::Fields {
        &()
    }
    fn id(&self) -> &ObjectId {
        &self.id
    }
    fn to_document(&self) -> std::result::Result<Document, ModelError> {
        let mut d = doc! { "_id": self.id };
        d.extend(self.doc.clone());
        Ok(d)
    }
    fn from_document(mut doc: Document) -> std::result::Result<Self, ModelError> {
        let id = doc.get_object_id("_id").unwrap();
        doc.remove("_id");
        Ok(Dyn { id, doc })
    }
}

/// Builds the schema fields of `shapes` (registering embedded schemas in
/// slots) and a document for them whose encrypted leaves hold `MARK`.
fn build(
    shapes: &[Shape],
    slots: &mut Vec<&'static EmbeddedSchema>,
) -> (Vec<FieldSchema>, Document) {
    let mut fields = Vec::new();
    let mut doc = Document::new();
    for (i, s) in shapes.iter().enumerate() {
        let name = format!("f{i}");
        match s {
            Shape::Leaf(l) => {
                let mut f = FieldSchema::new(name.clone(), FieldKind::Char, "string");
                let value = match l {
                    Leaf::Plain => format!("plain-{i}"),
                    Leaf::Unindexed => {
                        f.encrypted = true;
                        format!("{MARK}-{i}")
                    }
                    Leaf::Equality { contention } => {
                        f.encrypted = true;
                        f.queries = Some(QueryConfig::Equality {
                            contention: *contention,
                        });
                        format!("{MARK}-{i}")
                    }
                };
                fields.push(f);
                doc.insert(name, value);
            }
            Shape::Embedded(inner) | Shape::List(inner) => {
                let (sub_fields, sub_doc) = build(inner, slots);
                let n = slots.len();
                let mut e = EmbeddedSchema::new(SLOT_NAMES[n]);
                e.fields = sub_fields;
                slots.push(Box::leak(Box::new(e)));
                let r = EmbeddedRef {
                    name: SLOT_NAMES[n],
                    schema: SLOT_FNS[n],
                };
                if let Shape::List(_) = s {
                    fields.push(FieldSchema::new(
                        name.clone(),
                        FieldKind::EmbeddedArray(r),
                        "array",
                    ));
                    doc.insert(
                        name,
                        vec![Bson::Document(sub_doc.clone()), Bson::Document(sub_doc)],
                    );
                } else {
                    fields.push(FieldSchema::new(
                        name.clone(),
                        FieldKind::Embedded(r),
                        "object",
                    ));
                    doc.insert(name, sub_doc);
                }
            }
        }
    }
    (fields, doc)
}

fn embedded_count(shapes: &[Shape]) -> usize {
    shapes
        .iter()
        .map(|s| match s {
            Shape::Leaf(_) => 0,
            Shape::Embedded(i) | Shape::List(i) => 1 + embedded_count(i),
        })
        .sum()
}

// ---------------------------------------------------------------------------
// The engine wrapper: every document and filter the application sends.

#[derive(Debug)]
struct Inspect {
    inner: Arc<dyn Engine>,
    seen: Arc<Mutex<Vec<Document>>>,
}

impl Inspect {
    fn saw(&self, d: &Document) {
        lock(&self.seen).push(d.clone());
    }
}

#[async_trait]
impl Engine for Inspect {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn qe_role(&self) -> cipherdoc_engine::QeRole {
        self.inner.qe_role()
    }
    async fn compact(
        &self,
        collection: &str,
        tokens: &cipherdoc_engine::qe_server::CompactionTokens,
    ) -> Result<cipherdoc_engine::qe_server::CompactionStats> {
        self.inner.compact(collection, tokens).await
    }
    async fn cleanup(
        &self,
        collection: &str,
        tokens: &cipherdoc_engine::qe_server::CompactionTokens,
    ) -> Result<cipherdoc_engine::qe_server::CompactionStats> {
        self.inner.cleanup(collection, tokens).await
    }
    async fn create_collection(&self, name: &str, options: CreateCollectionOptions) -> Result<()> {
        self.inner.create_collection(name, options).await
    }
    async fn list_collections(&self) -> Result<Vec<String>> {
        self.inner.list_collections().await
    }
    async fn describe_collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        self.inner.describe_collection(name).await
    }
    async fn drop_collection(&self, name: &str) -> Result<bool> {
        self.inner.drop_collection(name).await
    }
    async fn create_index(&self, collection: &str, spec: IndexSpec) -> Result<()> {
        self.inner.create_index(collection, spec).await
    }
    async fn insert_one(&self, collection: &str, doc: Document) -> Result<Bson> {
        self.saw(&doc);
        self.inner.insert_one(collection, doc).await
    }
    async fn insert_many(&self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        for d in &docs {
            self.saw(d);
        }
        self.inner.insert_many(collection, docs).await
    }
    async fn replace_one(&self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        self.saw(&doc);
        self.inner.replace_one(collection, id, doc).await
    }
    async fn delete_one(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.delete_one(collection, filter).await
    }
    async fn delete_many(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.delete_many(collection, filter).await
    }
    async fn find(
        &self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        self.inner.find(collection, filter, options).await
    }
    async fn count(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.count(collection, filter).await
    }
    async fn begin(&self) -> Result<Box<dyn Transaction>> {
        Ok(Box::new(InspectTx {
            inner: self.inner.begin().await?,
            seen: Arc::clone(&self.seen),
        }))
    }
}

/// A transaction of [`Inspect`]: records what its writes send, as the
/// engine does for autocommit writes (save and multi-document writes run in
/// one).
#[derive(Debug)]
struct InspectTx {
    inner: Box<dyn Transaction>,
    seen: Arc<Mutex<Vec<Document>>>,
}

impl InspectTx {
    fn saw(&self, d: &Document) {
        lock(&self.seen).push(d.clone());
    }
}

#[async_trait]
impl Transaction for InspectTx {
    fn qe_state(&mut self) -> Option<&mut dyn cipherdoc_engine::QeState> {
        self.inner.qe_state()
    }
    fn fail_fast(&mut self) {
        self.inner.fail_fast();
    }
    async fn insert_one(&mut self, collection: &str, doc: Document) -> Result<Bson> {
        self.saw(&doc);
        self.inner.insert_one(collection, doc).await
    }
    async fn insert_many(&mut self, collection: &str, docs: Vec<Document>) -> Result<Vec<Bson>> {
        for d in &docs {
            self.saw(d);
        }
        self.inner.insert_many(collection, docs).await
    }
    async fn replace_one(&mut self, collection: &str, id: &Bson, doc: Document) -> Result<bool> {
        self.saw(&doc);
        self.inner.replace_one(collection, id, doc).await
    }
    async fn delete_one(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.delete_one(collection, filter).await
    }
    async fn delete_many(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.delete_many(collection, filter).await
    }
    async fn find(
        &mut self,
        collection: &str,
        filter: &Filter,
        options: &FindOptions,
    ) -> Result<Vec<Document>> {
        self.inner.find(collection, filter, options).await
    }
    async fn count(&mut self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner.count(collection, filter).await
    }
    async fn describe_collection(&mut self, name: &str) -> Result<Option<CollectionInfo>> {
        self.inner.describe_collection(name).await
    }
    async fn commit(self: Box<Self>) -> Result<()> {
        self.inner.commit().await
    }
    async fn rollback(self: Box<Self>) -> Result<()> {
        self.inner.rollback().await
    }
}

/// Every string in `v`, at any depth.
fn strings<'a>(v: &'a Bson, out: &mut Vec<&'a str>) {
    match v {
        Bson::String(s) => out.push(s),
        Bson::Document(d) => d.values().for_each(|x| strings(x, out)),
        Bson::Array(a) => a.iter().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn value_at<'d>(d: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut cur = d.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(x) => x.get(p)?,
            _ => return None,
        };
    }
    Some(cur)
}

// ---------------------------------------------------------------------------

async fn run_case(
    shapes: Vec<Shape>,
    coll: Collection,
    register: bool,
) -> std::result::Result<(), TestCaseError> {
    let mut slots = Vec::new();
    let (mut fields, doc) = build(&shapes, &mut slots);
    let mut id = FieldSchema::new("_id", FieldKind::ObjectId, "objectId");
    id.primary_key = true;
    fields.insert(0, id);
    let mut schema = ModelSchema::new("prop", "Dyn", "prop_dyn");
    schema.fields = fields;
    let schema: &'static ModelSchema = Box::leak(Box::new(schema));
    *lock(&SLOTS) = slots;
    *lock(&SCHEMA) = Some(schema);
    let valid = schema.validate().is_ok();
    let paths = schema.encrypted_paths();

    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = App::open(common::settings(dir.path(), "prop", "encrypted"))
        .await
        .unwrap()
        .map_engines(|_, inner| {
            Arc::new(Inspect {
                inner,
                seen: Arc::clone(&seen),
            })
        });
    let app = if register {
        let Ok(a) = app.register::<Dyn>() else {
            prop_assert!(!valid);
            return Ok(());
        };
        a
    } else {
        app
    };

    // The collection.
    let db = app.database("encrypted").unwrap();
    let enc = db.encryption().unwrap();
    let mut entries = Vec::new();
    for p in &paths {
        let key = enc
            .keys()
            .create_data_key(enc.master_key_for(None).unwrap(), vec![])
            .await
            .unwrap();
        let mut e = p.to_document();
        e.insert("keyId", key.to_binary());
        entries.push(e);
    }
    let mut covered = true;
    match coll {
        Collection::Matching | Collection::Missing(_) | Collection::Weakened(_)
            if entries.is_empty() => {}
        Collection::Matching => {}
        Collection::Missing(n) if !entries.is_empty() => {
            entries.remove(n % paths.len());
            covered = false;
        }
        Collection::Weakened(n) if !entries.is_empty() => {
            let e = &mut entries[n % paths.len()];
            match e.get_document_mut("queries") {
                Ok(q) => {
                    let c = q.get_i64("contention").unwrap_or(8);
                    q.insert("contention", if c == 0 { 1_i64 } else { c - 1 });
                }
                Err(_) => {
                    e.insert("queries", doc! {"queryType": "equality"});
                }
            }
            covered = false;
        }
        Collection::Missing(_) | Collection::Weakened(_) => unreachable!(),
        Collection::Plain | Collection::Absent => covered = paths.is_empty(),
    }
    let options = match coll {
        Collection::Plain => Some(CreateCollectionOptions::default()),
        Collection::Absent => None,
        // No encrypted path left: a plain collection (and not covered when
        // the model has one).
        _ if entries.is_empty() => Some(CreateCollectionOptions::default()),
        _ => Some(CreateCollectionOptions {
            encrypted_fields: Some(doc! {
                "fields": entries.into_iter().map(Bson::Document).collect::<Vec<_>>()
            }),
        }),
    };
    if let Some(o) = options {
        db.engine().create_collection("prop_dyn", o).await.unwrap();
    }

    // Every write path.
    let objects = app.objects::<Dyn>();
    let m = || Dyn {
        id: ObjectId::new(),
        doc: doc.clone(),
    };
    let results = [
        objects.create(m()).await.map(|_| ()),
        objects.bulk_create(vec![m(), m()]).await.map(|_| ()),
        objects.save(&m()).await,
    ];
    let sent: Vec<Document> = std::mem::take(&mut *lock(&seen));
    for r in &results {
        match r {
            Ok(()) => prop_assert!(valid && covered, "a write went through: {coll:?}"),
            Err(Error::EncryptedFieldNotCovered { .. }) => prop_assert!(!covered),
            Err(Error::Model(ModelError::InvalidSchema { .. })) => prop_assert!(!valid),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
    if results.iter().all(Result::is_err) {
        prop_assert!(sent.is_empty(), "a refused write reached the engine");
    }
    for d in &sent {
        let whole = Bson::Document(d.clone());
        let mut found = Vec::new();
        strings(&whole, &mut found);
        prop_assert!(
            !found.iter().any(|s| s.contains(MARK)),
            "plaintext of an encrypted field reached the engine: {d}"
        );
        for p in &paths {
            let v = value_at(d, &p.path);
            prop_assert!(
                matches!(v, Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Encrypted),
                "no ciphertext at {}",
                p.path
            );
        }
    }
    if valid && covered {
        // create 1, bulk_create 2, save: a replace that finds nothing, then
        // an insert.
        prop_assert_eq!(sent.len(), 5);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn no_plaintext_of_an_encrypted_field_reaches_an_engine(
        shapes in prop::collection::vec(shape(), 1..4)
            .prop_filter("at most 16 embedded models", |s| embedded_count(s) <= 16),
        coll in collection(),
        register in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_case(shapes, coll, register))?;
    }
}
