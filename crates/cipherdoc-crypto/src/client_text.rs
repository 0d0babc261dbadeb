//! Client operations for text search (libmongocrypt `mongocrypt-marking.c`,
//! `_mongocrypt_fle2_placeholder_to_insert_update_ciphertextForTextSearch`
//! and `…_to_find_ciphertextForTextSearch`): text insert payloads (blob 11
//! with `b`) and text find payloads (blob 18).
//!
//! Byte-exact with libmongocrypt given the same random bytes: an insert
//! draws the contention factor (8 bytes per draw, only when `cm > 0`), the
//! IV of the top-level `p`, the IV of `v`, then one IV per distinct string
//! in payload order — the exact string, the substrings, the suffixes, the
//! prefixes; a padding entry repeated `n` times is one token set (one IV)
//! copied `n` times. Finds draw nothing.
//!
//! Every string is hashed as BSON string value bytes (`LE32(len + 1) ‖ bytes
//! ‖ 0`), the padding entries (the folded string and 0xFF) included.

use crate::mac::HmacSha256Key;
use bson::Bson;
use bson::spec::ElementType;
use zeroize::Zeroizing;

use crate::aead;
use crate::client::UserKey;
use crate::error::{Error, Result};
use crate::payload::{
    EncryptionPlaceholder, FindTextPayload, InsertUpdatePayloadV2, PlaceholderAlgorithm,
    PlaceholderType, TextFindTokenSet, TextFindTokenSets, TextSearchTokenSets, TextTokenSet,
    value_bytes,
};
use crate::random::{RandomSource, choose_contention_factor, validate_max_contention};
use crate::text::spec::TextSearchSpec;
use crate::text::str_encode::str_query;
use crate::text::{TextError, TextIndex, TextIndexKind, TextQuery, str_encode};
use crate::tokens::{
    EdcDerivedFromDataTokenAndContentionFactor, EscDerivedFromDataTokenAndContentionFactor,
    IndexKeyTokens, ServerDerivedFromDataToken, TextExact, TextFamily, TextPrefix, TextRoots,
    TextSubstring, TextSuffix, Token,
};

/// `LE32(len + 1) ‖ bytes ‖ 0`: how every string of a set is hashed.
fn string_value_bytes(s: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let n = u32::try_from(s.len() + 1).map_err(|_| Error::Bson("string too long".into()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() + 5));
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s);
    out.push(0);
    Ok(out)
}

/// HMAC states keyed with one family's root tokens, prepared once per
/// payload: every string of the set derives its tokens from the same three
/// keys, and cloning a keyed state skips re-keying (as `client_range` does
/// for edges).
struct FamilyMacs<F: TextFamily> {
    // Zeroizing key schedules (`crate::mac`): these are keyed with tokens.
    edc: HmacSha256Key,
    esc: HmacSha256Key,
    server: HmacSha256Key,
    _family: std::marker::PhantomData<F>,
}

impl<F: TextFamily> FamilyMacs<F> {
    fn new(tokens: &IndexKeyTokens) -> Self {
        let roots: TextRoots<F> = F::roots(tokens);
        let mac = HmacSha256Key::new;
        Self {
            edc: mac(roots.edc.as_bytes()),
            esc: mac(roots.esc.as_bytes()),
            server: mac(roots.server.as_bytes()),
            _family: std::marker::PhantomData,
        }
    }

    fn run(m: &HmacSha256Key, v: &[u8]) -> [u8; 32] {
        m.mac(&[v])
    }

    fn find(&self, v: &[u8]) -> TextFindTokenSet<F> {
        TextFindTokenSet {
            edc_derived_token: F::EdcDerived::from_bytes(Self::run(&self.edc, v)),
            esc_derived_token: F::EscDerived::from_bytes(Self::run(&self.esc, v)),
            server_derived_from_data_token: F::ServerDerived::from_bytes(Self::run(
                &self.server,
                v,
            )),
        }
    }

    /// One insert token set; `p = EncryptCTR(ECOCToken, s ‖ LE24(msize))`.
    fn insert(
        &self,
        tokens: &IndexKeyTokens,
        value: &[u8],
        contention: u64,
        msize: u32,
        iv: &[u8],
    ) -> TextTokenSet<F> {
        let find = self.find(value);
        let (edc, esc) = F::contend(&find.edc_derived_token, &find.esc_derived_token, contention);
        TextTokenSet {
            encrypted_tokens: encrypted_tokens(tokens, iv, esc.as_bytes(), msize),
            edc_derived_token: edc,
            esc_derived_token: esc,
            server_derived_from_data_token: find.server_derived_from_data_token,
        }
    }
}

fn encrypted_tokens(tokens: &IndexKeyTokens, iv: &[u8], esc: &[u8; 32], msize: u32) -> Vec<u8> {
    let mut pt = Zeroizing::new([0u8; 35]);
    pt[..32].copy_from_slice(esc);
    pt[32..].copy_from_slice(&msize.to_le_bytes()[..3]);
    let mut iv16 = [0u8; 16];
    iv16.copy_from_slice(iv.get(..16).unwrap_or(&[0; 16]));
    aead::encrypt_ctr_with_iv(tokens.ecoc(), &iv16, &*pt)
}

/// Token sets of one set of StrEncode's, padding copies included.
fn family_sets<F: TextFamily>(
    entries: impl Iterator<Item = (Vec<u8>, u32)>,
    tokens: &IndexKeyTokens,
    k: u64,
    ivs: &mut std::slice::ChunksExact<'_, u8>,
) -> Result<Vec<TextTokenSet<F>>> {
    let macs = FamilyMacs::<F>::new(tokens);
    let mut out = Vec::new();
    for (s, count) in entries {
        let iv = ivs
            .next()
            .ok_or_else(|| Error::Random("too few IVs drawn for the text token sets".into()))?;
        let set = macs.insert(tokens, &string_value_bytes(&s)?, k, 0, iv);
        for _ in 1..count {
            out.push(set.clone());
        }
        out.push(set);
    }
    Ok(out)
}

/// Builds a text-search insert payload (blob 11 with `b`) for `value` under
/// `index`, which must have a prefix, suffix or substring part.
///
/// As libmongocrypt writes it: `t` is string, the top-level `d`, `s`, `l`
/// are 32 zero bytes and `p` encrypts `s ‖ 000000` (the server uses only
/// `b`), `v` is the user-key ciphertext of the unfolded string.
pub fn encrypt_text_insert(
    value: &str,
    index: &TextIndex,
    tokens: &IndexKeyTokens,
    user: UserKey<'_>,
    max_contention: u64,
    rng: &mut dyn RandomSource,
) -> Result<InsertUpdatePayloadV2> {
    if index.prefix.is_none() && index.suffix.is_none() && index.substring.is_none() {
        return Err(TextError::NoIndexKind.into());
    }
    let sets = str_encode(value, index)?;
    let k = choose_contention_factor(max_contention, rng)?;
    let distinct = 1 + [
        TextIndexKind::Substring,
        TextIndexKind::Suffix,
        TextIndexKind::Prefix,
    ]
    .into_iter()
    .map(|kind| {
        sets.set(kind)
            .map_or(0, crate::text::StringSet::distinct_len)
    })
    .sum::<usize>();
    // One draw for all IVs, in the order libmongocrypt draws them one by one.
    let mut ivs = Zeroizing::new(vec![0u8; 16 * (2 + distinct)]);
    rng.fill(&mut ivs)?;
    let (iv_p, rest) = ivs.split_at(16);
    let (iv_v, iv_sets) = rest.split_at(16);
    let mut iv_sets = iv_sets.chunks_exact(16);

    let zero = [0u8; 32];
    let p = encrypted_tokens(tokens, iv_p, &zero, 0);
    let vb = value_bytes(&Bson::String(value.to_owned()))?;
    let mut iv = [0u8; 16];
    iv.copy_from_slice(iv_v);
    let ct = aead::cbc_aead_encrypt_with_iv(user.key, &iv, user.id.as_bytes(), &vb)?;
    let mut v = Vec::with_capacity(16 + ct.len());
    v.extend_from_slice(user.id.as_bytes());
    v.extend_from_slice(&ct);

    let exact_iv = iv_sets
        .next()
        .ok_or_else(|| Error::Random("too few IVs drawn for the text token sets".into()))?;
    let exact = FamilyMacs::<TextExact>::new(tokens).insert(
        tokens,
        &string_value_bytes(sets.exact())?,
        k,
        sets.msize(),
        exact_iv,
    );
    let owned = |kind| {
        sets.entries(kind)
            .map(|(b, c)| (b.to_vec(), c))
            .collect::<Vec<_>>()
            .into_iter()
    };
    let substring =
        family_sets::<TextSubstring>(owned(TextIndexKind::Substring), tokens, k, &mut iv_sets)?;
    let suffix = family_sets::<TextSuffix>(owned(TextIndexKind::Suffix), tokens, k, &mut iv_sets)?;
    let prefix = family_sets::<TextPrefix>(owned(TextIndexKind::Prefix), tokens, k, &mut iv_sets)?;

    Ok(InsertUpdatePayloadV2 {
        edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(zero),
        esc_derived_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(zero),
        encrypted_tokens: p,
        index_key_id: *tokens.key_id(),
        bson_type: ElementType::String,
        value: v,
        server_encryption_token: tokens.server_data_encryption_level1().clone(),
        server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(zero),
        contention_factor: k,
        edge_token_sets: None,
        sparsity: None,
        precision: None,
        trim_factor: None,
        index_min: None,
        index_max: None,
        text_search_token_sets: Some(Box::new(TextSearchTokenSets {
            exact,
            substring,
            suffix,
            prefix,
        })),
    })
}

/// Builds a text find payload (blob 18) for a `query` of `value` on a field
/// with `index`: the value is folded as the field folds, checked against
/// the kind's query lengths, and its un-contended tokens of that family
/// sent with the kind's parameters. Consumes no randomness.
pub fn encrypt_text_find(
    value: &str,
    index: &TextIndex,
    query: TextQuery,
    tokens: &IndexKeyTokens,
    max_contention: u64,
) -> Result<FindTextPayload> {
    let index = index.for_query(query)?;
    encrypt_text_find_spec(value, &index, tokens, max_contention)
}

/// [`encrypt_text_find`] for an index that already names only the queried
/// kind (a placeholder's spec).
fn encrypt_text_find_spec(
    value: &str,
    index: &TextIndex,
    tokens: &IndexKeyTokens,
    max_contention: u64,
) -> Result<FindTextPayload> {
    let (folded, query) = str_query(value, index)?;
    let v = string_value_bytes(folded.as_bytes())?;
    let token_sets = match query {
        TextQuery::Exact => TextFindTokenSets::Exact(FamilyMacs::<TextExact>::new(tokens).find(&v)),
        TextQuery::Substring => {
            TextFindTokenSets::Substring(FamilyMacs::<TextSubstring>::new(tokens).find(&v))
        }
        TextQuery::Suffix => {
            TextFindTokenSets::Suffix(FamilyMacs::<TextSuffix>::new(tokens).find(&v))
        }
        TextQuery::Prefix => {
            TextFindTokenSets::Prefix(FamilyMacs::<TextPrefix>::new(tokens).find(&v))
        }
    };
    Ok(FindTextPayload {
        token_sets,
        max_contention_factor: max_contention,
        index: *index,
    })
}

/// A payload built from a text placeholder.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per placeholder; boxing buys nothing
pub enum TextPayload {
    /// From an insert placeholder (`t = 1`).
    Insert(InsertUpdatePayloadV2),
    /// From a find placeholder (`t = 2`).
    Find(FindTextPayload),
}

impl TextPayload {
    /// The blob (first byte included).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            TextPayload::Insert(p) => p.encode(),
            TextPayload::Find(p) => p.encode(),
        }
    }
}

/// Builds the payload for a text placeholder (blob 3 with `a = 4`) from
/// query analysis. `tokens` must be the index key `ph.index_key_id`'s tokens
/// and `user` the key `ph.user_key_id`. Only inserts draw randomness.
pub fn encrypt_text_placeholder(
    ph: &EncryptionPlaceholder,
    tokens: &IndexKeyTokens,
    user: UserKey<'_>,
    rng: &mut dyn RandomSource,
) -> Result<TextPayload> {
    if ph.algorithm != PlaceholderAlgorithm::TextSearch {
        return Err(Error::InvalidArgument(
            "not a text-search placeholder (a != 4)".into(),
        ));
    }
    if tokens.key_id() != &ph.index_key_id || user.id != ph.user_key_id {
        return Err(Error::InvalidArgument(
            "the keys given do not match the placeholder's ki/ku".into(),
        ));
    }
    let cm = validate_max_contention(ph.max_contention)?;
    let Bson::Document(v) = &ph.value else {
        return Err(Error::decode(
            "FLE2EncryptionPlaceholder",
            "text-search placeholder 'v' must be a document",
        ));
    };
    let spec = TextSearchSpec::from_document(v)?;
    match ph.kind {
        PlaceholderType::Insert => {
            encrypt_text_insert(&spec.value, &spec.index, tokens, user, cm, rng)
                .map(TextPayload::Insert)
        }
        PlaceholderType::Find => {
            encrypt_text_find_spec(&spec.value, &spec.index, tokens, cm).map(TextPayload::Find)
        }
    }
}
