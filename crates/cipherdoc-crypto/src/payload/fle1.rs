//! FLE1 ciphertexts, blob subtypes 1 and 2 (§5.1).

use bson::spec::ElementType;

use super::iev::key_id_and_type;
use crate::error::{Error, Result};
use crate::key::KeyId;

/// Which FLE1 algorithm produced a ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fle1Algorithm {
    /// `AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic` (subtype 1).
    Deterministic = 1,
    /// `AEAD_AES_256_CBC_HMAC_SHA_512-Random` (subtype 2).
    Random = 2,
}

/// An FLE1 ciphertext: `subtype ‖ key_uuid ‖ T(value) ‖ C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fle1EncryptedValue {
    /// Deterministic (1) or random (2).
    pub algorithm: Fle1Algorithm,
    /// The data key id.
    pub key_id: KeyId,
    /// BSON type of the value.
    pub bson_type: ElementType,
    /// The §2.2 ciphertext `IV ‖ S ‖ T`.
    pub ciphertext: Vec<u8>,
}

impl Fle1EncryptedValue {
    const WHAT: &'static str = "FLE1 encrypted value";

    /// The associated data: the first 18 bytes of the blob.
    pub fn associated_data(&self) -> [u8; 18] {
        let mut a = [0u8; 18];
        a[0] = self.algorithm as u8;
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

    /// Parses a subtype-1 or -2 blob (minimum 19 bytes).
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let (first, body) = blob
            .split_first()
            .ok_or_else(|| Error::decode(what, "empty blob"))?;
        let algorithm = match first {
            1 => Fle1Algorithm::Deterministic,
            2 => Fle1Algorithm::Random,
            b => {
                return Err(Error::decode(
                    what,
                    format!("expected blob subtype 1 or 2, got {b}"),
                ));
            }
        };
        let (key_id, bson_type, ct) = key_id_and_type(what, body)?;
        if ct.is_empty() {
            return Err(Error::decode(what, "no ciphertext"));
        }
        Ok(Self {
            algorithm,
            key_id,
            bson_type,
            ciphertext: ct.to_vec(),
        })
    }
}
