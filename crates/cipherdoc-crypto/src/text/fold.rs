//! Case and diacritic folding of text-search strings, as libmongocrypt's
//! `unicode_fold` (a translation of the server's
//! `String::caseFoldAndStripDiacritics`) does it, one code point at a time:
//!
//! 1. case folding (when the field is case-insensitive): ASCII `A`–`Z` to
//!    lower case; any other code point through the simple case folding of
//!    Unicode (CaseFolding.txt statuses C and S: one code point to one, so
//!    `ß` stays `ß` and `İ` stays `İ`);
//! 2. diacritic folding (when diacritic-insensitive), applied to the result
//!    of step 1: a code point with the Diacritic property (`^`, `` ` ``, the
//!    combining marks, …) is dropped; a precomposed letter becomes its base
//!    letter when that is a single code point (`é` → `e`, `ǘ` → `u`, the CJK
//!    compatibility ideographs → their unified ideographs).
//!
//! There is no normalisation: `e` followed by U+0301 folds to `e` (the mark
//! is dropped), `é` (U+00E9) folds to `e` through its decomposition.
//!
//! The tables (`fold_tables.rs`) are generated from the Unicode Character
//! Database by `tools/gen-fold-tables.mjs`; see its header for the version.

use zeroize::Zeroizing;

use super::fold_tables::{CASE_FOLD, DIACRITIC_FOLD};
use super::{CaseSensitivity, DiacriticSensitivity};

pub use super::fold_tables::UNICODE_VERSION;

fn lookup(table: &[(u32, u32)], cp: u32) -> Option<u32> {
    table
        .binary_search_by_key(&cp, |&(k, _)| k)
        .ok()
        .and_then(|i| table.get(i))
        .map(|&(_, v)| v)
}

/// The simple case folding of one code point (identity when it has none).
pub fn fold_case(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    lookup(&CASE_FOLD, u32::from(c))
        .and_then(char::from_u32)
        .unwrap_or(c)
}

/// The diacritic folding of one code point: `None` when it is a diacritic
/// (dropped), its base letter when it has one, itself otherwise.
pub fn fold_diacritic(c: char) -> Option<char> {
    match lookup(&DIACRITIC_FOLD, u32::from(c)) {
        Some(0) => None,
        Some(v) => Some(char::from_u32(v).unwrap_or(c)),
        None => Some(c),
    }
}

/// Whether folding with these settings changes anything at all.
pub fn folds(case: CaseSensitivity, diacritics: DiacriticSensitivity) -> bool {
    case == CaseSensitivity::Insensitive || diacritics == DiacriticSensitivity::Insensitive
}

/// Folds `s` as a field with these settings does. The result is a plaintext
/// (or derived from one), so it is zeroized when dropped.
pub fn fold(s: &str, case: CaseSensitivity, diacritics: DiacriticSensitivity) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(s.len()));
    let lower = case == CaseSensitivity::Insensitive;
    let strip = diacritics == DiacriticSensitivity::Insensitive;
    for c in s.chars() {
        let c = if lower { fold_case(c) } else { c };
        if strip {
            if let Some(c) = fold_diacritic(c) {
                out.push(c);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: CaseSensitivity = CaseSensitivity::Insensitive;
    const CS: CaseSensitivity = CaseSensitivity::Sensitive;
    const DI: DiacriticSensitivity = DiacriticSensitivity::Insensitive;
    const DS: DiacriticSensitivity = DiacriticSensitivity::Sensitive;

    #[test]
    fn tables_are_sorted_and_unique() {
        for t in [&CASE_FOLD[..], &DIACRITIC_FOLD[..]] {
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn examples() {
        assert_eq!(&*fold("ÀÉÎõü", CI, DS), "àéîõü");
        assert_eq!(&*fold("ÀÉÎõü", CS, DI), "AEIou");
        assert_eq!(&*fold("ÀÉÎõü", CI, DI), "aeiou");
        assert_eq!(&*fold("a^b`c", CS, DI), "abc");
        assert_eq!(&*fold("a^b`c", CI, DS), "a^b`c");
        // Combining marks are dropped, not composed.
        assert_eq!(&*fold("e\u{301}", CS, DI), "e");
        // Simple folding only: ß stays, the Kelvin sign becomes ASCII k.
        assert_eq!(&*fold("Straße \u{212A}", CI, DS), "straße k");
        // Greek and Cyrillic.
        assert_eq!(&*fold("ΆΣΩ Ёж", CI, DI), "ασω еж");
        assert_eq!(&*fold("", CI, DI), "");
    }
}
