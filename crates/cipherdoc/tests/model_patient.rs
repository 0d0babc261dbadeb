//! The reference's Patient / PatientRecord / Billing example.
#![allow(clippy::unwrap_used, clippy::panic, clippy::many_single_char_names)]

use bson::{Bson, doc, oid::ObjectId};
use cipherdoc::model::{
    Cond, EmbeddedModel as _, EncryptedInfo, Expr, FieldKind, Lookup, Model as _, QueryConfig,
    validate,
};
use cipherdoc::{EmbeddedModel, Model};
use rust_decimal::Decimal;

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
pub struct Patient {
    pub id: ObjectId,
    #[field(max_length = 255)]
    pub name: String,
    pub patient_id: i64,
    pub patient_record: PatientRecord,
}

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct PatientRecord {
    #[encrypted(queries = "equality", max_length = 11)]
    pub ssn: String,
    #[encrypted]
    pub billing: Billing,
    #[field(max_digits = 10, decimal_places = 2)]
    pub bill_amount: Decimal,
}

#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Billing {
    #[field(max_length = 50)]
    pub cc_type: String,
    #[field(max_length = 20)]
    pub cc_number: String,
}

fn john() -> Patient {
    Patient {
        id: ObjectId::parse_str("65f0a1b2c3d4e5f601234567").unwrap(),
        name: "John Doe".into(),
        patient_id: 1001,
        patient_record: PatientRecord {
            ssn: "123-45-6789".into(),
            billing: Billing {
                cc_type: "Visa".into(),
                cc_number: "4111111111111111".into(),
            },
            bill_amount: Decimal::new(25075, 2),
        },
    }
}

#[test]
fn schema_matches_the_reference() {
    let s = Patient::schema();
    assert_eq!(s.app, "myapp");
    assert_eq!(s.name, "Patient");
    assert_eq!(s.collection, "myapp_patient");
    assert_eq!(s.label(), "myapp.Patient");
    let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["_id", "name", "patient_id", "patient_record"]);

    let id = s.field("_id").unwrap();
    assert!(id.primary_key);
    assert_eq!(id.rust_name, "id");
    assert_eq!(
        (id.kind.clone(), id.bson_type.as_str()),
        (FieldKind::ObjectId, "objectId")
    );

    let name = s.field("name").unwrap();
    assert_eq!(name.kind, FieldKind::Char);
    assert_eq!(name.bson_type, "string");
    assert_eq!(name.options.max_length, Some(255));
    assert!(!name.encrypted);

    let pid = s.field("patient_id").unwrap();
    assert_eq!(
        (pid.kind.clone(), pid.bson_type.as_str()),
        (FieldKind::BigInteger, "long")
    );

    let rec = s.field("patient_record").unwrap();
    assert_eq!(rec.bson_type, "object");
    assert_eq!(rec.rust_type, "PatientRecord");
    let FieldKind::Embedded(r) = &rec.kind else {
        panic!("not embedded: {:?}", rec.kind)
    };
    assert_eq!(r.name, "PatientRecord");
    let inner = r.get();
    assert_eq!(inner, PatientRecord::schema());

    let ssn = inner.field("ssn").unwrap();
    assert!(ssn.encrypted);
    assert_eq!(ssn.options.max_length, Some(11));
    assert_eq!(
        ssn.queries,
        Some(QueryConfig::Equality { contention: None })
    );

    let billing = inner.field("billing").unwrap();
    assert!(billing.encrypted);
    assert_eq!(billing.queries, None);
    assert_eq!(billing.bson_type, "object");

    let amount = inner.field("bill_amount").unwrap();
    assert_eq!(amount.kind, FieldKind::Decimal);
    assert_eq!(amount.bson_type, "decimal");
    assert_eq!(
        (amount.options.max_digits, amount.options.decimal_places),
        (Some(10), Some(2))
    );

    validate(s).unwrap();
}

#[test]
fn encrypted_paths_are_the_encrypted_fields_map() {
    let paths = Patient::schema().encrypted_paths();
    let docs: Vec<_> = paths
        .iter()
        .map(cipherdoc::model::EncryptedPath::to_document)
        .collect();
    assert_eq!(
        docs,
        [
            doc! { "path": "patient_record.ssn", "bsonType": "string", "queries": { "queryType": "equality" } },
            doc! { "path": "patient_record.billing", "bsonType": "object" },
        ]
    );
    assert!(paths.iter().all(|p| p.kms_provider.is_none()));
}

#[test]
fn document_round_trip() {
    let p = john();
    let d = p.to_document().unwrap();
    assert_eq!(
        d,
        doc! {
            "_id": p.id,
            "name": "John Doe",
            "patient_id": 1001_i64,
            "patient_record": {
                "ssn": "123-45-6789",
                "billing": { "cc_type": "Visa", "cc_number": "4111111111111111" },
                "bill_amount": Bson::Decimal128("250.75".parse().unwrap()),
            },
        }
    );
    assert_eq!(Patient::from_document(d).unwrap(), p);
    assert_eq!(p.id(), &p.id);
}

#[test]
fn load_errors_name_the_field_path() {
    let mut d = john().to_document().unwrap();
    d.get_document_mut("patient_record")
        .unwrap()
        .insert("ssn", 5_i32);
    let e = Patient::from_document(d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "myapp.Patient: field 'patient_record.ssn' expected BSON string, found BSON int"
    );

    let mut d = john().to_document().unwrap();
    d.get_document_mut("patient_record")
        .unwrap()
        .get_document_mut("billing")
        .unwrap()
        .remove("cc_number");
    let e = Patient::from_document(d).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("myapp.Patient: field 'patient_record.billing.cc_number' missing"),
        "{e}"
    );
}

#[test]
fn typed_paths_and_query_ast() {
    let f = Patient::fields();
    assert_eq!(f.patient_record.ssn.path(), "patient_record.ssn");
    assert_eq!(f.patient_record.billing.path(), "patient_record.billing");
    assert_eq!(
        f.patient_record.bill_amount.path(),
        "patient_record.bill_amount"
    );
    assert_eq!(f.id.path(), "_id");

    let q = f.patient_record.ssn.eq("123-45-6789");
    let ssn_info = EncryptedInfo::of(PatientRecord::schema().field("ssn").unwrap());
    assert!(ssn_info.is_some());
    let Expr::Cond(c) = q.expr().unwrap() else {
        panic!()
    };
    assert_eq!(c.path, "patient_record.ssn");
    assert_eq!(c.lookup, Lookup::Eq);
    assert_eq!(c.value, Bson::String("123-45-6789".into()));
    assert_eq!(c.encrypted, ssn_info);
    let info = c.encrypted.as_ref().unwrap();
    assert_eq!(info.bson_type, "string");
    assert_eq!(
        info.queries,
        Some(QueryConfig::Equality { contention: None })
    );

    let q =
        f.patient_record.ssn.is_in(["1", "2"]) & !f.name.starts_with("J") | f.patient_id.gte(1000);
    let conds: Vec<&Cond> = q.conditions().collect();
    assert_eq!(conds.len(), 3);
    match q.expr().unwrap() {
        Expr::Or(v) => {
            assert_eq!(v.len(), 2);
            match &v[0] {
                Expr::And(a) => {
                    assert_eq!(a.len(), 2);
                    assert!(matches!(&a[1], Expr::Not(_)));
                }
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conds[0].value, Bson::Array(vec!["1".into(), "2".into()]));
    assert!(conds[1].encrypted.is_none());
    assert_eq!(conds[2].value, Bson::Int64(1000));
    assert_eq!(f.name.desc().path, "name");
}
