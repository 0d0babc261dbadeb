//! Document helpers shared by the engines, so that they store and answer
//! exactly the same way: names of the QE state tables, BSON decoding, `_id`
//! handling, catalog (`encryptedFields`) normalisation, index keys, tags,
//! sort keys and projections.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, Document, oid::ObjectId, spec::BinarySubtype};

use crate::engine::{IndexSpec, SortDirection};
use crate::filter::{Reach, SAFE_CONTENT};
use crate::qe_state::Tag;
use crate::value::{compare, encode_key};
use crate::{EngineError, Result};

/// MongoDB's default ESC name for `c`.
pub(crate) fn esc_name(c: &str) -> String {
    format!("enxcol_.{c}.esc")
}
/// MongoDB's default ECOC name for `c`.
pub(crate) fn ecoc_name(c: &str) -> String {
    format!("enxcol_.{c}.ecoc")
}
/// Where the ECOC goes during compaction.
pub(crate) fn ecoc_compact_name(c: &str) -> String {
    format!("enxcol_.{c}.ecoc.compact")
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn render(v: &Bson) -> String {
    v.clone().into_relaxed_extjson().to_string()
}

/// The deepest nesting a stored document may have, the root counting as
/// level 1 (MongoDB documents the same limit of 100 levels). Enforced
/// without recursion before a document is encoded or decoded, because the
/// `bson` crate's conversions recurse: a document that a database writer
/// nested 100,000 deep must be an error, not a stack overflow.
pub const MAX_DOCUMENT_DEPTH: usize = 100;

pub(crate) fn decode(collection: &str, bytes: &[u8]) -> Result<Document> {
    let corrupt = |e: bson::raw::Error| EngineError::Corrupt {
        collection: collection.to_owned(),
        reason: e.to_string(),
    };
    // Through the raw document rather than `Document::from_reader`: the
    // latter goes through serde (and extended-JSON models for binaries),
    // which took about half of a short query's decoding time.
    let raw = bson::RawDocument::from_bytes(bytes).map_err(corrupt)?;
    if raw_too_deep(raw).map_err(corrupt)? {
        return Err(too_deep(collection));
    }
    Document::try_from(raw).map_err(corrupt)
}

/// The bytes a document is stored as, refused when nested deeper than
/// [`MAX_DOCUMENT_DEPTH`].
pub(crate) fn encode(collection: &str, doc: &Document) -> Result<Vec<u8>> {
    if document_too_deep(doc) {
        return Err(too_deep(collection));
    }
    Ok(bson::to_vec(doc)?)
}

/// `doc` as BSON bytes, for a `find_raw` that had to build documents (a
/// sort or a projection) or an engine without one of its own.
pub(crate) fn encode_raw(collection: &str, doc: &Document) -> Result<bson::RawDocumentBuf> {
    bson::RawDocumentBuf::from_bytes(bson::to_vec(doc)?).map_err(|e| EngineError::Corrupt {
        collection: collection.to_owned(),
        reason: e.to_string(),
    })
}

/// A find's `(skip, limit)` as counts of documents (`usize::MAX`: no limit).
pub(crate) fn window(opts: &crate::FindOptions) -> (usize, usize) {
    let skip = usize::try_from(opts.skip).unwrap_or(usize::MAX);
    let limit = opts
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    (skip, limit)
}

/// What a `find` does with the matches an engine's scan collects: how
/// many it needs, then sort, skip, limit and projection, the same on every
/// engine.
pub(crate) struct FindShape<'o> {
    projection: Option<Projection>,
    sort: &'o [(String, crate::SortDirection)],
    skip: usize,
    limit: usize,
}

impl<'o> FindShape<'o> {
    /// `opts` checked (an invalid projection is refused).
    pub(crate) fn new(opts: &'o crate::FindOptions) -> Result<Self> {
        let (skip, limit) = window(opts);
        Ok(Self {
            projection: opts
                .projection
                .as_ref()
                .map(Projection::parse)
                .transpose()?,
            sort: &opts.sort,
            skip,
            limit,
        })
    }

    /// How many matches the scan must collect, in insertion order: all of
    /// them when the find sorts.
    pub(crate) fn wanted(&self) -> usize {
        if self.sort.is_empty() {
            self.skip.saturating_add(self.limit)
        } else {
            usize::MAX
        }
    }

    /// The find's answer from the collected matches.
    pub(crate) fn finish(self, docs: Vec<Document>) -> Vec<Document> {
        let out = sort_docs(docs, self.sort)
            .into_iter()
            .skip(self.skip)
            .take(self.limit);
        match self.projection {
            Some(p) => out.map(|d| p.apply(d)).collect(),
            None => out.collect(),
        }
    }
}

/// Whether `create_index` has anything to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewIndex {
    /// The same index exists: nothing to do.
    AlreadyThere,
    /// Build it.
    Build,
}

/// `spec` checked as a new index of `collection`, whose indexes are
/// `existing`, the same on every engine: a name that is not empty nor
/// `_id_`, a dotted path with non-empty components, and no other index of
/// that name.
pub(crate) fn check_new_index(
    collection: &str,
    spec: &crate::IndexSpec,
    existing: &[crate::IndexSpec],
) -> Result<NewIndex> {
    let invalid = |reason: &str| EngineError::InvalidIndex {
        collection: collection.to_owned(),
        index: spec.name.clone(),
        reason: reason.to_owned(),
    };
    if spec.name.is_empty() || spec.name == "_id_" {
        return Err(invalid("the name must be non-empty and not _id_"));
    }
    if spec.path.is_empty() || spec.path.split('.').any(str::is_empty) {
        return Err(invalid(
            "the path must be a dotted path with non-empty components",
        ));
    }
    match existing.iter().find(|i| i.name == spec.name) {
        None => Ok(NewIndex::Build),
        Some(same) if same == spec => Ok(NewIndex::AlreadyThere),
        Some(_) => Err(invalid(
            "an index with this name exists with a different definition; drop it or pick another name",
        )),
    }
}

fn too_deep(collection: &str) -> EngineError {
    EngineError::TooDeep {
        collection: collection.to_owned(),
        limit: MAX_DOCUMENT_DEPTH,
    }
}

/// Whether raw BSON nests deeper than [`MAX_DOCUMENT_DEPTH`]; an explicit
/// stack, no recursion.
pub(crate) fn raw_too_deep(
    root: &bson::RawDocument,
) -> std::result::Result<bool, bson::raw::Error> {
    use bson::{RawArray, RawBsonRef, RawDocument};
    enum Node<'a> {
        Doc(&'a RawDocument),
        Arr(&'a RawArray),
    }
    fn child(v: RawBsonRef<'_>) -> Option<Node<'_>> {
        match v {
            RawBsonRef::Document(d) => Some(Node::Doc(d)),
            RawBsonRef::Array(a) => Some(Node::Arr(a)),
            RawBsonRef::JavaScriptCodeWithScope(c) => Some(Node::Doc(c.scope)),
            _ => None,
        }
    }
    let mut stack = vec![(Node::Doc(root), 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DOCUMENT_DEPTH {
            return Ok(true);
        }
        match node {
            Node::Doc(d) => {
                for el in d {
                    if let Some(n) = child(el?.1) {
                        stack.push((n, depth + 1));
                    }
                }
            }
            Node::Arr(a) => {
                for el in a {
                    if let Some(n) = child(el?) {
                        stack.push((n, depth + 1));
                    }
                }
            }
        }
    }
    Ok(false)
}

/// Whether a document nests deeper than [`MAX_DOCUMENT_DEPTH`]; an
/// explicit stack, no recursion.
pub fn document_too_deep(root: &Document) -> bool {
    fn children<'a>(v: &'a Bson, depth: usize, stack: &mut Vec<(&'a Bson, usize)>) {
        match v {
            Bson::Document(d) => stack.extend(d.values().map(|x| (x, depth + 1))),
            Bson::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            Bson::JavaScriptCodeWithScope(c) => {
                stack.extend(c.scope.values().map(|x| (x, depth + 1)));
            }
            _ => {}
        }
    }
    // (value, depth of the container it sits in)
    let mut stack: Vec<(&Bson, usize)> = root.values().map(|v| (v, 1)).collect();
    while let Some((v, depth)) = stack.pop() {
        if matches!(
            v,
            Bson::Document(_) | Bson::Array(_) | Bson::JavaScriptCodeWithScope(_)
        ) {
            if depth + 1 > MAX_DOCUMENT_DEPTH {
                return true;
            }
            children(v, depth, &mut stack);
        }
    }
    false
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('$') || name.contains('\0') {
        Some("it contains '$' or a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(EngineError::InvalidCollectionName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Fill in and check the state collection names (qe-protocol.md §7.1: the
/// server insists on the `enxcol_.<coll>.esc/.ecoc` pattern).
pub(crate) fn normalize_encrypted_fields(name: &str, mut ef: Document) -> Result<Document> {
    let bad = |reason: String| EngineError::InvalidEncryptedFields {
        collection: name.to_owned(),
        reason,
    };
    for (key, want) in [
        ("escCollection", esc_name(name)),
        ("ecocCollection", ecoc_name(name)),
    ] {
        match ef.get(key) {
            None => {
                ef.insert(key, want);
            }
            Some(Bson::String(s)) if *s == want => {}
            Some(other) => {
                return Err(bad(format!(
                    "{key} must be {want:?} (got {other}); omit it to use the default"
                )));
            }
        }
    }
    match ef.get("fields") {
        None => {
            ef.insert("fields", Bson::Array(Vec::new()));
        }
        Some(Bson::Array(fields)) => {
            for f in fields {
                let ok = matches!(f, Bson::Document(d) if matches!(d.get("path"), Some(Bson::String(_))));
                if !ok {
                    return Err(bad(
                        "every entry of fields must be a document with a string path".into(),
                    ));
                }
            }
        }
        Some(_) => return Err(bad("fields must be an array".into())),
    }
    Ok(ef)
}

/// Index keys of one document: (encoded key, the value it came from).
pub(crate) fn index_keys(doc: &Document, spec: &IndexSpec) -> BTreeMap<Vec<u8>, Bson> {
    let reach = Reach::of(doc, &spec.path);
    let mut keys = BTreeMap::new();
    for c in reach.candidates() {
        keys.entry(encode_key(c)).or_insert_with(|| c.clone());
    }
    if reach.missing && !spec.sparse {
        keys.entry(encode_key(&Bson::Null)).or_insert(Bson::Null);
    }
    keys
}

/// The well-formed tags in a document's `__safeContent__`.
pub(crate) fn doc_tags(doc: &Document) -> BTreeSet<Tag> {
    match doc.get(SAFE_CONTENT) {
        Some(Bson::Array(items)) => items
            .iter()
            .filter_map(|i| match i {
                Bson::Binary(b) if b.subtype == BinarySubtype::Generic => Tag::from_slice(&b.bytes),
                _ => None,
            })
            .collect(),
        _ => BTreeSet::new(),
    }
}

#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn check_id(collection: &str, id: &Bson) -> Result<()> {
    if matches!(
        id,
        Bson::Array(_) | Bson::RegularExpression(_) | Bson::Undefined
    ) {
        return Err(EngineError::InvalidDocument {
            collection: collection.to_owned(),
            reason: "_id cannot be an array, a regular expression or undefined".into(),
        });
    }
    Ok(())
}

pub(crate) fn with_id_first(id: Bson, doc: Document) -> Document {
    let mut out = Document::new();
    out.insert("_id", id);
    out.extend(doc);
    out
}

/// The document with an `_id` (a new ObjectId, first, when missing) and
/// that `_id`.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn ensure_id(collection: &str, doc: Document) -> Result<(Bson, Document)> {
    let (id, doc) = if let Some(id) = doc.get("_id") {
        (id.clone(), doc)
    } else {
        let id = Bson::ObjectId(ObjectId::new());
        (id.clone(), with_id_first(id, doc))
    };
    check_id(collection, &id)?;
    Ok((id, doc))
}

/// The value a document sorts by on `path`: the smallest (ascending) or
/// largest (descending) candidate, `null` when the path reaches nothing.
pub(crate) fn sort_key(doc: &Document, path: &str, dir: SortDirection) -> Bson {
    let reach = Reach::of(doc, path);
    let cands = reach
        .candidates()
        .filter(|c| !matches!(c, Bson::Array(a) if !a.is_empty()));
    let best = match dir {
        SortDirection::Ascending => cands.min_by(|a, b| compare(a, b)),
        SortDirection::Descending => cands.max_by(|a, b| compare(a, b)),
    };
    best.cloned().unwrap_or(Bson::Null)
}

/// Sort documents by `sort` keys; the sort is stable, so ties keep the
/// order they came in (insertion order).
pub(crate) fn sort_docs(docs: Vec<Document>, sort: &[(String, SortDirection)]) -> Vec<Document> {
    if sort.is_empty() {
        return docs;
    }
    let mut keyed: Vec<(Vec<Bson>, Document)> = docs
        .into_iter()
        .map(|d| {
            let keys = sort.iter().map(|(p, dir)| sort_key(&d, p, *dir)).collect();
            (keys, d)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, y), (_, dir)) in a.iter().zip(b).zip(sort) {
            let o = compare(x, y);
            let o = if *dir == SortDirection::Descending {
                o.reverse()
            } else {
                o
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    keyed.into_iter().map(|(_, d)| d).collect()
}

/// A parsed MongoDB projection.
pub(crate) struct Projection {
    include: bool,
    paths: Vec<Vec<String>>,
    keep_id: bool,
}

impl Projection {
    pub(crate) fn parse(p: &Document) -> Result<Self> {
        let mut include = None;
        let mut keep_id = true;
        let mut paths = Vec::new();
        for (k, v) in p {
            let on = match v {
                Bson::Boolean(b) => *b,
                Bson::Int32(i) => *i != 0,
                Bson::Int64(i) => *i != 0,
                Bson::Double(f) => *f != 0.0,
                _ => {
                    return Err(EngineError::InvalidProjection(format!(
                        "{k}: only 0/1/true/false are supported"
                    )));
                }
            };
            if k == "_id" {
                keep_id = on;
                continue;
            }
            if *include.get_or_insert(on) != on {
                return Err(EngineError::InvalidProjection(
                    "cannot mix inclusion and exclusion (except for _id)".into(),
                ));
            }
            paths.push(k.split('.').map(str::to_owned).collect());
        }
        // `{_id: 0}` alone is an exclusion projection.
        Ok(Self {
            include: include.unwrap_or(false),
            paths,
            keep_id,
        })
    }

    pub(crate) fn apply(&self, doc: Document) -> Document {
        let mut out = if self.include {
            let mut out = Document::new();
            if self.keep_id {
                if let Some(id) = doc.get("_id") {
                    out.insert("_id", id.clone());
                }
            }
            for p in &self.paths {
                copy_path(&doc, p, &mut out);
            }
            out
        } else {
            let mut out = doc;
            for p in &self.paths {
                remove_path(&mut out, p);
            }
            out
        };
        if !self.keep_id {
            out.remove("_id");
        }
        out
    }
}

fn copy_path(src: &Document, path: &[String], out: &mut Document) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = src.get(first) else { return };
    if rest.is_empty() {
        out.insert(first.clone(), v.clone());
    } else if let Bson::Document(sub) = v {
        let mut target = match out.remove(first) {
            Some(Bson::Document(d)) => d,
            _ => Document::new(),
        };
        copy_path(sub, rest, &mut target);
        if !target.is_empty() {
            out.insert(first.clone(), target);
        }
    }
}

fn remove_path(doc: &mut Document, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            doc.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Bson::Document(sub)) = doc.get_mut(first) {
                remove_path(sub, rest);
            }
        }
    }
}
