//! FLE2EncryptionPlaceholder, blob subtype 3 (§6.1).

use bson::Bson;

use super::iup::{fields, int32, int64, owned_bson, required, set_once};
use super::value::value_bytes;
use super::writer::DocWriter;
use super::{BlobSubtype, strip_subtype};
use crate::error::{Error, Result};
use crate::key::{KeyId, key_id_from_raw};

/// Placeholder `t`: what the payload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceholderType {
    /// 1: insert/update.
    Insert = 1,
    /// 2: find.
    Find = 2,
}

/// Placeholder `a`: the field's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlaceholderAlgorithm {
    /// 1: unindexed.
    Unindexed = 1,
    /// 2: equality.
    Equality = 2,
    /// 3: range.
    Range = 3,
    /// 4: text search.
    TextSearch = 4,
}

/// FLE2EncryptionPlaceholder: `0x03 ‖ BSON{t, a, ki, ku, v, cm, s?}`.
/// `Debug` shows the value's BSON type only: it is a plaintext.
#[derive(Clone, PartialEq)]
pub struct EncryptionPlaceholder {
    /// `t`.
    pub kind: PlaceholderType,
    /// `a`.
    pub algorithm: PlaceholderAlgorithm,
    /// `ki`: index key id.
    pub index_key_id: KeyId,
    /// `ku`: user key id.
    pub user_key_id: KeyId,
    /// `v`: the value (or a range spec document).
    pub value: Bson,
    /// `cm`: maximum contention factor.
    pub max_contention: i64,
    /// `s`: range sparsity.
    pub sparsity: Option<i64>,
}

impl std::fmt::Debug for EncryptionPlaceholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionPlaceholder")
            .field("kind", &self.kind)
            .field("algorithm", &self.algorithm)
            .field("index_key_id", &self.index_key_id)
            .field("user_key_id", &self.user_key_id)
            .field("value", &crate::Redacted(&self.value))
            .field("max_contention", &self.max_contention)
            .field("sparsity", &self.sparsity)
            .finish()
    }
}

impl EncryptionPlaceholder {
    const WHAT: &'static str = "FLE2EncryptionPlaceholder";

    /// The blob.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let vb = value_bytes(&self.value)?;
        let mut w = DocWriter::new(
            Some(BlobSubtype::Fle2EncryptionPlaceholder as u8),
            80 + vb.len(),
        );
        w.int32("t", self.kind as i32);
        w.int32("a", self.algorithm as i32);
        w.binary("ki", 4, self.index_key_id.as_bytes());
        w.binary("ku", 4, self.user_key_id.as_bytes());
        w.raw("v", self.value.element_type() as u8, &vb);
        w.int64("cm", self.max_contention);
        if let Some(s) = self.sparsity {
            w.int64("s", s);
        }
        Ok(w.finish())
    }

    /// Parses a subtype-3 blob.
    #[allow(clippy::many_single_char_names)] // names mirror the protocol fields
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let what = Self::WHAT;
        let body = strip_subtype(what, blob, BlobSubtype::Fle2EncryptionPlaceholder)?;
        let (mut t, mut a, mut ki, mut ku, mut v, mut cm, mut s) =
            (None, None, None, None, None, None, None);
        fields(what, body, |k, val| match k {
            "t" => {
                let kind = match int32(what, k, val)? {
                    1 => PlaceholderType::Insert,
                    2 => PlaceholderType::Find,
                    n => return Err(Error::decode(what, format!("invalid 't' {n}"))),
                };
                set_once(what, k, &mut t, kind)
            }
            "a" => {
                let alg = match int32(what, k, val)? {
                    1 => PlaceholderAlgorithm::Unindexed,
                    2 => PlaceholderAlgorithm::Equality,
                    3 => PlaceholderAlgorithm::Range,
                    4 => PlaceholderAlgorithm::TextSearch,
                    n => return Err(Error::decode(what, format!("invalid 'a' {n}"))),
                };
                set_once(what, k, &mut a, alg)
            }
            "ki" => set_once(what, k, &mut ki, key_id_from_raw(what, val)?),
            "ku" => set_once(what, k, &mut ku, key_id_from_raw(what, val)?),
            "v" => set_once(what, k, &mut v, owned_bson(what, k, val)?),
            "cm" => set_once(what, k, &mut cm, int64(what, k, val)?),
            "s" => set_once(what, k, &mut s, int64(what, k, val)?),
            other => Err(Error::decode(what, format!("unknown field '{other}'"))),
        })?;
        Ok(Self {
            kind: required(what, "t", t)?,
            algorithm: required(what, "a", a)?,
            index_key_id: required(what, "ki", ki)?,
            user_key_id: required(what, "ku", ku)?,
            value: required(what, "v", v)?,
            max_contention: required(what, "cm", cm)?,
            sparsity: s,
        })
    }
}
