//! StrEncode (libmongocrypt `mc_text_search_str_encode`): from a string and
//! its text index, the exact (folded) string and the prefix, suffix and
//! substring sets whose tokens an insert payload carries, each padded to
//! `msize` entries so that their number depends only on what the ciphertext
//! length already shows.
//!
//! Padding (libmongocrypt ≥ 1.19): the client value is encrypted as a BSON
//! string (the bytes plus 5) under CBC with PKCS#7, so its ciphertext is
//! `16·⌊(len + 5 + 16) / 16⌋` bytes; every string of up to `padded_len =
//! that − 5` bytes gives the same length, and the sets are padded as if the
//! value were `padded_len` code points long. The padding entry is the folded
//! string followed by the byte 0xFF: never valid UTF-8, so no query matches
//! it, and repeated as often as needed.
//!
//! Order, which the insert payload keeps: prefixes by growing length,
//! suffixes by growing length, then the padding entry; substrings in the
//! iteration order of libmongocrypt's hash set (4096 FNV-1a buckets, each in
//! insertion order, insertion by start then length), duplicates dropped, then
//! the padding entry.

use std::collections::HashSet;

use zeroize::Zeroizing;

use super::fold::{fold, folds};
use super::{TextError, TextIndex, TextIndexKind, TextQuery};

/// The largest value StrEncode accepts, in bytes (16 MiB).
pub const MAX_ENCODE_BYTES: u32 = 16 * 1024 * 1024;
/// Bytes added to the string before encryption: a BSON string's length
/// prefix and NUL.
const OVERHEAD_BYTES: u64 = 5;
/// `msize` travels as 3 bytes.
const MAX_MSIZE: u64 = 0x00FF_FFFF;
/// Buckets of libmongocrypt's substring hash set; its iteration order is
/// the payload's order.
const HASHSET_SIZE: u32 = 4096;
/// The byte that makes a padding entry invalid UTF-8.
const BAD_CHAR: u8 = 0xFF;

/// One entry of a set: a byte range of the base string and how many times
/// it appears (more than once only for the padding entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    start: u32,
    end: u32,
    count: u32,
}

/// One of the prefix, suffix or substring sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringSet {
    entries: Vec<Entry>,
    msize: u32,
}

impl StringSet {
    /// The number of token sets this set makes (entries with repetitions).
    pub fn msize(&self) -> u32 {
        self.msize
    }
    /// How many distinct entries (each with its own token set and IV).
    pub fn distinct_len(&self) -> usize {
        self.entries.len()
    }
}

/// StrEncode's result. The strings are the folded plaintext, so they are
/// zeroized when dropped.
#[derive(Clone)]
pub struct EncodedStrings {
    /// The folded string followed by 0xFF.
    base: Zeroizing<Vec<u8>>,
    prefix: Option<StringSet>,
    suffix: Option<StringSet>,
    substring: Option<StringSet>,
    msize: u32,
}

impl std::fmt::Debug for EncodedStrings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedStrings")
            .field("msize", &self.msize)
            .finish_non_exhaustive()
    }
}

impl EncodedStrings {
    /// The exact (folded) string's bytes.
    pub fn exact(&self) -> &[u8] {
        self.base.get(..self.base.len() - 1).unwrap_or(&[])
    }

    /// The total number of tags: 1 for the exact string plus each set's
    /// `msize` (the exact token set's `msize` in its encrypted tokens).
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// A set, if the index has that kind and the value is long enough for
    /// it (a set is absent when even `padded_len` is below `lb`).
    pub fn set(&self, kind: TextIndexKind) -> Option<&StringSet> {
        match kind {
            TextIndexKind::Prefix => self.prefix.as_ref(),
            TextIndexKind::Suffix => self.suffix.as_ref(),
            TextIndexKind::Substring => self.substring.as_ref(),
        }
    }

    /// The distinct entries of a set with their repetition counts, in
    /// payload order (empty when the set is absent).
    pub fn entries(&self, kind: TextIndexKind) -> impl Iterator<Item = (&[u8], u32)> + '_ {
        self.set(kind)
            .map(|s| s.entries.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let bytes = self
                    .base
                    .get(e.start as usize..e.end as usize)
                    .unwrap_or(&[]);
                (bytes, e.count)
            })
    }
}

/// `16·⌊(len + 5 + 16)/16⌋ − 5`: the longest string whose ciphertext is as
/// long as this one's (libmongocrypt ≥ 1.19, which counts PKCS#7's extra
/// block for aligned lengths).
fn padded_len(unfolded_bytes: u32) -> u64 {
    16 * ((u64::from(unfolded_bytes) + OVERHEAD_BYTES + 16) / 16) - OVERHEAD_BYTES
}

fn checked_value(value: &str) -> Result<u32, TextError> {
    if value.as_bytes().contains(&0) {
        return Err(TextError::ContainsNul);
    }
    u32::try_from(value.len())
        .ok()
        .filter(|n| *n <= MAX_ENCODE_BYTES)
        .ok_or(TextError::TooLarge {
            max_bytes: MAX_ENCODE_BYTES,
        })
}

fn to_u32(n: u64) -> Result<u32, TextError> {
    u32::try_from(n)
        .ok()
        .filter(|n| u64::from(*n) <= MAX_MSIZE)
        .ok_or(TextError::TooManyTags)
}

/// `lb..=ub` substrings of a string of `len` code points: the sum over the
/// lengths `j` of `len − j + 1` (libmongocrypt's closed form).
fn substring_count(len: u64, lb: u64, ub: u64) -> u64 {
    if lb > len {
        return 0;
    }
    let largest = len.min(ub);
    let largest_count = len - largest + 1;
    let smallest_count = len - lb + 1;
    (largest_count + smallest_count) * (smallest_count - largest_count + 1) / 2
}

/// FNV-1a, 32 bits: libmongocrypt's substring hash set's hash.
fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(2_166_136_261_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    })
}

struct Base {
    bytes: Zeroizing<Vec<u8>>,
    /// Byte offset of each code point of the folded string, then of 0xFF.
    offsets: Vec<u32>,
}

impl Base {
    fn new(folded: &str) -> Self {
        let mut bytes = Zeroizing::new(Vec::with_capacity(folded.len() + 1));
        bytes.extend_from_slice(folded.as_bytes());
        bytes.push(BAD_CHAR);
        // Lengths are at most 16 MiB, so offsets fit in u32.
        let mut offsets: Vec<u32> = folded
            .char_indices()
            .map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        offsets.push(u32::try_from(folded.len()).unwrap_or(u32::MAX));
        Self { bytes, offsets }
    }
    /// Code points of the folded string (without 0xFF).
    fn len(&self) -> u32 {
        u32::try_from(self.offsets.len() - 1).unwrap_or(u32::MAX)
    }
    fn at(&self, cp: u32) -> u32 {
        self.offsets.get(cp as usize).copied().unwrap_or(0)
    }
    fn padding(&self, count: u32) -> Entry {
        Entry {
            start: 0,
            end: u32::try_from(self.bytes.len()).unwrap_or(u32::MAX),
            count,
        }
    }
}

fn affix_set(
    base: &Base,
    unfolded_bytes: u32,
    lb: u32,
    ub: u32,
    kind: TextIndexKind,
) -> Result<Option<StringSet>, TextError> {
    let padded = padded_len(unfolded_bytes);
    if padded < u64::from(lb) {
        return Ok(None);
    }
    let msize = to_u32(padded.min(u64::from(ub)) - u64::from(lb) + 1)?;
    let len = base.len();
    let real_max = len.min(ub);
    let mut entries = Vec::with_capacity(real_max.saturating_sub(lb) as usize + 2);
    for i in lb..=real_max {
        let (start, end) = match kind {
            TextIndexKind::Prefix => (0, i),
            _ => (len - i, len),
        };
        entries.push(Entry {
            start: base.at(start),
            end: base.at(end),
            count: 1,
        });
    }
    let real = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    // Folding never adds code points, and a string has no more code points
    // than bytes, so `real <= msize`.
    let pads = msize.checked_sub(real).ok_or(TextError::TooManyTags)?;
    if pads > 0 {
        entries.push(base.padding(pads));
    }
    Ok(Some(StringSet { entries, msize }))
}

fn substring_set(
    base: &Base,
    unfolded_bytes: u32,
    index: super::SubstringIndex,
) -> Result<Option<StringSet>, TextError> {
    let (lb, ub, mlen) = (
        index.min_query_length(),
        index.max_query_length(),
        index.max_length(),
    );
    let padded = padded_len(unfolded_bytes);
    if padded < u64::from(lb) {
        return Ok(None);
    }
    let padded = padded.min(u64::from(mlen));
    let msize = to_u32(substring_count(padded, u64::from(lb), u64::from(ub)))?;
    let len = base.len();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut found: Vec<(u32, Entry)> = Vec::new();
    if len >= lb {
        for i in 0..=(len - lb) {
            for j in (i + lb)..=len.min(i.saturating_add(ub)) {
                let (start, end) = (base.at(i), base.at(j));
                let bytes = base.bytes.get(start as usize..end as usize).unwrap_or(&[]);
                if seen.insert(bytes) {
                    found.push((
                        fnv1a(bytes) % HASHSET_SIZE,
                        Entry {
                            start,
                            end,
                            count: 1,
                        },
                    ));
                }
            }
        }
    }
    // The hash set iterates bucket by bucket, each bucket in insertion
    // order: a stable sort by bucket gives the same sequence.
    found.sort_by_key(|(bucket, _)| *bucket);
    let real = u32::try_from(found.len()).unwrap_or(u32::MAX);
    let pads = msize.checked_sub(real).ok_or(TextError::TooManyTags)?;
    let mut entries: Vec<Entry> = found.into_iter().map(|(_, e)| e).collect();
    if pads > 0 {
        entries.push(base.padding(pads));
    }
    Ok(Some(StringSet { entries, msize }))
}

/// StrEncode of `value` for `index` (an insert).
pub fn str_encode(value: &str, index: &TextIndex) -> Result<EncodedStrings, TextError> {
    let bytes = checked_value(value)?;
    let folded;
    let base = if folds(index.case, index.diacritics) {
        folded = fold(value, index.case, index.diacritics);
        Base::new(&folded)
    } else {
        Base::new(value)
    };
    let mut msize: u64 = 1;
    let suffix = match index.suffix {
        Some(s) => affix_set(
            &base,
            bytes,
            s.min_query_length(),
            s.max_query_length(),
            TextIndexKind::Suffix,
        )?,
        None => None,
    };
    let prefix = match index.prefix {
        Some(p) => affix_set(
            &base,
            bytes,
            p.min_query_length(),
            p.max_query_length(),
            TextIndexKind::Prefix,
        )?,
        None => None,
    };
    let substring = match index.substring {
        Some(s) => {
            let code_points = value.chars().count();
            if code_points > s.max_length() as usize {
                return Err(TextError::LongerThanMaxLength {
                    max_length: s.max_length(),
                });
            }
            substring_set(&base, bytes, s)?
        }
        None => None,
    };
    for s in [&suffix, &prefix, &substring].into_iter().flatten() {
        msize += u64::from(s.msize);
    }
    Ok(EncodedStrings {
        base: base.bytes,
        prefix,
        suffix,
        substring,
        msize: to_u32(msize)?,
    })
}

/// The folded query string of a find (libmongocrypt `mc_text_search_str_query`),
/// after checking it against the query kind's lengths. `index` names at most
/// one kind (see [`TextIndex::query`]).
pub fn str_query(
    value: &str,
    index: &TextIndex,
) -> Result<(Zeroizing<String>, TextQuery), TextError> {
    checked_value(value)?;
    let query = index.query()?;
    let folded = if folds(index.case, index.diacritics) {
        fold(value, index.case, index.diacritics)
    } else {
        Zeroizing::new(value.to_owned())
    };
    if let Some(kind) = query.index_kind() {
        let lengths = index
            .query_lengths(kind)
            .ok_or(TextError::KindNotIndexed { kind })?;
        let n = folded.chars().count();
        if n == 0 {
            return Err(TextError::EmptyQuery { kind });
        }
        if n > lengths.max_query_length() as usize {
            return Err(TextError::QueryTooLong {
                kind,
                max: lengths.max_query_length(),
            });
        }
        if n < lengths.min_query_length() as usize {
            return Err(TextError::QueryTooShort {
                kind,
                min: lengths.min_query_length(),
            });
        }
    }
    Ok((folded, query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{AffixIndex, CaseSensitivity, DiacriticSensitivity, SubstringIndex};

    fn index(
        prefix: Option<(u32, u32)>,
        suffix: Option<(u32, u32)>,
        sub: Option<(u32, u32, u32)>,
    ) -> TextIndex {
        TextIndex {
            case: CaseSensitivity::Sensitive,
            diacritics: DiacriticSensitivity::Sensitive,
            prefix: prefix.map(|(l, u)| AffixIndex::new(TextIndexKind::Prefix, l, u).unwrap()),
            suffix: suffix.map(|(l, u)| AffixIndex::new(TextIndexKind::Suffix, l, u).unwrap()),
            substring: sub.map(|(m, l, u)| SubstringIndex::new(m, l, u).unwrap()),
        }
    }

    fn strings(e: &EncodedStrings, k: TextIndexKind) -> Vec<(Vec<u8>, u32)> {
        e.entries(k).map(|(b, c)| (b.to_vec(), c)).collect()
    }

    #[test]
    fn padding_rule() {
        // 11 bytes pad to 11, 12 bytes to 27 (PKCS#7 adds a block at 16).
        assert_eq!(padded_len(0), 11);
        assert_eq!(padded_len(10), 11);
        assert_eq!(padded_len(11), 27);
        assert_eq!(padded_len(27), 43);
    }

    #[test]
    fn prefix_and_suffix_sets() {
        let e = str_encode("abc", &index(Some((1, 100)), Some((2, 2)), None)).unwrap();
        assert_eq!(e.exact(), b"abc");
        assert_eq!(
            strings(&e, TextIndexKind::Prefix),
            vec![
                (b"a".to_vec(), 1),
                (b"ab".to_vec(), 1),
                (b"abc".to_vec(), 1),
                (b"abc\xff".to_vec(), 8)
            ]
        );
        assert_eq!(
            strings(&e, TextIndexKind::Suffix),
            vec![(b"bc".to_vec(), 1)]
        );
        assert_eq!(e.msize(), 1 + 11 + 1);
    }

    #[test]
    fn substring_set_dedups_and_pads() {
        let e = str_encode("aaa", &index(None, None, Some((10, 1, 2)))).unwrap();
        let s = strings(&e, TextIndexKind::Substring);
        // Distinct: "a", "aa"; padded as a 10-code-point string: 10 + 9 = 19.
        assert_eq!(s.len(), 3);
        assert_eq!(s.last().unwrap(), &(b"aaa\xff".to_vec(), 17));
        assert_eq!(e.set(TextIndexKind::Substring).unwrap().msize(), 19);
    }

    #[test]
    fn query_checks() {
        let ix = index(Some((2, 3)), None, None);
        let q = ix.for_query(TextQuery::Prefix).unwrap();
        assert_eq!(&*str_query("ab", &q).unwrap().0, "ab");
        assert_eq!(
            str_query("", &q).unwrap_err(),
            TextError::EmptyQuery {
                kind: TextIndexKind::Prefix
            }
        );
        assert!(matches!(
            str_query("a", &q),
            Err(TextError::QueryTooShort { min: 2, .. })
        ));
        assert!(matches!(
            str_query("abcd", &q),
            Err(TextError::QueryTooLong { max: 3, .. })
        ));
        assert_eq!(str_query("a\0", &q).unwrap_err(), TextError::ContainsNul);
    }
}
