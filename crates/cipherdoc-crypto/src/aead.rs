//! The symmetric constructions of qe-protocol §2.
//!
//! * FLE1 `AEAD_AES_256_CBC_HMAC_SHA_512` (deterministic and random IV), §2.2;
//! * FLE2 v1 AEAD (AES-256-CTR + HMAC-SHA-256), legacy, §2.3;
//! * FLE2v2 "CBC-AEAD" (AES-256-CBC + HMAC-SHA-256), §2.4;
//! * `EncryptCTR` (AES-256-CTR, no MAC), §2.5.
//!
//! All ciphertexts are `IV ‖ S ‖ tag` (the tag is absent for `EncryptCTR`).
//! Tags are compared in constant time before anything is decrypted.

use aes::Aes256;
use aes::cipher::{
    BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit, KeyIvInit, StreamCipher, block_padding,
};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::key::DataKey;
use crate::mac::{HmacSha256Key, HmacSha512Key};
use crate::random::{RandomSource, random_iv};

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

const IV_LEN: usize = 16;
const BLOCK: usize = 16;
const TAG_LEN: usize = 32;

/// A 32-byte key usable with [`encrypt_ctr`] / [`decrypt_ctr`].
///
/// Implemented by the tokens the protocol uses as CTR keys (ECOCToken,
/// ServerDataEncryptionLevel1Token, …) and by [`RawCtrKey`].
pub trait CtrKey {
    /// The 32 key bytes.
    fn ctr_key_bytes(&self) -> &[u8; 32];
}

/// A bare 32-byte AES-256-CTR key, for callers (and test vectors) that hold a
/// key that is not one of the protocol's tokens. Zeroized on drop.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct RawCtrKey([u8; 32]);

impl RawCtrKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// From a slice; fails unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let b: [u8; 32] = bytes.try_into().map_err(|_| Error::KeyLength {
            what: "AES-256-CTR key",
            expected: 32,
            actual: bytes.len(),
        })?;
        Ok(Self(b))
    }
}

impl std::fmt::Debug for RawCtrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawCtrKey(..)")
    }
}

impl CtrKey for RawCtrKey {
    fn ctr_key_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A 96-byte key seen as its three 32-byte parts (DEK or local KEK).
pub(crate) type Key96 = [[u8; 32]; 3];

/// The FLE1 view of a 96-byte key: MAC key schedule, encryption key, IV-key schedule.
pub(crate) struct Fle1Key<'a> {
    pub(crate) mac: &'a HmacSha512Key,
    pub(crate) enc: &'a Aes256,
    /// The deterministic-IV key schedule; `None` for keys that never encrypt deterministically.
    pub(crate) iv: Option<&'a HmacSha512Key>,
}

/// The FLE2 view of a 96-byte key: encryption key and MAC key schedule.
pub(crate) struct Fle2Key<'a> {
    pub(crate) enc: &'a Aes256,
    pub(crate) mac: &'a HmacSha256Key,
}

/// Length of the CBC body for a plaintext of `n` bytes (PKCS#7 always pads).
fn cbc_len(n: usize) -> usize {
    (n / BLOCK + 1) * BLOCK
}

/// Writes `IV ‖ CBC(P)` into a fresh buffer with room for a 32-byte tag.
/// An AES-256 key schedule (zeroized on drop by the `aes` crate).
pub(crate) fn aes_key(k: &[u8; 32]) -> Aes256 {
    Aes256::new(k.into())
}

fn cbc_encrypt_into(ke: &Aes256, iv: &[u8; 16], pt: &[u8]) -> Vec<u8> {
    let body = cbc_len(pt.len());
    let mut out = Vec::with_capacity(IV_LEN + body + TAG_LEN);
    out.extend_from_slice(iv);
    out.extend_from_slice(pt);
    out.resize(IV_LEN + body, 0);
    let enc = cbc::Encryptor::<&Aes256>::inner_iv_init(ke, iv.into());
    // The buffer has exactly the padded length, so padding cannot fail.
    let _ = enc.encrypt_padded_mut::<block_padding::Pkcs7>(&mut out[IV_LEN..], pt.len());
    out
}

/// Decrypts a CBC body and strips padding the way libmongocrypt does: only
/// checks that the last byte is at most 16.
fn cbc_decrypt(ke: &Aes256, iv: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if body.is_empty() || body.len() % BLOCK != 0 {
        return Err(Error::Decrypt(
            "input ciphertext too small or not a multiple of the block size",
        ));
    }
    let mut buf = Zeroizing::new(body.to_vec());
    let iv: &[u8; 16] = iv
        .try_into()
        .map_err(|_| Error::Decrypt("input ciphertext too small"))?;
    let dec = cbc::Decryptor::<&Aes256>::inner_iv_init(ke, iv.into());
    dec.decrypt_padded_mut::<block_padding::NoPadding>(&mut buf)
        .map_err(|_| Error::Decrypt("bad CBC block length"))?;
    let pad = usize::from(*buf.last().unwrap_or(&0));
    if pad > BLOCK || pad > buf.len() {
        return Err(Error::Decrypt("error padding"));
    }
    let n = buf.len() - pad;
    if n == 0 {
        return Err(Error::Decrypt(
            "input ciphertext too small: plaintext is empty",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}

fn check_tag(expected: &[u8], given: &[u8]) -> Result<()> {
    if bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(Error::AuthenticationFailed)
    }
}

fn split_iv_body_tag(ct: &[u8], min_body: usize) -> Result<(&[u8], &[u8], &[u8])> {
    if ct.len() < IV_LEN + min_body + TAG_LEN {
        return Err(Error::Decrypt("input ciphertext too small"));
    }
    let (iv, rest) = ct.split_at(IV_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    Ok((iv, body, tag))
}

// ---------------------------------------------------------------------------
// FLE1

fn fle1_al(aad: &[u8]) -> [u8; 8] {
    ((aad.len() as u64).wrapping_mul(8)).to_be_bytes()
}

pub(crate) fn fle1_encrypt_raw(
    key: &Fle1Key<'_>,
    iv: &[u8; 16],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>> {
    if pt.is_empty() {
        return Err(Error::Encrypt("input plaintext too small"));
    }
    let mut out = cbc_encrypt_into(key.enc, iv, pt);
    let tag = key.mac.mac(&[aad, &out, &fle1_al(aad)]);
    out.extend_from_slice(&tag[..TAG_LEN]);
    Ok(out)
}

pub(crate) fn fle1_deterministic_iv_raw(
    key: &Fle1Key<'_>,
    aad: &[u8],
    pt: &[u8],
) -> Result<[u8; 16]> {
    let ivk = key
        .iv
        .ok_or(Error::Encrypt("this key has no deterministic-IV key"))?;
    let full = ivk.mac(&[aad, &fle1_al(aad), pt]);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&full[..16]);
    Ok(iv)
}

pub(crate) fn fle1_decrypt_raw(
    key: &Fle1Key<'_>,
    aad: &[u8],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let (iv, body, tag) = split_iv_body_tag(ct, BLOCK)?;
    let expected = key.mac.mac(&[aad, iv, body, &fle1_al(aad)]);
    check_tag(&expected[..TAG_LEN], tag)?;
    cbc_decrypt(key.enc, iv, body)
}

/// FLE1 AEAD encryption with a caller-chosen IV (§2.2). The random algorithm
/// is this with 16 random bytes; see [`fle1_encrypt_random`].
pub fn fle1_encrypt_with_iv(
    key: &DataKey,
    iv: &[u8; 16],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    fle1_encrypt_raw(&key.fle1(), iv, aad, plaintext)
}

/// FLE1 deterministic encryption: the IV is
/// `HMAC-SHA-512(Kiv, A ‖ AL ‖ P)[0..16]`.
pub fn fle1_encrypt_deterministic(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let iv = fle1_deterministic_iv_raw(&key.fle1(), aad, plaintext)?;
    fle1_encrypt_raw(&key.fle1(), &iv, aad, plaintext)
}

/// FLE1 randomized encryption (random IV).
pub fn fle1_encrypt_random(
    key: &DataKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut dyn RandomSource,
) -> Result<Vec<u8>> {
    let iv = random_iv(rng)?;
    fle1_encrypt_raw(&key.fle1(), &iv, aad, plaintext)
}

/// FLE1 AEAD decryption (both algorithms).
pub fn fle1_decrypt(key: &DataKey, aad: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    fle1_decrypt_raw(&key.fle1(), aad, ciphertext)
}

// ---------------------------------------------------------------------------
// FLE2 v1 (CTR + HMAC-SHA-256)

/// Legacy FLE2 v1 AEAD encryption (§2.3): `IV ‖ CTR(Ke, P) ‖ HMAC(Km, A ‖ IV ‖ S)`.
/// Only 6.0 data uses it; provided so such data can be read and tested.
pub fn fle2v1_ctr_aead_encrypt_with_iv(
    key: &DataKey,
    iv: &[u8; 16],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if plaintext.is_empty() {
        return Err(Error::Encrypt("input plaintext too small"));
    }
    let k = key.fle2();
    let mut out = Vec::with_capacity(IV_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);
    ctr::Ctr128BE::<&Aes256>::from_core(ctr::CtrCore::inner_iv_init(k.enc, iv.into()))
        .apply_keystream(&mut out[IV_LEN..]);
    let tag = k.mac.mac(&[aad, &out]);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Legacy FLE2 v1 AEAD decryption (§2.3).
pub fn fle2v1_ctr_aead_decrypt(
    key: &DataKey,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let (iv, body, tag) = split_iv_body_tag(ciphertext, 1)?;
    let k = key.fle2();
    check_tag(&k.mac.mac(&[aad, iv, body]), tag)?;
    let mut out = Zeroizing::new(body.to_vec());
    let iv: &[u8; 16] = iv
        .try_into()
        .map_err(|_| Error::Decrypt("input ciphertext too small"))?;
    ctr::Ctr128BE::<&Aes256>::from_core(ctr::CtrCore::inner_iv_init(k.enc, iv.into()))
        .apply_keystream(&mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------
// FLE2v2 CBC-AEAD

/// FLE2v2 CBC-AEAD encryption with a caller-chosen IV (§2.4):
/// `IV ‖ CBC(Ke, P) ‖ HMAC-SHA-256(Km, A ‖ IV ‖ S)` with `Ke = key[0..32]`,
/// `Km = key[32..64]`.
pub fn cbc_aead_encrypt_with_iv(
    key: &DataKey,
    iv: &[u8; 16],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    if plaintext.is_empty() {
        return Err(Error::Encrypt("input plaintext too small"));
    }
    let k = key.fle2();
    let mut out = cbc_encrypt_into(k.enc, iv, plaintext);
    let tag = k.mac.mac(&[aad, &out]);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// FLE2v2 CBC-AEAD encryption with a random IV.
pub fn cbc_aead_encrypt(
    key: &DataKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut dyn RandomSource,
) -> Result<Vec<u8>> {
    let iv = random_iv(rng)?;
    cbc_aead_encrypt_with_iv(key, &iv, aad, plaintext)
}

/// FLE2v2 CBC-AEAD decryption.
pub fn cbc_aead_decrypt(
    key: &DataKey,
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let (iv, body, tag) = split_iv_body_tag(ciphertext, BLOCK)?;
    let k = key.fle2();
    check_tag(&k.mac.mac(&[aad, iv, body]), tag)?;
    cbc_decrypt(k.enc, iv, body)
}

// ---------------------------------------------------------------------------
// EncryptCTR

/// `EncryptCTR` with a caller-chosen IV (§2.5): `IV ‖ AES-256-CTR(k, IV, P)`.
/// There is no integrity check.
pub fn encrypt_ctr_with_iv(
    key: &(impl CtrKey + ?Sized),
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(IV_LEN + plaintext.len());
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);
    Aes256Ctr::new(key.ctr_key_bytes().into(), iv.into()).apply_keystream(&mut out[IV_LEN..]);
    out
}

/// `EncryptCTR` with a random IV.
pub fn encrypt_ctr(
    key: &(impl CtrKey + ?Sized),
    plaintext: &[u8],
    rng: &mut dyn RandomSource,
) -> Result<Vec<u8>> {
    let iv = random_iv(rng)?;
    Ok(encrypt_ctr_with_iv(key, &iv, plaintext))
}

/// Inverse of [`encrypt_ctr`]. A wrong key yields garbage, not an error; the
/// only check is that the input holds an IV.
pub fn decrypt_ctr(key: &(impl CtrKey + ?Sized), ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    decrypt_ctr_into(key, ciphertext, &mut out)?;
    Ok(out)
}

/// Like [`decrypt_ctr`] but writes into `out` (cleared first), for callers that
/// want to avoid an allocation.
pub fn decrypt_ctr_into(
    key: &(impl CtrKey + ?Sized),
    ciphertext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    if ciphertext.len() < IV_LEN {
        return Err(Error::Decrypt("input ciphertext too small"));
    }
    let (iv, body) = ciphertext.split_at(IV_LEN);
    out.clear();
    out.extend_from_slice(body);
    let iv: &[u8; 16] = iv
        .try_into()
        .map_err(|_| Error::Decrypt("input ciphertext too small"))?;
    Aes256Ctr::new(key.ctr_key_bytes().into(), iv.into()).apply_keystream(out);
    Ok(())
}

/// Decrypts a fixed-size CTR ciphertext (`16 + N` bytes) into an array.
pub(crate) fn decrypt_ctr_array<const N: usize>(
    key: &(impl CtrKey + ?Sized),
    ciphertext: &[u8],
) -> Result<[u8; N]> {
    if ciphertext.len() != IV_LEN + N {
        return Err(Error::Decrypt("CTR ciphertext has the wrong length"));
    }
    let (iv, body) = ciphertext.split_at(IV_LEN);
    let mut out = [0u8; N];
    out.copy_from_slice(body);
    let iv: &[u8; 16] = iv
        .try_into()
        .map_err(|_| Error::Decrypt("input ciphertext too small"))?;
    Aes256Ctr::new(key.ctr_key_bytes().into(), iv.into()).apply_keystream(&mut out);
    Ok(out)
}
