//! `encryptedFields` documents (qe-protocol.md §7.1): which paths of a
//! collection are encrypted, with which key, and how they may be queried.
//!
//! Parsed like libmongocrypt's `mc-efc.c` (unknown fields tolerated, a
//! `keyAltName` accepted in place of `keyId` in a client-side map) and
//! validated like the server (`validate`), which a cipherdoc engine runs when it
//! creates an encrypted collection.

use bson::{Bson, Document};

use crate::key::KeyId;

/// What is wrong with an `encryptedFields` document. `path` names the field
/// (`fields[1].queries.contention`) so that the message points at the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encryptedFields.{path}: {problem}")]
pub struct EfcError {
    /// Where in the document.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

fn err(path: impl Into<String>, problem: impl Into<String>) -> EfcError {
    EfcError {
        path: path.into(),
        problem: problem.into(),
    }
}

/// The key of an encrypted field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKey {
    /// `keyId`: a data key's UUID.
    Id(KeyId),
    /// `keyAltName`: accepted in client-side maps, resolved before use.
    AltName(String),
}

/// A BSON type name as `bsonType` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BsonTypeName {
    /// `"double"` (0x01).
    Double,
    /// `"string"` (0x02).
    String,
    /// `"object"` (0x03).
    Object,
    /// `"array"` (0x04).
    Array,
    /// `"binData"` (0x05).
    BinData,
    /// `"objectId"` (0x07).
    ObjectId,
    /// `"bool"` (0x08).
    Bool,
    /// `"date"` (0x09).
    Date,
    /// `"regex"` (0x0B).
    Regex,
    /// `"dbPointer"` (0x0C).
    DbPointer,
    /// `"javascript"` (0x0D).
    JavaScript,
    /// `"symbol"` (0x0E).
    Symbol,
    /// `"javascriptWithScope"` (0x0F).
    JavaScriptWithScope,
    /// `"int"` (0x10).
    Int,
    /// `"timestamp"` (0x11).
    Timestamp,
    /// `"long"` (0x12).
    Long,
    /// `"decimal"` (0x13).
    Decimal,
}

const TYPE_NAMES: [(BsonTypeName, &str, u8); 17] = [
    (BsonTypeName::Double, "double", 0x01),
    (BsonTypeName::String, "string", 0x02),
    (BsonTypeName::Object, "object", 0x03),
    (BsonTypeName::Array, "array", 0x04),
    (BsonTypeName::BinData, "binData", 0x05),
    (BsonTypeName::ObjectId, "objectId", 0x07),
    (BsonTypeName::Bool, "bool", 0x08),
    (BsonTypeName::Date, "date", 0x09),
    (BsonTypeName::Regex, "regex", 0x0B),
    (BsonTypeName::DbPointer, "dbPointer", 0x0C),
    (BsonTypeName::JavaScript, "javascript", 0x0D),
    (BsonTypeName::Symbol, "symbol", 0x0E),
    (
        BsonTypeName::JavaScriptWithScope,
        "javascriptWithScope",
        0x0F,
    ),
    (BsonTypeName::Int, "int", 0x10),
    (BsonTypeName::Timestamp, "timestamp", 0x11),
    (BsonTypeName::Long, "long", 0x12),
    (BsonTypeName::Decimal, "decimal", 0x13),
];

impl BsonTypeName {
    /// Parses a `bsonType` string.
    pub fn parse(s: &str) -> Option<Self> {
        TYPE_NAMES
            .iter()
            .find(|(_, n, _)| *n == s)
            .map(|(t, _, _)| *t)
    }

    /// The type from a BSON element type byte.
    pub fn from_type_byte(b: u8) -> Option<Self> {
        TYPE_NAMES
            .iter()
            .find(|(_, _, x)| *x == b)
            .map(|(t, _, _)| *t)
    }

    /// The `bsonType` spelling.
    pub fn as_str(self) -> &'static str {
        TYPE_NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or("?", |(_, n, _)| n)
    }

    /// The BSON element type byte.
    pub fn type_byte(self) -> u8 {
        TYPE_NAMES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map_or(0, |(_, _, b)| *b)
    }

    /// Whether QE allows an equality index on this type (§7.4).
    pub fn allows_equality(self) -> bool {
        matches!(
            self,
            Self::String
                | Self::Int
                | Self::Long
                | Self::Bool
                | Self::Date
                | Self::Timestamp
                | Self::ObjectId
                | Self::BinData
                | Self::Regex
                | Self::JavaScript
                | Self::Symbol
                | Self::DbPointer
        )
    }

    /// Whether QE allows a range index on this type (§7.4).
    pub fn allows_range(self) -> bool {
        matches!(
            self,
            Self::Int | Self::Long | Self::Double | Self::Decimal | Self::Date
        )
    }
}

/// The default maximum contention factor (MongoDB 7.0+).
pub const DEFAULT_CONTENTION: u64 = 8;

/// One entry of `queries`.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a handful per collection; boxing buys nothing
#[non_exhaustive]
pub enum QueryTypeConfig {
    /// `{queryType: "equality", contention}`.
    Equality {
        /// Maximum contention factor.
        contention: u64,
    },
    /// `{queryType: "range", contention, min, max, sparsity, precision, trimFactor}`.
    Range {
        /// Maximum contention factor.
        contention: u64,
        /// Index minimum (typed like the field).
        min: Option<Bson>,
        /// Index maximum (typed like the field).
        max: Option<Bson>,
        /// Sparsity (default 2).
        sparsity: Option<i64>,
        /// Decimal digits kept (double/decimal only).
        precision: Option<i32>,
        /// Levels trimmed from the top of the tree.
        trim_factor: Option<i32>,
    },
}

impl QueryTypeConfig {
    /// The maximum contention factor.
    pub fn contention(&self) -> u64 {
        match self {
            Self::Equality { contention } | Self::Range { contention, .. } => *contention,
        }
    }
}

/// One entry of `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptedField {
    /// Dotted path of the field.
    pub path: String,
    /// Its data key.
    pub key: FieldKey,
    /// Its BSON type (required when queryable).
    pub bson_type: Option<BsonTypeName>,
    /// Its query types; empty means unindexed.
    pub queries: Vec<QueryTypeConfig>,
}

impl EncryptedField {
    /// The one query type of this field, if indexed.
    pub fn query(&self) -> Option<&QueryTypeConfig> {
        self.queries.first()
    }
}

/// A parsed `encryptedFields` document.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptedFieldConfig {
    /// `escCollection`, if given.
    pub esc_collection: Option<String>,
    /// `ecocCollection`, if given.
    pub ecoc_collection: Option<String>,
    /// `strEncodeVersion` (text search), if given.
    pub str_encode_version: Option<i32>,
    /// The encrypted fields, in document order.
    pub fields: Vec<EncryptedField>,
}

fn as_u64(path: &str, v: &Bson) -> Result<u64, EfcError> {
    let n = match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        _ => return Err(err(path, "must be an integer")),
    };
    if n < 0 || n == i64::MAX {
        return Err(err(path, "must be at least 0 and less than 2^63-1"));
    }
    u64::try_from(n).map_err(|_| err(path, "out of range"))
}

fn as_i32(path: &str, v: &Bson) -> Result<i32, EfcError> {
    match v {
        Bson::Int32(i) => Ok(*i),
        Bson::Int64(i) => i32::try_from(*i).map_err(|_| err(path, "out of int32 range")),
        _ => Err(err(path, "must be an integer")),
    }
}

fn parse_query(path: &str, doc: &Document) -> Result<QueryTypeConfig, EfcError> {
    let qt = match doc.get("queryType") {
        Some(Bson::String(s)) => s.as_str(),
        Some(_) => return Err(err(format!("{path}.queryType"), "must be a string")),
        None => return Err(err(format!("{path}.queryType"), "missing")),
    };
    let contention = doc
        .get("contention")
        .map(|v| as_u64(&format!("{path}.contention"), v))
        .transpose()?
        .unwrap_or(DEFAULT_CONTENTION);
    match qt {
        "equality" => Ok(QueryTypeConfig::Equality { contention }),
        "range" => Ok(QueryTypeConfig::Range {
            contention,
            min: doc.get("min").cloned(),
            max: doc.get("max").cloned(),
            sparsity: doc
                .get("sparsity")
                .map(|v| match v {
                    Bson::Int32(i) => Ok(i64::from(*i)),
                    Bson::Int64(i) => Ok(*i),
                    _ => Err(err(format!("{path}.sparsity"), "must be an integer")),
                })
                .transpose()?,
            precision: doc
                .get("precision")
                .map(|v| as_i32(&format!("{path}.precision"), v))
                .transpose()?,
            trim_factor: doc
                .get("trimFactor")
                .map(|v| as_i32(&format!("{path}.trimFactor"), v))
                .transpose()?,
        }),
        "rangePreview" => Err(err(
            format!("{path}.queryType"),
            "`rangePreview` (protocol v1) is not supported; use `range`",
        )),
        other => Err(err(
            format!("{path}.queryType"),
            format!("unsupported query type `{other}`; use `equality` or `range`"),
        )),
    }
}

impl EncryptedFieldConfig {
    /// Parses an `encryptedFields` document as libmongocrypt does.
    pub fn from_document(doc: &Document) -> Result<Self, EfcError> {
        let string = |k: &str| -> Result<Option<String>, EfcError> {
            match doc.get(k) {
                None => Ok(None),
                Some(Bson::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(err(k, "must be a string")),
            }
        };
        let str_encode_version = doc
            .get("strEncodeVersion")
            .map(|v| as_i32("strEncodeVersion", v))
            .transpose()?;
        if let Some(v) = str_encode_version
            && v != 1
        {
            return Err(err(
                "strEncodeVersion",
                format!("unsupported version {v}; only 1 is known"),
            ));
        }
        let fields_bson = match doc.get("fields") {
            Some(Bson::Array(a)) => a.as_slice(),
            Some(_) => return Err(err("fields", "must be an array")),
            None => &[],
        };
        let mut fields = Vec::with_capacity(fields_bson.len());
        for (i, f) in fields_bson.iter().enumerate() {
            let at = format!("fields[{i}]");
            let Bson::Document(f) = f else {
                return Err(err(at, "must be a document"));
            };
            let path = match f.get("path") {
                Some(Bson::String(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(err(
                        format!("{at}.path"),
                        "missing or not a non-empty string",
                    ));
                }
            };
            let key = match (f.get("keyId"), f.get("keyAltName")) {
                (Some(id), None) => FieldKey::Id(
                    KeyId::try_from(id)
                        .map_err(|_| err(format!("{at}.keyId"), "must be a UUID (BinData 4)"))?,
                ),
                (None, Some(Bson::String(n))) => FieldKey::AltName(n.clone()),
                (None, Some(_)) => return Err(err(format!("{at}.keyAltName"), "must be a string")),
                (Some(_), Some(_)) => {
                    return Err(err(at, "give either keyId or keyAltName, not both"));
                }
                (None, None) => return Err(err(format!("{at}.keyId"), "missing")),
            };
            let bson_type = match f.get("bsonType") {
                None => None,
                Some(Bson::String(s)) => Some(BsonTypeName::parse(s).ok_or_else(|| {
                    err(format!("{at}.bsonType"), format!("unknown BSON type `{s}`"))
                })?),
                Some(_) => return Err(err(format!("{at}.bsonType"), "must be a string")),
            };
            let queries = match f.get("queries") {
                None => Vec::new(),
                Some(Bson::Document(q)) => vec![parse_query(&format!("{at}.queries"), q)?],
                Some(Bson::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(j, q)| match q {
                        Bson::Document(q) => parse_query(&format!("{at}.queries[{j}]"), q),
                        _ => Err(err(format!("{at}.queries[{j}]"), "must be a document")),
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(err(
                        format!("{at}.queries"),
                        "must be a document or an array",
                    ));
                }
            };
            fields.push(EncryptedField {
                path,
                key,
                bson_type,
                queries,
            });
        }
        let cfg = Self {
            esc_collection: string("escCollection")?,
            ecoc_collection: string("ecocCollection")?,
            str_encode_version,
            fields,
        };
        cfg.check_unique()?;
        Ok(cfg)
    }

    fn check_unique(&self) -> Result<(), EfcError> {
        for (i, f) in self.fields.iter().enumerate() {
            for (j, g) in self.fields[..i].iter().enumerate() {
                if f.key == g.key {
                    let what = match &f.key {
                        FieldKey::Id(id) => format!("keyId {id}"),
                        FieldKey::AltName(n) => format!("keyAltName '{n}'"),
                    };
                    return Err(err(
                        format!("fields[{i}]"),
                        format!(
                            "{what} is already used by fields[{j}] ({}); each encrypted field needs its own key",
                            g.path
                        ),
                    ));
                }
                if f.path == g.path {
                    return Err(err(
                        format!("fields[{i}].path"),
                        format!("path '{}' appears twice", f.path),
                    ));
                }
                let (a, b) = (f.path.as_str(), g.path.as_str());
                let overlaps = a.strip_prefix(b).is_some_and(|r| r.starts_with('.'))
                    || b.strip_prefix(a).is_some_and(|r| r.starts_with('.'));
                if overlaps {
                    return Err(err(
                        format!("fields[{i}].path"),
                        format!(
                            "'{a}' and '{b}' overlap; an encrypted field cannot contain another"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The server's checks for a collection's `encryptedFields`, as MongoDB
    /// runs them when the collection is created.
    pub fn validate(&self) -> Result<(), EfcError> {
        for (i, f) in self.fields.iter().enumerate() {
            let at = format!("fields[{i}]");
            if f.path == "_id" || f.path.starts_with("_id.") {
                return Err(err(format!("{at}.path"), "_id cannot be encrypted"));
            }
            if f.path
                .split('.')
                .any(|p| p.is_empty() || p.starts_with('$'))
            {
                return Err(err(
                    format!("{at}.path"),
                    format!("'{}' is not a valid field path", f.path),
                ));
            }
            if matches!(f.key, FieldKey::AltName(_)) {
                return Err(err(
                    format!("{at}.keyId"),
                    "the server needs keyId; resolve keyAltName first",
                ));
            }
            if f.queries.len() > 1 {
                return Err(err(
                    format!("{at}.queries"),
                    "only one query type per field is supported",
                ));
            }
            let Some(q) = f.queries.first() else { continue };
            let Some(t) = f.bson_type else {
                return Err(err(
                    format!("{at}.bsonType"),
                    "required when queries is set",
                ));
            };
            match q {
                QueryTypeConfig::Equality { .. } if !t.allows_equality() => {
                    return Err(err(
                        format!("{at}.bsonType"),
                        format!("type '{}' cannot have an equality index", t.as_str()),
                    ));
                }
                QueryTypeConfig::Range {
                    min,
                    max,
                    sparsity,
                    precision,
                    trim_factor,
                    ..
                } => {
                    if !t.allows_range() {
                        return Err(err(
                            format!("{at}.bsonType"),
                            format!(
                                "type '{}' cannot have a range index; use int, long, double, decimal or date",
                                t.as_str()
                            ),
                        ));
                    }
                    for (name, v) in [("min", min), ("max", max)] {
                        if let Some(v) = v
                            && BsonTypeName::from_type_byte(v.element_type() as u8) != Some(t)
                        {
                            return Err(err(
                                format!("{at}.queries.{name}"),
                                format!("must have the field's type '{}'", t.as_str()),
                            ));
                        }
                    }
                    if let Some(s) = sparsity
                        && !(1..=8).contains(s)
                    {
                        return Err(err(
                            format!("{at}.queries.sparsity"),
                            "must be between 1 and 8",
                        ));
                    }
                    if let Some(p) = precision {
                        if !matches!(t, BsonTypeName::Double | BsonTypeName::Decimal) {
                            return Err(err(
                                format!("{at}.queries.precision"),
                                "only double and decimal fields take a precision",
                            ));
                        }
                        if *p < 0 {
                            return Err(err(
                                format!("{at}.queries.precision"),
                                "must be 0 or more",
                            ));
                        }
                    }
                    if let Some(tf) = trim_factor
                        && *tf < 0
                    {
                        return Err(err(format!("{at}.queries.trimFactor"), "must be 0 or more"));
                    }
                    let fractional = matches!(t, BsonTypeName::Double | BsonTypeName::Decimal);
                    let all = min.is_some() && max.is_some() && precision.is_some();
                    let none = min.is_none() && max.is_none() && precision.is_none();
                    if fractional && !(all || none) {
                        return Err(err(
                            format!("{at}.queries"),
                            "for double and decimal give min, max and precision together, or none of them",
                        ));
                    }
                }
                QueryTypeConfig::Equality { .. } => {}
            }
        }
        Ok(())
    }

    /// The ESC collection of collection `coll`.
    pub fn esc_name(&self, coll: &str) -> String {
        self.esc_collection
            .clone()
            .unwrap_or_else(|| format!("enxcol_.{coll}.esc"))
    }

    /// The ECOC collection of collection `coll`.
    pub fn ecoc_name(&self, coll: &str) -> String {
        self.ecoc_collection
            .clone()
            .unwrap_or_else(|| format!("enxcol_.{coll}.ecoc"))
    }

    /// The field at exactly `path`.
    pub fn field(&self, path: &str) -> Option<&EncryptedField> {
        self.fields.iter().find(|f| f.path == path)
    }
}
