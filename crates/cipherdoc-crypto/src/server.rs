//! Server-side QE arithmetic for equality (qe-protocol §9): stored values,
//! tags, ESC ids and values, ECOC entries and the count search emuBinaryV2.

use std::fmt;

/// A `__safeContent__` tag: `HMAC(EDCTwiceDerivedToken, LE64(count))`.
/// Public (stored in the clear), so no zeroizing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag([u8; 32]);

impl Tag {
    /// Wraps 32 bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}
