//! Client operations (qe-protocol §6.9, §6.10): turning values into payloads
//! and stored blobs back into values. Byte-exact with libmongocrypt given the
//! same random bytes.

use std::collections::{BTreeMap, HashMap};

use bson::Bson;
use bson::spec::ElementType;

use crate::aead;
use crate::error::{Error, Result};
use crate::key::{DataKey, KeyId};
use crate::payload::{
    BlobSubtype, FindEqualityPayloadV2, Fle1Algorithm, Fle1EncryptedValue,
    IndexedEqualityEncryptedValueV2, IndexedRangeEncryptedValueV2, IndexedTextEncryptedValue,
    InsertUpdatePayloadV2, UnindexedEncryptedValueV2, value_bytes, value_from_bytes,
};
use crate::random::{RandomSource, choose_contention_factor};
use crate::tokens::{IndexKeyTokens, ServerDataEncryptionLevel1Token};

/// The key that encrypts the value itself (`ku`), with its id.
#[derive(Debug, Clone, Copy)]
pub struct UserKey<'a> {
    /// Key id (`ku`), written into the ciphertext.
    pub id: KeyId,
    /// The data key.
    pub key: &'a DataKey,
}

/// Finds data keys by id for decryption.
pub trait KeyLookup {
    /// The key with this id, if loaded.
    fn data_key(&self, id: &KeyId) -> Option<&DataKey>;
}

impl<S: std::hash::BuildHasher> KeyLookup for HashMap<KeyId, DataKey, S> {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        self.get(id)
    }
}

impl KeyLookup for BTreeMap<KeyId, DataKey> {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        self.get(id)
    }
}

impl KeyLookup for [(KeyId, DataKey)] {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        self.iter().find(|(k, _)| k == id).map(|(_, d)| d)
    }
}

impl KeyLookup for (KeyId, &DataKey) {
    fn data_key(&self, id: &KeyId) -> Option<&DataKey> {
        (self.0 == *id).then_some(self.1)
    }
}

fn lookup<'k>(keys: &'k (impl KeyLookup + ?Sized), id: &KeyId) -> Result<&'k DataKey> {
    keys.data_key(id).ok_or(Error::MissingKey(*id))
}

/// BSON types that can never be encrypted (§7.4).
fn check_encryptable(t: ElementType) -> Result<()> {
    match t {
        ElementType::Null | ElementType::Undefined | ElementType::MinKey | ElementType::MaxKey => {
            Err(Error::Bson(format!(
                "a value of BSON type {t:?} cannot be encrypted"
            )))
        }
        _ => Ok(()),
    }
}

/// BSON types allowed for an equality index (§7.4).
pub fn equality_type_allowed(t: ElementType) -> bool {
    matches!(
        t,
        ElementType::String
            | ElementType::Int32
            | ElementType::Int64
            | ElementType::Boolean
            | ElementType::DateTime
            | ElementType::Timestamp
            | ElementType::ObjectId
            | ElementType::Binary
            | ElementType::RegularExpression
            | ElementType::JavaScriptCode
            | ElementType::Symbol
            | ElementType::DbPointer
    )
}

fn check_equality(t: ElementType) -> Result<()> {
    if equality_type_allowed(t) {
        Ok(())
    } else {
        Err(Error::Bson(format!(
            "BSON type {t:?} cannot be used with an equality index; use an unindexed field"
        )))
    }
}

/// `ku ‖ CBC-AEAD(ku_key, VB, A = ku)`: the IUP `v` field (§6.5), shared by
/// equality and range insert payloads. One IV.
pub fn encrypt_client_value(
    user: UserKey<'_>,
    vb: &[u8],
    rng: &mut dyn RandomSource,
) -> Result<Vec<u8>> {
    let ct = aead::cbc_aead_encrypt(user.key, user.id.as_bytes(), vb, rng)?;
    let mut v = Vec::with_capacity(16 + ct.len());
    v.extend_from_slice(user.id.as_bytes());
    v.extend_from_slice(&ct);
    Ok(v)
}

/// Builds an equality insert payload (blob 11) for `value` (§6.9).
///
/// Random bytes are consumed as libmongocrypt does: the contention draw
/// (8 bytes per draw, only when `max_contention > 0`), the IV of `p`, the IV
/// of `v`.
#[allow(clippy::many_single_char_names)] // names mirror the protocol fields
pub fn encrypt_equality_insert(
    value: &Bson,
    index: &IndexKeyTokens,
    user: UserKey<'_>,
    max_contention: u64,
    rng: &mut dyn RandomSource,
) -> Result<InsertUpdatePayloadV2> {
    let t = value.element_type();
    check_equality(t)?;
    let k = choose_contention_factor(max_contention, rng)?;
    let vb = value_bytes(value)?;
    let edc = index.edc().derive_from_data(&vb).with_contention(k);
    let esc = index.esc().derive_from_data(&vb).with_contention(k);
    let l = index.server_token_derivation_level1().derive_from_data(&vb);
    let p = aead::encrypt_ctr(index.ecoc(), esc.as_bytes(), rng)?;
    let v = encrypt_client_value(user, &vb, rng)?;
    Ok(InsertUpdatePayloadV2 {
        edc_derived_token: edc,
        esc_derived_token: esc,
        encrypted_tokens: p,
        index_key_id: *index.key_id(),
        bson_type: t,
        value: v,
        server_encryption_token: index.server_data_encryption_level1().clone(),
        server_derived_from_data_token: l,
        contention_factor: k,
        edge_token_sets: None,
        sparsity: None,
        precision: None,
        trim_factor: None,
        index_min: None,
        index_max: None,
        text_search_token_sets: None,
    })
}

/// Builds an equality find payload (blob 12): un-contended tokens plus `cm`.
/// Consumes no randomness.
pub fn encrypt_equality_find(
    value: &Bson,
    index: &IndexKeyTokens,
    max_contention: u64,
) -> Result<FindEqualityPayloadV2> {
    check_equality(value.element_type())?;
    let vb = value_bytes(value)?;
    Ok(FindEqualityPayloadV2 {
        edc_derived_token: index.edc().derive_from_data(&vb),
        esc_derived_token: index.esc().derive_from_data(&vb),
        server_derived_from_data_token: index
            .server_token_derivation_level1()
            .derive_from_data(&vb),
        max_contention_factor: max_contention,
    })
}

/// Encrypts a value for an unindexed field (blob 16, §6.8). One IV.
pub fn encrypt_unindexed(
    value: &Bson,
    user: UserKey<'_>,
    rng: &mut dyn RandomSource,
) -> Result<UnindexedEncryptedValueV2> {
    let t = value.element_type();
    check_encryptable(t)?;
    let vb = value_bytes(value)?;
    let mut out = UnindexedEncryptedValueV2 {
        key_id: user.id,
        bson_type: t,
        ciphertext: Vec::new(),
    };
    out.ciphertext = aead::cbc_aead_encrypt(user.key, &out.associated_data(), &vb, rng)?;
    Ok(out)
}

/// FLE1 encryption (blob 1 or 2, §5.1). `rng` is used only by the random
/// algorithm.
pub fn encrypt_fle1(
    value: &Bson,
    algorithm: Fle1Algorithm,
    key: UserKey<'_>,
    rng: &mut dyn RandomSource,
) -> Result<Fle1EncryptedValue> {
    let t = value.element_type();
    check_encryptable(t)?;
    if algorithm == Fle1Algorithm::Deterministic
        && matches!(
            t,
            ElementType::Double
                | ElementType::Decimal128
                | ElementType::EmbeddedDocument
                | ElementType::Array
                | ElementType::Boolean
                | ElementType::JavaScriptCodeWithScope
        )
    {
        return Err(Error::Bson(format!(
            "BSON type {t:?} cannot be encrypted deterministically; use the random algorithm"
        )));
    }
    let vb = value_bytes(value)?;
    let mut out = Fle1EncryptedValue {
        algorithm,
        key_id: key.id,
        bson_type: t,
        ciphertext: Vec::new(),
    };
    let aad = out.associated_data();
    out.ciphertext = match algorithm {
        Fle1Algorithm::Deterministic => aead::fle1_encrypt_deterministic(key.key, &aad, &vb)?,
        Fle1Algorithm::Random => aead::fle1_encrypt_random(key.key, &aad, &vb, rng)?,
    };
    Ok(out)
}

// ---------------------------------------------------------------------------
// Decryption

/// Decrypts an FLE1 value.
pub fn decrypt_fle1(v: &Fle1EncryptedValue, keys: &(impl KeyLookup + ?Sized)) -> Result<Bson> {
    let key = lookup(keys, &v.key_id)?;
    let vb = aead::fle1_decrypt(key, &v.associated_data(), &v.ciphertext)?;
    value_from_bytes(v.bson_type, &vb)
}

/// Decrypts an unindexed value (16).
pub fn decrypt_unindexed(
    v: &UnindexedEncryptedValueV2,
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    let key = lookup(keys, &v.key_id)?;
    let vb = aead::cbc_aead_decrypt(key, &v.associated_data(), &v.ciphertext)?;
    value_from_bytes(v.bson_type, &vb)
}

/// Decrypts `K_KeyId ‖ ClientEncryptedValue` (the IUP `v` field).
fn decrypt_client_value(
    t: ElementType,
    v: &[u8],
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    if v.len() < 16 {
        return Err(Error::Decrypt("client value shorter than a key id"));
    }
    let (id, ct) = v.split_at(16);
    let id = KeyId::from_slice(id)?;
    let key = lookup(keys, &id)?;
    let vb = aead::cbc_aead_decrypt(key, id.as_bytes(), ct)?;
    value_from_bytes(t, &vb)
}

/// Decrypts a server-encrypted value `SEV` with the index key's
/// ServerDataEncryptionLevel1Token, then the client value inside it.
fn decrypt_sev(
    t: ElementType,
    s_key_id: &KeyId,
    sev: &[u8],
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    let s_key = lookup(keys, s_key_id)?;
    let token: ServerDataEncryptionLevel1Token = s_key.token_key().server_data_encryption_level1();
    let inner = aead::decrypt_ctr(&token, sev)?;
    decrypt_client_value(t, &inner, keys)
}

/// Decrypts the value inside an insert payload (11); libmongocrypt allows it.
pub fn decrypt_insert_payload(
    p: &InsertUpdatePayloadV2,
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    decrypt_client_value(p.bson_type, &p.value, keys)
}

/// Decrypts a stored indexed equality value (14). Needs the index key
/// (`S_KeyId`) and the user key (`K_KeyId`, found inside).
pub fn decrypt_indexed_equality(
    v: &IndexedEqualityEncryptedValueV2,
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    decrypt_sev(
        v.bson_type,
        &v.index_key_id,
        &v.server_encrypted_value,
        keys,
    )
}

/// Decrypts a stored indexed range value (15), like [`decrypt_indexed_equality`].
pub fn decrypt_indexed_range(
    v: &IndexedRangeEncryptedValueV2,
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    decrypt_sev(
        v.bson_type,
        &v.index_key_id,
        &v.server_encrypted_value,
        keys,
    )
}

/// Decrypts a stored text-search value (17), like [`decrypt_indexed_equality`].
pub fn decrypt_indexed_text(
    v: &IndexedTextEncryptedValue,
    keys: &(impl KeyLookup + ?Sized),
) -> Result<Bson> {
    decrypt_sev(
        v.bson_type,
        &v.index_key_id,
        &v.server_encrypted_value,
        keys,
    )
}

/// Decrypts any encrypted blob (BSON binary subtype 6 bytes), dispatching on
/// its first byte (§6.10). Returns `Ok(None)` for blobs that carry no
/// ciphertext (placeholders and find payloads: 0, 3, 12, 13, 18); protocol v1
/// values are errors.
pub fn decrypt_blob(blob: &[u8], keys: &(impl KeyLookup + ?Sized)) -> Result<Option<Bson>> {
    use BlobSubtype as B;
    match BlobSubtype::of(blob)? {
        B::Fle1DeterministicEncryptedValue | B::Fle1RandomEncryptedValue => {
            // Decrypted in place (no copy of the ciphertext): whole-document
            // decryption of FLE1 fields is a benchmarked hot path.
            let what = "FLE1 encrypted value";
            let (aad, ct) = blob
                .split_at_checked(18)
                .filter(|(_, ct)| !ct.is_empty())
                .ok_or_else(|| Error::decode(what, "too short"))?;
            let (id, t, _) =
                crate::payload::iev_key_id_and_type(what, aad.get(1..).unwrap_or(&[]))?;
            let vb = aead::fle1_decrypt(lookup(keys, &id)?, aad, ct)?;
            value_from_bytes(t, &vb).map(Some)
        }
        B::Fle2UnindexedEncryptedValueV2 => {
            decrypt_unindexed(&UnindexedEncryptedValueV2::decode(blob)?, keys).map(Some)
        }
        B::Fle2IndexedEqualityEncryptedValueV2 => {
            decrypt_indexed_equality(&IndexedEqualityEncryptedValueV2::decode(blob)?, keys)
                .map(Some)
        }
        B::Fle2IndexedRangeEncryptedValueV2 => {
            decrypt_indexed_range(&IndexedRangeEncryptedValueV2::decode(blob)?, keys).map(Some)
        }
        B::Fle2IndexedTextEncryptedValue => {
            decrypt_indexed_text(&IndexedTextEncryptedValue::decode(blob)?, keys).map(Some)
        }
        B::Fle2InsertUpdatePayloadV2 => {
            decrypt_insert_payload(&InsertUpdatePayloadV2::decode(blob)?, keys).map(Some)
        }
        B::Fle1EncryptionPlaceholder
        | B::Fle2EncryptionPlaceholder
        | B::Fle2FindEqualityPayloadV2
        | B::Fle2FindRangePayloadV2
        | B::Fle2FindTextPayload => Ok(None),
        other => Err(Error::decode(
            "encrypted blob",
            format!("{other:?} is not supported (protocol v1)"),
        )),
    }
}
