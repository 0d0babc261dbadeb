//! Properties of text search: StrEncode's sets (sizes, order, padding), the
//! agreement of find and insert tokens, and the server's arithmetic on them
//! (positions, stored value 17, query tags, collection-scan match).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::too_many_lines,
    clippy::pedantic
)]

mod common;

use std::collections::{BTreeSet, HashMap};

use cipherdoc_crypto::client::UserKey;
use cipherdoc_crypto::client_text::{encrypt_text_find, encrypt_text_insert};
use cipherdoc_crypto::payload::{FindTextPayload, InsertUpdatePayloadV2, TextFindTokenSets};
use cipherdoc_crypto::server::decrypt_ecoc_value;
use cipherdoc_crypto::server::text::{
    build_indexed_text_value, text_insert_token_sets, text_positions, text_query_tags,
    text_value_matches,
};
use cipherdoc_crypto::text::fold::fold;
use cipherdoc_crypto::text::{
    AffixIndex, CaseSensitivity, DiacriticSensitivity, SubstringIndex, TextIndex, TextIndexKind,
    TextQuery, str_encode,
};
use cipherdoc_crypto::tokens::IndexKeyTokens;
use cipherdoc_crypto::{Error, OsRandom};
use common::*;
use proptest::prelude::*;

fn padded_len(bytes: usize) -> usize {
    16 * ((bytes + 5 + 16) / 16) - 5
}

/// Strings mixing ASCII, accented Latin, Greek, Cyrillic, combining marks
/// and 4-byte code points.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('a', 'e'),
            proptest::char::range('A', 'E'),
            Just('é'),
            Just('É'),
            Just('\u{301}'),
            Just('Σ'),
            Just('ς'),
            Just('Ж'),
            Just('^'),
            Just('\u{1F600}'),
            Just('ẞ'),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn folding() -> impl Strategy<Value = (CaseSensitivity, DiacriticSensitivity)> {
    (any::<bool>(), any::<bool>()).prop_map(|(c, d)| {
        (
            if c {
                CaseSensitivity::Sensitive
            } else {
                CaseSensitivity::Insensitive
            },
            if d {
                DiacriticSensitivity::Sensitive
            } else {
                DiacriticSensitivity::Insensitive
            },
        )
    })
}

fn lengths() -> impl Strategy<Value = (u32, u32)> {
    (1u32..5, 0u32..8).prop_map(|(lb, extra)| (lb, lb + extra))
}

fn affix_index(kind: TextIndexKind, (lb, ub): (u32, u32)) -> AffixIndex {
    AffixIndex::new(kind, lb, ub).unwrap()
}

fn tokens() -> IndexKeyTokens {
    IndexKeyTokens::new(key_id(KEY123), &data_key(KEY123))
}

fn insert(value: &str, index: &TextIndex, cm: u64) -> InsertUpdatePayloadV2 {
    let k = data_key(KEYABC);
    let user = UserKey {
        id: key_id(KEYABC),
        key: &k,
    };
    encrypt_text_insert(value, index, &tokens(), user, cm, &mut OsRandom).unwrap()
}

/// Code-point slices of `s`.
fn cp_slice(s: &str, from: usize, to: usize) -> String {
    s.chars().skip(from).take(to - from).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn affix_sets_are_the_bounded_prefixes_and_suffixes_then_padding(
        v in text(), (case, diac) in folding(), pl in lengths(), sl in lengths(),
    ) {
        let index = TextIndex {
            case, diacritics: diac,
            prefix: Some(affix_index(TextIndexKind::Prefix, pl)),
            suffix: Some(affix_index(TextIndexKind::Suffix, sl)),
            substring: None,
        };
        let e = str_encode(&v, &index).unwrap();
        let folded = fold(&v, case, diac);
        prop_assert_eq!(e.exact(), folded.as_bytes());
        let n = folded.chars().count();
        let padded = padded_len(v.len());
        let mut total = 1u64;
        for (kind, (lb, ub)) in [(TextIndexKind::Prefix, pl), (TextIndexKind::Suffix, sl)] {
            let (lb, ub) = (lb as usize, ub as usize);
            let Some(set) = e.set(kind) else {
                prop_assert!(padded < lb);
                continue;
            };
            let msize = padded.min(ub) - lb + 1;
            prop_assert_eq!(set.msize() as usize, msize);
            total += msize as u64;
            let entries: Vec<(Vec<u8>, u32)> = e.entries(kind).map(|(b, c)| (b.to_vec(), c)).collect();
            let real: Vec<Vec<u8>> = (lb..=n.min(ub))
                .map(|len| match kind {
                    TextIndexKind::Prefix => cp_slice(&folded, 0, len),
                    _ => cp_slice(&folded, n - len, n),
                }.into_bytes())
                .collect();
            prop_assert_eq!(entries.iter().map(|(_, c)| *c as usize).sum::<usize>(), msize);
            for (i, r) in real.iter().enumerate() {
                prop_assert_eq!(&entries[i], &(r.clone(), 1));
            }
            let mut pad = folded.as_bytes().to_vec();
            pad.push(0xFF);
            if real.len() < msize {
                prop_assert_eq!(entries.len(), real.len() + 1);
                prop_assert_eq!(entries.last().unwrap(), &(pad, (msize - real.len()) as u32));
            } else {
                prop_assert_eq!(entries.len(), real.len());
            }
        }
        prop_assert_eq!(u64::from(e.msize()), total);
    }

    #[test]
    fn substring_sets_are_the_distinct_bounded_substrings_in_hash_order(
        v in text(), (case, diac) in folding(), (lb, ub) in lengths(), slack in 0u32..40,
    ) {
        let mlen = (v.chars().count() as u32).max(ub) + slack;
        let index = TextIndex {
            case, diacritics: diac, prefix: None, suffix: None,
            substring: Some(SubstringIndex::new(mlen, lb, ub).unwrap()),
        };
        let e = str_encode(&v, &index).unwrap();
        let folded = fold(&v, case, diac);
        let n = folded.chars().count();
        let expect: BTreeSet<Vec<u8>> = (0..n)
            .flat_map(|i| (lb as usize..=ub as usize).filter(move |l| i + l <= n).map(move |l| (i, l)))
            .map(|(i, l)| cp_slice(&folded, i, i + l).into_bytes())
            .collect();
        let padded = padded_len(v.len());
        let Some(set) = e.set(TextIndexKind::Substring) else {
            prop_assert!(padded < lb as usize);
            return Ok(());
        };
        let entries: Vec<(Vec<u8>, u32)> = e.entries(TextIndexKind::Substring).map(|(b, c)| (b.to_vec(), c)).collect();
        let mut pad = folded.as_bytes().to_vec();
        pad.push(0xFF);
        let real: Vec<&Vec<u8>> = entries.iter().filter(|(b, _)| *b != pad).map(|(b, _)| b).collect();
        prop_assert_eq!(real.iter().map(|b| (*b).clone()).collect::<BTreeSet<_>>(), expect.clone());
        prop_assert_eq!(real.len(), expect.len(), "no duplicates");
        // libmongocrypt's hash-set order: FNV-1a buckets, non-decreasing.
        let bucket = |b: &[u8]| b.iter().fold(2_166_136_261u32, |h, &x| (h ^ u32::from(x)).wrapping_mul(16_777_619)) % 4096;
        prop_assert!(real.windows(2).all(|w| bucket(w[0]) <= bucket(w[1])));
        // msize: substrings of a `min(padded, mlen)`-code-point string.
        let p = padded.min(mlen as usize);
        let msize: usize = (lb as usize..=(ub as usize).min(p)).map(|l| p - l + 1).sum();
        prop_assert_eq!(set.msize() as usize, msize);
        prop_assert_eq!(entries.iter().map(|(_, c)| *c as usize).sum::<usize>(), msize);
        // Only the padding entry repeats, and it comes last.
        for (i, (b, c)) in entries.iter().enumerate() {
            if *c > 1 || *b == pad {
                prop_assert_eq!(i, entries.len() - 1);
            }
        }
    }

    #[test]
    fn msize_depends_only_on_the_byte_length(v in text(), (lb, ub) in lengths()) {
        let index = TextIndex {
            case: CaseSensitivity::Insensitive, diacritics: DiacriticSensitivity::Insensitive,
            prefix: Some(affix_index(TextIndexKind::Prefix, (lb, ub))),
            suffix: None,
            substring: Some(SubstringIndex::new(1000, lb, ub).unwrap()),
        };
        let ascii = "z".repeat(v.len());
        let (a, b) = (str_encode(&v, &index).unwrap(), str_encode(&ascii, &index).unwrap());
        prop_assert_eq!(a.msize(), b.msize());
    }

    /// A query for a prefix/suffix/substring of a stored value finds it, by
    /// tag (after the server's positions) and by collection scan; a query
    /// for something the value lacks finds neither.
    #[test]
    fn queries_find_what_they_should(
        v in text(), (case, diac) in folding(), cut in (0usize..30, 0usize..30), cm in 0u64..3, kind_i in 0usize..4,
    ) {
        let (lb, ub) = (1, 30);
        let kind = [TextQuery::Prefix, TextQuery::Suffix, TextQuery::Substring, TextQuery::Exact][kind_i];
        let index = match kind {
            TextQuery::Substring => TextIndex {
                case, diacritics: diac, prefix: None, suffix: None,
                substring: Some(SubstringIndex::new(40, lb, ub).unwrap()),
            },
            _ => TextIndex {
                case, diacritics: diac,
                prefix: Some(affix_index(TextIndexKind::Prefix, (lb, ub))),
                suffix: Some(affix_index(TextIndexKind::Suffix, (lb, ub))),
                substring: None,
            },
        };
        let iup = insert(&v, &index, cm);
        let sets = text_insert_token_sets(&iup).unwrap();
        // A fresh ESC: each set alone would take position 1.
        let counts = text_positions(&sets, &vec![1; sets.len()]).unwrap();
        let stored = build_indexed_text_value(&iup, &counts, &mut OsRandom).unwrap();
        prop_assert_eq!(stored.tags().count(), sets.len());
        let tags: BTreeSet<_> = stored.tags().collect();
        prop_assert_eq!(tags.len(), sets.len(), "every token set has its own tag");
        // ESC counts per token after the insert.
        let mut esc_count: HashMap<[u8; 32], u64> = HashMap::new();
        for s in &sets {
            *esc_count.entry(*s.esc.as_bytes()).or_default() += 1;
        }
        // ECOC entries say their kind and msize.
        for s in &sets {
            let e = decrypt_ecoc_value(tokens().ecoc(), &s.ecoc_value).unwrap();
            prop_assert_eq!(&e.esc_token, &s.esc);
            let want = if s.family == TextQuery::Exact { iup.text_search_token_sets.as_ref().map(|_| stored.metadata().count() as u32) } else { Some(0) };
            prop_assert_eq!(e.text_msize, want);
        }

        let folded = fold(&v, case, diac);
        let n = folded.chars().count();
        let (a, b) = (cut.0.min(n), cut.1.min(n));
        let (from, to) = (a.min(b), a.max(b));
        let q: String = match kind {
            TextQuery::Prefix => cp_slice(&folded, 0, to),
            TextQuery::Suffix => cp_slice(&folded, from, n),
            TextQuery::Substring => cp_slice(&folded, from, to),
            TextQuery::Exact => folded.to_string(),
        };
        let check = |q: &str, should: bool| -> Result<(), TestCaseError> {
            let find: FindTextPayload = match encrypt_text_find(q, &index, kind, &tokens(), cm) {
                Ok(f) => f,
                Err(Error::Text(_)) => return Ok(()), // empty or out of the lengths
                Err(e) => panic!("{e}"),
            };
            let counts: Vec<u64> = find
                .contention_tokens()
                .iter()
                .map(|ct| {
                    // emuBinary of a fresh ESC after one insert: how often
                    // this contention factor's token was inserted.
                    let s = find.data_tokens().esc.with_contention(ct.contention_factor);
                    esc_count.get(s.as_bytes()).copied().unwrap_or(0)
                })
                .collect();
            let qtags: BTreeSet<_> = text_query_tags(&find, &counts).unwrap().into_iter().collect();
            prop_assert_eq!(!qtags.is_disjoint(&tags), should, "tags");
            prop_assert_eq!(text_value_matches(&stored, &find), should, "scan");
            prop_assert_eq!(find.token_sets.query(), kind);
            prop_assert!(matches!(
                (&find.token_sets, kind),
                (TextFindTokenSets::Exact(_), TextQuery::Exact)
                | (TextFindTokenSets::Prefix(_), TextQuery::Prefix)
                | (TextFindTokenSets::Suffix(_), TextQuery::Suffix)
                | (TextFindTokenSets::Substring(_), TextQuery::Substring)
            ));
            Ok(())
        };
        check(&q, true)?;
        // A string the value cannot contain.
        check(&format!("{q}\u{2603}"), false)?;
    }

    /// Errors of StrEncode and queries never show the value.
    #[test]
    fn errors_do_not_show_the_value(v in "[a-z]{6,12}") {
        let index = TextIndex {
            case: CaseSensitivity::Sensitive, diacritics: DiacriticSensitivity::Sensitive,
            prefix: Some(affix_index(TextIndexKind::Prefix, (1, 3))), suffix: None,
            substring: None,
        };
        let e = encrypt_text_find(&v, &index, TextQuery::Prefix, &tokens(), 0).unwrap_err();
        prop_assert!(!e.to_string().contains(&v));
        let debug = format!("{:?}", e);
        prop_assert!(!debug.contains(&v));
        let sub = TextIndex { prefix: None, substring: Some(SubstringIndex::new(3, 1, 3).unwrap()), ..index };
        let e = str_encode(&v, &sub).unwrap_err();
        prop_assert!(!e.to_string().contains(&v));
    }
}

#[test]
fn repeated_token_sets_take_consecutive_positions() {
    let index = TextIndex {
        case: CaseSensitivity::Sensitive,
        diacritics: DiacriticSensitivity::Sensitive,
        prefix: Some(affix_index(TextIndexKind::Prefix, (1, 10))),
        suffix: None,
        substring: None,
    };
    let iup = insert("ab", &index, 0);
    let sets = text_insert_token_sets(&iup).unwrap();
    // exact, "a", "ab", then "ab\xFF" eight times (prefix msize
    // min(11, 10) - 1 + 1 = 10, of which 2 are real).
    assert_eq!(sets.len(), 1 + 10);
    let first = vec![5; sets.len()];
    let pos = text_positions(&sets, &first).unwrap();
    assert_eq!(pos, vec![5, 5, 5, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert!(text_positions(&sets, &first[1..]).is_err());
}
