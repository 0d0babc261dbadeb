//! Codecs for BSON binary subtype 6 blobs (qe-protocol §5, §6).
//!
//! Each type has `encode(&self) -> Vec<u8>` (the full blob, first byte
//! included) and `decode(&[u8]) -> Result<Self>`. Decoders never panic: unknown,
//! duplicate or missing fields and wrong types are [`Error::Decode`]. Encoders
//! write fields in libmongocrypt's order, so outputs match its bytes.

mod fle1;
mod iev;
mod iup;
mod placeholder;
mod range;
mod range_spec;
mod text;
mod value;
mod writer;

pub use fle1::{Fle1Algorithm, Fle1EncryptedValue};
pub(crate) use iev::key_id_and_type as iev_key_id_and_type;
pub use iev::{IndexedEqualityEncryptedValueV2, MetadataBlock, UnindexedEncryptedValueV2};
pub use iup::{EdgeTokenSetV2, FindEqualityPayloadV2, InsertUpdatePayloadV2};
pub use placeholder::{EncryptionPlaceholder, PlaceholderAlgorithm, PlaceholderType};
pub use range::{
    EdgeFindTokenSetV2, FindRangeEdgesInfoV2, FindRangePayloadV2, IndexedRangeEncryptedValueV2,
    RangeOperator,
};
pub use range_spec::{RangeEdgesInfo, RangeFindSpec, RangeInsertSpec};
pub use text::{
    FindTextPayload, IndexedTextEncryptedValue, TextFindTokenSet, TextFindTokenSets,
    TextSearchTokenSets, TextTokenSet,
};
pub use value::{BsonValueBytes, value_bytes, value_from_bytes};

use crate::error::{Error, Result};

/// The first byte of an encrypted blob (`EncryptedBinDataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum BlobSubtype {
    /// 0: FLE1 placeholder from query analysis.
    Fle1EncryptionPlaceholder = 0,
    /// 1: FLE1 deterministic ciphertext.
    Fle1DeterministicEncryptedValue = 1,
    /// 2: FLE1 random ciphertext.
    Fle1RandomEncryptedValue = 2,
    /// 3: QE placeholder from query analysis.
    Fle2EncryptionPlaceholder = 3,
    /// 4: protocol v1 insert payload (6.0; rejected by 7.0+).
    Fle2InsertUpdatePayload = 4,
    /// 5: protocol v1 equality find payload.
    Fle2FindEqualityPayload = 5,
    /// 6: protocol v1 unindexed value.
    Fle2UnindexedEncryptedValue = 6,
    /// 7: protocol v1 indexed equality value.
    Fle2IndexedEqualityEncryptedValue = 7,
    /// 9: protocol v1 indexed range value.
    Fle2IndexedRangeEncryptedValue = 9,
    /// 10: protocol v1 range find payload.
    Fle2FindRangePayload = 10,
    /// 11: insert/update payload (v2).
    Fle2InsertUpdatePayloadV2 = 11,
    /// 12: equality find payload (v2).
    Fle2FindEqualityPayloadV2 = 12,
    /// 13: range find payload (v2).
    Fle2FindRangePayloadV2 = 13,
    /// 14: stored indexed equality value (v2).
    Fle2IndexedEqualityEncryptedValueV2 = 14,
    /// 15: stored indexed range value (v2).
    Fle2IndexedRangeEncryptedValueV2 = 15,
    /// 16: stored unindexed value (v2).
    Fle2UnindexedEncryptedValueV2 = 16,
    /// 17: stored text-search value (8.2+).
    Fle2IndexedTextEncryptedValue = 17,
    /// 18: text-search find payload.
    Fle2FindTextPayload = 18,
}

impl BlobSubtype {
    /// The subtype of a blob (its first byte).
    pub fn of(blob: &[u8]) -> Result<Self> {
        let b = *blob
            .first()
            .ok_or_else(|| Error::decode("encrypted blob", "empty"))?;
        Self::try_from(b)
    }
}

impl TryFrom<u8> for BlobSubtype {
    type Error = Error;
    fn try_from(b: u8) -> Result<Self> {
        use BlobSubtype as B;
        Ok(match b {
            0 => B::Fle1EncryptionPlaceholder,
            1 => B::Fle1DeterministicEncryptedValue,
            2 => B::Fle1RandomEncryptedValue,
            3 => B::Fle2EncryptionPlaceholder,
            4 => B::Fle2InsertUpdatePayload,
            5 => B::Fle2FindEqualityPayload,
            6 => B::Fle2UnindexedEncryptedValue,
            7 => B::Fle2IndexedEqualityEncryptedValue,
            9 => B::Fle2IndexedRangeEncryptedValue,
            10 => B::Fle2FindRangePayload,
            11 => B::Fle2InsertUpdatePayloadV2,
            12 => B::Fle2FindEqualityPayloadV2,
            13 => B::Fle2FindRangePayloadV2,
            14 => B::Fle2IndexedEqualityEncryptedValueV2,
            15 => B::Fle2IndexedRangeEncryptedValueV2,
            16 => B::Fle2UnindexedEncryptedValueV2,
            17 => B::Fle2IndexedTextEncryptedValue,
            18 => B::Fle2FindTextPayload,
            other => {
                return Err(Error::decode(
                    "encrypted blob",
                    format!("unknown blob subtype {other}"),
                ));
            }
        })
    }
}

/// Checks the first byte and returns the rest.
pub(crate) fn strip_subtype<'a>(
    what: &'static str,
    blob: &'a [u8],
    expected: BlobSubtype,
) -> Result<&'a [u8]> {
    match blob.split_first() {
        Some((&b, rest)) if b == expected as u8 => Ok(rest),
        Some((&b, _)) => Err(Error::decode(
            what,
            format!("expected blob subtype {}, got {b}", expected as u8),
        )),
        None => Err(Error::decode(what, "empty blob")),
    }
}
