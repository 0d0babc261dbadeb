//! The one error type of the range module.

/// Which end of a range a message talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundSide {
    /// The lower bound (`min`, or a query's lower bound).
    Lower,
    /// The upper bound (`max`, or a query's upper bound).
    Upper,
}

impl std::fmt::Display for BoundSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BoundSide::Lower => "lower",
            BoundSide::Upper => "upper",
        })
    }
}

/// Why a `min`/`max` bound cannot be used with `precision` (libmongocrypt's
/// `mc_canUsePrecisionMode*` checks, in the order it makes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionBoundProblem {
    /// The bound is infinite or NaN (decimal128 only).
    NotFinite,
    /// `bound · 10^precision` has a fractional part.
    Fractional,
    /// `|bound · 10^precision|` is too large (≥ 2^53 for double, > 2^127−1 for decimal128).
    TooLarge,
}

/// Errors of the range index mathematics (qe-protocol.md §8).
///
/// Messages name the offending range options (bounds, precision, sparsity,
/// trim factor: schema, not data) so that a caller can see what to fix. They
/// never contain a value being encoded or a query bound — those may be the
/// plaintext of an encrypted field, and errors end up in logs — nor key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// Exactly one of `min`/`max` was given to an integer encoding.
    #[error("range bounds: give both min and max, or neither (got only one)")]
    OnlyOneBound,

    /// For double/decimal128, `min`, `max` and `precision` go together.
    #[error("range bounds: min, max and precision must all be set or all be unset for {ty}")]
    MinMaxPrecisionMismatch {
        /// The value type.
        ty: &'static str,
    },

    /// `min >= max` (or they are unordered, e.g. NaN).
    #[error("the range index minimum {min} must be less than its maximum {max}")]
    MinNotLessThanMax {
        /// The minimum, formatted.
        min: String,
        /// The maximum, formatted.
        max: String,
    },

    /// The value to encode lies outside `[min, max]`.
    #[error("the value is outside the range index bounds [{min}, {max}]")]
    ValueOutOfBounds {
        /// The index minimum, formatted.
        min: String,
        /// The index maximum, formatted.
        max: String,
    },

    /// Infinity and NaN cannot be encoded.
    #[error("the {ty} value cannot be range-encoded: infinity and NaN are not supported")]
    NonFiniteValue {
        /// The value type.
        ty: &'static str,
    },

    /// `precision < 0`.
    #[error("precision must be non-negative, got {0}")]
    NegativePrecision(i32),

    /// `10^precision` is not finite in the value type.
    #[error(
        "precision {precision} is too large for {ty}: 10^precision is not finite, \
         so the scaled range bounds cannot be computed"
    )]
    PrecisionTooLarge {
        /// The precision.
        precision: i32,
        /// The value type.
        ty: &'static str,
    },

    /// A bound cannot be used with the requested precision.
    #[error(
        "invalid {side} bound {bound} for {ty} precision {precision}: {}",
        match problem {
            PrecisionBoundProblem::NotFinite => "the bound is infinite or NaN",
            PrecisionBoundProblem::Fractional =>
                "it has more fractional digits than the precision allows",
            PrecisionBoundProblem::TooLarge =>
                "its absolute value scaled by 10^precision is too large \
                 (limit 2^53 for double, 2^127-1 for decimal128)",
        }
    )]
    InvalidPrecisionBound {
        /// Which bound.
        side: BoundSide,
        /// The bound, formatted.
        bound: String,
        /// The precision.
        precision: i32,
        /// The value type.
        ty: &'static str,
        /// What is wrong with it.
        problem: PrecisionBoundProblem,
    },

    /// `precision` exceeds `floor(log10(2^N − (max−min)·10^p)) − 1`.
    #[error(
        "precision {precision} is too large for the {ty} range [{min}, {max}]; use a smaller precision"
    )]
    PrecisionTooLargeForBounds {
        /// The precision.
        precision: i32,
        /// The value type.
        ty: &'static str,
        /// The minimum, formatted.
        min: String,
        /// The maximum, formatted.
        max: String,
    },

    /// `(max − min)·10^precision` needs too many bits (≥ 53 for double,
    /// ≥ 128 for decimal128).
    #[error(
        "the domain of {ty} values given by min {min}, max {max} and precision {precision} \
         cannot be represented in fewer than {limit} bits; narrow the range or lower the precision"
    )]
    PrecisionDomainTooLarge {
        /// The value type.
        ty: &'static str,
        /// The minimum, formatted.
        min: String,
        /// The maximum, formatted.
        max: String,
        /// The precision.
        precision: i32,
        /// The bit limit (53 or 128).
        limit: u32,
    },

    /// The sparsity is not ≥ 1.
    #[error("range sparsity must be 1 or larger, got {0}")]
    InvalidSparsity(i64),

    /// `trimFactor < 0`.
    #[error("trimFactor must be >= 0, got {0}")]
    NegativeTrimFactor(i32),

    /// `trimFactor ≠ 0` and `trimFactor ≥` the bit width of the domain.
    #[error(
        "trimFactor {trim_factor} must be less than the number of bits ({bits}) \
         used to represent an element of the domain"
    )]
    TrimFactorTooLarge {
        /// The trim factor asked for.
        trim_factor: i32,
        /// The bit width of the domain.
        bits: u32,
    },

    /// A query's lower bound is above its upper bound (client behaviour).
    #[error("empty range query: the encoded lower bound is greater than the encoded upper bound")]
    EmptyRange,

    /// The mincover would exceed [`MAX_MIN_COVER_LEN`](super::MAX_MIN_COVER_LEN)
    /// strings (a trim factor close to the domain width with a wide query).
    #[error(
        "the range query needs more than {limit} mincover strings; \
         lower the trimFactor or narrow the query"
    )]
    MinCoverTooLarge {
        /// The limit.
        limit: usize,
    },

    /// A query bound is outside the index range, or an exclusive bound sits on
    /// the edge of the domain so that excluding it leaves nothing.
    #[error("the query's {side} bound is invalid for the index range: {reason}")]
    QueryBoundOutOfRange {
        /// Which bound.
        side: BoundSide,
        /// Explanation (the index bounds, never the query's).
        reason: String,
    },

    /// Range options that contradict each other (libmongocrypt `RangeOpts`
    /// rules) or that do not fit the value type.
    #[error("invalid range options: {0}")]
    InvalidOptions(String),

    /// A value's type does not match the index type.
    #[error("range value type mismatch: expected {expected}, got {got}")]
    TypeMismatch {
        /// The type the index uses.
        expected: &'static str,
        /// The type given.
        got: &'static str,
    },

    /// A decimal128 string could not be parsed (the string is not repeated:
    /// it may be a value to encrypt).
    #[error("invalid decimal128 string")]
    InvalidDecimalString,

    /// An input that libmongocrypt does not handle (it aborts on an internal
    /// assertion); we refuse it instead.
    #[error("unsupported range input: {0}")]
    Unsupported(String),
}
