//! Schema metadata produced by `#[derive(Model)]` and `#[derive(EmbeddedModel)]`.

use std::cmp::Ordering;

use bson::{Bson, Document, doc};

use cipherdoc_crypto::text::{TextIndex, TextIndexKind};

use super::error::ModelError;

/// The schema of a model stored in its own collection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelSchema {
    /// The application label (`#[model(app = "...")]`).
    pub app: String,
    /// The Rust name of the model struct (`Patient`).
    pub name: String,
    /// The collection: `<app>_<model in snake_case>` unless overridden with
    /// `#[model(collection = "...")]`.
    pub collection: String,
    /// Default KMS provider for the model's data keys
    /// (`#[model(kms_provider = "aws:prod")]`); a field's own wins.
    pub kms_provider: Option<String>,
    /// The fields in definition order; the primary key `_id` included.
    pub fields: Vec<FieldSchema>,
}

impl ModelSchema {
    /// A schema with no fields.
    pub fn new(
        app: impl Into<String>,
        name: impl Into<String>,
        collection: impl Into<String>,
    ) -> Self {
        ModelSchema {
            app: app.into(),
            name: name.into(),
            collection: collection.into(),
            kms_provider: None,
            fields: Vec::new(),
        }
    }

    /// `app.Model`, the label used in every message about the model.
    pub fn label(&self) -> String {
        format!("{}.{}", self.app, self.name)
    }

    /// The field stored under the BSON key `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The encrypted paths of this model, see [`encrypted_paths`].
    pub fn encrypted_paths(&self) -> Vec<EncryptedPath> {
        encrypted_paths(self)
    }

    /// Checks the rules of Queryable Encryption, see [`validate`].
    pub fn validate(&self) -> Result<(), ModelError> {
        validate(self)
    }
}

/// The schema of an embedded model (a struct stored as a sub-document).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EmbeddedSchema {
    /// The Rust name of the struct (`PatientRecord`).
    pub name: String,
    /// The fields in definition order.
    pub fields: Vec<FieldSchema>,
}

impl EmbeddedSchema {
    /// A schema with no fields.
    pub fn new(name: impl Into<String>) -> Self {
        EmbeddedSchema {
            name: name.into(),
            fields: Vec::new(),
        }
    }

    /// The field stored under the BSON key `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// A link to an embedded model's schema, held by [`FieldKind::Embedded`] and
/// [`FieldKind::EmbeddedArray`]. Compared by name.
#[derive(Clone, Copy)]
pub struct EmbeddedRef {
    /// The Rust name of the embedded struct.
    pub name: &'static str,
    /// Returns the embedded model's schema.
    pub schema: fn() -> &'static EmbeddedSchema,
}

impl EmbeddedRef {
    /// The link to `E`'s schema.
    pub fn of<E: super::EmbeddedModel>() -> Self {
        EmbeddedRef {
            name: E::NAME,
            schema: E::schema,
        }
    }

    /// The embedded model's schema.
    pub fn get(&self) -> &'static EmbeddedSchema {
        (self.schema)()
    }
}

impl std::fmt::Debug for EmbeddedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmbeddedRef({})", self.name)
    }
}

impl PartialEq for EmbeddedRef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// The Django field a Rust field corresponds to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FieldKind {
    /// `CharField`: `String` (the default for strings).
    Char,
    /// `TextField`: `String` with `#[field(kind = "text")]`.
    Text,
    /// `EmailField`: `String` with `#[field(kind = "email")]`.
    Email,
    /// `URLField`: `String` with `#[field(kind = "url")]`.
    Url,
    /// `SmallIntegerField`: `i16`.
    SmallInteger,
    /// `IntegerField`: `i32`.
    Integer,
    /// `BigIntegerField`: `i64`.
    BigInteger,
    /// `PositiveSmallIntegerField`: `u16`.
    PositiveSmallInteger,
    /// `PositiveIntegerField`: `u32`.
    PositiveInteger,
    /// `PositiveBigIntegerField`: `u64`.
    PositiveBigInteger,
    /// `BooleanField`: `bool`.
    Boolean,
    /// `BinaryField`: `Vec<u8>`.
    Binary,
    /// `DateField`: `chrono::NaiveDate`.
    Date,
    /// `DateTimeField`: `chrono::DateTime<Utc>`, `chrono::NaiveDateTime`.
    DateTime,
    /// `TimeField`: `chrono::NaiveTime`.
    Time,
    /// `DurationField`: `chrono::TimeDelta`, `std::time::Duration`.
    Duration,
    /// `DecimalField`: `rust_decimal::Decimal`, `bson::Decimal128`.
    Decimal,
    /// `FloatField`: `f64`.
    Float,
    /// `UUIDField`: `uuid::Uuid`.
    Uuid,
    /// `ObjectIdField`: `bson::oid::ObjectId`.
    ObjectId,
    /// `GenericIPAddressField`: `std::net::IpAddr`.
    GenericIpAddress,
    /// `ArrayField`: `Vec<T>` of a non-embedded `T`.
    Array(Box<FieldKind>),
    /// `EmbeddedModelField`: a `#[derive(EmbeddedModel)]` struct.
    Embedded(EmbeddedRef),
    /// `EmbeddedModelArrayField`: `Vec` of an embedded model.
    EmbeddedArray(EmbeddedRef),
    /// A user type implementing [`FieldValue`](super::FieldValue) itself; the
    /// string names it.
    Custom(&'static str),
}

impl FieldKind {
    /// The embedded model of an `Embedded` or `EmbeddedArray` kind.
    pub fn embedded(&self) -> Option<&EmbeddedRef> {
        match self {
            FieldKind::Embedded(r) | FieldKind::EmbeddedArray(r) => Some(r),
            _ => None,
        }
    }

    /// The embedded model this kind holds at any depth of lists: that of
    /// `Embedded` and `EmbeddedArray`, and of `Array`s of them
    /// (`Vec<Vec<E>>`), which the walks must not overlook.
    pub fn embedded_deep(&self) -> Option<&EmbeddedRef> {
        match self {
            FieldKind::Array(inner) => inner.embedded_deep(),
            k => k.embedded(),
        }
    }
}

/// Options of a field that do not change its BSON type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldOptions {
    /// `max_length` of a string field.
    pub max_length: Option<u32>,
    /// `max_digits` of a decimal field.
    pub max_digits: Option<u32>,
    /// `decimal_places` of a decimal field.
    pub decimal_places: Option<u32>,
}

/// The `queries` of an encrypted field, as in an `encryptedFields` entry.
// One per encrypted field: the size of a range config does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QueryConfig {
    /// `{queryType: "equality"}`.
    Equality {
        /// `contention`; `None` leaves the server default (8).
        contention: Option<i64>,
    },
    /// `{queryType: "range", min, max, ...}`.
    Range {
        /// Lower bound, BSON-typed like the field.
        min: Bson,
        /// Upper bound, BSON-typed like the field.
        max: Bson,
        /// `sparsity`; `None` = default 2.
        sparsity: Option<i64>,
        /// `precision`, double and decimal only.
        precision: Option<i32>,
        /// `trimFactor`; `None` = default.
        trim_factor: Option<i32>,
        /// `contention`; `None` = default 8.
        contention: Option<i64>,
    },
    /// Text search (`#[encrypted(queries = "prefix" | "suffix" |
    /// "prefix, suffix" | "substring", ...)]`): the field's folding and the
    /// lengths of each query type it has.
    Text {
        /// Folding, and the prefix, suffix and substring parameters (at
        /// least one; substring alone).
        index: TextIndex,
        /// `contention`; `None` = default 8.
        contention: Option<i64>,
    },
}

impl QueryConfig {
    /// `"equality"`, `"range"`, or the first text query type (`"prefix"`,
    /// `"suffix"`, `"substring"`).
    pub fn query_type(&self) -> &'static str {
        match self {
            QueryConfig::Equality { .. } => "equality",
            QueryConfig::Range { .. } => "range",
            QueryConfig::Text { index, .. } => {
                text_kinds(index).first().map_or("prefix", |k| k.as_str())
            }
        }
    }

    /// The `queries` value of `encryptedFields`: [`Self::to_document`], or
    /// for a text field with prefix and suffix an array of both.
    pub fn to_bson(&self) -> Bson {
        match self {
            QueryConfig::Text { index, contention } => {
                let mut docs: Vec<Bson> = text_kinds(index)
                    .into_iter()
                    .map(|k| Bson::Document(text_query_document(index, k, *contention)))
                    .collect();
                if docs.len() == 1 {
                    docs.pop().unwrap_or(Bson::Null)
                } else {
                    Bson::Array(docs)
                }
            }
            other => Bson::Document(other.to_document()),
        }
    }

    /// The `QueryTypeConfig` document of `encryptedFields` (qe-protocol §7.1):
    /// only the options that were set, with MongoDB's key names and types.
    /// A text field's first query type only: use [`Self::to_bson`] for the
    /// whole `queries` value.
    pub fn to_document(&self) -> Document {
        match self {
            QueryConfig::Text { index, contention } => {
                let kind = text_kinds(index)
                    .first()
                    .copied()
                    .unwrap_or(TextIndexKind::Prefix);
                text_query_document(index, kind, *contention)
            }
            QueryConfig::Equality { contention } => {
                let mut d = doc! { "queryType": "equality" };
                if let Some(c) = contention {
                    d.insert("contention", *c);
                }
                d
            }
            QueryConfig::Range {
                min,
                max,
                sparsity,
                precision,
                trim_factor,
                contention,
            } => {
                let mut d = doc! { "queryType": "range" };
                if let Some(c) = contention {
                    d.insert("contention", *c);
                }
                d.insert("min", min.clone());
                d.insert("max", max.clone());
                if let Some(s) = sparsity {
                    d.insert("sparsity", *s);
                }
                if let Some(p) = precision {
                    d.insert("precision", *p);
                }
                if let Some(t) = trim_factor {
                    d.insert("trimFactor", *t);
                }
                d
            }
        }
    }

    /// For a range config, whether `value` lies in `[min, max]`; `None` for
    /// equality configs and values that cannot be compared with the bounds.
    pub fn bounds_contain(&self, value: &Bson) -> Option<bool> {
        match self {
            QueryConfig::Equality { .. } | QueryConfig::Text { .. } => None,
            QueryConfig::Range { min, max, .. } => {
                let lo = compare_bson(min, value)?;
                let hi = compare_bson(value, max)?;
                Some(lo != Ordering::Greater && hi != Ordering::Greater)
            }
        }
    }
}

/// The text query types of `index`, in `queries` order.
fn text_kinds(index: &TextIndex) -> Vec<TextIndexKind> {
    [
        TextIndexKind::Prefix,
        TextIndexKind::Suffix,
        TextIndexKind::Substring,
    ]
    .into_iter()
    .filter(|k| index.query_lengths(*k).is_some())
    .collect()
}

/// One text query type's `QueryTypeConfig` document, with MongoDB's key
/// names (`strMinQueryLength`, ..., `caseSensitive`, `diacriticSensitive`).
fn text_query_document(
    index: &TextIndex,
    kind: TextIndexKind,
    contention: Option<i64>,
) -> Document {
    let mut d = doc! { "queryType": kind.as_str() };
    if let Some(c) = contention {
        d.insert("contention", c);
    }
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    if let (TextIndexKind::Substring, Some(s)) = (kind, index.substring) {
        d.insert("strMaxLength", int(s.max_length()));
    }
    if let Some(l) = index.query_lengths(kind) {
        d.insert("strMinQueryLength", int(l.min_query_length()));
        d.insert("strMaxQueryLength", int(l.max_query_length()));
    }
    d.insert(
        "caseSensitive",
        index.case == cipherdoc_crypto::text::CaseSensitivity::Sensitive,
    );
    d.insert(
        "diacriticSensitive",
        index.diacritics == cipherdoc_crypto::text::DiacriticSensitivity::Sensitive,
    );
    d
}

/// Compares two BSON values of the same numeric or date type; `None` for
/// other types, mixed types and NaN.
pub fn compare_bson(a: &Bson, b: &Bson) -> Option<Ordering> {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => Some(x.cmp(y)),
        (Bson::Int64(x), Bson::Int64(y)) => Some(x.cmp(y)),
        (Bson::Double(x), Bson::Double(y)) => x.partial_cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => Some(x.cmp(y)),
        (Bson::Decimal128(x), Bson::Decimal128(y)) => {
            let x = super::value::decimal128_to_rust(*x).ok()?;
            let y = super::value::decimal128_to_rust(*y).ok()?;
            Some(x.cmp(&y))
        }
        _ => None,
    }
}

/// The description of one field.
// The flags mirror Django's field options one to one.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FieldSchema {
    /// The BSON key (`_id` for the primary key; `#[field(db_column = "...")]`
    /// renames).
    pub name: String,
    /// The Rust field name.
    pub rust_name: String,
    /// The Rust type as written in the struct.
    pub rust_type: String,
    /// What kind of field this is.
    pub kind: FieldKind,
    /// The BSON type the value is stored as: the `bsonType` of
    /// `encryptedFields` (`"string"`, `"int"`, `"long"`, `"bool"`,
    /// `"binData"`, `"date"`, `"decimal"`, `"double"`, `"objectId"`,
    /// `"array"`, `"object"`).
    pub bson_type: String,
    /// `max_length`, `max_digits`, `decimal_places`.
    pub options: FieldOptions,
    /// Whether the field may be null or absent (an `Option<_>`).
    pub null: bool,
    /// Whether this is the primary key, stored as `_id`.
    pub primary_key: bool,
    /// Whether the field is encrypted.
    pub encrypted: bool,
    /// How the encrypted field may be queried; `None` = unindexed.
    pub queries: Option<QueryConfig>,
    /// `#[field(unique)]`.
    pub unique: bool,
    /// `#[field(index)]`.
    pub indexed: bool,
    /// `#[encrypted(kms_provider = "...")]`.
    pub kms_provider: Option<String>,
}

impl FieldSchema {
    /// A plain, non-null field with default options.
    pub fn new(name: impl Into<String>, kind: FieldKind, bson_type: impl Into<String>) -> Self {
        let name = name.into();
        FieldSchema {
            rust_name: name.clone(),
            name,
            rust_type: String::new(),
            kind,
            bson_type: bson_type.into(),
            options: FieldOptions::default(),
            null: false,
            primary_key: false,
            encrypted: false,
            queries: None,
            unique: false,
            indexed: false,
            kms_provider: None,
        }
    }
}

/// One encrypted path of a model: what migrations turn into an entry of
/// `encryptedFields.fields` once the data key exists.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EncryptedPath {
    /// Dotted path from the document root (`patient_record.ssn`).
    pub path: String,
    /// The `bsonType`.
    pub bson_type: String,
    /// The `queries`; `None` = unindexed.
    pub queries: Option<QueryConfig>,
    /// The KMS provider for the data key: the field's, else the model's.
    pub kms_provider: Option<String>,
}

impl EncryptedPath {
    /// `{path, bsonType, queries?}`; the caller adds `keyId`.
    pub fn to_document(&self) -> Document {
        let mut d = doc! { "path": self.path.clone(), "bsonType": self.bson_type.clone() };
        if let Some(q) = &self.queries {
            d.insert("queries", q.to_bson());
        }
        d
    }
}

/// The encrypted paths of `schema` in definition order: encrypted fields of
/// the model and, through plain (non-encrypted, non-array) embedded models at
/// any depth, of its embedded models, with dotted paths.
///
/// An encrypted embedded model is one path (its sub-fields are not listed);
/// embedded model arrays are not entered (encrypting their fields is refused
/// by [`validate`]).
pub fn encrypted_paths(schema: &ModelSchema) -> Vec<EncryptedPath> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    walk_encrypted(
        &schema.fields,
        "",
        schema.kms_provider.as_deref(),
        &mut stack,
        &mut out,
    );
    out
}

fn walk_encrypted(
    fields: &[FieldSchema],
    prefix: &str,
    default_kms: Option<&str>,
    stack: &mut Vec<&'static str>,
    out: &mut Vec<EncryptedPath>,
) {
    for f in fields {
        let path = join(prefix, &f.name);
        if f.encrypted {
            out.push(EncryptedPath {
                path,
                bson_type: f.bson_type.clone(),
                queries: f.queries.clone(),
                kms_provider: f
                    .kms_provider
                    .clone()
                    .or_else(|| default_kms.map(str::to_owned)),
            });
        } else if let FieldKind::Embedded(r) = &f.kind {
            // An embedded model can only contain itself through an array, which
            // is not entered; the stack still guards against a hand-written
            // cyclic schema.
            if stack.contains(&r.name) {
                continue;
            }
            stack.push(r.name);
            walk_encrypted(&r.get().fields, &path, default_kms, stack, out);
            stack.pop();
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// BSON types an encrypted equality field may have (qe-protocol §7.4).
pub const EQUALITY_BSON_TYPES: &[&str] = &[
    "string",
    "int",
    "long",
    "bool",
    "date",
    "timestamp",
    "objectId",
    "binData",
    "regex",
    "javascript",
    "symbol",
    "dbPointer",
];

/// BSON types an encrypted range field may have (qe-protocol §7.4).
pub const RANGE_BSON_TYPES: &[&str] = &["int", "long", "double", "decimal", "date"];

/// Checks the rules of Queryable Encryption that the derive cannot see, plus
/// (again) those it can, for schemas built by hand:
///
/// - an encrypted field cannot be null, unique or indexed, nor the primary key;
/// - `queries` is not allowed on encrypted arrays, embedded models and
///   embedded model arrays, and must suit the BSON type;
/// - range options: `min < max`, both typed like the field, `precision` only
///   (and then always) on double and decimal, sparsity 1–4, no negative
///   contention, precision or trimFactor;
/// - an encrypted embedded model (or array of them) may not contain encrypted
///   fields, at any depth;
/// - an embedded model array (not encrypted) may not contain encrypted fields,
///   at any depth, because MongoDB cannot encrypt fields inside arrays.
///
/// Every message names the model and the dotted field path, and says how to
/// fix the model.
pub fn validate(schema: &ModelSchema) -> Result<(), ModelError> {
    let model = schema.label();
    if !schema
        .fields
        .iter()
        .any(|f| f.primary_key && f.name == "_id")
    {
        return Err(ModelError::InvalidSchema {
            model,
            field: "_id".to_owned(),
            problem: "is missing: a model needs a primary key stored as '_id'".to_owned(),
            fix: "add `pub id: ObjectId` to the struct".to_owned(),
        });
    }
    let mut stack = Vec::new();
    validate_fields(&model, &schema.fields, "", &mut stack)
}

fn invalid(
    model: &str,
    path: &str,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ModelError {
    ModelError::InvalidSchema {
        model: model.to_owned(),
        field: path.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn validate_fields(
    model: &str,
    fields: &[FieldSchema],
    prefix: &str,
    stack: &mut Vec<&'static str>,
) -> Result<(), ModelError> {
    for f in fields {
        let path = join(prefix, &f.name);
        if f.encrypted {
            validate_encrypted(model, f, &path)?;
            if let Some(r) = f.kind.embedded_deep() {
                if let Some(inner) = first_encrypted_inside(r, &mut Vec::new()) {
                    let whole = if matches!(f.kind, FieldKind::Embedded(_)) {
                        "an encrypted embedded model"
                    } else {
                        "an encrypted embedded model array"
                    };
                    return Err(invalid(
                        model,
                        &path,
                        format!(
                            "is {whole}, but {}.{inner} inside it is encrypted too",
                            r.name
                        ),
                        format!(
                            "remove #[encrypted] from {}.{inner} (the whole sub-document is \
                             already encrypted), or remove #[encrypted] from '{path}' to encrypt \
                             only selected fields",
                            r.name
                        ),
                    ));
                }
            }
            continue;
        }
        if f.queries.is_some() {
            return Err(invalid(
                model,
                &path,
                "has `queries` but is not encrypted",
                "add #[encrypted] or remove `queries`",
            ));
        }
        match &f.kind {
            FieldKind::Embedded(r) => {
                if stack.contains(&r.name) {
                    continue;
                }
                stack.push(r.name);
                let res = validate_fields(model, &r.get().fields, &path, stack);
                stack.pop();
                res?;
            }
            FieldKind::EmbeddedArray(_) | FieldKind::Array(_) => {
                let Some(r) = f.kind.embedded_deep() else {
                    continue;
                };
                if let Some(inner) = first_encrypted_inside(r, &mut Vec::new()) {
                    return Err(invalid(
                        model,
                        &path,
                        format!(
                            "is an embedded model array, but {}.{inner} inside it is encrypted; \
                             MongoDB doesn't support encrypting selected fields of an embedded \
                             model array",
                            r.name
                        ),
                        format!(
                            "encrypt the whole array with #[encrypted] on '{path}' (and remove \
                             #[encrypted] inside {}), or make '{path}' a single embedded model",
                            r.name
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The dotted path (relative to `r`) of the first encrypted field inside the
/// embedded model `r`, at any depth, through embedded models and arrays.
fn first_encrypted_inside(r: &EmbeddedRef, stack: &mut Vec<&'static str>) -> Option<String> {
    if stack.contains(&r.name) {
        return None;
    }
    stack.push(r.name);
    let mut found = None;
    for f in &r.get().fields {
        if f.encrypted {
            found = Some(f.name.clone());
            break;
        }
        if let Some(inner) = f.kind.embedded_deep() {
            if let Some(p) = first_encrypted_inside(inner, stack) {
                found = Some(format!("{}.{p}", f.name));
                break;
            }
        }
    }
    stack.pop();
    found
}

fn validate_encrypted(model: &str, f: &FieldSchema, path: &str) -> Result<(), ModelError> {
    if f.primary_key {
        return Err(invalid(
            model,
            path,
            "is the primary key and cannot be encrypted",
            "remove #[encrypted]",
        ));
    }
    if f.null {
        return Err(invalid(
            model,
            path,
            "is encrypted and nullable; MongoDB cannot encrypt null values",
            "use a non-Option type, or remove #[encrypted]",
        ));
    }
    if f.unique {
        return Err(invalid(
            model,
            path,
            "is encrypted and unique; encrypted fields can't be part of a unique constraint",
            "remove `unique`, or remove #[encrypted]",
        ));
    }
    if f.indexed {
        return Err(invalid(
            model,
            path,
            "is encrypted and indexed; encrypted fields can't be indexed",
            "remove `index` (use `queries` to make it queryable), or remove #[encrypted]",
        ));
    }
    let Some(q) = &f.queries else { return Ok(()) };
    let what = match &f.kind {
        FieldKind::Array(_) => Some("an encrypted array"),
        FieldKind::Embedded(_) => Some("an encrypted embedded model"),
        FieldKind::EmbeddedArray(_) => Some("an encrypted embedded model array"),
        _ => None,
    };
    if let Some(what) = what {
        return Err(invalid(
            model,
            path,
            format!("is {what} and cannot have `queries` (a MongoDB limitation)"),
            "remove `queries`",
        ));
    }
    let bt = f.bson_type.as_str();
    match q {
        QueryConfig::Equality { contention } => {
            if !EQUALITY_BSON_TYPES.contains(&bt) {
                return Err(invalid(
                    model,
                    path,
                    format!(
                        "has BSON type {bt}, which cannot be queried by equality when encrypted"
                    ),
                    "remove `queries` (or use `queries = \"range\"` for double and decimal)",
                ));
            }
            check_non_negative(model, path, "contention", *contention)?;
        }
        QueryConfig::Text { index, contention } => {
            validate_text(model, path, bt, index)?;
            check_non_negative(model, path, "contention", *contention)?;
        }
        QueryConfig::Range {
            min,
            max,
            sparsity,
            precision,
            trim_factor,
            contention,
        } => {
            if !RANGE_BSON_TYPES.contains(&bt) {
                return Err(invalid(
                    model,
                    path,
                    format!(
                        "has BSON type {bt}; range queries need int, long, double, decimal or date"
                    ),
                    "use `queries = \"equality\"` or remove `queries`",
                ));
            }
            for (name, b) in [("min", min), ("max", max)] {
                let found = super::error::bson_type_name(b);
                if found != bt {
                    return Err(invalid(
                        model,
                        path,
                        format!("has range {name} of BSON type {found}, but the field is {bt}"),
                        format!("give `{name}` a value of the field's type that fits BSON {bt}"),
                    ));
                }
            }
            if compare_bson(min, max) != Some(Ordering::Less) {
                return Err(invalid(
                    model,
                    path,
                    "has a range min that is not less than its max",
                    "make `min` < `max`",
                ));
            }
            let float = bt == "double" || bt == "decimal";
            match (float, precision) {
                (false, Some(_)) => {
                    return Err(invalid(
                        model,
                        path,
                        format!(
                            "sets `precision` on a {bt} field; precision is for double and decimal only"
                        ),
                        "remove `precision`",
                    ));
                }
                (true, None) => {
                    return Err(invalid(
                        model,
                        path,
                        format!(
                            "is a {bt} range field with min and max but no `precision`; MongoDB requires all three together"
                        ),
                        "add `precision = N` (digits kept after the decimal point)",
                    ));
                }
                _ => {}
            }
            if let Some(s) = sparsity {
                if !(1..=4).contains(s) {
                    return Err(invalid(
                        model,
                        path,
                        "has `sparsity` outside 1..=4",
                        "use a sparsity from 1 to 4",
                    ));
                }
            }
            check_non_negative(model, path, "contention", *contention)?;
            check_non_negative(model, path, "precision", precision.map(i64::from))?;
            check_non_negative(model, path, "trim_factor", trim_factor.map(i64::from))?;
        }
    }
    Ok(())
}

/// A text-search field: a string, substring alone or prefix and/or suffix.
fn validate_text(model: &str, path: &str, bt: &str, index: &TextIndex) -> Result<(), ModelError> {
    if bt != "string" {
        return Err(invalid(
            model,
            path,
            format!("has BSON type {bt}; prefix, suffix and substring queries need a string"),
            "remove `queries` or make the field a String",
        ));
    }
    if index.substring.is_some() && (index.prefix.is_some() || index.suffix.is_some()) {
        return Err(invalid(
            model,
            path,
            "combines substring with prefix or suffix, which MongoDB does not allow",
            "use `queries = \"substring\"` alone, or prefix and/or suffix",
        ));
    }
    if index.substring.is_none() && index.prefix.is_none() && index.suffix.is_none() {
        return Err(invalid(
            model,
            path,
            "is a text-search field without a valid query type (check its query lengths)",
            "use `queries = \"prefix\"`, \"suffix\", \"prefix, suffix\" or \"substring\" with 1 <= min_query_length <= max_query_length",
        ));
    }
    Ok(())
}

fn check_non_negative(
    model: &str,
    path: &str,
    name: &str,
    v: Option<i64>,
) -> Result<(), ModelError> {
    if v.is_some_and(|v| v < 0) {
        return Err(invalid(
            model,
            path,
            format!("has a negative `{name}`"),
            format!("use `{name}` >= 0"),
        ));
    }
    Ok(())
}
