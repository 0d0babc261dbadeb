//! HMAC-SHA-256/512 with the keyed inner and outer states computed once.
//!
//! Hand-written on top of `sha2::compress256/512` (RustCrypto's block
//! functions, hardware-accelerated where available) rather than keeping a
//! prepared `hmac::Hmac` around, because the prepared states are as secret as
//! the key and `hmac`/`sha2` states cannot be zeroized; these can. Caching
//! halves the compression calls per MAC of a short message, which dominates
//! FLE1 decryption (see benches/crypto.rs). Correctness is pinned by the
//! AEAD, key-unwrap and FLE1 corpus vectors.

use sha2::digest::generic_array::GenericArray;
use zeroize::{Zeroize, ZeroizeOnDrop};

macro_rules! hmac_impl {
    ($name:ident, $word:ty, $block:literal, $lenbytes:literal, $out:literal, $compress:path, $iv:expr) => {
        /// A key-scheduled HMAC (inner and outer states after the pad block).
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub(crate) struct $name {
            inner: [$word; 8],
            outer: [$word; 8],
        }

        impl $name {
            /// Keys of at most one block (all keys here are 32 bytes).
            pub(crate) fn new(key: &[u8; 32]) -> Self {
                let mut ipad = [0x36u8; $block];
                let mut opad = [0x5cu8; $block];
                for (i, k) in key.iter().enumerate() {
                    ipad[i] ^= k;
                    opad[i] ^= k;
                }
                let mut inner = $iv;
                let mut outer = $iv;
                $compress(
                    &mut inner,
                    core::slice::from_ref(GenericArray::from_slice(&ipad)),
                );
                $compress(
                    &mut outer,
                    core::slice::from_ref(GenericArray::from_slice(&opad)),
                );
                ipad.zeroize();
                opad.zeroize();
                Self { inner, outer }
            }

            /// `HMAC(key, parts[0] ‖ parts[1] ‖ …)`.
            pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; $out] {
                let mut s = Stream {
                    state: self.inner,
                    buf: [0; $block],
                    used: 0,
                    total: $block,
                };
                for p in parts {
                    s.update(p);
                }
                let inner_hash = s.finish();
                let mut s = Stream {
                    state: self.outer,
                    buf: [0; $block],
                    used: 0,
                    total: $block,
                };
                s.update(&inner_hash);
                s.finish()
            }
        }

        struct Stream {
            state: [$word; 8],
            buf: [u8; $block],
            used: usize,
            total: u128,
        }

        impl Stream {
            fn update(&mut self, mut data: &[u8]) {
                self.total += data.len() as u128;
                if self.used > 0 {
                    let take = ($block - self.used).min(data.len());
                    self.buf[self.used..self.used + take].copy_from_slice(&data[..take]);
                    self.used += take;
                    data = &data[take..];
                    if self.used < $block {
                        return;
                    }
                    $compress(
                        &mut self.state,
                        core::slice::from_ref(GenericArray::from_slice(&self.buf)),
                    );
                    self.used = 0;
                }
                let mut chunks = data.chunks_exact($block);
                for c in &mut chunks {
                    $compress(
                        &mut self.state,
                        core::slice::from_ref(GenericArray::from_slice(c)),
                    );
                }
                let rem = chunks.remainder();
                self.buf[..rem.len()].copy_from_slice(rem);
                self.used = rem.len();
            }

            fn finish(mut self) -> [u8; $out] {
                let bits = self.total * 8;
                self.buf[self.used] = 0x80;
                self.buf[self.used + 1..].fill(0);
                if self.used + 1 > $block - $lenbytes {
                    $compress(
                        &mut self.state,
                        core::slice::from_ref(GenericArray::from_slice(&self.buf)),
                    );
                    self.buf.fill(0);
                }
                let len = bits.to_be_bytes();
                self.buf[$block - $lenbytes..].copy_from_slice(&len[16 - $lenbytes..]);
                $compress(
                    &mut self.state,
                    core::slice::from_ref(GenericArray::from_slice(&self.buf)),
                );
                self.buf.zeroize();
                let mut out = [0u8; $out];
                for (o, w) in out
                    .chunks_exact_mut(core::mem::size_of::<$word>())
                    .zip(self.state.iter())
                {
                    o.copy_from_slice(&w.to_be_bytes());
                }
                self.state.zeroize();
                out
            }
        }
    };
}

pub(crate) mod sha256 {
    use super::{GenericArray, Zeroize, ZeroizeOnDrop};
    hmac_impl!(
        HmacSha256Key,
        u32,
        64,
        8,
        32,
        sha2::compress256,
        [
            0x6a09_e667_u32,
            0xbb67_ae85,
            0x3c6e_f372,
            0xa54f_f53a,
            0x510e_527f,
            0x9b05_688c,
            0x1f83_d9ab,
            0x5be0_cd19,
        ]
    );
}

pub(crate) mod sha512 {
    use super::{GenericArray, Zeroize, ZeroizeOnDrop};
    hmac_impl!(
        HmacSha512Key,
        u64,
        128,
        16,
        64,
        sha2::compress512,
        [
            0x6a09_e667_f3bc_c908_u64,
            0xbb67_ae85_84ca_a73b,
            0x3c6e_f372_fe94_f82b,
            0xa54f_f53a_5f1d_36f1,
            0x510e_527f_ade6_82d1,
            0x9b05_688c_2b3e_6c1f,
            0x1f83_d9ab_fb41_bd6b,
            0x5be0_cd19_137e_2179,
        ]
    );
}

pub(crate) use sha256::HmacSha256Key;
pub(crate) use sha512::HmacSha512Key;

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    fn reference256(key: &[u8; 32], msg: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }

    fn reference512(key: &[u8; 32], msg: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(key).unwrap();
        m.update(msg);
        m.finalize().into_bytes().to_vec()
    }

    #[test]
    fn matches_the_hmac_crate_at_every_length_and_split() {
        let key = [0x4bu8; 32];
        let k256 = HmacSha256Key::new(&key);
        let k512 = HmacSha512Key::new(&key);
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
        for n in 0..data.len() {
            let msg = &data[..n];
            let split = n / 3;
            assert_eq!(
                k256.mac(&[&msg[..split], &msg[split..]]).to_vec(),
                reference256(&key, msg),
                "{n}"
            );
            assert_eq!(
                k512.mac(&[&msg[..split], &msg[split..]]).to_vec(),
                reference512(&key, msg),
                "{n}"
            );
            assert_eq!(k512.mac(&[msg]).to_vec(), reference512(&key, msg), "{n}");
        }
    }
}
