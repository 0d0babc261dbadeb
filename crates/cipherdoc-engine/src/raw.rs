//! Reading stored documents from the bytes an engine hands out, without
//! copying them first, for every engine that stores BSON (SQLite,
//! PostgreSQL): the tag check of a QE query on the raw BSON (nothing
//! decoded), one pass that checks the nesting limit while it builds the
//! owned [`Document`], and [`judge`], which decides for one stored row
//! whether it matches a filter and hands it over in the form the caller
//! wants ([`Want`]).
//!
//! An encrypted document is mostly large binaries (a text field's stored
//! value 17 and its `__safeContent__` array); `bson`'s own conversion
//! copies every nested array and document into an owned raw buffer before
//! converting it, and `crate::documents::decode` walks the document once
//! more for its depth. Here each value is converted once.

use std::collections::BTreeSet;

use bson::spec::BinarySubtype;
use bson::{Bson, Document, JavaScriptCodeWithScope, RawArray, RawBsonRef, RawDocument};

use crate::documents::{MAX_DOCUMENT_DEPTH, raw_too_deep};
use crate::filter::{Filter, SAFE_CONTENT};
use crate::qe_state::Tag;
use crate::{EngineError, Result};

/// What a scan hands over for each matching row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Nothing: the caller counts. A tag lookup is then checked on the raw
    /// bytes and nothing is decoded.
    Count,
    /// The owned [`Document`] (`find`).
    Documents,
    /// The stored bytes, checked for structure and nesting but not decoded
    /// unless the filter needs the document (`find_raw`).
    Bytes,
}

/// One matching row, in the form [`Want`] asked for.
#[derive(Debug)]
pub(crate) enum Found<'a> {
    /// [`Want::Count`].
    Counted,
    /// [`Want::Documents`].
    Document(Document),
    /// [`Want::Bytes`]: the stored document, borrowed from the row.
    Bytes(&'a RawDocument),
}

/// Whether the document stored as `bytes` matches `filter`, and if so in
/// the form `want` asks for. A filter that is only a tag lookup (the QE
/// server role's rewrite of an encrypted query) is evaluated on the raw
/// bytes; any other is evaluated on the decoded document. Every engine's
/// scan runs its candidate rows through here, so the engines agree on
/// what matches.
pub(crate) fn judge<'a>(
    collection: &str,
    filter: &Filter,
    want: Want,
    bytes: &'a [u8],
) -> Result<Option<Found<'a>>> {
    if let Filter::TagIn(tags) = filter
        && want != Want::Documents
    {
        if !has_tag(collection, bytes, tags)? {
            return Ok(None);
        }
        return Ok(Some(match want {
            Want::Bytes => Found::Bytes(checked(collection, bytes)?),
            _ => Found::Counted,
        }));
    }
    let doc = decode(collection, bytes)?;
    if !filter.matches(&doc) {
        return Ok(None);
    }
    Ok(Some(match want {
        Want::Count => Found::Counted,
        Want::Documents => Found::Document(doc),
        // `decode` has checked the structure and the nesting.
        Want::Bytes => {
            Found::Bytes(RawDocument::from_bytes(bytes).map_err(|e| corrupt(collection, &e))?)
        }
    }))
}

/// `bytes` as a raw document, refused as [`decode`] refuses it (corrupt,
/// or nested deeper than [`MAX_DOCUMENT_DEPTH`]) without building anything.
pub(crate) fn checked<'a>(collection: &str, bytes: &'a [u8]) -> Result<&'a RawDocument> {
    let raw = RawDocument::from_bytes(bytes).map_err(|e| corrupt(collection, &e))?;
    if raw_too_deep(raw).map_err(|e| corrupt(collection, &e))? {
        return Err(EngineError::TooDeep {
            collection: collection.to_owned(),
            limit: MAX_DOCUMENT_DEPTH,
        });
    }
    Ok(raw)
}

/// Whether a stored document's `__safeContent__` holds one of `tags`: the
/// evaluation of [`crate::Filter::TagIn`] on the raw bytes.
pub(crate) fn has_tag(collection: &str, bytes: &[u8], tags: &BTreeSet<Tag>) -> Result<bool> {
    let corrupt = |e: bson::raw::Error| corrupt(collection, &e);
    let raw = RawDocument::from_bytes(bytes).map_err(corrupt)?;
    let Some(RawBsonRef::Array(items)) = raw.get(SAFE_CONTENT).map_err(corrupt)? else {
        return Ok(false);
    };
    for item in items {
        if let RawBsonRef::Binary(b) = item.map_err(corrupt)?
            && b.subtype == BinarySubtype::Generic
            && Tag::from_slice(b.bytes).is_some_and(|t| tags.contains(&t))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The owned document stored as `bytes`: what `crate::documents::decode`
/// returns (the same errors: `Corrupt`, `TooDeep` beyond
/// [`MAX_DOCUMENT_DEPTH`] levels, the root counting as level 1), in one
/// pass. The recursion is bounded by that limit.
pub(crate) fn decode(collection: &str, bytes: &[u8]) -> Result<Document> {
    let raw = RawDocument::from_bytes(bytes).map_err(|e| corrupt(collection, &e))?;
    match document(raw, 1) {
        Ok(d) => Ok(d),
        Err(Failure::TooDeep) => Err(EngineError::TooDeep {
            collection: collection.to_owned(),
            limit: MAX_DOCUMENT_DEPTH,
        }),
        Err(Failure::Bson(e)) => Err(corrupt(collection, &e)),
    }
}

fn corrupt(collection: &str, e: &bson::raw::Error) -> EngineError {
    EngineError::Corrupt {
        collection: collection.to_owned(),
        reason: e.to_string(),
    }
}

enum Failure {
    TooDeep,
    Bson(bson::raw::Error),
}

impl From<bson::raw::Error> for Failure {
    fn from(e: bson::raw::Error) -> Self {
        Self::Bson(e)
    }
}

/// `d`, found at nesting level `depth`.
fn document(d: &RawDocument, depth: usize) -> std::result::Result<Document, Failure> {
    if depth > MAX_DOCUMENT_DEPTH {
        return Err(Failure::TooDeep);
    }
    let mut out = Document::new();
    for el in d {
        let (k, v) = el?;
        out.insert(k.to_owned(), value(v, depth)?);
    }
    Ok(out)
}

fn array(a: &RawArray, depth: usize) -> std::result::Result<Vec<Bson>, Failure> {
    if depth > MAX_DOCUMENT_DEPTH {
        return Err(Failure::TooDeep);
    }
    let mut out = Vec::new();
    for el in a {
        out.push(value(el?, depth)?);
    }
    Ok(out)
}

/// `v`, a value inside a container at level `depth`.
fn value(v: RawBsonRef<'_>, depth: usize) -> std::result::Result<Bson, Failure> {
    Ok(match v {
        RawBsonRef::Document(d) => Bson::Document(document(d, depth + 1)?),
        RawBsonRef::Array(a) => Bson::Array(array(a, depth + 1)?),
        RawBsonRef::JavaScriptCodeWithScope(c) => {
            Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code: c.code.to_owned(),
                scope: document(c.scope, depth + 1)?,
            })
        }
        // A scalar: converting it copies nothing nested.
        other => Bson::try_from(other)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use bson::{Binary, doc, oid::ObjectId};

    /// A document nested `levels` deep (the root is level 1), through
    /// documents or through arrays.
    fn nested(levels: usize, arrays: bool) -> Document {
        let mut v = Bson::Int32(1);
        for _ in 1..levels {
            v = if arrays {
                Bson::Array(vec![v])
            } else {
                Bson::Document(doc! {"d": v})
            };
        }
        doc! {"root": v}
    }

    #[test]
    fn decodes_every_type_as_the_reference_decoder() {
        let d = doc! {
            "_id": ObjectId::new(),
            "s": "ş", "i": 1, "l": 2_i64, "f": 1.5, "b": true, "n": null,
            "bin": Binary { subtype: BinarySubtype::Encrypted, bytes: vec![17, 1, 2] },
            "__safeContent__": [Binary { subtype: BinarySubtype::Generic, bytes: vec![7; 32] }],
            "arr": [1, "x", {"in": [[]]}],
            "doc": {"a": {"b": {}}},
            "dt": bson::DateTime::from_millis(5),
            "ts": bson::Timestamp { time: 1, increment: 2 },
            "re": bson::Regex { pattern: "a".into(), options: "i".into() },
            "js": Bson::JavaScriptCode("f()".into()),
            "jsws": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! {"x": [1]} },
            "dec": bson::Decimal128::from_bytes([3; 16]),
            "sym": Bson::Symbol("s".into()),
            "u": Bson::Undefined, "min": Bson::MinKey, "max": Bson::MaxKey,
        };
        let bytes = bson::to_vec(&d).unwrap();
        let got = decode("c", &bytes).unwrap();
        assert_eq!(got, d);
        assert_eq!(got, crate::documents::decode("c", &bytes).unwrap());
    }

    #[test]
    fn the_nesting_limit_is_the_reference_decoders() {
        for (levels, arrays) in [99, 100, 101, 150]
            .into_iter()
            .flat_map(|l| [(l, false), (l, true)])
        {
            let bytes = bson::to_vec(&nested(levels, arrays)).unwrap();
            let ours = decode("c", &bytes);
            let reference = crate::documents::decode("c", &bytes);
            assert_eq!(ours.is_ok(), reference.is_ok(), "{levels} levels");
            assert_eq!(
                ours.is_ok(),
                levels <= MAX_DOCUMENT_DEPTH,
                "{levels} levels"
            );
            if let Err(e) = ours {
                assert!(matches!(e, EngineError::TooDeep { .. }), "{e}");
            }
        }
    }

    #[test]
    fn a_tag_match_handed_over_as_bytes_is_checked_for_nesting() {
        let tag = Tag::from_slice(&[1; 32]).unwrap();
        let mut d = nested(MAX_DOCUMENT_DEPTH + 1, false);
        d.insert(
            SAFE_CONTENT,
            vec![Bson::Binary(bson::Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1; 32],
            })],
        );
        let bytes = bson::to_vec(&d).unwrap();
        let f = Filter::TagIn(BTreeSet::from([tag]));
        assert!(matches!(
            judge("c", &f, Want::Count, &bytes),
            Ok(Some(Found::Counted))
        ));
        assert!(matches!(
            judge("c", &f, Want::Bytes, &bytes),
            Err(EngineError::TooDeep { .. })
        ));
        let ok = bson::to_vec(&nested(MAX_DOCUMENT_DEPTH, false)).unwrap();
        assert!(matches!(
            judge("c", &Filter::all(), Want::Bytes, &ok),
            Ok(Some(Found::Bytes(_)))
        ));
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        let bytes = bson::to_vec(&doc! {"a": [1, {"b": "x"}], "__safeContent__": [1]}).unwrap();
        let tags = BTreeSet::from([Tag::from_bytes([1; 32])]);
        for cut in 0..bytes.len() {
            let mut b = bytes[..cut].to_vec();
            // Keep the length prefix consistent, so the damage is inside.
            if b.len() >= 4 {
                let n = u32::try_from(b.len()).unwrap().to_le_bytes();
                b[..4].copy_from_slice(&n);
            }
            assert!(decode("c", &b).is_err(), "cut at {cut}");
            let _ = has_tag("c", &b, &tags);
        }
    }

    #[test]
    fn the_raw_tag_check_agrees_with_the_evaluator() {
        let t = |b: u8| Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![b; 32],
        };
        let docs = [
            doc! {"__safeContent__": [t(1), t(2)]},
            doc! {"__safeContent__": [t(3)]},
            doc! {"__safeContent__": []},
            doc! {"__safeContent__": t(1)},
            doc! {"__safeContent__": [Binary { subtype: BinarySubtype::Encrypted, bytes: vec![1; 32] }]},
            doc! {"__safeContent__": [Binary { subtype: BinarySubtype::Generic, bytes: vec![1; 31] }]},
            doc! {"other": [t(1)]},
        ];
        let filter_tags = BTreeSet::from([Tag::from_bytes([1; 32]), Tag::from_bytes([3; 32])]);
        let f = crate::Filter::TagIn(filter_tags.clone());
        for d in &docs {
            let bytes = bson::to_vec(d).unwrap();
            assert_eq!(
                has_tag("c", &bytes, &filter_tags).unwrap(),
                f.matches(d),
                "{d}"
            );
        }
    }
}
