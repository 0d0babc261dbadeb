//! Text search on encrypted strings (MongoDB's `string` algorithm: prefix,
//! suffix and substring queries; libmongocrypt `mc-text-search-str-encode.c`,
//! `mc-str-encode-string-sets.c`, `mc-textopts.c`).
//!
//! * [`fold`] — case and diacritic folding, from generated Unicode tables.
//! * [`mod@str_encode`] — StrEncode: the exact string and the padded prefix,
//!   suffix and substring sets of a value, in libmongocrypt's order.
//! * [`spec`] — the index parameters (`FLE2TextSearchInsertSpec`), the
//!   explicit-encryption `StringOpts` document, and their validation.
//!
//! The payloads built from them are in `client_text`, their codecs in
//! `payload`, the server's arithmetic in `server::text`.

pub mod fold;
mod fold_tables;
pub mod spec;
pub mod str_encode;

pub use spec::{AffixIndex, StringOpts, StringOptsError, SubstringIndex, TextIndex};
pub use str_encode::{EncodedStrings, StringSet, str_encode};

use std::fmt;

/// Whether a field tells upper from lower case (`caseSensitive`). An
/// insensitive field folds case (`casef` in the placeholder spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseSensitivity {
    /// `caseSensitive: true`: no case folding.
    Sensitive,
    /// `caseSensitive: false`: values and queries are case-folded.
    Insensitive,
}

/// Whether a field tells letters with diacritics from their base letters
/// (`diacriticSensitive`). An insensitive field drops diacritics (`diacf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiacriticSensitivity {
    /// `diacriticSensitive: true`: no diacritic folding.
    Sensitive,
    /// `diacriticSensitive: false`: diacritics are dropped.
    Insensitive,
}

/// The kinds of text index (and of text query) a field can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TextIndexKind {
    /// `prefix` (`prefixPreview`): `$encStrStartsWith`.
    Prefix,
    /// `suffix` (`suffixPreview`): `$encStrEndsWith`.
    Suffix,
    /// `substring` (`substringPreview`): `$encStrContains`.
    Substring,
}

impl TextIndexKind {
    /// The stable query-type name (`prefix`, `suffix`, `substring`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prefix => "prefix",
            Self::Suffix => "suffix",
            Self::Substring => "substring",
        }
    }

    /// The query-type name of MongoDB 8.2's preview.
    pub fn preview_name(self) -> &'static str {
        match self {
            Self::Prefix => "prefixPreview",
            Self::Suffix => "suffixPreview",
            Self::Substring => "substringPreview",
        }
    }

    /// Parses a query-type name: stable or preview spelling.
    pub fn from_query_type(name: &str) -> Option<Self> {
        [Self::Prefix, Self::Suffix, Self::Substring]
            .into_iter()
            .find(|k| k.as_str() == name || k.preview_name() == name)
    }
}

impl fmt::Display for TextIndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a text find payload asks for: one of the index kinds, or the whole
/// (folded) string (`$encStrNormalizedEq`), which every text field indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextQuery {
    /// The whole folded string.
    Exact,
    /// Strings starting with the query.
    Prefix,
    /// Strings ending with the query.
    Suffix,
    /// Strings containing the query.
    Substring,
}

impl TextQuery {
    /// The index kind the query needs (`None` for exact matches).
    pub fn index_kind(self) -> Option<TextIndexKind> {
        match self {
            Self::Exact => None,
            Self::Prefix => Some(TextIndexKind::Prefix),
            Self::Suffix => Some(TextIndexKind::Suffix),
            Self::Substring => Some(TextIndexKind::Substring),
        }
    }
}

impl From<TextIndexKind> for TextQuery {
    fn from(k: TextIndexKind) -> Self {
        match k {
            TextIndexKind::Prefix => Self::Prefix,
            TextIndexKind::Suffix => Self::Suffix,
            TextIndexKind::Substring => Self::Substring,
        }
    }
}

impl fmt::Display for TextQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index_kind() {
            Some(k) => k.fmt(f),
            None => f.write_str("exact"),
        }
    }
}

/// What is wrong with a value or a query for a text-search field. Messages
/// name the field's limits, never the value (nor its length).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// libmongocrypt refuses strings with an embedded NUL (BSON C strings).
    #[error("a text-search value must not contain a NUL character")]
    ContainsNul,
    /// Longer than StrEncode's 16 MiB.
    #[error("a text-search value must be at most {max_bytes} bytes")]
    TooLarge {
        /// The limit in bytes.
        max_bytes: u32,
    },
    /// An insert longer than the substring index's `strMaxLength`.
    #[error(
        "the value is longer than the field's strMaxLength ({max_length} code points); store a shorter value"
    )]
    LongerThanMaxLength {
        /// `strMaxLength`.
        max_length: u32,
    },
    /// A prefix, suffix or substring query that folds to nothing.
    #[error("a {kind} query must not be empty (after case and diacritic folding)")]
    EmptyQuery {
        /// The query kind.
        kind: TextIndexKind,
    },
    /// A query shorter than `strMinQueryLength` after folding.
    #[error(
        "a {kind} query must be at least strMinQueryLength = {min} code points long (after folding)"
    )]
    QueryTooShort {
        /// The query kind.
        kind: TextIndexKind,
        /// `strMinQueryLength`.
        min: u32,
    },
    /// A query longer than `strMaxQueryLength` after folding.
    #[error(
        "a {kind} query must be at most strMaxQueryLength = {max} code points long (after folding)"
    )]
    QueryTooLong {
        /// The query kind.
        kind: TextIndexKind,
        /// `strMaxQueryLength`.
        max: u32,
    },
    /// The field's lengths make more tags per value than the protocol's
    /// 3-byte `msize` holds.
    #[error(
        "the field's string lengths give more than 16777215 tags per value; lower strMaxLength or strMaxQueryLength"
    )]
    TooManyTags,
    /// An insert whose index has no prefix, suffix or substring part.
    #[error("a text-search insert needs a prefix, suffix or substring index")]
    NoIndexKind,
    /// A query for a kind the field does not index.
    #[error("the field has no {kind} index; it supports only the query types it declares")]
    KindNotIndexed {
        /// The kind asked for.
        kind: TextIndexKind,
    },
    /// A find specification naming several kinds.
    #[error("a text-search query names more than one of prefix, suffix and substring")]
    SeveralQueryKinds,
}
