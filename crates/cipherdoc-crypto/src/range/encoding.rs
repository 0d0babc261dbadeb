//! Order-preserving encoding of range-indexed values to unsigned integers
//! (qe-protocol.md §8.2, libmongocrypt `src/mc-range-encoding.c`).
//!
//! Every function returns an [`OstType`] `{value, min: 0, max}`; `max` fixes
//! the domain and so the bit width of the edge strings. Error conditions and
//! the order in which they are checked follow libmongocrypt.

use std::cmp::Ordering;
use std::fmt::{Debug, Display};

use bson::Decimal128;

use super::decimal::{self, Bid, MAX_COEFF};
use super::error::{BoundSide, PrecisionBoundProblem, RangeError};

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for u128 {}
}

/// The unsigned integer types an encoding can produce: `u32` (int32),
/// `u64` (int64, date, double) and `u128` (decimal128).
pub trait OstInt:
    sealed::Sealed + Copy + Ord + Eq + Debug + Display + Send + Sync + 'static
{
    /// Width of the type in bits.
    const BITS: u32;
    /// Widens to `u128` (the edge and mincover code works on `u128`).
    fn to_u128(self) -> u128;
}

impl OstInt for u32 {
    const BITS: u32 = 32;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
}
impl OstInt for u64 {
    const BITS: u32 = 64;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
}
impl OstInt for u128 {
    const BITS: u32 = 128;
    fn to_u128(self) -> u128 {
        self
    }
}

/// An encoded value: `value` in the domain `[min, max]` where `min` is always 0
/// (kept for parity with libmongocrypt and the server's `OSTType_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OstType<T> {
    /// The encoded value.
    pub value: T,
    /// Always 0.
    pub min: T,
    /// Largest encoded value of the domain; its bit length is the edge length.
    pub max: T,
}

impl<T: OstInt> OstType<T> {
    /// Bit length of `max`: the length of the leaf string and of every
    /// mincover string (`maxlen` in §8.3).
    pub fn bits(&self) -> u32 {
        128 - self.max.to_u128().leading_zeros()
    }
}

// ---------------------------------------------------------------------------
// int32 / int64 / date

/// Encodes an int32 (§8.2). With bounds: `enc(v) − enc(min)` over the domain
/// `enc(max) − enc(min)`; without: `v + 2^31`.
pub fn encode_int32(
    value: i32,
    min: Option<i32>,
    max: Option<i32>,
) -> Result<OstType<u32>, RangeError> {
    // Adding 2^31 modulo 2^32 is flipping the sign bit of the two's complement.
    let enc = |v: i32| u32::from_ne_bytes(v.to_ne_bytes()) ^ (1 << 31);
    match (min, max) {
        (None, None) => Ok(OstType {
            value: enc(value),
            min: 0,
            max: u32::MAX,
        }),
        (Some(lo), Some(hi)) => {
            check_int_bounds(value, lo, hi)?;
            Ok(OstType {
                value: enc(value).wrapping_sub(enc(lo)),
                min: 0,
                max: enc(hi).wrapping_sub(enc(lo)),
            })
        }
        _ => Err(RangeError::OnlyOneBound),
    }
}

/// Encodes an int64 (§8.2). With bounds: `enc(v) − enc(min)` over the domain
/// `enc(max) − enc(min)`; without: `v + 2^63`.
pub fn encode_int64(
    value: i64,
    min: Option<i64>,
    max: Option<i64>,
) -> Result<OstType<u64>, RangeError> {
    let enc = |v: i64| u64::from_ne_bytes(v.to_ne_bytes()) ^ (1 << 63);
    match (min, max) {
        (None, None) => Ok(OstType {
            value: enc(value),
            min: 0,
            max: u64::MAX,
        }),
        (Some(lo), Some(hi)) => {
            check_int_bounds(value, lo, hi)?;
            Ok(OstType {
                value: enc(value).wrapping_sub(enc(lo)),
                min: 0,
                max: enc(hi).wrapping_sub(enc(lo)),
            })
        }
        _ => Err(RangeError::OnlyOneBound),
    }
}

/// Encodes a BSON date (milliseconds since the epoch); identical to
/// [`encode_int64`].
pub fn encode_date(
    millis: i64,
    min: Option<i64>,
    max: Option<i64>,
) -> Result<OstType<u64>, RangeError> {
    encode_int64(millis, min, max)
}

fn check_int_bounds<T: Copy + PartialOrd + Display>(
    value: T,
    min: T,
    max: T,
) -> Result<(), RangeError> {
    if min >= max {
        return Err(RangeError::MinNotLessThanMax {
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    if value > max || value < min {
        return Err(RangeError::ValueOutOfBounds {
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// double

const DOUBLE: &str = "double";
const DECIMAL: &str = "decimal128";
/// 2^53: scaled double bounds must stay below it.
const SCALED_DOUBLE_BOUNDS: f64 = 9_007_199_254_740_992.0;

/// `pow(10, p)` exactly as libmongocrypt computes it (the platform `pow`).
fn exp10_double(p: i32) -> f64 {
    10f64.powf(f64::from(p))
}

/// Bit length of `i`, minus one when `i` is a power of two
/// (libmongocrypt `ceil_log2_double` / `ceil_log2_int128`).
fn ceil_log2(i: u128) -> Option<u32> {
    if i == 0 {
        return None;
    }
    let bits = 128 - i.leading_zeros();
    Some(if i.is_power_of_two() { bits - 1 } else { bits })
}

/// Encodes a double (§8.2). Without precision, the IEEE bits are mapped
/// order-preservingly onto `u64` (−0.0 as +0.0). With precision `p` (which
/// requires `min` and `max`), `trunc(v·10^p) − min·10^p` over a domain of
/// `ceil_log2((max−min)·10^p + 10^p)` bits (< 53).
#[allow(clippy::float_cmp)] // the checks compare floats exactly on purpose, as libmongocrypt does
pub fn encode_double(
    value: f64,
    min: Option<f64>,
    max: Option<f64>,
    precision: Option<i32>,
) -> Result<OstType<u64>, RangeError> {
    if min.is_some() != max.is_some() || min.is_some() != precision.is_some() {
        return Err(RangeError::MinMaxPrecisionMismatch { ty: DOUBLE });
    }
    if !value.is_finite() {
        return Err(RangeError::NonFiniteValue { ty: DOUBLE });
    }
    let bounds = match (min, max, precision) {
        (Some(lo), Some(hi), Some(p)) => Some((lo, hi, p)),
        _ => None,
    };
    if let Some((lo, hi, p)) = bounds {
        // NaN bounds compare false here and are rejected by the precision checks.
        if lo >= hi {
            return Err(RangeError::MinNotLessThanMax {
                min: lo.to_string(),
                max: hi.to_string(),
            });
        }
        if value > hi || value < lo {
            return Err(RangeError::ValueOutOfBounds {
                min: lo.to_string(),
                max: hi.to_string(),
            });
        }
        if p < 0 {
            return Err(RangeError::NegativePrecision(p));
        }
        if !exp10_double(p).is_finite() {
            return Err(RangeError::PrecisionTooLarge {
                precision: p,
                ty: DOUBLE,
            });
        }
    }

    let is_neg = value < 0.0;
    // −0.0 == 0.0: map it to +0.0 so that the sign bit is clear.
    let value = if value == 0.0 { 0.0 } else { value };

    if let Some((lo, hi, p)) = bounds {
        let bits = double_precision_bits(lo, hi, p)?;
        let scale = exp10_double(p);
        // `as` truncates toward zero like C's conversion; the values are
        // known to be below 2^53 in magnitude here.
        #[allow(clippy::cast_possible_truncation)]
        let (v_prime, scaled_min) = ((value * scale).trunc() as i64, (lo * scale) as i64);
        let v_prime2 = v_prime.checked_sub(scaled_min).unwrap_or(-1);
        let max_value = (1u64 << bits) - 1;
        let ret = u64::try_from(v_prime2).ok().filter(|r| *r <= max_value).ok_or_else(|| {
            RangeError::Unsupported(format!(
                "double {value} does not fit the precision domain of [{lo}, {hi}] with precision {p}"
            ))
        })?;
        return Ok(OstType {
            value: ret,
            min: 0,
            max: max_value,
        });
    }

    // Negate, take the bits, and fold negatives below 2^63 (§8.2).
    let uv = (-value).to_bits();
    let uv = if is_neg { (1u64 << 63) - uv } else { uv };
    Ok(OstType {
        value: uv,
        min: 0,
        max: u64::MAX,
    })
}

/// libmongocrypt `mc_canUsePrecisionModeDouble`: the number of bits of the
/// precision domain, or the error that forbids precision mode.
#[allow(clippy::float_cmp)]
fn double_precision_bits(min: f64, max: f64, precision: i32) -> Result<u32, RangeError> {
    let bound_err = |side: BoundSide, bound: f64, problem: PrecisionBoundProblem| {
        RangeError::InvalidPrecisionBound {
            side,
            bound: bound.to_string(),
            precision,
            ty: DOUBLE,
            problem,
        }
    };
    let scaled_prc = exp10_double(precision);
    let scaled_max = max * scaled_prc;
    let scaled_min = min * scaled_prc;
    if scaled_max != scaled_max.trunc() {
        return Err(bound_err(
            BoundSide::Upper,
            max,
            PrecisionBoundProblem::Fractional,
        ));
    }
    if scaled_min != scaled_min.trunc() {
        return Err(bound_err(
            BoundSide::Lower,
            min,
            PrecisionBoundProblem::Fractional,
        ));
    }
    if scaled_max.abs() >= SCALED_DOUBLE_BOUNDS {
        return Err(bound_err(
            BoundSide::Upper,
            max,
            PrecisionBoundProblem::TooLarge,
        ));
    }
    if scaled_min.abs() >= SCALED_DOUBLE_BOUNDS {
        return Err(bound_err(
            BoundSide::Lower,
            min,
            PrecisionBoundProblem::TooLarge,
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let t_4 = u64::MAX as f64 - (scaled_max - scaled_min);
    let t_5 = t_4.log10().floor() - 1.0;
    if f64::from(precision) > t_5 {
        return Err(RangeError::PrecisionTooLargeForBounds {
            precision,
            ty: DOUBLE,
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    // Both are integral and below 2^53 in magnitude: the casts are exact.
    #[allow(clippy::cast_possible_truncation)]
    let (i_1, i_2) = (scaled_max as i64, scaled_min as i64);
    let domain_err = || RangeError::PrecisionDomainTooLarge {
        ty: DOUBLE,
        min: min.to_string(),
        max: max.to_string(),
        precision,
        limit: 53,
    };
    if i_1 <= i_2 {
        // libmongocrypt asserts max > min after scaling.
        return Err(RangeError::Unsupported(format!(
            "double bounds [{min}, {max}] collapse to one value at precision {precision}"
        )));
    }
    let range = i_1.abs_diff(i_2);
    // 10^p ≤ 10^18 here (t_5 ≤ 18), so the conversion is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let prc = scaled_prc as u64;
    let i_3 = range.checked_add(prc).ok_or_else(domain_err)?;
    let bits = ceil_log2(u128::from(i_3)).ok_or_else(domain_err)?;
    if bits >= 53 {
        return Err(domain_err());
    }
    Ok(bits)
}

// ---------------------------------------------------------------------------
// decimal128

/// `2^127 − 1` as libmongocrypt writes it as a decimal128 (rounded to 34 digits).
const INT_128_MAX_AS_DECIMAL: u128 = 170_141_183_460_469_231_731_687_303_715_884_100_000;
/// `2^128 − 1` as libmongocrypt writes it as a decimal128 (rounded to 34 digits).
const UINT_128_MAX_AS_DECIMAL: u128 = 340_282_366_920_938_463_463_374_607_431_768_200_000;

/// Rounds a non-negative integer to 34 significant digits, half-even (the
/// decimal128 result of an exact integer operation).
fn round34(x: u128) -> Option<u128> {
    let d = decimal::digits(x);
    if d <= 34 {
        return Some(x);
    }
    let unit = decimal::pow10(d - 34)?;
    let (q, r) = (x / unit, x % unit);
    let half = unit / 2;
    let q = if r > half || (r == half && q % 2 == 1) {
        q + 1
    } else {
        q
    };
    q.checked_mul(unit)
}

/// `bound · 10^p` for a finite decimal bound, evaluated exactly.
struct Scaled {
    integral: bool,
    /// `|bound · 10^p| > INT_128_MAX_AS_DECIMAL`.
    too_large: bool,
    /// The scaled value when integral and not too large.
    value: i128,
}

fn scale_decimal(bound: &Bid, precision: i32) -> Scaled {
    const FRACTIONAL: Scaled = Scaled {
        integral: false,
        too_large: false,
        value: 0,
    };
    const TOO_LARGE: Scaled = Scaled {
        integral: true,
        too_large: true,
        value: 0,
    };
    let coeff = bound.coeff();
    if coeff == 0 {
        return Scaled {
            integral: true,
            too_large: false,
            value: 0,
        };
    }
    let exp = i64::from(bound.exp()) + i64::from(precision);
    let magnitude = if exp >= 0 {
        let scaled = u32::try_from(exp)
            .ok()
            .and_then(decimal::pow10)
            .and_then(|s| coeff.checked_mul(s));
        match scaled {
            Some(mag) => mag,
            None => return TOO_LARGE,
        }
    } else {
        match u32::try_from(-exp).ok().and_then(decimal::pow10) {
            Some(unit) if coeff % unit == 0 => coeff / unit,
            // Otherwise a fraction remains (a non-zero coefficient below 10^34
            // cannot have more than 38 trailing zeros).
            _ => return FRACTIONAL,
        }
    };
    if magnitude > INT_128_MAX_AS_DECIMAL {
        return TOO_LARGE;
    }
    let value = i128::try_from(magnitude).unwrap_or(i128::MAX);
    Scaled {
        integral: true,
        too_large: false,
        value: if bound.neg { -value } else { value },
    }
}

/// `trunc(v · 10^p)` for a finite decimal whose scaled magnitude is known to be
/// at most `INT_128_MAX_AS_DECIMAL`.
fn trunc_scaled(value: &Bid, precision: i32) -> Option<i128> {
    let coeff = value.coeff();
    if coeff == 0 {
        return Some(0);
    }
    let exp = i64::from(value.exp()) + i64::from(precision);
    let magnitude = if exp >= 0 {
        coeff.checked_mul(decimal::pow10(u32::try_from(exp).ok()?)?)?
    } else {
        u32::try_from(-exp)
            .ok()
            .and_then(decimal::pow10)
            .map_or(0, |unit| coeff / unit)
    };
    let magnitude = i128::try_from(magnitude).ok()?;
    Some(if value.neg { -magnitude } else { magnitude })
}

/// Reinterprets two's complement, like libmongocrypt's `mlib_int128` casts.
fn wrap_u128(x: i128) -> u128 {
    u128::from_ne_bytes(x.to_ne_bytes())
}

/// `trunc(log10(t))` for a decimal128 integer `t ≥ 1` with at most 34
/// significant digits, where `log10` is rounded to 34 significant digits
/// before truncation (so a value just below `10^d` can round up to `d`).
fn trunc_log10_dec128(t: u128) -> i64 {
    let d = decimal::digits(t);
    let floor = i64::from(d) - 1;
    let Some(next_pow) = decimal::pow10(d) else {
        return floor;
    };
    // log10(t) = d − δ with δ ≈ m / (10^d · ln 10), m = 10^d − t. It rounds up
    // to d when δ is below half a unit in the 34th digit of the result. The
    // multiples involved are far from that threshold, so f64 decides exactly.
    #[allow(clippy::cast_precision_loss)]
    let x = (next_pow - t) as f64 / (next_pow as f64);
    let int_digits = if floor == 0 {
        0
    } else {
        decimal::digits(u128::try_from(floor).unwrap_or(0))
    };
    let ulp = 10f64.powi(i32::try_from(int_digits).unwrap_or(0) - 34);
    if x < 0.5 * ulp * std::f64::consts::LN_10 {
        floor + 1
    } else {
        floor
    }
}

/// Encodes a decimal128 (§8.2). Without precision: the order-preserving map
/// of libmongocrypt that depends on the un-normalised exponent (`1E2` and
/// `100` encode differently). With precision `p` (requires `min` and `max`):
/// `trunc(v·10^p) − min·10^p`, rounded to 34 digits as decimal128 arithmetic
/// does, over a domain of `ceil_log2((max−min)·10^p + 10^p)` bits (< 128).
pub fn encode_decimal128(
    value: Decimal128,
    min: Option<Decimal128>,
    max: Option<Decimal128>,
    precision: Option<i32>,
) -> Result<OstType<u128>, RangeError> {
    if min.is_some() != max.is_some() || min.is_some() != precision.is_some() {
        return Err(RangeError::MinMaxPrecisionMismatch { ty: DECIMAL });
    }
    if let Some(p) = precision {
        if p < 0 {
            return Err(RangeError::NegativePrecision(p));
        }
        // 1·10^p is finite up to 10^6144 (coefficient padded to 34 digits).
        if p > 6144 {
            return Err(RangeError::PrecisionTooLarge {
                precision: p,
                ty: DECIMAL,
            });
        }
    }
    let v = Bid::decode(value);
    if !v.is_finite() {
        return Err(RangeError::NonFiniteValue { ty: DECIMAL });
    }
    let (Some(lo_d), Some(hi_d), Some(p)) = (min, max, precision) else {
        return encode_decimal128_unbounded(&v, value);
    };
    let (lo, hi) = (Bid::decode(lo_d), Bid::decode(hi_d));
    let fmt = decimal::format;
    if matches!(
        decimal::compare(&lo, &hi),
        Some(Ordering::Greater | Ordering::Equal)
    ) {
        return Err(RangeError::MinNotLessThanMax {
            min: fmt(lo_d),
            max: fmt(hi_d),
        });
    }
    if decimal::compare(&v, &hi) == Some(Ordering::Greater)
        || decimal::compare(&v, &lo) == Some(Ordering::Less)
    {
        return Err(RangeError::ValueOutOfBounds {
            min: fmt(lo_d),
            max: fmt(hi_d),
        });
    }

    let (bits, s_min) = decimal_precision_bits(lo_d, hi_d, p)?;
    let unsupported = |what: &str| {
        RangeError::Unsupported(format!(
            "decimal128 range [{}, {}] with precision {p}: {what}",
            fmt(lo_d),
            fmt(hi_d)
        ))
    };

    // v' = trunc(v·10^p)·10^−p; u = trunc((v' − min)·10^p) where the
    // subtraction rounds to 34 digits. Scaled by 10^p throughout, that is
    // round34(trunc(v·10^p) − min·10^p).
    let v_scaled =
        trunc_scaled(&v, p).ok_or_else(|| unsupported("value out of the scaled domain"))?;
    let d = v_scaled.checked_sub(s_min).map_or_else(
        || wrap_u128(v_scaled).wrapping_sub(wrap_u128(s_min)),
        wrap_u128,
    );
    let u = round34(d).ok_or_else(|| unsupported("value out of the scaled domain"))?;
    let ost_max = (1u128 << bits) - 1;
    if u > ost_max || (bits >= 64 && u >= INT_128_MAX_AS_DECIMAL) {
        return Err(unsupported("the encoded value does not fit the domain"));
    }
    Ok(OstType {
        value: u,
        min: 0,
        max: ost_max,
    })
}

/// libmongocrypt `mc_canUsePrecisionModeDecimal`: the number of bits of the
/// precision domain and `min·10^p`, or the error that forbids precision mode.
fn decimal_precision_bits(
    lo_d: Decimal128,
    hi_d: Decimal128,
    p: i32,
) -> Result<(u32, i128), RangeError> {
    let fmt = decimal::format;
    let (lo, hi) = (Bid::decode(lo_d), Bid::decode(hi_d));
    let bound_err = |side, bound, problem| RangeError::InvalidPrecisionBound {
        side,
        bound: fmt(bound),
        precision: p,
        ty: DECIMAL,
        problem,
    };
    if !hi.is_finite() {
        return Err(bound_err(
            BoundSide::Upper,
            hi_d,
            PrecisionBoundProblem::NotFinite,
        ));
    }
    if !lo.is_finite() {
        return Err(bound_err(
            BoundSide::Lower,
            lo_d,
            PrecisionBoundProblem::NotFinite,
        ));
    }
    if decimal::compare(&lo, &hi) != Some(Ordering::Less) {
        return Err(RangeError::MinNotLessThanMax {
            min: fmt(lo_d),
            max: fmt(hi_d),
        });
    }
    let (s_max, s_min) = (scale_decimal(&hi, p), scale_decimal(&lo, p));
    if !s_max.integral {
        return Err(bound_err(
            BoundSide::Upper,
            hi_d,
            PrecisionBoundProblem::Fractional,
        ));
    }
    if !s_min.integral {
        return Err(bound_err(
            BoundSide::Lower,
            lo_d,
            PrecisionBoundProblem::Fractional,
        ));
    }
    if s_max.too_large {
        return Err(bound_err(
            BoundSide::Upper,
            hi_d,
            PrecisionBoundProblem::TooLarge,
        ));
    }
    if s_min.too_large {
        return Err(bound_err(
            BoundSide::Lower,
            lo_d,
            PrecisionBoundProblem::TooLarge,
        ));
    }
    let unsupported = |what: &str| {
        RangeError::Unsupported(format!(
            "decimal128 range [{}, {}] with precision {p}: {what}",
            fmt(lo_d),
            fmt(hi_d)
        ))
    };
    let too_precise = || RangeError::PrecisionTooLargeForBounds {
        precision: p,
        ty: DECIMAL,
        min: fmt(lo_d),
        max: fmt(hi_d),
    };
    // Both scaled bounds lie in ±INT_128_MAX_AS_DECIMAL and s_max > s_min, so
    // the difference is positive and below 2^128.
    let diff = wrap_u128(s_max.value).wrapping_sub(wrap_u128(s_min.value));
    let t_1 = round34(diff).ok_or_else(|| unsupported("scaled range too large"))?;
    let t_4 = UINT_128_MAX_AS_DECIMAL
        .checked_sub(t_1)
        .and_then(round34)
        .ok_or_else(|| unsupported("scaled range too large"))?;
    if t_4 == 0 {
        // log10(0) = −∞.
        return Err(too_precise());
    }
    let t_5 = trunc_log10_dec128(t_4) - 1;
    if i64::from(p) > t_5 {
        return Err(too_precise());
    }
    // libmongocrypt asserts that a scaled bound converted to int128 is
    // strictly below INT_128_MAX_AS_DECIMAL.
    if s_max.value == i128::try_from(INT_128_MAX_AS_DECIMAL).unwrap_or(i128::MAX)
        || s_min.value == i128::try_from(INT_128_MAX_AS_DECIMAL).unwrap_or(i128::MAX)
    {
        return Err(unsupported(
            "a scaled bound equals 2^127-1 rounded to 34 digits",
        ));
    }
    let p_u32 = u32::try_from(p).map_err(|_| too_precise())?;
    if p_u32 > 255 {
        return Err(too_precise());
    }
    let i_3 = diff.wrapping_add(10u128.wrapping_pow(p_u32));
    let bits = ceil_log2(i_3).ok_or_else(|| unsupported("empty domain"))?;
    if bits >= 128 {
        return Err(RangeError::PrecisionDomainTooLarge {
            ty: DECIMAL,
            min: fmt(lo_d),
            max: fmt(hi_d),
            precision: p,
            limit: 128,
        });
    }

    Ok((bits, s_min.value))
}

fn encode_decimal128_unbounded(v: &Bid, value: Decimal128) -> Result<OstType<u128>, RangeError> {
    const TWO_127: u128 = 1 << 127;
    let coeff = v.raw_coeff;
    if coeff == 0 {
        return Ok(OstType {
            value: TWO_127,
            min: 0,
            max: u128::MAX,
        });
    }
    if coeff > MAX_COEFF {
        return Err(RangeError::Unsupported(format!(
            "decimal128 {} has a non-canonical coefficient",
            decimal::format(value)
        )));
    }
    // ρ: the least exponent with coeff·10^ρ ≥ ⌊cMax/10⌋.
    let c_max_div_ten = MAX_COEFF / 10;
    let mut rho: u32 = 0;
    let mut coeff_scaled = coeff;
    while coeff_scaled < c_max_div_ten {
        rho += 1;
        coeff_scaled *= 10;
    }
    let exp_biased = v.biased_exp;
    let result = if rho <= exp_biased {
        coeff_scaled.wrapping_add(MAX_COEFF.wrapping_mul(u128::from(exp_biased - rho)))
    } else {
        // exp_biased < ρ ≤ 33.
        10u128.wrapping_pow(exp_biased).wrapping_mul(coeff)
    };
    let result = result.wrapping_add(TWO_127);
    let result = if v.neg { result.wrapping_neg() } else { result };
    Ok(OstType {
        value: result,
        min: 0,
        max: u128::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_log2_matches_definition() {
        assert_eq!(ceil_log2(1), Some(0));
        assert_eq!(ceil_log2(2), Some(1));
        assert_eq!(ceil_log2(3), Some(2));
        assert_eq!(ceil_log2(4), Some(2));
        assert_eq!(ceil_log2(5), Some(3));
        assert_eq!(ceil_log2(0), None);
    }

    #[test]
    fn round34_half_even() {
        let base = 10u128.pow(34);
        assert_eq!(round34(base + 5), Some(base));
        assert_eq!(round34(base + 15), Some(base + 20));
        assert_eq!(round34(base + 14), Some(base + 10));
        assert_eq!(round34(base * 10 + 50), Some(base * 10));
        assert_eq!(round34(base * 10 + 150), Some(base * 10 + 200));
        assert_eq!(round34(12345), Some(12345));
    }

    #[test]
    fn trunc_log10_rounds_near_powers_of_ten() {
        assert_eq!(trunc_log10_dec128(1), 0);
        assert_eq!(trunc_log10_dec128(9), 0);
        assert_eq!(trunc_log10_dec128(10), 1);
        assert_eq!(trunc_log10_dec128(UINT_128_MAX_AS_DECIMAL), 38);
        // 34 nines times 10^4 is 10^38 − 10^4: log10 = 38 − 4.3e-35 rounds to 38.
        assert_eq!(trunc_log10_dec128(MAX_COEFF * 10_000), 38);
        // 10^38 − 2·10^36 is far from the power of ten.
        assert_eq!(trunc_log10_dec128(98 * 10u128.pow(36)), 37);
    }
}
