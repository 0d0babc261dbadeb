//! Just enough IEEE 754-2008 decimal128 (BID encoding) for the range maths.
//!
//! Hand-written because no maintained pure-Rust crate exposes the pieces that
//! libmongocrypt's range encoding depends on (raw BID coefficient/exponent,
//! Intel-library comparison and string-rounding semantics), and `bson`'s
//! `Decimal128` is an opaque byte container. All arithmetic is on integers.

use std::cmp::Ordering;

use bson::Decimal128;

use super::error::RangeError;

/// Largest decimal128 coefficient, `10^34 − 1`.
pub(crate) const MAX_COEFF: u128 = 10u128.pow(34) - 1;
/// Exponent bias of decimal128.
pub(crate) const EXPONENT_BIAS: i32 = 6176;
/// Largest unbiased exponent.
const MAX_EXP: i32 = 6111;
/// Smallest unbiased exponent.
const MIN_EXP: i32 = -6176;
/// Significant digits of decimal128.
const PRECISION_DIGITS: usize = 34;

/// Classification of a decimal128 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecClass {
    Finite,
    Infinity,
    NaN,
}

/// A decoded decimal128.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bid {
    pub neg: bool,
    pub class: DecClass,
    /// The coefficient exactly as libmongocrypt's `mc_dec128_coeff` reads it:
    /// the raw 113-bit field in the first form (which may exceed `10^34 − 1`
    /// and then is non-canonical), 0 in the second form and for Inf/NaN.
    pub raw_coeff: u128,
    /// The biased exponent as `mc_dec128_get_biased_exp` reads it.
    pub biased_exp: u32,
}

impl Bid {
    /// Decodes the 16 BSON bytes (little-endian) of a decimal128.
    pub(crate) fn decode(d: Decimal128) -> Bid {
        let bits = u128::from_le_bytes(d.bytes());
        let neg = bits >> 127 == 1;
        let top5 = (bits >> 122) & 0x1f;
        if top5 == 0x1f {
            return Bid {
                neg,
                class: DecClass::NaN,
                raw_coeff: 0,
                biased_exp: 0,
            };
        }
        if top5 == 0x1e {
            return Bid {
                neg,
                class: DecClass::Infinity,
                raw_coeff: 0,
                biased_exp: 0,
            };
        }
        if (bits >> 125) & 0x3 == 0x3 {
            // Second form: the implied coefficient is ≥ 2^113 > 10^34 − 1,
            // always non-canonical, read as zero.
            let exp = (bits >> 111) & 0x3fff;
            return Bid {
                neg,
                class: DecClass::Finite,
                raw_coeff: 0,
                biased_exp: u32::try_from(exp).unwrap_or(0),
            };
        }
        let exp = (bits >> 113) & 0x3fff;
        Bid {
            neg,
            class: DecClass::Finite,
            raw_coeff: bits & ((1u128 << 113) - 1),
            biased_exp: u32::try_from(exp).unwrap_or(0),
        }
    }

    /// The coefficient for arithmetic: non-canonical coefficients read as 0,
    /// as in the Intel decimal library.
    pub(crate) fn coeff(&self) -> u128 {
        if self.class == DecClass::Finite && self.raw_coeff <= MAX_COEFF {
            self.raw_coeff
        } else {
            0
        }
    }

    /// Unbiased exponent.
    pub(crate) fn exp(&self) -> i32 {
        i32::try_from(self.biased_exp).unwrap_or(i32::MAX) - EXPONENT_BIAS
    }

    pub(crate) fn is_finite(&self) -> bool {
        self.class == DecClass::Finite
    }
}

/// Encodes a finite decimal128 from sign, coefficient (≤ `10^34 − 1`) and
/// unbiased exponent in `[-6176, 6111]`.
pub(crate) fn encode_finite(neg: bool, coeff: u128, exp: i32) -> Decimal128 {
    debug_assert!(coeff <= MAX_COEFF && (MIN_EXP..=MAX_EXP).contains(&exp));
    let biased = u128::try_from(exp + EXPONENT_BIAS).unwrap_or(0);
    let bits = (u128::from(neg) << 127) | (biased << 113) | coeff;
    Decimal128::from_bytes(bits.to_le_bytes())
}

fn encode_special(neg: bool, class: DecClass) -> Decimal128 {
    let top: u128 = if class == DecClass::NaN { 0x7c } else { 0x78 };
    let bits = (u128::from(neg) << 127) | (top << 120);
    Decimal128::from_bytes(bits.to_le_bytes())
}

/// `10^k` for `k ≤ 38`.
pub(crate) fn pow10(k: u32) -> Option<u128> {
    10u128.checked_pow(k)
}

/// Number of decimal digits of `x` (0 for 0).
pub(crate) fn digits(x: u128) -> u32 {
    if x == 0 { 0 } else { x.ilog10() + 1 }
}

/// Compares two decimal128 values numerically with the Intel library's
/// semantics: NaN is unordered, ±0 are equal whatever their exponents,
/// non-canonical coefficients read as 0.
pub(crate) fn compare(a: &Bid, b: &Bid) -> Option<Ordering> {
    if a.class == DecClass::NaN || b.class == DecClass::NaN {
        return None;
    }
    let sign_of = |x: &Bid| -> i8 {
        let nonzero = x.class == DecClass::Infinity || x.coeff() != 0;
        if !nonzero {
            0
        } else if x.neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (sign_of(a), sign_of(b));
    if sa != sb {
        return Some(sa.cmp(&sb));
    }
    if sa == 0 {
        return Some(Ordering::Equal);
    }
    let mag = match (a.class, b.class) {
        (DecClass::Infinity, DecClass::Infinity) => Ordering::Equal,
        (DecClass::Infinity, _) => Ordering::Greater,
        (_, DecClass::Infinity) => Ordering::Less,
        _ => compare_magnitude(a.coeff(), i64::from(a.exp()), b.coeff(), i64::from(b.exp())),
    };
    Some(if sa < 0 { mag.reverse() } else { mag })
}

/// Compares `c1·10^e1` with `c2·10^e2`, both coefficients in `1..10^34`
/// (exponents may be far outside the decimal128 range).
pub(crate) fn compare_magnitude(c1: u128, e1: i64, c2: u128, e2: i64) -> Ordering {
    let (d1, d2) = (digits(c1), digits(c2));
    let adj1 = e1 + i64::from(d1);
    let adj2 = e2 + i64::from(d2);
    if adj1 != adj2 {
        return adj1.cmp(&adj2);
    }
    // Same magnitude order: align both to 34 digits (fits in u128).
    let n1 = c1 * pow10(34 - d1).unwrap_or(1);
    let n2 = c2 * pow10(34 - d2).unwrap_or(1);
    n1.cmp(&n2)
}

/// Formats a decimal128 for messages: `[-]coefficientE±exponent`, or `0`,
/// `Infinity`, `NaN`.
pub(crate) fn format(d: Decimal128) -> String {
    let b = Bid::decode(d);
    let sign = if b.neg { "-" } else { "" };
    match b.class {
        DecClass::NaN => "NaN".to_owned(),
        DecClass::Infinity => format!("{sign}Infinity"),
        DecClass::Finite => {
            let e = b.exp();
            if e == 0 {
                format!("{sign}{}", b.coeff())
            } else {
                format!("{sign}{}E{e}", b.coeff())
            }
        }
    }
}

/// Parses a decimal string into a decimal128 the way the Intel decimal
/// library (`bid128_from_string`, round-half-even) does, which is what
/// libmongocrypt uses: the exponent is kept as written (`"1.50"` is `150E-2`),
/// and more than 34 significant digits are rounded.
///
/// Accepts `[+-]digits[.digits][e[+-]digits]`, `[+-]Infinity`/`Inf` and
/// `[+-]NaN` (case-insensitive).
pub fn decimal128_from_str(s: &str) -> Result<Decimal128, RangeError> {
    let bad = || RangeError::InvalidDecimalString;
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Ok(encode_special(neg, DecClass::Infinity));
    }
    if lower == "nan" || lower == "snan" {
        return Ok(encode_special(neg, DecClass::NaN));
    }
    let (mantissa, exp_part) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (lower.as_str(), None),
    };
    let mut exp: i64 = match exp_part {
        None => 0,
        Some(e) => {
            let (eneg, edigits) = match e.as_bytes().first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if edigits.is_empty() || !edigits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            // Saturate: anything this large over- or underflows anyway.
            let mut v: i64 = 0;
            for c in edigits.bytes() {
                v = v.saturating_mul(10).saturating_add(i64::from(c - b'0'));
            }
            if eneg { -v } else { v }
        }
    };
    let mut sig: Vec<u8> = Vec::new();
    let mut seen_digit = false;
    let mut seen_point = false;
    for c in mantissa.bytes() {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                if seen_point {
                    exp = exp.saturating_sub(1);
                }
                if !(sig.is_empty() && c == b'0') {
                    sig.push(c - b'0');
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(bad()),
        }
    }
    if !seen_digit {
        return Err(bad());
    }
    Ok(round_to_decimal128(neg, &sig, exp))
}

/// Rounds the digit string `sig` (no leading zeros) times `10^exp` to a
/// decimal128, half-even, handling exponent overflow and underflow.
fn round_to_decimal128(neg: bool, sig: &[u8], exp: i64) -> Decimal128 {
    if sig.is_empty() {
        let e = exp.clamp(i64::from(MIN_EXP), i64::from(MAX_EXP));
        return encode_finite(neg, 0, i32::try_from(e).unwrap_or(0));
    }
    let n = i64::try_from(sig.len()).unwrap_or(i64::MAX);
    // Digits to keep: at most 34, and few enough that the exponent of the
    // last kept digit is ≥ MIN_EXP.
    let underflow_drop = (i64::from(MIN_EXP) - exp).max(0);
    let keep = (n.min(34)).min(n.saturating_sub(underflow_drop));
    let (mut coeff, mut e) = if keep <= 0 {
        // Every digit is below the smallest representable unit.
        let half_or_more = keep == 0 && {
            let first = sig[0];
            first > 5 || (first == 5 && sig[1..].iter().any(|&d| d != 0))
        };
        (u128::from(half_or_more), i64::from(MIN_EXP))
    } else {
        let k = usize::try_from(keep).unwrap_or(PRECISION_DIGITS);
        let mut c: u128 = 0;
        for &d in &sig[..k] {
            c = c * 10 + u128::from(d);
        }
        let dropped = &sig[k..];
        if let Some((&first, rest)) = dropped.split_first() {
            let sticky = rest.iter().any(|&d| d != 0);
            if first > 5 || (first == 5 && (sticky || c % 2 == 1)) {
                c += 1;
            }
        }
        let mut e = exp + (n - keep);
        if c > MAX_COEFF {
            c /= 10;
            e += 1;
        }
        (c, e)
    };
    if e > i64::from(MAX_EXP) {
        // Fold the excess exponent into the coefficient if there is room.
        while coeff != 0 && coeff * 10 <= MAX_COEFF && e > i64::from(MAX_EXP) {
            coeff *= 10;
            e -= 1;
        }
        if e > i64::from(MAX_EXP) {
            if coeff == 0 {
                e = i64::from(MAX_EXP);
            } else {
                return encode_special(neg, DecClass::Infinity);
            }
        }
    }
    encode_finite(neg, coeff, i32::try_from(e).unwrap_or(MIN_EXP))
}

/// `±9999999999999999999999999999999999E6111`, the largest finite decimal128.
pub(crate) fn largest(neg: bool) -> Decimal128 {
    encode_finite(neg, MAX_COEFF, MAX_EXP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (bool, u128, i32) {
        let b = Bid::decode(decimal128_from_str(s).unwrap());
        (b.neg, b.coeff(), b.exp())
    }

    #[test]
    fn parse_keeps_exponent_and_rounds() {
        assert_eq!(parts("-1234567890E7"), (true, 1_234_567_890, 7));
        assert_eq!(parts("6.500000"), (false, 6_500_000, -6));
        assert_eq!(parts(".1"), (false, 1, -1));
        assert_eq!(parts("0E-6176"), (false, 0, -6176));
        assert_eq!(
            parts("340282366920938463463374607431769000000.000000"),
            (false, 3_402_823_669_209_384_634_633_746_074_317_690, 5)
        );
        assert_eq!(
            parts("170141183460469231731687303715884105727"),
            (false, 1_701_411_834_604_692_317_316_873_037_158_841, 5)
        );
        // Half-even at the 35th digit.
        assert_eq!(
            parts("12345678901234567890123456789012345"),
            (false, 1_234_567_890_123_456_789_012_345_678_901_234, 1)
        );
        assert_eq!(
            parts("12345678901234567890123456789012355"),
            (false, 1_234_567_890_123_456_789_012_345_678_901_236, 1)
        );
        assert_eq!(parts("1E-6177"), (false, 0, -6176));
        assert_eq!(parts("6E-6177"), (false, 1, -6176));
        assert_eq!(
            parts("1E6144"),
            (false, 1_000_000_000_000_000_000_000_000_000_000_000, 6111)
        );
        assert_eq!(
            Bid::decode(decimal128_from_str("1E6145").unwrap()).class,
            DecClass::Infinity
        );
        assert_eq!(
            Bid::decode(decimal128_from_str("-NaN").unwrap()).class,
            DecClass::NaN
        );
        assert!(decimal128_from_str("-1000000000000000L").is_err());
        assert!(decimal128_from_str("").is_err());
    }

    #[test]
    fn compare_semantics() {
        let d = |s: &str| Bid::decode(decimal128_from_str(s).unwrap());
        assert_eq!(compare(&d("1E2"), &d("100")), Some(Ordering::Equal));
        assert_eq!(compare(&d("-0"), &d("0E10")), Some(Ordering::Equal));
        assert_eq!(compare(&d("-1"), &d("0")), Some(Ordering::Less));
        assert_eq!(compare(&d("-1"), &d("-2")), Some(Ordering::Greater));
        assert_eq!(
            compare(&d("1E-6176"), &d("9999999999999999999999999999999999E6111")),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(
                &d("Infinity"),
                &d("9999999999999999999999999999999999E6111")
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(&d("NaN"), &d("NaN")), None);
        assert_eq!(
            compare(&d("31.41592653589E-2"), &d("3.141592653589E-1")),
            Some(Ordering::Equal)
        );
    }
}
