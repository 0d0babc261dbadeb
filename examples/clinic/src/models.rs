//! The reference's models: a patient, their record (SSN queryable by
//! equality, billing encrypted as a whole) and billing details.

use bson::oid::ObjectId;
use cipherdoc::{EmbeddedModel, Model};
use rust_decimal::Decimal;

/// A patient; stored in `myapp_patient`, routed to the encrypted database.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
pub struct Patient {
    /// Primary key.
    pub id: ObjectId,
    /// Name (plaintext).
    #[field(max_length = 255)]
    pub name: String,
    /// Hospital number (plaintext).
    pub patient_id: i64,
    /// The record, with encrypted fields.
    pub patient_record: PatientRecord,
}

impl std::fmt::Display for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.patient_id)
    }
}

/// A patient's record.
#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct PatientRecord {
    /// Social security number: encrypted, queryable by equality.
    #[encrypted(queries = "equality", max_length = 11)]
    pub ssn: String,
    /// Billing details: encrypted as one sub-document, not queryable.
    #[encrypted]
    pub billing: Billing,
    /// Amount billed (plaintext).
    #[field(max_digits = 10, decimal_places = 2)]
    pub bill_amount: Decimal,
}

/// Billing details.
#[derive(EmbeddedModel, Debug, Clone, PartialEq)]
pub struct Billing {
    /// Card type.
    #[field(max_length = 50)]
    pub cc_type: String,
    /// Card number.
    #[field(max_length = 20)]
    pub cc_number: String,
}

/// The reception's directory: a patient's surname, encrypted and
/// searchable by its first letters (prefix queries of 2 to 10 letters,
/// folding case and diacritics, so "lov" finds "Lovelace"). A collection of
/// its own, `myapp_directory`: encrypted fields cannot be added to an
/// existing collection.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
pub struct Directory {
    /// Primary key.
    pub id: ObjectId,
    /// The patient's hospital number (plaintext).
    pub patient_id: i64,
    /// Surname: encrypted, queryable by prefix.
    #[encrypted(
        queries = "prefix",
        min_query_length = 2,
        max_query_length = 10,
        case_sensitive = false,
        diacritic_sensitive = false
    )]
    pub surname: String,
}

/// A visit: what the doctor found. Migration `0003_visit` stored the
/// diagnosis in plaintext; `0004_copy_visit` encrypts it (queryable by
/// equality) by copying the visits into a new encrypted collection, the
/// copy migration `makemigrations` writes when a stored field becomes
/// encrypted.
#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "myapp")]
pub struct Visit {
    /// Primary key.
    pub id: ObjectId,
    /// The patient's hospital number (plaintext).
    pub patient_id: i64,
    /// The diagnosis: encrypted, queryable by equality.
    #[encrypted(queries = "equality")]
    pub diagnosis: String,
}
