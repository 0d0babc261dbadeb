//! BSON value comparison in MongoDB's canonical order, and an
//! order-preserving byte encoding of values used for index keys.
//!
//! The encoding is written by hand because no maintained crate implements
//! MongoDB's `KeyString`; it is not byte-compatible with MongoDB's and does not
//! need to be (it never leaves the engine).
//!
//! Known limitation: `Decimal128` values are compared through their nearest
//! `f64` (bson 2.x offers no decimal arithmetic), so two decimals that differ
//! only beyond double precision compare equal, and a decimal equals a double
//! when both round to the same `f64`.

use std::cmp::Ordering;

use bson::{Bson, Document};

/// MongoDB's canonical type rank (`canonicalizeBSONType`), shifted to `u8`.
/// Values of different ranks never compare equal and order by rank.
pub fn canonical_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 1,
        Bson::Undefined => 2,
        Bson::Null => 6,
        Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_) => 11,
        Bson::String(_) | Bson::Symbol(_) => 16,
        Bson::Document(_) => 21,
        Bson::Array(_) => 26,
        Bson::Binary(_) => 31,
        Bson::ObjectId(_) => 36,
        Bson::Boolean(_) => 41,
        Bson::DateTime(_) => 46,
        Bson::Timestamp(_) => 48,
        Bson::RegularExpression(_) => 51,
        Bson::DbPointer(_) => 56,
        Bson::JavaScriptCode(_) => 61,
        Bson::JavaScriptCodeWithScope(_) => 66,
        Bson::MaxKey => 128,
    }
}

/// A number normalised for comparison across int32/int64/double/decimal:
/// `None` is NaN (MongoDB sorts NaN below every other number and equal to
/// itself), otherwise the nearest double plus the exact integer residual that
/// separates int64 values sharing that double.
#[allow(clippy::option_option)] // outer: is it a number; inner: is it NaN
fn number_key(v: &Bson) -> Option<Option<(f64, i64)>> {
    let norm = |f: f64| if f == 0.0 { 0.0 } else { f };
    match v {
        Bson::Int32(i) => Some(Some((f64::from(*i), 0))),
        Bson::Int64(i) => {
            #[allow(clippy::cast_precision_loss)]
            let f = *i as f64;
            // `f` is integral and within ±2^63, so the cast is exact; the
            // residual is at most a few thousand.
            #[allow(clippy::cast_possible_truncation)]
            let r = (i128::from(*i) - f as i128) as i64;
            Some(Some((norm(f), r)))
        }
        Bson::Double(f) => Some(if f.is_nan() {
            None
        } else {
            Some((norm(*f), 0))
        }),
        Bson::Decimal128(d) => {
            let f: f64 = d.to_string().parse().unwrap_or(f64::NAN);
            Some(if f.is_nan() { None } else { Some((norm(f), 0)) })
        }
        _ => None,
    }
}

fn cmp_numbers(a: Option<(f64, i64)>, b: Option<(f64, i64)>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some((fa, ra)), Some((fb, rb))) => fa.total_cmp(&fb).then(ra.cmp(&rb)),
    }
}

fn str_of(v: &Bson) -> Option<&str> {
    match v {
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => Some(s),
        _ => None,
    }
}

fn cmp_docs<'a>(
    a: impl Iterator<Item = (&'a str, &'a Bson)>,
    b: impl Iterator<Item = (&'a str, &'a Bson)>,
    names: bool,
) -> Ordering {
    let mut a = a;
    let mut b = b;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((ka, va)), Some((kb, vb))) => {
                let o = canonical_rank(va).cmp(&canonical_rank(vb));
                let o = if names {
                    o.then_with(|| ka.as_bytes().cmp(kb.as_bytes()))
                } else {
                    o
                };
                let o = o.then_with(|| compare(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn doc_iter(d: &Document) -> impl Iterator<Item = (&str, &Bson)> {
    d.iter().map(|(k, v)| (k.as_str(), v))
}

fn arr_iter(a: &[Bson]) -> impl Iterator<Item = (&str, &Bson)> {
    a.iter().map(|v| ("", v))
}

/// Compare two values the way MongoDB's `woCompare` does (no collation):
/// canonical type rank first, then the value within the rank.
pub fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (canonical_rank(a), canonical_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    if let (Some(na), Some(nb)) = (number_key(a), number_key(b)) {
        return cmp_numbers(na, nb);
    }
    match (a, b) {
        (Bson::Document(x), Bson::Document(y)) => cmp_docs(doc_iter(x), doc_iter(y), true),
        (Bson::Array(x), Bson::Array(y)) => cmp_docs(arr_iter(x), arr_iter(y), false),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then(u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.timestamp_millis().cmp(&y.timestamp_millis()),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            x.time.cmp(&y.time).then(x.increment.cmp(&y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .as_bytes()
            .cmp(y.pattern.as_bytes())
            .then_with(|| x.options.as_bytes().cmp(y.options.as_bytes())),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x
            .code
            .as_bytes()
            .cmp(y.code.as_bytes())
            .then_with(|| cmp_docs(doc_iter(&x.scope), doc_iter(&y.scope), true)),
        (Bson::DbPointer(_), Bson::DbPointer(_)) => raw_bytes(a).cmp(&raw_bytes(b)),
        _ => match (str_of(a), str_of(b)) {
            (Some(x), Some(y)) => x.as_bytes().cmp(y.as_bytes()),
            // MinKey, MaxKey, Null, Undefined: one value per rank.
            _ => Ordering::Equal,
        },
    }
}

/// Whether `v` is a numeric NaN (double or decimal). MongoDB's comparison
/// operators treat NaN specially: it equals only NaN and is neither less nor
/// greater than anything.
pub fn is_nan(v: &Bson) -> bool {
    matches!(number_key(v), Some(None))
}

/// MongoDB equality: same canonical rank and `compare` equal.
pub fn equals(a: &Bson, b: &Bson) -> bool {
    compare(a, b) == Ordering::Equal
}

/// Raw BSON bytes of a value, for the types whose fields bson 2.x keeps
/// private (DBPointer). Falls back to empty bytes, which only weakens ordering
/// among DBPointers, a deprecated type.
fn raw_bytes(v: &Bson) -> Vec<u8> {
    let mut d = Document::new();
    d.insert("v", v.clone());
    bson::to_vec(&d).unwrap_or_default()
}

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    // 0x00 is escaped as 00 FF and the string ends with 00 00, so the encoding
    // is prefix-free and preserves byte order.
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn push_f64(out: &mut Vec<u8>, f: f64) {
    let bits = f.to_bits();
    let bits = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    out.extend_from_slice(&bits.to_be_bytes());
}

fn push_i64(out: &mut Vec<u8>, i: i64) {
    #[allow(clippy::cast_sign_loss)]
    let u = (i as u64) ^ (1 << 63);
    out.extend_from_slice(&u.to_be_bytes());
}

/// Append the order-preserving key encoding of `v` to `out`.
///
/// For any `a`, `b`: `encode_key(a) == encode_key(b)` iff `equals(a, b)`, and
/// byte order of encodings equals `compare` order (up to the decimal caveat in
/// the module docs). Every encoding starts with the value's canonical rank
/// byte, so one type bracket is a contiguous key range.
pub fn encode_key_into(v: &Bson, out: &mut Vec<u8>) {
    out.push(canonical_rank(v));
    encode_body(v, out);
}

/// The order-preserving key encoding of `v`; see [`encode_key_into`].
pub fn encode_key(v: &Bson) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    encode_key_into(v, &mut out);
    out
}

fn encode_body(v: &Bson, out: &mut Vec<u8>) {
    if let Some(n) = number_key(v) {
        match n {
            None => out.push(0),
            Some((f, r)) => {
                out.push(1);
                push_f64(out, f);
                push_i64(out, r);
            }
        }
        return;
    }
    match v {
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => {
            push_escaped(out, s.as_bytes());
        }
        Bson::Document(d) => encode_elements(doc_iter(d), true, out),
        Bson::Array(a) => encode_elements(arr_iter(a), false, out),
        Bson::Binary(b) => {
            #[allow(clippy::cast_possible_truncation)]
            out.extend_from_slice(&(b.bytes.len() as u32).to_be_bytes());
            out.push(u8::from(b.subtype));
            out.extend_from_slice(&b.bytes);
        }
        Bson::ObjectId(o) => out.extend_from_slice(&o.bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => push_i64(out, d.timestamp_millis()),
        Bson::Timestamp(t) => {
            out.extend_from_slice(&t.time.to_be_bytes());
            out.extend_from_slice(&t.increment.to_be_bytes());
        }
        Bson::RegularExpression(r) => {
            push_escaped(out, r.pattern.as_bytes());
            push_escaped(out, r.options.as_bytes());
        }
        Bson::JavaScriptCodeWithScope(c) => {
            push_escaped(out, c.code.as_bytes());
            encode_elements(doc_iter(&c.scope), true, out);
        }
        Bson::DbPointer(_) => push_escaped(out, &raw_bytes(v)),
        _ => {}
    }
}

/// The key range `[lo, hi)` holding exactly the encodings of the strings
/// (and symbols, which share the string bracket and encoding) that start
/// with `prefix`, byte for byte.
///
/// Why this is exact: a string's key is its rank byte, its bytes with each
/// `00` escaped as `00 FF`, then `00 00`. Escaping is per byte, so the
/// escaped prefix is a byte prefix of the escaped string exactly when the
/// string starts with `prefix` (an escaped `00` is always followed by `FF`,
/// so the escaped prefix never ends inside the terminator or inside an
/// escape). Keys with a given byte prefix form the range from that prefix
/// to its successor (trailing `FF`s dropped, last byte incremented); the
/// rank byte (16) is never `FF`, so the successor exists.
pub fn string_prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let mut lo = vec![canonical_rank(&Bson::String(String::new()))];
    for &b in prefix.as_bytes() {
        lo.push(b);
        if b == 0 {
            lo.push(0xFF);
        }
    }
    let mut hi = lo.clone();
    while hi.last() == Some(&0xFF) {
        hi.pop();
    }
    if let Some(last) = hi.last_mut() {
        *last += 1;
    }
    (lo, hi)
}

fn encode_elements<'a>(
    it: impl Iterator<Item = (&'a str, &'a Bson)>,
    names: bool,
    out: &mut Vec<u8>,
) {
    for (k, v) in it {
        // 0x01 = "another element follows"; 0x00 ends the list, so a shorter
        // list sorts first, as in `compare`.
        out.push(1);
        out.push(canonical_rank(v));
        if names {
            push_escaped(out, k.as_bytes());
        }
        encode_body(v, out);
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{Binary, Decimal128, doc, oid::ObjectId, spec::BinarySubtype};

    fn samples() -> Vec<Bson> {
        vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Double(f64::NAN),
            Bson::Double(f64::NEG_INFINITY),
            Bson::Int64(i64::MIN),
            Bson::Int32(-5),
            Bson::Double(-0.0),
            Bson::Int32(0),
            Bson::Double(0.5),
            Bson::Int64(1),
            Bson::Decimal128("2.5".parse::<Decimal128>().unwrap()),
            Bson::Double(9_007_199_254_740_992.0),
            Bson::Int64(9_007_199_254_740_993),
            Bson::Int64(i64::MAX),
            Bson::Double(f64::INFINITY),
            Bson::String(String::new()),
            Bson::String("a".into()),
            Bson::String("a\0".into()),
            Bson::String("ab".into()),
            Bson::Document(doc! {}),
            Bson::Document(doc! {"a": 1}),
            Bson::Document(doc! {"a": 1, "b": 1}),
            Bson::Document(doc! {"b": 0}),
            Bson::Document(doc! {"a": "x"}),
            Bson::Array(vec![]),
            Bson::Array(vec![Bson::Int32(1)]),
            Bson::Array(vec![Bson::Int32(1), Bson::Int32(2)]),
            Bson::Array(vec![Bson::Int32(2)]),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![9],
            }),
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1, 2],
            }),
            Bson::ObjectId(ObjectId::from_bytes([0; 12])),
            Bson::ObjectId(ObjectId::from_bytes([1; 12])),
            Bson::Boolean(false),
            Bson::Boolean(true),
            Bson::DateTime(bson::DateTime::from_millis(-1)),
            Bson::DateTime(bson::DateTime::from_millis(5)),
            Bson::Timestamp(bson::Timestamp {
                time: 1,
                increment: 9,
            }),
            Bson::Timestamp(bson::Timestamp {
                time: 2,
                increment: 0,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a".into(),
                options: "i".into(),
            }),
            Bson::MaxKey,
        ]
    }

    #[test]
    fn encoding_order_matches_compare() {
        let s = samples();
        for a in &s {
            for b in &s {
                let c = compare(a, b);
                let e = encode_key(a).cmp(&encode_key(b));
                assert_eq!(c, e, "{a:?} vs {b:?}");
            }
        }
        // The list above is written in ascending order (with -0.0 == 0).
        for w in s.windows(2) {
            assert_ne!(
                compare(&w[0], &w[1]),
                Ordering::Greater,
                "{:?} {:?}",
                w[0],
                w[1]
            );
        }
    }

    proptest::proptest! {
        /// `string_prefix_range` holds exactly the strings starting with
        /// the prefix, NUL bytes and multi-byte characters included.
        #[test]
        fn prefix_range_is_exact(
            s in "[a\\x00\\x{FF}\\x{10FFFF}b]{0,6}",
            p in "[a\\x00\\x{FF}\\x{10FFFF}b]{0,4}",
        ) {
            let (lo, hi) = string_prefix_range(&p);
            for v in [Bson::String(s.clone()), Bson::Symbol(s.clone())] {
                let k = encode_key(&v);
                proptest::prop_assert_eq!(
                    lo <= k && k < hi,
                    s.starts_with(p.as_str()),
                    "{:?} / {:?}", s, p
                );
            }
        }
    }

    #[test]
    fn prefix_range_excludes_other_types() {
        let (lo, hi) = string_prefix_range("");
        for v in samples() {
            let k = encode_key(&v);
            assert_eq!(lo <= k && k < hi, matches!(v, Bson::String(_)), "{v:?}");
        }
        let (lo, hi) = string_prefix_range("a");
        assert!(lo <= encode_key(&Bson::String("a\0".into())));
        assert!(encode_key(&Bson::String("b".into())) >= hi);
    }

    #[test]
    fn numbers_compare_across_types() {
        assert!(equals(&Bson::Int32(1), &Bson::Double(1.0)));
        assert!(equals(
            &Bson::Int64(1),
            &Bson::Decimal128("1.0".parse().unwrap())
        ));
        assert!(!equals(
            &Bson::Int64(9_007_199_254_740_993),
            &Bson::Double(9_007_199_254_740_992.0)
        ));
        assert!(equals(&Bson::Double(f64::NAN), &Bson::Double(f64::NAN)));
        assert!(!equals(&Bson::Int32(1), &Bson::String("1".into())));
        assert_eq!(encode_key(&Bson::Int32(7)), encode_key(&Bson::Int64(7)));
    }
}
