//! Server-side arithmetic for text search (MongoDB 8.2's `fle_crypto.cpp`
//! text paths, `fle2_compact.cpp`): what the server role does with a text
//! insert payload, a text find payload and the ECOC entries of text fields.
//! The server never sees the text families as such: each token of a text
//! token set plays the generic role of its position (`d` is an EDC…
//! AndContentionFactor token, `s` an ESC… one, `l` a ServerDerivedFromData
//! token), so equality's ESC, tag and metadata arithmetic applies to every
//! set unchanged.
//!
//! One insert advances one ESC counter per token set, in payload order:
//! exact, substrings, suffixes, prefixes. A padding entry appears several
//! times with the same `s`; its copies take consecutive positions
//! ([`text_positions`]), so the counter stays contiguous for emuBinary and
//! each copy gets a tag of its own.

use std::collections::HashMap;

use super::{ContentionTokens, EscTokens, FindDataTokens, Tag};
use crate::aead;
use crate::error::{Error, Result};
use crate::payload::{
    FindTextPayload, IndexedTextEncryptedValue, InsertUpdatePayloadV2, MetadataBlock,
    TextFindTokenSets, TextTokenSet,
};
use crate::random::RandomSource;
use crate::text::TextQuery;
use crate::tokens::{
    EdcDerivedFromDataToken, EdcDerivedFromDataTokenAndContentionFactor, EscDerivedFromDataToken,
    EscDerivedFromDataTokenAndContentionFactor, ServerDerivedFromDataToken, TextFamily, Token,
};

/// One token set of a text insert payload, in the roles the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInsertTokenSet {
    /// Which set it belongs to.
    pub family: TextQuery,
    /// `s`: the ESC keys ([`EscTokens::new`]) for emuBinary and the ESC id.
    pub esc: EscDerivedFromDataTokenAndContentionFactor,
    /// `d`: the tag key (`HMAC(d, 1)`).
    pub edc: EdcDerivedFromDataTokenAndContentionFactor,
    /// `l`: encrypts the metadata block.
    pub server_derived: ServerDerivedFromDataToken,
    /// `p`: the ECOC entry's `value` (`EncryptCTR(ECOCToken, s ‖ LE24(msize))`).
    pub ecoc_value: Vec<u8>,
}

impl TextInsertTokenSet {
    fn of<F: TextFamily>(family: TextQuery, t: &TextTokenSet<F>) -> Self {
        Self {
            family,
            esc: EscDerivedFromDataTokenAndContentionFactor::from_bytes(
                *t.esc_derived_token.as_bytes(),
            ),
            edc: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(
                *t.edc_derived_token.as_bytes(),
            ),
            server_derived: ServerDerivedFromDataToken::from_bytes(
                *t.server_derived_from_data_token.as_bytes(),
            ),
            ecoc_value: t.encrypted_tokens.clone(),
        }
    }

    /// The ESC keys of this set's counter.
    pub fn esc_tokens(&self) -> EscTokens {
        EscTokens::new(&self.esc)
    }

    /// The `__safeContent__` tag of this set at ESC position `count`.
    pub fn tag(&self, count: u64) -> Tag {
        self.edc.twice_derived().tag(count)
    }
}

/// The token sets of a text insert payload (one with `b`), in payload order.
/// The server ignores the top-level `d`, `s`, `l`, `p` of such a payload.
pub fn text_insert_token_sets(iup: &InsertUpdatePayloadV2) -> Result<Vec<TextInsertTokenSet>> {
    let Some(b) = &iup.text_search_token_sets else {
        return Err(Error::InvalidArgument(
            "not a text-search insert payload (no 'b')".into(),
        ));
    };
    let mut out = Vec::with_capacity(b.len());
    out.push(TextInsertTokenSet::of(TextQuery::Exact, &b.exact));
    out.extend(
        b.substring
            .iter()
            .map(|t| TextInsertTokenSet::of(TextQuery::Substring, t)),
    );
    out.extend(
        b.suffix
            .iter()
            .map(|t| TextInsertTokenSet::of(TextQuery::Suffix, t)),
    );
    out.extend(
        b.prefix
            .iter()
            .map(|t| TextInsertTokenSet::of(TextQuery::Prefix, t)),
    );
    Ok(out)
}

/// ESC positions for the token sets of one payload. `first[i]` is the
/// position set `i` would take alone (its emuBinary insert count, read
/// before this payload wrote anything); a set whose `s` already appeared
/// earlier in the payload takes the position after that occurrence's.
pub fn text_positions(sets: &[TextInsertTokenSet], first: &[u64]) -> Result<Vec<u64>> {
    if sets.len() != first.len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} positions (one per token set), got {}",
            sets.len(),
            first.len()
        )));
    }
    let mut last: HashMap<[u8; 32], u64> = HashMap::new();
    sets.iter()
        .zip(first)
        .map(|(s, &f)| {
            let pos = match last.get(s.esc.as_bytes()) {
                Some(&p) => p
                    .checked_add(1)
                    .ok_or_else(|| Error::EscState("ESC position overflow".into()))?,
                None => f,
            };
            last.insert(*s.esc.as_bytes(), pos);
            Ok(pos)
        })
        .collect()
}

/// Turns a text insert payload into the stored value (blob 17):
/// `SEV = EncryptCTR(e, v)` and one metadata block per token set, built from
/// `(counts[i], k, d_i, l_i)`; `counts` come from [`text_positions`], in
/// token-set order. The value's tags ([`IndexedTextEncryptedValue::tags`])
/// go into `__safeContent__`.
pub fn build_indexed_text_value(
    iup: &InsertUpdatePayloadV2,
    counts: &[u64],
    rng: &mut dyn RandomSource,
) -> Result<IndexedTextEncryptedValue> {
    let sets = text_insert_token_sets(iup)?;
    if counts.len() != sets.len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} counts (one per token set), got {}",
            sets.len(),
            counts.len()
        )));
    }
    let sev = aead::encrypt_ctr(&iup.server_encryption_token, &iup.value, rng)?;
    let mut blocks = sets
        .iter()
        .zip(counts)
        .map(|(s, &c)| {
            MetadataBlock::build(c, iup.contention_factor, &s.edc, &s.server_derived, rng)
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let b = iup
        .text_search_token_sets
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("not a text-search insert payload".into()))?;
    let exact = blocks
        .next()
        .ok_or_else(|| Error::InvalidArgument("no exact token set".into()))?;
    let substring = blocks.by_ref().take(b.substring.len()).collect();
    let suffix = blocks.by_ref().take(b.suffix.len()).collect();
    let prefix = blocks.collect();
    Ok(IndexedTextEncryptedValue {
        index_key_id: iup.index_key_id,
        bson_type: iup.bson_type,
        server_encrypted_value: sev,
        exact,
        substring,
        suffix,
        prefix,
    })
}

/// The un-contended tokens of a text find payload, in the roles the server
/// uses; [`Self::as_find_data_tokens`] feeds them to the equality loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFindDataTokens {
    /// Which family (and so which blocks of a stored value) the query reads.
    pub family: TextQuery,
    /// `d` as EDCDerivedFromDataToken.
    pub edc: EdcDerivedFromDataToken,
    /// `s` as ESCDerivedFromDataToken.
    pub esc: EscDerivedFromDataToken,
    /// `l` as ServerDerivedFromDataToken.
    pub server_derived: ServerDerivedFromDataToken,
}

impl TextFindDataTokens {
    /// A borrowing view for code shared with equality and range.
    pub fn as_find_data_tokens(&self) -> FindDataTokens<'_> {
        FindDataTokens {
            edc: &self.edc,
            esc: &self.esc,
            server_derived: &self.server_derived,
        }
    }
}

impl FindTextPayload {
    /// The query's data tokens.
    pub fn data_tokens(&self) -> TextFindDataTokens {
        fn roles<F: TextFamily>(
            family: TextQuery,
            t: &crate::payload::TextFindTokenSet<F>,
        ) -> TextFindDataTokens {
            TextFindDataTokens {
                family,
                edc: EdcDerivedFromDataToken::from_bytes(*t.edc_derived_token.as_bytes()),
                esc: EscDerivedFromDataToken::from_bytes(*t.esc_derived_token.as_bytes()),
                server_derived: ServerDerivedFromDataToken::from_bytes(
                    *t.server_derived_from_data_token.as_bytes(),
                ),
            }
        }
        match &self.token_sets {
            TextFindTokenSets::Exact(t) => roles(TextQuery::Exact, t),
            TextFindTokenSets::Substring(t) => roles(TextQuery::Substring, t),
            TextFindTokenSets::Suffix(t) => roles(TextQuery::Suffix, t),
            TextFindTokenSets::Prefix(t) => roles(TextQuery::Prefix, t),
        }
    }

    /// The tokens for every contention factor `k` in `0..=cm` (§9.6).
    pub fn contention_tokens(&self) -> Vec<ContentionTokens> {
        let d = self.data_tokens();
        d.as_find_data_tokens()
            .contention_tokens(self.max_contention_factor)
            .collect()
    }
}

/// All tags a text find payload stands for: the union over `k = 0..=cm` of
/// tags `1..=counts[k]` (`counts` from emuBinary, in
/// [`FindTextPayload::contention_tokens`] order).
pub fn text_query_tags(find: &FindTextPayload, counts: &[u64]) -> Result<Vec<Tag>> {
    let cts = find.contention_tokens();
    if counts.len() != cts.len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} counts (one per contention factor), got {}",
            cts.len(),
            counts.len()
        )));
    }
    let total = counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
    let mut tags = Vec::with_capacity(usize::try_from(total).unwrap_or(0).min(1 << 20));
    for (ct, &c) in cts.iter().zip(counts) {
        tags.extend(ct.tags(c));
    }
    Ok(tags)
}

/// The collection-scan match of a text query: whether a block of the
/// queried family in `value` has encrypted zeros under the query's zeros
/// token.
pub fn text_value_matches(value: &IndexedTextEncryptedValue, find: &FindTextPayload) -> bool {
    let d = find.data_tokens();
    let zt = d.server_derived.zeros_encryption();
    value.blocks_of(d.family).iter().any(|m| {
        aead::decrypt_ctr_array::<16>(&zt, &m.encrypted_zeros).is_ok_and(|z| z == [0u8; 16])
    })
}

/// Padding anchors compaction adds for a text field (MongoDB's
/// `compactOneTextSearchFieldPad`): the sum of the `msize` of the field's
/// distinct ECOC entries (only exact entries carry one) less their number.
pub fn text_padding_count(total_msize: u64, unique_tokens: u64) -> Result<u64> {
    total_msize.checked_sub(unique_tokens).ok_or_else(|| {
        Error::EscState("a text field's ECOC entries name fewer tags than there are entries".into())
    })
}
