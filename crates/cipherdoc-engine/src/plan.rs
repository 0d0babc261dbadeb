//! The access path of a read: which index, if any, and which keys or
//! bounds fetch a superset of a filter's matches. One planner for every
//! engine that keeps MongoDB-style indexes in tables (SQLite, PostgreSQL):
//! each renders the same [`Access`] as its own SQL, and both then evaluate
//! the whole filter on every candidate ([`crate::raw::judge`]), so an
//! access path only has to return a superset of the matches.
//!
//! Index keys are [`encode_key`] of every value a path reaches, in
//! MongoDB's comparison order, so equality is a set of keys and a range
//! predicate is a key range inside its type's bracket (`[rank, rank + 1)`).
//!
//! **Two-sided ranges.** `{a: {$gt: 1, $lt: 5}}` matches a document whose
//! array `a: [0, 9]` satisfies each bound with a different element, so
//! the bounds may only be intersected into one key range (`(1, 5)`) when no
//! document has more than one key in the index: MongoDB's "multikey" flag.
//! Engines keep that flag per index in the catalog (set by the write that
//! first stores a document with several keys, never cleared). A two-sided
//! range's upper bound is [`Upper::UnlessMultikey`]: the statement itself
//! reads the flag, in the snapshot it scans, and stops at the upper bound
//! when the index is not multikey, at the end of the bracket when it is
//! (the lower bound's range alone, which every match still falls in).

use std::ops::Bound;

use bson::Bson;

use crate::engine::IndexSpec;
use crate::filter::{FieldOp, Filter};
use crate::value::{canonical_rank, encode_key, string_prefix_range};

/// What the planner needs to know of a collection.
pub(crate) trait Shape {
    /// Its secondary indexes.
    fn indexes(&self) -> &[IndexSpec];
    /// Whether it has a tag index (it is an encrypted collection).
    fn has_tag_index(&self) -> bool;
}

/// Where a read's candidate documents come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Access<'a> {
    /// The documents whose `_id` key is one of these.
    Ids(Vec<Vec<u8>>),
    /// The documents holding one of these `__safeContent__` tags.
    Tags(Vec<Vec<u8>>),
    /// The entries of `index` with one of these keys.
    Keys {
        /// The index.
        index: &'a IndexSpec,
        /// Its keys to look up.
        keys: Vec<Vec<u8>>,
    },
    /// The entries of `index` within `range`.
    Range {
        /// The index.
        index: &'a IndexSpec,
        /// The keys to scan.
        range: KeyRange,
    },
    /// Every document.
    Scan,
}

/// A range of index keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyRange {
    /// The lower bound.
    pub(crate) lo: Bound<Vec<u8>>,
    /// The upper bound.
    pub(crate) hi: Upper,
}

/// The upper bound of a [`KeyRange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upper {
    /// A bound that holds whether or not the index is multikey.
    Fixed(Bound<Vec<u8>>),
    /// Keys below `narrow` when the index is not multikey, below `wide`
    /// (the end of the lower bound's bracket) when it is.
    UnlessMultikey {
        /// The first key past the two-sided range.
        narrow: Vec<u8>,
        /// The first key past the lower bound's bracket.
        wide: Vec<u8>,
    },
}

/// One condition on an index's `key` column, for an engine to render with
/// its own placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCondition<'k> {
    /// `key <op> k`, `op` one of `>`, `>=`, `<`, `<=`.
    Compare(&'static str, &'k [u8]),
    /// `key < (narrow, or wide when the index is multikey)`, the flag read
    /// by the statement itself.
    BelowUnlessMultikey {
        /// See [`Upper::UnlessMultikey`].
        narrow: &'k [u8],
        /// See [`Upper::UnlessMultikey`].
        wide: &'k [u8],
    },
}

impl KeyRange {
    /// The range as conditions on the `key` column.
    pub(crate) fn conditions(&self) -> Vec<KeyCondition<'_>> {
        let mut out = Vec::with_capacity(2);
        match &self.lo {
            Bound::Included(k) => out.push(KeyCondition::Compare(">=", k)),
            Bound::Excluded(k) => out.push(KeyCondition::Compare(">", k)),
            Bound::Unbounded => {}
        }
        match &self.hi {
            Upper::Fixed(Bound::Included(k)) => out.push(KeyCondition::Compare("<=", k)),
            Upper::Fixed(Bound::Excluded(k)) => out.push(KeyCondition::Compare("<", k)),
            Upper::Fixed(Bound::Unbounded) => {}
            Upper::UnlessMultikey { narrow, wide } => {
                out.push(KeyCondition::BelowUnlessMultikey { narrow, wide });
            }
        }
        out
    }
}

/// The SQL type of a rendered parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// Index keys.
    Bytes,
    /// Collection and index names.
    Text,
}

/// What differs between the engines' SQL for the same access path: how a
/// parameter is written and passed, and where the catalog of indexes is.
pub(crate) trait Dialect {
    /// A statement parameter.
    type Param;
    /// The placeholder of parameter `n` (1-based) of type `ty`.
    fn placeholder(&self, n: usize, ty: SqlType) -> String;
    /// An index key as a parameter.
    fn bytes(&self, key: Vec<u8>) -> Self::Param;
    /// A name as a parameter.
    fn text(&self, name: String) -> Self::Param;
    /// The catalog table of indexes, quoted (`"$indexes"`).
    fn indexes_table(&self) -> String;
}

/// `range`'s conditions on the `key` column of `index` (an index of
/// `collection`), their parameters appended to `params`. The multikey flag
/// is read by the statement, in its own snapshot, so a concurrent write
/// that makes the index multikey is seen together with its document, or
/// not at all.
pub(crate) fn key_conditions<D: Dialect>(
    dialect: &D,
    collection: &str,
    index: &IndexSpec,
    range: &KeyRange,
    params: &mut Vec<D::Param>,
) -> String {
    let mut push = |p: D::Param, ty: SqlType| {
        params.push(p);
        dialect.placeholder(params.len(), ty)
    };
    let mut conds = Vec::new();
    for c in range.conditions() {
        match c {
            KeyCondition::Compare(op, key) => {
                let k = push(dialect.bytes(key.to_vec()), SqlType::Bytes);
                conds.push(format!("key {op} {k}"));
            }
            KeyCondition::BelowUnlessMultikey { narrow, wide } => {
                let c = push(dialect.text(collection.to_owned()), SqlType::Text);
                let n = push(dialect.text(index.name.clone()), SqlType::Text);
                let w = push(dialect.bytes(wide.to_vec()), SqlType::Bytes);
                let k = push(dialect.bytes(narrow.to_vec()), SqlType::Bytes);
                conds.push(format!(
                    "key < (SELECT CASE WHEN multikey THEN {w} ELSE {k} END FROM {} WHERE collection = {c} AND name = {n})",
                    dialect.indexes_table()
                ));
            }
        }
    }
    conds.join(" AND ")
}

/// The keys an equality on `vals` looks up: `$eq: null` also matches
/// undefined, which has its own rank.
fn eq_keys<'v>(vals: impl IntoIterator<Item = &'v Bson>) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for v in vals {
        keys.push(encode_key(v));
        if matches!(v, Bson::Null) {
            keys.push(encode_key(&Bson::Undefined));
        }
    }
    keys
}

fn conjuncts(f: &Filter) -> Vec<&Filter> {
    match f {
        Filter::And(fs) => fs.iter().flat_map(conjuncts).collect(),
        other => vec![other],
    }
}

/// A range bound of a comparison, when an index can serve it: one whose
/// operand has a bracket of its own (not MinKey, MaxKey, null or
/// undefined, which `$lt`/`$gt` treat specially).
#[derive(Debug, Clone, Copy)]
enum Side<'f> {
    Lower { v: &'f Bson, inclusive: bool },
    Upper { v: &'f Bson, inclusive: bool },
}

impl<'f> Side<'f> {
    fn of(op: &'f FieldOp) -> Option<Self> {
        let side = match op {
            FieldOp::Gt(v) => Side::Lower {
                v,
                inclusive: false,
            },
            FieldOp::Gte(v) => Side::Lower { v, inclusive: true },
            FieldOp::Lt(v) => Side::Upper {
                v,
                inclusive: false,
            },
            FieldOp::Lte(v) => Side::Upper { v, inclusive: true },
            _ => return None,
        };
        let v = match side {
            Side::Lower { v, .. } | Side::Upper { v, .. } => v,
        };
        (!matches!(
            v,
            Bson::MinKey | Bson::MaxKey | Bson::Null | Bson::Undefined
        ))
        .then_some(side)
    }

    fn value(self) -> &'f Bson {
        match self {
            Side::Lower { v, .. } | Side::Upper { v, .. } => v,
        }
    }

    fn bound(self) -> Bound<Vec<u8>> {
        let (v, inclusive) = match self {
            Side::Lower { v, inclusive } | Side::Upper { v, inclusive } => (v, inclusive),
        };
        if inclusive {
            Bound::Included(encode_key(v))
        } else {
            Bound::Excluded(encode_key(v))
        }
    }

    /// The range of this bound alone, inside its operand's bracket.
    fn alone(self) -> KeyRange {
        let rank = canonical_rank(self.value());
        match self {
            Side::Lower { .. } => KeyRange {
                lo: self.bound(),
                hi: Upper::Fixed(Bound::Excluded(vec![rank.saturating_add(1)])),
            },
            Side::Upper { .. } => KeyRange {
                lo: Bound::Included(vec![rank]),
                hi: Upper::Fixed(self.bound()),
            },
        }
    }
}

/// Choose the access path of `filter` on a collection shaped `shape`: an
/// `_id` lookup, a tag-index lookup, an equality, range or prefix scan of
/// a secondary index, or a full scan.
pub(crate) fn access<'a>(shape: &'a impl Shape, filter: &Filter) -> Access<'a> {
    let cs = conjuncts(filter);
    for c in &cs {
        match c {
            Filter::Field {
                path,
                op: FieldOp::Eq(v),
            } if path == "_id" => return Access::Ids(eq_keys([v])),
            Filter::Field {
                path,
                op: FieldOp::In(vs),
            } if path == "_id" => return Access::Ids(eq_keys(vs)),
            Filter::TagIn(tags) if shape.has_tag_index() => {
                return Access::Tags(tags.iter().map(|t| t.as_bytes().to_vec()).collect());
            }
            _ => {}
        }
    }
    for c in &cs {
        let Filter::Field { path, op } = c else {
            continue;
        };
        for index in shape.indexes().iter().filter(|s| &s.path == path) {
            let has_null = |vs: &[Bson]| vs.iter().any(|v| matches!(v, Bson::Null));
            match op {
                FieldOp::Eq(v) if !(index.sparse && matches!(v, Bson::Null)) => {
                    return Access::Keys {
                        index,
                        keys: eq_keys([v]),
                    };
                }
                FieldOp::In(vs) if !(index.sparse && has_null(vs)) => {
                    return Access::Keys {
                        index,
                        keys: eq_keys(vs),
                    };
                }
                // Exactly the string keys starting with the prefix (see
                // `string_prefix_range`); the evaluator then drops symbols.
                FieldOp::StartsWith(prefix) => {
                    let (lo, hi) = string_prefix_range(prefix);
                    return Access::Range {
                        index,
                        range: KeyRange {
                            lo: Bound::Included(lo),
                            hi: Upper::Fixed(Bound::Excluded(hi)),
                        },
                    };
                }
                _ => {
                    if let Some(side) = Side::of(op) {
                        return range(index, side, other_side(&cs, path, side));
                    }
                }
            }
        }
    }
    Access::Scan
}

/// A bound on `path` of the other side than `side`, in the same bracket.
fn other_side<'f>(cs: &[&'f Filter], path: &str, side: Side<'_>) -> Option<Side<'f>> {
    let rank = canonical_rank(side.value());
    cs.iter().find_map(|c| match c {
        Filter::Field { path: p, op } if p == path => Side::of(op).filter(|o| {
            canonical_rank(o.value()) == rank
                && matches!(
                    (side, o),
                    (Side::Lower { .. }, Side::Upper { .. })
                        | (Side::Upper { .. }, Side::Lower { .. })
                )
        }),
        _ => None,
    })
}

/// The first key past `side`'s bracket.
fn wide_end(side: Side<'_>) -> Vec<u8> {
    vec![canonical_rank(side.value()).saturating_add(1)]
}

fn range<'a>(index: &'a IndexSpec, side: Side<'_>, other: Option<Side<'_>>) -> Access<'a> {
    let Some(other) = other else {
        return Access::Range {
            index,
            range: side.alone(),
        };
    };
    let (lower, upper) = match side {
        Side::Lower { .. } => (side, other),
        Side::Upper { .. } => (other, side),
    };
    // Keys compare bytewise, then by length: the first key past `k` is
    // `k` followed by a zero byte, so `<= k` is `< k ‖ 0`.
    let narrow = match upper.bound() {
        Bound::Included(mut k) => {
            k.push(0);
            k
        }
        Bound::Excluded(k) => k,
        // (`bound` is never unbounded; the bracket's end would be right.)
        Bound::Unbounded => wide_end(upper),
    };
    let wide = wide_end(lower);
    Access::Range {
        index,
        range: KeyRange {
            lo: lower.bound(),
            hi: Upper::UnlessMultikey { narrow, wide },
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    struct Coll(Vec<IndexSpec>, bool);

    impl Shape for Coll {
        fn indexes(&self) -> &[IndexSpec] {
            &self.0
        }
        fn has_tag_index(&self) -> bool {
            self.1
        }
    }

    fn coll() -> Coll {
        Coll(
            vec![IndexSpec::new("a"), IndexSpec::new("s").sparse()],
            false,
        )
    }

    #[test]
    fn two_bounds_on_one_path_make_one_range_unless_multikey() {
        let c = coll();
        let key = |i: i32| encode_key(&Bson::Int32(i));
        let rank = canonical_rank(&Bson::Int32(2));
        for (f, narrow) in [
            (
                Filter::and([Filter::lt("a", 9), Filter::gte("a", 2)]),
                key(9),
            ),
            (Filter::and([Filter::gte("a", 2), Filter::lte("a", 9)]), {
                let mut k = key(9);
                k.push(0);
                k
            }),
        ] {
            let Access::Range { index, range } = access(&c, &f) else {
                panic!("{:?}", access(&c, &f));
            };
            assert_eq!(index.path, "a");
            assert_eq!(
                range,
                KeyRange {
                    lo: Bound::Included(key(2)),
                    hi: Upper::UnlessMultikey {
                        narrow,
                        wide: vec![rank + 1],
                    },
                }
            );
        }
    }

    #[test]
    fn bounds_in_different_brackets_are_not_intersected() {
        let c = coll();
        let f = Filter::and([Filter::gt("a", 1), Filter::lt("a", "z")]);
        assert!(matches!(
            access(&c, &f),
            Access::Range {
                range: KeyRange {
                    hi: Upper::Fixed(_),
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn one_bound_scans_to_the_end_of_its_bracket() {
        let c = coll();
        let rank = canonical_rank(&Bson::Int32(0));
        let Access::Range { range, .. } = access(&c, &Filter::lte("a", 5)) else {
            panic!()
        };
        assert_eq!(range.lo, Bound::Included(vec![rank]));
        assert_eq!(
            range.hi,
            Upper::Fixed(Bound::Included(encode_key(&Bson::Int32(5))))
        );
    }

    #[test]
    fn the_rest_of_the_paths() {
        let c = coll();
        assert!(matches!(access(&c, &Filter::eq("_id", 1)), Access::Ids(k) if k.len() == 1));
        assert!(
            matches!(access(&c, &Filter::eq("a", Bson::Null)), Access::Keys { keys, .. } if keys.len() == 2)
        );
        // A sparse index holds no entry for a missing path: `null` scans.
        assert_eq!(access(&c, &Filter::eq("s", Bson::Null)), Access::Scan);
        assert_eq!(access(&c, &Filter::gt("a", Bson::MinKey)), Access::Scan);
        assert_eq!(access(&c, &Filter::eq("b", 1)), Access::Scan);
        // Tags only where there is a tag index.
        let tags = Filter::tag_in([crate::Tag::from_slice(&[1; 32]).unwrap()]);
        assert_eq!(access(&c, &tags), Access::Scan);
        assert!(matches!(access(&Coll(vec![], true), &tags), Access::Tags(t) if t.len() == 1));
    }
}
