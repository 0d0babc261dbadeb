//! The filter AST with MongoDB's matching semantics, its parser from a BSON
//! filter document, and the in-memory evaluator [`Filter::matches`], which is
//! the reference semantics every engine must reproduce (engines use it for
//! residual filtering; the contract suite uses it as the oracle).
//!
//! Semantics implemented (MongoDB 8.0, no collation):
//! - dotted paths descend into sub-documents; through an array they descend
//!   into every element that is a document, and a numeric component also
//!   indexes the array (`a.0`);
//! - a leaf array matches if the array itself or any element matches;
//! - `$eq: null` also matches a missing field (on any branch of the path);
//! - `$lt/$lte/$gt/$gte` only match values of the operand's canonical type
//!   bracket (numbers of any BSON numeric type compare by value), except that
//!   `MinKey`/`MaxKey` operands compare with everything;
//! - `$ne`, `$nin` and `$not` are the negation of the whole path predicate.

use std::collections::BTreeSet;

use bson::{Bson, Document, spec::BinarySubtype};

use crate::qe_state::Tag;
use crate::value::{canonical_rank, compare, equals, is_nan};

/// Errors from parsing a filter document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// An operator this engine does not know or support.
    #[error(
        "unsupported operator {0:?}; supported: $eq $ne $in $nin $lt $lte $gt $gte $exists $not $and $or $nor, and $expr with $encStrStartsWith $encStrEndsWith $encStrContains $encStrNormalizedEq"
    )]
    UnsupportedOperator(String),
    /// An operator whose argument has the wrong shape.
    #[error("{operator} needs {expected}")]
    BadArgument {
        /// The operator.
        operator: String,
        /// What it needs.
        expected: &'static str,
    },
    /// A regular expression used as a pattern (`{a: /x/}` or inside `$in`):
    /// pattern matching is not supported; use `$eq` to compare regex values.
    #[error(
        "regular-expression matching on {0:?} is not supported; use {{$eq: <regex>}} to compare regex values"
    )]
    RegexMatch(String),
    /// An empty path or path component.
    #[error("invalid field path {0:?}")]
    InvalidPath(String),
    /// An operator document mixing `$` operators and plain field names.
    #[error(
        "field {0:?} mixes operators and plain fields; use {{$eq: {{...}}}} for an embedded document"
    )]
    MixedOperatorDocument(String),
}

/// A predicate on the value(s) at one path. `Debug` shows the operator and
/// the operands' BSON types, never their values: a constant may be the
/// plaintext of an encrypted field (before the encrypter replaced it).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum FieldOp {
    /// `$eq`
    Eq(Bson),
    /// `$ne`
    Ne(Bson),
    /// `$in`
    In(Vec<Bson>),
    /// `$nin`
    Nin(Vec<Bson>),
    /// `$lt`
    Lt(Bson),
    /// `$lte`
    Lte(Bson),
    /// `$gt`
    Gt(Bson),
    /// `$gte`
    Gte(Bson),
    /// `$exists`
    Exists(bool),
    /// A string at the path contains this substring (Django's `contains`;
    /// MongoDB would use an unanchored, escaped `$regex`).
    Contains(String),
    /// A string at the path starts with this prefix (Django's `startswith`).
    StartsWith(String),
    /// A string at the path ends with this suffix (Django's `endswith`).
    EndsWith(String),
    /// An encrypted text-search predicate (MongoDB 8.2's `$encStrStartsWith`,
    /// `$encStrEndsWith`, `$encStrContains`, `$encStrNormalizedEq`, written
    /// `{$expr: {$encStrStartsWith: {input: "$path", prefix: <payload>}}}`).
    /// Only the QE server role can answer it, by rewriting the find payload
    /// (blob 18) into tags; [`Filter::matches`] never matches it, as there
    /// is nothing a plaintext evaluator could compare.
    EncStr {
        /// Which predicate.
        op: EncStrOp,
        /// The operand: a text find payload.
        value: Bson,
    },
}

/// The text-search expressions of MongoDB 8.2's `$expr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncStrOp {
    /// `$encStrStartsWith: {input, prefix}` (a prefix index).
    StartsWith,
    /// `$encStrEndsWith: {input, suffix}` (a suffix index).
    EndsWith,
    /// `$encStrContains: {input, substring}` (a substring index).
    Contains,
    /// `$encStrNormalizedEq: {input, string}`: the whole folded string
    /// (any text index).
    NormalizedEq,
}

impl EncStrOp {
    const ALL: [Self; 4] = [
        Self::StartsWith,
        Self::EndsWith,
        Self::Contains,
        Self::NormalizedEq,
    ];

    /// The expression's name (`$encStrStartsWith`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::StartsWith => "$encStrStartsWith",
            Self::EndsWith => "$encStrEndsWith",
            Self::Contains => "$encStrContains",
            Self::NormalizedEq => "$encStrNormalizedEq",
        }
    }

    /// The name of its operand argument (`prefix`, `suffix`, `substring`,
    /// `string`).
    pub fn argument(self) -> &'static str {
        match self {
            Self::StartsWith => "prefix",
            Self::EndsWith => "suffix",
            Self::Contains => "substring",
            Self::NormalizedEq => "string",
        }
    }

    /// The expression named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// `{$expr: {<name>: {input: "$<path>", <argument>: value}}}`: the
    /// filter document a driver sends.
    pub fn to_document(self, path: &str, value: Bson) -> Document {
        let mut args = Document::new();
        args.insert("input", format!("${path}"));
        args.insert(self.argument(), value);
        let mut expr = Document::new();
        expr.insert(self.name(), args);
        let mut out = Document::new();
        out.insert("$expr", expr);
        out
    }
}

/// The characters PCRE gives a meaning outside a character class.
const REGEX_META: [char; 14] = [
    '\\', '^', '$', '.', '|', '?', '*', '+', '(', ')', '[', ']', '{', '}',
];

impl FieldOp {
    /// The `$regex` pattern under which MongoDB matches what this string
    /// lookup matches (`None` for the other operators): the escaped
    /// literal, anchored with `^` (starts with) or `\z` (ends with; PCRE's
    /// `$` would also match before a final newline). [`Filter::parse`]
    /// reads exactly these patterns back.
    pub fn lookup_regex(&self) -> Option<String> {
        let escape = |s: &str| {
            let mut out = String::with_capacity(s.len() + 2);
            for c in s.chars() {
                if REGEX_META.contains(&c) {
                    out.push('\\');
                }
                out.push(c);
            }
            out
        };
        match self {
            FieldOp::Contains(s) => Some(escape(s)),
            FieldOp::StartsWith(s) => Some(format!("^{}", escape(s))),
            FieldOp::EndsWith(s) => Some(format!("{}\\z", escape(s))),
            _ => None,
        }
    }

    /// The string lookup a `$regex` pattern of [`Self::lookup_regex`]'s
    /// form spells; any other pattern is pattern matching, which is not
    /// supported (`RegexMatch`, naming the path and never the pattern).
    fn from_lookup_regex(path: &str, pattern: &str) -> Result<Self, FilterError> {
        let refuse = || FilterError::RegexMatch(path.to_owned());
        let (starts, rest) = match pattern.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let mut literal = String::with_capacity(rest.len());
        let mut ends = false;
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            if ends {
                return Err(refuse());
            }
            match c {
                '\\' => match chars.next() {
                    Some('z') => ends = true,
                    Some(e) if REGEX_META.contains(&e) => literal.push(e),
                    _ => return Err(refuse()),
                },
                c if REGEX_META.contains(&c) => return Err(refuse()),
                c => literal.push(c),
            }
        }
        match (starts, ends) {
            (false, false) => Ok(FieldOp::Contains(literal)),
            (true, false) => Ok(FieldOp::StartsWith(literal)),
            (false, true) => Ok(FieldOp::EndsWith(literal)),
            (true, true) => Err(refuse()),
        }
    }
}

impl std::fmt::Debug for FieldOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use cipherdoc_crypto::{Redacted, RedactedList};
        match self {
            FieldOp::Eq(v) => f.debug_tuple("Eq").field(&Redacted(v)).finish(),
            FieldOp::Ne(v) => f.debug_tuple("Ne").field(&Redacted(v)).finish(),
            FieldOp::In(v) => f.debug_tuple("In").field(&RedactedList(v)).finish(),
            FieldOp::Nin(v) => f.debug_tuple("Nin").field(&RedactedList(v)).finish(),
            FieldOp::Lt(v) => f.debug_tuple("Lt").field(&Redacted(v)).finish(),
            FieldOp::Lte(v) => f.debug_tuple("Lte").field(&Redacted(v)).finish(),
            FieldOp::Gt(v) => f.debug_tuple("Gt").field(&Redacted(v)).finish(),
            FieldOp::Gte(v) => f.debug_tuple("Gte").field(&Redacted(v)).finish(),
            FieldOp::Exists(b) => f.debug_tuple("Exists").field(b).finish(),
            FieldOp::Contains(_) => f.write_str("Contains(<redacted String>)"),
            FieldOp::StartsWith(_) => f.write_str("StartsWith(<redacted String>)"),
            FieldOp::EndsWith(_) => f.write_str("EndsWith(<redacted String>)"),
            FieldOp::EncStr { op, value } => f
                .debug_struct("EncStr")
                .field("op", op)
                .field("value", &Redacted(value))
                .finish(),
        }
    }
}

/// A filter. Build one with the constructors (`Filter::eq("a.b", 5)`) or
/// parse a MongoDB filter document with [`Filter::parse`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Filter {
    /// All must match; the empty conjunction matches every document.
    And(Vec<Filter>),
    /// Any must match; the empty disjunction matches nothing.
    Or(Vec<Filter>),
    /// None may match.
    Nor(Vec<Filter>),
    /// Negation (MongoDB allows `$not` only under a path; programmatically
    /// any filter may be negated).
    Not(Box<Filter>),
    /// A predicate on a dotted path.
    Field {
        /// Dotted path, e.g. `"patient_record.ssn"`.
        path: String,
        /// The predicate.
        op: FieldOp,
    },
    /// The document's `__safeContent__` array holds at least one of these
    /// tags (as BinData subtype 0). This is what an encrypted equality or
    /// range query becomes; engines answer it through the tag index.
    TagIn(BTreeSet<Tag>),
}

/// The field where QE keeps a document's tags.
pub const SAFE_CONTENT: &str = "__safeContent__";

impl Filter {
    /// Matches every document.
    pub fn all() -> Self {
        Filter::And(Vec::new())
    }
    fn field(path: impl Into<String>, op: FieldOp) -> Self {
        Filter::Field {
            path: path.into(),
            op,
        }
    }
    /// `{path: {$eq: v}}`
    pub fn eq(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Eq(v.into()))
    }
    /// `{path: {$ne: v}}`
    pub fn ne(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Ne(v.into()))
    }
    /// `{path: {$in: vs}}`
    pub fn is_in(path: impl Into<String>, vs: impl IntoIterator<Item = Bson>) -> Self {
        Self::field(path, FieldOp::In(vs.into_iter().collect()))
    }
    /// `{path: {$nin: vs}}`
    pub fn not_in(path: impl Into<String>, vs: impl IntoIterator<Item = Bson>) -> Self {
        Self::field(path, FieldOp::Nin(vs.into_iter().collect()))
    }
    /// `{path: {$lt: v}}`
    pub fn lt(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Lt(v.into()))
    }
    /// `{path: {$lte: v}}`
    pub fn lte(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Lte(v.into()))
    }
    /// `{path: {$gt: v}}`
    pub fn gt(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Gt(v.into()))
    }
    /// `{path: {$gte: v}}`
    pub fn gte(path: impl Into<String>, v: impl Into<Bson>) -> Self {
        Self::field(path, FieldOp::Gte(v.into()))
    }
    /// `{path: {$exists: true}}`: documents that have `path`.
    pub fn exists(path: impl Into<String>) -> Self {
        Self::field(path, FieldOp::Exists(true))
    }
    /// `{path: {$exists: false}}`: documents without `path`.
    pub fn missing(path: impl Into<String>) -> Self {
        Self::field(path, FieldOp::Exists(false))
    }
    /// A string at `path` starts with `prefix` ([`FieldOp::StartsWith`]).
    pub fn starts_with(path: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::field(path, FieldOp::StartsWith(prefix.into()))
    }
    /// `{$expr: {<op>: {input: "$path", <argument>: value}}}`: an encrypted
    /// text-search predicate ([`FieldOp::EncStr`]).
    pub fn enc_str(path: impl Into<String>, op: EncStrOp, value: impl Into<Bson>) -> Self {
        Self::field(
            path,
            FieldOp::EncStr {
                op,
                value: value.into(),
            },
        )
    }
    /// `{$and: [...]}`
    pub fn and(fs: impl IntoIterator<Item = Filter>) -> Self {
        Filter::And(fs.into_iter().collect())
    }
    /// `{$or: [...]}`
    pub fn or(fs: impl IntoIterator<Item = Filter>) -> Self {
        Filter::Or(fs.into_iter().collect())
    }
    /// `{$nor: [...]}`
    pub fn nor(fs: impl IntoIterator<Item = Filter>) -> Self {
        Filter::Nor(fs.into_iter().collect())
    }
    /// Negation of `self`.
    #[allow(clippy::should_implement_trait)]
    #[must_use]
    pub fn not(self) -> Self {
        Filter::Not(Box::new(self))
    }
    /// `__safeContent__` holds any of `tags`.
    pub fn tag_in(tags: impl IntoIterator<Item = Tag>) -> Self {
        Filter::TagIn(tags.into_iter().collect())
    }

    /// Parse a MongoDB filter document.
    ///
    /// `{__safeContent__: {$in: [<32-byte BinData 0>, ...]}}` (the server's
    /// rewrite of an encrypted query, §9.6) becomes [`Filter::TagIn`].
    pub fn parse(doc: &Document) -> Result<Self, FilterError> {
        let mut out = Vec::new();
        for (k, v) in doc {
            match k.as_str() {
                "$and" | "$or" | "$nor" => {
                    let Bson::Array(items) = v else {
                        return Err(bad(k, "a non-empty array of filter documents"));
                    };
                    if items.is_empty() {
                        return Err(bad(k, "a non-empty array of filter documents"));
                    }
                    let mut fs = Vec::with_capacity(items.len());
                    for it in items {
                        let Bson::Document(d) = it else {
                            return Err(bad(k, "a non-empty array of filter documents"));
                        };
                        fs.push(Filter::parse(d)?);
                    }
                    out.push(match k.as_str() {
                        "$and" => Filter::And(fs),
                        "$or" => Filter::Or(fs),
                        _ => Filter::Nor(fs),
                    });
                }
                "$expr" => out.push(parse_expr(v)?),
                op if op.starts_with('$') => {
                    return Err(FilterError::UnsupportedOperator(op.to_owned()));
                }
                path => {
                    check_path(path)?;
                    out.push(parse_path(path, v)?);
                }
            }
        }
        Ok(if out.len() == 1 {
            out.pop().unwrap_or_else(Filter::all)
        } else {
            Filter::And(out)
        })
    }

    /// The reference evaluator: does `doc` match?
    pub fn matches(&self, doc: &Document) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(doc)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(doc)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(doc)),
            Filter::Not(f) => !f.matches(doc),
            Filter::Field { path, op } => {
                let reach = Reach::of(doc, path);
                op_matches(op, &reach)
            }
            Filter::TagIn(tags) => match doc.get(SAFE_CONTENT) {
                Some(Bson::Array(items)) => items.iter().any(|it| match it {
                    Bson::Binary(b) if b.subtype == BinarySubtype::Generic => {
                        Tag::from_slice(&b.bytes).is_some_and(|t| tags.contains(&t))
                    }
                    _ => false,
                }),
                _ => false,
            },
        }
    }
}

fn bad(op: &str, expected: &'static str) -> FilterError {
    FilterError::BadArgument {
        operator: op.to_owned(),
        expected,
    }
}

fn check_path(path: &str) -> Result<(), FilterError> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(FilterError::InvalidPath(path.to_owned()));
    }
    Ok(())
}

fn parse_path(path: &str, v: &Bson) -> Result<Filter, FilterError> {
    match v {
        Bson::RegularExpression(_) => Err(FilterError::RegexMatch(path.to_owned())),
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
            let ops = parse_ops(path, d)?;
            Ok(if ops.len() == 1 {
                ops.into_iter().next().unwrap_or_else(Filter::all)
            } else {
                Filter::And(ops)
            })
        }
        _ => Ok(Filter::eq(path, v.clone())),
    }
}

/// `$expr`: only MongoDB 8.2's text-search expressions, one per `$expr`,
/// `{<op>: {input: "$<path>", <argument>: <value>}}`; aggregation
/// expressions in general are not supported.
fn parse_expr(v: &Bson) -> Result<Filter, FilterError> {
    const EXPECTED: &str = "one of $encStrStartsWith, $encStrEndsWith, $encStrContains, $encStrNormalizedEq (other aggregation expressions are not supported)";
    let Bson::Document(d) = v else {
        return Err(bad("$expr", EXPECTED));
    };
    let mut items = d.iter();
    let (Some((name, args)), None) = (items.next(), items.next()) else {
        return Err(bad("$expr", EXPECTED));
    };
    let Some(op) = EncStrOp::from_name(name) else {
        return Err(if name.starts_with('$') {
            FilterError::UnsupportedOperator(format!("$expr: {name}"))
        } else {
            bad("$expr", EXPECTED)
        });
    };
    let args_shape = match op {
        EncStrOp::StartsWith => "{input: \"$<field>\", prefix: <value>}",
        EncStrOp::EndsWith => "{input: \"$<field>\", suffix: <value>}",
        EncStrOp::Contains => "{input: \"$<field>\", substring: <value>}",
        EncStrOp::NormalizedEq => "{input: \"$<field>\", string: <value>}",
    };
    let Bson::Document(args) = args else {
        return Err(bad(name, args_shape));
    };
    let (mut input, mut value) = (None, None);
    for (k, v) in args {
        match k.as_str() {
            "input" => input = Some(v),
            a if a == op.argument() => value = Some(v.clone()),
            _ => return Err(bad(name, args_shape)),
        }
    }
    let (Some(Bson::String(input)), Some(value)) = (input, value) else {
        return Err(bad(name, args_shape));
    };
    let Some(path) = input.strip_prefix('$').filter(|p| !p.starts_with('$')) else {
        return Err(bad(name, args_shape));
    };
    check_path(path)?;
    Ok(Filter::enc_str(path, op, value))
}

fn parse_list(op: &str, path: &str, v: &Bson) -> Result<Vec<Bson>, FilterError> {
    let Bson::Array(items) = v else {
        return Err(bad(op, "an array"));
    };
    if items
        .iter()
        .any(|i| matches!(i, Bson::RegularExpression(_)))
    {
        return Err(FilterError::RegexMatch(path.to_owned()));
    }
    Ok(items.clone())
}

fn parse_ops(path: &str, d: &Document) -> Result<Vec<Filter>, FilterError> {
    let mut out = Vec::with_capacity(d.len());
    for (op, v) in d {
        let f = |o| Filter::field(path, o);
        out.push(match op.as_str() {
            "$eq" => f(FieldOp::Eq(v.clone())),
            "$ne" => f(FieldOp::Ne(v.clone())),
            "$lt" => f(FieldOp::Lt(v.clone())),
            "$lte" => f(FieldOp::Lte(v.clone())),
            "$gt" => f(FieldOp::Gt(v.clone())),
            "$gte" => f(FieldOp::Gte(v.clone())),
            "$in" => {
                let items = parse_list(op, path, v)?;
                let tags: Option<BTreeSet<Tag>> = (path == SAFE_CONTENT)
                    .then(|| {
                        items
                            .iter()
                            .map(|i| match i {
                                Bson::Binary(b) if b.subtype == BinarySubtype::Generic => {
                                    Tag::from_slice(&b.bytes)
                                }
                                _ => None,
                            })
                            .collect()
                    })
                    .flatten();
                match tags {
                    Some(t) => Filter::TagIn(t),
                    None => f(FieldOp::In(items)),
                }
            }
            "$nin" => f(FieldOp::Nin(parse_list(op, path, v)?)),
            "$exists" => f(FieldOp::Exists(truthy(v))),
            // cipherdoc's own string lookups (`FieldOp::lookup_regex`), as
            // the MongoDB engine sends them; no other pattern.
            "$regex" => match v {
                Bson::String(p) => f(FieldOp::from_lookup_regex(path, p)?),
                Bson::RegularExpression(r) if r.options.is_empty() => {
                    f(FieldOp::from_lookup_regex(path, &r.pattern)?)
                }
                _ => return Err(FilterError::RegexMatch(path.to_owned())),
            },
            "$options" => match v {
                Bson::String(o) if o.is_empty() && d.contains_key("$regex") => continue,
                _ => return Err(FilterError::RegexMatch(path.to_owned())),
            },
            "$not" => match v {
                Bson::Document(inner)
                    if inner.keys().next().is_some_and(|k| k.starts_with('$')) =>
                {
                    Filter::And(parse_ops(path, inner)?).not()
                }
                Bson::RegularExpression(_) => return Err(FilterError::RegexMatch(path.to_owned())),
                _ => return Err(bad(op, "an operator document such as {$gt: 5}")),
            },
            o if o.starts_with('$') => return Err(FilterError::UnsupportedOperator(o.to_owned())),
            _ => return Err(FilterError::MixedOperatorDocument(path.to_owned())),
        });
    }
    Ok(out)
}

fn truthy(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        Bson::Int32(i) => *i != 0,
        Bson::Int64(i) => *i != 0,
        Bson::Double(f) => *f != 0.0,
        Bson::Null | Bson::Undefined => false,
        _ => true,
    }
}

/// What a path reaches in a document: the values at its end (before leaf
/// array expansion) and whether some branch ended on a missing field.
#[derive(Debug, Default)]
pub(crate) struct Reach<'a> {
    pub(crate) values: Vec<&'a Bson>,
    pub(crate) missing: bool,
}

impl<'a> Reach<'a> {
    pub(crate) fn of(doc: &'a Document, path: &str) -> Self {
        let parts: Vec<&str> = path.split('.').collect();
        let mut r = Reach::default();
        r.walk_doc(doc, &parts);
        r
    }

    fn walk_doc(&mut self, doc: &'a Document, parts: &[&str]) {
        let Some((first, rest)) = parts.split_first() else {
            return;
        };
        match doc.get(*first) {
            None => self.missing = true,
            Some(v) => self.walk_value(v, rest),
        }
    }

    fn walk_value(&mut self, v: &'a Bson, rest: &[&str]) {
        let Some((first, tail)) = rest.split_first() else {
            self.values.push(v);
            return;
        };
        match v {
            Bson::Document(d) => self.walk_doc(d, rest),
            Bson::Array(items) => {
                let mut any = false;
                if let Some(i) = array_index(first) {
                    if let Some(e) = items.get(i) {
                        any = true;
                        self.walk_value(e, tail);
                    }
                }
                for e in items {
                    if let Bson::Document(d) = e {
                        any = true;
                        self.walk_doc(d, rest);
                    }
                }
                if !any {
                    self.missing = true;
                }
            }
            _ => self.missing = true,
        }
    }

    /// Candidate values for comparison: each reached value, and the elements
    /// of each reached array.
    pub(crate) fn candidates(&self) -> impl Iterator<Item = &'a Bson> + '_ {
        self.values.iter().flat_map(|v| {
            let elems: &'a [Bson] = match v {
                Bson::Array(a) => a,
                _ => &[],
            };
            std::iter::once(*v).chain(elems.iter())
        })
    }
}

/// The values a dotted path reaches in `doc`, with MongoDB's traversal of
/// arrays of documents (a leaf array is returned whole, not flattened):
/// what `distinct` collects and `$group` keys on.
pub fn path_values<'a>(doc: &'a Document, path: &str) -> Vec<&'a Bson> {
    Reach::of(doc, path).values
}

fn array_index(s: &str) -> Option<usize> {
    // MongoDB treats only canonical decimal numerals as positions.
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn eq_matches(x: &Bson, reach: &Reach<'_>) -> bool {
    let is_null = matches!(x, Bson::Null);
    if is_null && reach.missing {
        return true;
    }
    reach.candidates().any(|c| {
        if is_null {
            matches!(c, Bson::Null | Bson::Undefined)
        } else {
            equals(c, x)
        }
    })
}

fn cmp_matches(
    x: &Bson,
    reach: &Reach<'_>,
    ok: fn(std::cmp::Ordering) -> bool,
    inclusive: bool,
) -> bool {
    if inclusive && eq_matches(x, reach) {
        return true;
    }
    if is_nan(x) {
        // NaN is only ever equal to NaN (handled above).
        return false;
    }
    let all_types = matches!(x, Bson::MinKey | Bson::MaxKey);
    let rank = canonical_rank(x);
    reach
        .candidates()
        .any(|c| (all_types || canonical_rank(c) == rank) && !is_nan(c) && ok(compare(c, x)))
}

fn op_matches(op: &FieldOp, reach: &Reach<'_>) -> bool {
    use std::cmp::Ordering::{Greater, Less};
    match op {
        FieldOp::Eq(x) => eq_matches(x, reach),
        FieldOp::Ne(x) => !eq_matches(x, reach),
        FieldOp::In(xs) => xs.iter().any(|x| eq_matches(x, reach)),
        FieldOp::Nin(xs) => !xs.iter().any(|x| eq_matches(x, reach)),
        FieldOp::Lt(x) => cmp_matches(x, reach, |o| o == Less, false),
        FieldOp::Lte(x) => cmp_matches(x, reach, |o| o == Less, true),
        FieldOp::Gt(x) => cmp_matches(x, reach, |o| o == Greater, false),
        FieldOp::Gte(x) => cmp_matches(x, reach, |o| o == Greater, true),
        FieldOp::Exists(yes) => *yes != reach.values.is_empty(),
        FieldOp::Contains(needle) => reach
            .candidates()
            .any(|c| matches!(c, Bson::String(s) if s.contains(needle.as_str()))),
        FieldOp::StartsWith(prefix) => reach
            .candidates()
            .any(|c| matches!(c, Bson::String(s) if s.starts_with(prefix.as_str()))),
        FieldOp::EndsWith(suffix) => reach
            .candidates()
            .any(|c| matches!(c, Bson::String(s) if s.ends_with(suffix.as_str()))),
        // Answered by the QE server role through tags, never in memory.
        FieldOp::EncStr { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    /// The string lookups' `$regex` patterns parse back to the lookups,
    /// with every metacharacter, a literal `\\z` and a final newline; any
    /// other pattern is refused by path.
    #[test]
    fn lookup_regexes_parse_back_and_nothing_else_does() {
        for s in ["a.b", "^x$", "a\\zb\\", "(a|b)*+?{1}[c]", "é\n", ""] {
            for op in [
                FieldOp::Contains(s.into()),
                FieldOp::StartsWith(s.into()),
                FieldOp::EndsWith(s.into()),
            ] {
                let re = op.lookup_regex().unwrap();
                let f = Filter::field("p", op);
                assert_eq!(Filter::parse(&doc! {"p": {"$regex": &re}}).unwrap(), f);
                assert_eq!(
                    Filter::parse(&doc! {"p": {"$regex": &re, "$options": ""}}).unwrap(),
                    f
                );
            }
        }
        let ends = Filter::field("s", FieldOp::EndsWith("a.b".into()));
        assert!(ends.matches(&doc! {"s": "xa.b"}));
        assert!(!ends.matches(&doc! {"s": "a.b\n"}));
        for bad in [
            doc! {"p": {"$regex": "a.b"}},
            doc! {"p": {"$regex": "^a\\z"}},
            doc! {"p": {"$regex": "a\\zb"}},
            doc! {"p": {"$regex": "\\d"}},
            doc! {"p": {"$regex": "a$"}},
            doc! {"p": {"$regex": "a", "$options": "i"}},
            doc! {"p": {"$options": ""}},
            doc! {"p": {"$regex": 1}},
        ] {
            assert!(
                matches!(Filter::parse(&bad), Err(FilterError::RegexMatch(p)) if p == "p"),
                "{bad}"
            );
        }
        assert_eq!(FieldOp::Eq(Bson::Int32(1)).lookup_regex(), None);
    }

    #[test]
    fn parse_shapes() {
        let f = Filter::parse(&doc! {"a": 1, "b": {"$gt": 2, "$lt": 5}}).unwrap();
        assert_eq!(
            f,
            Filter::and([
                Filter::eq("a", 1),
                Filter::and([Filter::gt("b", 2), Filter::lt("b", 5)])
            ])
        );
        assert!(matches!(
            Filter::parse(&doc! {"$where": "x"}),
            Err(FilterError::UnsupportedOperator(_))
        ));
        assert!(matches!(
            Filter::parse(&doc! {"a": {"$in": 3}}),
            Err(FilterError::BadArgument { .. })
        ));
        assert!(matches!(
            Filter::parse(&doc! {"a": {"$gt": 1, "b": 2}}),
            Err(FilterError::MixedOperatorDocument(_))
        ));
        assert!(matches!(
            Filter::parse(&doc! {"a": bson::Regex { pattern: "x".into(), options: String::new() }}),
            Err(FilterError::RegexMatch(_))
        ));
        assert!(matches!(
            Filter::parse(&doc! {"a..b": 1}),
            Err(FilterError::InvalidPath(_))
        ));
        let tag = bson::Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![7; 32],
        };
        assert_eq!(
            Filter::parse(&doc! {"__safeContent__": {"$in": [tag]}}).unwrap(),
            Filter::tag_in([Tag::from_bytes([7; 32])])
        );
    }

    #[test]
    fn enc_str_expressions() {
        let payload = Bson::Binary(bson::Binary {
            subtype: BinarySubtype::Encrypted,
            bytes: vec![18, 1, 2],
        });
        for op in EncStrOp::ALL {
            let d = op.to_document("a.b", payload.clone());
            let f = Filter::parse(&d).unwrap();
            assert_eq!(f, Filter::enc_str("a.b", op, payload.clone()));
            assert!(!f.matches(&doc! {"a": {"b": "x"}}));
        }
        let both = Filter::parse(
            &doc! {"x": 1, "$expr": {"$encStrContains": {"input": "$s", "substring": "q"}}},
        )
        .unwrap();
        assert_eq!(
            both,
            Filter::and([
                Filter::eq("x", 1),
                Filter::enc_str("s", EncStrOp::Contains, "q")
            ])
        );
        for bad_expr in [
            doc! {"$expr": {"$eq": ["$a", 1]}},
            doc! {"$expr": 1},
            doc! {"$expr": {"$encStrStartsWith": {"input": "$a", "suffix": "x"}}},
            doc! {"$expr": {"$encStrStartsWith": {"input": "a", "prefix": "x"}}},
            doc! {"$expr": {"$encStrStartsWith": {"input": "$a"}}},
            doc! {"$expr": {"$encStrStartsWith": {"input": "$a", "prefix": "x"}, "$encStrEndsWith": {"input": "$a", "suffix": "x"}}},
        ] {
            assert!(Filter::parse(&bad_expr).is_err(), "{bad_expr}");
        }
    }

    #[test]
    fn mongodb_semantics() {
        let d = doc! {"a": [1, 5, {"b": 2}], "c": {"d": [{"e": 1}, {"f": 1}]}, "n": null, "s": "x"};
        let m = |f: bson::Document| Filter::parse(&f).unwrap().matches(&d);
        assert!(m(doc! {"a": 5}));
        assert!(m(doc! {"a": [1, 5, {"b": 2}]}));
        assert!(m(doc! {"a.b": 2}));
        assert!(m(doc! {"a.1": 5}));
        assert!(
            m(doc! {"a": {"$gt": 4, "$lt": 2}}),
            "array elements satisfy each bound separately"
        );
        assert!(!m(doc! {"s": {"$gt": 1}}), "type bracketing");
        assert!(m(doc! {"s": {"$gt": bson::Bson::MinKey}}));
        assert!(
            m(doc! {"c.d.e": null}),
            "missing on one branch matches null"
        );
        assert!(m(doc! {"zz": null}));
        assert!(m(doc! {"n": {"$exists": true}}));
        assert!(!m(doc! {"zz": {"$exists": true}}));
        assert!(m(doc! {"a": {"$ne": 7}}));
        assert!(!m(doc! {"a": {"$ne": 1}}));
        assert!(m(doc! {"a": {"$not": {"$gt": 100}}}));
        assert!(m(doc! {"a": 5.0}));
        assert!(m(doc! {"$nor": [{"a": 9}]}));
        assert!(!m(doc! {"$or": [{"a": 9}, {"s": "y"}]}));
    }
}
