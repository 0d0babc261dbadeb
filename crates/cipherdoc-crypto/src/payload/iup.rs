//! FLE2InsertUpdatePayloadV2 (11) and FLE2FindEqualityPayloadV2 (12), §6.2–6.3.

use bson::spec::{BinarySubtype, ElementType};
use bson::{Bson, RawBsonRef, RawDocument};

use super::writer::DocWriter;
use super::{BlobSubtype, strip_subtype, value};
use crate::error::{Error, Result};
use crate::key::{KeyId, key_id_from_raw};
use crate::tokens::{
    EdcDerivedFromDataToken, EdcDerivedFromDataTokenAndContentionFactor, EscDerivedFromDataToken,
    EscDerivedFromDataTokenAndContentionFactor, ServerDataEncryptionLevel1Token,
    ServerDerivedFromDataToken,
};

// ---------------------------------------------------------------------------
// Shared field readers.

pub(crate) fn fields<'a>(
    what: &'static str,
    doc_bytes: &'a [u8],
    mut f: impl FnMut(&'a str, RawBsonRef<'a>) -> Result<()>,
) -> Result<()> {
    let doc = RawDocument::from_bytes(doc_bytes)
        .map_err(|e| Error::decode(what, format!("invalid BSON: {e}")))?;
    for el in doc {
        let (k, v) = el.map_err(|e| Error::decode(what, format!("invalid BSON: {e}")))?;
        f(k, v)?;
    }
    Ok(())
}

pub(crate) fn set_once<T>(what: &'static str, key: &str, slot: &mut Option<T>, v: T) -> Result<()> {
    if slot.is_some() {
        return Err(Error::decode(what, format!("duplicate field '{key}'")));
    }
    *slot = Some(v);
    Ok(())
}

pub(crate) fn required<T>(what: &'static str, key: &str, slot: Option<T>) -> Result<T> {
    slot.ok_or_else(|| Error::decode(what, format!("missing field '{key}'")))
}

pub(crate) fn bin0<'a>(what: &'static str, key: &str, v: RawBsonRef<'a>) -> Result<&'a [u8]> {
    match v {
        RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Generic => Ok(b.bytes),
        _ => Err(Error::decode(
            what,
            format!("field '{key}' must be binary subtype 0"),
        )),
    }
}

pub(crate) fn bin0_32(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<[u8; 32]> {
    bin0(what, key, v)?
        .try_into()
        .map_err(|_| Error::decode(what, format!("field '{key}' must be 32 bytes")))
}

pub(crate) fn int32(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<i32> {
    match v {
        RawBsonRef::Int32(n) => Ok(n),
        _ => Err(Error::decode(what, format!("field '{key}' must be int32"))),
    }
}

pub(crate) fn int64(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<i64> {
    match v {
        RawBsonRef::Int64(n) => Ok(n),
        _ => Err(Error::decode(what, format!("field '{key}' must be int64"))),
    }
}

pub(crate) fn uint64(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<u64> {
    u64::try_from(int64(what, key, v)?)
        .map_err(|_| Error::decode(what, format!("field '{key}' must not be negative")))
}

/// An array of sub-documents (`g`, the edge token sets), each decoded by
/// `decode`.
pub(crate) fn doc_array<T>(
    what: &'static str,
    key: &str,
    v: RawBsonRef<'_>,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<T>> {
    let RawBsonRef::Array(arr) = v else {
        return Err(Error::decode(
            what,
            format!("field '{key}' must be an array"),
        ));
    };
    arr.into_iter()
        .map(|el| {
            let el = el.map_err(|e| Error::decode(what, format!("invalid '{key}': {e}")))?;
            let RawBsonRef::Document(doc) = el else {
                return Err(Error::decode(
                    what,
                    format!("'{key}' elements must be documents"),
                ));
            };
            decode(doc.as_bytes())
        })
        .collect()
}

pub(crate) fn owned_bson(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<Bson> {
    Bson::try_from(v.to_raw_bson()).map_err(|e| Error::decode(what, format!("field '{key}': {e}")))
}

pub(crate) fn element_type(what: &'static str, t: i32) -> Result<ElementType> {
    u8::try_from(t)
        .ok()
        .and_then(ElementType::from)
        .ok_or_else(|| Error::decode(what, format!("unknown BSON type {t}")))
}

/// `k`/`cm` are int64 on the wire; decoding and the client API keep them
/// below `i64::MAX`, so this only saturates values built by hand.
fn u64_to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn value_bytes_of(v: &Bson) -> Vec<u8> {
    // Range bounds are plain numbers; serialising them cannot fail.
    value::value_bytes(v)
        .map(|z| z.to_vec())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------

/// One element of the range field `g` (EdgeTokenSetV2), field order `d, s, l, p`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeTokenSetV2 {
    /// `d`: EDCDerivedFromDataTokenAndContentionFactor of the edge.
    pub edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor,
    /// `s`: ESCDerivedFromDataTokenAndContentionFactor of the edge.
    pub esc_derived_token: EscDerivedFromDataTokenAndContentionFactor,
    /// `l`: ServerDerivedFromDataToken of the edge.
    pub server_derived_from_data_token: ServerDerivedFromDataToken,
    /// `p`: `EncryptCTR(ECOCToken, s ‖ isLeaf)` (49 bytes).
    pub encrypted_tokens: Vec<u8>,
}

impl EdgeTokenSetV2 {
    const WHAT: &'static str = "EdgeTokenSetV2";

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
            edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(required(
                what, "d", d,
            )?),
            esc_derived_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(required(
                what, "s", s,
            )?),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(required(
                what, "l", l,
            )?),
            encrypted_tokens: required(what, "p", p)?,
        })
    }
}

/// FLE2InsertUpdatePayloadV2, blob subtype 11 ("IUP"), §6.2.
///
/// The range fields (`g` … `mx`) are `None` for equality and unindexed-free
/// inserts; range insert payloads fill them.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertUpdatePayloadV2 {
    /// `d`: EDCDerivedFromDataTokenAndContentionFactor.
    pub edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor,
    /// `s`: ESCDerivedFromDataTokenAndContentionFactor.
    pub esc_derived_token: EscDerivedFromDataTokenAndContentionFactor,
    /// `p`: `EncryptCTR(ECOCToken, s)` (48 bytes; 49 with the range isLeaf byte).
    pub encrypted_tokens: Vec<u8>,
    /// `u`: index key id.
    pub index_key_id: KeyId,
    /// `t`: BSON type of the value.
    pub bson_type: ElementType,
    /// `v`: `user key id (16) ‖ CBC-AEAD(userKey, VB(value), A = user key id)`.
    pub value: Vec<u8>,
    /// `e`: ServerDataEncryptionLevel1Token.
    pub server_encryption_token: ServerDataEncryptionLevel1Token,
    /// `l`: ServerDerivedFromDataToken.
    pub server_derived_from_data_token: ServerDerivedFromDataToken,
    /// `k`: the contention factor chosen.
    pub contention_factor: u64,
    /// `g`: range edges (range only).
    pub edge_token_sets: Option<Vec<EdgeTokenSetV2>>,
    /// `sp`: sparsity (range only).
    pub sparsity: Option<i64>,
    /// `pn`: precision (range only, when set).
    pub precision: Option<i32>,
    /// `tf`: trimFactor used (range only).
    pub trim_factor: Option<i32>,
    /// `mn`: index min (range only).
    pub index_min: Option<Bson>,
    /// `mx`: index max (range only).
    pub index_max: Option<Bson>,
    /// `b`: the text-search token sets (text only; the top-level `d`, `s`,
    /// `l` are then 32 zero bytes and `p` encrypts them, as libmongocrypt
    /// writes them).
    pub text_search_token_sets: Option<Box<super::TextSearchTokenSets>>,
}

impl InsertUpdatePayloadV2 {
    const WHAT: &'static str = "FLE2InsertUpdatePayloadV2";

    /// The user key id (first 16 bytes of `v`).
    pub fn user_key_id(&self) -> Result<KeyId> {
        self.value
            .get(..16)
            .ok_or_else(|| Error::decode(Self::WHAT, "'v' is shorter than a key id"))
            .and_then(KeyId::from_slice)
    }

    /// The client ciphertext (`v` after the user key id).
    pub fn client_ciphertext(&self) -> &[u8] {
        self.value.get(16..).unwrap_or(&[])
    }

    /// The blob: `0x0B ‖ BSON` with fields in libmongocrypt order.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = DocWriter::new(
            Some(BlobSubtype::Fle2InsertUpdatePayloadV2 as u8),
            360 + self.value.len(),
        );
        w.binary("d", 0, self.edc_derived_token.as_bytes());
        w.binary("s", 0, self.esc_derived_token.as_bytes());
        w.binary("p", 0, &self.encrypted_tokens);
        w.binary("u", 4, self.index_key_id.as_bytes());
        w.int32("t", i32::from(self.bson_type as u8));
        w.binary("v", 0, &self.value);
        w.binary("e", 0, self.server_encryption_token.as_bytes());
        w.binary("l", 0, self.server_derived_from_data_token.as_bytes());
        w.int64("k", u64_to_i64(self.contention_factor));
        if let Some(g) = &self.edge_token_sets {
            let mut arr = DocWriter::new(None, 200 * g.len() + 8);
            for (i, e) in g.iter().enumerate() {
                e.encode_into(&mut arr, &i.to_string());
            }
            w.raw("g", 0x04, &arr.finish());
        }
        if let Some(sp) = self.sparsity {
            w.int64("sp", sp);
        }
        if let Some(pn) = self.precision {
            w.int32("pn", pn);
        }
        if let Some(tf) = self.trim_factor {
            w.int32("tf", tf);
        }
        if let Some(mn) = &self.index_min {
            w.raw("mn", mn.element_type() as u8, &value_bytes_of(mn));
        }
        if let Some(mx) = &self.index_max {
            w.raw("mx", mx.element_type() as u8, &value_bytes_of(mx));
        }
        if let Some(b) = &self.text_search_token_sets {
            b.encode_into(&mut w, "b");
        }
        w.finish()
    }

    /// Parses a subtype-11 blob.
    #[allow(clippy::many_single_char_names)] // names mirror the protocol fields
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2InsertUpdatePayloadV2)?;
        let (mut d, mut s, mut p, mut u, mut t, mut v, mut e, mut l, mut k) =
            (None, None, None, None, None, None, None, None, None);
        let (mut g, mut sp, mut pn, mut tf, mut mn, mut mx) = (None, None, None, None, None, None);
        let mut b = None;
        fields(what, body, |key, val| match key {
            "d" => set_once(what, key, &mut d, bin0_32(what, key, val)?),
            "s" => set_once(what, key, &mut s, bin0_32(what, key, val)?),
            "p" => set_once(what, key, &mut p, bin0(what, key, val)?.to_vec()),
            "u" => set_once(what, key, &mut u, key_id_from_raw(what, val)?),
            "t" => set_once(
                what,
                key,
                &mut t,
                element_type(what, int32(what, key, val)?)?,
            ),
            "v" => {
                let b = bin0(what, key, val)?;
                if b.len() < 16 {
                    return Err(Error::decode(what, "'v' is shorter than a key id"));
                }
                set_once(what, key, &mut v, b.to_vec())
            }
            "e" => set_once(what, key, &mut e, bin0_32(what, key, val)?),
            "l" => set_once(what, key, &mut l, bin0_32(what, key, val)?),
            "k" => set_once(what, key, &mut k, uint64(what, key, val)?),
            "g" => set_once(
                what,
                key,
                &mut g,
                doc_array(what, key, val, EdgeTokenSetV2::decode)?,
            ),
            "sp" => set_once(what, key, &mut sp, int64(what, key, val)?),
            "pn" => set_once(what, key, &mut pn, int32(what, key, val)?),
            "tf" => set_once(what, key, &mut tf, int32(what, key, val)?),
            "mn" => set_once(what, key, &mut mn, owned_bson(what, key, val)?),
            "mx" => set_once(what, key, &mut mx, owned_bson(what, key, val)?),
            "b" => set_once(
                what,
                key,
                &mut b,
                Box::new(super::TextSearchTokenSets::decode_field(what, key, val)?),
            ),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            edc_derived_token: EdcDerivedFromDataTokenAndContentionFactor::from_bytes(required(
                what, "d", d,
            )?),
            esc_derived_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(required(
                what, "s", s,
            )?),
            encrypted_tokens: required(what, "p", p)?,
            index_key_id: required(what, "u", u)?,
            bson_type: required(what, "t", t)?,
            value: required(what, "v", v)?,
            server_encryption_token: ServerDataEncryptionLevel1Token::from_bytes(required(
                what, "e", e,
            )?),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(required(
                what, "l", l,
            )?),
            contention_factor: required(what, "k", k)?,
            edge_token_sets: g,
            sparsity: sp,
            precision: pn,
            trim_factor: tf,
            index_min: mn,
            index_max: mx,
            text_search_token_sets: b,
        })
    }
}

/// FLE2FindEqualityPayloadV2, blob subtype 12, §6.3: the un-contended data
/// tokens and the maximum contention factor; the server expands `cm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindEqualityPayloadV2 {
    /// `d`: EDCDerivedFromDataToken.
    pub edc_derived_token: EdcDerivedFromDataToken,
    /// `s`: ESCDerivedFromDataToken.
    pub esc_derived_token: EscDerivedFromDataToken,
    /// `l`: ServerDerivedFromDataToken.
    pub server_derived_from_data_token: ServerDerivedFromDataToken,
    /// `cm`: maximum contention factor.
    pub max_contention_factor: u64,
}

impl FindEqualityPayloadV2 {
    const WHAT: &'static str = "FLE2FindEqualityPayloadV2";

    /// The blob: `0x0C ‖ BSON{d, s, l, cm}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = DocWriter::new(Some(BlobSubtype::Fle2FindEqualityPayloadV2 as u8), 140);
        w.binary("d", 0, self.edc_derived_token.as_bytes());
        w.binary("s", 0, self.esc_derived_token.as_bytes());
        w.binary("l", 0, self.server_derived_from_data_token.as_bytes());
        w.int64("cm", u64_to_i64(self.max_contention_factor));
        w.finish()
    }

    /// Parses a subtype-12 blob.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2FindEqualityPayloadV2)?;
        let (mut d, mut s, mut l, mut cm) = (None, None, None, None);
        fields(what, body, |k, v| match k {
            "d" => set_once(what, k, &mut d, bin0_32(what, k, v)?),
            "s" => set_once(what, k, &mut s, bin0_32(what, k, v)?),
            "l" => set_once(what, k, &mut l, bin0_32(what, k, v)?),
            "cm" => set_once(what, k, &mut cm, uint64(what, k, v)?),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            edc_derived_token: EdcDerivedFromDataToken::from_bytes(required(what, "d", d)?),
            esc_derived_token: EscDerivedFromDataToken::from_bytes(required(what, "s", s)?),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(required(
                what, "l", l,
            )?),
            max_contention_factor: required(what, "cm", cm)?,
        })
    }
}
