//! Mapping Rust values to and from BSON: the [`FieldValue`] trait (its items
//! are re-exported from [`cipherdoc::model`](crate::model)).
//!
//! # The mapping
//!
//! The BSON types follow Django MongoDB Backend (its `DatabaseWrapper.data_types`
//! and `DatabaseOperations.adapt_*_value`): every integer field except the
//! "small" ones is stored as `long`; dates, datetimes and times are BSON dates;
//! durations are `long` milliseconds.
//!
//! | Rust type | Django field | `bsonType` | stored as | equality | range |
//! |---|---|---|---|---|---|
//! | `String` | `CharField` (`#[field(kind = "text" \| "email" \| "url")]` for `TextField`, `EmailField`, `URLField`) | `string` | UTF-8 string | yes | no |
//! | `i16` | `SmallIntegerField` | `int` | int32 | yes | yes |
//! | `i32` | `IntegerField` | `long` | int64 | yes | yes |
//! | `i64` | `BigIntegerField` | `long` | int64 | yes | yes |
//! | `u16` | `PositiveSmallIntegerField` | `int` | int32 | yes | yes |
//! | `u32` | `PositiveIntegerField` | `long` | int64 | yes | yes |
//! | `u64` | `PositiveBigIntegerField` | `long` | int64; values above `i64::MAX` are refused on save | yes | yes |
//! | `bool` | `BooleanField` | `bool` | boolean | yes | no |
//! | `Vec<u8>` | `BinaryField` | `binData` | binary subtype 0 | yes | no |
//! | `chrono::NaiveDate` | `DateField` | `date` | UTC midnight of the day | yes | yes |
//! | `chrono::DateTime<Utc>`, `chrono::NaiveDateTime` (as UTC) | `DateTimeField` | `date` | milliseconds since the epoch (sub-millisecond part dropped, rounding down) | yes | yes |
//! | `chrono::NaiveTime` | `TimeField` | `date` | that time on 0001-01-01 UTC, like Django MongoDB Backend (milliseconds) | yes | yes |
//! | `chrono::TimeDelta`, `std::time::Duration` | `DurationField` | `long` | milliseconds, rounding down | yes | yes |
//! | `rust_decimal::Decimal`, `bson::Decimal128` | `DecimalField` | `decimal` | decimal128 (scale kept: `1.50` stays `1.50`) | no | yes (`precision` required) |
//! | `f64` | `FloatField` | `double` | double (bit-exact, NaN and `-0.0` included) | no | yes (`precision` required) |
//! | `uuid::Uuid` | `UUIDField` | `binData` | binary subtype 4 | yes | no |
//! | `bson::oid::ObjectId` | `ObjectIdField` | `objectId` | ObjectId | yes | no |
//! | `std::net::IpAddr` | `GenericIPAddressField` | `string` | canonical text form | yes | no |
//! | `Vec<T>` (`T` not embedded, not `u8`) | `ArrayField` | `array` | array | no | no |
//! | `#[derive(EmbeddedModel)]` struct | `EmbeddedModelField` | `object` | sub-document | no | no |
//! | `Vec<E>` of an embedded model | `EmbeddedModelArrayField` | `array` | array of sub-documents | no | no |
//! | `Option<T>` (plaintext fields only) | `null=True` | as `T` | `null` for `None`; absent reads as `None` | | |
//!
//! "equality"/"range" say which `queries` an encrypted field of that type may
//! have (MongoDB's rules, qe-protocol §7.4). On load, integers are accepted as
//! int32 or int64 and refused with [`ValueError::OutOfRange`] when they do not
//! fit the Rust type (a negative number for `u32`, say).
//!
//! # Your own types (the reference's `EncryptedFieldMixin`)
//!
//! Implement [`FieldValue`] for a type to use it in models, plaintext or
//! `#[encrypted]`; implement the marker traits [`EqualityQueryable`] /
//! [`RangeQueryable`] to allow `queries` on it when encrypted.
//!
//! ```
//! use cipherdoc::model::{
//!     bson_type_name, EqualityQueryable, FieldKind, FieldPath, FieldValue, Plain, ValueError,
//! };
//! use bson::Bson;
//!
//! /// A postal code, stored as a string.
//! #[derive(Debug, Clone, PartialEq)]
//! pub struct PostalCode(String);
//!
//! impl FieldValue for PostalCode {
//!     const BSON_TYPE: &'static str = "string";
//!     type Path<M: 'static> = FieldPath<M, Self, Plain>;
//!     fn kind() -> FieldKind {
//!         FieldKind::Custom("PostalCode")
//!     }
//!     fn to_bson(&self) -> Result<Bson, ValueError> {
//!         Ok(Bson::String(self.0.clone()))
//!     }
//!     fn from_bson(value: Bson) -> Result<Self, ValueError> {
//!         match value {
//!             Bson::String(s) => Ok(PostalCode(s)),
//!             other => Err(ValueError::WrongType { expected: "string", found: bson_type_name(&other) }),
//!         }
//!     }
//! }
//! // Strings can be queried by equality when encrypted, so this may too.
//! impl EqualityQueryable for PostalCode {}
//!
//! #[derive(cipherdoc::Model)]
//! #[model(app = "shop")]
//! pub struct Customer {
//!     pub id: bson::oid::ObjectId,
//!     #[encrypted(queries = "equality")]
//!     pub postal_code: PostalCode,
//! }
//!
//! let q = Customer::fields().postal_code.eq(PostalCode("75001".into()));
//! assert_eq!(q.conditions().next().map(|c| c.path.as_str()), Some("postal_code"));
//! ```

use std::net::IpAddr;
use std::str::FromStr;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Decimal128, oid::ObjectId};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use rust_decimal::Decimal;

use super::error::ValueError;
use super::query::{FieldPath, PathSet, Plain};
use super::schema::FieldKind;

/// A Rust type that can be a model field: how it maps to BSON, which Django
/// field it corresponds to and what its typed path is. See the
/// [module documentation](crate::model::value) for the table of built-in impls.
pub trait FieldValue: Sized {
    /// The BSON type the value is stored as (the `bsonType` of
    /// `encryptedFields`).
    const BSON_TYPE: &'static str;
    /// Whether the value may be null or absent (only `Option<_>`).
    const NULLABLE: bool = false;
    /// The typed path of a plaintext field of this type inside model `M`:
    /// `FieldPath<M, Self, Plain>` for values, the generated `...Fields<M>`
    /// struct for embedded models (so their sub-fields can be reached).
    type Path<M: 'static>: PathSet;
    /// The Django field kind.
    fn kind() -> FieldKind;
    /// Converts to BSON; errors when the value has no BSON form of the
    /// field's type (for example a `u64` above `i64::MAX`).
    fn to_bson(&self) -> Result<Bson, ValueError>;
    /// Converts from BSON.
    fn from_bson(value: Bson) -> Result<Self, ValueError>;
    /// The value of a field absent from the document: an error, except for
    /// `Option<_>` (`None`).
    fn from_missing() -> Result<Self, ValueError> {
        Err(ValueError::Missing)
    }
}

/// Marker: an encrypted field of this type may have `queries = "equality"`
/// (BSON string, int, long, bool, date, objectId, binData).
#[diagnostic::on_unimplemented(
    message = "an encrypted `{Self}` field cannot have `queries = \"equality\"`",
    label = "equality queries are not supported on this type",
    note = "MongoDB supports encrypted equality on string, int, long, bool, date, objectId and binData; not on double, decimal, arrays or embedded models",
    note = "remove `queries` (the field stays encrypted, not queryable), or use `queries = \"range\"` for numbers"
)]
pub trait EqualityQueryable: FieldValue {}

/// Marker: an encrypted field of this type may have `queries = "range"`
/// (BSON int, long, double, decimal, date).
#[diagnostic::on_unimplemented(
    message = "an encrypted `{Self}` field cannot have `queries = \"range\"`",
    label = "range queries are not supported on this type",
    note = "MongoDB supports encrypted range queries on int, long, double, decimal and date only",
    note = "use `queries = \"equality\"` or remove `queries`"
)]
pub trait RangeQueryable: FieldValue {}

/// Marker: range options of this type need `precision` (double, decimal).
#[diagnostic::on_unimplemented(
    message = "`precision` is only allowed on double and decimal range fields, not on `{Self}`",
    label = "remove `precision` for this type",
    note = "precision says how many digits after the decimal point a double or decimal range field keeps"
)]
pub trait RangePrecision: RangeQueryable {}

/// Marker: range options of this type take no `precision` (int, long, date).
#[diagnostic::on_unimplemented(
    message = "a range field of type `{Self}` needs `precision`",
    label = "add `precision = N` to `#[encrypted(...)]`",
    note = "MongoDB requires min, max and precision together on double and decimal range fields"
)]
pub trait RangeWithoutPrecision: RangeQueryable {}

/// Marker: a string-like type (`String`, `Option<String>`), which may use
/// `#[field(kind = "text" | "email" | "url")]` and the plaintext lookups
/// `contains` and `starts_with`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a string type",
    label = "`kind = \"text\" | \"email\" | \"url\"`, `contains` and `starts_with` need a String field"
)]
pub trait TextValue: FieldValue {}

/// Marker: a nullable type (`Option<T>`), which has the `is_null` lookup.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not nullable, so it has no `is_null` lookup",
    label = "only `Option<_>` fields can be null"
)]
pub trait Nullable: FieldValue {}

/// Conversion of a lookup argument into the field's type, so `ssn.eq("...")`
/// works on a `String` field and `age.eq(30)` infers the field's integer type.
pub trait IntoFieldValue<T> {
    /// Converts.
    fn into_field_value(self) -> T;
}

impl<T: FieldValue> IntoFieldValue<T> for T {
    fn into_field_value(self) -> T {
        self
    }
}
impl IntoFieldValue<String> for &str {
    fn into_field_value(self) -> String {
        self.to_owned()
    }
}
impl IntoFieldValue<String> for &String {
    fn into_field_value(self) -> String {
        self.clone()
    }
}
impl<T: FieldValue> IntoFieldValue<Option<T>> for T {
    fn into_field_value(self) -> Option<T> {
        Some(self)
    }
}
impl IntoFieldValue<Option<String>> for &str {
    fn into_field_value(self) -> Option<String> {
        Some(self.to_owned())
    }
}
impl IntoFieldValue<Vec<u8>> for &[u8] {
    fn into_field_value(self) -> Vec<u8> {
        self.to_vec()
    }
}

fn int_of(value: &Bson, expected: &'static str) -> Result<i64, ValueError> {
    match value {
        Bson::Int32(v) => Ok(i64::from(*v)),
        Bson::Int64(v) => Ok(*v),
        other => Err(ValueError::wrong_type(expected, other)),
    }
}

macro_rules! integer {
    ($t:ty, $kind:ident, $bson:literal, $store:ident, $store_t:ty, $reason:literal) => {
        impl FieldValue for $t {
            const BSON_TYPE: &'static str = $bson;
            type Path<M: 'static> = FieldPath<M, Self, Plain>;
            fn kind() -> FieldKind {
                FieldKind::$kind
            }
            fn to_bson(&self) -> Result<Bson, ValueError> {
                <$store_t>::try_from(*self)
                    .map(Bson::$store)
                    .map_err(|_| ValueError::OutOfRange {
                        rust_type: stringify!($t),
                        reason: concat!("larger than the BSON ", $bson, " maximum"),
                    })
            }
            fn from_bson(value: Bson) -> Result<Self, ValueError> {
                let v = int_of(&value, $bson)?;
                <$t>::try_from(v).map_err(|_| ValueError::OutOfRange {
                    rust_type: stringify!($t),
                    reason: $reason,
                })
            }
        }
        impl EqualityQueryable for $t {}
        impl RangeQueryable for $t {}
        impl RangeWithoutPrecision for $t {}
    };
}

integer!(
    i16,
    SmallInteger,
    "int",
    Int32,
    i32,
    "outside -32768..=32767"
);
integer!(i32, Integer, "long", Int64, i64, "outside the i32 range");
integer!(i64, BigInteger, "long", Int64, i64, "outside the i64 range");
integer!(
    u16,
    PositiveSmallInteger,
    "int",
    Int32,
    i32,
    "negative or above 65535"
);
integer!(
    u32,
    PositiveInteger,
    "long",
    Int64,
    i64,
    "negative or above u32::MAX"
);
integer!(u64, PositiveBigInteger, "long", Int64, i64, "negative");

impl FieldValue for String {
    const BSON_TYPE: &'static str = "string";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Char
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::String(self.clone()))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::String(s) => Ok(s),
            other => Err(ValueError::wrong_type("string", &other)),
        }
    }
}
impl EqualityQueryable for String {}
impl TextValue for String {}

impl FieldValue for bool {
    const BSON_TYPE: &'static str = "bool";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Boolean
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::Boolean(*self))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Boolean(b) => Ok(b),
            other => Err(ValueError::wrong_type("bool", &other)),
        }
    }
}
impl EqualityQueryable for bool {}

impl FieldValue for Vec<u8> {
    const BSON_TYPE: &'static str = "binData";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Binary
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: self.clone(),
        }))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes,
            }) => Ok(bytes),
            Bson::Binary(_) => Err(ValueError::Invalid {
                what: "binary value",
                reason: "expected binary subtype 0 (generic)".to_owned(),
            }),
            other => Err(ValueError::wrong_type("binData", &other)),
        }
    }
}
impl EqualityQueryable for Vec<u8> {}

fn millis_of(value: &Bson) -> Result<i64, ValueError> {
    match value {
        Bson::DateTime(d) => Ok(d.timestamp_millis()),
        other => Err(ValueError::wrong_type("date", other)),
    }
}

fn chrono_of(ms: i64, rust_type: &'static str) -> Result<DateTime<Utc>, ValueError> {
    DateTime::from_timestamp_millis(ms).ok_or(ValueError::OutOfRange {
        rust_type,
        reason: "the BSON date is outside chrono's range (about ±262000 years)",
    })
}

macro_rules! date_like {
    ($t:ty, $kind:ident, |$v:ident| $to:expr, |$ms:ident| $from:expr) => {
        impl FieldValue for $t {
            const BSON_TYPE: &'static str = "date";
            type Path<M: 'static> = FieldPath<M, Self, Plain>;
            fn kind() -> FieldKind {
                FieldKind::$kind
            }
            fn to_bson(&self) -> Result<Bson, ValueError> {
                let $v = self;
                let millis: i64 = $to;
                Ok(Bson::DateTime(bson::DateTime::from_millis(millis)))
            }
            fn from_bson(value: Bson) -> Result<Self, ValueError> {
                let $ms = millis_of(&value)?;
                $from
            }
        }
        impl EqualityQueryable for $t {}
        impl RangeQueryable for $t {}
        impl RangeWithoutPrecision for $t {}
    };
}

date_like!(DateTime<Utc>, DateTime, |v| v.timestamp_millis(), |ms| {
    chrono_of(ms, "DateTime<Utc>")
});
date_like!(
    NaiveDateTime,
    DateTime,
    |v| v.and_utc().timestamp_millis(),
    |ms| Ok(chrono_of(ms, "NaiveDateTime")?.naive_utc())
);
date_like!(
    NaiveDate,
    Date,
    |v| v.and_time(NaiveTime::MIN).and_utc().timestamp_millis(),
    // Django takes the date part of whatever datetime is stored.
    |ms| Ok(chrono_of(ms, "NaiveDate")?.date_naive())
);

/// Milliseconds of 0001-01-01T00:00:00Z, the day Django MongoDB Backend puts
/// times on (`datetime.combine(datetime.min.date(), value)`).
pub const TIME_EPOCH_MILLIS: i64 = -62_135_596_800_000;

date_like!(
    NaiveTime,
    Time,
    |v| {
        // A leap second (nanosecond >= 1e9) is kept within its second.
        let sub_ms = i64::from(v.nanosecond().min(999_999_999) / 1_000_000);
        TIME_EPOCH_MILLIS + i64::from(v.num_seconds_from_midnight()) * 1000 + sub_ms
    },
    |ms| Ok(chrono_of(ms, "NaiveTime")?.time())
);

impl FieldValue for TimeDelta {
    const BSON_TYPE: &'static str = "long";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Duration
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        // num_milliseconds truncates toward zero; Django floors (`// 1000`).
        let ms = self.num_milliseconds();
        let back = TimeDelta::try_milliseconds(ms).ok_or(ValueError::OutOfRange {
            rust_type: "TimeDelta",
            reason: "outside the millisecond range",
        })?;
        let ms = if *self < back {
            ms.saturating_sub(1)
        } else {
            ms
        };
        Ok(Bson::Int64(ms))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        let ms = int_of(&value, "long")?;
        TimeDelta::try_milliseconds(ms).ok_or(ValueError::OutOfRange {
            rust_type: "TimeDelta",
            reason: "outside TimeDelta's range",
        })
    }
}
impl EqualityQueryable for TimeDelta {}
impl RangeQueryable for TimeDelta {}
impl RangeWithoutPrecision for TimeDelta {}

impl FieldValue for std::time::Duration {
    const BSON_TYPE: &'static str = "long";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Duration
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        i64::try_from(self.as_millis())
            .map(Bson::Int64)
            .map_err(|_| ValueError::OutOfRange {
                rust_type: "Duration",
                reason: "more than i64::MAX milliseconds",
            })
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        let ms = int_of(&value, "long")?;
        u64::try_from(ms)
            .map(std::time::Duration::from_millis)
            .map_err(|_| ValueError::OutOfRange {
                rust_type: "Duration",
                reason: "negative (use chrono::TimeDelta for signed durations)",
            })
    }
}
impl EqualityQueryable for std::time::Duration {}
impl RangeQueryable for std::time::Duration {}
impl RangeWithoutPrecision for std::time::Duration {}

/// Reads a decimal128 as a `rust_decimal::Decimal`; errors for NaN,
/// infinities and values beyond its 96-bit mantissa or scale 28.
pub fn decimal128_to_rust(value: Decimal128) -> Result<Decimal, ValueError> {
    let text = value.to_string();
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| ValueError::OutOfRange {
            rust_type: "Decimal",
            reason: "NaN, infinite, or more than 28 digits of scale / 96 bits of mantissa",
        })
}

/// Writes a `rust_decimal::Decimal` as a decimal128, keeping its scale.
pub fn rust_to_decimal128(value: &Decimal) -> Result<Decimal128, ValueError> {
    Decimal128::from_str(&value.to_string()).map_err(|e| ValueError::Invalid {
        what: "decimal",
        reason: e.to_string(),
    })
}

impl FieldValue for Decimal {
    const BSON_TYPE: &'static str = "decimal";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Decimal
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        rust_to_decimal128(self).map(Bson::Decimal128)
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Decimal128(d) => decimal128_to_rust(d),
            other => Err(ValueError::wrong_type("decimal", &other)),
        }
    }
}
impl RangeQueryable for Decimal {}
impl RangePrecision for Decimal {}

impl FieldValue for Decimal128 {
    const BSON_TYPE: &'static str = "decimal";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Decimal
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::Decimal128(*self))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Decimal128(d) => Ok(d),
            other => Err(ValueError::wrong_type("decimal", &other)),
        }
    }
}
impl RangeQueryable for Decimal128 {}
impl RangePrecision for Decimal128 {}

impl FieldValue for f64 {
    const BSON_TYPE: &'static str = "double";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Float
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::Double(*self))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Double(d) => Ok(d),
            // Other clients may store whole numbers as int32; that is exact.
            Bson::Int32(i) => Ok(f64::from(i)),
            other => Err(ValueError::wrong_type("double", &other)),
        }
    }
}
impl RangeQueryable for f64 {}
impl RangePrecision for f64 {}

impl FieldValue for uuid::Uuid {
    const BSON_TYPE: &'static str = "binData";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::Uuid
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: self.as_bytes().to_vec(),
        }))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes,
            }) => uuid::Uuid::from_slice(&bytes).map_err(|_| ValueError::Invalid {
                what: "UUID",
                reason: "binary subtype 4 must hold 16 bytes".to_owned(),
            }),
            Bson::Binary(_) => Err(ValueError::Invalid {
                what: "UUID",
                reason: "expected binary subtype 4".to_owned(),
            }),
            other => Err(ValueError::wrong_type("binData", &other)),
        }
    }
}
impl EqualityQueryable for uuid::Uuid {}

impl FieldValue for ObjectId {
    const BSON_TYPE: &'static str = "objectId";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::ObjectId
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::ObjectId(*self))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::ObjectId(o) => Ok(o),
            other => Err(ValueError::wrong_type("objectId", &other)),
        }
    }
}
impl EqualityQueryable for ObjectId {}

impl FieldValue for IpAddr {
    const BSON_TYPE: &'static str = "string";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        FieldKind::GenericIpAddress
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        Ok(Bson::String(self.to_string()))
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::String(s) => IpAddr::from_str(&s).map_err(|_| ValueError::Invalid {
                what: "IP address",
                reason: "not an IPv4 or IPv6 address".to_owned(),
            }),
            other => Err(ValueError::wrong_type("string", &other)),
        }
    }
}
impl EqualityQueryable for IpAddr {}

impl<T: FieldValue> FieldValue for Vec<T> {
    const BSON_TYPE: &'static str = "array";
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        match T::kind() {
            FieldKind::Embedded(r) => FieldKind::EmbeddedArray(r),
            k => FieldKind::Array(Box::new(k)),
        }
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        self.iter()
            .enumerate()
            .map(|(i, v)| v.to_bson().map_err(|e| e.at(&i.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Bson::Array)
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| T::from_bson(v).map_err(|e| e.at(&i.to_string())))
                .collect(),
            other => Err(ValueError::wrong_type("array", &other)),
        }
    }
}

impl<T: FieldValue> FieldValue for Option<T> {
    const BSON_TYPE: &'static str = T::BSON_TYPE;
    const NULLABLE: bool = true;
    type Path<M: 'static> = FieldPath<M, Self, Plain>;
    fn kind() -> FieldKind {
        T::kind()
    }
    fn to_bson(&self) -> Result<Bson, ValueError> {
        match self {
            Some(v) => v.to_bson(),
            None => Ok(Bson::Null),
        }
    }
    fn from_bson(value: Bson) -> Result<Self, ValueError> {
        match value {
            Bson::Null => Ok(None),
            v => T::from_bson(v).map(Some),
        }
    }
    fn from_missing() -> Result<Self, ValueError> {
        Ok(None)
    }
}
impl<T: TextValue> TextValue for Option<T> {}
impl<T: FieldValue> Nullable for Option<T> {}
