//! Aggregation: `$match`, `$project`, `$unset`, `$sort`, `$skip`, `$limit`,
//! `$count`, `$group` (with `$sum`, `$avg`, `$min`, `$max`, `$first`,
//! `$last`, `$push`, `$addToSet`; what drivers' `count_documents` sends)
//! and `$unwind`.
//!
//! The leading `$match` (and the `$sort`/`$skip`/`$limit` right after it)
//! goes to the engine as a `find`, so that an encrypted `$match` is
//! rewritten by the QE server role and answered through an index; the
//! remaining stages run here over the documents it returned, with the
//! engine's reference filter semantics and sort order.

use bson::{Bson, Document, doc};
use cipherdoc_engine::value::{compare, equals};
use cipherdoc_engine::{Filter, FindOptions, SortDirection};

use crate::error::{CommandError, CommandResult, ErrorCode};

/// A parsed pipeline: what the engine runs, then the rest.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The leading `$match` (empty: all).
    pub(crate) filter: Document,
    /// Sort/skip/limit/projection pushed into the engine's find.
    pub(crate) options: FindOptions,
    /// Stages run in memory afterwards.
    rest: Vec<Stage>,
}

#[derive(Debug)]
enum Stage {
    Match(Filter, Document),
    Project(Document),
    Sort(Vec<(String, SortDirection)>),
    Skip(usize),
    Limit(usize),
    Count(String),
    Group(Bson, Vec<(String, String, Bson)>),
    Unwind(String, bool),
}

fn unsupported(name: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Location(40324),
        format!(
            "Unrecognized pipeline stage name: '{name}' (cipherdoc serve supports $match, $project, $unset, $sort, $skip, $limit, $count, $group and $unwind)"
        ),
    )
}

/// `1` or `-1` as an int, long or double (how MongoDB spells a direction).
pub(crate) fn unit(v: &Bson) -> Option<i8> {
    match v {
        Bson::Int32(1) | Bson::Int64(1) => Some(1),
        Bson::Int32(-1) | Bson::Int64(-1) => Some(-1),
        // Exactly ±1 is what MongoDB accepts; no tolerance is wanted.
        #[allow(clippy::float_cmp)]
        Bson::Double(f) if *f == 1.0 || *f == -1.0 => Some(if *f > 0.0 { 1 } else { -1 }),
        _ => None,
    }
}

/// A sort document (`{a: 1, b: -1}`) as sort keys.
pub(crate) fn parse_sort(d: &Document) -> CommandResult<Vec<(String, SortDirection)>> {
    let mut out = Vec::with_capacity(d.len());
    for (k, v) in d {
        if k == "$natural" {
            continue;
        }
        let dir = match unit(v) {
            Some(1) => SortDirection::Ascending,
            Some(_) => SortDirection::Descending,
            None => {
                return Err(CommandError::bad_value(format!(
                    "$sort key ordering must be 1 (for ascending) or -1 (for descending); {k} is not"
                )));
            }
        };
        out.push((k.clone(), dir));
    }
    Ok(out)
}

fn count_arg(name: &str, v: &Bson) -> CommandResult<usize> {
    let n = crate::cursor::integer(v).ok_or_else(|| CommandError::type_mismatch(name, "number"))?;
    usize::try_from(n).map_err(|_| CommandError::bad_value(format!("{name} must be non-negative")))
}

fn field_ref(v: &Bson) -> Option<&str> {
    match v {
        Bson::String(s) => s.strip_prefix('$').filter(|p| !p.starts_with('$')),
        _ => None,
    }
}

fn parse_group(spec: &Document) -> CommandResult<Stage> {
    let id = spec.get("_id").cloned().ok_or_else(|| {
        CommandError::new(
            ErrorCode::Location(15955),
            "a group specification must include an _id",
        )
    })?;
    if let Bson::Document(d) = &id
        && d.values().any(|v| matches!(v, Bson::Document(_)))
    {
        return Err(CommandError::bad_value(
            "$group _id expressions other than constants and field paths are not supported",
        ));
    }
    let mut accs = Vec::new();
    for (name, acc) in spec {
        if name == "_id" {
            continue;
        }
        let Bson::Document(acc) = acc else {
            return Err(CommandError::new(
                ErrorCode::Location(40234),
                format!("The field '{name}' must be an accumulator object"),
            ));
        };
        let Some((op, arg)) = acc.iter().next() else {
            return Err(CommandError::bad_value(format!(
                "The field '{name}' has no accumulator"
            )));
        };
        if !matches!(
            op.as_str(),
            "$sum"
                | "$avg"
                | "$min"
                | "$max"
                | "$first"
                | "$last"
                | "$push"
                | "$addToSet"
                | "$count"
        ) {
            return Err(CommandError::new(
                ErrorCode::Location(15952),
                format!("unknown group operator '{op}'"),
            ));
        }
        accs.push((name.clone(), op.clone(), arg.clone()));
    }
    Ok(Stage::Group(id, accs))
}

/// Parse a pipeline.
pub(crate) fn plan(pipeline: &[Bson]) -> CommandResult<Plan> {
    let mut stages = Vec::with_capacity(pipeline.len());
    for s in pipeline {
        let Bson::Document(s) = s else {
            return Err(CommandError::type_mismatch("pipeline", "array of objects"));
        };
        if s.len() != 1 {
            return Err(CommandError::new(
                ErrorCode::Location(40323),
                "A pipeline stage specification object must contain exactly one field.",
            ));
        }
        let Some((name, arg)) = s.iter().next() else {
            continue;
        };
        let doc_arg = || match arg {
            Bson::Document(d) => Ok(d.clone()),
            _ => Err(CommandError::type_mismatch(name, "object")),
        };
        stages.push(match name.as_str() {
            "$match" => {
                let d = doc_arg()?;
                let f = Filter::parse(&d).map_err(|e| CommandError::bad_value(e.to_string()))?;
                Stage::Match(f, d)
            }
            "$project" => Stage::Project(doc_arg()?),
            "$unset" => {
                let mut p = Document::new();
                match arg {
                    Bson::String(s) => {
                        p.insert(s.clone(), 0);
                    }
                    Bson::Array(a) => {
                        for f in a {
                            let Bson::String(s) = f else {
                                return Err(CommandError::type_mismatch("$unset", "string"));
                            };
                            p.insert(s.clone(), 0);
                        }
                    }
                    _ => return Err(CommandError::type_mismatch("$unset", "string or array")),
                }
                Stage::Project(p)
            }
            "$sort" => Stage::Sort(parse_sort(&doc_arg()?)?),
            "$skip" => Stage::Skip(count_arg("$skip", arg)?),
            "$limit" => Stage::Limit(count_arg("$limit", arg)?),
            "$count" => match arg {
                Bson::String(s) if !s.is_empty() && !s.starts_with('$') && !s.contains('.') => {
                    Stage::Count(s.clone())
                }
                _ => {
                    return Err(CommandError::bad_value(
                        "the $count field must be a non-empty string without '$' or '.'",
                    ));
                }
            },
            "$group" => parse_group(&doc_arg()?)?,
            "$unwind" => match arg {
                Bson::String(s) => Stage::Unwind(
                    field_ref(arg)
                        .ok_or_else(|| {
                            CommandError::bad_value(format!(
                                "$unwind path '{s}' must start with '$'"
                            ))
                        })?
                        .to_owned(),
                    false,
                ),
                Bson::Document(d) => {
                    let path = d.get("path").and_then(field_ref).ok_or_else(|| {
                        CommandError::bad_value("$unwind needs a path starting with '$'")
                    })?;
                    Stage::Unwind(
                        path.to_owned(),
                        d.get_bool("preserveNullAndEmptyArrays").unwrap_or(false),
                    )
                }
                _ => return Err(CommandError::type_mismatch("$unwind", "string or object")),
            },
            other => return Err(unsupported(other)),
        });
    }
    let mut plan = Plan {
        filter: Document::new(),
        options: FindOptions::default(),
        rest: Vec::new(),
    };
    let mut it = stages.into_iter().peekable();
    if let Some(Stage::Match(_, d)) = it.peek() {
        plan.filter = d.clone();
        it.next();
    }
    // Push $sort, then $skip, then $limit into the engine's find while they
    // come in an order the find can express (sort before skip before limit).
    if let Some(Stage::Sort(s)) = it.peek() {
        plan.options.sort.clone_from(s);
        it.next();
    }
    while let Some(Stage::Skip(n)) = it.peek() {
        plan.options.skip += *n as u64;
        it.next();
    }
    while let Some(Stage::Limit(n)) = it.peek() {
        let n = *n as u64;
        plan.options.limit = Some(plan.options.limit.map_or(n, |l| l.min(n)));
        it.next();
    }
    plan.rest = it.collect();
    Ok(plan)
}

impl Plan {
    /// Whether a stage after the pushed-down prefix holds a QE payload
    /// (those can only be answered by the engine).
    pub(crate) fn later_match_filters(&self) -> impl Iterator<Item = &Document> {
        self.rest.iter().filter_map(|s| match s {
            Stage::Match(_, d) => Some(d),
            _ => None,
        })
    }

    /// Run the in-memory stages over the engine's documents.
    pub(crate) fn run(&self, mut docs: Vec<Document>) -> CommandResult<Vec<Document>> {
        for stage in &self.rest {
            docs = match stage {
                Stage::Match(f, _) => docs.into_iter().filter(|d| f.matches(d)).collect(),
                Stage::Project(p) => docs
                    .into_iter()
                    .map(|d| cipherdoc_engine::project(d, p))
                    .collect::<Result<_, _>>()?,
                Stage::Sort(s) => cipherdoc_engine::sort_documents(docs, s),
                Stage::Skip(n) => docs.into_iter().skip(*n).collect(),
                Stage::Limit(n) => docs.into_iter().take(*n).collect(),
                Stage::Count(name) => {
                    if docs.is_empty() {
                        Vec::new()
                    } else {
                        let n = i32::try_from(docs.len()).unwrap_or(i32::MAX);
                        let mut d = Document::new();
                        d.insert(name.clone(), n);
                        vec![d]
                    }
                }
                Stage::Group(id, accs) => group(&docs, id, accs),
                Stage::Unwind(path, keep) => unwind(docs, path, *keep),
            };
        }
        Ok(docs)
    }
}

fn eval(v: &Bson, doc: &Document) -> Bson {
    match field_ref(v) {
        Some(path) => crate::update::get_path(doc, path)
            .cloned()
            .unwrap_or(Bson::Null),
        None => match v {
            Bson::Document(d) => {
                Bson::Document(d.iter().map(|(k, v)| (k.clone(), eval(v, doc))).collect())
            }
            other => other.clone(),
        },
    }
}

fn add(a: &Bson, b: &Bson) -> Bson {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x
            .checked_add(*y)
            .map_or_else(|| Bson::Int64(i64::from(*x) + i64::from(*y)), Bson::Int32),
        (Bson::Int32(x), Bson::Int64(y)) | (Bson::Int64(y), Bson::Int32(x)) => {
            Bson::Int64(i64::from(*x).saturating_add(*y))
        }
        (Bson::Int64(x), Bson::Int64(y)) => Bson::Int64(x.saturating_add(*y)),
        (x, y) => Bson::Double(num(x) + num(y)),
    }
}

fn num(v: &Bson) -> f64 {
    match v {
        Bson::Int32(i) => f64::from(*i),
        #[allow(clippy::cast_precision_loss)]
        Bson::Int64(i) => *i as f64,
        Bson::Double(d) => *d,
        _ => 0.0,
    }
}

fn is_num(v: &Bson) -> bool {
    matches!(v, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))
}

fn group(docs: &[Document], id: &Bson, accs: &[(String, String, Bson)]) -> Vec<Document> {
    // Groups in order of first appearance; a linear search keeps MongoDB's
    // value equality (1 == 1.0) without a hashable key encoding.
    let mut groups: Vec<(Bson, Vec<Bson>, Vec<usize>)> = Vec::new();
    for d in docs {
        let key = eval(id, d);
        let slot = if let Some(i) = groups.iter().position(|(k, _, _)| equals(k, &key)) {
            i
        } else {
            groups.push((key, vec![Bson::Null; accs.len()], vec![0; accs.len()]));
            groups.len() - 1
        };
        let (_, vals, counts) = &mut groups[slot];
        for (i, (_, op, arg)) in accs.iter().enumerate() {
            let x = if op == "$count" {
                Bson::Int32(1)
            } else {
                eval(arg, d)
            };
            let first = counts[i] == 0;
            match op.as_str() {
                "$sum" | "$count" => {
                    let base = if first {
                        Bson::Int32(0)
                    } else {
                        vals[i].clone()
                    };
                    vals[i] = if is_num(&x) { add(&base, &x) } else { base };
                }
                "$avg" => {
                    if is_num(&x) {
                        let base = if first || !is_num(&vals[i]) {
                            Bson::Double(0.0)
                        } else {
                            vals[i].clone()
                        };
                        vals[i] = Bson::Double(num(&base) + num(&x));
                        counts[i] += 1;
                    }
                    continue;
                }
                "$min" | "$max" if !matches!(x, Bson::Null) => {
                    let want = if op == "$min" {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    };
                    if matches!(vals[i], Bson::Null) || compare(&x, &vals[i]) == want {
                        vals[i] = x;
                    }
                }
                "$first" if first => vals[i] = x,
                "$last" => vals[i] = x,
                "$push" | "$addToSet" => {
                    let mut arr = match std::mem::take(&mut vals[i]) {
                        Bson::Array(a) => a,
                        _ => Vec::new(),
                    };
                    if op == "$push" || !arr.iter().any(|e| equals(e, &x)) {
                        arr.push(x);
                    }
                    vals[i] = Bson::Array(arr);
                }
                _ => {}
            }
            counts[i] += 1;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, vals, counts) in groups {
        let mut d = doc! {"_id": key};
        for (i, (name, op, _)) in accs.iter().enumerate() {
            let v = match op.as_str() {
                #[allow(clippy::cast_precision_loss)]
                "$avg" if counts[i] > 0 => Bson::Double(num(&vals[i]) / counts[i] as f64),
                "$avg" => Bson::Null,
                "$push" | "$addToSet" if counts[i] == 0 => Bson::Array(Vec::new()),
                _ => vals[i].clone(),
            };
            d.insert(name.clone(), v);
        }
        out.push(d);
    }
    out
}

fn unwind(docs: Vec<Document>, path: &str, keep: bool) -> Vec<Document> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        match crate::update::get_path(&d, path).cloned() {
            Some(Bson::Array(items)) if !items.is_empty() => {
                for it in items {
                    let mut e = d.clone();
                    if crate::update::set_path(&mut e, path, it).is_ok() {
                        out.push(e);
                    }
                }
            }
            Some(Bson::Array(_) | Bson::Null) | None => {
                if keep {
                    out.push(d);
                }
            }
            Some(_) => out.push(d),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pipeline(stages: Vec<Document>) -> Plan {
        plan(&stages.into_iter().map(Bson::Document).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn pushdown_and_in_memory_stages() {
        let p = pipeline(vec![
            doc! {"$match": {"a": {"$gt": 1}}},
            doc! {"$sort": {"a": -1}},
            doc! {"$skip": 1},
            doc! {"$limit": 5},
            doc! {"$group": {"_id": 1, "n": {"$sum": 1}}},
        ]);
        assert_eq!(p.filter, doc! {"a": {"$gt": 1}});
        assert_eq!(p.options.skip, 1);
        assert_eq!(p.options.limit, Some(5));
        let docs = vec![doc! {"a": 3}, doc! {"a": 2}];
        assert_eq!(p.run(docs).unwrap(), vec![doc! {"_id": 1, "n": 2}]);
    }

    #[test]
    fn group_count_project_unwind() {
        let p = pipeline(vec![
            doc! {"$unwind": "$t"},
            doc! {"$group": {"_id": "$t", "n": {"$sum": "$v"}, "avg": {"$avg": "$v"}, "all": {"$push": "$v"}}},
            doc! {"$sort": {"_id": 1}},
            doc! {"$project": {"n": 1, "avg": 1}},
        ]);
        let docs = vec![doc! {"t": ["x", "y"], "v": 1}, doc! {"t": ["x"], "v": 3}];
        assert_eq!(
            p.run(docs).unwrap(),
            vec![
                doc! {"_id": "x", "n": 4, "avg": 2.0},
                doc! {"_id": "y", "n": 1, "avg": 1.0}
            ]
        );
        let c = pipeline(vec![doc! {"$count": "total"}]);
        assert_eq!(
            c.run(vec![doc! {}, doc! {}]).unwrap(),
            vec![doc! {"total": 2}]
        );
        assert!(c.run(Vec::new()).unwrap().is_empty());
        assert!(plan(&[Bson::Document(doc! {"$lookup": {}})]).is_err());
    }
}
