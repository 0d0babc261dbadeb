//! Models shared by the migration tests: the reference's Patient, and a
//! plaintext model of another app.
#![allow(dead_code, clippy::struct_field_names)]

use bson::oid::ObjectId;
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

/// A plaintext model of app "clinic" (routed to `default`).
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "clinic")]
pub struct Room {
    pub id: ObjectId,
    #[field(max_length = 20, unique)]
    pub number: String,
    pub floor: i32,
}

pub fn patient(name: &str, ssn: &str, pid: i64) -> Patient {
    Patient {
        id: ObjectId::new(),
        name: name.into(),
        patient_id: pid,
        patient_record: PatientRecord {
            ssn: ssn.into(),
            billing: Billing {
                cc_type: "Visa".into(),
                cc_number: "4111111111111111".into(),
            },
            bill_amount: Decimal::new(25075, 2),
        },
    }
}
