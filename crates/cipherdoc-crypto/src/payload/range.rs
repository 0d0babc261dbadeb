//! Range blobs: FLE2FindRangePayloadV2 (13, §6.4) and
//! FLE2IndexedRangeEncryptedValueV2 (15, §6.7).

use bson::spec::ElementType;
use bson::{Bson, RawBsonRef};

use super::iev::key_id_and_type;
use super::iup::{
    bin0_32, doc_array, fields, int32, int64, owned_bson, required, set_once, uint64,
};
use super::writer::DocWriter;
use super::{BlobSubtype, MetadataBlock, strip_subtype, value};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::server::Tag;
use crate::tokens::{EdcDerivedFromDataToken, EscDerivedFromDataToken, ServerDerivedFromDataToken};

/// A comparison operator of a range query (`mc_FLE2RangeOperator_t`, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeOperator {
    /// 1: `$gt`.
    Gt = 1,
    /// 2: `$gte`.
    Gte = 2,
    /// 3: `$lt`.
    Lt = 3,
    /// 4: `$lte`.
    Lte = 4,
}

impl RangeOperator {
    /// From the protocol number (1–4). 0 ("none") and others are `None`.
    pub fn from_i32(n: i32) -> Option<Self> {
        match n {
            1 => Some(Self::Gt),
            2 => Some(Self::Gte),
            3 => Some(Self::Lt),
            4 => Some(Self::Lte),
            _ => None,
        }
    }

    /// From the query operator name (`"$gt"`, `"$gte"`, `"$lt"`, `"$lte"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "$gt" => Some(Self::Gt),
            "$gte" => Some(Self::Gte),
            "$lt" => Some(Self::Lt),
            "$lte" => Some(Self::Lte),
            _ => None,
        }
    }

    /// The query operator name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gt => "$gt",
            Self::Gte => "$gte",
            Self::Lt => "$lt",
            Self::Lte => "$lte",
        }
    }

    /// Whether this operator bounds from below (`$gt`/`$gte`).
    pub fn is_lower(self) -> bool {
        matches!(self, Self::Gt | Self::Gte)
    }

    /// Whether the bound itself is included (`$gte`/`$lte`).
    pub fn is_inclusive(self) -> bool {
        matches!(self, Self::Gte | Self::Lte)
    }
}

fn operator(what: &'static str, key: &str, v: RawBsonRef<'_>) -> Result<RangeOperator> {
    let n = int32(what, key, v)?;
    RangeOperator::from_i32(n).ok_or_else(|| {
        Error::decode(
            what,
            format!("field '{key}' must be a range operator 1-4, got {n}"),
        )
    })
}

/// Writes a bound (`mn`/`mx`) as an element of its own BSON type.
fn write_value(w: &mut DocWriter, key: &str, v: &Bson) {
    // Bounds are plain numbers; serialising them cannot fail, but if it ever
    // did, an empty value would make the document invalid rather than panic.
    let vb = value::value_bytes(v)
        .map(|z| z.to_vec())
        .unwrap_or_default();
    w.raw(key, v.element_type() as u8, &vb);
}

/// One element of a range find payload's `g` (EdgeFindTokenSetV2): the
/// un-contended tokens of one mincover string, field order `d, s, l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeFindTokenSetV2 {
    /// `d`: EDCDerivedFromDataToken of the mincover string.
    pub edc_derived_token: EdcDerivedFromDataToken,
    /// `s`: ESCDerivedFromDataToken of the mincover string.
    pub esc_derived_token: EscDerivedFromDataToken,
    /// `l`: ServerDerivedFromDataToken of the mincover string.
    pub server_derived_from_data_token: ServerDerivedFromDataToken,
}

impl EdgeFindTokenSetV2 {
    const WHAT: &'static str = "EdgeFindTokenSetV2";

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
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            edc_derived_token: EdcDerivedFromDataToken::from_bytes(required(what, "d", d)?),
            esc_derived_token: EscDerivedFromDataToken::from_bytes(required(what, "s", s)?),
            server_derived_from_data_token: ServerDerivedFromDataToken::from_bytes(required(
                what, "l", l,
            )?),
        })
    }
}

/// The `payload` sub-document of a full range find payload
/// (`FLE2FindRangePayloadEdgesInfoV2`): `{g: [...], cm}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindRangeEdgesInfoV2 {
    /// `g`: one token set per mincover string, in mincover order.
    pub edges: Vec<EdgeFindTokenSetV2>,
    /// `cm`: maximum contention factor; the server expands `0..=cm`.
    pub max_contention_factor: u64,
}

impl FindRangeEdgesInfoV2 {
    const WHAT: &'static str = "FLE2FindRangePayloadEdgesInfoV2";

    fn encode(&self) -> Vec<u8> {
        let mut w = DocWriter::new(None, 140 * self.edges.len() + 32);
        let mut arr = DocWriter::new(None, 140 * self.edges.len() + 8);
        for (i, e) in self.edges.iter().enumerate() {
            e.encode_into(&mut arr, &i.to_string());
        }
        w.raw("g", 0x04, &arr.finish());
        // Contention factors are validated below i64::MAX; saturate defensively.
        w.int64(
            "cm",
            i64::try_from(self.max_contention_factor).unwrap_or(i64::MAX),
        );
        w.finish()
    }

    fn decode(doc: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let (mut g, mut cm) = (None, None);
        fields(what, doc, |k, v| match k {
            "g" => set_once(
                what,
                k,
                &mut g,
                doc_array(what, k, v, EdgeFindTokenSetV2::decode)?,
            ),
            "cm" => set_once(what, k, &mut cm, uint64(what, k, v)?),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            edges: required(what, "g", g)?,
            max_contention_factor: required(what, "cm", cm)?,
        })
    }
}

/// FLE2FindRangePayloadV2, blob subtype 13 (§6.4).
///
/// A two-sided query is sent as two comparisons sharing `payload_id`: the
/// first carries `payload` (the whole mincover) and the index parameters, the
/// second is a **stub** (`payload == None`, no `sp`/`pn`/`tf`/`mn`/`mx`) that
/// the server rewrites to "always true".
#[derive(Debug, Clone, PartialEq)]
pub struct FindRangePayloadV2 {
    /// `payload`: the mincover tokens and `cm`; `None` for a stub.
    pub payload: Option<FindRangeEdgesInfoV2>,
    /// `payloadId`: shared by the two halves of one query.
    pub payload_id: i32,
    /// `firstOperator`.
    pub first_operator: RangeOperator,
    /// `secondOperator` (two-sided queries only).
    pub second_operator: Option<RangeOperator>,
    /// `sp`: sparsity (with `payload`).
    pub sparsity: Option<i64>,
    /// `pn`: precision (with `payload`, when set).
    pub precision: Option<i32>,
    /// `tf`: trimFactor used (with `payload`).
    pub trim_factor: Option<i32>,
    /// `mn`: index min (with `payload`), of the index's BSON type.
    pub index_min: Option<Bson>,
    /// `mx`: index max (with `payload`).
    pub index_max: Option<Bson>,
}

impl FindRangePayloadV2 {
    const WHAT: &'static str = "FLE2FindRangePayloadV2";

    /// A stub: the second half of a two-sided query (`{payloadId,
    /// firstOperator, secondOperator?}` only).
    pub fn stub(
        payload_id: i32,
        first_operator: RangeOperator,
        second_operator: Option<RangeOperator>,
    ) -> Self {
        Self {
            payload: None,
            payload_id,
            first_operator,
            second_operator,
            sparsity: None,
            precision: None,
            trim_factor: None,
            index_min: None,
            index_max: None,
        }
    }

    /// Whether this is a stub (no `payload`); the server treats it as
    /// "always true" (§9.6).
    pub fn is_stub(&self) -> bool {
        self.payload.is_none()
    }

    /// The blob: `0x0D ‖ BSON` in libmongocrypt's field order (payload,
    /// payloadId, firstOperator, secondOperator, sp, pn, tf, mn, mx).
    pub fn encode(&self) -> Vec<u8> {
        let n = self.payload.as_ref().map_or(0, |p| p.edges.len());
        let mut w = DocWriter::new(
            Some(BlobSubtype::Fle2FindRangePayloadV2 as u8),
            200 + 140 * n,
        );
        if let Some(p) = &self.payload {
            w.raw("payload", 0x03, &p.encode());
        }
        w.int32("payloadId", self.payload_id);
        w.int32("firstOperator", self.first_operator as i32);
        if let Some(op) = self.second_operator {
            w.int32("secondOperator", op as i32);
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
            write_value(&mut w, "mn", mn);
        }
        if let Some(mx) = &self.index_max {
            write_value(&mut w, "mx", mx);
        }
        w.finish()
    }

    /// Parses a subtype-13 blob. Unknown, duplicate or missing fields and
    /// wrong types are errors; never panics.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2FindRangePayloadV2)?;
        let (mut payload, mut id, mut first, mut second) = (None, None, None, None);
        let (mut sp, mut pn, mut tf, mut mn, mut mx) = (None, None, None, None, None);
        fields(what, body, |k, v| match k {
            "payload" => {
                let RawBsonRef::Document(doc) = v else {
                    return Err(Error::decode(what, "field 'payload' must be a document"));
                };
                set_once(
                    what,
                    k,
                    &mut payload,
                    FindRangeEdgesInfoV2::decode(doc.as_bytes())?,
                )
            }
            "payloadId" => set_once(what, k, &mut id, int32(what, k, v)?),
            "firstOperator" => set_once(what, k, &mut first, operator(what, k, v)?),
            "secondOperator" => set_once(what, k, &mut second, operator(what, k, v)?),
            "sp" => set_once(what, k, &mut sp, int64(what, k, v)?),
            "pn" => set_once(what, k, &mut pn, int32(what, k, v)?),
            "tf" => set_once(what, k, &mut tf, int32(what, k, v)?),
            "mn" => set_once(what, k, &mut mn, owned_bson(what, k, v)?),
            "mx" => set_once(what, k, &mut mx, owned_bson(what, k, v)?),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            payload,
            payload_id: required(what, "payloadId", id)?,
            first_operator: required(what, "firstOperator", first)?,
            second_operator: second,
            sparsity: sp,
            precision: pn,
            trim_factor: tf,
            index_min: mn,
            index_max: mx,
        })
    }
}

/// FLE2IndexedRangeEncryptedValueV2, blob subtype 15 (§6.7):
/// `0x0F ‖ S_KeyId ‖ T(value) ‖ edge_count(u8) ‖ SEV ‖ metadata(96) × edge_count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRangeEncryptedValueV2 {
    /// `S_KeyId`: the index key id.
    pub index_key_id: KeyId,
    /// BSON type of the original value.
    pub bson_type: ElementType,
    /// `SEV = EncryptCTR(ServerDataEncryptionLevel1Token, K_KeyId ‖ ClientEncryptedValue)`.
    pub server_encrypted_value: Vec<u8>,
    /// One metadata block per edge, in the insert payload's `g` order.
    pub metadata: Vec<MetadataBlock>,
}

impl IndexedRangeEncryptedValueV2 {
    const WHAT: &'static str = "FLE2IndexedRangeEncryptedValueV2";
    /// The shortest SEV accepted: IV and a user key id.
    const MIN_SEV: usize = 32;
    /// `edge_count` is one byte.
    pub const MAX_EDGES: usize = 255;

    /// The tags of all edges (what goes into `__safeContent__`), in edge order.
    pub fn tags(&self) -> impl Iterator<Item = Tag> + '_ {
        self.metadata.iter().map(|m| m.tag)
    }

    /// The blob. Fails when there are no metadata blocks or more than 255
    /// (the edge count is a single byte).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let n = u8::try_from(self.metadata.len())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a range stored value needs 1 to {} metadata blocks, got {}",
                    Self::MAX_EDGES,
                    self.metadata.len()
                ))
            })?;
        let mut out = Vec::with_capacity(
            19 + self.server_encrypted_value.len() + MetadataBlock::LEN * self.metadata.len(),
        );
        out.push(BlobSubtype::Fle2IndexedRangeEncryptedValueV2 as u8);
        out.extend_from_slice(self.index_key_id.as_bytes());
        out.push(self.bson_type as u8);
        out.push(n);
        out.extend_from_slice(&self.server_encrypted_value);
        for m in &self.metadata {
            out.extend_from_slice(&m.to_bytes());
        }
        Ok(out)
    }

    /// Parses a subtype-15 blob. The SEV length is whatever remains after the
    /// `edge_count` metadata blocks; it must hold at least an IV and a key id.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2IndexedRangeEncryptedValueV2)?;
        let (index_key_id, bson_type, rest) = key_id_and_type(what, body)?;
        let (&n, rest) = rest
            .split_first()
            .ok_or_else(|| Error::decode(what, "too short: no edge count"))?;
        if n == 0 {
            return Err(Error::decode(what, "edge count must be at least 1"));
        }
        let meta_len = usize::from(n) * MetadataBlock::LEN;
        let sev_len = rest
            .len()
            .checked_sub(meta_len)
            .filter(|l| *l >= Self::MIN_SEV)
            .ok_or_else(|| {
                Error::decode(
                    what,
                    format!("too short for {n} metadata blocks and a server-encrypted value"),
                )
            })?;
        let (sev, meta) = rest.split_at(sev_len);
        let metadata = meta
            .chunks_exact(MetadataBlock::LEN)
            .map(MetadataBlock::from_slice)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            index_key_id,
            bson_type,
            server_encrypted_value: sev.to_vec(),
            metadata,
        })
    }
}
