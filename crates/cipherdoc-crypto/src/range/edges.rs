//! Edge strings of an inserted value (qe-protocol.md §8.3–8.4, libmongocrypt
//! `src/mc-range-edge-generation.c`).
//!
//! Every edge is `"root"` or a prefix of the leaf (the encoded value in binary,
//! `bits` characters), so [`Edges`] stores the leaf once and hands out borrowed
//! byte slices: building the edges of a full-domain int64 is one 64-character
//! fill and no allocation.

use zeroize::Zeroize;

use super::encoding::{OstInt, OstType};
use super::error::RangeError;

/// Default sparsity (§8.1).
pub const DEFAULT_SPARSITY: i64 = 2;
/// Upper limit of the default trim factor (§8.1).
pub const DEFAULT_TRIM_FACTOR: i32 = 6;

const ROOT: &[u8] = b"root";

/// The trim factor libmongocrypt uses: the given one, else `min(6, bits − 1)`.
/// (For a zero-bit domain `bits − 1` wraps as in C and the default is 6.)
pub fn trim_factor_default(bits: u32, trim_factor: Option<i32>) -> i32 {
    match trim_factor {
        Some(tf) => tf,
        None => match bits.checked_sub(1) {
            Some(b) if b < 6 => i32::try_from(b).unwrap_or(DEFAULT_TRIM_FACTOR),
            _ => DEFAULT_TRIM_FACTOR,
        },
    }
}

/// Checks sparsity ≥ 1 and converts it.
pub(crate) fn check_sparsity(sparsity: i64) -> Result<u64, RangeError> {
    u64::try_from(sparsity)
        .ok()
        .filter(|s| *s >= 1)
        .ok_or(RangeError::InvalidSparsity(sparsity))
}

/// Defaults and validates a trim factor for a domain of `bits` bits
/// (0 is always allowed; otherwise it must be below `bits`).
pub(crate) fn check_trim_factor(bits: u32, trim_factor: Option<i32>) -> Result<u32, RangeError> {
    let tf = trim_factor_default(bits, trim_factor);
    let tf_u = u32::try_from(tf).map_err(|_| RangeError::NegativeTrimFactor(tf))?;
    if tf_u != 0 && tf_u >= bits {
        return Err(RangeError::TrimFactorTooLarge {
            trim_factor: tf,
            bits,
        });
    }
    Ok(tf_u)
}

/// One edge: `"root"` or a prefix of the leaf, as raw ASCII (what the token
/// derivation hashes, §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<'a> {
    bytes: &'a [u8],
    is_leaf: bool,
}

impl<'a> Edge<'a> {
    /// The ASCII bytes of the edge string, no framing.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The edge string.
    pub fn as_str(&self) -> &'a str {
        // Only b"root" and '0'/'1' bytes are ever stored.
        std::str::from_utf8(self.bytes).unwrap_or("")
    }

    /// Whether this is the full leaf (its `p` plaintext ends in `0x01`, §6.2).
    pub fn is_leaf(&self) -> bool {
        self.is_leaf
    }

    /// Whether this is the `"root"` edge.
    pub fn is_root(&self) -> bool {
        self.bytes == ROOT
    }
}

/// The edges of one encoded value, in payload order (§8.4):
/// `"root"` (only when trimFactor = 0), the leaf, then the prefixes of length
/// `i` for `i` in `max(trimFactor, 1) .. bits` with `i % sparsity == 0`.
#[derive(Clone)]
pub struct Edges {
    leaf: [u8; 128],
    bits: u32,
    sparsity: u64,
    trim_factor: u32,
    len: usize,
}

impl std::fmt::Debug for Edges {
    // The leaf is the encoded plaintext: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edges")
            .field("bits", &self.bits)
            .field("sparsity", &self.sparsity)
            .field("trim_factor", &self.trim_factor)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Edges {
    /// Builds the edges of `ost.value` in the domain `[0, ost.max]`.
    ///
    /// `trim_factor = None` uses the default `min(6, bits − 1)`. Errors:
    /// sparsity < 1, trimFactor < 0, trimFactor ≠ 0 and ≥ bits.
    pub fn new<T: OstInt>(
        ost: OstType<T>,
        sparsity: i64,
        trim_factor: Option<i32>,
    ) -> Result<Edges, RangeError> {
        let sparsity = check_sparsity(sparsity)?;
        let bits = ost.bits();
        let trim_factor = check_trim_factor(bits, trim_factor)?;
        let value = ost.value.to_u128();
        let mut leaf = [b'0'; 128];
        for (i, slot) in leaf.iter_mut().take(bits as usize).enumerate() {
            // Most significant of the `bits` low bits first.
            let shift = bits as usize - 1 - i;
            *slot = b'0' + u8::from((value >> shift) & 1 == 1);
        }
        let mut edges = Edges {
            leaf,
            bits,
            sparsity,
            trim_factor,
            len: 0,
        };
        edges.len = usize::from(trim_factor == 0) + 1 + edges.prefix_lengths().count();
        Ok(edges)
    }

    fn prefix_lengths(&self) -> impl Iterator<Item = usize> + use<> {
        let start = self.trim_factor.max(1);
        let sparsity = self.sparsity;
        (start..self.bits)
            .filter(move |i| u64::from(*i) % sparsity == 0)
            .map(|i| i as usize)
    }

    /// The number of edges of a value with these parameters, by the server's
    /// `Edges::size` formula (used for anchor padding):
    /// `(tf = 0) + bits/sp − max(tf − 1, 0)/sp + (bits % sp ≠ 0)`.
    pub fn size(bits: u32, sparsity: u64, trim_factor: u32) -> usize {
        let sp = sparsity.max(1);
        let bits = u64::from(bits);
        let tf = u64::from(trim_factor);
        let n =
            u64::from(tf == 0) + bits / sp - tf.saturating_sub(1) / sp + u64::from(bits % sp != 0);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// Number of edges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: there is at least the leaf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The leaf string (`bits` characters of `'0'`/`'1'`).
    pub fn leaf(&self) -> &str {
        std::str::from_utf8(self.leaf_bytes()).unwrap_or("")
    }

    fn leaf_bytes(&self) -> &[u8] {
        &self.leaf[..self.bits as usize]
    }

    /// Bit width of the domain (`maxlen`).
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Sparsity used.
    pub fn sparsity(&self) -> u64 {
        self.sparsity
    }

    /// The trim factor actually used (after defaulting); goes into `tf` (§6.2).
    pub fn used_trim_factor(&self) -> i32 {
        i32::try_from(self.trim_factor).unwrap_or(i32::MAX)
    }

    /// The edges in payload order.
    pub fn iter(&self) -> impl Iterator<Item = Edge<'_>> + '_ {
        let root = (self.trim_factor == 0).then_some(Edge {
            bytes: ROOT,
            is_leaf: false,
        });
        let leaf = Edge {
            bytes: self.leaf_bytes(),
            is_leaf: true,
        };
        root.into_iter()
            .chain(std::iter::once(leaf))
            .chain(self.prefix_lengths().map(|n| Edge {
                bytes: &self.leaf[..n],
                is_leaf: false,
            }))
    }

    /// The edges as owned strings (convenience for tests and debugging).
    pub fn to_strings(&self) -> Vec<String> {
        self.iter().map(|e| e.as_str().to_owned()).collect()
    }
}

impl Drop for Edges {
    fn drop(&mut self) {
        // The leaf spells out the encoded plaintext.
        self.leaf.zeroize();
    }
}
