//! [`Filter`] → MongoDB query document.
//!
//! The engine's filter AST is MongoDB's query language, so the translation
//! is one to one, with four shapes MongoDB spells differently: the empty
//! disjunction (matches nothing: `{_id: {$in: []}}`, since every document
//! has an `_id`), a negated filter (`{$nor: [f]}`; MongoDB's `$not` only
//! exists under a path), the string lookups (an escaped `$regex`, anchored
//! with `^` or `\z` — PCRE's `$` would also match before a final newline)
//! and the text-search predicates (`{$expr: {$encStrStartsWith: {input:
//! "$path", prefix: <payload>}}}`, as MongoDB 8.2 takes them).
//! [`Filter::TagIn`] is the QE server role's own rewrite of a find payload:
//! a MongoDB server does that rewrite itself, so it never comes here.

use bson::{Bson, Document, doc};
use cipherdoc_engine::{EngineError, FieldOp, Filter, FilterError};

/// The query document MongoDB evaluates as `filter` does.
pub(crate) fn to_query(filter: &Filter) -> Result<Document, EngineError> {
    Ok(match filter {
        Filter::And(fs) => match fs.as_slice() {
            [] => Document::new(),
            [one] => to_query(one)?,
            _ => doc! {"$and": list(fs)?},
        },
        Filter::Or(fs) => match fs.as_slice() {
            [] => doc! {"_id": {"$in": []}},
            [one] => to_query(one)?,
            _ => doc! {"$or": list(fs)?},
        },
        Filter::Nor(fs) => {
            if fs.is_empty() {
                Document::new()
            } else {
                doc! {"$nor": list(fs)?}
            }
        }
        Filter::Not(f) => doc! {"$nor": [to_query(f)?]},
        Filter::Field {
            path,
            op: FieldOp::EncStr { op, value },
        } => {
            let mut args = Document::new();
            args.insert("input", format!("${path}"));
            args.insert(op.argument(), value.clone());
            let mut expr = Document::new();
            expr.insert(op.name(), args);
            doc! {"$expr": expr}
        }
        // A regular expression inside `$in`/`$nin` is a pattern to MongoDB
        // but a value to compare to the engine: each becomes its own `$eq`.
        Filter::Field {
            path,
            op: op @ (FieldOp::In(vs) | FieldOp::Nin(vs)),
        } if vs.iter().any(|v| matches!(v, Bson::RegularExpression(_))) => {
            let (regexes, rest): (Vec<&Bson>, Vec<&Bson>) = vs
                .iter()
                .partition(|v| matches!(v, Bson::RegularExpression(_)));
            let mut parts = vec![Bson::Document(
                doc! {path.clone(): {"$in": rest.into_iter().cloned().collect::<Vec<_>>()}},
            )];
            parts.extend(
                regexes
                    .into_iter()
                    .map(|r| Bson::Document(doc! {path.clone(): {"$eq": r.clone()}})),
            );
            if matches!(op, FieldOp::In(_)) {
                doc! {"$or": parts}
            } else {
                doc! {"$nor": parts}
            }
        }
        Filter::Field { path, op } => {
            let mut d = Document::new();
            d.insert(path.clone(), operator(op));
            d
        }
        Filter::TagIn(_) => {
            return Err(EngineError::Filter(FilterError::UnsupportedOperator(
                "__safeContent__ tag lookup (a MongoDB server rewrites encrypted queries itself; send the find payload)".into(),
            )));
        }
        // `Filter` is non-exhaustive: a new shape must be translated here
        // before it can reach a MongoDB server.
        _ => {
            return Err(EngineError::Filter(FilterError::UnsupportedOperator(
                "a filter shape the MongoDB engine does not translate".into(),
            )));
        }
    })
}

fn list(fs: &[Filter]) -> Result<Vec<Bson>, EngineError> {
    fs.iter().map(|f| to_query(f).map(Bson::Document)).collect()
}

fn operator(op: &FieldOp) -> Document {
    match op {
        FieldOp::Eq(v) => doc! {"$eq": v.clone()},
        FieldOp::Ne(v) => doc! {"$ne": v.clone()},
        FieldOp::In(vs) => doc! {"$in": vs.clone()},
        FieldOp::Nin(vs) => doc! {"$nin": vs.clone()},
        FieldOp::Lt(v) => doc! {"$lt": v.clone()},
        FieldOp::Lte(v) => doc! {"$lte": v.clone()},
        FieldOp::Gt(v) => doc! {"$gt": v.clone()},
        FieldOp::Gte(v) => doc! {"$gte": v.clone()},
        FieldOp::Exists(b) => doc! {"$exists": *b},
        FieldOp::Contains(_) | FieldOp::StartsWith(_) | FieldOp::EndsWith(_) => {
            doc! {"$regex": op.lookup_regex().unwrap_or_default()}
        }
        // Unknown operators of the non-exhaustive enum match nothing rather
        // than everything.
        _ => doc! {"$in": []},
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::Document;
    use cipherdoc_engine::EncStrOp;

    fn field(path: &str, op: FieldOp) -> Filter {
        Filter::Field {
            path: path.into(),
            op,
        }
    }

    /// Every translation parses back to the filter it came from (the
    /// parser is the reference for MongoDB's query language here).
    #[test]
    fn translations_parse_back() {
        let cases = [
            Filter::eq("a", 1),
            Filter::and([Filter::eq("a", 1), Filter::gt("b.c", 2)]),
            Filter::or([Filter::lt("a", 1), Filter::missing("b")]),
            Filter::nor([Filter::ne("a", "x")]),
            Filter::is_in("a", [Bson::Int32(1), Bson::Null]),
            Filter::not_in("a", [Bson::Int32(1)]),
            Filter::and([Filter::lte("a", 1), Filter::gte("a", 0)]),
            field("a", FieldOp::Contains("x.y(z)".into())),
            field("a", FieldOp::StartsWith("^a$".into())),
            field("a", FieldOp::EndsWith("a\\z".into())),
            Filter::enc_str("a.b", EncStrOp::StartsWith, Bson::Int32(1)),
            Filter::enc_str("a", EncStrOp::NormalizedEq, Bson::Int32(1)),
        ];
        for f in cases {
            let q = to_query(&f).unwrap();
            assert_eq!(Filter::parse(&q).unwrap(), f, "{q}");
        }
    }

    #[test]
    fn the_special_shapes() {
        let docs: Vec<Document> = vec![
            doc! {"_id": 1, "a": 1},
            doc! {"_id": 2, "a": 2},
            doc! {"_id": 3},
        ];
        let shapes = [
            Filter::all(),
            Filter::or([]),
            Filter::nor([]),
            Filter::eq("a", 1).not(),
            Filter::and([Filter::eq("a", 1).not(), Filter::exists("a")]),
        ];
        for f in shapes {
            let q = Filter::parse(&to_query(&f).unwrap()).unwrap();
            for d in &docs {
                assert_eq!(q.matches(d), f.matches(d), "{f:?} on {d}");
            }
        }
    }

    /// Regular expressions in `$in`/`$nin` are compared as values, as the
    /// engine's evaluator compares them.
    #[test]
    fn regex_values_in_lists_are_compared_not_matched() {
        let re = Bson::RegularExpression(bson::Regex {
            pattern: "a.*".into(),
            options: String::new(),
        });
        let docs: Vec<Document> = vec![
            doc! {"_id": 1, "a": re.clone()},
            doc! {"_id": 2, "a": "abc"},
            doc! {"_id": 3, "a": 1},
            doc! {"_id": 4},
        ];
        for f in [
            Filter::is_in("a", [re.clone(), Bson::Int32(1)]),
            Filter::not_in("a", [re.clone(), Bson::Int32(1)]),
            Filter::is_in("a", [re.clone()]),
        ] {
            let q = to_query(&f).unwrap();
            let parsed = Filter::parse(&q).unwrap();
            for d in &docs {
                assert_eq!(parsed.matches(d), f.matches(d), "{q} on {d}");
            }
        }
    }

    #[test]
    fn tags_are_refused() {
        let f = Filter::tag_in([cipherdoc_engine::Tag::from_bytes([1; 32])]);
        assert!(matches!(to_query(&f), Err(EngineError::Filter(_))));
    }
}
