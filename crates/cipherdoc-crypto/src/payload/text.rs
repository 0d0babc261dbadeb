//! Text-search blobs (libmongocrypt `mc-fle2-insert-update-payload-v2.c`,
//! `mc-fle2-find-text-payload.c`, `mc-fle2-payload-iev-v2.c`): the `b`
//! sub-document of an insert payload (11), FLE2FindTextPayload (18) and
//! FLE2IndexedTextEncryptedValue (17).
//!
//! Token sets are generic over their [`TextFamily`], so an exact token set
//! cannot be put where a prefix one belongs.

use bson::RawBsonRef;

use super::iev::key_id_and_type;
use super::iup::{bin0, bin0_32, doc_array, fields, required, set_once, uint64};
use super::writer::DocWriter;
use super::{BlobSubtype, MetadataBlock, strip_subtype};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::server::Tag;
use crate::text::{
    AffixIndex, CaseSensitivity, DiacriticSensitivity, SubstringIndex, TextIndex, TextIndexKind,
    TextQuery,
};
use crate::tokens::{TextExact, TextFamily, TextPrefix, TextSubstring, TextSuffix, Token};

fn sub_document<'a>(what: &'static str, key: &str, v: RawBsonRef<'a>) -> Result<&'a [u8]> {
    match v {
        RawBsonRef::Document(d) => Ok(d.as_bytes()),
        _ => Err(Error::decode(
            what,
            format!("field '{key}' must be a document"),
        )),
    }
}

/// One insert token set of a text family (`TextExactTokenSet`, …), field
/// order `d, s, l, p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTokenSet<F: TextFamily> {
    /// `d`: `EDCText<F>DerivedFromDataTokenAndContentionFactorToken`.
    pub edc_derived_token: F::EdcContended,
    /// `s`: `ESCText<F>DerivedFromDataTokenAndContentionFactorToken`.
    pub esc_derived_token: F::EscContended,
    /// `l`: `ServerText<F>DerivedFromDataToken`.
    pub server_derived_from_data_token: F::ServerDerived,
    /// `p`: `EncryptCTR(ECOCToken, s ‖ LE24(msize))` (51 bytes); `msize` is
    /// the value's total tag count in the exact set, 0 in the others.
    pub encrypted_tokens: Vec<u8>,
}

impl<F: TextFamily> TextTokenSet<F> {
    const WHAT: &'static str = "TextTokenSet";

    fn encode_into(&self, w: &mut DocWriter, key: &str) {
        let mut d = DocWriter::new(None, 200);
        d.binary("d", 0, self.edc_derived_token.as_bytes());
        d.binary("s", 0, self.esc_derived_token.as_bytes());
        d.binary("l", 0, self.server_derived_from_data_token.as_bytes());
        d.binary("p", 0, &self.encrypted_tokens);
        w.raw(key, 0x03, &d.finish());
    }

    fn decode(doc: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let (mut d, mut s, mut l, mut p) = (None, None, None, None);
        fields(what, doc, |k, v| match k {
            "d" => set_once(what, k, &mut d, bin0_32(what, k, v)?),
            "s" => set_once(what, k, &mut s, bin0_32(what, k, v)?),
            "l" => set_once(what, k, &mut l, bin0_32(what, k, v)?),
            "p" => set_once(what, k, &mut p, bin0(what, k, v)?.to_vec()),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            edc_derived_token: F::EdcContended::from_bytes(required(what, "d", d)?),
            esc_derived_token: F::EscContended::from_bytes(required(what, "s", s)?),
            server_derived_from_data_token: F::ServerDerived::from_bytes(required(what, "l", l)?),
            encrypted_tokens: required(what, "p", p)?,
        })
    }
}

fn encode_array<F: TextFamily>(w: &mut DocWriter, key: &str, sets: &[TextTokenSet<F>]) {
    let mut arr = DocWriter::new(None, 200 * sets.len() + 8);
    for (i, t) in sets.iter().enumerate() {
        t.encode_into(&mut arr, &i.to_string());
    }
    w.raw(key, 0x04, &arr.finish());
}

/// The `b` field of a text-search insert payload (`TextSearchTokenSets`):
/// `{e: exact, s: [substring…], u: [suffix…], p: [prefix…]}`, each array in
/// StrEncode's order with padding entries repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSearchTokenSets {
    /// `e`: the exact (whole folded string) token set.
    pub exact: TextTokenSet<TextExact>,
    /// `s`: substring token sets.
    pub substring: Vec<TextTokenSet<TextSubstring>>,
    /// `u`: suffix token sets.
    pub suffix: Vec<TextTokenSet<TextSuffix>>,
    /// `p`: prefix token sets.
    pub prefix: Vec<TextTokenSet<TextPrefix>>,
}

impl TextSearchTokenSets {
    const WHAT: &'static str = "TextSearchTokenSets";

    /// All token sets: 1 + substring + suffix + prefix (the stored value's
    /// `edge_count`).
    pub fn len(&self) -> usize {
        1 + self.substring.len() + self.suffix.len() + self.prefix.len()
    }

    /// Never empty: there is always the exact token set.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(crate) fn encode_into(&self, w: &mut DocWriter, key: &str) {
        let mut b = DocWriter::new(None, 200 * self.len() + 64);
        self.exact.encode_into(&mut b, "e");
        encode_array(&mut b, "s", &self.substring);
        encode_array(&mut b, "u", &self.suffix);
        encode_array(&mut b, "p", &self.prefix);
        w.raw(key, 0x03, &b.finish());
    }

    #[allow(clippy::many_single_char_names)] // names mirror the protocol fields
    pub(crate) fn decode_field(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<Self> {
        let doc = sub_document(what, key, v)?;
        let what = Self::WHAT;
        let (mut e, mut s, mut u, mut p) = (None, None, None, None);
        fields(what, doc, |k, v| match k {
            "e" => set_once(
                what,
                k,
                &mut e,
                TextTokenSet::decode(sub_document(what, k, v)?)?,
            ),
            "s" => set_once(
                what,
                k,
                &mut s,
                doc_array(what, k, v, TextTokenSet::decode)?,
            ),
            "u" => set_once(
                what,
                k,
                &mut u,
                doc_array(what, k, v, TextTokenSet::decode)?,
            ),
            "p" => set_once(
                what,
                k,
                &mut p,
                doc_array(what, k, v, TextTokenSet::decode)?,
            ),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            exact: required(what, "e", e)?,
            substring: required(what, "s", s)?,
            suffix: required(what, "u", u)?,
            prefix: required(what, "p", p)?,
        })
    }
}

/// One find token set of a text family (`Text<F>FindTokenSet`): the
/// un-contended tokens, field order `d, s, l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFindTokenSet<F: TextFamily> {
    /// `d`: `EDCText<F>DerivedFromDataToken`.
    pub edc_derived_token: F::EdcDerived,
    /// `s`: `ESCText<F>DerivedFromDataToken`.
    pub esc_derived_token: F::EscDerived,
    /// `l`: `ServerText<F>DerivedFromDataToken`.
    pub server_derived_from_data_token: F::ServerDerived,
}

impl<F: TextFamily> TextFindTokenSet<F> {
    const WHAT: &'static str = "TextFindTokenSet";

    fn encode_into(&self, w: &mut DocWriter, key: &str) {
        let mut d = DocWriter::new(None, 128);
        d.binary("d", 0, self.edc_derived_token.as_bytes());
        d.binary("s", 0, self.esc_derived_token.as_bytes());
        d.binary("l", 0, self.server_derived_from_data_token.as_bytes());
        w.raw(key, 0x03, &d.finish());
    }

    fn decode(doc: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let (mut d, mut s, mut l) = (None, None, None);
        fields(what, doc, |k, v| match k {
            "d" => set_once(what, k, &mut d, bin0_32(what, k, v)?),
            "s" => set_once(what, k, &mut s, bin0_32(what, k, v)?),
            "l" => set_once(what, k, &mut l, bin0_32(what, k, v)?),
            other => Err(Error::decode(what, format!("unrecognized field '{other}'"))),
        })?;
        Ok(Self {
            edc_derived_token: F::EdcDerived::from_bytes(required(what, "d", d)?),
            esc_derived_token: F::EscDerived::from_bytes(required(what, "s", s)?),
            server_derived_from_data_token: F::ServerDerived::from_bytes(required(what, "l", l)?),
        })
    }
}

/// `ts` of a find payload: exactly one of `e`, `s`, `u`, `p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFindTokenSets {
    /// `e`: whole-string match.
    Exact(TextFindTokenSet<TextExact>),
    /// `s`: substring match.
    Substring(TextFindTokenSet<TextSubstring>),
    /// `u`: suffix match.
    Suffix(TextFindTokenSet<TextSuffix>),
    /// `p`: prefix match.
    Prefix(TextFindTokenSet<TextPrefix>),
}

impl TextFindTokenSets {
    const WHAT: &'static str = "TextSearchFindTokenSets";

    /// Which query the tokens are for.
    pub fn query(&self) -> TextQuery {
        match self {
            Self::Exact(_) => TextQuery::Exact,
            Self::Substring(_) => TextQuery::Substring,
            Self::Suffix(_) => TextQuery::Suffix,
            Self::Prefix(_) => TextQuery::Prefix,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = DocWriter::new(None, 140);
        match self {
            Self::Exact(t) => t.encode_into(&mut w, "e"),
            Self::Substring(t) => t.encode_into(&mut w, "s"),
            Self::Suffix(t) => t.encode_into(&mut w, "u"),
            Self::Prefix(t) => t.encode_into(&mut w, "p"),
        }
        w.finish()
    }

    fn decode(doc: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let mut one: Option<Self> = None;
        fields(what, doc, |k, v| {
            let body = sub_document(what, k, v)?;
            let t = match k {
                "e" => Self::Exact(TextFindTokenSet::decode(body)?),
                "s" => Self::Substring(TextFindTokenSet::decode(body)?),
                "u" => Self::Suffix(TextFindTokenSet::decode(body)?),
                "p" => Self::Prefix(TextFindTokenSet::decode(body)?),
                other => return Err(Error::decode(what, format!("unrecognized field '{other}'"))),
            };
            if one.replace(t).is_some() {
                return Err(Error::decode(
                    what,
                    "cannot have multiple optional fields present",
                ));
            }
            Ok(())
        })?;
        one.ok_or_else(|| Error::decode(what, "exactly one optional field is required"))
    }
}

/// FLE2FindTextPayload, blob subtype 18:
/// `0x12 ‖ BSON{ts, cm, cf, df, ss?, fs?, ps?}`. `ss`/`fs`/`ps` (the index
/// of the kind queried) and `cf`/`df` travel in `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindTextPayload {
    /// `ts`: the query's tokens.
    pub token_sets: TextFindTokenSets,
    /// `cm`: maximum contention factor; the server expands `0..=cm`.
    pub max_contention_factor: u64,
    /// `cf`, `df` and the one of `ss`, `fs`, `ps` that the query uses.
    pub index: TextIndex,
}

fn int32_of(n: u32) -> i32 {
    // Lengths come from int32 options; saturate rather than wrap.
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn spec_lengths(
    what: &'static str,
    key: &str,
    v: RawBsonRef<'_>,
    with_mlen: bool,
) -> Result<(u32, u32, u32)> {
    let doc = sub_document(what, key, v)?;
    let (mut mlen, mut ub, mut lb) = (None, None, None);
    fields(what, doc, |k, v| {
        let slot = match k {
            "mlen" if with_mlen => &mut mlen,
            "ub" => &mut ub,
            "lb" => &mut lb,
            other => {
                return Err(Error::decode(
                    what,
                    format!("unknown field '{other}' in '{key}'"),
                ));
            }
        };
        let RawBsonRef::Int32(n) = v else {
            return Err(Error::decode(what, format!("'{k}' must be an int32")));
        };
        let n = u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::decode(what, format!("'{k}' must be greater than zero")))?;
        set_once(what, k, slot, n)
    })?;
    Ok((
        if with_mlen {
            required(what, "mlen", mlen)?
        } else {
            0
        },
        required(what, "ub", ub)?,
        required(what, "lb", lb)?,
    ))
}

impl FindTextPayload {
    const WHAT: &'static str = "FLE2FindTextPayload";

    /// The blob: `0x12 ‖ BSON` in libmongocrypt's field order.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = DocWriter::new(Some(BlobSubtype::Fle2FindTextPayload as u8), 220);
        w.raw("ts", 0x03, &self.token_sets.encode());
        w.int64(
            "cm",
            i64::try_from(self.max_contention_factor).unwrap_or(i64::MAX),
        );
        w.boolean("cf", self.index.case == CaseSensitivity::Insensitive);
        w.boolean(
            "df",
            self.index.diacritics == DiacriticSensitivity::Insensitive,
        );
        if let Some(s) = self.index.substring {
            let mut d = DocWriter::new(None, 40);
            d.int32("mlen", int32_of(s.max_length()));
            d.int32("ub", int32_of(s.max_query_length()));
            d.int32("lb", int32_of(s.min_query_length()));
            w.raw("ss", 0x03, &d.finish());
        }
        for (key, a) in [("fs", self.index.suffix), ("ps", self.index.prefix)] {
            if let Some(a) = a {
                let mut d = DocWriter::new(None, 32);
                d.int32("ub", int32_of(a.max_query_length()));
                d.int32("lb", int32_of(a.min_query_length()));
                w.raw(key, 0x03, &d.finish());
            }
        }
        w.finish()
    }

    /// Parses a subtype-18 blob (unknown, duplicate or missing fields and
    /// wrong types are errors, as in libmongocrypt).
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2FindTextPayload)?;
        let (mut ts, mut cm, mut cf, mut df) = (None, None, None, None);
        let (mut ss, mut fs, mut ps) = (None, None, None);
        let bad = |e: crate::text::StringOptsError| Error::decode(what, e.to_string());
        fields(what, body, |k, v| match k {
            "ts" => set_once(
                what,
                k,
                &mut ts,
                TextFindTokenSets::decode(sub_document(what, k, v)?)?,
            ),
            "cm" => set_once(what, k, &mut cm, uint64(what, k, v)?),
            "cf" | "df" => {
                let RawBsonRef::Boolean(b) = v else {
                    return Err(Error::decode(what, format!("field '{k}' must be a bool")));
                };
                set_once(what, k, if k == "cf" { &mut cf } else { &mut df }, b)
            }
            "ss" => {
                let (mlen, ub, lb) = spec_lengths(what, k, v, true)?;
                set_once(
                    what,
                    k,
                    &mut ss,
                    SubstringIndex::new(mlen, lb, ub).map_err(bad)?,
                )
            }
            "fs" | "ps" => {
                let (_, ub, lb) = spec_lengths(what, k, v, false)?;
                let kind = if k == "fs" {
                    TextIndexKind::Suffix
                } else {
                    TextIndexKind::Prefix
                };
                let a = AffixIndex::new(kind, lb, ub).map_err(bad)?;
                set_once(what, k, if k == "fs" { &mut fs } else { &mut ps }, a)
            }
            other => Err(Error::decode(what, format!("unrecognized field '{other}'"))),
        })?;
        let cm = required(what, "cm", cm)?;
        // libmongocrypt validates `cm` like a contention factor.
        if cm == i64::MAX.unsigned_abs() {
            return Err(Error::decode(what, "'cm' must be less than 2^63-1"));
        }
        Ok(Self {
            token_sets: required(what, "ts", ts)?,
            max_contention_factor: cm,
            index: TextIndex {
                case: if required(what, "cf", cf)? {
                    CaseSensitivity::Insensitive
                } else {
                    CaseSensitivity::Sensitive
                },
                diacritics: if required(what, "df", df)? {
                    DiacriticSensitivity::Insensitive
                } else {
                    DiacriticSensitivity::Sensitive
                },
                prefix: ps,
                suffix: fs,
                substring: ss,
            },
        })
    }
}

/// FLE2IndexedTextEncryptedValue, blob subtype 17: `0x11 ‖ S_KeyId ‖
/// T(value) ‖ LE32(edge_count) ‖ LE32(substr_tag_count) ‖
/// LE32(suffix_tag_count) ‖ SEV ‖ metadata(96) × edge_count`, the blocks in
/// the order exact, substrings, suffixes, prefixes (the insert payload's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedTextEncryptedValue {
    /// `S_KeyId`: the index key id.
    pub index_key_id: KeyId,
    /// BSON type of the value (string).
    pub bson_type: bson::spec::ElementType,
    /// `SEV = EncryptCTR(ServerDataEncryptionLevel1Token, K_KeyId ‖ ClientEncryptedValue)`.
    pub server_encrypted_value: Vec<u8>,
    /// The exact string's block.
    pub exact: MetadataBlock,
    /// One block per substring token set.
    pub substring: Vec<MetadataBlock>,
    /// One block per suffix token set.
    pub suffix: Vec<MetadataBlock>,
    /// One block per prefix token set.
    pub prefix: Vec<MetadataBlock>,
}

impl IndexedTextEncryptedValue {
    const WHAT: &'static str = "FLE2IndexedTextEncryptedValue";
    /// The shortest SEV accepted: IV and a user key id.
    const MIN_SEV: usize = 32;

    /// All blocks in stored order (exact, substrings, suffixes, prefixes).
    pub fn metadata(&self) -> impl Iterator<Item = &MetadataBlock> + '_ {
        std::iter::once(&self.exact)
            .chain(&self.substring)
            .chain(&self.suffix)
            .chain(&self.prefix)
    }

    /// The tags of all blocks (what goes into `__safeContent__`), in order.
    pub fn tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.metadata().map(|m| m.tag)
    }

    /// The blocks a query of `query`'s kind can match.
    pub fn blocks_of(&self, query: TextQuery) -> &[MetadataBlock] {
        match query {
            TextQuery::Exact => std::slice::from_ref(&self.exact),
            TextQuery::Substring => &self.substring,
            TextQuery::Suffix => &self.suffix,
            TextQuery::Prefix => &self.prefix,
        }
    }

    /// The blob. Fails when a count does not fit in 32 bits.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let count = |n: usize| {
            u32::try_from(n).map_err(|_| {
                Error::InvalidArgument("a text stored value holds at most 2^32-1 blocks".into())
            })
        };
        let edges = count(1 + self.substring.len() + self.suffix.len() + self.prefix.len())?;
        let mut out = Vec::with_capacity(
            30 + self.server_encrypted_value.len() + MetadataBlock::LEN * edges as usize,
        );
        out.push(BlobSubtype::Fle2IndexedTextEncryptedValue as u8);
        out.extend_from_slice(self.index_key_id.as_bytes());
        out.push(self.bson_type as u8);
        out.extend_from_slice(&edges.to_le_bytes());
        out.extend_from_slice(&count(self.substring.len())?.to_le_bytes());
        out.extend_from_slice(&count(self.suffix.len())?.to_le_bytes());
        out.extend_from_slice(&self.server_encrypted_value);
        for m in self.metadata() {
            out.extend_from_slice(&m.to_bytes());
        }
        Ok(out)
    }

    /// Parses a subtype-17 blob as libmongocrypt does: `edge_count` must be
    /// at least `substr + suffix + 1`, the SEV is what remains before the
    /// blocks.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2IndexedTextEncryptedValue)?;
        let (index_key_id, bson_type, rest) = key_id_and_type(what, body)?;
        let (counts, rest) = rest
            .split_at_checked(12)
            .ok_or_else(|| Error::decode(what, "too short: no tag counts"))?;
        let le32 = |i: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(counts.get(i..i + 4).unwrap_or(&[0; 4]));
            u64::from(u32::from_le_bytes(a))
        };
        let (edges, substr, suffix) = (le32(0), le32(4), le32(8));
        if edges < substr + suffix + 1 {
            return Err(Error::decode(
                what,
                "edge count must be at least substr_tag_count + suffix_tag_count + 1",
            ));
        }
        let meta_len = usize::try_from(edges)
            .ok()
            .and_then(|e| e.checked_mul(MetadataBlock::LEN))
            .ok_or_else(|| Error::decode(what, "edge count too large"))?;
        let sev_len = rest
            .len()
            .checked_sub(meta_len)
            .filter(|l| *l >= Self::MIN_SEV)
            .ok_or_else(|| {
                Error::decode(
                    what,
                    "too short for its metadata blocks and a server-encrypted value",
                )
            })?;
        let (sev, meta) = rest.split_at(sev_len);
        let mut blocks = meta
            .chunks_exact(MetadataBlock::LEN)
            .map(MetadataBlock::from_slice)
            .collect::<Result<Vec<_>>>()?
            .into_iter();
        let exact = blocks
            .next()
            .ok_or_else(|| Error::decode(what, "no exact block"))?;
        // Both counts are below `edges`, whose blocks were just read, so
        // they fit in usize.
        let take = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let substring: Vec<_> = blocks.by_ref().take(take(substr)).collect();
        let suffix: Vec<_> = blocks.by_ref().take(take(suffix)).collect();
        let prefix: Vec<_> = blocks.collect();
        Ok(Self {
            index_key_id,
            bson_type,
            server_encrypted_value: sev.to_vec(),
            exact,
            substring,
            suffix,
            prefix,
        })
    }
}
