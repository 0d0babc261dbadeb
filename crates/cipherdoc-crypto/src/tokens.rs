//! The QE token hierarchy (qe-protocol §4).
//!
//! Every token is its own type, and each derivation is a method on its parent,
//! so the compiler enforces the hierarchy: an `EscToken` cannot be used where
//! an `EdcToken` is needed, and a find payload cannot be built from contended
//! tokens. All tokens are 32 bytes, zeroized on drop, and print as `Name(..)`.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::aead::CtrKey;
use crate::error::{Error, Result};
use crate::key::{DataKey, KeyId};

/// `HMAC-SHA-256(key, parts…)`, through [`crate::mac`], whose key schedule
/// and message buffers are zeroized (the `hmac` crate's are not, and the key
/// here is a parent token).
pub(crate) fn hmac_parts(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    crate::mac::HmacSha256Key::new(key).mac(parts)
}

pub(crate) fn hmac_u64(key: &[u8; 32], n: u64) -> [u8; 32] {
    hmac_parts(key, &[&n.to_le_bytes()])
}

/// What every token type is: 32 bytes that can be rebuilt from a codec and
/// read back. Lets generic code (the text-search codecs, one per family)
/// handle tokens without knowing which one.
pub trait Token: Clone + fmt::Debug + PartialEq + Eq {
    /// Wraps 32 token bytes.
    fn from_bytes(bytes: [u8; 32]) -> Self;
    /// The 32 token bytes.
    fn as_bytes(&self) -> &[u8; 32];
}

macro_rules! token {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 token bytes (from a codec or a test vector).
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// From a slice; fails unless it is exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                bytes.try_into().map(Self).map_err(|_| Error::KeyLength {
                    what: stringify!($name),
                    expected: 32,
                    actual: bytes.len(),
                })
            }
            /// The 32 token bytes (for codecs).
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl Token for $name {
            fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        /// Constant-time comparison.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }
        impl Eq for $name {}
    };
}

macro_rules! ctr_key {
    ($($name:ident),*) => {
        $(impl CtrKey for $name {
            fn ctr_key_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        })*
    };
}

token!(
    /// `TokenKey = DEK[64..96]`, the root of all tokens of one index key.
    TokenKey
);
token!(
    /// `HMAC(TokenKey, 1)`.
    CollectionsLevel1Token
);
token!(
    /// `HMAC(TokenKey, 2)`.
    ServerTokenDerivationLevel1Token
);
token!(
    /// `HMAC(TokenKey, 3)`: the key the server wraps client ciphertexts with (IUP `e`).
    ServerDataEncryptionLevel1Token
);
token!(
    /// `HMAC(CollectionsLevel1Token, 1)`.
    EdcToken
);
token!(
    /// `HMAC(CollectionsLevel1Token, 2)`.
    EscToken
);
token!(
    /// `HMAC(CollectionsLevel1Token, 3)`; protocol v1 only (unused in v2).
    EccToken
);
token!(
    /// `HMAC(CollectionsLevel1Token, 4)`: encrypts ECOC entries; sent for compaction.
    EcocToken
);
token!(
    /// `HMAC(EDCToken, v)`; find payload `d`.
    EdcDerivedFromDataToken
);
token!(
    /// `HMAC(ESCToken, v)`; find payload `s`.
    EscDerivedFromDataToken
);
token!(
    /// `HMAC(ECCToken, v)`; protocol v1 only.
    EccDerivedFromDataToken
);
token!(
    /// `HMAC(ServerTokenDerivationLevel1Token, v)`; payload `l`.
    ServerDerivedFromDataToken
);
token!(
    /// `HMAC(EDCDerivedFromDataToken, u)`; insert payload `d`.
    EdcDerivedFromDataTokenAndContentionFactor
);
token!(
    /// `HMAC(ESCDerivedFromDataToken, u)`; insert payload `s`.
    EscDerivedFromDataTokenAndContentionFactor
);
token!(
    /// `HMAC(ECCDerivedFromDataToken, u)`; protocol v1 only.
    EccDerivedFromDataTokenAndContentionFactor
);
token!(
    /// `HMAC(EDC…AndContentionFactor, 1)`: the key of the `__safeContent__` tags.
    EdcTwiceDerivedToken
);
token!(
    /// `HMAC(ESC…AndContentionFactor, 1)`: the key of ESC `_id`s.
    EscTwiceDerivedTagToken
);
token!(
    /// `HMAC(ESC…AndContentionFactor, 2)`: encrypts ESC anchor values.
    EscTwiceDerivedValueToken
);
token!(
    /// `HMAC(ServerDerivedFromDataToken, 1)`: encrypts a metadata block's count.
    ServerCountAndContentionFactorEncryptionToken
);
token!(
    /// `HMAC(ServerDerivedFromDataToken, 2)`: encrypts a metadata block's zeros.
    ServerZerosEncryptionToken
);
token!(
    /// `HMAC(ESCToken, 17 zero bytes)`: range anchor padding root, sent for compaction.
    AnchorPaddingTokenRoot
);
token!(
    /// `HMAC(AnchorPaddingTokenRoot, 1)`: key of padding anchor `_id`s.
    AnchorPaddingKeyToken
);
token!(
    /// `HMAC(AnchorPaddingTokenRoot, 2)`: encrypts padding anchor values.
    AnchorPaddingValueToken
);

ctr_key!(
    EcocToken,
    ServerDataEncryptionLevel1Token,
    ServerCountAndContentionFactorEncryptionToken,
    ServerZerosEncryptionToken,
    EscTwiceDerivedValueToken,
    AnchorPaddingValueToken
);

impl TokenKey {
    /// `CollectionsLevel1Token = HMAC(TokenKey, 1)`.
    pub fn collections_level1(&self) -> CollectionsLevel1Token {
        CollectionsLevel1Token(hmac_u64(&self.0, 1))
    }
    /// `ServerTokenDerivationLevel1Token = HMAC(TokenKey, 2)`.
    pub fn server_token_derivation_level1(&self) -> ServerTokenDerivationLevel1Token {
        ServerTokenDerivationLevel1Token(hmac_u64(&self.0, 2))
    }
    /// `ServerDataEncryptionLevel1Token = HMAC(TokenKey, 3)`.
    pub fn server_data_encryption_level1(&self) -> ServerDataEncryptionLevel1Token {
        ServerDataEncryptionLevel1Token(hmac_u64(&self.0, 3))
    }
}

impl CollectionsLevel1Token {
    /// `EDCToken = HMAC(CollectionsLevel1Token, 1)`.
    pub fn edc(&self) -> EdcToken {
        EdcToken(hmac_u64(&self.0, 1))
    }
    /// `ESCToken = HMAC(CollectionsLevel1Token, 2)`.
    pub fn esc(&self) -> EscToken {
        EscToken(hmac_u64(&self.0, 2))
    }
    /// `ECCToken = HMAC(CollectionsLevel1Token, 3)` (protocol v1).
    pub fn ecc(&self) -> EccToken {
        EccToken(hmac_u64(&self.0, 3))
    }
    /// `ECOCToken = HMAC(CollectionsLevel1Token, 4)`.
    pub fn ecoc(&self) -> EcocToken {
        EcocToken(hmac_u64(&self.0, 4))
    }
}

impl EdcToken {
    /// `HMAC(EDCToken, v)`; `v` = value bytes or edge string (§3).
    pub fn derive_from_data(&self, v: &[u8]) -> EdcDerivedFromDataToken {
        EdcDerivedFromDataToken(hmac_parts(&self.0, &[v]))
    }
}

impl EscToken {
    /// `HMAC(ESCToken, v)`.
    pub fn derive_from_data(&self, v: &[u8]) -> EscDerivedFromDataToken {
        EscDerivedFromDataToken(hmac_parts(&self.0, &[v]))
    }
    /// `AnchorPaddingTokenRoot = HMAC(ESCToken, 17 zero bytes)`.
    pub fn anchor_padding_root(&self) -> AnchorPaddingTokenRoot {
        AnchorPaddingTokenRoot(hmac_parts(&self.0, &[&[0u8; 17]]))
    }
}

impl EccToken {
    /// `HMAC(ECCToken, v)` (protocol v1).
    pub fn derive_from_data(&self, v: &[u8]) -> EccDerivedFromDataToken {
        EccDerivedFromDataToken(hmac_parts(&self.0, &[v]))
    }
}

impl ServerTokenDerivationLevel1Token {
    /// `ServerDerivedFromDataToken = HMAC(ServerTokenDerivationLevel1Token, v)`.
    pub fn derive_from_data(&self, v: &[u8]) -> ServerDerivedFromDataToken {
        ServerDerivedFromDataToken(hmac_parts(&self.0, &[v]))
    }
}

impl EdcDerivedFromDataToken {
    /// `HMAC(EDCDerivedFromDataToken, LE64(u))`.
    pub fn with_contention(&self, u: u64) -> EdcDerivedFromDataTokenAndContentionFactor {
        EdcDerivedFromDataTokenAndContentionFactor(hmac_u64(&self.0, u))
    }
}

impl EscDerivedFromDataToken {
    /// `HMAC(ESCDerivedFromDataToken, LE64(u))`.
    pub fn with_contention(&self, u: u64) -> EscDerivedFromDataTokenAndContentionFactor {
        EscDerivedFromDataTokenAndContentionFactor(hmac_u64(&self.0, u))
    }
}

impl EccDerivedFromDataToken {
    /// `HMAC(ECCDerivedFromDataToken, LE64(u))` (protocol v1).
    pub fn with_contention(&self, u: u64) -> EccDerivedFromDataTokenAndContentionFactor {
        EccDerivedFromDataTokenAndContentionFactor(hmac_u64(&self.0, u))
    }
}

impl EdcDerivedFromDataTokenAndContentionFactor {
    /// `EDCTwiceDerivedToken = HMAC(self, 1)`.
    pub fn twice_derived(&self) -> EdcTwiceDerivedToken {
        EdcTwiceDerivedToken(hmac_u64(&self.0, 1))
    }
}

impl EscDerivedFromDataTokenAndContentionFactor {
    /// `ESCTwiceDerivedTagToken = HMAC(self, 1)`.
    pub fn twice_derived_tag(&self) -> EscTwiceDerivedTagToken {
        EscTwiceDerivedTagToken(hmac_u64(&self.0, 1))
    }
    /// `ESCTwiceDerivedValueToken = HMAC(self, 2)`.
    pub fn twice_derived_value(&self) -> EscTwiceDerivedValueToken {
        EscTwiceDerivedValueToken(hmac_u64(&self.0, 2))
    }
}

impl ServerDerivedFromDataToken {
    /// `ServerCountAndContentionFactorEncryptionToken = HMAC(self, 1)`.
    pub fn count_and_contention_encryption(&self) -> ServerCountAndContentionFactorEncryptionToken {
        ServerCountAndContentionFactorEncryptionToken(hmac_u64(&self.0, 1))
    }
    /// `ServerZerosEncryptionToken = HMAC(self, 2)`.
    pub fn zeros_encryption(&self) -> ServerZerosEncryptionToken {
        ServerZerosEncryptionToken(hmac_u64(&self.0, 2))
    }
}

impl AnchorPaddingTokenRoot {
    /// `AnchorPaddingKeyToken = HMAC(root, 1)`.
    pub fn key(&self) -> AnchorPaddingKeyToken {
        AnchorPaddingKeyToken(hmac_u64(&self.0, 1))
    }
    /// `AnchorPaddingValueToken = HMAC(root, 2)`.
    pub fn value(&self) -> AnchorPaddingValueToken {
        AnchorPaddingValueToken(hmac_u64(&self.0, 2))
    }
}

impl EdcTwiceDerivedToken {
    /// The `__safeContent__` tag for ESC position `count`:
    /// `HMAC(EDCTwiceDerivedToken, LE64(count))`.
    pub fn tag(&self, count: u64) -> crate::server::Tag {
        crate::server::Tag::from_bytes(hmac_u64(&self.0, count))
    }

    /// The tags of positions `1..=count` ([`Self::tag`] of each), with the
    /// key scheduled once: two SHA-256 compressions per tag instead of
    /// four, which matters for a query whose value was inserted thousands
    /// of times.
    pub fn tags(&self, count: u64) -> impl Iterator<Item = crate::server::Tag> + use<> {
        let key = crate::mac::HmacSha256Key::new(&self.0);
        (1..=count).map(move |i| crate::server::Tag::from_bytes(key.mac(&[&i.to_le_bytes()])))
    }
}

/// The key-level tokens of one index key, derived once and cached, so that
/// per-value work starts from `EDC/ESC/ECOC/ServerTokenDerivationLevel1/
/// ServerDataEncryptionLevel1` instead of re-deriving them from the DEK.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct IndexKeyTokens {
    #[zeroize(skip)]
    key_id: KeyId,
    edc: EdcToken,
    esc: EscToken,
    ecoc: EcocToken,
    server_token_derivation: ServerTokenDerivationLevel1Token,
    server_data_encryption: ServerDataEncryptionLevel1Token,
}

impl IndexKeyTokens {
    /// Derives the key-level tokens from the index key `ki`.
    pub fn new(key_id: KeyId, key: &DataKey) -> Self {
        let root = key.token_key();
        let c1 = root.collections_level1();
        Self {
            key_id,
            edc: c1.edc(),
            esc: c1.esc(),
            ecoc: c1.ecoc(),
            server_token_derivation: root.server_token_derivation_level1(),
            server_data_encryption: root.server_data_encryption_level1(),
        }
    }
    /// The index key id (`u` in insert payloads).
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    /// EDCToken.
    pub fn edc(&self) -> &EdcToken {
        &self.edc
    }
    /// ESCToken.
    pub fn esc(&self) -> &EscToken {
        &self.esc
    }
    /// ECOCToken (compaction/cleanup token).
    pub fn ecoc(&self) -> &EcocToken {
        &self.ecoc
    }
    /// ServerTokenDerivationLevel1Token.
    pub fn server_token_derivation_level1(&self) -> &ServerTokenDerivationLevel1Token {
        &self.server_token_derivation
    }
    /// ServerDataEncryptionLevel1Token (IUP `e`).
    pub fn server_data_encryption_level1(&self) -> &ServerDataEncryptionLevel1Token {
        &self.server_data_encryption
    }
    /// AnchorPaddingTokenRoot (range compaction token).
    pub fn anchor_padding_root(&self) -> AnchorPaddingTokenRoot {
        self.esc.anchor_padding_root()
    }
}

impl fmt::Debug for IndexKeyTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexKeyTokens({}, ..)", self.key_id)
    }
}

// ---------------------------------------------------------------------------
// Text search (libmongocrypt `mc-tokens.c`, server `fle_tokens.h`): four
// families — exact 1, substring 2, suffix 3, prefix 4 — each with
//   EDCText<F>Token    = HMAC(EDCToken, LE64(f))
//   ESCText<F>Token    = HMAC(ESCToken, LE64(f))
//   ServerText<F>Token = HMAC(ServerTokenDerivationLevel1Token, LE64(f))
//   …DerivedFromDataToken = HMAC(<family token>, v)   (v: BSON string value bytes)
//   …DerivedFromDataTokenAndContentionFactorToken = HMAC(…DerivedFromDataToken, LE64(u))
// Insert payloads carry the contended EDC/ESC tokens and the server token;
// find payloads the un-contended ones.

/// The four text token families, as types: each names its tokens, so that a
/// codec or a derivation generic over the family cannot mix two families.
pub trait TextFamily: sealed::Sealed + Copy + fmt::Debug + PartialEq + Eq + Default {
    /// The family number hashed into its root tokens.
    const ID: u64;
    /// `EDCText<F>Token`.
    type EdcToken: Token;
    /// `ESCText<F>Token`.
    type EscToken: Token;
    /// `ServerText<F>Token`.
    type ServerToken: Token;
    /// `EDCText<F>DerivedFromDataToken` (find payloads).
    type EdcDerived: Token;
    /// `ESCText<F>DerivedFromDataToken` (find payloads).
    type EscDerived: Token;
    /// `ServerText<F>DerivedFromDataToken` (insert and find payloads).
    type ServerDerived: Token;
    /// `EDCText<F>DerivedFromDataTokenAndContentionFactorToken` (inserts).
    type EdcContended: Token;
    /// `ESCText<F>DerivedFromDataTokenAndContentionFactorToken` (inserts).
    type EscContended: Token;

    /// The family's root tokens of one index key.
    fn roots(key: &IndexKeyTokens) -> TextRoots<Self>;
    /// `…DerivedFromDataToken`s of `v` from the roots: `(edc, esc, server)`.
    fn derive(
        roots: &TextRoots<Self>,
        v: &[u8],
    ) -> (Self::EdcDerived, Self::EscDerived, Self::ServerDerived);
    /// The contended tokens of derived ones.
    fn contend(
        edc: &Self::EdcDerived,
        esc: &Self::EscDerived,
        u: u64,
    ) -> (Self::EdcContended, Self::EscContended);
}

mod sealed {
    pub trait Sealed {}
}

/// The three root tokens of one text family for one index key, derived once
/// per payload and reused for every string of its set.
#[derive(Clone, PartialEq, Eq)]
pub struct TextRoots<F: TextFamily> {
    /// `EDCText<F>Token`.
    pub edc: F::EdcToken,
    /// `ESCText<F>Token`.
    pub esc: F::EscToken,
    /// `ServerText<F>Token`.
    pub server: F::ServerToken,
}

impl<F: TextFamily> fmt::Debug for TextRoots<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TextRoots<{:?}>(..)", F::default())
    }
}

macro_rules! text_family {
    (
        $(#[$m:meta])* $family:ident = $id:literal, $method:ident,
        $edc:ident, $esc:ident, $srv:ident,
        $edc_d:ident, $esc_d:ident, $srv_d:ident,
        $edc_u:ident, $esc_u:ident
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $family;

        impl sealed::Sealed for $family {}

        token!(#[doc = concat!("`HMAC(EDCToken, ", stringify!($id), ")`: root of the EDC tokens of the ", stringify!($family), " family.")] $edc);
        token!(#[doc = concat!("`HMAC(ESCToken, ", stringify!($id), ")`: root of the ESC tokens of the ", stringify!($family), " family.")] $esc);
        token!(#[doc = concat!("`HMAC(ServerTokenDerivationLevel1Token, ", stringify!($id), ")`: root of the server tokens of the ", stringify!($family), " family.")] $srv);
        token!(#[doc = concat!("`HMAC(", stringify!($edc), ", v)`: a find payload's `d`.")] $edc_d);
        token!(#[doc = concat!("`HMAC(", stringify!($esc), ", v)`: a find payload's `s`.")] $esc_d);
        token!(#[doc = concat!("`HMAC(", stringify!($srv), ", v)`: `l` of insert and find payloads.")] $srv_d);
        token!(#[doc = concat!("`HMAC(", stringify!($edc_d), ", LE64(u))`: an insert token set's `d`.")] $edc_u);
        token!(#[doc = concat!("`HMAC(", stringify!($esc_d), ", LE64(u))`: an insert token set's `s`.")] $esc_u);

        impl EdcToken {
            #[doc = concat!("`", stringify!($edc), " = HMAC(EDCToken, ", stringify!($id), ")`.")]
            pub fn $method(&self) -> $edc {
                $edc(hmac_u64(&self.0, $id))
            }
        }
        impl EscToken {
            #[doc = concat!("`", stringify!($esc), " = HMAC(ESCToken, ", stringify!($id), ")`.")]
            pub fn $method(&self) -> $esc {
                $esc(hmac_u64(&self.0, $id))
            }
        }
        impl ServerTokenDerivationLevel1Token {
            #[doc = concat!("`", stringify!($srv), " = HMAC(ServerTokenDerivationLevel1Token, ", stringify!($id), ")`.")]
            pub fn $method(&self) -> $srv {
                $srv(hmac_u64(&self.0, $id))
            }
        }
        impl $edc {
            /// `HMAC(self, v)`; `v` = the BSON string value bytes of a string of the set.
            pub fn derive_from_data(&self, v: &[u8]) -> $edc_d {
                $edc_d(hmac_parts(&self.0, &[v]))
            }
        }
        impl $esc {
            /// `HMAC(self, v)`.
            pub fn derive_from_data(&self, v: &[u8]) -> $esc_d {
                $esc_d(hmac_parts(&self.0, &[v]))
            }
        }
        impl $srv {
            /// `HMAC(self, v)`.
            pub fn derive_from_data(&self, v: &[u8]) -> $srv_d {
                $srv_d(hmac_parts(&self.0, &[v]))
            }
        }
        impl $edc_d {
            /// `HMAC(self, LE64(u))`.
            pub fn with_contention(&self, u: u64) -> $edc_u {
                $edc_u(hmac_u64(&self.0, u))
            }
        }
        impl $esc_d {
            /// `HMAC(self, LE64(u))`.
            pub fn with_contention(&self, u: u64) -> $esc_u {
                $esc_u(hmac_u64(&self.0, u))
            }
        }

        impl TextFamily for $family {
            const ID: u64 = $id;
            type EdcToken = $edc;
            type EscToken = $esc;
            type ServerToken = $srv;
            type EdcDerived = $edc_d;
            type EscDerived = $esc_d;
            type ServerDerived = $srv_d;
            type EdcContended = $edc_u;
            type EscContended = $esc_u;

            fn roots(key: &IndexKeyTokens) -> TextRoots<Self> {
                TextRoots {
                    edc: key.edc().$method(),
                    esc: key.esc().$method(),
                    server: key.server_token_derivation_level1().$method(),
                }
            }
            fn derive(roots: &TextRoots<Self>, v: &[u8]) -> ($edc_d, $esc_d, $srv_d) {
                (
                    roots.edc.derive_from_data(v),
                    roots.esc.derive_from_data(v),
                    roots.server.derive_from_data(v),
                )
            }
            fn contend(edc: &$edc_d, esc: &$esc_d, u: u64) -> ($edc_u, $esc_u) {
                (edc.with_contention(u), esc.with_contention(u))
            }
        }
    };
}

text_family!(
    /// The exact (whole folded string) family, 1.
    TextExact = 1, text_exact,
    EdcTextExactToken, EscTextExactToken, ServerTextExactToken,
    EdcTextExactDerivedFromDataToken, EscTextExactDerivedFromDataToken, ServerTextExactDerivedFromDataToken,
    EdcTextExactDerivedFromDataTokenAndContentionFactorToken, EscTextExactDerivedFromDataTokenAndContentionFactorToken
);
text_family!(
    /// The substring family, 2.
    TextSubstring = 2, text_substring,
    EdcTextSubstringToken, EscTextSubstringToken, ServerTextSubstringToken,
    EdcTextSubstringDerivedFromDataToken, EscTextSubstringDerivedFromDataToken, ServerTextSubstringDerivedFromDataToken,
    EdcTextSubstringDerivedFromDataTokenAndContentionFactorToken, EscTextSubstringDerivedFromDataTokenAndContentionFactorToken
);
text_family!(
    /// The suffix family, 3.
    TextSuffix = 3, text_suffix,
    EdcTextSuffixToken, EscTextSuffixToken, ServerTextSuffixToken,
    EdcTextSuffixDerivedFromDataToken, EscTextSuffixDerivedFromDataToken, ServerTextSuffixDerivedFromDataToken,
    EdcTextSuffixDerivedFromDataTokenAndContentionFactorToken, EscTextSuffixDerivedFromDataTokenAndContentionFactorToken
);
text_family!(
    /// The prefix family, 4.
    TextPrefix = 4, text_prefix,
    EdcTextPrefixToken, EscTextPrefixToken, ServerTextPrefixToken,
    EdcTextPrefixDerivedFromDataToken, EscTextPrefixDerivedFromDataToken, ServerTextPrefixDerivedFromDataToken,
    EdcTextPrefixDerivedFromDataTokenAndContentionFactorToken, EscTextPrefixDerivedFromDataTokenAndContentionFactorToken
);
