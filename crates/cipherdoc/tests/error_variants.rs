//! Each `cipherdoc::Error` variant that replaced the `NotAllowed(String)`
//! and `Encryption(String)` catch-alls, reached through the public API and
//! matched on: a refused value or query, a range field the protocol
//! refuses, a collection that is not encrypted,
//! explicit encryption's options and blobs, KMS providers, master key
//! files. The encrypter's messages are checked never to carry the value.
//!
//! Reached here as well: `UnsupportedField` (a hand-built
//! `EncryptedFieldConfig` whose text field mixes query kinds),
//! `InvalidCatalog` (a catalog entry rewritten in the database file, as
//! whoever can write to the database could), and `TempDir` (this test binary
//! run again with an unusable `TMPDIR`). `FieldProblem::UnknownQueryType`
//! alone is not: it answers a query kind that a newer protocol crate could
//! add, and this one has none.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::bson::spec::{BinarySubtype, ElementType};
use cipherdoc::bson::{Binary, Bson, doc};
use cipherdoc::client_encryption::{
    self, Algorithm, ClientEncryption, EncryptOptions, KeyRef, QueryType,
};
use cipherdoc::key_vault::JsonFileKeyVault;
use cipherdoc::leakage::{LeakageOptions, leakage_report};
use cipherdoc::model::Model as _;
use cipherdoc::testing::TestApp;
use cipherdoc::{
    BlobProblem, EmbeddedModel, EncryptOptionsProblem, Error, FieldIndex, FieldProblem, FieldUse,
    Filter, MasterKeyFileProblem, Model, QueryProblem, ValueProblem,
};
use cipherdoc_crypto::efc::{EncryptedFieldConfig, QueryTypeConfig};
use cipherdoc_engine::{CreateCollectionOptions, FieldOp};

const SECRET: &str = "CANARY-4111";

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
struct Address {
    #[encrypted]
    zip: String,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Person {
    id: ObjectId,
    #[encrypted(queries = "equality")]
    ssn: String,
    #[encrypted(queries = "range", min = 0, max = 100)]
    age: i32,
    #[encrypted(queries = "prefix", min_query_length = 1, max_query_length = 4)]
    city: String,
    #[encrypted]
    notes: String,
    address: Address,
}

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
struct Vaulted {
    id: ObjectId,
    #[encrypted(queries = "equality", kms_provider = "aws:nowhere")]
    code: String,
}

struct Fixture {
    app: TestApp,
    ns: String,
    efc: EncryptedFieldConfig,
}

async fn fixture() -> Fixture {
    let app = TestApp::reference()
        .register::<Person>()
        .migrated()
        .await
        .unwrap();
    let db = app.database("encrypted").unwrap();
    let collection = Person::schema().collection.clone();
    let efc = db
        .encrypted_fields(&collection)
        .await
        .unwrap()
        .expect("migrated: an encrypted collection")
        .config()
        .clone();
    let ns = db.namespace(&collection);
    Fixture { app, ns, efc }
}

impl Fixture {
    async fn store(&self, doc: cipherdoc::bson::Document) -> Error {
        let db = self.app.database("encrypted").unwrap();
        let enc = db.encryption().unwrap();
        enc.encrypter()
            .encrypt_document(&self.ns, &doc, &self.efc)
            .await
            .expect_err("the document is refused")
    }

    async fn query(&self, path: &str, op: FieldOp) -> Error {
        let db = self.app.database("encrypted").unwrap();
        let enc = db.encryption().unwrap();
        let filter = Filter::Field {
            path: path.to_owned(),
            op,
        };
        enc.encrypter()
            .encrypt_filter(&self.ns, &filter, &self.efc)
            .await
            .expect_err("the filter is refused")
    }

    fn client(&self) -> ClientEncryption {
        self.app
            .database("encrypted")
            .unwrap()
            .encryption()
            .unwrap()
            .client_encryption()
    }
}

fn value_problem(err: &Error, field: &str) -> ValueProblem {
    assert!(!err.to_string().contains(SECRET), "{err}");
    match err {
        Error::ValueRefused {
            field: f, problem, ..
        } if f == field => problem.clone(),
        other => panic!("expected ValueRefused on '{field}', got {other:?}"),
    }
}

fn query_problem(err: &Error, path: &str) -> QueryProblem {
    assert!(!err.to_string().contains(SECRET), "{err}");
    match err {
        Error::QueryRefused {
            path: p, problem, ..
        } if p == path => problem.clone(),
        other => panic!("expected QueryRefused on '{path}', got {other:?}"),
    }
}

#[tokio::test]
async fn values_an_encrypted_field_cannot_hold_are_value_refused() {
    let f = fixture().await;
    let base = doc! {"_id": ObjectId::new(), "ssn": SECRET, "age": 30_i64, "city": "Oslo", "notes": SECRET};

    let mut d = base.clone();
    d.insert("__safeContent__", Bson::Array(Vec::new()));
    assert_eq!(
        value_problem(&f.store(d).await, "__safeContent__"),
        ValueProblem::SafeContentSet
    );

    let mut d = base.clone();
    d.insert(
        "ssn",
        Binary {
            subtype: BinarySubtype::Encrypted,
            bytes: vec![16, 1, 2, 3],
        },
    );
    assert_eq!(
        value_problem(&f.store(d).await, "ssn"),
        ValueProblem::AlreadyEncrypted
    );

    let mut d = base.clone();
    d.insert("ssn", Bson::Null);
    let err = f.store(d).await;
    assert_eq!(
        value_problem(&err, "ssn"),
        ValueProblem::Null {
            access: FieldUse::Store
        }
    );
    assert!(err.to_string().contains("cannot be null"), "{err}");

    let mut d = base.clone();
    d.insert("ssn", 4111_i64);
    assert_eq!(
        value_problem(&f.store(d).await, "ssn"),
        ValueProblem::WrongType {
            expected: "string",
            actual: ElementType::Int64
        }
    );

    let mut d = base.clone();
    d.insert("age", 4111_i64);
    let err = f.store(d).await;
    assert!(
        matches!(
            value_problem(&err, "age"),
            ValueProblem::OutsideRangeBounds { ref min, ref max } if min == "0" && max == "100"
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("4111"), "{err}");

    // A text-search field with `bsonType: string` refuses a number as a
    // wrong type before it could be "not a string"; the text-search check
    // stands behind it for entries without a bsonType.
    let mut d = base.clone();
    d.insert(
        "address",
        Bson::Array(vec![Bson::Document(doc! {"zip": SECRET})]),
    );
    assert_eq!(
        value_problem(&f.store(d).await, "address.zip"),
        ValueProblem::InsideArray {
            array: "address".to_owned()
        }
    );

    let mut d = base.clone();
    d.insert("address", 5_i32);
    assert_eq!(
        value_problem(&f.store(d).await, "address.zip"),
        ValueProblem::ThroughNonDocument {
            part: "zip".to_owned()
        }
    );
}

#[tokio::test]
async fn a_text_search_value_that_is_not_a_string_is_value_refused() {
    let mut f = fixture().await;
    // The same entry without its bsonType: the text-search layer's own
    // check answers, for a stored value and for a query operand.
    for field in &mut f.efc.fields {
        if field.path == "city" {
            field.bson_type = None;
        }
    }
    let d =
        doc! {"_id": ObjectId::new(), "ssn": SECRET, "age": 30_i64, "city": 7_i32, "notes": SECRET};
    assert_eq!(
        value_problem(&f.store(d).await, "city"),
        ValueProblem::NotAString {
            access: FieldUse::Store
        }
    );
    assert_eq!(
        value_problem(&f.query("city", FieldOp::Eq(Bson::Int32(7))).await, "city"),
        ValueProblem::NotAString {
            access: FieldUse::Query
        }
    );
}

#[tokio::test]
async fn filters_qe_cannot_run_are_query_refused() {
    let f = fixture().await;
    let err = f.query("ssn", FieldOp::Eq(Bson::Null)).await;
    assert_eq!(
        value_problem(&err, "ssn"),
        ValueProblem::Null {
            access: FieldUse::Query
        }
    );
    assert!(err.to_string().contains("never null"), "{err}");
    let err = f.query("age", FieldOp::Eq(Bson::Null)).await;
    assert!(
        matches!(
            value_problem(&err, "age"),
            ValueProblem::Null {
                access: FieldUse::Query
            }
        ),
        "{err:?}"
    );

    assert_eq!(
        query_problem(
            &f.query("__safeContent__", FieldOp::Exists(true)).await,
            "__safeContent__"
        ),
        QueryProblem::SafeContent
    );
    assert_eq!(
        query_problem(
            &f.query("notes.x", FieldOp::Eq(SECRET.into())).await,
            "notes.x"
        ),
        QueryProblem::InsideEncryptedField {
            encrypted: "notes".to_owned()
        }
    );
    assert_eq!(
        query_problem(&f.query("notes", FieldOp::Eq(SECRET.into())).await, "notes"),
        QueryProblem::NotQueryable
    );
    assert_eq!(
        query_problem(&f.query("ssn", FieldOp::Gt(SECRET.into())).await, "ssn"),
        QueryProblem::ComparisonOnEquality
    );
    assert_eq!(
        query_problem(
            &f.query("ssn", FieldOp::StartsWith(SECRET.into())).await,
            "ssn"
        ),
        QueryProblem::OperatorNotAllowed {
            index: FieldIndex::Equality
        }
    );
    assert_eq!(
        query_problem(
            &f.query("age", FieldOp::StartsWith(SECRET.into())).await,
            "age"
        ),
        QueryProblem::OperatorNotAllowed {
            index: FieldIndex::Range
        }
    );
    let err = f.query("city", FieldOp::Gt(SECRET.into())).await;
    assert_eq!(
        query_problem(&err, "city"),
        QueryProblem::OperatorNotAllowed {
            index: FieldIndex::Text
        }
    );
    assert!(err.to_string().contains("text-search field"), "{err}");
}

#[tokio::test]
async fn a_range_field_the_protocol_refuses_is_range_field() {
    let mut f = fixture().await;
    // The range entry without its bsonType: a string reaches the range
    // protocol, which cannot order it.
    for field in &mut f.efc.fields {
        if field.path == "age" {
            field.bson_type = None;
        }
    }
    let err = f.query("age", FieldOp::Gt(SECRET.into())).await;
    assert!(
        matches!(&err, Error::RangeField { field, .. } if field == "age"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SECRET), "{err}");
}

#[tokio::test]
async fn compacting_or_reporting_on_what_is_not_encrypted_is_refused() {
    let app = TestApp::reference()
        .register::<Person>()
        .migrated()
        .await
        .unwrap();
    let db = app.database("encrypted").unwrap();
    db.engine()
        .create_collection("plain", CreateCollectionOptions::default())
        .await
        .unwrap();
    let err = db.compact("plain").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotEncryptedCollection { namespace } if *namespace == db.namespace("plain")),
        "{err:?}"
    );

    let plain = app.database("default").unwrap();
    let err = leakage_report(plain, LeakageOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotEncrypted { alias, .. } if alias == "default"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_field_naming_an_unconfigured_provider_is_field_kms_provider() {
    let err = TestApp::reference()
        .register::<Vaulted>()
        .migrated()
        .await
        .unwrap_err();
    let Error::FieldKmsProvider {
        alias,
        model,
        field,
        source,
    } = &err
    else {
        panic!("expected FieldKmsProvider, got {err:?}");
    };
    assert_eq!(alias, "encrypted");
    assert_eq!(model, "myapp.Vaulted");
    assert_eq!(field, "code");
    assert!(source.to_string().contains("aws:nowhere"), "{err}");
}

#[tokio::test]
async fn explicit_encryption_options_that_do_not_go_together_are_encrypt_options() {
    let f = fixture().await;
    let client = f.client();
    let key = client.create_data_key("local", Vec::new()).await.unwrap();
    let opts = |algorithm| EncryptOptions::new(KeyRef::Id(key), algorithm);
    let refused = |r: cipherdoc::Result<Binary>| match r {
        Err(Error::EncryptOptions(p)) => p,
        other => panic!("expected EncryptOptions, got {other:?}"),
    };

    let p = refused(
        client
            .encrypt(SECRET.into(), &opts(Algorithm::String))
            .await,
    );
    assert!(
        matches!(p, EncryptOptionsProblem::StringOptionsMissing),
        "{p:?}"
    );

    let mut o = opts(Algorithm::String);
    o.string = Some(
        cipherdoc_crypto::text::StringOpts::from_document(&doc! {
            "caseSensitive": true,
            "diacriticSensitive": true,
            "prefix": {"strMinQueryLength": 1, "strMaxQueryLength": 4},
        })
        .unwrap(),
    );
    let p = refused(client.encrypt(Bson::Int32(7), &o).await);
    assert!(matches!(p, EncryptOptionsProblem::NotAString), "{p:?}");

    // A NUL character: the text-search layer refuses it.
    let p = refused(client.encrypt("a\0b".into(), &o).await);
    assert!(matches!(p, EncryptOptionsProblem::Text(_)), "{p:?}");

    o.query_type = Some(QueryType::Equality);
    let p = refused(client.encrypt(SECRET.into(), &o).await);
    assert!(
        matches!(
            p,
            EncryptOptionsProblem::QueryTypeNotForString(QueryType::Equality)
        ),
        "{p:?}"
    );

    let mut o = opts(Algorithm::Unindexed);
    o.query_type = Some(QueryType::Equality);
    let p = refused(client.encrypt(SECRET.into(), &o).await);
    assert!(
        matches!(
            p,
            EncryptOptionsProblem::QueryTypeNeedsIndexed {
                query: QueryType::Equality,
                algorithm: Algorithm::Unindexed
            }
        ),
        "{p:?}"
    );

    let mut o = opts(Algorithm::Unindexed);
    o.contention_factor = Some(2);
    let p = refused(client.encrypt(SECRET.into(), &o).await);
    assert!(
        matches!(p, EncryptOptionsProblem::ContentionNotApplicable),
        "{p:?}"
    );

    let p = refused(
        client
            .encrypt(Bson::Int32(7), &opts(Algorithm::Range))
            .await,
    );
    assert!(
        matches!(p, EncryptOptionsProblem::RangeOptionsMissing),
        "{p:?}"
    );

    let expr = doc! {"$and": [{"$gt": ["$age", 7]}]};
    let refused_doc = |r: cipherdoc::Result<cipherdoc::bson::Document>| match r {
        Err(Error::EncryptOptions(p)) => p,
        other => panic!("expected EncryptOptions, got {other:?}"),
    };
    let p = refused_doc(
        client
            .encrypt_expression(&expr, &opts(Algorithm::Indexed))
            .await,
    );
    assert!(
        matches!(p, EncryptOptionsProblem::ExpressionNeedsRange),
        "{p:?}"
    );
    let p = refused_doc(
        client
            .encrypt_expression(&doc! {"$and": []}, &opts(Algorithm::Range))
            .await,
    );
    assert!(
        matches!(p, EncryptOptionsProblem::ExpressionWithoutConstant),
        "{p:?}"
    );
}

#[tokio::test]
async fn blobs_without_ciphertext_are_not_decryptable() {
    let f = fixture().await;
    let client = f.client();
    let err = client
        .decrypt(&Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1, 2, 3],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotDecryptable(BlobProblem::NotEncrypted(BinarySubtype::Generic))
        ),
        "{err:?}"
    );

    let key = client.create_data_key("local", Vec::new()).await.unwrap();
    let mut o = EncryptOptions::new(KeyRef::Id(key), Algorithm::Indexed);
    o.query_type = Some(QueryType::Equality);
    let find = client.encrypt(SECRET.into(), &o).await.unwrap();
    let err = client.decrypt(&find).await.unwrap_err();
    assert!(
        matches!(err, Error::NotDecryptable(BlobProblem::NoCiphertext)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unconfigured_provider_is_unknown_kms_provider() {
    let f = fixture().await;
    let err = f
        .client()
        .create_data_key("aws:nowhere", Vec::new())
        .await
        .unwrap_err();
    match &err {
        Error::UnknownKmsProvider {
            provider,
            configured,
        } => {
            assert_eq!(provider, "aws:nowhere");
            assert!(configured.iter().any(|c| c == "local"), "{configured:?}");
        }
        other => panic!("expected UnknownKmsProvider, got {other:?}"),
    }
}

#[tokio::test]
async fn master_key_files_that_cannot_be_used_are_master_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let vault: Arc<dyn cipherdoc::key_vault::KeyVault> =
        Arc::new(JsonFileKeyVault::new(dir.path().join("vault.json")));
    let problem = |e: Error| match e {
        Error::MasterKeyFile { problem, .. } => problem,
        other => panic!("expected MasterKeyFile, got {other:?}"),
    };

    let missing = dir.path().join("missing.key");
    let p = problem(
        ClientEncryption::with_local_master_key_file(Arc::clone(&vault), &missing).unwrap_err(),
    );
    assert!(matches!(p, MasterKeyFileProblem::Read(_)), "{p:?}");

    let key = dir.path().join("master.key");
    client_encryption::generate_local_master_key_file(&key).unwrap();
    let p = problem(client_encryption::generate_local_master_key_file(&key).unwrap_err());
    assert!(matches!(p, MasterKeyFileProblem::AlreadyExists), "{p:?}");

    let p = problem(
        client_encryption::generate_local_master_key_file(&dir.path().join("no/such/dir.key"))
            .unwrap_err(),
    );
    assert!(matches!(p, MasterKeyFileProblem::Write(_)), "{p:?}");

    // A private file of the wrong length.
    let short = dir.path().join("short.key");
    std::fs::write(&short, [7_u8; 50]).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let err = ClientEncryption::with_local_master_key_file(Arc::clone(&vault), &short).unwrap_err();
    assert!(err.to_string().contains("holds 50 bytes"), "{err}");
    assert!(
        matches!(problem(err), MasterKeyFileProblem::WrongLength { len: 50 }),
        "wrong length"
    );
}

#[tokio::test]
async fn a_text_field_mixed_with_other_queries_is_unsupported_field() {
    let mut f = fixture().await;
    let city = f.efc.fields.iter_mut().find(|x| x.path == "city").unwrap();
    city.queries
        .push(QueryTypeConfig::Equality { contention: 0 });
    let doc =
        doc! {"_id": ObjectId::new(), "ssn": "1", "age": 30_i64, "city": SECRET, "notes": "n"};
    let err = f.store(doc).await;
    assert!(!err.to_string().contains(SECRET), "{err}");
    match &err {
        Error::UnsupportedField { field, problem, .. } => {
            assert_eq!(field, "city");
            assert!(
                matches!(**problem, FieldProblem::InvalidTextOptions(_)),
                "{problem:?}"
            );
        }
        other => panic!("expected UnsupportedField, got {other:?}"),
    }
}

#[tokio::test]
async fn a_catalog_rewritten_in_the_file_is_invalid_catalog() {
    let f = fixture().await;
    let collection = Person::schema().collection.clone();
    let file = f.app.database_file("encrypted");
    let bad = cipherdoc::bson::to_vec(&doc! {"fields": "not an array"}).unwrap();
    let conn = rusqlite::Connection::open(&file).unwrap();
    let n = conn
        .execute(
            r#"UPDATE "$catalog" SET encrypted_fields = ?1 WHERE name = ?2"#,
            rusqlite::params![bad, collection],
        )
        .unwrap();
    assert_eq!(n, 1, "the collection's catalog entry");
    let rows = |c: &rusqlite::Connection| -> i64 {
        c.query_row(&format!("SELECT count(*) FROM \"{collection}\""), [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let before = rows(&conn);

    let db = f.app.database("encrypted").unwrap();
    let err = db.encrypted_fields(&collection).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidCatalog { namespace, .. } if *namespace == f.ns),
        "{err:?}"
    );
    // A write through the model refuses too, and stores nothing.
    let person = Person {
        id: ObjectId::new(),
        ssn: SECRET.into(),
        age: 30,
        city: "Oslo".into(),
        notes: SECRET.into(),
        address: Address { zip: "0150".into() },
    };
    let err = f.app.objects::<Person>().create(person).await.unwrap_err();
    assert!(matches!(err, Error::InvalidCatalog { .. }), "{err:?}");
    assert!(!err.to_string().contains(SECRET), "{err}");
    assert_eq!(rows(&conn), before, "nothing written");
}

/// Set in the child run of [`an_unusable_tmpdir_is_temp_dir`].
const TEMPDIR_CHILD: &str = "CIPHERDOC_TEST_TEMPDIR_CHILD";

#[tokio::test]
async fn an_unusable_tmpdir_is_temp_dir() {
    if std::env::var_os(TEMPDIR_CHILD).is_some() {
        let Err(err) = TestApp::reference().register::<Person>().migrated().await else {
            panic!("no temporary folder can be made");
        };
        assert!(matches!(err, Error::TempDir(_)), "{err:?}");
        assert!(err.to_string().contains("TMPDIR"), "{err}");
        return;
    }
    // `TMPDIR` is read by the whole process: the test runs again, alone, in
    // a child whose `TMPDIR` is a path that cannot exist.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_unusable_tmpdir_is_temp_dir",
            "--test-threads=1",
        ])
        .env(TEMPDIR_CHILD, "1")
        .env("TMPDIR", "/dev/null/cipherdoc-no-such-folder")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
