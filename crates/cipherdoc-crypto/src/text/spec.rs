//! The parameters of a text-search index and the documents that carry them:
//! the explicit-encryption `StringOpts` (libmongocrypt `mc-textopts.c`) and
//! the `FLE2TextSearchInsertSpec` inside a placeholder
//! (`mc-fle2-encryption-placeholder.c`). Lengths count code points.

use bson::{Bson, Document};

use super::{CaseSensitivity, DiacriticSensitivity, TextError, TextIndexKind, TextQuery};
use crate::error::{Error, Result};

/// What is wrong with a `StringOpts` document or with text index lengths.
/// Names the option and the fix; never a value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StringOptsError {
    /// An option libmongocrypt does not know.
    #[error("unknown string option '{name}'")]
    UnknownField {
        /// The option as spelt.
        name: String,
    },
    /// An option given twice.
    #[error("string option '{name}' is given twice")]
    Duplicate {
        /// The option.
        name: &'static str,
    },
    /// An option of the wrong BSON type.
    #[error("string option '{name}' must be {expected}")]
    WrongType {
        /// The option.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A required option is missing.
    #[error("string option '{name}' is required")]
    Missing {
        /// The option.
        name: &'static str,
    },
    /// A length that is zero or negative.
    #[error("string option '{name}' must be greater than zero")]
    NotPositive {
        /// The option.
        name: &'static str,
    },
    /// `strMaxLength` on a prefix or suffix index.
    #[error("'strMaxLength' is not allowed in '{kind}'; it belongs to 'substring' only")]
    MaxLengthNotAllowed {
        /// The index kind.
        kind: TextIndexKind,
    },
    /// A substring index without `strMaxLength`.
    #[error("'strMaxLength' must be set for substring")]
    MaxLengthRequired,
    /// `substring` together with `prefix` or `suffix`.
    #[error(
        "cannot specify 'substring' with 'prefix' or 'suffix'; use substring alone, or prefix and/or suffix"
    )]
    SubstringWithAffix,
    /// None of `prefix`, `suffix`, `substring`.
    #[error("one of 'prefix', 'suffix' or 'substring' is required")]
    NoIndexKind,
    /// `strMaxQueryLength` below `strMinQueryLength`.
    #[error("'{kind}': strMaxQueryLength cannot be less than strMinQueryLength")]
    MaxBelowMin {
        /// The index kind.
        kind: TextIndexKind,
    },
    /// `strMaxLength` below `strMaxQueryLength`.
    #[error("'substring': strMaxLength cannot be less than strMaxQueryLength")]
    MaxLengthBelowMaxQueryLength,
}

/// A prefix or suffix index: query lengths `lb ..= ub` code points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AffixIndex {
    min_query_length: u32,
    max_query_length: u32,
}

impl AffixIndex {
    /// `strMinQueryLength` (`lb`) and `strMaxQueryLength` (`ub`), both ≥ 1.
    pub fn new(
        kind: TextIndexKind,
        min_query_length: u32,
        max_query_length: u32,
    ) -> Result<Self, StringOptsError> {
        if min_query_length == 0 {
            return Err(StringOptsError::NotPositive {
                name: "strMinQueryLength",
            });
        }
        if max_query_length == 0 {
            return Err(StringOptsError::NotPositive {
                name: "strMaxQueryLength",
            });
        }
        if max_query_length < min_query_length {
            return Err(StringOptsError::MaxBelowMin { kind });
        }
        Ok(Self {
            min_query_length,
            max_query_length,
        })
    }
    /// `lb`.
    pub fn min_query_length(&self) -> u32 {
        self.min_query_length
    }
    /// `ub`.
    pub fn max_query_length(&self) -> u32 {
        self.max_query_length
    }
}

/// A substring index: values up to `mlen` code points, queries `lb ..= ub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubstringIndex {
    max_length: u32,
    lengths: AffixIndex,
}

impl SubstringIndex {
    /// `strMaxLength` (`mlen`), `strMinQueryLength`, `strMaxQueryLength`.
    pub fn new(
        max_length: u32,
        min_query_length: u32,
        max_query_length: u32,
    ) -> Result<Self, StringOptsError> {
        if max_length == 0 {
            return Err(StringOptsError::NotPositive {
                name: "strMaxLength",
            });
        }
        let lengths =
            AffixIndex::new(TextIndexKind::Substring, min_query_length, max_query_length)?;
        if max_length < max_query_length {
            return Err(StringOptsError::MaxLengthBelowMaxQueryLength);
        }
        Ok(Self {
            max_length,
            lengths,
        })
    }
    /// `mlen`.
    pub fn max_length(&self) -> u32 {
        self.max_length
    }
    /// `lb`.
    pub fn min_query_length(&self) -> u32 {
        self.lengths.min_query_length
    }
    /// `ub`.
    pub fn max_query_length(&self) -> u32 {
        self.lengths.max_query_length
    }
}

/// The text index of a field (or of one explicit encryption): folding and
/// the prefix, suffix and substring parameters — libmongocrypt's
/// `FLE2TextSearchInsertSpec` without the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TextIndex {
    /// Case folding.
    pub case: CaseSensitivity,
    /// Diacritic folding.
    pub diacritics: DiacriticSensitivity,
    /// Prefix index (`prefix`).
    pub prefix: Option<AffixIndex>,
    /// Suffix index (`suffix`).
    pub suffix: Option<AffixIndex>,
    /// Substring index (`substr`).
    pub substring: Option<SubstringIndex>,
}

impl TextIndex {
    /// The query lengths of one kind, if the index has it.
    pub fn query_lengths(&self, kind: TextIndexKind) -> Option<AffixIndex> {
        match kind {
            TextIndexKind::Prefix => self.prefix,
            TextIndexKind::Suffix => self.suffix,
            TextIndexKind::Substring => self.substring.map(|s| s.lengths),
        }
    }

    /// The index a find payload for `query` carries: only that kind's
    /// parameters (libmongocrypt `mc_TextOpts_to_FLE2TextSearchInsertSpec_for_query`).
    pub fn for_query(&self, query: TextQuery) -> Result<Self, TextError> {
        let mut out = Self {
            prefix: None,
            suffix: None,
            substring: None,
            ..*self
        };
        match query {
            TextQuery::Exact => {}
            TextQuery::Prefix => {
                out.prefix = Some(self.prefix.ok_or(TextError::KindNotIndexed {
                    kind: TextIndexKind::Prefix,
                })?);
            }
            TextQuery::Suffix => {
                out.suffix = Some(self.suffix.ok_or(TextError::KindNotIndexed {
                    kind: TextIndexKind::Suffix,
                })?);
            }
            TextQuery::Substring => {
                out.substring = Some(self.substring.ok_or(TextError::KindNotIndexed {
                    kind: TextIndexKind::Substring,
                })?);
            }
        }
        Ok(out)
    }

    /// The one query kind of a find specification (libmongocrypt rejects
    /// several): `Exact` when it names none.
    pub fn query(&self) -> Result<TextQuery, TextError> {
        match (self.substring, self.suffix, self.prefix) {
            (None, None, None) => Ok(TextQuery::Exact),
            (Some(_), None, None) => Ok(TextQuery::Substring),
            (None, Some(_), None) => Ok(TextQuery::Suffix),
            (None, None, Some(_)) => Ok(TextQuery::Prefix),
            _ => Err(TextError::SeveralQueryKinds),
        }
    }
}

/// The explicit-encryption options of the `string` algorithm
/// (libmongocrypt's `StringOpts`, `mc_TextOpts_parse`):
/// `{caseSensitive, diacriticSensitive, prefix?: {strMinQueryLength,
/// strMaxQueryLength}, suffix?: {…}, substring?: {strMaxLength, …}}`.
/// The same options appear per query type in `encryptedFields`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StringOpts {
    index: TextIndex,
}

fn int32_positive(name: &'static str, v: &Bson) -> Result<u32, StringOptsError> {
    let Bson::Int32(n) = v else {
        return Err(StringOptsError::WrongType {
            name,
            expected: "an int32",
        });
    };
    u32::try_from(*n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or(StringOptsError::NotPositive { name })
}

fn set_once<T>(name: &'static str, slot: &mut Option<T>, v: T) -> Result<(), StringOptsError> {
    if slot.is_some() {
        return Err(StringOptsError::Duplicate { name });
    }
    *slot = Some(v);
    Ok(())
}

/// The lengths of one index kind: `{strMaxLength?, strMinQueryLength, strMaxQueryLength}`.
#[derive(Default)]
struct Lengths {
    max_length: Option<u32>,
    min_query: Option<u32>,
    max_query: Option<u32>,
}

impl Lengths {
    fn parse(doc: &Document) -> Result<Self, StringOptsError> {
        let mut out = Self::default();
        for (k, v) in doc {
            match k.as_str() {
                "strMaxLength" => {
                    set_once(
                        "strMaxLength",
                        &mut out.max_length,
                        int32_positive("strMaxLength", v)?,
                    )?;
                }
                "strMinQueryLength" => set_once(
                    "strMinQueryLength",
                    &mut out.min_query,
                    int32_positive("strMinQueryLength", v)?,
                )?,
                "strMaxQueryLength" => set_once(
                    "strMaxQueryLength",
                    &mut out.max_query,
                    int32_positive("strMaxQueryLength", v)?,
                )?,
                other => {
                    return Err(StringOptsError::UnknownField {
                        name: other.to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn query_lengths(&self) -> Result<(u32, u32), StringOptsError> {
        Ok((
            self.min_query.ok_or(StringOptsError::Missing {
                name: "strMinQueryLength",
            })?,
            self.max_query.ok_or(StringOptsError::Missing {
                name: "strMaxQueryLength",
            })?,
        ))
    }

    fn affix(&self, kind: TextIndexKind) -> Result<AffixIndex, StringOptsError> {
        if self.max_length.is_some() {
            return Err(StringOptsError::MaxLengthNotAllowed { kind });
        }
        let (lb, ub) = self.query_lengths()?;
        AffixIndex::new(kind, lb, ub)
    }

    fn substring(&self) -> Result<SubstringIndex, StringOptsError> {
        let mlen = self.max_length.ok_or(StringOptsError::MaxLengthRequired)?;
        let (lb, ub) = self.query_lengths()?;
        SubstringIndex::new(mlen, lb, ub)
    }
}

impl StringOpts {
    /// Builds options from parts, with the rules of [`Self::from_document`]:
    /// at least one kind, and substring never with prefix or suffix.
    pub fn new(index: TextIndex) -> Result<Self, StringOptsError> {
        if index.substring.is_some() && (index.prefix.is_some() || index.suffix.is_some()) {
            return Err(StringOptsError::SubstringWithAffix);
        }
        if index.substring.is_none() && index.prefix.is_none() && index.suffix.is_none() {
            return Err(StringOptsError::NoIndexKind);
        }
        Ok(Self { index })
    }

    /// Parses a `StringOpts` document as libmongocrypt does (unknown fields
    /// and duplicates are errors; lengths are positive int32s).
    pub fn from_document(doc: &Document) -> Result<Self, StringOptsError> {
        let (mut case, mut diac) = (None, None);
        let (mut prefix, mut suffix, mut substring) = (None, None, None);
        for (k, v) in doc {
            match k.as_str() {
                "caseSensitive" => {
                    let Bson::Boolean(b) = v else {
                        return Err(StringOptsError::WrongType {
                            name: "caseSensitive",
                            expected: "a bool",
                        });
                    };
                    set_once("caseSensitive", &mut case, *b)?;
                }
                "diacriticSensitive" => {
                    let Bson::Boolean(b) = v else {
                        return Err(StringOptsError::WrongType {
                            name: "diacriticSensitive",
                            expected: "a bool",
                        });
                    };
                    set_once("diacriticSensitive", &mut diac, *b)?;
                }
                "prefix" | "suffix" | "substring" => {
                    let (name, slot) = match k.as_str() {
                        "prefix" => ("prefix", &mut prefix),
                        "suffix" => ("suffix", &mut suffix),
                        _ => ("substring", &mut substring),
                    };
                    let Bson::Document(d) = v else {
                        return Err(StringOptsError::WrongType {
                            name,
                            expected: "a document",
                        });
                    };
                    set_once(name, slot, Lengths::parse(d)?)?;
                }
                other => {
                    return Err(StringOptsError::UnknownField {
                        name: other.to_owned(),
                    });
                }
            }
        }
        let case = case.ok_or(StringOptsError::Missing {
            name: "caseSensitive",
        })?;
        let diac = diac.ok_or(StringOptsError::Missing {
            name: "diacriticSensitive",
        })?;
        if substring.is_some() && (prefix.is_some() || suffix.is_some()) {
            return Err(StringOptsError::SubstringWithAffix);
        }
        let index = TextIndex {
            case: if case {
                CaseSensitivity::Sensitive
            } else {
                CaseSensitivity::Insensitive
            },
            diacritics: if diac {
                DiacriticSensitivity::Sensitive
            } else {
                DiacriticSensitivity::Insensitive
            },
            prefix: prefix.map(|l| l.affix(TextIndexKind::Prefix)).transpose()?,
            suffix: suffix.map(|l| l.affix(TextIndexKind::Suffix)).transpose()?,
            substring: substring.map(|l| l.substring()).transpose()?,
        };
        Self::new(index)
    }

    /// The index these options describe.
    pub fn index(&self) -> &TextIndex {
        &self.index
    }
}

/// A placeholder's text-search specification: the value and its index
/// (`FLE2TextSearchInsertSpec`, `{v, casef, diacf, substr?, suffix?, prefix?}`).
#[derive(Clone, PartialEq)]
pub struct TextSearchSpec {
    /// The string to encrypt or query.
    pub value: String,
    /// The index parameters.
    pub index: TextIndex,
}

impl std::fmt::Debug for TextSearchSpec {
    // The value is a plaintext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextSearchSpec")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl TextSearchSpec {
    const WHAT: &'static str = "FLE2TextSearchInsertSpec";

    fn lengths(kind: &'static str, v: &Bson, with_mlen: bool) -> Result<(u32, u32, u32)> {
        let what = Self::WHAT;
        let Bson::Document(d) = v else {
            return Err(Error::decode(what, format!("'{kind}' must be a document")));
        };
        let (mut mlen, mut ub, mut lb) = (None, None, None);
        for (k, v) in d {
            let slot = match k.as_str() {
                "mlen" if with_mlen => &mut mlen,
                "ub" => &mut ub,
                "lb" => &mut lb,
                // libmongocrypt ignores other fields here.
                _ => continue,
            };
            if slot.is_some() {
                return Err(Error::decode(
                    what,
                    format!("duplicate field '{k}' in '{kind}'"),
                ));
            }
            let Bson::Int32(n) = v else {
                return Err(Error::decode(what, format!("'{k}' must be an int32")));
            };
            let n = u32::try_from(*n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::decode(what, format!("'{k}' must be greater than zero")))?;
            *slot = Some(n);
        }
        let need = |n: Option<u32>, k: &str| {
            n.ok_or_else(|| Error::decode(what, format!("missing field '{k}' in '{kind}'")))
        };
        Ok((
            if with_mlen { need(mlen, "mlen")? } else { 0 },
            need(ub, "ub")?,
            need(lb, "lb")?,
        ))
    }

    /// Parses a text placeholder's `v` document as libmongocrypt does.
    pub fn from_document(doc: &Document) -> Result<Self> {
        let what = Self::WHAT;
        let (mut v, mut casef, mut diacf) = (None, None, None);
        let (mut substr, mut suffix, mut prefix) = (None, None, None);
        let bad = |e: StringOptsError| Error::decode(what, e.to_string());
        for (k, val) in doc {
            let dup = || Error::decode(what, format!("duplicate field '{k}'"));
            match k.as_str() {
                "v" => {
                    let Bson::String(s) = val else {
                        return Err(Error::decode(
                            what,
                            format!(
                                "unsupported BSON type {:?} for text search",
                                val.element_type()
                            ),
                        ));
                    };
                    if v.replace(s.clone()).is_some() {
                        return Err(dup());
                    }
                }
                "casef" | "diacf" => {
                    let Bson::Boolean(b) = val else {
                        return Err(Error::decode(what, format!("'{k}' must be a bool")));
                    };
                    let slot = if k == "casef" { &mut casef } else { &mut diacf };
                    if slot.replace(*b).is_some() {
                        return Err(dup());
                    }
                }
                "substr" => {
                    let (mlen, ub, lb) = Self::lengths("substr", val, true)?;
                    if substr
                        .replace(SubstringIndex::new(mlen, lb, ub).map_err(bad)?)
                        .is_some()
                    {
                        return Err(dup());
                    }
                }
                "suffix" | "prefix" => {
                    let kind = if k == "suffix" {
                        TextIndexKind::Suffix
                    } else {
                        TextIndexKind::Prefix
                    };
                    let (_, ub, lb) = Self::lengths(kind.as_str(), val, false)?;
                    let slot = if k == "suffix" {
                        &mut suffix
                    } else {
                        &mut prefix
                    };
                    if slot
                        .replace(AffixIndex::new(kind, lb, ub).map_err(bad)?)
                        .is_some()
                    {
                        return Err(dup());
                    }
                }
                // libmongocrypt ignores unknown fields of the insert spec.
                _ => {}
            }
        }
        let need = |k: &str| Error::decode(what, format!("missing field '{k}'"));
        Ok(Self {
            value: v.ok_or_else(|| need("v"))?,
            index: TextIndex {
                case: if casef.ok_or_else(|| need("casef"))? {
                    CaseSensitivity::Insensitive
                } else {
                    CaseSensitivity::Sensitive
                },
                diacritics: if diacf.ok_or_else(|| need("diacf"))? {
                    DiacriticSensitivity::Insensitive
                } else {
                    DiacriticSensitivity::Sensitive
                },
                prefix,
                suffix,
                substring: substr,
            },
        })
    }

    /// The `v` document of a text placeholder for `value` over `index`, in
    /// libmongocrypt's field order (`mc_TextOpts_to_FLE2TextSearchInsertSpec`).
    pub fn to_document(value: &str, index: &TextIndex) -> Document {
        let mut d = Document::new();
        d.insert("v", value);
        d.insert("casef", index.case == CaseSensitivity::Insensitive);
        d.insert(
            "diacf",
            index.diacritics == DiacriticSensitivity::Insensitive,
        );
        let n = |x: u32| Bson::Int32(i32::try_from(x).unwrap_or(i32::MAX));
        if let Some(p) = index.prefix {
            d.insert(
                "prefix",
                bson::doc! {"ub": n(p.max_query_length), "lb": n(p.min_query_length)},
            );
        }
        if let Some(s) = index.suffix {
            d.insert(
                "suffix",
                bson::doc! {"ub": n(s.max_query_length), "lb": n(s.min_query_length)},
            );
        }
        if let Some(s) = index.substring {
            d.insert(
                "substr",
                bson::doc! {"mlen": n(s.max_length), "ub": n(s.max_query_length()), "lb": n(s.min_query_length())},
            );
        }
        d
    }
}
