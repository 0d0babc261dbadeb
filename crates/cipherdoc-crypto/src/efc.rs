//! `encryptedFields` documents (qe-protocol.md §7.1): which paths of a
//! collection are encrypted, with which key, and how they may be queried.
//!
//! Parsed like libmongocrypt's `mc-efc.c` (unknown fields tolerated, a
//! `keyAltName` accepted in place of `keyId` in a client-side map) and
//! validated like the server (`validate`), which a cipherdoc engine runs when it
//! creates an encrypted collection.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};

use crate::key::KeyId;
use crate::text::{
    AffixIndex, CaseSensitivity, DiacriticSensitivity, StringOptsError, SubstringIndex, TextIndex,
    TextIndexKind,
};
use crate::tokens::IndexKeyTokens;

/// What is wrong with an `encryptedFields` document. `path` names the field
/// (`fields[1].queries.contention`) so that the message points at the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("encryptedFields.{path}: {problem}")]
pub struct EfcError {
    /// Where in the document.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// The typed cause, for text-search problems (a caller can match it).
    pub text: Option<TextFieldError>,
}

fn err(path: impl Into<String>, problem: impl Into<String>) -> EfcError {
    EfcError {
        path: path.into(),
        problem: problem.into(),
        text: None,
    }
}

fn text_err(path: impl Into<String>, e: impl Into<TextFieldError>) -> EfcError {
    let e = e.into();
    EfcError {
        path: path.into(),
        problem: e.to_string(),
        text: Some(e),
    }
}

/// Whether two fields may share a `keyId` (see `check_unique`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyIdReuse {
    Allowed,
    Refused,
}

/// The newest (and oldest) `strEncodeVersion` libmongocrypt knows.
pub const STR_ENCODE_VERSION: i32 = 1;

/// What is wrong with a text-search field of `encryptedFields`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextFieldError {
    /// Its lengths or folding options (the `StringOpts` rules).
    #[error(transparent)]
    Options(#[from] StringOptsError),
    /// `strEncodeVersion` other than 1 (libmongocrypt: "'strEncodeVersion'
    /// of N is not supported").
    #[error(
        "'strEncodeVersion' of {version} is not supported; use {STR_ENCODE_VERSION} or leave it out"
    )]
    UnsupportedStrEncodeVersion {
        /// The version given.
        version: i32,
    },
    /// `strEncodeVersion` not an int32.
    #[error("'strEncodeVersion' must be an int32")]
    StrEncodeVersionType,
    /// A `create` command's `strEncodeVersion` differs from the
    /// configuration's.
    #[error("'strEncodeVersion' of {given} does not match the configured {configured}")]
    StrEncodeVersionMismatch {
        /// In the command.
        given: i32,
        /// What the configuration implies (0: no text field).
        configured: i32,
    },
    /// A text query type on a field whose `bsonType` is not `string`.
    #[error("text-search query types need bsonType 'string'")]
    NotString,
    /// A text query type beside `equality` or `range`.
    #[error("text-search query types cannot be combined with equality or range")]
    MixedWithOtherQueries,
    /// The same text query type twice.
    #[error("query type '{kind}' appears twice")]
    DuplicateKind {
        /// The kind.
        kind: TextIndexKind,
    },
    /// Prefix and suffix with different contention or folding.
    #[error("the text query types of one field must agree on '{option}'")]
    Disagree {
        /// The option that differs.
        option: &'static str,
    },
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
    /// `{queryType: "prefix"|"suffix"|"substring" (or their 8.2 preview
    /// names), contention, strMinQueryLength, strMaxQueryLength,
    /// strMaxLength (substring only), caseSensitive, diacriticSensitive}`.
    /// The options are kept as given; [`EncryptedField::text_index`] checks
    /// and combines them.
    Text {
        /// Which kind, and how its name was spelt.
        query_type: TextQueryType,
        /// Maximum contention factor.
        contention: u64,
        /// `strMinQueryLength`.
        str_min_query_length: Option<i32>,
        /// `strMaxQueryLength`.
        str_max_query_length: Option<i32>,
        /// `strMaxLength` (substring only).
        str_max_length: Option<i32>,
        /// `caseSensitive`.
        case_sensitive: Option<bool>,
        /// `diacriticSensitive`.
        diacritic_sensitive: Option<bool>,
    },
}

/// How a text query type was spelt: MongoDB 8.2's preview names
/// (`prefixPreview`, …) and the stable ones mean the same index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryTypeSpelling {
    /// `prefix`, `suffix`, `substring`.
    Stable,
    /// `prefixPreview`, `suffixPreview`, `substringPreview`.
    Preview,
}

/// A text query type as written in `encryptedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextQueryType {
    /// The index kind.
    pub kind: TextIndexKind,
    /// The spelling (kept so that a document round-trips).
    pub spelling: QueryTypeSpelling,
}

impl TextQueryType {
    /// Parses a `queryType` name.
    pub fn parse(name: &str) -> Option<Self> {
        let kind = TextIndexKind::from_query_type(name)?;
        Some(Self {
            kind,
            spelling: if name == kind.as_str() {
                QueryTypeSpelling::Stable
            } else {
                QueryTypeSpelling::Preview
            },
        })
    }

    /// The name as spelt.
    pub fn as_str(self) -> &'static str {
        match self.spelling {
            QueryTypeSpelling::Stable => self.kind.as_str(),
            QueryTypeSpelling::Preview => self.kind.preview_name(),
        }
    }
}

impl QueryTypeConfig {
    /// The maximum contention factor.
    pub fn contention(&self) -> u64 {
        match self {
            Self::Equality { contention }
            | Self::Range { contention, .. }
            | Self::Text { contention, .. } => *contention,
        }
    }

    /// Whether this is a text-search query type.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text { .. })
    }
}

/// A field's text index as the encrypter and the server role use it: the
/// combined [`TextIndex`] of its text query types and their contention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextFieldIndex {
    /// Folding and the prefix, suffix and substring parameters.
    pub index: TextIndex,
    /// Maximum contention factor (the same for all of the field's text types).
    pub contention: u64,
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
    /// The first query type of this field, if indexed (a text field may
    /// have two: prefix and suffix).
    pub fn query(&self) -> Option<&QueryTypeConfig> {
        self.queries.first()
    }

    /// Whether compaction and cleanup need the anchor padding token for this
    /// field (range and text-search fields).
    pub fn needs_anchor_padding(&self) -> bool {
        self.queries.iter().any(|q| {
            matches!(
                q,
                QueryTypeConfig::Range { .. } | QueryTypeConfig::Text { .. }
            )
        })
    }

    /// This field's compaction (and cleanup) token, as libmongocrypt sends
    /// it: `BinData(ECOCToken)`, or `{ecoc, anchorPaddingToken}` for range
    /// and text-search fields. `tokens` are those of the field's key.
    pub fn compaction_token(&self, tokens: &IndexKeyTokens) -> Bson {
        let bin = |b: &[u8; 32]| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: b.to_vec(),
            })
        };
        let ecoc = bin(tokens.ecoc().as_bytes());
        if self.needs_anchor_padding() {
            let pad = bin(tokens.anchor_padding_root().as_bytes());
            Bson::Document(bson::doc! {"ecoc": ecoc, "anchorPaddingToken": pad})
        } else {
            ecoc
        }
    }

    /// The field's text index, from its text query types (`None` when it
    /// has none): each must give `strMinQueryLength`, `strMaxQueryLength`,
    /// `caseSensitive` and `diacriticSensitive` (and substring
    /// `strMaxLength`, which prefix and suffix must not); substring never
    /// goes with prefix or suffix, no kind appears twice, nothing but text
    /// types beside them, and prefix and suffix agree on contention and
    /// folding. `at` names the field in errors (`fields[3]`).
    pub fn text_index(&self, at: &str) -> Result<Option<TextFieldIndex>, EfcError> {
        let texts: Vec<_> = self.queries.iter().filter(|q| q.is_text()).collect();
        if texts.is_empty() {
            return Ok(None);
        }
        if texts.len() != self.queries.len() {
            return Err(text_err(
                format!("{at}.queries"),
                TextFieldError::MixedWithOtherQueries,
            ));
        }
        let mut out: Option<TextFieldIndex> = None;
        for (j, q) in texts.into_iter().enumerate() {
            let QueryTypeConfig::Text {
                query_type,
                contention,
                str_min_query_length,
                str_max_query_length,
                str_max_length,
                case_sensitive,
                diacritic_sensitive,
            } = q
            else {
                continue;
            };
            let qat = if self.queries.len() > 1 {
                format!("{at}.queries[{j}]")
            } else {
                format!("{at}.queries")
            };
            let kind = query_type.kind;
            let missing = |name| text_err(&qat, StringOptsError::Missing { name });
            let positive = |name, v: &Option<i32>| -> Result<u32, EfcError> {
                let v = v.ok_or_else(|| missing(name))?;
                u32::try_from(v)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| text_err(&qat, StringOptsError::NotPositive { name }))
            };
            let lb = positive("strMinQueryLength", str_min_query_length)?;
            let ub = positive("strMaxQueryLength", str_max_query_length)?;
            let case = if case_sensitive.ok_or_else(|| missing("caseSensitive"))? {
                CaseSensitivity::Sensitive
            } else {
                CaseSensitivity::Insensitive
            };
            let diacritics = if diacritic_sensitive.ok_or_else(|| missing("diacriticSensitive"))? {
                DiacriticSensitivity::Sensitive
            } else {
                DiacriticSensitivity::Insensitive
            };
            let mut ix = out.map_or(
                TextFieldIndex {
                    index: TextIndex {
                        case,
                        diacritics,
                        prefix: None,
                        suffix: None,
                        substring: None,
                    },
                    contention: *contention,
                },
                |o| o,
            );
            if ix.contention != *contention {
                return Err(text_err(
                    &qat,
                    TextFieldError::Disagree {
                        option: "contention",
                    },
                ));
            }
            if ix.index.case != case {
                return Err(text_err(
                    &qat,
                    TextFieldError::Disagree {
                        option: "caseSensitive",
                    },
                ));
            }
            if ix.index.diacritics != diacritics {
                return Err(text_err(
                    &qat,
                    TextFieldError::Disagree {
                        option: "diacriticSensitive",
                    },
                ));
            }
            if ix.index.query_lengths(kind).is_some() {
                return Err(text_err(&qat, TextFieldError::DuplicateKind { kind }));
            }
            match kind {
                TextIndexKind::Substring => {
                    let mlen = str_max_length
                        .ok_or(StringOptsError::MaxLengthRequired)
                        .map_err(|e| text_err(&qat, e))?;
                    let mlen = positive("strMaxLength", &Some(mlen))?;
                    ix.index.substring =
                        Some(SubstringIndex::new(mlen, lb, ub).map_err(|e| text_err(&qat, e))?);
                }
                TextIndexKind::Prefix | TextIndexKind::Suffix => {
                    if str_max_length.is_some() {
                        return Err(text_err(
                            &qat,
                            StringOptsError::MaxLengthNotAllowed { kind },
                        ));
                    }
                    let a = AffixIndex::new(kind, lb, ub).map_err(|e| text_err(&qat, e))?;
                    if kind == TextIndexKind::Prefix {
                        ix.index.prefix = Some(a);
                    } else {
                        ix.index.suffix = Some(a);
                    }
                }
            }
            if ix.index.substring.is_some()
                && (ix.index.prefix.is_some() || ix.index.suffix.is_some())
            {
                return Err(text_err(
                    format!("{at}.queries"),
                    StringOptsError::SubstringWithAffix,
                ));
            }
            out = Some(ix);
        }
        Ok(out)
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
        other => match TextQueryType::parse(other) {
            Some(query_type) => {
                let int = |k: &str| {
                    doc.get(k)
                        .map(|v| as_i32(&format!("{path}.{k}"), v))
                        .transpose()
                };
                let boolean = |k: &str| match doc.get(k) {
                    None => Ok(None),
                    Some(Bson::Boolean(b)) => Ok(Some(*b)),
                    Some(_) => Err(err(format!("{path}.{k}"), "must be a bool")),
                };
                Ok(QueryTypeConfig::Text {
                    query_type,
                    contention,
                    str_min_query_length: int("strMinQueryLength")?,
                    str_max_query_length: int("strMaxQueryLength")?,
                    str_max_length: int("strMaxLength")?,
                    case_sensitive: boolean("caseSensitive")?,
                    diacritic_sensitive: boolean("diacriticSensitive")?,
                })
            }
            None => Err(err(
                format!("{path}.queryType"),
                format!(
                    "unsupported query type `{other}`; use `equality`, `range`, `prefix`, `suffix` or `substring`"
                ),
            )),
        },
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
        let str_encode_version = match doc.get("strEncodeVersion") {
            None => None,
            Some(Bson::Int32(v)) if *v == STR_ENCODE_VERSION => Some(*v),
            Some(Bson::Int32(v)) => {
                return Err(text_err(
                    "strEncodeVersion",
                    TextFieldError::UnsupportedStrEncodeVersion { version: *v },
                ));
            }
            Some(_) => {
                return Err(text_err(
                    "strEncodeVersion",
                    TextFieldError::StrEncodeVersionType,
                ));
            }
        };
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
        cfg.check_unique(KeyIdReuse::Allowed)?;
        Ok(cfg)
    }

    /// Duplicate keys, paths and overlapping paths. libmongocrypt's parser
    /// refuses a `keyAltName` used twice but not a `keyId` (its own text
    /// vectors reuse one); the server refuses both, so `validate` checks
    /// key ids.
    fn check_unique(&self, key_ids: KeyIdReuse) -> Result<(), EfcError> {
        for (i, f) in self.fields.iter().enumerate() {
            for (j, g) in self.fields[..i].iter().enumerate() {
                let reused = match (&f.key, key_ids) {
                    (FieldKey::Id(_), KeyIdReuse::Allowed) => false,
                    _ => f.key == g.key,
                };
                if reused {
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
        self.check_unique(KeyIdReuse::Refused)?;
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
            let text = f.text_index(&at)?;
            if f.queries.len() > 1 && text.is_none() {
                return Err(err(
                    format!("{at}.queries"),
                    "only one query type per field is supported (text fields may have prefix and suffix)",
                ));
            }
            let Some(q) = f.queries.first() else { continue };
            let Some(t) = f.bson_type else {
                return Err(err(
                    format!("{at}.bsonType"),
                    "required when queries is set",
                ));
            };
            if text.is_some() {
                if t != BsonTypeName::String {
                    return Err(text_err(
                        format!("{at}.bsonType"),
                        TextFieldError::NotString,
                    ));
                }
                continue;
            }
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
                QueryTypeConfig::Equality { .. } | QueryTypeConfig::Text { .. } => {}
            }
        }
        Ok(())
    }

    /// Whether any field has a text-search query type.
    pub fn has_text_fields(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.queries.iter().any(QueryTypeConfig::is_text))
    }

    /// The `strEncodeVersion` in force (libmongocrypt's
    /// `efc->str_encode_version`): the one given, else 1 when a field has a
    /// text query type, else 0 (no text search, nothing to send).
    pub fn effective_str_encode_version(&self) -> i32 {
        self.str_encode_version
            .unwrap_or(if self.has_text_fields() {
                STR_ENCODE_VERSION
            } else {
                0
            })
    }

    /// What libmongocrypt does to the `encryptedFields` of a `create`
    /// command when this configuration (the client's map) is in force
    /// (`_fle2_fixup_encryptedFields_strEncodeVersion`): without
    /// `strEncodeVersion` it is appended when the configuration has a
    /// nonzero version; with one, it must be an int32 equal to it.
    pub fn apply_str_encode_version(&self, create_fields: &mut Document) -> Result<(), EfcError> {
        let configured = self.effective_str_encode_version();
        match create_fields.get("strEncodeVersion") {
            None => {
                if configured != 0 {
                    create_fields.insert("strEncodeVersion", configured);
                }
                Ok(())
            }
            Some(Bson::Int32(given)) if *given == configured => Ok(()),
            Some(Bson::Int32(given)) => Err(text_err(
                "strEncodeVersion",
                TextFieldError::StrEncodeVersionMismatch {
                    given: *given,
                    configured,
                },
            )),
            Some(_) => Err(text_err(
                "strEncodeVersion",
                TextFieldError::StrEncodeVersionType,
            )),
        }
    }

    /// The `encryptedFields` libmongocrypt puts into `encryptionInformation`
    /// for collection `coll` (`mc-schema-broker.c`): the document as given,
    /// then the state collection names, `fields` and `strEncodeVersion` where
    /// missing (the version only when nonzero). `doc` must parse.
    pub fn encryption_information_schema(doc: &Document, coll: &str) -> Result<Document, EfcError> {
        let efc = Self::from_document(doc)?;
        let mut out = doc.clone();
        if !out.contains_key("escCollection") {
            out.insert("escCollection", efc.esc_name(coll));
        }
        if !out.contains_key("ecocCollection") {
            out.insert("ecocCollection", efc.ecoc_name(coll));
        }
        if !out.contains_key("fields") {
            out.insert("fields", Bson::Array(Vec::new()));
        }
        let v = efc.effective_str_encode_version();
        if !out.contains_key("strEncodeVersion") && v != 0 {
            out.insert("strEncodeVersion", v);
        }
        Ok(out)
    }

    /// The `compactionTokens` (or `cleanupTokens`) document of this
    /// collection, as libmongocrypt builds it: one entry per field, in
    /// reverse field order (its field list is built by prepending), each
    /// [`EncryptedField::compaction_token`]. `tokens_of` gives the tokens of
    /// a field's key.
    pub fn compaction_tokens<E>(
        &self,
        mut tokens_of: impl FnMut(&EncryptedField) -> Result<IndexKeyTokens, E>,
    ) -> Result<Document, E> {
        let mut out = Document::new();
        for f in self.fields.iter().rev() {
            let t = tokens_of(f)?;
            out.insert(f.path.clone(), f.compaction_token(&t));
        }
        Ok(out)
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
