//! Range options, their defaults and validation (qe-protocol.md §8.1,
//! libmongocrypt `src/mc-rangeopts.c`), and [`RangeIndex`], the resolved
//! index definition that drives encoding, edges and mincover.

use bson::Decimal128;

use super::decimal;
use super::edges::{DEFAULT_SPARSITY, Edges, check_sparsity, check_trim_factor};
use super::encoding::{encode_decimal128, encode_double, encode_int32, encode_int64};
use super::error::RangeError;
use super::mincover::{
    MinCover, OnEmpty, RangeQuery, min_cover_decimal128, min_cover_double, min_cover_int32,
    min_cover_int64,
};

/// The BSON types a range index supports (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeValueKind {
    /// BSON int32 (`"int"`).
    Int32,
    /// BSON int64 (`"long"`).
    Int64,
    /// BSON UTC datetime (`"date"`), milliseconds.
    Date,
    /// BSON double.
    Double,
    /// BSON decimal128 (`"decimal"`).
    Decimal128,
}

impl RangeValueKind {
    /// The type name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            RangeValueKind::Int32 => "int32",
            RangeValueKind::Int64 => "int64",
            RangeValueKind::Date => "date",
            RangeValueKind::Double => "double",
            RangeValueKind::Decimal128 => "decimal128",
        }
    }

    /// Whether `precision` applies to this type.
    pub fn supports_precision(self) -> bool {
        matches!(self, RangeValueKind::Double | RangeValueKind::Decimal128)
    }
}

/// A value of a range-indexable type.
#[derive(Clone, Copy, PartialEq)]
pub enum RangeValue {
    /// int32.
    Int32(i32),
    /// int64.
    Int64(i64),
    /// UTC datetime in milliseconds since the epoch.
    Date(i64),
    /// double.
    Double(f64),
    /// decimal128 (BSON bytes, exponent preserved).
    Decimal128(Decimal128),
}

impl std::fmt::Debug for RangeValue {
    // Values are plaintexts: show only the type.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RangeValue::{}(..)", self.kind().name())
    }
}

impl RangeValue {
    /// The value's type.
    pub fn kind(&self) -> RangeValueKind {
        match self {
            RangeValue::Int32(_) => RangeValueKind::Int32,
            RangeValue::Int64(_) => RangeValueKind::Int64,
            RangeValue::Date(_) => RangeValueKind::Date,
            RangeValue::Double(_) => RangeValueKind::Double,
            RangeValue::Decimal128(_) => RangeValueKind::Decimal128,
        }
    }

    /// The explicit-API default lower bound for double/decimal128 when the
    /// options carry none: `-DBL_MAX` / `-9999999999999999999999999999999999E6111`.
    pub fn default_min(kind: RangeValueKind) -> Option<RangeValue> {
        match kind {
            RangeValueKind::Double => Some(RangeValue::Double(-f64::MAX)),
            RangeValueKind::Decimal128 => Some(RangeValue::Decimal128(decimal::largest(true))),
            _ => None,
        }
    }

    /// The explicit-API default upper bound: `DBL_MAX` /
    /// `9999999999999999999999999999999999E6111`.
    pub fn default_max(kind: RangeValueKind) -> Option<RangeValue> {
        match kind {
            RangeValueKind::Double => Some(RangeValue::Double(f64::MAX)),
            RangeValueKind::Decimal128 => Some(RangeValue::Decimal128(decimal::largest(false))),
            _ => None,
        }
    }

    /// Whether this is a double ±∞, the placeholder's marker for an open
    /// query bound (§6.1, §8.5 step 1).
    pub fn is_open_bound(&self) -> bool {
        matches!(self, RangeValue::Double(d) if d.is_infinite())
    }
}

/// Range options as a user or an `encryptedFields` entry gives them (§7.1,
/// explicit-encryption `RangeOpts`). Absent fields take the §8.1 defaults
/// when resolved with [`RangeOptions::resolve`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RangeOptions {
    /// Index minimum (required for int32/int64/date).
    pub min: Option<RangeValue>,
    /// Index maximum (required for int32/int64/date).
    pub max: Option<RangeValue>,
    /// Sparsity, default 2.
    pub sparsity: Option<i64>,
    /// Trim factor, default `min(6, bits − 1)`.
    pub trim_factor: Option<i32>,
    /// Precision (double/decimal128 only; requires min and max).
    pub precision: Option<i32>,
}

impl RangeOptions {
    /// Checks the option combinations libmongocrypt's `mc_RangeOpts_parse`
    /// rejects: negative sparsity, trimFactor or precision; precision without
    /// both min and max or with non-double/decimal bounds; min and max of
    /// different types; double/decimal min or max without precision.
    pub fn validate(&self) -> Result<(), RangeError> {
        let bad = |m: String| Err(RangeError::InvalidOptions(m));
        if let Some(s) = self.sparsity {
            if s < 0 {
                return Err(RangeError::InvalidSparsity(s));
            }
        }
        if let Some(p) = self.precision {
            if p < 0 {
                return Err(RangeError::NegativePrecision(p));
            }
        }
        if let Some(tf) = self.trim_factor {
            if tf < 0 {
                return Err(RangeError::NegativeTrimFactor(tf));
            }
        }
        if self.precision.is_some() {
            for (name, bound) in [("min", self.min), ("max", self.max)] {
                match bound {
                    None => return bad(format!("setting precision requires {name}")),
                    Some(v) if !v.kind().supports_precision() => {
                        return bad(format!(
                            "precision can only be set with a double or decimal128 index, but {name} is {}",
                            v.kind().name()
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max) {
            if lo.kind() != hi.kind() {
                return bad(format!(
                    "min and max must have the same type, got {} min and {} max",
                    lo.kind().name(),
                    hi.kind().name()
                ));
            }
        }
        if self.precision.is_none() {
            for (name, bound) in [("min", self.min), ("max", self.max)] {
                if let Some(v) = bound {
                    if v.kind().supports_precision() {
                        return bad(format!(
                            "{name} for a {} index requires precision to be set",
                            v.kind().name()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies the defaults of §8.1 for an index over `kind` values and
    /// validates the result (including trimFactor against the domain width).
    pub fn resolve(&self, kind: RangeValueKind) -> Result<RangeIndex, RangeError> {
        self.validate()?;
        let pick = |given: Option<RangeValue>, default: Option<RangeValue>, name: &str| match (
            given, default,
        ) {
            (Some(v), _) if v.kind() != kind => Err(RangeError::InvalidOptions(format!(
                "range option {name} has type {} but the value type is {}",
                v.kind().name(),
                kind.name()
            ))),
            (Some(v), _) | (None, Some(v)) => Ok(v),
            (None, None) => Err(RangeError::InvalidOptions(format!(
                "range option {name} is required for type {}",
                kind.name()
            ))),
        };
        let min = pick(self.min, RangeValue::default_min(kind), "min")?;
        let max = pick(self.max, RangeValue::default_max(kind), "max")?;
        RangeIndex::new(
            min,
            max,
            self.precision,
            self.sparsity.unwrap_or(DEFAULT_SPARSITY),
            self.trim_factor,
        )
    }
}

/// A range index with every option resolved: what an insert spec or a find
/// spec's `edgesInfo` carries (`mn`, `mx`, `pn`, `sp`, `tf`).
///
/// For double/decimal128 without precision, `index_min`/`index_max` are kept
/// (they are sent as `mn`/`mx`) but the encoding ignores them, as libmongocrypt does.
#[derive(Debug, Clone, Copy)]
pub struct RangeIndex {
    kind: RangeValueKind,
    min: RangeValue,
    max: RangeValue,
    precision: Option<i32>,
    sparsity: i64,
    trim_factor: i32,
    bits: u32,
}

impl RangeIndex {
    /// Resolves an index from explicit parameters (e.g. a find spec's
    /// `edgesInfo`). `trim_factor = None` means the default `min(6, bits − 1)`.
    pub fn new(
        min: RangeValue,
        max: RangeValue,
        precision: Option<i32>,
        sparsity: i64,
        trim_factor: Option<i32>,
    ) -> Result<RangeIndex, RangeError> {
        let kind = min.kind();
        if max.kind() != kind {
            return Err(RangeError::TypeMismatch {
                expected: kind.name(),
                got: max.kind().name(),
            });
        }
        if precision.is_some() && !kind.supports_precision() {
            return Err(RangeError::InvalidOptions(format!(
                "precision is only allowed for double and decimal128, not {}",
                kind.name()
            )));
        }
        check_sparsity(sparsity)?;
        let mut index = RangeIndex {
            kind,
            min,
            max,
            precision,
            sparsity,
            trim_factor: 0,
            bits: 0,
        };
        // The domain width is that of the encoding of `min` (mc_getNumberOfBits).
        index.bits = index.domain_bits(&min)?;
        let tf = check_trim_factor(index.bits, trim_factor)?;
        index.trim_factor = i32::try_from(tf).unwrap_or(i32::MAX);
        Ok(index)
    }

    fn domain_bits(&self, value: &RangeValue) -> Result<u32, RangeError> {
        Ok(match (*value, self.min, self.max) {
            (RangeValue::Int32(v), RangeValue::Int32(lo), RangeValue::Int32(hi)) => {
                encode_int32(v, Some(lo), Some(hi))?.bits()
            }
            (
                RangeValue::Int64(v) | RangeValue::Date(v),
                RangeValue::Int64(lo) | RangeValue::Date(lo),
                RangeValue::Int64(hi) | RangeValue::Date(hi),
            ) => encode_int64(v, Some(lo), Some(hi))?.bits(),
            (RangeValue::Double(v), RangeValue::Double(lo), RangeValue::Double(hi)) => {
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                encode_double(v, lo, hi, self.precision)?.bits()
            }
            (RangeValue::Decimal128(v), RangeValue::Decimal128(lo), RangeValue::Decimal128(hi)) => {
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                encode_decimal128(v, lo, hi, self.precision)?.bits()
            }
            _ => {
                return Err(RangeError::TypeMismatch {
                    expected: self.kind.name(),
                    got: value.kind().name(),
                });
            }
        })
    }

    fn check_kind(&self, value: &RangeValue) -> Result<(), RangeError> {
        if value.kind() == self.kind {
            Ok(())
        } else {
            Err(RangeError::TypeMismatch {
                expected: self.kind.name(),
                got: value.kind().name(),
            })
        }
    }

    /// Value type of the index.
    pub fn kind(&self) -> RangeValueKind {
        self.kind
    }

    /// Index minimum (`mn`), defaults applied.
    pub fn index_min(&self) -> RangeValue {
        self.min
    }

    /// Index maximum (`mx`), defaults applied.
    pub fn index_max(&self) -> RangeValue {
        self.max
    }

    /// Precision (`pn`), if any.
    pub fn precision(&self) -> Option<i32> {
        self.precision
    }

    /// Sparsity (`sp`).
    pub fn sparsity(&self) -> i64 {
        self.sparsity
    }

    /// Trim factor actually used (`tf`).
    pub fn trim_factor(&self) -> i32 {
        self.trim_factor
    }

    /// Bit width of the encoded domain.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of edges every inserted value has (server `Edges::size`).
    pub fn edge_count(&self) -> usize {
        Edges::size(
            self.bits,
            u64::try_from(self.sparsity).unwrap_or(1),
            u32::try_from(self.trim_factor).unwrap_or(0),
        )
    }

    /// The edges of an inserted value (§8.4), in `g` order.
    pub fn edges(&self, value: &RangeValue) -> Result<Edges, RangeError> {
        self.check_kind(value)?;
        let (sp, tf) = (self.sparsity, Some(self.trim_factor));
        match (*value, self.min, self.max) {
            (RangeValue::Int32(v), RangeValue::Int32(lo), RangeValue::Int32(hi)) => {
                Edges::new(encode_int32(v, Some(lo), Some(hi))?, sp, tf)
            }
            (
                RangeValue::Int64(v) | RangeValue::Date(v),
                RangeValue::Int64(lo) | RangeValue::Date(lo),
                RangeValue::Int64(hi) | RangeValue::Date(hi),
            ) => Edges::new(encode_int64(v, Some(lo), Some(hi))?, sp, tf),
            (RangeValue::Double(v), RangeValue::Double(lo), RangeValue::Double(hi)) => {
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                Edges::new(encode_double(v, lo, hi, self.precision)?, sp, tf)
            }
            (RangeValue::Decimal128(v), RangeValue::Decimal128(lo), RangeValue::Decimal128(hi)) => {
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                Edges::new(encode_decimal128(v, lo, hi, self.precision)?, sp, tf)
            }
            _ => Err(RangeError::TypeMismatch {
                expected: self.kind.name(),
                got: value.kind().name(),
            }),
        }
    }

    /// The mincover of a query (§8.5). A double ±∞ bound (the placeholder's
    /// open end) is replaced by the index min/max, inclusive; other bounds
    /// must have the index type.
    pub fn min_cover(
        &self,
        lower: &RangeValue,
        include_lower: bool,
        upper: &RangeValue,
        include_upper: bool,
        on_empty: OnEmpty,
    ) -> Result<MinCover, RangeError> {
        let (lower, include_lower) = if lower.is_open_bound() {
            (self.min, true)
        } else {
            (*lower, include_lower)
        };
        let (upper, include_upper) = if upper.is_open_bound() {
            (self.max, true)
        } else {
            (*upper, include_upper)
        };
        self.check_kind(&lower)?;
        self.check_kind(&upper)?;
        let (sp, tf) = (self.sparsity, Some(self.trim_factor));
        match (lower, upper, self.min, self.max) {
            (
                RangeValue::Int32(a),
                RangeValue::Int32(b),
                RangeValue::Int32(lo),
                RangeValue::Int32(hi),
            ) => {
                let q = RangeQuery {
                    lower: a,
                    include_lower,
                    upper: b,
                    include_upper,
                };
                min_cover_int32(q, Some(lo), Some(hi), sp, tf, on_empty)
            }
            (
                RangeValue::Int64(a) | RangeValue::Date(a),
                RangeValue::Int64(b) | RangeValue::Date(b),
                RangeValue::Int64(lo) | RangeValue::Date(lo),
                RangeValue::Int64(hi) | RangeValue::Date(hi),
            ) => {
                let q = RangeQuery {
                    lower: a,
                    include_lower,
                    upper: b,
                    include_upper,
                };
                min_cover_int64(q, Some(lo), Some(hi), sp, tf, on_empty)
            }
            (
                RangeValue::Double(a),
                RangeValue::Double(b),
                RangeValue::Double(lo),
                RangeValue::Double(hi),
            ) => {
                let q = RangeQuery {
                    lower: a,
                    include_lower,
                    upper: b,
                    include_upper,
                };
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                min_cover_double(q, lo, hi, self.precision, sp, tf, on_empty)
            }
            (
                RangeValue::Decimal128(a),
                RangeValue::Decimal128(b),
                RangeValue::Decimal128(lo),
                RangeValue::Decimal128(hi),
            ) => {
                let q = RangeQuery {
                    lower: a,
                    include_lower,
                    upper: b,
                    include_upper,
                };
                let (lo, hi) = self
                    .precision
                    .map_or((None, None), |_| (Some(lo), Some(hi)));
                min_cover_decimal128(q, lo, hi, self.precision, sp, tf, on_empty)
            }
            _ => Err(RangeError::TypeMismatch {
                expected: self.kind.name(),
                got: lower.kind().name(),
            }),
        }
    }
}
