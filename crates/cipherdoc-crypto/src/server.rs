//! Server-side QE arithmetic for equality (qe-protocol §9): stored values,
//! tags, ESC ids and values, ECOC entries and the count search emuBinaryV2.

use std::fmt;

pub mod text;

/// A `__safeContent__` tag: `HMAC(EDCTwiceDerivedToken, LE64(count))`.
/// Public (stored in the clear), so no zeroizing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag([u8; 32]);

impl Tag {
    /// Wraps 32 bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// From a slice; `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
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

use zeroize::Zeroizing;

use crate::aead::{self, CtrKey, RawCtrKey};
use crate::error::{Error, Result};
use crate::payload::{
    FindEqualityPayloadV2, IndexedEqualityEncryptedValueV2, InsertUpdatePayloadV2, MetadataBlock,
};
use crate::random::RandomSource;
use crate::tokens::{
    AnchorPaddingKeyToken, AnchorPaddingTokenRoot, EcocToken,
    EdcDerivedFromDataTokenAndContentionFactor, EdcTwiceDerivedToken,
    EscDerivedFromDataTokenAndContentionFactor, EscTwiceDerivedTagToken, EscTwiceDerivedValueToken,
    ServerDerivedFromDataToken, hmac_parts, hmac_u64,
};

// ---------------------------------------------------------------------------
// Stored values and metadata

impl MetadataBlock {
    /// Builds the block for ESC position `count` and contention factor `k`
    /// from the payload's `d` and `l` tokens (§6.5). Two random IVs.
    pub fn build(
        count: u64,
        contention_factor: u64,
        edc: &EdcDerivedFromDataTokenAndContentionFactor,
        server_derived: &ServerDerivedFromDataToken,
        rng: &mut dyn RandomSource,
    ) -> Result<Self> {
        let mut cnt = [0u8; 16];
        cnt[..8].copy_from_slice(&count.to_le_bytes());
        cnt[8..].copy_from_slice(&contention_factor.to_le_bytes());
        let ec = aead::encrypt_ctr(&server_derived.count_and_contention_encryption(), &cnt, rng)?;
        let ez = aead::encrypt_ctr(&server_derived.zeros_encryption(), &[0u8; 16], rng)?;
        let mut encrypted_count = [0u8; 32];
        let mut encrypted_zeros = [0u8; 32];
        encrypted_count.copy_from_slice(&ec);
        encrypted_zeros.copy_from_slice(&ez);
        Ok(Self {
            encrypted_count,
            tag: edc.twice_derived().tag(count),
            encrypted_zeros,
        })
    }

    /// Decrypts `(count, contention factor)` with the value's
    /// ServerDerivedFromDataToken. A wrong token yields garbage (CTR has no MAC).
    pub fn decrypt_count(&self, server_derived: &ServerDerivedFromDataToken) -> Result<(u64, u64)> {
        let p: [u8; 16] = aead::decrypt_ctr_array(
            &server_derived.count_and_contention_encryption(),
            &self.encrypted_count,
        )?;
        let (a, b) = p.split_at(8);
        Ok((le64(a), le64(b)))
    }

    /// Whether `encryptedZeros` decrypts to 16 zero bytes under the zeros token
    /// of `server_derived` — the server's collection-scan match for equality (§9.6).
    pub fn matches(&self, server_derived: &ServerDerivedFromDataToken) -> bool {
        aead::decrypt_ctr_array::<16>(&server_derived.zeros_encryption(), &self.encrypted_zeros)
            .is_ok_and(|z| z == [0u8; 16])
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(a)
}

/// Turns an equality insert payload into the stored value (blob 14) for ESC
/// position `count` (§9.4 step 4): `SEV = EncryptCTR(e, v)` and one metadata
/// block. The returned value's `metadata.tag` goes into `__safeContent__`.
pub fn build_indexed_equality_value(
    iup: &InsertUpdatePayloadV2,
    count: u64,
    rng: &mut dyn RandomSource,
) -> Result<IndexedEqualityEncryptedValueV2> {
    if iup.edge_token_sets.is_some() {
        return Err(Error::InvalidArgument(
            "a range insert payload needs a range stored value (15), not 14".into(),
        ));
    }
    if iup.text_search_token_sets.is_some() {
        return Err(Error::InvalidArgument(
            "a text-search insert payload needs a text stored value (17), not 14".into(),
        ));
    }
    let sev = aead::encrypt_ctr(&iup.server_encryption_token, &iup.value, rng)?;
    let metadata = MetadataBlock::build(
        count,
        iup.contention_factor,
        &iup.edc_derived_token,
        &iup.server_derived_from_data_token,
        rng,
    )?;
    Ok(IndexedEqualityEncryptedValueV2 {
        index_key_id: iup.index_key_id,
        bson_type: iup.bson_type,
        server_encrypted_value: sev,
        metadata,
    })
}

// ---------------------------------------------------------------------------
// ESC ids and values

/// An ESC document `_id` (32 bytes, BSON binary subtype 0). Public data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EscId([u8; 32]);

impl EscId {
    /// Wraps 32 bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// From a slice; `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for EscId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EscId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Keys that ESC anchor ids are computed with: the ESCTwiceDerivedTagToken of
/// a value, or the AnchorPaddingKeyToken of a range field.
pub trait EscIdKey {
    /// The 32 key bytes.
    fn esc_id_key(&self) -> &[u8; 32];
}

impl EscIdKey for EscTwiceDerivedTagToken {
    fn esc_id_key(&self) -> &[u8; 32] {
        self.as_bytes()
    }
}

impl EscIdKey for AnchorPaddingKeyToken {
    fn esc_id_key(&self) -> &[u8; 32] {
        self.as_bytes()
    }
}

/// Non-anchor id at position `c ≥ 1`: `HMAC(tag, LE64(c))`.
pub fn non_anchor_id(tag: &EscTwiceDerivedTagToken, c: u64) -> EscId {
    EscId(hmac_u64(tag.as_bytes(), c))
}

/// Anchor id at position `a ≥ 1` (`a = 0` is the null anchor):
/// `HMAC(key, LE64(0) ‖ LE64(a))`.
pub fn anchor_id(key: &(impl EscIdKey + ?Sized), a: u64) -> EscId {
    EscId(hmac_parts(
        key.esc_id_key(),
        &[&0u64.to_le_bytes(), &a.to_le_bytes()],
    ))
}

/// The null anchor id: `HMAC(key, LE64(0) ‖ LE64(0))`.
pub fn null_anchor_id(key: &(impl EscIdKey + ?Sized)) -> EscId {
    anchor_id(key, 0)
}

/// The plaintext of an ESC anchor `value`: for an anchor `(0, cpos)`, for the
/// null anchor `(apos, cpos)`; padding anchors use `cpos = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnchorValue {
    /// Newest anchor position the null anchor stands for (0 in plain anchors).
    pub apos: u64,
    /// Non-anchor position frozen by this anchor.
    pub cpos: u64,
}

impl AnchorValue {
    /// `EncryptCTR(key, LE64(apos) ‖ LE64(cpos))` (32 bytes).
    pub fn encrypt(
        &self,
        key: &(impl CtrKey + ?Sized),
        rng: &mut dyn RandomSource,
    ) -> Result<Vec<u8>> {
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(&self.apos.to_le_bytes());
        p[8..].copy_from_slice(&self.cpos.to_le_bytes());
        aead::encrypt_ctr(key, &p, rng)
    }

    /// Decrypts an anchor `value` (must be 32 bytes).
    pub fn decrypt(key: &(impl CtrKey + ?Sized), value: &[u8]) -> Result<Self> {
        let p: [u8; 16] = aead::decrypt_ctr_array(key, value)
            .map_err(|_| Error::EscState("an anchor value must be 32 bytes".into()))?;
        let (a, c) = p.split_at(8);
        Ok(Self {
            apos: le64(a),
            cpos: le64(c),
        })
    }
}

/// The two ESC keys of one (field, value, contention factor):
/// ESCTwiceDerivedTagToken and ESCTwiceDerivedValueToken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscTokens {
    /// Key of `_id`s.
    pub tag: EscTwiceDerivedTagToken,
    /// Key of anchor values.
    pub value: EscTwiceDerivedValueToken,
}

impl EscTokens {
    /// From the contended ESC token (`s` of an insert payload or ECOC entry).
    pub fn new(s: &EscDerivedFromDataTokenAndContentionFactor) -> Self {
        Self {
            tag: s.twice_derived_tag(),
            value: s.twice_derived_value(),
        }
    }
}

/// What an ECOC entry `value` decrypts to (§9.7 step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcocEntry {
    /// The contended ESC token.
    pub esc_token: EscDerivedFromDataTokenAndContentionFactor,
    /// `None` for equality (32-byte plaintext); `Some(isLeaf)` for range (33).
    pub range_is_leaf: Option<bool>,
    /// `Some(msize)` for text search (35 bytes, `s ‖ LE24(msize)`): the
    /// value's total tag count for an exact entry, 0 for the others.
    pub text_msize: Option<u32>,
}

/// Decrypts an ECOC `value` (the client's `p`) with the field's ECOCToken.
/// The plaintext length says the kind: 32 equality, 33 range, 35 text
/// search.
pub fn decrypt_ecoc_value(ecoc: &EcocToken, p: &[u8]) -> Result<EcocEntry> {
    let pt = aead::decrypt_ctr(ecoc, p)?;
    let mut s = [0u8; 32];
    let (range_is_leaf, text_msize) = match pt.len() {
        32 => (None, None),
        33 => match pt.get(32) {
            Some(0) => (Some(false), None),
            Some(1) => (Some(true), None),
            _ => return Err(Error::decode("ECOC value", "isLeaf must be 0 or 1")),
        },
        35 => {
            let mut m = [0u8; 4];
            m[..3].copy_from_slice(pt.get(32..35).unwrap_or(&[0; 3]));
            (None, Some(u32::from_le_bytes(m)))
        }
        n => {
            return Err(Error::decode(
                "ECOC value",
                format!("unsupported plaintext length {n} (32 equality, 33 range, 35 text search)"),
            ));
        }
    };
    s.copy_from_slice(pt.get(..32).unwrap_or(&[0; 32]));
    Ok(EcocEntry {
        esc_token: EscDerivedFromDataTokenAndContentionFactor::from_bytes(s),
        range_is_leaf,
        text_msize,
    })
}

// ---------------------------------------------------------------------------
// emuBinaryV2 (§9.3)

/// What the storage found for a probed ESC id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult<'a> {
    /// No document with that `_id`.
    Absent,
    /// A document exists; `value` is its `value` field (anchors) or `None`
    /// (non-anchors).
    Present {
        /// The anchor `value` bytes, if the document has one.
        value: Option<&'a [u8]>,
    },
}

/// The outcome of emuBinaryV2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmuBinaryResult {
    /// Newest non-anchor position (`None`: none after the anchor's cpos).
    pub cpos: Option<u64>,
    /// Newest anchor position (`None`: the null anchor is the newest).
    pub apos: Option<u64>,
    /// The null anchor's value, if it exists.
    pub null_anchor: Option<AnchorValue>,
    /// The cpos stored in anchor `apos` (or in the null anchor when `apos`
    /// is `None`); `None` when there are no anchors.
    pub anchor_cpos: Option<u64>,
}

impl EmuBinaryResult {
    /// The position a new insert takes (§9.4): `cpos + 1`, or the anchor's
    /// `cpos + 1`.
    pub fn insert_count(&self) -> Result<u64> {
        self.query_count()
            .checked_add(1)
            .ok_or_else(|| Error::EscState("ESC position overflow".into()))
    }

    /// How many tags a query expands to (§9.6): tags `1..=n`.
    pub fn query_count(&self) -> u64 {
        self.cpos.or(self.anchor_cpos).unwrap_or(0)
    }
}

/// A position an [`EmuBinary`] search probes: an anchor (`0` is the null
/// anchor) or a non-anchor, of the search's own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeAt {
    /// Anchor `a` (`HMAC(key, LE64(0) ‖ LE64(a))`; `a = 0`: the null anchor).
    Anchor(u64),
    /// Non-anchor `c` (`HMAC(key, LE64(c))`).
    NonAnchor(u64),
}

#[derive(Debug, Clone, Copy)]
enum BsState {
    Grow,
    Iter { lo: u64, hi: u64, n: u32, j: u32 },
    CheckOne,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct BinSearch {
    rho: u64,
    lambda: u64,
    i: Option<u64>,
    st: BsState,
}

fn ceil_log2(x: u64) -> u32 {
    if x <= 1 {
        0
    } else {
        64 - (x - 1).leading_zeros()
    }
}

fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b)
        .ok_or_else(|| Error::EscState("ESC position overflow".into()))
}

impl BinSearch {
    fn new(rho: u64, lambda: u64, i: Option<u64>) -> Self {
        Self {
            rho,
            lambda,
            i,
            st: BsState::Grow,
        }
    }

    /// The position to probe next, or `None` when done.
    fn position(&self) -> Result<Option<u64>> {
        Ok(match self.st {
            BsState::Grow => Some(add(self.rho, self.lambda)?),
            BsState::Iter { lo, hi, .. } => Some(add(lo + (hi - lo).div_ceil(2), self.lambda)?),
            BsState::CheckOne => Some(add(1, self.lambda)?),
            BsState::Done => None,
        })
    }

    fn feed(&mut self, exists: bool) -> Result<()> {
        match self.st {
            BsState::Grow => {
                if exists {
                    self.rho = self
                        .rho
                        .checked_mul(2)
                        .ok_or_else(|| Error::EscState("ESC position overflow".into()))?;
                } else {
                    let n = ceil_log2(self.rho);
                    self.st = if n == 0 {
                        BsState::Done
                    } else {
                        BsState::Iter {
                            lo: 1,
                            hi: self.rho,
                            n,
                            j: 1,
                        }
                    };
                }
            }
            BsState::Iter {
                mut lo,
                mut hi,
                n,
                j,
            } => {
                let mid = lo + (hi - lo).div_ceil(2);
                let last = j == n;
                if exists {
                    lo = mid;
                    if last {
                        self.i = Some(add(lo, self.lambda)?);
                    }
                } else {
                    hi = mid;
                    if last && lo == 1 {
                        self.st = BsState::CheckOne;
                        return Ok(());
                    } else if last {
                        self.i = Some(add(lo, self.lambda)?);
                    }
                }
                self.st = if last {
                    BsState::Done
                } else {
                    BsState::Iter {
                        lo,
                        hi,
                        n,
                        j: j + 1,
                    }
                };
            }
            BsState::CheckOne => {
                if exists {
                    self.i = Some(add(1, self.lambda)?);
                }
                self.st = BsState::Done;
            }
            BsState::Done => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    NullAnchor,
    Anchors(BinSearch),
    FetchAnchor(u64),
    NonAnchors(BinSearch, Option<u64>, Option<u64>),
    Done(EmuBinaryResult),
}

/// emuBinaryV2 as a resumable state machine: ask [`next_probe`], look the id
/// up, [`feed`] the answer, until [`result`] is `Some`.
///
/// Each search is sequential, but an engine can batch across searches: the
/// `cm + 1` searches of one query (one per contention factor), or the
/// searches of many ECOC entries during compaction, each advance one probe
/// per round trip.
///
/// [`next_probe`]: EmuBinary::next_probe
/// [`feed`]: EmuBinary::feed
/// [`result`]: EmuBinary::result
///
/// `Clone` lets an engine explore the search's next steps speculatively
/// (feeding hypothetical answers to a copy) to prefetch probes in one batch.
#[derive(Clone)]
pub struct EmuBinary {
    tag_key: Zeroizing<[u8; 32]>,
    value_key: RawCtrKey,
    esc_doc_count: u64,
    anchors_only: bool,
    null_anchor: Option<AnchorValue>,
    phase: Phase,
}

impl fmt::Debug for EmuBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmuBinary")
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl EmuBinary {
    /// A search for one value's ESC counters. `esc_doc_count` is the number
    /// of documents in the ESC collection (the initial `rho` is
    /// `max(2, esc_doc_count)`).
    pub fn new(tokens: &EscTokens, esc_doc_count: u64) -> Self {
        Self {
            tag_key: Zeroizing::new(*tokens.tag.as_bytes()),
            value_key: RawCtrKey::from_bytes(*tokens.value.as_bytes()),
            esc_doc_count,
            anchors_only: false,
            null_anchor: None,
            phase: Phase::NullAnchor,
        }
    }

    /// `anchorBinaryHops` over the padding anchors of a range field
    /// (compaction/cleanup padding, §9.7–9.8). The result has `cpos = None`.
    pub fn anchor_padding(root: &AnchorPaddingTokenRoot) -> Self {
        Self {
            tag_key: Zeroizing::new(*root.key().as_bytes()),
            value_key: RawCtrKey::from_bytes(*root.value().as_bytes()),
            esc_doc_count: 0,
            anchors_only: true,
            null_anchor: None,
            phase: Phase::NullAnchor,
        }
    }

    /// Answer the anchor phase (the null anchor and the anchor search) as
    /// "absent", without computing or probing its ids. Exactly what the
    /// probes would answer when the ESC holds no document with a `value`
    /// (no anchor or null anchor: a collection never compacted or cleaned
    /// up), which an engine can know from an index; the search then goes
    /// straight to the non-anchors. Does nothing after the anchor phase.
    ///
    /// # Errors
    /// Never in practice (the anchor search over absent answers ends after
    /// its first few steps); an internal inconsistency is reported as
    /// [`Error::EscState`].
    pub fn assume_no_anchors(&mut self) -> Result<()> {
        // The anchor search of an empty ESC takes three answers (null
        // anchor, anchor 2, anchor 1); the bound only guards the loop.
        for _ in 0..8 {
            if !matches!(self.phase, Phase::NullAnchor | Phase::Anchors(_)) {
                return Ok(());
            }
            self.feed(ProbeResult::Absent)?;
        }
        Err(Error::EscState(
            "the anchor search did not end on absent answers".into(),
        ))
    }

    fn anchor(&self, a: u64) -> EscId {
        EscId(hmac_parts(
            &self.tag_key,
            &[&0u64.to_le_bytes(), &a.to_le_bytes()],
        ))
    }

    /// The id to look up next, or `None` when the search is finished.
    pub fn next_probe(&self) -> Result<Option<EscId>> {
        Ok(self.next_probe_at()?.map(|at| self.probe_id(at)))
    }

    /// Where the next probe is, without computing its id (an HMAC): a
    /// caller that runs many searches, or explores one speculatively, can
    /// then compute each id once ([`EmuBinary::probe_id`]).
    pub fn next_probe_at(&self) -> Result<Option<ProbeAt>> {
        Ok(match &self.phase {
            Phase::NullAnchor => Some(ProbeAt::Anchor(0)),
            Phase::Anchors(bs) => bs.position()?.map(ProbeAt::Anchor),
            Phase::FetchAnchor(a) => Some(ProbeAt::Anchor(*a)),
            Phase::NonAnchors(bs, ..) => bs.position()?.map(ProbeAt::NonAnchor),
            Phase::Done(_) => None,
        })
    }

    /// The ESC id at `at` for this search's key.
    pub fn probe_id(&self, at: ProbeAt) -> EscId {
        match at {
            ProbeAt::Anchor(a) => self.anchor(a),
            ProbeAt::NonAnchor(p) => EscId(hmac_u64(&self.tag_key, p)),
        }
    }

    /// The final `(cpos, apos)`, once [`next_probe`](Self::next_probe) returns `None`.
    pub fn result(&self) -> Option<EmuBinaryResult> {
        match self.phase {
            Phase::Done(r) => Some(r),
            _ => None,
        }
    }

    fn decrypt_anchor(&self, r: ProbeResult<'_>) -> Result<Option<AnchorValue>> {
        match r {
            ProbeResult::Absent => Ok(None),
            ProbeResult::Present { value: Some(v) } => {
                AnchorValue::decrypt(&self.value_key, v).map(Some)
            }
            ProbeResult::Present { value: None } => {
                Err(Error::EscState("an anchor document has no value".into()))
            }
        }
    }

    fn start_non_anchors(&mut self, apos: Option<u64>, anchor_cpos: Option<u64>) {
        if self.anchors_only {
            self.phase = Phase::Done(EmuBinaryResult {
                cpos: None,
                apos,
                null_anchor: self.null_anchor,
                anchor_cpos,
            });
            return;
        }
        let (lambda, i) = match anchor_cpos {
            None => (0, Some(0)),
            Some(c) => (c, None),
        };
        let rho = self.esc_doc_count.max(2);
        self.phase = Phase::NonAnchors(BinSearch::new(rho, lambda, i), apos, anchor_cpos);
    }

    fn after_anchor_search(&mut self, x: Option<u64>) {
        match x {
            Some(0) => self.start_non_anchors(Some(0), None),
            None => {
                let c = self.null_anchor.map(|n| n.cpos);
                self.start_non_anchors(None, c);
            }
            Some(a) => {
                if self.anchors_only {
                    self.start_non_anchors(Some(a), None);
                } else {
                    self.phase = Phase::FetchAnchor(a);
                }
            }
        }
    }

    /// Feeds the answer for the id returned by [`next_probe`](Self::next_probe).
    pub fn feed(&mut self, r: ProbeResult<'_>) -> Result<()> {
        let exists = matches!(r, ProbeResult::Present { .. });
        match self.phase {
            Phase::NullAnchor => {
                self.null_anchor = self.decrypt_anchor(r)?;
                let (lambda, x) = match self.null_anchor {
                    Some(n) => (n.apos, None),
                    None => (0, Some(0)),
                };
                self.phase = Phase::Anchors(BinSearch::new(2, lambda, x));
            }
            Phase::Anchors(mut bs) => {
                bs.feed(exists)?;
                if matches!(bs.st, BsState::Done) {
                    self.after_anchor_search(bs.i);
                } else {
                    self.phase = Phase::Anchors(bs);
                }
            }
            Phase::FetchAnchor(a) => {
                let v = self.decrypt_anchor(r)?.ok_or_else(|| {
                    Error::EscState(format!("anchor {a} was found by the search but is missing"))
                })?;
                self.start_non_anchors(Some(a), Some(v.cpos));
            }
            Phase::NonAnchors(mut bs, apos, anchor_cpos) => {
                bs.feed(exists)?;
                self.phase = if matches!(bs.st, BsState::Done) {
                    Phase::Done(EmuBinaryResult {
                        cpos: bs.i,
                        apos,
                        null_anchor: self.null_anchor,
                        anchor_cpos,
                    })
                } else {
                    Phase::NonAnchors(bs, apos, anchor_cpos)
                };
            }
            Phase::Done(_) => {}
        }
        Ok(())
    }

    /// Runs the search to the end with a probe function that returns
    /// `None` for a missing id, `Some(None)` for a document without `value`
    /// and `Some(Some(bytes))` for an anchor.
    pub fn run<E: From<Error>>(
        mut self,
        mut probe: impl FnMut(&EscId) -> std::result::Result<Option<Option<Vec<u8>>>, E>,
    ) -> std::result::Result<EmuBinaryResult, E> {
        loop {
            let Some(id) = self.next_probe()? else {
                return self.result().ok_or_else(|| {
                    E::from(Error::EscState("search ended without a result".into()))
                });
            };
            match probe(&id)? {
                None => self.feed(ProbeResult::Absent)?,
                Some(v) => self.feed(ProbeResult::Present {
                    value: v.as_deref(),
                })?,
            }
        }
    }
}

/// Convenience: emuBinaryV2 for `tokens` with a probe function (see [`EmuBinary::run`]).
pub fn emu_binary<E: From<Error>>(
    tokens: &EscTokens,
    esc_doc_count: u64,
    probe: impl FnMut(&EscId) -> std::result::Result<Option<Option<Vec<u8>>>, E>,
) -> std::result::Result<EmuBinaryResult, E> {
    EmuBinary::new(tokens, esc_doc_count).run(probe)
}

// ---------------------------------------------------------------------------
// Queries

/// The per-contention-factor tokens a find payload expands to (§9.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentionTokens {
    /// Contention factor `k`.
    pub contention_factor: u64,
    /// ESC keys for emuBinary.
    pub esc: EscTokens,
    /// Key of the tags.
    pub edc_twice: EdcTwiceDerivedToken,
}

impl ContentionTokens {
    /// Tags `1..=count` for this contention factor.
    pub fn tags(&self, count: u64) -> impl Iterator<Item = Tag> + '_ {
        self.edc_twice.tags(count)
    }
}

impl FindEqualityPayloadV2 {
    /// The tokens for every `k` in `0..=cm`.
    pub fn contention_tokens(&self) -> impl Iterator<Item = ContentionTokens> + '_ {
        (0..=self.max_contention_factor).map(|k| ContentionTokens {
            contention_factor: k,
            esc: EscTokens::new(&self.esc_derived_token.with_contention(k)),
            edc_twice: self.edc_derived_token.with_contention(k).twice_derived(),
        })
    }
}

/// All tags an equality find payload stands for, given the query count of
/// each contention factor (`counts[k]`, from [`EmuBinaryResult::query_count`]).
pub fn equality_query_tags(find: &FindEqualityPayloadV2, counts: &[u64]) -> Result<Vec<Tag>> {
    let n = usize::try_from(find.max_contention_factor)
        .ok()
        .and_then(|m| m.checked_add(1))
        .ok_or_else(|| Error::InvalidArgument("contention factor too large".into()))?;
    if counts.len() != n {
        return Err(Error::InvalidArgument(format!(
            "expected {n} counts (one per contention factor), got {}",
            counts.len()
        )));
    }
    let mut tags = Vec::with_capacity(usize::try_from(counts.iter().sum::<u64>()).unwrap_or(0));
    for (ct, &c) in find.contention_tokens().zip(counts) {
        tags.extend(ct.tags(c));
    }
    Ok(tags)
}

// ---------------------------------------------------------------------------
// Compaction and cleanup (§9.7, §9.8)

/// The anchor compaction inserts for one ECOC entry: `Some((apos, value))`
/// where `value = (0, cpos)`, or `None` when nothing changed since the last
/// compaction.
pub fn compaction_anchor(r: &EmuBinaryResult) -> Result<Option<(u64, AnchorValue)>> {
    let Some(cpos) = r.cpos else { return Ok(None) };
    if cpos == 0 && r.apos == Some(0) {
        return Err(Error::EscState(
            "ECOC entry without any ESC entry (cpos = apos = 0)".into(),
        ));
    }
    let base = match r.apos {
        Some(a) => a,
        None => r
            .null_anchor
            .map(|n| n.apos)
            .ok_or_else(|| Error::EscState("apos is none but there is no null anchor".into()))?,
    };
    Ok(Some((add(base, 1)?, AnchorValue { apos: 0, cpos })))
}

/// What cleanup does for one ECOC entry or padding set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupPlan {
    /// The new null anchor value to upsert, if any.
    pub null_anchor: Option<AnchorValue>,
    /// Anchors to delete: positions `first..=last`, if any.
    pub delete_anchors: Option<(u64, u64)>,
}

/// Cleanup for one value (§9.8), from its emuBinary result.
pub fn cleanup_plan(r: &EmuBinaryResult) -> Result<CleanupPlan> {
    let none = CleanupPlan {
        null_anchor: None,
        delete_anchors: None,
    };
    match r.apos {
        None => {
            let n = r.null_anchor.ok_or_else(|| {
                Error::EscState("apos is none but there is no null anchor".into())
            })?;
            Ok(match r.cpos {
                None => none,
                Some(c) => CleanupPlan {
                    null_anchor: Some(AnchorValue {
                        apos: n.apos,
                        cpos: c,
                    }),
                    delete_anchors: None,
                },
            })
        }
        Some(0) => Ok(CleanupPlan {
            null_anchor: Some(AnchorValue {
                apos: 0,
                cpos: r.cpos.unwrap_or(0),
            }),
            delete_anchors: None,
        }),
        Some(a) => {
            let latest = r
                .cpos
                .or(r.anchor_cpos)
                .ok_or_else(|| Error::EscState("anchor without cpos".into()))?;
            let old = r.null_anchor.map_or(0, |n| n.apos);
            Ok(CleanupPlan {
                null_anchor: Some(AnchorValue {
                    apos: a,
                    cpos: latest,
                }),
                delete_anchors: (old < a).then(|| (old + 1, a)),
            })
        }
    }
}

/// Cleanup of a range field's padding anchors (§9.8), from
/// [`EmuBinary::anchor_padding`]'s result.
pub fn cleanup_padding_plan(r: &EmuBinaryResult) -> CleanupPlan {
    match r.apos {
        None | Some(0) => CleanupPlan {
            null_anchor: None,
            delete_anchors: None,
        },
        Some(a) => {
            let old = r.null_anchor.map_or(0, |n| n.apos);
            CleanupPlan {
                null_anchor: Some(AnchorValue { apos: a, cpos: 0 }),
                delete_anchors: (old < a).then(|| (old + 1, a)),
            }
        }
    }
}

/// Padding anchors compaction inserts (§9.7 step 4): positions
/// `base+1 ..= base+num_pads` with value `(0, 0)`, where `base` is the
/// padding search's apos (or the padding null anchor's apos).
pub fn padding_anchor_positions(
    r: &EmuBinaryResult,
    num_pads: u64,
) -> Result<std::ops::RangeInclusive<u64>> {
    let base = match r.apos {
        Some(a) => a,
        None => r.null_anchor.map_or(0, |n| n.apos),
    };
    Ok(add(base, 1)?..=add(base, num_pads)?)
}

// ---------------------------------------------------------------------------
// Range (§9.4, §9.6) and the token sets shared by equality and range

use crate::payload::{FindRangePayloadV2, IndexedRangeEncryptedValueV2};
use crate::tokens::{EdcDerivedFromDataToken, EscDerivedFromDataToken};

/// What the server needs from one token set of an insert payload (§9.4):
/// equality payloads have one (the top-level `d`, `s`, `l`, `p`), range
/// payloads one per edge (`g[i]`; the top-level tokens are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertTokenSet<'a> {
    /// `s`: ESC…AndContentionFactor — the ESC keys ([`EscTokens::new`]) for emuBinary.
    pub esc: &'a EscDerivedFromDataTokenAndContentionFactor,
    /// `d`: EDC…AndContentionFactor — the tag key (`HMAC(d, 1)`).
    pub edc: &'a EdcDerivedFromDataTokenAndContentionFactor,
    /// `l`: ServerDerivedFromDataToken — encrypts the metadata block.
    pub server_derived: &'a ServerDerivedFromDataToken,
    /// `p`: the ECOC entry's `value` (`EncryptCTR(ECOCToken, s [‖ isLeaf])`).
    pub ecoc_value: &'a [u8],
}

impl InsertTokenSet<'_> {
    /// The `__safeContent__` tag of this token set at ESC position `count`.
    pub fn tag(&self, count: u64) -> Tag {
        self.edc.twice_derived().tag(count)
    }
}

/// The token sets of an insert payload, in order: one for equality, one per
/// edge for range (`g` order, which is also the metadata block order of the
/// stored value 15). The server runs the same ESC/ECOC loop over them. A
/// text-search payload's sets are [`text::text_insert_token_sets`] (its
/// top-level tokens, returned here, are placeholders of zeros).
pub fn insert_token_sets(iup: &InsertUpdatePayloadV2) -> Vec<InsertTokenSet<'_>> {
    match &iup.edge_token_sets {
        None => vec![InsertTokenSet {
            esc: &iup.esc_derived_token,
            edc: &iup.edc_derived_token,
            server_derived: &iup.server_derived_from_data_token,
            ecoc_value: &iup.encrypted_tokens,
        }],
        Some(g) => g
            .iter()
            .map(|e| InsertTokenSet {
                esc: &e.esc_derived_token,
                edc: &e.edc_derived_token,
                server_derived: &e.server_derived_from_data_token,
                ecoc_value: &e.encrypted_tokens,
            })
            .collect(),
    }
}

/// Turns a range insert payload into the stored value (blob 15, §9.4 step 4):
/// `SEV = EncryptCTR(e, v)` and one metadata block per edge, built from
/// `(counts[i], k, g[i].d, g[i].l)`. `counts` are the ESC positions assigned
/// to the edges, in `g` order. The blocks' tags
/// ([`IndexedRangeEncryptedValueV2::tags`]) go into `__safeContent__`.
pub fn build_indexed_range_value(
    iup: &InsertUpdatePayloadV2,
    counts: &[u64],
    rng: &mut dyn RandomSource,
) -> Result<IndexedRangeEncryptedValueV2> {
    let Some(g) = &iup.edge_token_sets else {
        return Err(Error::InvalidArgument(
            "an equality insert payload needs an equality stored value (14), not 15".into(),
        ));
    };
    if g.is_empty() || g.len() > IndexedRangeEncryptedValueV2::MAX_EDGES {
        return Err(Error::InvalidArgument(format!(
            "a range insert payload must have 1 to {} edges, got {}",
            IndexedRangeEncryptedValueV2::MAX_EDGES,
            g.len()
        )));
    }
    if counts.len() != g.len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} counts (one per edge), got {}",
            g.len(),
            counts.len()
        )));
    }
    let sev = aead::encrypt_ctr(&iup.server_encryption_token, &iup.value, rng)?;
    let metadata = g
        .iter()
        .zip(counts)
        .map(|(e, &c)| {
            MetadataBlock::build(
                c,
                iup.contention_factor,
                &e.edc_derived_token,
                &e.server_derived_from_data_token,
                rng,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(IndexedRangeEncryptedValueV2 {
        index_key_id: iup.index_key_id,
        bson_type: iup.bson_type,
        server_encrypted_value: sev,
        metadata,
    })
}

/// The un-contended data tokens of one find token set: the single one of an
/// equality find payload, or one mincover string of a range find payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindDataTokens<'a> {
    /// EDCDerivedFromDataToken (`d`).
    pub edc: &'a EdcDerivedFromDataToken,
    /// ESCDerivedFromDataToken (`s`).
    pub esc: &'a EscDerivedFromDataToken,
    /// ServerDerivedFromDataToken (`l`), for the collection-scan match.
    pub server_derived: &'a ServerDerivedFromDataToken,
}

impl FindDataTokens<'_> {
    /// The tokens for every contention factor `k` in `0..=max_contention`
    /// (§9.6), as [`FindEqualityPayloadV2::contention_tokens`] does.
    pub fn contention_tokens(
        &self,
        max_contention: u64,
    ) -> impl Iterator<Item = ContentionTokens> + '_ {
        (0..=max_contention).map(move |k| ContentionTokens {
            contention_factor: k,
            esc: EscTokens::new(&self.esc.with_contention(k)),
            edc_twice: self.edc.with_contention(k).twice_derived(),
        })
    }
}

impl FindRangePayloadV2 {
    /// One data-token set per mincover string (empty for a stub), to expand
    /// over `0..=cm` ([`Self::max_contention_factor`]) like equality.
    pub fn data_tokens(&self) -> Vec<FindDataTokens<'_>> {
        self.payload.as_ref().map_or_else(Vec::new, |p| {
            p.edges
                .iter()
                .map(|e| FindDataTokens {
                    edc: &e.edc_derived_token,
                    esc: &e.esc_derived_token,
                    server_derived: &e.server_derived_from_data_token,
                })
                .collect()
        })
    }

    /// `payload.cm`, or `None` for a stub.
    pub fn max_contention_factor(&self) -> Option<u64> {
        self.payload.as_ref().map(|p| p.max_contention_factor)
    }

    /// All `(edge, k)` token sets of the query, edge-major: for each
    /// mincover string, `k = 0..=cm`. Empty for a stub.
    pub fn contention_tokens(&self) -> Vec<ContentionTokens> {
        let cm = self.max_contention_factor().unwrap_or(0);
        self.data_tokens()
            .iter()
            .flat_map(|t| t.contention_tokens(cm).collect::<Vec<_>>())
            .collect()
    }
}

impl FindEqualityPayloadV2 {
    /// The payload's data tokens as a [`FindDataTokens`] (one set), so a
    /// server loop can treat equality and range alike.
    pub fn data_tokens(&self) -> FindDataTokens<'_> {
        FindDataTokens {
            edc: &self.edc_derived_token,
            esc: &self.esc_derived_token,
            server_derived: &self.server_derived_from_data_token,
        }
    }
}

/// All tags a range find payload stands for (§9.6): the union over its
/// mincover strings and contention factors, given the query count of each
/// `(edge, k)` in [`FindRangePayloadV2::contention_tokens`] order. A stub
/// has no tags (the server rewrites it to "always true").
pub fn range_query_tags(find: &FindRangePayloadV2, counts: &[u64]) -> Result<Vec<Tag>> {
    let cts = find.contention_tokens();
    if counts.len() != cts.len() {
        return Err(Error::InvalidArgument(format!(
            "expected {} counts (one per mincover string and contention factor), got {}",
            cts.len(),
            counts.len()
        )));
    }
    let total = counts.iter().fold(0u64, |a, &c| a.saturating_add(c));
    let mut tags = Vec::with_capacity(usize::try_from(total).unwrap_or(0).min(1 << 20));
    for (ct, &c) in cts.iter().zip(counts) {
        tags.extend(ct.tags(c));
    }
    Ok(tags)
}

/// The collection-scan match of a range query (§9.6 fallback): whether any
/// metadata block of `value` has encrypted zeros under the zeros token of any
/// mincover string of `find`. A stub matches everything.
pub fn range_value_matches(
    value: &IndexedRangeEncryptedValueV2,
    find: &FindRangePayloadV2,
) -> bool {
    let Some(p) = &find.payload else { return true };
    p.edges.iter().any(|e| {
        let zt = e.server_derived_from_data_token.zeros_encryption();
        value.metadata.iter().any(|m| {
            aead::decrypt_ctr_array::<16>(&zt, &m.encrypted_zeros).is_ok_and(|z| z == [0u8; 16])
        })
    })
}
