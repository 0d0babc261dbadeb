//! Typed field paths and query expressions.
//!
//! `Patient::fields().patient_record.ssn` is a [`FieldPath`] that knows its
//! dotted path, the field's Rust type and what the field allows (its
//! capability `C`):
//!
//! | capability | fields | lookups |
//! |---|---|---|
//! | [`Plain`] | not encrypted | `eq ne is_in lt lte gt gte range`, `contains starts_with` (strings), `is_null` (`Option`), `asc desc` |
//! | [`EncryptedRange`] | `#[encrypted(queries = "range", ...)]` | `eq ne is_in lt lte gt gte range` |
//! | [`EncryptedEquality`] | `#[encrypted(queries = "equality")]` | `eq ne is_in` |
//! | [`EncryptedPrefix`] | `#[encrypted(queries = "prefix", ...)]` | `starts_with`, `eq ne is_in` |
//! | [`EncryptedSuffix`] | `#[encrypted(queries = "suffix", ...)]` | `ends_with`, `eq ne is_in` |
//! | [`EncryptedPrefixSuffix`] | `#[encrypted(queries = "prefix, suffix", ...)]` | `starts_with ends_with`, `eq ne is_in` |
//! | [`EncryptedSubstring`] | `#[encrypted(queries = "substring", ...)]` | `contains`, `eq ne is_in` |
//! | [`EncryptedUnqueryable`] | `#[encrypted]` | none |
//!
//! On text-search fields (prefix, suffix, substring) every lookup compares
//! after the field's case and diacritic folding (`case_sensitive`,
//! `diacritic_sensitive`): `eq` is MongoDB's `$encStrNormalizedEq`, and
//! `starts_with("ad")` also finds `"Ádám"` on a case- and
//! diacritic-insensitive field. On plaintext fields they are exact.
//!
//! A lookup the field does not allow does not compile. Lookups build
//! [`Q<M>`] values, combined with `&`, `|` and `!`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{BitAnd, BitOr, Not};

use bson::Bson;

use super::Model;
use super::error::{ModelError, ValueError};
use super::schema::{FieldSchema, QueryConfig};
use super::value::{FieldValue, IntoFieldValue, Nullable, TextValue};

/// Capability of a plaintext field: every lookup, and ordering.
#[derive(Debug, Clone, Copy)]
pub enum Plain {}
/// Capability of an encrypted field with `queries = "equality"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedEquality {}
/// Capability of an encrypted field with `queries = "range"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedRange {}
/// Capability of an encrypted field without `queries`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedUnqueryable {}
/// Capability of an encrypted string with `queries = "prefix"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedPrefix {}
/// Capability of an encrypted string with `queries = "suffix"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedSuffix {}
/// Capability of an encrypted string with `queries = "prefix, suffix"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedPrefixSuffix {}
/// Capability of an encrypted string with `queries = "substring"`.
#[derive(Debug, Clone, Copy)]
pub enum EncryptedSubstring {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Plain {}
    impl Sealed for super::EncryptedEquality {}
    impl Sealed for super::EncryptedRange {}
    impl Sealed for super::EncryptedUnqueryable {}
    impl Sealed for super::EncryptedPrefix {}
    impl Sealed for super::EncryptedSuffix {}
    impl Sealed for super::EncryptedPrefixSuffix {}
    impl Sealed for super::EncryptedSubstring {}
}

/// Capabilities with `eq`, `ne`, `is_in`.
#[diagnostic::on_unimplemented(
    message = "this field is encrypted without `queries`, so it cannot be filtered on",
    label = "no lookups exist on an encrypted field without `queries` (capability `{Self}`)",
    note = "add `queries = \"equality\"` (or \"range\") to its `#[encrypted(...)]` to query it"
)]
pub trait EqualityLookups: sealed::Sealed {}
impl EqualityLookups for Plain {}
impl EqualityLookups for EncryptedEquality {}
impl EqualityLookups for EncryptedRange {}
impl EqualityLookups for EncryptedPrefix {}
impl EqualityLookups for EncryptedSuffix {}
impl EqualityLookups for EncryptedPrefixSuffix {}
impl EqualityLookups for EncryptedSubstring {}

/// Capabilities with `starts_with`.
#[diagnostic::on_unimplemented(
    message = "starts_with needs a plaintext field or an encrypted field with `queries = \"prefix\"`; this field's capability is `{Self}`",
    label = "this field does not allow prefix queries",
    note = "declare the field with `#[encrypted(queries = \"prefix\", min_query_length = N, max_query_length = M)]` (a new collection is needed)"
)]
pub trait PrefixLookups: sealed::Sealed {}
impl PrefixLookups for Plain {}
impl PrefixLookups for EncryptedPrefix {}
impl PrefixLookups for EncryptedPrefixSuffix {}

/// Capabilities with `ends_with`.
#[diagnostic::on_unimplemented(
    message = "ends_with needs a plaintext field or an encrypted field with `queries = \"suffix\"`; this field's capability is `{Self}`",
    label = "this field does not allow suffix queries",
    note = "declare the field with `#[encrypted(queries = \"suffix\", min_query_length = N, max_query_length = M)]` (a new collection is needed)"
)]
pub trait SuffixLookups: sealed::Sealed {}
impl SuffixLookups for Plain {}
impl SuffixLookups for EncryptedSuffix {}
impl SuffixLookups for EncryptedPrefixSuffix {}

/// Capabilities with `contains`.
#[diagnostic::on_unimplemented(
    message = "contains needs a plaintext field or an encrypted field with `queries = \"substring\"`; this field's capability is `{Self}`",
    label = "this field does not allow substring queries",
    note = "declare the field with `#[encrypted(queries = \"substring\", max_length = L, min_query_length = N, max_query_length = M)]` (a new collection is needed)"
)]
pub trait SubstringLookups: sealed::Sealed {}
impl SubstringLookups for Plain {}
impl SubstringLookups for EncryptedSubstring {}

/// Capabilities with `lt`, `lte`, `gt`, `gte`, `range`.
#[diagnostic::on_unimplemented(
    message = "lt, lte, gt, gte and range need a plaintext field or an encrypted field with `queries = \"range\"`; this field's capability is `{Self}`",
    label = "this field does not allow comparisons",
    note = "an encrypted field with `queries = \"equality\"` allows only eq, ne and is_in; use `queries = \"range\"` with min and max to compare"
)]
pub trait RangeLookups: sealed::Sealed {}
impl RangeLookups for Plain {}
impl RangeLookups for EncryptedRange {}

/// The plaintext capability: `is_null` and ordering.
#[diagnostic::on_unimplemented(
    message = "this lookup or ordering needs a plaintext field, but the field is encrypted (capability `{Self}`)",
    label = "not available on encrypted fields",
    note = "Queryable Encryption can't sort by, or match substrings or nulls of, an encrypted field"
)]
pub trait PlaintextLookups: sealed::Sealed {}
impl PlaintextLookups for Plain {}

/// What the executor needs to know about an encrypted field to build find
/// payloads: carried by the [`FieldPath`] and copied into each [`Cond`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EncryptedInfo {
    /// The field's `bsonType`.
    pub bson_type: String,
    /// The field's `queries`; `None` = unindexed (no lookups exist then).
    pub queries: Option<QueryConfig>,
    /// The field's own KMS provider, if any.
    pub kms_provider: Option<String>,
}

impl EncryptedInfo {
    /// The info of an encrypted field; `None` for plaintext fields.
    pub fn of(field: &FieldSchema) -> Option<Self> {
        field.encrypted.then(|| EncryptedInfo {
            bson_type: field.bson_type.clone(),
            queries: field.queries.clone(),
            kms_provider: field.kms_provider.clone(),
        })
    }
}

/// Something that can be placed at a dotted path: a [`FieldPath`] or the
/// generated `...Fields<M>` struct of an embedded model.
pub trait PathSet: Sized {
    /// The paths below `path` (`"patient_record"`).
    fn at_path(path: String) -> Self;
}

/// `fn() -> ...` keeps the path `Send + Sync` whatever `M`, `T` and `C` are.
type Marker<M, T, C> = PhantomData<fn() -> (M, T, C)>;

/// A typed path to a field of model `M` holding a `T`, with capability `C`.
pub struct FieldPath<M, T, C> {
    path: String,
    encrypted: Option<EncryptedInfo>,
    marker: Marker<M, T, C>,
}

impl<M, T, C> Clone for FieldPath<M, T, C> {
    fn clone(&self) -> Self {
        FieldPath {
            path: self.path.clone(),
            encrypted: self.encrypted.clone(),
            marker: PhantomData,
        }
    }
}

impl<M, T, C> fmt::Debug for FieldPath<M, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldPath")
            .field("path", &self.path)
            .field("encrypted", &self.encrypted)
            .finish_non_exhaustive()
    }
}

impl<M, T> PathSet for FieldPath<M, T, Plain> {
    fn at_path(path: String) -> Self {
        FieldPath::new(path, None)
    }
}

/// One lookup of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lookup {
    /// `= value`
    Eq,
    /// `!= value`
    Ne,
    /// in the array `value`
    In,
    /// `< value`
    Lt,
    /// `<= value`
    Lte,
    /// `> value`
    Gt,
    /// `>= value`
    Gte,
    /// between `value[0]` and `value[1]`, both included (Django's `range`)
    Range,
    /// string contains `value` (plaintext, or an encrypted substring field)
    Contains,
    /// string starts with `value` (plaintext, or an encrypted prefix field)
    StartsWith,
    /// string ends with `value` (plaintext, or an encrypted suffix field)
    EndsWith,
    /// is null (or absent) when `value` is `true`, is not when `false`
    IsNull,
}

impl Lookup {
    /// The lookup's method name (`"eq"`, `"is_in"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Lookup::Eq => "eq",
            Lookup::Ne => "ne",
            Lookup::In => "is_in",
            Lookup::Lt => "lt",
            Lookup::Lte => "lte",
            Lookup::Gt => "gt",
            Lookup::Gte => "gte",
            Lookup::Range => "range",
            Lookup::Contains => "contains",
            Lookup::StartsWith => "starts_with",
            Lookup::EndsWith => "ends_with",
            Lookup::IsNull => "is_null",
        }
    }
}

/// One condition on one field. `Debug` shows the operand's BSON type
/// instead of its value when the field is encrypted.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Cond {
    /// Dotted path from the document root (`patient_record.ssn`, `_id`).
    pub path: String,
    /// The lookup.
    pub lookup: Lookup,
    /// The operand, converted with the field's [`FieldValue`]: a scalar;
    /// an array for `In` (the values) and `Range` (`[low, high]`); a string
    /// for `Contains`/`StartsWith`/`EndsWith`; a bool for `IsNull`.
    pub value: Bson,
    /// `Some` when the field is encrypted: the executor must replace `value`
    /// by find payloads (plaintext must never reach the engine).
    pub encrypted: Option<EncryptedInfo>,
}

impl fmt::Debug for Cond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cond");
        d.field("path", &self.path).field("lookup", &self.lookup);
        if self.encrypted.is_some() {
            let redacted: &dyn fmt::Debug = match &self.value {
                Bson::Array(a) => &cipherdoc_crypto::RedactedList(a),
                v => &cipherdoc_crypto::Redacted(v),
            };
            // A temporary can't outlive the match arm; format here.
            d.field("value", &format_args!("{redacted:?}"));
        } else {
            d.field("value", &self.value);
        }
        d.field("encrypted", &self.encrypted).finish()
    }
}

/// The untyped expression tree inside a [`Q`].
// Conditions dominate these trees; boxing each one would cost an allocation
// per condition for no gain in trees this small.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Expr {
    /// A condition.
    Cond(Cond),
    /// All of these hold; `And(vec![])` matches every document.
    And(Vec<Expr>),
    /// One of these holds; `Or(vec![])` matches no document.
    Or(Vec<Expr>),
    /// This does not hold.
    Not(Box<Expr>),
}

impl Expr {
    /// Every condition in the tree, depth first, left to right.
    pub fn conditions(&self) -> Vec<&Cond> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Cond>) {
        match self {
            Expr::Cond(c) => out.push(c),
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.collect(out)),
            Expr::Not(e) => e.collect(out),
        }
    }
}

/// A lookup whose value could not be converted to BSON (kept in the [`Q`]
/// and reported by [`Q::expr`], so building queries stays infallible).
#[derive(Debug, Clone, PartialEq, Eq)]
struct InvalidLookup {
    path: String,
    lookup: Lookup,
    error: ValueError,
}

/// A query on model `M`: a filter expression built from typed field paths.
pub struct Q<M> {
    expr: Expr,
    error: Option<Box<InvalidLookup>>,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for Q<M> {
    fn clone(&self) -> Self {
        Q {
            expr: self.expr.clone(),
            error: self.error.clone(),
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for Q<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Q")
            .field("expr", &self.expr)
            .field("error", &self.error)
            .finish()
    }
}

impl<M> PartialEq for Q<M> {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.error == other.error
    }
}

impl<M> Q<M> {
    /// Matches every document.
    pub fn all() -> Self {
        Q::from_expr(Expr::And(Vec::new()))
    }

    /// A query from an untyped expression (no checks).
    pub fn from_expr(expr: Expr) -> Self {
        Q {
            expr,
            error: None,
            marker: PhantomData,
        }
    }

    /// The expression; an error when a lookup value could not be converted
    /// (for example a `u64` above `i64::MAX`). The executor calls this before
    /// anything else.
    pub fn expr(&self) -> Result<&Expr, ModelError>
    where
        M: Model,
    {
        match &self.error {
            None => Ok(&self.expr),
            Some(e) => Err(ModelError::InvalidLookup {
                model: M::schema().label(),
                path: e.path.clone(),
                lookup: e.lookup.name(),
                source: e.error.clone(),
            }),
        }
    }

    /// Every condition, depth first (for inspection; see [`Q::expr`]).
    pub fn conditions(&self) -> impl Iterator<Item = &Cond> {
        self.expr.conditions().into_iter()
    }

    /// The expression, without checking for conversion errors.
    pub fn expr_unchecked(&self) -> &Expr {
        &self.expr
    }

    fn combine(self, other: Self, join: Join) -> Self {
        let error = self.error.or(other.error);
        let expr = match (self.expr, other.expr, join) {
            (Expr::And(mut a), Expr::And(b), Join::And) => {
                a.extend(b);
                Expr::And(a)
            }
            (Expr::And(mut a), b, Join::And) => {
                a.push(b);
                Expr::And(a)
            }
            (a, b, Join::And) => Expr::And(vec![a, b]),
            (Expr::Or(mut a), Expr::Or(b), Join::Or) => {
                a.extend(b);
                Expr::Or(a)
            }
            (Expr::Or(mut a), b, Join::Or) => {
                a.push(b);
                Expr::Or(a)
            }
            (a, b, Join::Or) => Expr::Or(vec![a, b]),
        };
        Q {
            expr,
            error,
            marker: PhantomData,
        }
    }
}

/// How `Q::combine` joins two queries.
#[derive(Clone, Copy)]
enum Join {
    /// `&`: both.
    And,
    /// `|`: either.
    Or,
}

impl<M> BitAnd for Q<M> {
    type Output = Q<M>;
    fn bitand(self, rhs: Self) -> Self {
        self.combine(rhs, Join::And)
    }
}

impl<M> BitOr for Q<M> {
    type Output = Q<M>;
    fn bitor(self, rhs: Self) -> Self {
        self.combine(rhs, Join::Or)
    }
}

impl<M> Not for Q<M> {
    type Output = Q<M>;
    fn not(self) -> Self {
        Q {
            expr: Expr::Not(Box::new(self.expr)),
            error: self.error,
            marker: PhantomData,
        }
    }
}

/// An ordering on a plaintext field (`.asc()`, `.desc()`).
pub struct OrderBy<M> {
    /// Dotted path.
    pub path: String,
    /// Descending when `true`.
    pub descending: bool,
    marker: PhantomData<fn() -> M>,
}

impl<M> Clone for OrderBy<M> {
    fn clone(&self) -> Self {
        OrderBy {
            path: self.path.clone(),
            descending: self.descending,
            marker: PhantomData,
        }
    }
}

impl<M> fmt::Debug for OrderBy<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderBy")
            .field("path", &self.path)
            .field("descending", &self.descending)
            .finish()
    }
}

impl<M> PartialEq for OrderBy<M> {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.descending == other.descending
    }
}

impl<M, T, C> FieldPath<M, T, C> {
    /// A path; generated code calls this with the field's [`EncryptedInfo`].
    pub fn new(path: String, encrypted: Option<EncryptedInfo>) -> Self {
        FieldPath {
            path,
            encrypted,
            marker: PhantomData,
        }
    }

    /// The dotted path (`patient_record.ssn`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The encryption of the field; `None` when plaintext.
    pub fn encrypted(&self) -> Option<&EncryptedInfo> {
        self.encrypted.as_ref()
    }

    fn cond(&self, lookup: Lookup, value: Result<Bson, ValueError>) -> Q<M> {
        match value {
            Ok(value) => Q::from_expr(Expr::Cond(Cond {
                path: self.path.clone(),
                lookup,
                value,
                encrypted: self.encrypted.clone(),
            })),
            Err(error) => Q {
                expr: Expr::And(Vec::new()),
                error: Some(Box::new(InvalidLookup {
                    path: self.path.clone(),
                    lookup,
                    error,
                })),
                marker: PhantomData,
            },
        }
    }

    fn one<V: IntoFieldValue<T>>(&self, lookup: Lookup, v: V) -> Q<M>
    where
        T: FieldValue,
    {
        self.cond(lookup, v.into_field_value().to_bson())
    }

    /// Equal to `v`.
    pub fn eq<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: EqualityLookups,
    {
        self.one(Lookup::Eq, v)
    }

    /// Not equal to `v`.
    pub fn ne<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: EqualityLookups,
    {
        self.one(Lookup::Ne, v)
    }

    /// Equal to one of `values`.
    pub fn is_in<I, V>(&self, values: I) -> Q<M>
    where
        I: IntoIterator<Item = V>,
        V: IntoFieldValue<T>,
        T: FieldValue,
        C: EqualityLookups,
    {
        let arr = values
            .into_iter()
            .map(|v| v.into_field_value().to_bson())
            .collect::<Result<Vec<_>, _>>()
            .map(Bson::Array);
        self.cond(Lookup::In, arr)
    }

    /// Less than `v`.
    pub fn lt<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: RangeLookups,
    {
        self.one(Lookup::Lt, v)
    }

    /// Less than or equal to `v`.
    pub fn lte<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: RangeLookups,
    {
        self.one(Lookup::Lte, v)
    }

    /// Greater than `v`.
    pub fn gt<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: RangeLookups,
    {
        self.one(Lookup::Gt, v)
    }

    /// Greater than or equal to `v`.
    pub fn gte<V: IntoFieldValue<T>>(&self, v: V) -> Q<M>
    where
        T: FieldValue,
        C: RangeLookups,
    {
        self.one(Lookup::Gte, v)
    }

    /// Between `low` and `high`, both included.
    pub fn range<V: IntoFieldValue<T>, W: IntoFieldValue<T>>(&self, low: V, high: W) -> Q<M>
    where
        T: FieldValue,
        C: RangeLookups,
    {
        let pair = low
            .into_field_value()
            .to_bson()
            .and_then(|lo| Ok(Bson::Array(vec![lo, high.into_field_value().to_bson()?])));
        self.cond(Lookup::Range, pair)
    }

    /// The string contains `s`: exactly on a plaintext field, after the
    /// field's folding on an encrypted substring field (whose query lengths
    /// bound `s`).
    pub fn contains(&self, s: &str) -> Q<M>
    where
        T: TextValue,
        C: SubstringLookups,
    {
        self.cond(Lookup::Contains, Ok(Bson::String(s.to_owned())))
    }

    /// The string starts with `s`: exactly on a plaintext field, after the
    /// field's folding on an encrypted prefix field (whose query lengths
    /// bound `s`).
    pub fn starts_with(&self, s: &str) -> Q<M>
    where
        T: TextValue,
        C: PrefixLookups,
    {
        self.cond(Lookup::StartsWith, Ok(Bson::String(s.to_owned())))
    }

    /// The string ends with `s`: exactly on a plaintext field, after the
    /// field's folding on an encrypted suffix field (whose query lengths
    /// bound `s`).
    pub fn ends_with(&self, s: &str) -> Q<M>
    where
        T: TextValue,
        C: SuffixLookups,
    {
        self.cond(Lookup::EndsWith, Ok(Bson::String(s.to_owned())))
    }

    /// Null or absent (`true`), or present and not null (`false`).
    pub fn is_null(&self, null: bool) -> Q<M>
    where
        T: Nullable,
        C: PlaintextLookups,
    {
        self.cond(Lookup::IsNull, Ok(Bson::Boolean(null)))
    }

    /// Ascending order on this field.
    pub fn asc(&self) -> OrderBy<M>
    where
        C: PlaintextLookups,
    {
        OrderBy {
            path: self.path.clone(),
            descending: false,
            marker: PhantomData,
        }
    }

    /// Descending order on this field.
    pub fn desc(&self) -> OrderBy<M>
    where
        C: PlaintextLookups,
    {
        OrderBy {
            path: self.path.clone(),
            descending: true,
            marker: PhantomData,
        }
    }
}
