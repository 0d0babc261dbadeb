//! Packed stored values: FLE2IndexedEqualityEncryptedValueV2 (14) and
//! FLE2UnindexedEncryptedValueV2 (16), §6.5–6.8.

use bson::spec::ElementType;

use super::{BlobSubtype, strip_subtype};
use crate::error::{Error, Result};
use crate::key::KeyId;
use crate::server::Tag;

fn split<'a>(what: &'static str, b: &'a [u8], n: usize) -> Result<(&'a [u8], &'a [u8])> {
    if b.len() < n {
        return Err(Error::decode(what, "too short"));
    }
    Ok(b.split_at(n))
}

pub(crate) fn key_id_and_type<'a>(
    what: &'static str,
    b: &'a [u8],
) -> Result<(KeyId, ElementType, &'a [u8])> {
    let (id, rest) = split(what, b, 16)?;
    let (t, rest) = split(what, rest, 1)?;
    let ty = ElementType::from(t[0])
        .ok_or_else(|| Error::decode(what, format!("unknown BSON type {}", t[0])))?;
    Ok((KeyId::from_slice(id)?, ty, rest))
}

/// One 96-byte metadata block (`FLE2TagAndEncryptedMetadataBlock`), §6.5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataBlock {
    /// `EncryptCTR(ServerCountAndContentionFactorEncryptionToken, LE64(count) ‖ LE64(k))`.
    pub encrypted_count: [u8; 32],
    /// `HMAC(EDCTwiceDerivedToken, LE64(count))`.
    pub tag: Tag,
    /// `EncryptCTR(ServerZerosEncryptionToken, 16 zero bytes)`.
    pub encrypted_zeros: [u8; 32],
}

impl MetadataBlock {
    /// Encoded length.
    pub const LEN: usize = 96;

    /// The 96 bytes.
    pub fn to_bytes(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..32].copy_from_slice(&self.encrypted_count);
        out[32..64].copy_from_slice(self.tag.as_bytes());
        out[64..].copy_from_slice(&self.encrypted_zeros);
        out
    }

    /// From exactly 96 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self> {
        if b.len() != Self::LEN {
            return Err(Error::decode("metadata block", "must be 96 bytes"));
        }
        let mut c = [0u8; 32];
        let mut t = [0u8; 32];
        let mut z = [0u8; 32];
        c.copy_from_slice(&b[..32]);
        t.copy_from_slice(&b[32..64]);
        z.copy_from_slice(&b[64..]);
        Ok(Self {
            encrypted_count: c,
            tag: Tag::from_bytes(t),
            encrypted_zeros: z,
        })
    }
}

/// FLE2IndexedEqualityEncryptedValueV2, blob subtype 14:
/// `0x0E ‖ S_KeyId ‖ T(value) ‖ SEV ‖ metadata(96)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEqualityEncryptedValueV2 {
    /// `S_KeyId`: the index key id.
    pub index_key_id: KeyId,
    /// BSON type of the original value.
    pub bson_type: ElementType,
    /// `SEV = EncryptCTR(ServerDataEncryptionLevel1Token, K_KeyId ‖ ClientEncryptedValue)`.
    pub server_encrypted_value: Vec<u8>,
    /// The metadata block (tag, encrypted count, encrypted zeros).
    pub metadata: MetadataBlock,
}

impl IndexedEqualityEncryptedValueV2 {
    const WHAT: &'static str = "FLE2IndexedEqualityEncryptedValueV2";
    /// The shortest SEV accepted: IV and a user key id.
    const MIN_SEV: usize = 32;

    /// The blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.server_encrypted_value.len() + 96);
        out.push(BlobSubtype::Fle2IndexedEqualityEncryptedValueV2 as u8);
        out.extend_from_slice(self.index_key_id.as_bytes());
        out.push(self.bson_type as u8);
        out.extend_from_slice(&self.server_encrypted_value);
        out.extend_from_slice(&self.metadata.to_bytes());
        out
    }

    /// Parses a subtype-14 blob.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2IndexedEqualityEncryptedValueV2)?;
        let (index_key_id, bson_type, rest) = key_id_and_type(what, body)?;
        if rest.len() < Self::MIN_SEV + MetadataBlock::LEN {
            return Err(Error::decode(what, "too short"));
        }
        let (sev, meta) = rest.split_at(rest.len() - MetadataBlock::LEN);
        Ok(Self {
            index_key_id,
            bson_type,
            server_encrypted_value: sev.to_vec(),
            metadata: MetadataBlock::from_slice(meta)?,
        })
    }
}

/// FLE2UnindexedEncryptedValueV2, blob subtype 16:
/// `0x10 ‖ K_KeyId ‖ T(value) ‖ CBC-AEAD(K_Key, VB(value), A = first 18 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnindexedEncryptedValueV2 {
    /// `K_KeyId`: the user key id.
    pub key_id: KeyId,
    /// BSON type of the value.
    pub bson_type: ElementType,
    /// The CBC-AEAD ciphertext.
    pub ciphertext: Vec<u8>,
}

impl UnindexedEncryptedValueV2 {
    const WHAT: &'static str = "FLE2UnindexedEncryptedValueV2";

    /// The associated data: `0x10 ‖ K_KeyId ‖ T(value)`.
    pub fn associated_data(&self) -> [u8; 18] {
        let mut a = [0u8; 18];
        a[0] = BlobSubtype::Fle2UnindexedEncryptedValueV2 as u8;
        a[1..17].copy_from_slice(self.key_id.as_bytes());
        a[17] = self.bson_type as u8;
        a
    }

    /// The blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.ciphertext.len());
        out.extend_from_slice(&self.associated_data());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses a subtype-16 blob.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2UnindexedEncryptedValueV2)?;
        let (key_id, bson_type, ct) = key_id_and_type(what, body)?;
        if ct.is_empty() {
            return Err(Error::decode(what, "no ciphertext"));
        }
        Ok(Self {
            key_id,
            bson_type,
            ciphertext: ct.to_vec(),
        })
    }
}
