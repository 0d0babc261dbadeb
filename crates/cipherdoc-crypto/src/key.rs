//! Key material (qe-protocol §1): data keys, key ids, the local master key,
//! local wrapping, and key-vault documents.

use std::fmt;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Document, RawBsonRef, RawDocument};
use zeroize::Zeroize;

use crate::aead::{self, Fle1Key, Fle2Key, Key96};
use crate::error::{Error, Result};
use crate::mac::{HmacSha256Key, HmacSha512Key};
use crate::random::RandomSource;
use crate::tokens::TokenKey;

fn key96_from_slice(what: &'static str, bytes: &[u8]) -> Result<zeroize::Zeroizing<Key96>> {
    if bytes.len() != 96 {
        return Err(Error::KeyLength {
            what,
            expected: 96,
            actual: bytes.len(),
        });
    }
    let mut k = zeroize::Zeroizing::new([[0u8; 32]; 3]);
    for (dst, src) in k.iter_mut().zip(bytes.chunks_exact(32)) {
        dst.copy_from_slice(src);
    }
    Ok(k)
}

/// A 96-byte data encryption key (DEK), zeroized on drop.
///
/// Different algorithms read different 32-byte slices (§1.1); the accessors
/// name them so callers never slice by hand. The HMAC key schedules of the
/// FLE1 and FLE2 MAC keys are computed once, when the key is created, so
/// per-value work does not repeat them.
#[derive(Clone)]
pub struct DataKey(Box<DataKeyInner>);

#[derive(Clone, Zeroize, zeroize::ZeroizeOnDrop)]
struct DataKeyInner {
    key: Key96,
    // Computed on first use, so that loading keys (e.g. unwrapping a key
    // vault) stays cheap; every part zeroizes itself on drop.
    #[zeroize(skip)]
    schedules: std::sync::OnceLock<Schedules>,
}

/// Key schedules derived from a DEK. The HMAC states derive ZeroizeOnDrop;
/// the `aes` crate (feature `zeroize`) zeroizes its round keys on drop.
#[derive(Clone)]
struct Schedules {
    fle1_aes: aes::Aes256,
    fle2_aes: aes::Aes256,
    fle1_mac: HmacSha512Key,
    fle1_iv: HmacSha512Key,
    fle2_mac: HmacSha256Key,
}

impl DataKey {
    /// Length in bytes.
    pub const LEN: usize = 96;

    fn from_parts(key: &Key96) -> Self {
        Self(Box::new(DataKeyInner {
            key: *key,
            schedules: std::sync::OnceLock::new(),
        }))
    }

    fn schedules(&self) -> &Schedules {
        let key = &self.0.key;
        self.0.schedules.get_or_init(|| Schedules {
            fle1_mac: HmacSha512Key::new(&key[0]),
            fle1_iv: HmacSha512Key::new(&key[2]),
            fle2_mac: HmacSha256Key::new(&key[1]),
            fle1_aes: aead::aes_key(&key[1]),
            fle2_aes: aead::aes_key(&key[0]),
        })
    }

    /// From exactly 96 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        key96_from_slice("data key", bytes).map(|k| Self::from_parts(&k))
    }

    /// From a 96-byte array (the array is zeroized after copying).
    pub fn from_bytes(mut bytes: [u8; 96]) -> Self {
        let mut k = zeroize::Zeroizing::new([[0u8; 32]; 3]);
        for (dst, src) in k.iter_mut().zip(bytes.chunks_exact(32)) {
            dst.copy_from_slice(src);
        }
        bytes.zeroize();
        Self::from_parts(&k)
    }

    /// A fresh random key.
    pub fn generate(rng: &mut dyn RandomSource) -> Result<Self> {
        let mut k = zeroize::Zeroizing::new([[0u8; 32]; 3]);
        for part in k.iter_mut() {
            rng.fill(part)?;
        }
        Ok(Self::from_parts(&k))
    }

    /// The whole key as bytes (for wrapping by a KMS).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.key.as_flattened()
    }

    pub(crate) fn fle1(&self) -> Fle1Key<'_> {
        let s = self.schedules();
        Fle1Key {
            mac: &s.fle1_mac,
            enc: &s.fle1_aes,
            iv: Some(&s.fle1_iv),
        }
    }

    pub(crate) fn fle2(&self) -> Fle2Key<'_> {
        let s = self.schedules();
        Fle2Key {
            enc: &s.fle2_aes,
            mac: &s.fle2_mac,
        }
    }

    /// FLE1 MAC key `Km` (bytes 0..32).
    pub fn fle1_mac_key(&self) -> &[u8; 32] {
        &self.0.key[0]
    }
    /// FLE1 encryption key `Ke` (bytes 32..64).
    pub fn fle1_enc_key(&self) -> &[u8; 32] {
        &self.0.key[1]
    }
    /// FLE1 deterministic-IV key `Kiv` (bytes 64..96).
    pub fn fle1_iv_key(&self) -> &[u8; 32] {
        &self.0.key[2]
    }
    /// FLE2 encryption key `Ke` (bytes 0..32; note the swap against FLE1).
    pub fn fle2_enc_key(&self) -> &[u8; 32] {
        &self.0.key[0]
    }
    /// FLE2 MAC key `Km` (bytes 32..64).
    pub fn fle2_mac_key(&self) -> &[u8; 32] {
        &self.0.key[1]
    }
    /// The QE token root, `TokenKey = DEK[64..96]` (§4).
    pub fn token_key(&self) -> TokenKey {
        TokenKey::from_bytes(self.0.key[2])
    }
}

/// The label of a [`KeyCheckValue`] (versioned, so that the definition can change).
const KCV_LABEL: &[u8] = b"cipherdoc key check value v1";

impl DataKey {
    /// The key's check value under `id` (see [`KeyCheckValue`]).
    pub fn check_value(&self, id: &KeyId) -> KeyCheckValue {
        let k = &self.0.key;
        // Keyed with Km and over Ke and the token key, so all 96 bytes and
        // the id are bound; the MAC state and its buffers zeroize themselves.
        let mut full = self
            .schedules()
            .fle2_mac
            .mac(&[KCV_LABEL, id.as_bytes(), &k[0], &k[2]]);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        full.zeroize();
        KeyCheckValue(out)
    }
}

/// A key check value: 16 bytes that identify a data key without revealing
/// it, so that a pinned encrypted fields map can notice a data key swapped
/// behind a pinned key id. Defined as the first 16 bytes of
/// `HMAC-SHA-256(Km, "cipherdoc key check value v1" ‖ keyId ‖ Ke ‖ TokenKey)`
/// with `Km = DEK[32..64]`, `Ke = DEK[0..32]`, `TokenKey = DEK[64..96]`.
/// HMAC is a PRF: the value says nothing about the key but whether it is
/// the same. Compared in constant time.
#[derive(Clone, Copy)]
pub struct KeyCheckValue([u8; 16]);

impl KeyCheckValue {
    /// From 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// From 32 hexadecimal digits.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|e| {
            Error::InvalidArgument(format!("a key check value is 32 hexadecimal digits: {e}"))
        })?;
        Ok(Self(out))
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// As 32 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl PartialEq for KeyCheckValue {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}
impl Eq for KeyCheckValue {}

impl fmt::Debug for KeyCheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCheckValue({})", self.to_hex())
    }
}

impl fmt::Display for KeyCheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Constant-time comparison of the key bytes.
impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.as_bytes(), other.as_bytes()).into()
    }
}
impl Eq for DataKey {}

impl zeroize::ZeroizeOnDrop for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The 96-byte key-encryption key of the `local` KMS provider, zeroized on drop.
#[derive(Clone)]
pub struct LocalMasterKey(Box<Key96>);

impl LocalMasterKey {
    /// From exactly 96 bytes; any other length is [`Error::KeyLength`].
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        key96_from_slice("local master key", bytes).map(|k| Self(Box::new(*k)))
    }

    /// Only what key wrapping needs (random IV, so no IV-key schedule).
    fn schedules(&self) -> (HmacSha512Key, aes::Aes256) {
        (HmacSha512Key::new(&self.0[0]), aead::aes_key(&self.0[1]))
    }
}

impl Drop for LocalMasterKey {
    fn drop(&mut self) {
        self.0.as_flattened_mut().zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for LocalMasterKey {}

impl fmt::Debug for LocalMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalMasterKey(..)")
    }
}

/// Wraps a DEK with the local master key (§1.2): FLE1 AEAD, random IV, no
/// associated data. The result is always 160 bytes.
pub fn wrap_local(
    kek: &LocalMasterKey,
    dek: &DataKey,
    rng: &mut dyn RandomSource,
) -> Result<Vec<u8>> {
    let iv = crate::random::random_iv(rng)?;
    let (mac, enc) = kek.schedules();
    let key = Fle1Key {
        mac: &mac,
        enc: &enc,
        iv: None,
    };
    aead::fle1_encrypt_raw(&key, &iv, &[], dek.as_bytes())
}

/// Unwraps `keyMaterial` produced by [`wrap_local`] (or libmongocrypt).
///
/// A wrong master key or modified material is [`Error::AuthenticationFailed`].
pub fn unwrap_local(kek: &LocalMasterKey, key_material: &[u8]) -> Result<DataKey> {
    let (mac, enc) = kek.schedules();
    let key = Fle1Key {
        mac: &mac,
        enc: &enc,
        iv: None,
    };
    let pt = aead::fle1_decrypt_raw(&key, &[], key_material)?;
    if pt.len() != DataKey::LEN {
        return Err(Error::KeyLength {
            what: "unwrapped data key",
            expected: DataKey::LEN,
            actual: pt.len(),
        });
    }
    DataKey::from_slice(&pt)
}

/// A data key's id: a 16-byte UUID (BSON binary subtype 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 16]);

impl KeyId {
    /// From the 16 UUID bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    /// From a slice; fails unless it is 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        bytes.try_into().map(Self).map_err(|_| Error::KeyLength {
            what: "key id",
            expected: 16,
            actual: bytes.len(),
        })
    }
    /// The 16 UUID bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// A random version-4 UUID, as libmongocrypt generates key ids.
    pub fn generate(rng: &mut dyn RandomSource) -> Result<Self> {
        let mut b = [0u8; 16];
        rng.fill(&mut b)?;
        b[6] = 0x40 | (b[6] & 0x0f);
        b[8] = 0x80 | (b[8] & 0x3f);
        Ok(Self(b))
    }
    /// As a BSON binary of subtype 4.
    pub fn to_binary(&self) -> Binary {
        Binary {
            subtype: BinarySubtype::Uuid,
            bytes: self.0.to_vec(),
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&uuid::Uuid::from_bytes(self.0).hyphenated(), f)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl std::str::FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(|u| Self(u.into_bytes()))
            .map_err(|e| Error::InvalidArgument(format!("not a UUID: {e}")))
    }
}

impl From<uuid::Uuid> for KeyId {
    fn from(u: uuid::Uuid) -> Self {
        Self(u.into_bytes())
    }
}

impl From<KeyId> for uuid::Uuid {
    fn from(k: KeyId) -> Self {
        uuid::Uuid::from_bytes(k.0)
    }
}

impl From<KeyId> for Binary {
    fn from(k: KeyId) -> Self {
        k.to_binary()
    }
}

impl From<KeyId> for Bson {
    fn from(k: KeyId) -> Self {
        Bson::Binary(k.to_binary())
    }
}

impl TryFrom<&Binary> for KeyId {
    type Error = Error;
    fn try_from(b: &Binary) -> Result<Self> {
        if b.subtype != BinarySubtype::Uuid {
            return Err(Error::decode(
                "key id",
                "expected BSON binary subtype 4 (UUID)",
            ));
        }
        Self::from_slice(&b.bytes).map_err(|_| Error::decode("key id", "UUID must be 16 bytes"))
    }
}

impl TryFrom<&Bson> for KeyId {
    type Error = Error;
    fn try_from(b: &Bson) -> Result<Self> {
        match b {
            Bson::Binary(bin) => Self::try_from(bin),
            _ => Err(Error::decode(
                "key id",
                "expected BSON binary subtype 4 (UUID)",
            )),
        }
    }
}

pub(crate) fn key_id_from_raw(what: &'static str, v: RawBsonRef<'_>) -> Result<KeyId> {
    match v {
        RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {
            KeyId::from_slice(b.bytes)
        }
        _ => Err(Error::decode(
            what,
            "expected a UUID (binary subtype 4, 16 bytes)",
        )),
    }
}

// ---------------------------------------------------------------------------
// Key documents

/// A key-vault document (§1.3), parsed as strictly as libmongocrypt.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDocument {
    /// `_id`.
    pub id: KeyId,
    /// `keyAltNames` (unique strings; empty when absent).
    pub key_alt_names: Vec<String>,
    /// `keyMaterial`: the wrapped DEK (binary subtype 0).
    pub key_material: Vec<u8>,
    /// `creationDate`.
    pub creation_date: DateTime,
    /// `updateDate`.
    pub update_date: DateTime,
    /// `status`: must be present; libmongocrypt ignores its value.
    pub status: Bson,
    /// `masterKey`: which KMS provider wrapped the DEK and with which key,
    /// kept as stored. Its fields are the KMS crate's to read
    /// (`cipherdoc_kms::MasterKey::from_document`), which checks them as
    /// strictly as libmongocrypt; the protocol needs only that it is a
    /// document.
    pub master_key: Document,
}

impl KeyDocument {
    /// A new document for a freshly wrapped key, as libmongocrypt writes it
    /// (`status` int32 0, both dates `now`).
    pub fn new(
        id: KeyId,
        key_alt_names: Vec<String>,
        key_material: Vec<u8>,
        master_key: Document,
        now: DateTime,
    ) -> Self {
        Self {
            id,
            key_alt_names,
            key_material,
            creation_date: now,
            update_date: now,
            status: Bson::Int32(0),
            master_key,
        }
    }

    /// Parses a key-vault document, rejecting unknown top-level fields,
    /// `keyMaterial` of a subtype other than 0, missing required fields,
    /// duplicate `keyAltNames` and `version` other than 0.
    pub fn from_document(doc: &Document) -> Result<Self> {
        let e = |m: &str| Error::KeyDocument(m.to_string());
        let mut id = None;
        let mut alt = Vec::new();
        let mut material = None;
        let mut created = None;
        let mut updated = None;
        let mut status = None;
        let mut master = None;
        for (k, v) in doc {
            match k.as_str() {
                "_id" => id = Some(KeyId::try_from(v).map_err(|_| e("'_id' is not a UUID"))?),
                "keyAltNames" => {
                    let Bson::Array(a) = v else {
                        return Err(e("malformed keyAltNames, expected array"));
                    };
                    alt.clear();
                    for n in a {
                        let Bson::String(s) = n else {
                            return Err(e("unexpected non-UTF8 keyAltName"));
                        };
                        if alt.contains(s) {
                            return Err(e("unexpected duplicate keyAltNames"));
                        }
                        alt.push(s.clone());
                    }
                }
                "keyMaterial" => match v {
                    Bson::Binary(b) if b.subtype == BinarySubtype::Generic => {
                        material = Some(b.bytes.clone());
                    }
                    Bson::Binary(_) => return Err(e("invalid 'keyMaterial', expected subtype 0")),
                    _ => return Err(e("invalid 'keyMaterial', expected binary")),
                },
                "masterKey" => {
                    let Bson::Document(d) = v else {
                        return Err(e("invalid 'masterKey', expected document"));
                    };
                    master = Some(d.clone());
                }
                "version" => {
                    let n = match v {
                        Bson::Int32(n) => i64::from(*n),
                        Bson::Int64(n) => *n,
                        _ => return Err(e("invalid 'version', expect int")),
                    };
                    if n != 0 {
                        return Err(e(
                            "unsupported key document version, only supports version=0",
                        ));
                    }
                }
                "status" => status = Some(v.clone()),
                "creationDate" => match v {
                    Bson::DateTime(d) => created = Some(*d),
                    _ => return Err(e("invalid 'creationDate', expect datetime")),
                },
                "updateDate" => match v {
                    Bson::DateTime(d) => updated = Some(*d),
                    _ => return Err(e("invalid 'updateDate', expect datetime")),
                },
                other => {
                    return Err(Error::KeyDocument(format!("unrecognized field '{other}'")));
                }
            }
        }
        Ok(Self {
            id: id.ok_or_else(|| e("no '_id'"))?,
            master_key: master.ok_or_else(|| e("no 'masterKey'"))?,
            key_material: material.ok_or_else(|| e("no 'keyMaterial'"))?,
            status: status.ok_or_else(|| e("no 'status'"))?,
            creation_date: created.ok_or_else(|| e("no 'creationDate'"))?,
            update_date: updated.ok_or_else(|| e("no 'updateDate'"))?,
            key_alt_names: alt,
        })
    }

    /// Parses raw BSON bytes of a key document.
    pub fn from_bson_bytes(bytes: &[u8]) -> Result<Self> {
        let raw = RawDocument::from_bytes(bytes)
            .map_err(|e| Error::KeyDocument(format!("invalid BSON: {e}")))?;
        let doc: Document = raw
            .try_into()
            .map_err(|e: bson::raw::Error| Error::KeyDocument(format!("invalid BSON: {e}")))?;
        Self::from_document(&doc)
    }

    /// Writes the document in libmongocrypt's order: `_id, keyAltNames?,
    /// keyMaterial, creationDate, updateDate, status, masterKey`.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        d.insert("_id", self.id);
        if !self.key_alt_names.is_empty() {
            d.insert("keyAltNames", self.key_alt_names.clone());
        }
        d.insert(
            "keyMaterial",
            Binary {
                subtype: BinarySubtype::Generic,
                bytes: self.key_material.clone(),
            },
        );
        d.insert("creationDate", self.creation_date);
        d.insert("updateDate", self.update_date);
        d.insert("status", self.status.clone());
        d.insert("masterKey", self.master_key.clone());
        d
    }
}

#[cfg(test)]
mod kcv_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn key_check_values_bind_every_key_byte_and_the_id() {
        let id = KeyId::from_bytes([1; 16]);
        let base = [7u8; 96];
        let kcv = DataKey::from_bytes(base).check_value(&id);
        assert_eq!(kcv, DataKey::from_bytes(base).check_value(&id));
        // Any changed byte of the 96, or another id, changes the value.
        for i in [0, 31, 32, 63, 64, 95] {
            let mut other = base;
            other[i] ^= 1;
            assert_ne!(kcv, DataKey::from_bytes(other).check_value(&id), "byte {i}");
        }
        assert_ne!(
            kcv,
            DataKey::from_bytes(base).check_value(&KeyId::from_bytes([2; 16]))
        );
        // Hex round trip; the value is not a prefix of the key.
        assert_eq!(KeyCheckValue::from_hex(&kcv.to_hex()).unwrap(), kcv);
        assert_ne!(&kcv.as_bytes()[..], &base[..16]);
        assert!(KeyCheckValue::from_hex("00").is_err());
        assert!(KeyCheckValue::from_hex(&"zz".repeat(16)).is_err());
    }
}
