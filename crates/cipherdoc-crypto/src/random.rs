//! Sources of random bytes, and the contention-factor draw (qe-protocol §6.2).

use crate::error::{Error, Result};

/// Where IVs, contention factors and fresh keys come from.
///
/// Production code uses [`OsRandom`]; byte-exact tests use [`ReplayRandom`],
/// which hands out fixed bytes the way libmongocrypt's test hook does.
pub trait RandomSource {
    /// Fills `buf` completely with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        getrandom::getrandom(buf).map_err(|e| Error::Random(e.to_string()))
    }
}

/// The operating system's CSPRNG, read ahead: one `getrandom` call fills a
/// buffer whose bytes are then handed out in order, each once, and the
/// buffer is refilled when it runs out. For a batch that needs many IVs
/// (the QE server role builds three per stored value), this replaces one
/// system call per IV with one per batch. The bytes are the OS's own; the
/// ones not handed out are zeroized on drop.
#[derive(Debug)]
pub struct PrefetchedRandom {
    buf: zeroize::Zeroizing<Vec<u8>>,
    /// Bytes before `pos` were handed out.
    pos: usize,
}

impl PrefetchedRandom {
    /// A source reading `capacity` bytes ahead (at least 16).
    pub fn new(capacity: usize) -> Self {
        let len = capacity.max(16);
        Self {
            buf: zeroize::Zeroizing::new(vec![0; len]),
            // Nothing read yet: the first `fill` reads the whole buffer.
            pos: len,
        }
    }
}

impl RandomSource for PrefetchedRandom {
    fn fill(&mut self, out: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < out.len() {
            if self.pos == self.buf.len() {
                OsRandom.fill(&mut self.buf)?;
                self.pos = 0;
            }
            let n = (out.len() - done).min(self.buf.len() - self.pos);
            out[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            // Handed out: not kept around.
            self.buf[self.pos..self.pos + n].fill(0);
            self.pos += n;
            done += n;
        }
        Ok(())
    }
}

/// Replays a fixed byte string in order; fails (without panicking) once
/// exhausted. For reproducing fixtures only — never use it for real data.
#[derive(Debug, Clone)]
pub struct ReplayRandom {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRandom {
    /// A source that will hand out `bytes`, front to back.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            pos: 0,
        }
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

impl RandomSource for ReplayRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        let end = self
            .pos
            .checked_add(buf.len())
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                Error::Random(format!(
                    "replay source exhausted: {} bytes requested, {} left",
                    buf.len(),
                    self.remaining()
                ))
            })?;
        buf.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        (**self).fill(buf)
    }
}

/// Draws 16 random bytes (an IV).
pub(crate) fn random_iv(rng: &mut dyn RandomSource) -> Result<[u8; 16]> {
    let mut iv = [0u8; 16];
    rng.fill(&mut iv)?;
    Ok(iv)
}

/// Chooses the contention factor `k` uniformly from `[0, max_contention]`
/// exactly like libmongocrypt (`_mongocrypt_random_uint64`): reads 8 bytes as
/// LE64 `r`, rejects while `r < (2^64 - n) mod n` with `n = max + 1`, then
/// returns `r mod n`. With `max_contention == 0` no randomness is consumed.
///
/// Fails if `max_contention` is `u64::MAX` (libmongocrypt caps it below `i64::MAX`
/// anyway; see [`validate_max_contention`]).
pub fn choose_contention_factor(max_contention: u64, rng: &mut dyn RandomSource) -> Result<u64> {
    if max_contention == 0 {
        return Ok(0);
    }
    let n = max_contention
        .checked_add(1)
        .ok_or_else(|| Error::InvalidArgument("contention factor too large".into()))?;
    // (2^64 - n) mod n, computed without 128-bit arithmetic.
    let min = n.wrapping_neg() % n;
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b)?;
        let r = u64::from_le_bytes(b);
        if r >= min {
            return Ok(r % n);
        }
    }
}

/// Checks a maximum contention factor the way libmongocrypt does for the
/// placeholder `cm` and the explicit API: `0 <= cm < i64::MAX`.
pub fn validate_max_contention(cm: i64) -> Result<u64> {
    if cm < 0 || cm == i64::MAX {
        return Err(Error::InvalidArgument(format!(
            "contention factor must be >= 0 and < INT64_MAX, got {cm}"
        )));
    }
    u64::try_from(cm).map_err(|_| Error::InvalidArgument("negative contention factor".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_contention_consumes_nothing() {
        let mut r = ReplayRandom::new(Vec::new());
        assert_eq!(choose_contention_factor(0, &mut r).unwrap(), 0);
    }

    #[test]
    fn contention_draw_is_le64_mod_n() {
        let mut r = ReplayRandom::new([1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(choose_contention_factor(1, &mut r).unwrap(), 1);
        assert_eq!(choose_contention_factor(4, &mut r).unwrap(), 2);
        assert!(choose_contention_factor(4, &mut r).is_err());
    }

    #[test]
    fn contention_draw_rejects_biased_values() {
        // n = 3: min = 2^64 mod 3 = 1, so r = 0 is rejected and r = 5 gives 2.
        let mut r = ReplayRandom::new([0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(choose_contention_factor(2, &mut r).unwrap(), 2);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn replay_exhaustion_is_an_error() {
        let mut r = ReplayRandom::new([1, 2, 3]);
        let mut b = [0u8; 4];
        assert!(matches!(r.fill(&mut b), Err(Error::Random(_))));
        let mut b = [0u8; 3];
        r.fill(&mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
    }

    #[test]
    fn max_contention_validation() {
        assert!(validate_max_contention(-1).is_err());
        assert!(validate_max_contention(i64::MAX).is_err());
        assert_eq!(validate_max_contention(8).unwrap(), 8);
    }

    /// Requests smaller than, equal to and larger than the buffer, across
    /// refills: every byte handed out is fresh (no 16-byte block repeats
    /// among 4 KiB of output, which a replayed or stale buffer would
    /// show), and handed-out bytes do not stay in the buffer.
    #[test]
    fn prefetched_random_hands_out_each_byte_once() {
        let mut r = PrefetchedRandom::new(40);
        let mut out = Vec::new();
        for n in [16, 16, 8, 40, 100, 3, 16].into_iter().cycle().take(80) {
            let mut b = vec![0u8; n];
            r.fill(&mut b).unwrap();
            out.extend(b);
        }
        let blocks: std::collections::HashSet<&[u8]> = out.chunks_exact(16).collect();
        assert_eq!(blocks.len(), out.len() / 16, "a 16-byte block repeated");
        assert!(r.buf[..r.pos].iter().all(|&b| b == 0));
        r.fill(&mut []).unwrap();
    }

    #[test]
    fn os_random_fills() {
        let mut b = [0u8; 32];
        OsRandom.fill(&mut b).unwrap();
        assert_ne!(b, [0u8; 32]);
    }
}
