//! The engine contract suite: every engine must pass it unchanged.
//!
//! Instantiate it in an engine's integration tests with
//! [`engine_contract_tests!`](crate::engine_contract_tests), giving an async
//! function that returns a fresh, empty engine:
//!
//! ```ignore
//! async fn fresh() -> SqliteEngine { SqliteEngine::temporary().unwrap() }
//! cipherdoc_engine::engine_contract_tests!(fresh);
//! ```
//!
//! An engine whose database server plays the QE server role (MongoDB)
//! runs `engine_contract_tests!(server_role: fresh)`: the checks of the
//! ESC/ECOC storage and of the tag index, which such an engine does not
//! have, are left out, and the others skip their QE-state steps.
//!
//! or call [`run_all`]. Each check takes an `Arc<dyn Engine>` (which also
//! proves the trait is object-safe) and panics on failure, like any test.
//! Expectations come from hand-written MongoDB semantics and from the
//! in-memory evaluator [`Filter::matches`] as the oracle.

// This module is a test suite shipped in the library so that other engine
// crates can run it; failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use bson::{Binary, Bson, Document, doc, oid::ObjectId, spec::BinarySubtype};

use crate::key_vault::{KEY_ALT_NAMES_INDEX, ensure_key_vault};
use crate::{
    CreateCollectionOptions, EcocEntry, Engine, EngineError, EscEntry, EscId, EscValue,
    FailedOperation, Filter, FindOptions, IndexSpec, QeRole, QeState, SortDirection, Tag,
    Transaction,
};

/// Instantiate one `#[tokio::test]` per contract check. `$make` is an async
/// function (or closure returning a future) producing a fresh engine. The
/// calling crate needs tokio with the `macros` and `rt-multi-thread`
/// features as a dev-dependency.
#[macro_export]
macro_rules! engine_contract_tests {
    // Engines of `QeRole::Server` (MongoDB): no ESC/ECOC state or tag
    // index of their own to check.
    (server_role: $make:expr) => {
        $crate::engine_contract_tests!(@each $make;
            crud, catalog, filters_every_operator_every_type, filter_semantics,
            sort_skip_limit_projection, indexes, two_sided_ranges, key_vault, transactions,
            transact_runs_one_transaction, fail_fast_transactions, random_filters, concurrent_writers);
    };
    ($make:expr) => {
        $crate::engine_contract_tests!(@each $make;
            crud, catalog, filters_every_operator_every_type, filter_semantics,
            sort_skip_limit_projection, indexes, two_sided_ranges, key_vault, transactions,
            transact_runs_one_transaction, fail_fast_transactions, drop_removes_state, qe_state,
            tag_index, random_filters, concurrent_writers);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let engine = ($make)().await;
                $crate::contract::$name(::std::sync::Arc::new(engine)).await;
            }
        )*
    };
}

/// Run every check, each on a fresh engine from `make`.
pub async fn run_all<E, F, Fut>(make: F)
where
    E: Engine + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = E>,
{
    macro_rules! each {
        ($($name:ident),*) => { $( $name(Arc::new(make().await)).await; )* };
    }
    each!(
        crud,
        catalog,
        filters_every_operator_every_type,
        filter_semantics,
        sort_skip_limit_projection,
        indexes,
        two_sided_ranges,
        key_vault,
        transactions,
        transact_runs_one_transaction,
        fail_fast_transactions,
        drop_removes_state,
        qe_state,
        tag_index,
        random_filters,
        concurrent_writers
    );
}

fn ids(docs: &[Document]) -> Vec<Bson> {
    docs.iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
        .collect()
}

fn all() -> FindOptions {
    FindOptions::default()
}

/// `find`, checked against `find_raw`: the same documents in the same order
/// (compared as bytes, so that a NaN equals itself), or both refused.
async fn find_checked(
    engine: &dyn Engine,
    collection: &str,
    filter: &Filter,
    options: &FindOptions,
) -> crate::Result<Vec<Document>> {
    let (f, o) = (filter, options);
    let found = engine.find(collection, f, o).await;
    match (&found, engine.find_raw(collection, f, o).await) {
        (Ok(docs), Ok(raw)) => {
            let docs: Vec<Vec<u8>> = docs.iter().map(|d| bson::to_vec(d).unwrap()).collect();
            let raw: Vec<&[u8]> = raw.iter().map(|r| r.as_bytes()).collect();
            assert_eq!(raw, docs, "find_raw of {f:?} with {o:?}");
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("find of {f:?} with {o:?} gave {a:?} but find_raw {b:?}"),
    }
    found
}

async fn find_ids(e: &dyn Engine, c: &str, f: &Filter) -> BTreeSet<String> {
    find_checked(e, c, f, &all())
        .await
        .unwrap()
        .iter()
        .map(|d| d.get("_id").unwrap().to_string())
        .collect()
}

/// A value of every BSON type (several per numeric type).
pub fn sample_values() -> Vec<Bson> {
    let bin = |b: &[u8]| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b.to_vec(),
        })
    };
    vec![
        Bson::MinKey,
        Bson::Null,
        Bson::Int32(-3),
        Bson::Int32(1),
        Bson::Int64(1),
        Bson::Int64(7),
        Bson::Double(1.0),
        Bson::Double(2.5),
        Bson::Double(f64::NAN),
        Bson::Decimal128("7".parse().unwrap()),
        Bson::String("abc".into()),
        Bson::String("b".into()),
        Bson::Symbol("b".into()),
        Bson::Document(doc! {"x": 1}),
        Bson::Array(vec![Bson::Int32(1), Bson::String("b".into())]),
        Bson::Array(vec![]),
        bin(&[1, 2]),
        bin(&[3]),
        Bson::ObjectId(ObjectId::from_bytes([7; 12])),
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::DateTime(bson::DateTime::from_millis(1_000)),
        Bson::Timestamp(bson::Timestamp {
            time: 5,
            increment: 1,
        }),
        Bson::RegularExpression(bson::Regex {
            pattern: "^a".into(),
            options: "i".into(),
        }),
        Bson::JavaScriptCode("f()".into()),
        Bson::MaxKey,
    ]
}

/// Insert, find, replace, delete, count; `_id` handling and errors.
pub async fn crud(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    assert!(
        find_checked(e, "nothing", &Filter::all(), &all())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(e.count("nothing", &Filter::all()).await.unwrap(), 0);

    let id = e.insert_one("c", doc! {"a": 1}).await.unwrap();
    assert!(matches!(id, Bson::ObjectId(_)));
    let got = e
        .find_one("c", &Filter::eq("_id", id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.keys().next().map(String::as_str),
        Some("_id"),
        "_id comes first"
    );
    assert_eq!(got.get("a"), Some(&Bson::Int32(1)));

    let ids2 = e
        .insert_many(
            "c",
            vec![doc! {"_id": 10, "a": 2}, doc! {"_id": "s", "a": 3}],
        )
        .await
        .unwrap();
    assert_eq!(ids2, vec![Bson::Int32(10), Bson::String("s".into())]);
    assert_eq!(e.count("c", &Filter::all()).await.unwrap(), 3);

    // Duplicate _id (1 and 1.0 and 10i64 are the same key, as in MongoDB).
    let err = e.insert_one("c", doc! {"_id": 10_i64}).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::DuplicateKey { collection, index, .. } if collection == "c" && index == "_id_"),
        "{err}"
    );
    // insert_many is all or nothing.
    let err = e
        .insert_many("c", vec![doc! {"_id": 11}, doc! {"_id": 10.0}])
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::DuplicateKey { .. }));
    assert_eq!(e.count("c", &Filter::eq("_id", 11)).await.unwrap(), 0);
    assert!(matches!(
        e.insert_one("c", doc! {"_id": [1]}).await.unwrap_err(),
        EngineError::InvalidDocument { .. }
    ));

    assert!(
        e.replace_one("c", &Bson::Int32(10), doc! {"a": 20, "b": true})
            .await
            .unwrap()
    );
    let got = e
        .find_one("c", &Filter::eq("_id", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, doc! {"_id": 10, "a": 20, "b": true});
    assert!(
        !e.replace_one("c", &Bson::Int32(99), doc! {"a": 1})
            .await
            .unwrap()
    );
    assert!(matches!(
        e.replace_one("c", &Bson::Int32(10), doc! {"_id": 11, "a": 1})
            .await
            .unwrap_err(),
        EngineError::InvalidDocument { .. }
    ));

    e.insert_many("c", vec![doc! {"k": 1}, doc! {"k": 1}, doc! {"k": 1}])
        .await
        .unwrap();
    assert_eq!(e.delete_one("c", &Filter::eq("k", 1)).await.unwrap(), 1);
    assert_eq!(e.count("c", &Filter::eq("k", 1)).await.unwrap(), 2);
    assert_eq!(e.delete_many("c", &Filter::eq("k", 1)).await.unwrap(), 2);
    assert_eq!(e.delete_many("c", &Filter::eq("k", 1)).await.unwrap(), 0);
    assert_eq!(e.count("c", &Filter::all()).await.unwrap(), 3);
}

/// Create, list, describe (encryptedFields round trip), drop.
pub async fn catalog(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    let ef = doc! {
        "fields": [{"path": "ssn", "bsonType": "string", "keyId": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] },
                    "queries": {"queryType": "equality", "contention": 8_i64}}]
    };
    e.create_collection(
        "enc",
        CreateCollectionOptions {
            encrypted_fields: Some(ef.clone()),
        },
    )
    .await
    .unwrap();
    e.create_collection("plain", CreateCollectionOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        e.create_collection("plain", CreateCollectionOptions::default())
            .await
            .unwrap_err(),
        EngineError::CollectionExists(_)
    ));
    assert!(matches!(
        e.create_collection("", CreateCollectionOptions::default())
            .await
            .unwrap_err(),
        EngineError::InvalidCollectionName { .. }
    ));
    assert!(matches!(
        e.create_collection("a$b", CreateCollectionOptions::default())
            .await
            .unwrap_err(),
        EngineError::InvalidCollectionName { .. }
    ));
    let bad = doc! {"escCollection": "other.esc", "fields": []};
    assert!(matches!(
        e.create_collection(
            "enc2",
            CreateCollectionOptions {
                encrypted_fields: Some(bad)
            }
        )
        .await
        .unwrap_err(),
        EngineError::InvalidEncryptedFields { .. }
    ));
    assert_eq!(
        e.list_collections().await.unwrap(),
        vec!["enc".to_owned(), "plain".to_owned()]
    );

    let info = e.describe_collection("enc").await.unwrap().unwrap();
    let stored = info.options.encrypted_fields.unwrap();
    assert_eq!(stored.get("fields"), ef.get("fields"));
    assert_eq!(stored.get_str("escCollection").unwrap(), "enxcol_.enc.esc");
    assert_eq!(
        stored.get_str("ecocCollection").unwrap(),
        "enxcol_.enc.ecoc"
    );
    let plain = e.describe_collection("plain").await.unwrap().unwrap();
    assert_eq!(plain.options.encrypted_fields, None);
    assert!(e.describe_collection("nope").await.unwrap().is_none());

    assert!(e.drop_collection("enc").await.unwrap());
    assert!(!e.drop_collection("enc").await.unwrap());
    assert_eq!(
        e.list_collections().await.unwrap(),
        vec!["plain".to_owned()]
    );
    // Re-creatable after drop.
    e.create_collection(
        "enc",
        CreateCollectionOptions {
            encrypted_fields: Some(ef),
        },
    )
    .await
    .unwrap();
}

async fn oracle_check(e: &dyn Engine, c: &str, docs: &[Document], f: &Filter) {
    let want: BTreeSet<String> = docs
        .iter()
        .filter(|d| f.matches(d))
        .map(|d| d.get("_id").unwrap().to_string())
        .collect();
    let got = find_ids(e, c, f).await;
    assert_eq!(got, want, "filter {f:?}");
    assert_eq!(
        e.count(c, f).await.unwrap(),
        want.len() as u64,
        "count {f:?}"
    );
}

/// Every operator with every sample value as operand, against documents
/// holding every sample value (bare, in an array, nested, missing), without
/// and then with an index on the path. The evaluator is the oracle.
pub async fn filters_every_operator_every_type(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    let samples = sample_values();
    let mut docs = Vec::new();
    for (i, v) in samples.iter().enumerate() {
        let i = i32::try_from(i).unwrap();
        docs.push(doc! {"_id": i, "v": v.clone(), "n": {"v": v.clone()}});
        docs.push(doc! {"_id": 1000 + i, "v": [v.clone(), 42], "n": [{"v": v.clone()}, {"w": 1}]});
    }
    docs.push(doc! {"_id": -1});
    docs.push(doc! {"_id": -2, "v": Bson::Undefined});
    e.insert_many("t", docs.clone()).await.unwrap();
    for round in 0..2 {
        if round == 1 {
            e.create_index("t", IndexSpec::new("v")).await.unwrap();
            e.create_index("t", IndexSpec::new("n.v")).await.unwrap();
        }
        for path in ["v", "n.v"] {
            for x in &samples {
                for f in [
                    Filter::eq(path, x.clone()),
                    Filter::ne(path, x.clone()),
                    Filter::lt(path, x.clone()),
                    Filter::lte(path, x.clone()),
                    Filter::gt(path, x.clone()),
                    Filter::gte(path, x.clone()),
                    Filter::is_in(path, [x.clone(), Bson::Int32(42)]),
                    Filter::not_in(path, [x.clone()]),
                    Filter::gt(path, x.clone()).not(),
                ] {
                    oracle_check(e, "t", &docs, &f).await;
                }
            }
            // Prefixes (with the index, a key-range scan): the sample
            // strings "abc" and "b", the symbol "b" (never a match), arrays.
            for p in ["", "a", "ab", "abc", "abcd", "b", "c", "\0"] {
                oracle_check(e, "t", &docs, &Filter::starts_with(path, p)).await;
                oracle_check(e, "t", &docs, &Filter::starts_with(path, p).not()).await;
            }
            for f in [Filter::exists(path), Filter::missing(path)] {
                oracle_check(e, "t", &docs, &f).await;
            }
        }
    }
}

/// Hand-written MongoDB expectations (not the oracle): type bracketing,
/// array matching, null/missing, numbers across types, logical operators.
pub async fn filter_semantics(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.insert_many(
        "s",
        vec![
            doc! {"_id": 1, "a": 5},
            doc! {"_id": 2, "a": 5.0},
            doc! {"_id": 3, "a": "5"},
            doc! {"_id": 4, "a": [1, 9]},
            doc! {"_id": 5, "a": null},
            doc! {"_id": 6},
            doc! {"_id": 7, "a": [{"b": 1}, {"b": 2}]},
            doc! {"_id": 8, "a": {"b": 2}},
            doc! {"_id": 9, "a": Bson::Int64(5)},
            doc! {"_id": 10, "a": Bson::Decimal128("5.0".parse().unwrap())},
        ],
    )
    .await
    .unwrap();
    let q = |d: Document| async move {
        let f = Filter::parse(&d).unwrap();
        let mut v: Vec<i32> = ids(&find_checked(e, "s", &f, &all()).await.unwrap())
            .into_iter()
            .map(|b| b.as_i32().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        q(doc! {"a": 5}).await,
        vec![1, 2, 9, 10],
        "numbers equal across types"
    );
    assert_eq!(
        q(doc! {"a": {"$gt": 4}}).await,
        vec![1, 2, 4, 9, 10],
        "bracketing excludes \"5\""
    );
    assert_eq!(q(doc! {"a": {"$gt": "4"}}).await, vec![3]);
    assert_eq!(
        q(doc! {"a": {"$gt": 4, "$lt": 2}}).await,
        vec![4],
        "each element may satisfy one bound"
    );
    assert_eq!(q(doc! {"a": [1, 9]}).await, vec![4], "whole-array equality");
    assert_eq!(q(doc! {"a": 9}).await, vec![4], "element equality");
    assert_eq!(
        q(doc! {"a.b": 2}).await,
        vec![7, 8],
        "path through array of documents"
    );
    assert_eq!(
        q(doc! {"a": null}).await,
        vec![5, 6],
        "null matches missing"
    );
    assert_eq!(q(doc! {"a.b": null}).await, vec![1, 2, 3, 4, 5, 6, 9, 10]);
    assert_eq!(q(doc! {"a": {"$exists": false}}).await, vec![6]);
    assert_eq!(q(doc! {"a": {"$ne": 5}}).await, vec![3, 4, 5, 6, 7, 8]);
    assert_eq!(q(doc! {"a": {"$nin": [5, null]}}).await, vec![3, 4, 7, 8]);
    assert_eq!(q(doc! {"a": {"$in": ["5", 1]}}).await, vec![3, 4]);
    assert_eq!(
        q(doc! {"a": {"$not": {"$gte": 5}}}).await,
        vec![3, 5, 6, 7, 8]
    );
    assert_eq!(q(doc! {"$or": [{"a": "5"}, {"_id": 1}]}).await, vec![1, 3]);
    assert_eq!(
        q(doc! {"$and": [{"a": {"$gte": 1}}, {"a": {"$lte": 1}}]}).await,
        vec![4]
    );
    assert_eq!(q(doc! {"$nor": [{"a": {"$exists": true}}]}).await, vec![6]);
    assert_eq!(
        q(doc! {"a.1": 9}).await,
        vec![4],
        "numeric path component indexes arrays"
    );
    assert_eq!(
        q(doc! {"a": {"$gt": Bson::MinKey}}).await,
        vec![1, 2, 3, 4, 5, 7, 8, 9, 10],
        "MinKey compares with every present value"
    );
    assert!(
        Filter::parse(&doc! {"a": {"$size": 1}}).is_err(),
        "unknown operators are typed errors"
    );
}

/// Sort (mixed types, arrays by min/max), skip, limit, projection.
pub async fn sort_skip_limit_projection(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.insert_many(
        "o",
        vec![
            doc! {"_id": 1, "k": 3, "p": {"x": 1, "y": 2}, "z": 0},
            doc! {"_id": 2, "k": "a"},
            doc! {"_id": 3, "k": 1.5},
            doc! {"_id": 4, "k": [10, 0]},
            doc! {"_id": 5},
            doc! {"_id": 6, "k": Bson::Int64(2)},
        ],
    )
    .await
    .unwrap();
    let sorted = |dir, skip, limit| async move {
        let o = FindOptions {
            sort: vec![("k".into(), dir)],
            skip,
            limit,
            projection: None,
        };
        ids(&find_checked(e, "o", &Filter::all(), &o).await.unwrap())
            .into_iter()
            .map(|b| b.as_i32().unwrap())
            .collect::<Vec<_>>()
    };
    // Ascending: missing(null) < numbers (array by its min 0) < string.
    assert_eq!(
        sorted(SortDirection::Ascending, 0, None).await,
        vec![5, 4, 3, 6, 1, 2]
    );
    // Descending: string > array by its max 10 > 3 > 2 > 1.5 > missing.
    assert_eq!(
        sorted(SortDirection::Descending, 0, None).await,
        vec![2, 4, 1, 6, 3, 5]
    );
    assert_eq!(
        sorted(SortDirection::Ascending, 2, Some(2)).await,
        vec![3, 6]
    );
    assert_eq!(
        sorted(SortDirection::Ascending, 10, None).await,
        Vec::<i32>::new()
    );
    let unsorted = FindOptions {
        limit: Some(2),
        skip: 1,
        ..all()
    };
    assert_eq!(
        ids(&find_checked(e, "o", &Filter::all(), &unsorted)
            .await
            .unwrap()),
        vec![Bson::Int32(2), Bson::Int32(3)]
    );
    let zero = FindOptions {
        limit: Some(0),
        ..all()
    };
    assert!(
        find_checked(e, "o", &Filter::all(), &zero)
            .await
            .unwrap()
            .is_empty()
    );

    let proj = |p: Document| FindOptions {
        projection: Some(p),
        ..all()
    };
    let one = Filter::eq("_id", 1);
    assert_eq!(
        find_checked(e, "o", &one, &proj(doc! {"p.x": 1}))
            .await
            .unwrap(),
        vec![doc! {"_id": 1, "p": {"x": 1}}]
    );
    assert_eq!(
        find_checked(e, "o", &one, &proj(doc! {"k": 1, "_id": 0}))
            .await
            .unwrap(),
        vec![doc! {"k": 3}]
    );
    assert_eq!(
        find_checked(e, "o", &one, &proj(doc! {"p.y": 0, "z": 0}))
            .await
            .unwrap(),
        vec![doc! {"_id": 1, "k": 3, "p": {"x": 1}}]
    );
    assert!(matches!(
        find_checked(e, "o", &one, &proj(doc! {"k": 1, "z": 0}))
            .await
            .unwrap_err(),
        EngineError::InvalidProjection(_)
    ));
}

/// A range with both bounds on an indexed path: exact on scalars, and
/// still exact once a document meets each bound with another array element
/// (the index is then multikey and the bounds cannot be intersected),
/// whether the array came by insert, by replace, or was there before the
/// index.
pub async fn two_sided_ranges(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    let sorted_ids = |c: &'static str, f: Filter| async move {
        let mut v: Vec<i32> = ids(&find_checked(e, c, &f, &all()).await.unwrap())
            .into_iter()
            .map(|b| b.as_i32().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    let between = |p: &str| Filter::and([Filter::gt(p, 10), Filter::lte(p, 20)]);
    e.create_index("w", IndexSpec::new("a")).await.unwrap();
    e.insert_many("w", (0..50).map(|i| doc! {"_id": i, "a": i}).collect())
        .await
        .unwrap();
    assert_eq!(
        sorted_ids("w", between("a")).await,
        (11..=20).collect::<Vec<_>>()
    );
    // Bounds in either order, and a bound of another type left alone.
    let reversed = Filter::and([Filter::lte("a", 20), Filter::gt("a", 10)]);
    assert_eq!(sorted_ids("w", reversed).await.len(), 10);
    let mixed = Filter::and([Filter::gt("a", 10), Filter::lt("a", "z")]);
    assert!(sorted_ids("w", mixed).await.is_empty());
    // 40 > 10 and 0 <= 20: a match through two elements.
    e.insert_one("w", doc! {"_id": 100, "a": [0, 40]})
        .await
        .unwrap();
    let mut want: Vec<i32> = (11..=20).collect();
    want.push(100);
    assert_eq!(sorted_ids("w", between("a")).await, want);

    e.insert_one("w2", doc! {"_id": 1, "b": 5}).await.unwrap();
    e.create_index("w2", IndexSpec::new("b")).await.unwrap();
    assert!(sorted_ids("w2", between("b")).await.is_empty());
    assert!(
        e.replace_one("w2", &Bson::Int32(1), doc! {"b": [0, 40]})
            .await
            .unwrap()
    );
    assert_eq!(sorted_ids("w2", between("b")).await, vec![1]);

    e.insert_many(
        "w3",
        vec![doc! {"_id": 1, "c": [1, 30]}, doc! {"_id": 2, "c": 15}],
    )
    .await
    .unwrap();
    e.create_index("w3", IndexSpec::new("c")).await.unwrap();
    assert_eq!(sorted_ids("w3", between("c")).await, vec![1, 2]);
}

/// Secondary indexes: used results equal unindexed ones; unique violations
/// are typed and name collection, index and key.
pub async fn indexes(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.create_index("u", IndexSpec::new("email").unique())
        .await
        .unwrap();
    e.create_index("u", IndexSpec::new("email").unique())
        .await
        .unwrap(); // idempotent
    assert!(matches!(
        e.create_index("u", IndexSpec::new("email"))
            .await
            .unwrap_err(),
        EngineError::InvalidIndex { .. }
    ));
    e.insert_one("u", doc! {"_id": 1, "email": "a@x"})
        .await
        .unwrap();
    e.insert_one("u", doc! {"_id": 2, "email": "b@x"})
        .await
        .unwrap();
    let err = e
        .insert_one("u", doc! {"_id": 3, "email": "a@x"})
        .await
        .unwrap_err();
    match &err {
        EngineError::DuplicateKey {
            collection,
            index,
            key,
        } => {
            assert_eq!((collection.as_str(), index.as_str()), ("u", "email_1"));
            assert!(key.contains("a@x"), "{key}");
        }
        other => panic!("expected DuplicateKey, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("\"u\"") && msg.contains("email_1") && msg.contains("a@x"),
        "{msg}"
    );
    assert_eq!(
        e.count("u", &Filter::all()).await.unwrap(),
        2,
        "failed insert left nothing"
    );
    // Replace into a taken key fails and keeps the old document and its key.
    assert!(
        e.replace_one("u", &Bson::Int32(2), doc! {"email": "a@x"})
            .await
            .is_err()
    );
    assert_eq!(find_ids(e, "u", &Filter::eq("email", "b@x")).await.len(), 1);
    // Replace to a free key releases the old one.
    assert!(
        e.replace_one("u", &Bson::Int32(2), doc! {"email": "c@x"})
            .await
            .unwrap()
    );
    e.insert_one("u", doc! {"_id": 4, "email": "b@x"})
        .await
        .unwrap();
    // Deleting releases a key too.
    e.delete_one("u", &Filter::eq("_id", 1)).await.unwrap();
    e.insert_one("u", doc! {"_id": 5, "email": "a@x"})
        .await
        .unwrap();
    // Non-sparse unique: one missing value (indexed as null) only.
    e.insert_one("u", doc! {"_id": 6}).await.unwrap();
    assert!(matches!(
        e.insert_one("u", doc! {"_id": 7}).await.unwrap_err(),
        EngineError::DuplicateKey { .. }
    ));

    // Building a unique index over duplicates fails and creates nothing.
    e.insert_many("d", vec![doc! {"k": 1}, doc! {"k": 1.0}])
        .await
        .unwrap();
    assert!(matches!(
        e.create_index("d", IndexSpec::new("k").unique())
            .await
            .unwrap_err(),
        EngineError::DuplicateKey { .. }
    ));
    assert!(
        e.describe_collection("d")
            .await
            .unwrap()
            .unwrap()
            .indexes
            .is_empty()
    );
    e.create_index("d", IndexSpec::new("k")).await.unwrap();
    assert_eq!(e.count("d", &Filter::eq("k", 1_i64)).await.unwrap(), 2);
    assert_eq!(
        e.describe_collection("d").await.unwrap().unwrap().indexes,
        vec![IndexSpec::new("k")]
    );

    // Multikey unique: elements are unique across documents, not within one.
    e.create_index("m", IndexSpec::new("tags").unique())
        .await
        .unwrap();
    e.insert_one("m", doc! {"tags": ["a", "b", "a"]})
        .await
        .unwrap();
    assert!(e.insert_one("m", doc! {"tags": ["c", "b"]}).await.is_err());
    e.insert_one("m", doc! {"tags": ["c"]}).await.unwrap();
}

/// The key vault collection: unique `keyAltNames`, keys without one ignored.
pub async fn key_vault(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    ensure_key_vault(e, "__keyVault").await.unwrap();
    ensure_key_vault(e, "__keyVault").await.unwrap();
    let info = e.describe_collection("__keyVault").await.unwrap().unwrap();
    assert_eq!(info.indexes[0].name, KEY_ALT_NAMES_INDEX);
    e.insert_one("__keyVault", doc! {"_id": 1}).await.unwrap();
    e.insert_one("__keyVault", doc! {"_id": 2}).await.unwrap();
    e.insert_one(
        "__keyVault",
        doc! {"_id": 3, "keyAltNames": ["p.ssn", "p.x"]},
    )
    .await
    .unwrap();
    let err = e
        .insert_one("__keyVault", doc! {"_id": 4, "keyAltNames": ["p.y", "p.x"]})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::DuplicateKey { index, key, .. } if index == KEY_ALT_NAMES_INDEX && key.contains("p.x")),
        "{err}"
    );
    e.insert_one("__keyVault", doc! {"_id": 5, "keyAltNames": ["p.y"]})
        .await
        .unwrap();
    let found = e
        .find_one("__keyVault", &Filter::eq("keyAltNames", "p.ssn"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.get("_id"), Some(&Bson::Int32(3)));
    assert_eq!(
        e.count("__keyVault", &Filter::eq("keyAltNames", Bson::Null))
            .await
            .unwrap(),
        2
    );
}

/// The transaction's ESC/ECOC storage: present exactly on engines whose QE
/// role cipherdoc plays ([`QeRole::Client`]).
fn state<'t>(e: &dyn Engine, tx: &'t mut dyn Transaction) -> Option<&'t mut dyn QeState> {
    let st = tx.qe_state();
    assert_eq!(
        st.is_some(),
        e.qe_role() == QeRole::Client,
        "QE state exactly on engines whose QE role the client plays"
    );
    st
}

/// Commit, rollback, drop-without-commit, atomic failed operations (or, on
/// engines whose failures end the transaction, that they do).
pub async fn transactions(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.create_collection(
        "t",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();

    let mut tx = e.begin().await.unwrap();
    tx.insert_one("t", doc! {"_id": 1}).await.unwrap();
    assert_eq!(
        tx.count("t", &Filter::all()).await.unwrap(),
        1,
        "reads own writes"
    );
    let raw = tx.find_raw("t", &Filter::all(), &all()).await.unwrap();
    assert_eq!(
        raw.iter()
            .map(|r| crate::decode_raw("t", r).unwrap())
            .collect::<Vec<_>>(),
        vec![doc! {"_id": 1}],
        "find_raw reads own writes"
    );
    tx.commit().await.unwrap();
    assert_eq!(e.count("t", &Filter::all()).await.unwrap(), 1);

    let mut tx = e.begin().await.unwrap();
    tx.insert_one("t", doc! {"_id": 2}).await.unwrap();
    tx.insert_one("new_coll", doc! {"_id": 2}).await.unwrap();
    if let Some(st) = state(e, &mut *tx) {
        st.esc_insert("t", &EscId::from_bytes([1; 32]), None)
            .await
            .unwrap();
        st.ecoc_append("t", "f", b"p").await.unwrap();
    }
    tx.delete_many("t", &Filter::eq("_id", 1)).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(find_ids(e, "t", &Filter::all()).await.len(), 1);
    assert_eq!(e.count("t", &Filter::eq("_id", 1)).await.unwrap(), 1);
    assert!(e.describe_collection("new_coll").await.unwrap().is_none());

    {
        let mut tx = e.begin().await.unwrap();
        tx.insert_one("t", doc! {"_id": 3}).await.unwrap();
        // dropped here without commit
    }
    assert_eq!(e.count("t", &Filter::eq("_id", 3)).await.unwrap(), 0);

    let mut tx = e.begin().await.unwrap();
    if let Some(st) = state(e, &mut *tx) {
        assert_eq!(
            st.esc_count("t").await.unwrap(),
            0,
            "rolled back ESC row is gone"
        );
        assert_eq!(
            st.ecoc_count("t").await.unwrap(),
            0,
            "rolled back ECOC row is gone"
        );
    }
    tx.insert_one("t", doc! {"_id": 4}).await.unwrap();
    let err = tx
        .insert_many("t", vec![doc! {"_id": 5}, doc! {"_id": 1}])
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::DuplicateKey { .. }), "{err:?}");
    if e.failed_operation() == FailedOperation::UndoneAlone {
        // A failing operation is atomic and leaves the transaction usable.
        assert_eq!(tx.count("t", &Filter::eq("_id", 5)).await.unwrap(), 0);
    } else {
        {
            // It ends the transaction: nothing more runs, nothing commits.
            let next = tx.count("t", &Filter::all()).await;
            assert!(
                matches!(next, Err(EngineError::TransactionClosed(_))),
                "{next:?}"
            );
            let commit = tx.commit().await;
            assert!(
                matches!(commit, Err(EngineError::TransactionClosed(_))),
                "{commit:?}"
            );
            assert_eq!(e.count("t", &Filter::eq("_id", 4)).await.unwrap(), 0);
            tx = e.begin().await.unwrap();
            tx.insert_one("t", doc! {"_id": 4}).await.unwrap();
        }
    }
    tx.insert_one("t", doc! {"_id": 6}).await.unwrap();
    assert!(
        tx.describe_collection("t")
            .await
            .unwrap()
            .unwrap()
            .options
            .encrypted_fields
            .is_some()
    );
    tx.commit().await.unwrap();
    let mut got: Vec<_> = find_ids(e, "t", &Filter::all()).await.into_iter().collect();
    got.sort();
    assert_eq!(got, vec!["1", "4", "6"]);
    // The engine is still writable after all of the above.
    e.insert_one("t", doc! {"_id": 7}).await.unwrap();
}

/// [`Engine::transact`]: the work's writes commit when it returns `Ok` and
/// vanish when it returns `Err` (whose error is passed through unchanged);
/// its typed result comes back; a read sees the committed state; a failed
/// operation inside the work leaves the transaction usable.
pub async fn transact_runs_one_transaction(e: Arc<dyn Engine>) {
    use crate::engine::{TxMode, transact};
    let e = e.as_ref();
    e.create_collection(
        "x",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    let undone_alone = e.failed_operation() == FailedOperation::UndoneAlone;
    let n: u64 = transact(e, TxMode::Write, move |tx| {
        Box::pin(async move {
            tx.insert_one("x", doc! {"_id": 1}).await?;
            if let Some(st) = tx.qe_state() {
                st.esc_insert("x", &EscId::from_bytes([4; 32]), None)
                    .await?;
            }
            if undone_alone {
                // A failing operation is undone alone.
                let dup = tx.insert_one("x", doc! {"_id": 1}).await;
                assert!(matches!(dup, Err(EngineError::DuplicateKey { .. })));
            }
            tx.insert_one("x", doc! {"_id": 2}).await?;
            tx.count("x", &Filter::all()).await
        })
    })
    .await
    .unwrap();
    assert_eq!(n, 2, "the work sees its own writes and returns its value");
    assert_eq!(e.count("x", &Filter::all()).await.unwrap(), 2, "committed");

    let err = transact(e, TxMode::Write, |tx| {
        Box::pin(async move {
            tx.insert_one("x", doc! {"_id": 3}).await?;
            if let Some(st) = tx.qe_state() {
                st.esc_insert("x", &EscId::from_bytes([5; 32]), None)
                    .await?;
            }
            Err::<(), _>(EngineError::NotEncrypted("the work's own error".into()))
        })
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EngineError::NotEncrypted(m) if m == "the work's own error"),
        "{err:?}"
    );
    assert_eq!(e.count("x", &Filter::eq("_id", 3)).await.unwrap(), 0);

    let (docs, esc) = transact(e, TxMode::Read, |tx| {
        Box::pin(async move {
            let docs = tx.count("x", &Filter::all()).await?;
            let esc = match tx.qe_state() {
                Some(st) => Some(
                    st.esc_get_many(
                        "x",
                        &[EscId::from_bytes([4; 32]), EscId::from_bytes([5; 32])],
                    )
                    .await?,
                ),
                None => None,
            };
            Ok((docs, esc))
        })
    })
    .await
    .unwrap();
    assert_eq!(docs, 2);
    assert_eq!(esc.is_some(), e.qe_role() == QeRole::Client);
    if let Some(esc) = esc {
        assert_eq!(
            esc.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, false],
            "the committed ESC row is there, the rolled back one is not"
        );
    }
    // The engine is still writable (the writer was handed back).
    e.insert_one("x", doc! {"_id": 9}).await.unwrap();
}

/// [`crate::Transaction::fail_fast`]: after a failed operation nothing more runs
/// and nothing of the transaction is committed — not its earlier writes,
/// not the failed operation's own partial writes (a batch whose second
/// document is a duplicate) — whether the work goes on to commit or
/// returns the error; the engine stays usable.
pub async fn fail_fast_transactions(e: Arc<dyn Engine>) {
    use crate::engine::{TxMode, transact};

    fn closed<T>(r: &crate::Result<T>) -> bool {
        matches!(r, Err(EngineError::TransactionClosed(_)))
    }
    e.create_collection(
        "f",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    e.insert_one("f", doc! {"_id": 1}).await.unwrap();

    // The work swallows the error and tries to carry on and commit.
    let mut tx = e.begin().await.unwrap();
    tx.fail_fast();
    tx.insert_one("f", doc! {"_id": 2}).await.unwrap();
    if let Some(st) = state(&*e, &mut *tx) {
        st.esc_insert("f", &EscId::from_bytes([6; 32]), None)
            .await
            .unwrap();
    }
    let dup = tx
        .insert_many("f", vec![doc! {"_id": 3}, doc! {"_id": 1}])
        .await;
    assert!(
        matches!(dup, Err(EngineError::DuplicateKey { .. })),
        "{dup:?}"
    );
    let next = tx.insert_one("f", doc! {"_id": 4}).await;
    assert!(closed(&next), "no operation runs after a failure: {next:?}");
    let commit = tx.commit().await;
    assert!(closed(&commit), "commit refuses: {commit:?}");
    assert_eq!(
        find_ids(&*e, "f", &Filter::all()).await,
        BTreeSet::from(["1".to_owned()]),
        "nothing of the transaction was committed"
    );
    let mut read = e.begin_read().await.unwrap();
    if let Some(st) = state(&*e, &mut *read) {
        let esc = st
            .esc_get_many("f", &[EscId::from_bytes([6; 32])])
            .await
            .unwrap();
        assert_eq!(esc, [None], "nor its ESC row");
    }
    drop(read);

    // The same inside `transact`, the work returning the error, and a
    // work that swallows it.
    let err = transact(&*e, TxMode::Write, |tx| {
        Box::pin(async move {
            tx.fail_fast();
            tx.insert_one("f", doc! {"_id": 5}).await?;
            tx.insert_many("f", vec![doc! {"_id": 6}, doc! {"_id": 1}])
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::DuplicateKey { .. }), "{err:?}");
    let swallowed = transact(&*e, TxMode::Write, |tx| {
        Box::pin(async move {
            tx.fail_fast();
            tx.insert_one("f", doc! {"_id": 7}).await?;
            let _ = tx.insert_one("f", doc! {"_id": 1}).await;
            Ok(())
        })
    })
    .await;
    assert!(closed(&swallowed), "{swallowed:?}");
    assert_eq!(
        find_ids(&*e, "f", &Filter::all()).await,
        BTreeSet::from(["1".to_owned()])
    );

    // A fail-fast transaction without failures commits as usual.
    let mut tx = e.begin().await.unwrap();
    tx.fail_fast();
    tx.insert_many("f", vec![doc! {"_id": 8}, doc! {"_id": 9}])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(e.count("f", &Filter::all()).await.unwrap(), 3);
}

fn tag_bin(t: &Tag) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: t.as_bytes().to_vec(),
    })
}

/// Dropping an encrypted collection removes its ESC, ECOC and tag index.
pub async fn drop_removes_state(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    let enc = || CreateCollectionOptions {
        encrypted_fields: Some(doc! {"fields": []}),
    };
    e.create_collection("x", enc()).await.unwrap();
    let t = Tag::from_bytes([9; 32]);
    let mut tx = e.begin().await.unwrap();
    tx.insert_one("x", doc! {"_id": 1, "__safeContent__": [tag_bin(&t)]})
        .await
        .unwrap();
    tx.qe_state()
        .unwrap()
        .esc_insert(
            "x",
            &EscId::from_bytes([1; 32]),
            Some(EscValue(vec![1; 32])),
        )
        .await
        .unwrap();
    tx.qe_state()
        .unwrap()
        .ecoc_append("x", "f", b"v")
        .await
        .unwrap();
    tx.qe_state()
        .unwrap()
        .ecoc_begin_compaction("x")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(e.drop_collection("x").await.unwrap());
    e.create_collection("x", enc()).await.unwrap();
    let mut tx = e.begin().await.unwrap();
    assert_eq!(tx.qe_state().unwrap().esc_count("x").await.unwrap(), 0);
    assert_eq!(tx.qe_state().unwrap().ecoc_count("x").await.unwrap(), 0);
    assert!(
        tx.qe_state()
            .unwrap()
            .ecoc_read_compact("x")
            .await
            .unwrap()
            .is_empty()
    );
    tx.rollback().await.unwrap();
    e.insert_one("x", doc! {"_id": 2}).await.unwrap();
    assert_eq!(e.count("x", &Filter::tag_in([t])).await.unwrap(), 0);
}

/// ESC and ECOC operations, including the duplicate-id conflict.
pub async fn qe_state(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.create_collection(
        "q",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    e.create_collection("plain", CreateCollectionOptions::default())
        .await
        .unwrap();
    let mut tx = e.begin().await.unwrap();
    let st = tx.qe_state().unwrap();
    assert!(matches!(
        st.esc_count("plain").await.unwrap_err(),
        EngineError::NotEncrypted(_)
    ));
    assert!(matches!(
        st.esc_count("missing").await.unwrap_err(),
        EngineError::CollectionNotFound(_)
    ));
    // The per-operation calls too (engines may skip the catalog check on
    // their fast path, but never the typed error).
    for (coll, plain) in [("plain", true), ("missing", false)] {
        let errs = [
            st.esc_get_many(coll, &[EscId::from_bytes([9; 32])])
                .await
                .unwrap_err(),
            st.esc_insert(coll, &EscId::from_bytes([9; 32]), None)
                .await
                .unwrap_err(),
            st.ecoc_append(coll, "f", b"v").await.unwrap_err(),
        ];
        for err in errs {
            assert!(
                if plain {
                    matches!(err, EngineError::NotEncrypted(_))
                } else {
                    matches!(err, EngineError::CollectionNotFound(_))
                },
                "{coll}: {err:?}"
            );
        }
    }

    let id = |b: u8| EscId::from_bytes([b; 32]);
    let val = |b: u8| EscValue(vec![b; 32]);
    st.esc_insert("q", &id(1), None).await.unwrap();
    st.esc_insert("q", &id(2), Some(val(7))).await.unwrap();
    assert!(
        st.esc_has_anchors("q").await.unwrap(),
        "an ESC holding an anchor must never be reported as anchor-free"
    );
    let err = st.esc_insert("q", &id(1), None).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::EscIdConflict { collection } if collection == "q"),
        "{err}"
    );
    // The conflict left the transaction usable.
    assert_eq!(
        st.esc_get("q", &id(1)).await.unwrap(),
        Some(EscEntry { value: None })
    );
    assert_eq!(
        st.esc_get("q", &id(2)).await.unwrap(),
        Some(EscEntry {
            value: Some(val(7))
        })
    );
    assert_eq!(st.esc_get("q", &id(3)).await.unwrap(), None);
    let many = st
        .esc_get_many("q", &[id(3), id(2), id(1), id(2)])
        .await
        .unwrap();
    assert_eq!(
        many,
        vec![
            None,
            Some(EscEntry {
                value: Some(val(7))
            }),
            Some(EscEntry { value: None }),
            Some(EscEntry {
                value: Some(val(7))
            })
        ]
    );
    assert!(st.esc_get_many("q", &[]).await.unwrap().is_empty());
    st.esc_upsert("q", &id(2), Some(val(8))).await.unwrap();
    st.esc_upsert("q", &id(4), Some(val(9))).await.unwrap();
    assert_eq!(
        st.esc_get("q", &id(2)).await.unwrap().unwrap().value,
        Some(val(8))
    );
    assert_eq!(st.esc_count("q").await.unwrap(), 3);
    assert_eq!(st.esc_non_anchor_ids("q").await.unwrap(), vec![id(1)]);
    assert_eq!(
        st.esc_delete_many("q", &[id(1), id(4), id(5)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(st.esc_count("q").await.unwrap(), 1);

    // ECOC and the compaction hand-off.
    st.ecoc_append("q", "a.b", b"one").await.unwrap();
    st.ecoc_append("q", "c", b"two").await.unwrap();
    assert_eq!(st.ecoc_count("q").await.unwrap(), 2);
    assert!(st.ecoc_read_compact("q").await.unwrap().is_empty());
    assert!(st.ecoc_begin_compaction("q").await.unwrap());
    assert_eq!(st.ecoc_count("q").await.unwrap(), 0, "fresh ECOC");
    st.ecoc_append("q", "a.b", b"three").await.unwrap();
    assert!(
        !st.ecoc_begin_compaction("q").await.unwrap(),
        "resume: compact exists"
    );
    assert_eq!(
        st.ecoc_read_compact("q").await.unwrap(),
        vec![
            EcocEntry {
                field_name: "a.b".into(),
                value: b"one".to_vec()
            },
            EcocEntry {
                field_name: "c".into(),
                value: b"two".to_vec()
            }
        ]
    );
    st.ecoc_drop_compact("q").await.unwrap();
    st.ecoc_drop_compact("q").await.unwrap();
    assert!(st.ecoc_read_compact("q").await.unwrap().is_empty());
    assert_eq!(st.ecoc_count("q").await.unwrap(), 1);
    tx.commit().await.unwrap();
}

/// `__safeContent__` tags are found through `Filter::TagIn` and follow
/// replaces and deletes.
pub async fn tag_index(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    e.create_collection(
        "g",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    let t = |b: u8| Tag::from_bytes([b; 32]);
    e.insert_many(
        "g",
        vec![
            doc! {"_id": 1, "__safeContent__": [tag_bin(&t(1)), tag_bin(&t(2))]},
            doc! {"_id": 2, "__safeContent__": [tag_bin(&t(2))]},
            doc! {"_id": 3, "__safeContent__": []},
            doc! {"_id": 4},
        ],
    )
    .await
    .unwrap();
    let hits = |tags: Vec<Tag>| async move {
        let mut v: Vec<_> = find_ids(e, "g", &Filter::tag_in(tags))
            .await
            .into_iter()
            .collect();
        v.sort();
        v
    };
    assert_eq!(hits(vec![t(1)]).await, vec!["1"]);
    assert_eq!(hits(vec![t(2)]).await, vec!["1", "2"]);
    assert_eq!(hits(vec![t(1), t(2), t(3)]).await, vec!["1", "2"]);
    assert!(hits(vec![t(3)]).await.is_empty());
    assert!(hits(vec![]).await.is_empty());
    // Parsed form of the server's rewrite is the same node.
    let parsed = Filter::parse(&doc! {"__safeContent__": {"$in": [tag_bin(&t(1))]}}).unwrap();
    assert_eq!(parsed, Filter::tag_in([t(1)]));
    // Combined with other predicates.
    let f = Filter::and([Filter::tag_in([t(2)]), Filter::ne("_id", 1)]);
    assert_eq!(find_ids(e, "g", &f).await.len(), 1);
    // Replace: the old tag leaves, the new one arrives.
    assert!(
        e.replace_one(
            "g",
            &Bson::Int32(1),
            doc! {"__safeContent__": [tag_bin(&t(3))]}
        )
        .await
        .unwrap()
    );
    assert_eq!(hits(vec![t(1)]).await, Vec::<String>::new());
    assert_eq!(hits(vec![t(3)]).await, vec!["1"]);
    e.delete_one("g", &Filter::eq("_id", 2)).await.unwrap();
    assert!(hits(vec![t(2)]).await.is_empty());
}

/// A small deterministic PRNG (xorshift64*), so the suite needs no RNG crate
/// and every engine sees the same cases.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    /// Next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % (n as u64)).unwrap()
    }
    /// A random element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn small_values() -> Vec<Bson> {
    vec![
        Bson::Null,
        Bson::Int32(1),
        Bson::Int64(2),
        Bson::Double(1.0),
        Bson::Double(2.5),
        Bson::String("a".into()),
        Bson::String("b".into()),
        Bson::Boolean(true),
        Bson::Document(doc! {"c": 1}),
        Bson::Array(vec![Bson::Int32(1), Bson::Int32(3)]),
    ]
}

/// A random document over fields `a`, `b`, `a.c` with small values.
pub fn random_doc(rng: &mut Rng, id: i32) -> Document {
    let vals = small_values();
    let mut d = doc! {"_id": id};
    for f in ["a", "b"] {
        match rng.below(5) {
            0 => {}
            1 => {
                d.insert(
                    f,
                    Bson::Array(vec![rng.pick(&vals).clone(), rng.pick(&vals).clone()]),
                );
            }
            2 => {
                d.insert(f, doc! {"c": rng.pick(&vals).clone()});
            }
            _ => {
                d.insert(f, rng.pick(&vals).clone());
            }
        }
    }
    d
}

/// A random filter of bounded depth over the same paths and values.
pub fn random_filter(rng: &mut Rng, depth: u32) -> Filter {
    let vals = small_values();
    let paths = ["a", "b", "a.c", "b.c", "a.0"];
    let choice = if depth == 0 {
        rng.below(10)
    } else {
        rng.below(14)
    };
    let p = (*rng.pick(&paths)).to_owned();
    let v = rng.pick(&vals).clone();
    match choice {
        0 => Filter::eq(p, v),
        1 => Filter::ne(p, v),
        2 => Filter::lt(p, v),
        3 => Filter::lte(p, v),
        4 => Filter::gt(p, v),
        5 => Filter::gte(p, v),
        6 => Filter::is_in(p, [v, rng.pick(&vals).clone()]),
        7 => Filter::not_in(p, [v]),
        8 if rng.below(2) == 0 => Filter::exists(p),
        8 => Filter::missing(p),
        9 => Filter::eq("_id", i32::try_from(rng.below(40)).unwrap()),
        10 => Filter::and([random_filter(rng, depth - 1), random_filter(rng, depth - 1)]),
        11 => Filter::or([random_filter(rng, depth - 1), random_filter(rng, depth - 1)]),
        12 => Filter::nor([random_filter(rng, depth - 1)]),
        _ => random_filter(rng, depth - 1).not(),
    }
}

/// Random documents and filters: the engine returns exactly what the
/// evaluator says, with and without indexes on the filtered paths.
pub async fn random_filters(e: Arc<dyn Engine>) {
    let e = e.as_ref();
    let mut rng = Rng::new(0x00C1_F4E2_D0C5);
    let docs: Vec<Document> = (0..40).map(|i| random_doc(&mut rng, i)).collect();
    e.insert_many("r", docs.clone()).await.unwrap();
    for round in 0..2 {
        if round == 1 {
            for p in ["a", "b", "a.c"] {
                e.create_index("r", IndexSpec::new(p)).await.unwrap();
            }
        }
        for _ in 0..150 {
            let f = random_filter(&mut rng, 2);
            oracle_check(e, "r", &docs, &f).await;
        }
    }
}

/// Many tasks writing through one engine lose nothing: 8 × 200 autocommit
/// inserts plus 4 × 25 transactions each inserting a document, an ESC row and
/// an ECOC row.
pub async fn concurrent_writers(e: Arc<dyn Engine>) {
    e.create_collection(
        "w",
        CreateCollectionOptions {
            encrypted_fields: Some(doc! {}),
        },
    )
    .await
    .unwrap();
    let mut handles = Vec::new();
    for task in 0..8 {
        let e = Arc::clone(&e);
        handles.push(tokio::spawn(async move {
            for i in 0..200 {
                e.insert_one("w", doc! {"task": task, "i": i, "v": "same"})
                    .await
                    .unwrap();
            }
        }));
    }
    for task in 0..4_u8 {
        let e = Arc::clone(&e);
        handles.push(tokio::spawn(async move {
            for i in 0..25_u8 {
                let mut tx = e.begin().await.unwrap();
                tx.insert_one("w", doc! {"tx": i32::from(task), "i": i32::from(i)})
                    .await
                    .unwrap();
                let mut id = [0u8; 32];
                id[0] = task;
                id[1] = i;
                if let Some(st) = tx.qe_state() {
                    st.esc_insert("w", &EscId::from_bytes(id), None)
                        .await
                        .unwrap();
                    st.ecoc_append("w", "v", &[task, i]).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(e.count("w", &Filter::eq("v", "same")).await.unwrap(), 1600);
    assert_eq!(e.count("w", &Filter::exists("tx")).await.unwrap(), 100);
    let mut tx = e.begin().await.unwrap();
    if let Some(st) = state(&*e, &mut *tx) {
        assert_eq!(st.esc_count("w").await.unwrap(), 100);
        assert_eq!(st.ecoc_count("w").await.unwrap(), 100);
    }
    tx.rollback().await.unwrap();
}
