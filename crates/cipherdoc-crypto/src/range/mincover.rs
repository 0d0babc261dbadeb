//! Minimal cover of a query range (qe-protocol.md §8.5, libmongocrypt
//! `src/mc-range-mincover.c` and `mc-range-mincover-generator.template.h`).

use std::cmp::Ordering;

use bson::Decimal128;
use zeroize::Zeroize;

use super::decimal::{self, Bid};
use super::edges::{check_sparsity, check_trim_factor};
use super::encoding::{
    OstInt, OstType, encode_decimal128, encode_double, encode_int32, encode_int64,
};
use super::error::{BoundSide, RangeError};

/// What to do when a query range turns out to be empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnEmpty {
    /// Return an error, as libmongocrypt (the client) does.
    #[default]
    Error,
    /// Return an empty cover, as the server does; it matches nothing.
    EmptyCover,
}

/// A query's bounds before encoding: `lower (≤ or <) x (≤ or <) upper`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeQuery<T> {
    /// Lower bound.
    pub lower: T,
    /// `true` for `$gte`, `false` for `$gt`.
    pub include_lower: bool,
    /// Upper bound.
    pub upper: T,
    /// `true` for `$lte`, `false` for `$lt`.
    pub include_upper: bool,
}

/// The mincover strings in emission order (depth first, low half first).
/// Stored back to back in one buffer; each is raw ASCII for token derivation.
#[derive(Clone, Default)]
pub struct MinCover {
    buf: Vec<u8>,
    ends: Vec<usize>,
    used_trim_factor: i32,
}

impl std::fmt::Debug for MinCover {
    // The strings reveal the query bounds: keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinCover")
            .field("len", &self.ends.len())
            .field("used_trim_factor", &self.used_trim_factor)
            .finish_non_exhaustive()
    }
}

impl Drop for MinCover {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl MinCover {
    /// Number of cover strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the cover is empty (only possible with [`OnEmpty::EmptyCover`]).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The trim factor used (after defaulting); goes into `tf` (§6.4).
    pub fn used_trim_factor(&self) -> i32 {
        self.used_trim_factor
    }

    /// The `i`-th cover string as ASCII bytes.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { *self.ends.get(i - 1)? };
        self.buf.get(start..end)
    }

    /// The cover strings as ASCII bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.ends.len()).filter_map(|i| self.get(i))
    }

    /// The cover strings as owned strings (convenience for tests and debugging).
    pub fn to_strings(&self) -> Vec<String> {
        self.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    fn push_root(&mut self) {
        self.buf.extend_from_slice(b"root");
        self.ends.push(self.buf.len());
    }

    /// Appends the top `len` bits (of a `maxlen`-bit number) of `start`.
    fn push_prefix(&mut self, start: u128, masked: u32, len: u32) {
        for i in 0..len {
            let bit = (start >> (masked + len - 1 - i)) & 1;
            self.buf.push(b'0' + u8::from(bit == 1));
        }
        self.ends.push(self.buf.len());
    }
}

/// Largest mincover we generate. A trim factor close to the bit width makes
/// every block above it unstorable, so a wide query would expand into up to
/// `2^trimFactor` strings; libmongocrypt has no limit and would exhaust memory.
/// Real covers are far smaller (the server caps a query at ~300 000 tags).
pub const MAX_MIN_COVER_LEN: usize = 1 << 18;

struct Generator {
    range_min: u128,
    range_max: u128,
    maxlen: u32,
    sparsity: u64,
    trim_factor: u32,
}

impl Generator {
    fn is_level_stored(&self, masked: u32) -> bool {
        let level = self.maxlen - masked;
        masked == 0 || (level >= self.trim_factor && u64::from(level) % self.sparsity == 0)
    }

    /// Returns `false` once the cover exceeds [`MAX_MIN_COVER_LEN`].
    fn rec(&self, out: &mut MinCover, block_start: u128, masked: u32) -> bool {
        let mask = if masked == 0 {
            0
        } else {
            u128::MAX >> (128 - masked)
        };
        let block_end = block_start | mask;
        if block_end < self.range_min || block_start > self.range_max {
            return true;
        }
        if block_start >= self.range_min
            && block_end <= self.range_max
            && self.is_level_stored(masked)
        {
            if masked == self.maxlen {
                out.push_root();
            } else {
                out.push_prefix(block_start, masked, self.maxlen - masked);
            }
            return out.len() <= MAX_MIN_COVER_LEN;
        }
        // masked > 0 here: a one-value block inside the range is always stored.
        let new_bits = masked - 1;
        self.rec(out, block_start, new_bits)
            && self.rec(out, block_start | (1u128 << new_bits), new_bits)
    }
}

/// Computes the mincover of `[lower, upper]` over already encoded bounds
/// (§8.5 steps 3–5): exclusive bounds are adjusted by ±1 on the encoded
/// integers, then the cover is generated with the given sparsity and trim
/// factor (`None` = default `min(6, bits − 1)`).
///
/// Empty ranges (an exclusive bound at the domain edge, or `lower > upper`
/// after adjustment) are an error with [`OnEmpty::Error`] and give an empty
/// cover with [`OnEmpty::EmptyCover`].
pub fn min_cover<T: OstInt>(
    lower: OstType<T>,
    include_lower: bool,
    upper: OstType<T>,
    include_upper: bool,
    sparsity: i64,
    trim_factor: Option<i32>,
    on_empty: OnEmpty,
) -> Result<MinCover, RangeError> {
    if lower.min != upper.min || lower.max != upper.max {
        return Err(RangeError::InvalidOptions(
            "mincover bounds were encoded over different domains".to_owned(),
        ));
    }
    let max = lower.max.to_u128();
    let domain_min = lower.min.to_u128();
    let mut a = lower.value.to_u128();
    let mut b = upper.value.to_u128();
    let mut empty: Option<RangeError> = None;
    // adjustBounds
    if !include_lower {
        if a >= max {
            empty = Some(RangeError::QueryBoundOutOfRange {
                side: BoundSide::Lower,
                reason: format!(
                    "an excluded encoded lower bound must be less than the domain maximum {max}"
                ),
            });
        } else {
            a += 1;
        }
    }
    if empty.is_none() && !include_upper {
        if b <= domain_min {
            empty = Some(RangeError::QueryBoundOutOfRange {
                side: BoundSide::Upper,
                reason: format!(
                    "an excluded encoded upper bound must be greater than the domain minimum {domain_min}"
                ),
            });
        } else {
            b -= 1;
        }
    }
    if empty.is_none() && a > b {
        empty = Some(RangeError::EmptyRange);
    }
    if let (Some(err), OnEmpty::Error) = (&empty, on_empty) {
        return Err(err.clone());
    }
    if b > max {
        return Err(RangeError::QueryBoundOutOfRange {
            side: BoundSide::Upper,
            reason: format!("it must be less than or equal to the domain maximum {max}"),
        });
    }
    let sparsity = check_sparsity(sparsity)?;
    let maxlen = 128 - max.leading_zeros();
    let trim_factor = check_trim_factor(maxlen, trim_factor)?;
    let mut out = MinCover {
        buf: Vec::new(),
        ends: Vec::new(),
        used_trim_factor: i32::try_from(trim_factor).unwrap_or(i32::MAX),
    };
    if empty.is_some() {
        return Ok(out);
    }
    let generator = Generator {
        range_min: a,
        range_max: b,
        maxlen,
        sparsity,
        trim_factor,
    };
    if !generator.rec(&mut out, 0, maxlen) {
        return Err(RangeError::MinCoverTooLarge {
            limit: MAX_MIN_COVER_LEN,
        });
    }
    Ok(out)
}

/// libmongocrypt's `CHECK_BOUNDS`: query bounds against the index bounds,
/// before encoding. Returns `Ok(true)` when the range is empty and the
/// caller asked for [`OnEmpty::EmptyCover`].
fn check_query_bounds<T>(
    q: &RangeQuery<T>,
    bounds: Option<(&T, &T)>,
    less: impl Fn(&T, &T) -> bool,
    show: impl Fn(&T) -> String,
    on_empty: OnEmpty,
) -> Result<bool, RangeError> {
    let Some((min, max)) = bounds else {
        return Ok(false);
    };
    let problem = if less(&q.upper, min) {
        Some((
            BoundSide::Upper,
            &q.upper,
            format!("it must be >= the index minimum {}", show(min)),
        ))
    } else if !q.include_upper && !less(min, &q.upper) {
        Some((
            BoundSide::Upper,
            &q.upper,
            format!(
                "an excluded upper bound must be > the index minimum {}",
                show(min)
            ),
        ))
    } else if less(max, &q.lower) {
        Some((
            BoundSide::Lower,
            &q.lower,
            format!("it must be <= the index maximum {}", show(max)),
        ))
    } else if !q.include_lower && !less(&q.lower, max) {
        Some((
            BoundSide::Lower,
            &q.lower,
            format!(
                "an excluded lower bound must be < the index maximum {}",
                show(max)
            ),
        ))
    } else {
        None
    };
    match (problem, on_empty) {
        (None, _) => Ok(false),
        (Some(_), OnEmpty::EmptyCover) => Ok(true),
        (Some((side, _, reason)), OnEmpty::Error) => {
            Err(RangeError::QueryBoundOutOfRange { side, reason })
        }
    }
}

fn empty_cover(bits: u32, sparsity: i64, trim_factor: Option<i32>) -> Result<MinCover, RangeError> {
    check_sparsity(sparsity)?;
    let tf = check_trim_factor(bits, trim_factor)?;
    Ok(MinCover {
        buf: Vec::new(),
        ends: Vec::new(),
        used_trim_factor: i32::try_from(tf).unwrap_or(i32::MAX),
    })
}

/// Mincover of an int32 query (`mc_getMincoverInt32`). `min`/`max` are the
/// index bounds (both or neither).
pub fn min_cover_int32(
    q: RangeQuery<i32>,
    min: Option<i32>,
    max: Option<i32>,
    sparsity: i64,
    trim_factor: Option<i32>,
    on_empty: OnEmpty,
) -> Result<MinCover, RangeError> {
    let bounds = min.as_ref().zip(max.as_ref());
    if check_query_bounds(&q, bounds, |a, b| a < b, ToString::to_string, on_empty)? {
        let dom = encode_int32(min.unwrap_or(0), min, max)?;
        return empty_cover(dom.bits(), sparsity, trim_factor);
    }
    let a = encode_int32(q.lower, min, max)?;
    let b = encode_int32(q.upper, min, max)?;
    min_cover(
        a,
        q.include_lower,
        b,
        q.include_upper,
        sparsity,
        trim_factor,
        on_empty,
    )
}

/// Mincover of an int64 or date query (`mc_getMincoverInt64`).
pub fn min_cover_int64(
    q: RangeQuery<i64>,
    min: Option<i64>,
    max: Option<i64>,
    sparsity: i64,
    trim_factor: Option<i32>,
    on_empty: OnEmpty,
) -> Result<MinCover, RangeError> {
    let bounds = min.as_ref().zip(max.as_ref());
    if check_query_bounds(&q, bounds, |a, b| a < b, ToString::to_string, on_empty)? {
        let dom = encode_int64(min.unwrap_or(0), min, max)?;
        return empty_cover(dom.bits(), sparsity, trim_factor);
    }
    let a = encode_int64(q.lower, min, max)?;
    let b = encode_int64(q.upper, min, max)?;
    min_cover(
        a,
        q.include_lower,
        b,
        q.include_upper,
        sparsity,
        trim_factor,
        on_empty,
    )
}

/// Mincover of a double query (`mc_getMincoverDouble`). `min`, `max` and
/// `precision` go together; without them the unbounded encoding is used.
pub fn min_cover_double(
    q: RangeQuery<f64>,
    min: Option<f64>,
    max: Option<f64>,
    precision: Option<i32>,
    sparsity: i64,
    trim_factor: Option<i32>,
    on_empty: OnEmpty,
) -> Result<MinCover, RangeError> {
    let bounds = min.as_ref().zip(max.as_ref());
    if check_query_bounds(&q, bounds, |a, b| a < b, ToString::to_string, on_empty)? {
        let dom = encode_double(min.unwrap_or(0.0), min, max, precision)?;
        return empty_cover(dom.bits(), sparsity, trim_factor);
    }
    let a = encode_double(q.lower, min, max, precision)?;
    let b = encode_double(q.upper, min, max, precision)?;
    min_cover(
        a,
        q.include_lower,
        b,
        q.include_upper,
        sparsity,
        trim_factor,
        on_empty,
    )
}

/// Mincover of a decimal128 query (`mc_getMincoverDecimal128`).
pub fn min_cover_decimal128(
    q: RangeQuery<Decimal128>,
    min: Option<Decimal128>,
    max: Option<Decimal128>,
    precision: Option<i32>,
    sparsity: i64,
    trim_factor: Option<i32>,
    on_empty: OnEmpty,
) -> Result<MinCover, RangeError> {
    let bounds = min.as_ref().zip(max.as_ref());
    let less = |a: &Decimal128, b: &Decimal128| {
        decimal::compare(&Bid::decode(*a), &Bid::decode(*b)) == Some(Ordering::Less)
    };
    if check_query_bounds(&q, bounds, less, |d| decimal::format(*d), on_empty)? {
        let zero = decimal::encode_finite(false, 0, 0);
        let dom = encode_decimal128(min.unwrap_or(zero), min, max, precision)?;
        return empty_cover(dom.bits(), sparsity, trim_factor);
    }
    let a = encode_decimal128(q.lower, min, max, precision)?;
    let b = encode_decimal128(q.upper, min, max, precision)?;
    min_cover(
        a,
        q.include_lower,
        b,
        q.include_upper,
        sparsity,
        trim_factor,
        on_empty,
    )
}
