//! Query rewrite (§9.6): find payloads on encrypted paths become tag
//! lookups.
//!
//! A query on an encrypted field arrives in the ordinary [`Filter`] AST with
//! the client's find payload as the operand: a BSON binary subtype 6 value
//! whose first byte is 12 (FLE2FindEqualityPayloadV2), as in MongoDB's wire
//! protocol. Supported shapes on an equality field `f`:
//!
//! | filter | becomes |
//! |---|---|
//! | `Field{f, Eq(<12>)}` | `TagIn(tags)` |
//! | `Field{f, In([<12>, …])}` | `TagIn(∪ tags)` |
//! | `Field{f, Ne(<12>)}` | `Not(TagIn(tags))` |
//! | `Field{f, Nin([<12>, …])}` | `Not(TagIn(∪ tags))` |
//! | `Field{f, Exists(_)}` | unchanged |
//!
//! On a range field `r`: `Field{r, Gt|Gte|Lt|Lte|Eq(<13>)}` becomes
//! `TagIn(tags)` over every mincover string of the payload (a stub becomes
//! `And([])`, always true); negation is written with `Filter::Not`.
//!
//! On a text-search field `t` (prefix, suffix, substring):
//! `Field{t, EncStr{op, <18>}}` (`$expr: {$encStrStartsWith | $encStrEndsWith
//! | $encStrContains | $encStrNormalizedEq: {input: "$t", …}}`) becomes
//! `TagIn(tags)` of the payload's token set; the payload must be of the
//! expression's family, for a kind the field indexes, made with the field's
//! folding and query lengths and its contention.
//!
//! `tags` are the tags `1..=n_k` of every contention factor `k ∈ 0..=cm`,
//! `n_k` being emuBinary's query count. Anything else on an encrypted path
//! (plaintext operands, order comparisons, paths inside an encrypted value,
//! documents compared on a parent path) is refused: it could never match
//! and would hint at a client bug.

use std::collections::{BTreeSet, HashMap};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson};
use cipherdoc_crypto::client_range::{range_value_from_bson, range_value_to_bson};
use cipherdoc_crypto::payload::{FindEqualityPayloadV2, FindRangePayloadV2, FindTextPayload};
use cipherdoc_crypto::server::ContentionTokens;
use cipherdoc_crypto::text::TextQuery;

use super::QeError;
use super::probe::{self, Search};
use super::schema::{FieldKind, FieldSpec, PathRel, QeSchema};
use crate::engine::{SortDirection, Transaction};
use crate::filter::{EncStrOp, FieldOp, Filter};
use crate::qe_state::Tag;
use crate::{EngineError, Result};

fn blob(v: &Bson) -> Option<&[u8]> {
    match v {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes,
        }) => Some(bytes),
        _ => None,
    }
}

/// Whether a filter operand could hide a QE blob.
fn holds_qe_blob(v: &Bson) -> bool {
    match v {
        Bson::Binary(_) => blob(v).is_some_and(|b| !matches!(b.first(), Some(1 | 2))),
        Bson::Array(a) => a.iter().any(holds_qe_blob),
        Bson::Document(d) => d.values().any(holds_qe_blob),
        _ => false,
    }
}

/// Turns one find payload (at a field) into its tag set.
type Resolver<'r> = dyn FnMut(&FieldSpec, &[u8]) -> Result<BTreeSet<Tag>> + 'r;

struct Ctx<'a> {
    collection: &'a str,
    schema: Option<&'a QeSchema>,
}

impl Ctx<'_> {
    fn invalid(&self, path: &str, reason: impl Into<String>) -> EngineError {
        QeError::InvalidQuery {
            collection: self.collection.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
        .into()
    }

    fn rel(&self, path: &str) -> PathRel<'_> {
        self.schema.map_or(PathRel::Plain, |s| s.relation(path))
    }

    /// Rewrites `f`; `resolve` turns one find payload into its tag set.
    fn rewrite(&self, f: &Filter, resolve: &mut Resolver<'_>) -> Result<Filter> {
        Ok(match f {
            Filter::And(fs) => Filter::And(self.all(fs, resolve)?),
            Filter::Or(fs) => Filter::Or(self.all(fs, resolve)?),
            Filter::Nor(fs) => Filter::Nor(self.all(fs, resolve)?),
            Filter::Not(inner) => Filter::Not(Box::new(self.rewrite(inner, resolve)?)),
            Filter::Field { path, op } => self.field(path, op, resolve)?,
            other => other.clone(),
        })
    }

    fn all(&self, fs: &[Filter], resolve: &mut Resolver<'_>) -> Result<Vec<Filter>> {
        fs.iter().map(|f| self.rewrite(f, resolve)).collect()
    }

    fn field(&self, path: &str, op: &FieldOp, resolve: &mut Resolver<'_>) -> Result<Filter> {
        let keep = || Filter::Field {
            path: path.to_owned(),
            op: op.clone(),
        };
        if matches!(op, FieldOp::Exists(_)) {
            return match self.rel(path) {
                PathRel::Below(f) => Err(self.invalid(
                    path,
                    format!(
                        "{:?} is encrypted as a whole; query that field instead",
                        f.path
                    ),
                )),
                _ => Ok(keep()),
            };
        }
        let operands: Vec<&Bson> = match op {
            FieldOp::Eq(v)
            | FieldOp::Ne(v)
            | FieldOp::Lt(v)
            | FieldOp::Lte(v)
            | FieldOp::Gt(v)
            | FieldOp::Gte(v) => vec![v],
            FieldOp::In(vs) | FieldOp::Nin(vs) => vs.iter().collect(),
            FieldOp::EncStr { value, .. } => vec![value],
            _ => Vec::new(),
        };
        if let FieldOp::EncStr { op, .. } = op
            && !matches!(self.rel(path), PathRel::Exact(f) if matches!(f.kind, FieldKind::Text { .. }))
        {
            return Err(self.invalid(
                path,
                format!(
                    "{} applies only to an encrypted field with text-search query types (prefix, suffix, substring); check the encrypted fields map",
                    op.name()
                ),
            ));
        }
        match self.rel(path) {
            PathRel::Plain => {
                if operands.iter().any(|v| holds_qe_blob(v)) {
                    return Err(self.invalid(
                        path,
                        "an encrypted query value on a field that is not encrypted; check the encrypted fields map",
                    ));
                }
                Ok(keep())
            }
            PathRel::Above => {
                if operands
                    .iter()
                    .any(|v| matches!(v, Bson::Document(_) | Bson::Array(_)))
                {
                    return Err(self.invalid(
                        path,
                        "comparing a document that contains encrypted fields is not possible; query the encrypted field itself",
                    ));
                }
                Ok(keep())
            }
            PathRel::Below(f) => Err(self.invalid(
                path,
                format!(
                    "{:?} is encrypted as a whole; query that field instead",
                    f.path
                ),
            )),
            PathRel::Exact(f) => self.encrypted(f, path, op, &operands, resolve),
        }
    }

    fn encrypted(
        &self,
        f: &FieldSpec,
        path: &str,
        op: &FieldOp,
        operands: &[&Bson],
        resolve: &mut Resolver<'_>,
    ) -> Result<Filter> {
        match f.kind {
            FieldKind::Unindexed => {
                return Err(self.invalid(
                    path,
                    "the field is encrypted without an index and cannot be queried",
                ));
            }
            FieldKind::Range { .. } => return self.range(f, path, op, resolve),
            FieldKind::Text { .. } => return self.text(f, path, op, resolve),
            FieldKind::Equality { .. } => {}
        }
        let negate = match op {
            FieldOp::Eq(_) | FieldOp::In(_) => false,
            FieldOp::Ne(_) | FieldOp::Nin(_) => true,
            _ => {
                return Err(self.invalid(
                    path,
                    "only equality ($eq, $ne, $in, $nin, $exists) is supported on this encrypted field",
                ));
            }
        };
        let mut tags = BTreeSet::new();
        for v in operands {
            let Some(b) = blob(v).filter(|b| b.first() == Some(&12)) else {
                return Err(self.invalid(
                    path,
                    "a plaintext (or non-find-payload) value compared with an encrypted field could never match; encrypt it into a find payload (12)",
                ));
            };
            tags.extend(resolve(f, b)?);
        }
        let t = Filter::TagIn(tags);
        Ok(if negate { t.not() } else { t })
    }

    /// A range field: `$gt/$gte/$lt/$lte/$eq` with a range find payload
    /// (13) become the union of its mincover strings' tags; a stub (the
    /// other half of a two-sided query, whose full half carries both
    /// bounds) matches everything.
    fn range(
        &self,
        f: &FieldSpec,
        path: &str,
        op: &FieldOp,
        resolve: &mut Resolver<'_>,
    ) -> Result<Filter> {
        let (FieldOp::Eq(v) | FieldOp::Gt(v) | FieldOp::Gte(v) | FieldOp::Lt(v) | FieldOp::Lte(v)) =
            op
        else {
            return Err(self.invalid(
                path,
                "only $gt, $gte, $lt, $lte (or $eq) with a range find payload (13), and $exists, are supported on a range field; express negation with $not",
            ));
        };
        let Some(b) = blob(v).filter(|b| b.first() == Some(&13)) else {
            return Err(self.invalid(
                path,
                "a range field is compared only with a range find payload (13); encrypt the bounds on the client",
            ));
        };
        let p = FindRangePayloadV2::decode(b).map_err(|source| QeError::Payload {
            collection: self.collection.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        if p.is_stub() {
            return Ok(Filter::And(Vec::new()));
        }
        self.check_range_parameters(f, path, &p)?;
        Ok(Filter::TagIn(resolve(f, b)?))
    }

    /// A text-search field: `$encStrStartsWith`, `$encStrEndsWith`,
    /// `$encStrContains`, `$encStrNormalizedEq` with a text find payload
    /// (18) of the expression's family become that token set's tags.
    fn text(
        &self,
        f: &FieldSpec,
        path: &str,
        op: &FieldOp,
        resolve: &mut Resolver<'_>,
    ) -> Result<Filter> {
        let FieldOp::EncStr { op, value } = op else {
            return Err(self.invalid(
                path,
                "a text-search field is queried only with $encStrStartsWith, $encStrEndsWith, $encStrContains or $encStrNormalizedEq (inside $expr), and $exists",
            ));
        };
        let Some(b) = blob(value).filter(|b| b.first() == Some(&18)) else {
            return Err(self.invalid(
                path,
                format!(
                    "{} on an encrypted field needs a text find payload (18); encrypt the query on the client",
                    op.name()
                ),
            ));
        };
        let p = FindTextPayload::decode(b).map_err(|source| QeError::Payload {
            collection: self.collection.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let want = match op {
            EncStrOp::StartsWith => TextQuery::Prefix,
            EncStrOp::EndsWith => TextQuery::Suffix,
            EncStrOp::Contains => TextQuery::Substring,
            EncStrOp::NormalizedEq => TextQuery::Exact,
        };
        let got = p.token_sets.query();
        if got != want {
            return Err(self.invalid(
                path,
                format!(
                    "{} needs a {want} find payload, but this one is for {got} queries",
                    op.name()
                ),
            ));
        }
        let Some(index) = f.text else {
            return Err(self.invalid(
                path,
                "the field's text-search options do not resolve; fix encryptedFields",
            ));
        };
        let Ok(expected) = index.for_query(want) else {
            return Err(self.invalid(
                path,
                format!(
                    "the field has no {want} index; it answers only the query types its encryptedFields declare"
                ),
            ));
        };
        if p.index != expected {
            return Err(self.invalid(
                path,
                "the text find payload was made with other folding or query lengths than the field's; matches would be lost — encrypt the query with the collection's encryptedFields",
            ));
        }
        Ok(Filter::TagIn(resolve(f, b)?))
    }

    /// A range find payload's `sp`, `tf`, `pn`, `mn` and `mx` must be the
    /// field's resolved range options: the mincover of other options names
    /// other edges, and the query would silently miss matches.
    fn check_range_parameters(
        &self,
        f: &FieldSpec,
        path: &str,
        p: &FindRangePayloadV2,
    ) -> Result<()> {
        let Some(index) = &f.range else {
            return Err(self.invalid(
                path,
                "the field's range options (min, max, sparsity, trimFactor, precision) do not resolve for its bsonType; fix encryptedFields",
            ));
        };
        let bound = |b: Option<&Bson>| b.and_then(|b| range_value_from_bson(b).ok());
        let shown = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
        let (sp, tf) = (index.sparsity(), index.trim_factor());
        let mismatch = if p.sparsity != Some(sp) {
            Some((
                "sparsity",
                shown(p.sparsity.map(|v| v.to_string())),
                sp.to_string(),
            ))
        } else if p.trim_factor.is_some_and(|v| v != tf) {
            Some((
                "trimFactor",
                shown(p.trim_factor.map(|v| v.to_string())),
                tf.to_string(),
            ))
        } else if p.precision != index.precision() {
            let pn = |v: Option<i32>| shown(v.map(|v| v.to_string()));
            Some(("precision", pn(p.precision), pn(index.precision())))
        } else {
            [
                ("min", p.index_min.as_ref(), index.index_min()),
                ("max", p.index_max.as_ref(), index.index_max()),
            ]
            .into_iter()
            .find(|(_, got, want)| bound(*got) != Some(*want))
            .map(|(option, got, want)| {
                (
                    option,
                    shown(got.map(ToString::to_string)),
                    range_value_to_bson(want).to_string(),
                )
            })
        };
        match mismatch {
            None => Ok(()),
            Some((option, got, want)) => Err(self.invalid(
                path,
                format!(
                    "the range find payload was made with {option} {got}, the field's is {want}; matches would be lost — encrypt the query with the collection's encryptedFields"
                ),
            )),
        }
    }
}

/// Refuse sorting on an encrypted path (the order of ciphertexts means
/// nothing and leaks nothing useful either).
pub(crate) fn check_sort(
    collection: &str,
    schema: Option<&QeSchema>,
    sort: &[(String, SortDirection)],
) -> Result<()> {
    let Some(s) = schema else { return Ok(()) };
    for (p, _) in sort {
        if matches!(
            s.relation(p),
            PathRel::Exact(_) | PathRel::Below(_) | PathRel::Above
        ) {
            return Err(QeError::InvalidQuery {
                collection: collection.to_owned(),
                path: p.clone(),
                reason: "cannot sort on an encrypted field (or a document containing one)".into(),
            }
            .into());
        }
    }
    Ok(())
}

/// Rewrite `filter` for `collection`, probing the ESC through `tx`.
pub(crate) async fn rewrite(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: Option<&QeSchema>,
    filter: &Filter,
    max_tags: usize,
) -> Result<Filter> {
    let ctx = Ctx { collection, schema };
    // Pass 1: validate and collect the distinct payloads.
    let mut payloads: Vec<(String, Vec<u8>, Vec<ContentionTokens>)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let first = ctx.rewrite(filter, &mut |f, b| {
        if index.contains_key(b) {
            return Ok(BTreeSet::new());
        }
        let payload_err = |source| QeError::Payload {
            collection: collection.to_owned(),
            path: f.path.clone(),
            source,
        };
        let (cm, tokens) = if b.first() == Some(&13) {
            let p = FindRangePayloadV2::decode(b).map_err(payload_err)?;
            (p.max_contention_factor().unwrap_or(0), p.contention_tokens())
        } else if b.first() == Some(&18) {
            let p = FindTextPayload::decode(b).map_err(payload_err)?;
            (p.max_contention_factor, p.contention_tokens())
        } else {
            let p = FindEqualityPayloadV2::decode(b).map_err(payload_err)?;
            (p.max_contention_factor, p.contention_tokens().collect())
        };
        let want = f.contention().unwrap_or(0);
        if cm != want {
            return Err(ctx.invalid(
                &f.path,
                format!(
                    "the find payload's contention factor {cm} differs from the field's {want}; matches would be lost or work wasted — encrypt the query with the collection's encryptedFields"
                ),
            ));
        }
        index.insert(b.to_vec(), payloads.len());
        payloads.push((f.path.clone(), b.to_vec(), tokens));
        Ok(BTreeSet::new())
    })?;
    if payloads.is_empty() {
        return Ok(first);
    }
    // One batched search per (payload, contention factor).
    let mut searches = Vec::new();
    let mut owners = Vec::new();
    for (i, (_, _, cts)) in payloads.iter().enumerate() {
        for ct in cts {
            searches.push(Search::new(&ct.esc));
            owners.push((i, ct));
        }
    }
    let results = probe::run(tx, collection, searches).await?;
    let mut tag_sets: Vec<BTreeSet<Tag>> = vec![BTreeSet::new(); payloads.len()];
    for ((i, ct), r) in owners.iter().zip(&results) {
        let n = r.query_count();
        let (Some(set), Some((path, _, _))) = (tag_sets.get_mut(*i), payloads.get(*i)) else {
            continue;
        };
        if usize::try_from(n).map_or(true, |n| set.len().saturating_add(n) > max_tags) {
            return Err(QeError::TooManyTags {
                collection: collection.to_owned(),
                path: path.clone(),
                limit: max_tags,
            }
            .into());
        }
        set.extend(ct.tags(n));
    }
    // Pass 2: substitute.
    let mut total = 0usize;
    let out = ctx.rewrite(filter, &mut |f, b| {
        let set = index
            .get(b)
            .and_then(|i| tag_sets.get(*i))
            .cloned()
            .unwrap_or_default();
        total = total.saturating_add(set.len());
        if total > max_tags {
            return Err(QeError::TooManyTags {
                collection: collection.to_owned(),
                path: f.path.clone(),
                limit: max_tags,
            }
            .into());
        }
        Ok(set)
    })?;
    Ok(out)
}
