//! Models, embedded models and their schema metadata.
//!
//! ```
//! use bson::oid::ObjectId;
//! use cipherdoc::{EmbeddedModel, Model};
//! use rust_decimal::Decimal;
//!
//! #[derive(Model)]                          // collection "myapp_patient"
//! #[model(app = "myapp")]
//! pub struct Patient {
//!     pub id: ObjectId,                     // stored as `_id`
//!     #[field(max_length = 255)]
//!     pub name: String,
//!     pub patient_id: i64,
//!     pub patient_record: PatientRecord,    // plain embedded model
//! }
//!
//! #[derive(EmbeddedModel)]
//! pub struct PatientRecord {
//!     #[encrypted(queries = "equality", max_length = 11)]
//!     pub ssn: String,
//!     #[encrypted]                          // whole sub-document, not queryable
//!     pub billing: Billing,
//!     #[field(max_digits = 10, decimal_places = 2)]
//!     pub bill_amount: Decimal,
//! }
//!
//! #[derive(EmbeddedModel)]
//! pub struct Billing {
//!     pub cc_type: String,
//!     pub cc_number: String,
//! }
//!
//! use cipherdoc::model::Model as _;
//! cipherdoc::model::validate(Patient::schema())?;
//! let paths: Vec<String> = Patient::schema().encrypted_paths().into_iter().map(|p| p.path).collect();
//! assert_eq!(paths, ["patient_record.ssn", "patient_record.billing"]);
//! let q = Patient::fields().patient_record.ssn.eq("123-45-6789") & Patient::fields().name.starts_with("J");
//! # Ok::<(), cipherdoc::model::ModelError>(())
//! ```
//!
//! # What the derives generate
//!
//! `#[derive(Model)]` on `struct Patient` (no generics; a field `id: ObjectId`
//! is required and stored as `_id`):
//! - `impl Model for Patient` ([`Model`]): `schema()`, `fields()`, `id()`,
//!   `to_document()`, `from_document()`;
//! - `pub struct PatientFields` with one public path per field
//!   ([`FieldPath`] or the embedded model's `...Fields<Patient>`), and the
//!   inherent `Patient::fields() -> &'static PatientFields`.
//!
//! `#[derive(EmbeddedModel)]` on `struct PatientRecord`:
//! - `impl EmbeddedModel` and `impl FieldValue` (BSON `object`, kind
//!   [`FieldKind::Embedded`]);
//! - `pub struct PatientRecordFields<M>` with the paths of its fields below
//!   the path the embedding field is at.
//!
//! # Attributes
//!
//! - `#[model(app = "myapp", collection = "...", kms_provider = "aws:prod")]`
//!   (Model only; `app` required).
//! - `#[field(max_length = N, max_digits = N, decimal_places = N, unique,
//!   index, kind = "text" | "email" | "url" | "char", db_column = "key")]`.
//! - `#[encrypted]`, `#[encrypted(queries = "equality", contention = N)]`,
//!   `#[encrypted(queries = "range", min = EXPR, max = EXPR, sparsity = N,
//!   trim_factor = N, precision = N, contention = N)]`,
//!   `#[encrypted(queries = "prefix" | "suffix" | "prefix, suffix",
//!   min_query_length = N, max_query_length = N, case_sensitive = BOOL,
//!   diacritic_sensitive = BOOL, contention = N)]`,
//!   `#[encrypted(queries = "substring", max_length = N, min_query_length = N,
//!   max_query_length = N, ...)]` (text search on `String` fields; the
//!   sensitivities default to `true`; a substring field's `max_length` is its
//!   `strMaxLength`),
//!   `#[encrypted(kms_provider = "...")]`; the `#[field]` options may also be
//!   given inside `#[encrypted(...)]`. `min`/`max` are Rust expressions of
//!   the field's type (`min = 0`, `min = Decimal::new(0, 2)`).
//!
//! Rules checked at compile time (errors point at the field): encrypted
//! fields cannot be `Option`, `unique` or `index`; `queries` not on encrypted
//! arrays, embedded models and embedded model arrays; the query type must
//! suit the type ([`EqualityQueryable`], [`RangeQueryable`]); range needs
//! `min` and `max` of the field's type, and `precision` exactly on double and
//! decimal. The rest is checked by [`validate`] when the model is registered.

mod error;
mod query;
mod schema;
pub mod value;

pub use error::{ModelError, ValueError, bson_type_name};
pub use query::{
    Cond, EncryptedEquality, EncryptedInfo, EncryptedPrefix, EncryptedPrefixSuffix, EncryptedRange,
    EncryptedSubstring, EncryptedSuffix, EncryptedUnqueryable, EqualityLookups, Expr, FieldPath,
    Lookup, OrderBy, PathSet, Plain, PlaintextLookups, PrefixLookups, Q, RangeLookups,
    SubstringLookups, SuffixLookups,
};
pub use schema::{
    EQUALITY_BSON_TYPES, EmbeddedRef, EmbeddedSchema, EncryptedPath, FieldKind, FieldOptions,
    FieldSchema, ModelSchema, QueryConfig, RANGE_BSON_TYPES, compare_bson, encrypted_paths,
    validate,
};
pub use value::{
    EqualityQueryable, FieldValue, IntoFieldValue, Nullable, RangePrecision, RangeQueryable,
    RangeWithoutPrecision, TIME_EPOCH_MILLIS, TextValue, decimal128_to_rust, rust_to_decimal128,
};

use bson::{Document, oid::ObjectId};

/// A model stored in its own collection; implemented by `#[derive(Model)]`.
pub trait Model: Sized + 'static {
    /// The generated struct of typed field paths (`PatientFields`).
    type Fields: 'static;
    /// The schema (built once).
    fn schema() -> &'static ModelSchema;
    /// The typed field paths (built once).
    fn fields() -> &'static Self::Fields;
    /// The primary key (`_id`).
    fn id(&self) -> &ObjectId;
    /// The document to store, plaintext (the encrypter encrypts it).
    fn to_document(&self) -> Result<Document, ModelError>;
    /// The model from a (decrypted) document; unknown keys are ignored.
    fn from_document(doc: Document) -> Result<Self, ModelError>;
}

/// A struct stored as a sub-document; implemented by
/// `#[derive(EmbeddedModel)]`.
pub trait EmbeddedModel: FieldValue + 'static {
    /// The Rust name of the struct.
    const NAME: &'static str;
    /// The schema (built once).
    fn schema() -> &'static EmbeddedSchema;
    /// The sub-document.
    fn to_document(&self) -> Result<Document, ValueError>;
    /// The struct from a sub-document; unknown keys are ignored.
    fn from_document(doc: Document) -> Result<Self, ValueError>;
}

/// Support for generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use bson::{Bson, Document, oid::ObjectId};
    pub use cipherdoc_crypto::text::{CaseSensitivity, DiacriticSensitivity};
    pub use std::sync::OnceLock;

    use super::{
        EqualityQueryable, FieldSchema, FieldValue, RangePrecision, RangeQueryable,
        RangeWithoutPrecision, TextValue, ValueError,
    };

    /// A field schema with what `T` says about itself.
    pub fn field<T: FieldValue>(name: &str, rust_name: &str, rust_type: &str) -> FieldSchema {
        let mut f = FieldSchema::new(name, T::kind(), T::BSON_TYPE);
        rust_name.clone_into(&mut f.rust_name);
        rust_type.clone_into(&mut f.rust_type);
        f.null = T::NULLABLE;
        f
    }

    /// Removes `key` from `doc` and converts it.
    pub fn take<T: FieldValue>(doc: &mut Document, key: &str) -> Result<T, ValueError> {
        match doc.remove(key) {
            Some(v) => T::from_bson(v),
            None => T::from_missing(),
        }
        .map_err(|e| e.at(key))
    }

    /// Converts `value` and inserts it under `key`.
    pub fn put<T: FieldValue>(doc: &mut Document, key: &str, value: &T) -> Result<(), ValueError> {
        let b = value.to_bson().map_err(|e| e.at(key))?;
        doc.insert(key, b);
        Ok(())
    }

    /// A range bound as BSON; a value without a BSON form becomes `Null`,
    /// which [`validate`](super::validate) reports with the field's name.
    pub fn bound<T: FieldValue>(value: &T) -> Bson {
        value.to_bson().unwrap_or(Bson::Null)
    }

    /// The encrypted info of the field `name` in `fields`.
    pub fn encrypted_info(fields: &[FieldSchema], name: &str) -> Option<super::EncryptedInfo> {
        fields
            .iter()
            .find(|f| f.name == name)
            .and_then(super::EncryptedInfo::of)
    }

    /// Compile-time check: `T` may be queried by equality when encrypted.
    pub fn assert_equality<T: EqualityQueryable>() {}
    /// Compile-time check: `T` may be queried by range when encrypted.
    pub fn assert_range<T: RangeQueryable>() {}
    /// Compile-time check: `T` takes `precision`.
    pub fn assert_precision<T: RangePrecision>() {}
    /// Compile-time check: `T` takes no `precision`.
    pub fn assert_no_precision<T: RangeWithoutPrecision>() {}
    /// Compile-time check: `T` is a string type.
    pub fn assert_text<T: TextValue>() {}
    /// A text-search field's index from the derive's checked options:
    /// `(lb, ub)` for prefix and suffix, `(mlen, lb, ub)` for substring. A
    /// part whose lengths do not make an index is left out, which
    /// [`super::validate`] reports (the derive has checked them already).
    pub fn text_index(
        prefix: Option<(u32, u32)>,
        suffix: Option<(u32, u32)>,
        substring: Option<(u32, u32, u32)>,
        case: CaseSensitivity,
        diacritics: DiacriticSensitivity,
    ) -> cipherdoc_crypto::text::TextIndex {
        use cipherdoc_crypto::text::{AffixIndex, SubstringIndex, TextIndex, TextIndexKind};
        let affix =
            |kind, l: Option<(u32, u32)>| l.and_then(|(lb, ub)| AffixIndex::new(kind, lb, ub).ok());
        TextIndex {
            case,
            diacritics,
            prefix: affix(TextIndexKind::Prefix, prefix),
            suffix: affix(TextIndexKind::Suffix, suffix),
            substring: substring.and_then(|(m, lb, ub)| SubstringIndex::new(m, lb, ub).ok()),
        }
    }
    /// Compile-time check: `T` is not nullable (behind a type alias, say).
    pub const fn assert_not_null<T: FieldValue>() {
        assert!(
            !T::NULLABLE,
            "an encrypted field cannot be Option<_>: MongoDB cannot encrypt null values"
        );
    }
}
