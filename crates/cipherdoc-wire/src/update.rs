//! MongoDB update documents applied in memory: modifier operators (`$set`,
//! `$unset`, `$inc`, `$mul`, `$min`, `$max`, `$rename`, `$push`,
//! `$addToSet`, `$pull`, `$pullAll`, `$pop`, `$currentDate`,
//! `$setOnInsert`) and replacements, plus the seed document of an upsert.
//!
//! The engine stores whole documents; an update reads the document inside
//! the write's transaction, applies the update here, and replaces it. This
//! is written by hand because no maintained crate implements MongoDB's
//! update language over the `bson` crate.

use std::cmp::Ordering;

use bson::{Bson, Document};
use cipherdoc_engine::Filter;
use cipherdoc_engine::filter::SAFE_CONTENT;
use cipherdoc_engine::value::{compare, equals};

use crate::error::{CommandError, CommandResult, ErrorCode};

/// What an update is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Apply {
    /// A stored document.
    Existing,
    /// An upsert's seed (`$setOnInsert` applies).
    Upsert,
}

/// A parsed `u` of an update statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Update {
    /// `{$set: {...}, ...}`.
    Modifiers(Document),
    /// A whole new document (its `_id`, if any, must be the old one's).
    Replacement(Document),
}

fn immutable_id() -> CommandError {
    CommandError::new(
        ErrorCode::Location(66),
        "Performing an update on the path '_id' would modify the immutable field '_id'",
    )
}

/// mongod's refusal of an update that touches `__safeContent__`.
pub(crate) fn safe_content_update() -> CommandError {
    CommandError::new(
        ErrorCode::Location(6_666_200),
        format!("Cannot modify {SAFE_CONTENT} field in document"),
    )
}

impl Update {
    /// Parse `u`. A pipeline (array) is refused.
    pub(crate) fn parse(u: &Bson) -> CommandResult<Self> {
        match u {
            Bson::Document(d) => {
                let ops = d.keys().filter(|k| k.starts_with('$')).count();
                if ops == 0 {
                    if d.contains_key(SAFE_CONTENT) {
                        return Err(safe_content_update());
                    }
                    return Ok(Update::Replacement(d.clone()));
                }
                if ops != d.len() {
                    return Err(CommandError::new(
                        ErrorCode::FailedToParse,
                        "an update document must contain either only update operators or no operators (a replacement)",
                    ));
                }
                let mut paths: Vec<String> = Vec::new();
                for (op, args) in d {
                    if !KNOWN.contains(&op.as_str()) {
                        return Err(CommandError::new(
                            ErrorCode::FailedToParse,
                            format!(
                                "Unknown modifier: {op}. Expected a valid update modifier or pipeline-style update specified as an array"
                            ),
                        ));
                    }
                    let Bson::Document(args) = args else {
                        return Err(CommandError::new(
                            ErrorCode::FailedToParse,
                            format!(
                                "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{op}: ...}}",
                                type_name(args)
                            ),
                        ));
                    };
                    for (path, v) in args {
                        let mut touched = vec![path.clone()];
                        if op == "$rename" {
                            let Bson::String(to) = v else {
                                return Err(CommandError::bad_value(format!(
                                    "The 'to' field for $rename must be a string: {path}"
                                )));
                            };
                            touched.push(to.clone());
                        }
                        for p in touched {
                            check_path(&p)?;
                            if p == "_id" || p.starts_with("_id.") {
                                return Err(immutable_id());
                            }
                            if p == SAFE_CONTENT || p.starts_with("__safeContent__.") {
                                return Err(safe_content_update());
                            }
                            if let Some(other) = paths.iter().find(|q| conflicts(q, &p)) {
                                return Err(CommandError::new(
                                    ErrorCode::Location(40),
                                    format!(
                                        "Updating the path '{p}' would create a conflict at '{other}'"
                                    ),
                                ));
                            }
                            paths.push(p);
                        }
                    }
                }
                Ok(Update::Modifiers(d.clone()))
            }
            Bson::Array(_) => Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                "pipeline-style updates are not supported by cipherdoc serve; use update operators or a replacement document",
            )),
            other => Err(CommandError::type_mismatch(
                "u",
                &format!("object (got {})", type_name(other)),
            )),
        }
    }

    /// Apply to `doc` (the stored document, `_id` included, or an upsert's
    /// seed).
    pub(crate) fn apply(&self, doc: &Document, to: Apply) -> CommandResult<Document> {
        match self {
            Update::Replacement(r) => {
                let mut out = Document::new();
                let id = doc.get("_id").cloned();
                if let (Some(old), Some(new)) = (&id, r.get("_id"))
                    && !equals(old, new)
                {
                    return Err(immutable_id());
                }
                if let Some(id) = id.or_else(|| r.get("_id").cloned()) {
                    out.insert("_id", id);
                }
                for (k, v) in r {
                    if k != "_id" {
                        out.insert(k.clone(), v.clone());
                    }
                }
                Ok(out)
            }
            Update::Modifiers(ops) => {
                let mut out = doc.clone();
                for (op, args) in ops {
                    let Bson::Document(args) = args else { continue };
                    for (path, v) in args {
                        apply_op(&mut out, op, path, v, to)?;
                    }
                }
                Ok(out)
            }
        }
    }
}

const KNOWN: [&str; 14] = [
    "$set",
    "$unset",
    "$inc",
    "$mul",
    "$min",
    "$max",
    "$rename",
    "$push",
    "$addToSet",
    "$pull",
    "$pullAll",
    "$pop",
    "$currentDate",
    "$setOnInsert",
];

fn conflicts(a: &str, b: &str) -> bool {
    a == b
        || (b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'.')
        || (a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'.')
}

fn check_path(p: &str) -> CommandResult<()> {
    if p.is_empty() || p.split('.').any(str::is_empty) {
        return Err(CommandError::new(
            ErrorCode::Location(56),
            format!("An empty update path is not valid: '{p}'"),
        ));
    }
    if p.split('.').any(|c| c.starts_with('$')) {
        return Err(CommandError::bad_value(format!(
            "positional and $-prefixed update paths are not supported by cipherdoc serve: '{p}'"
        )));
    }
    Ok(())
}

fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::ObjectId(_) => "objectId",
        _ => "other",
    }
}

fn array_index(s: &str) -> Option<usize> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The value at `path`, through sub-documents and numeric array positions.
pub(crate) fn get_path<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(p)?,
            Bson::Array(a) => a.get(array_index(p)?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn not_viable(path: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Location(28),
        format!(
            "Cannot create field in path '{path}': an element on the way is not a document or array"
        ),
    )
}

fn set_in(v: &mut Bson, parts: &[&str], value: Bson, path: &str) -> CommandResult<()> {
    let Some((first, rest)) = parts.split_first() else {
        *v = value;
        return Ok(());
    };
    match v {
        Bson::Document(d) => set_in_doc(d, parts, value, path),
        Bson::Array(a) => {
            let Some(i) = array_index(first) else {
                return Err(not_viable(path));
            };
            if i > 1_500_000 {
                return Err(CommandError::bad_value(format!(
                    "cannot pad the array at '{path}' to position {i}"
                )));
            }
            while a.len() <= i {
                a.push(Bson::Null);
            }
            if rest.is_empty() {
                a[i] = value;
                Ok(())
            } else {
                if !matches!(a[i], Bson::Document(_) | Bson::Array(_)) {
                    if matches!(a[i], Bson::Null) {
                        a[i] = Bson::Document(Document::new());
                    } else {
                        return Err(not_viable(path));
                    }
                }
                set_in(&mut a[i], rest, value, path)
            }
        }
        _ => Err(not_viable(path)),
    }
}

fn set_in_doc(d: &mut Document, parts: &[&str], value: Bson, path: &str) -> CommandResult<()> {
    let Some((first, rest)) = parts.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        d.insert(*first, value);
        return Ok(());
    }
    if !d.contains_key(*first) {
        d.insert(*first, Document::new());
    }
    match d.get_mut(*first) {
        Some(next) => set_in(next, rest, value, path),
        None => Err(not_viable(path)),
    }
}

/// Set `path` to `value`, creating sub-documents on the way.
pub(crate) fn set_path(doc: &mut Document, path: &str, value: Bson) -> CommandResult<()> {
    let parts: Vec<&str> = path.split('.').collect();
    set_in_doc(doc, &parts, value, path)
}

fn unset_path(doc: &mut Document, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let Some((last, init)) = parts.split_last() else {
        return;
    };
    let mut cur: &mut Bson = match init.first() {
        None => {
            doc.remove(*last);
            return;
        }
        Some(first) => match doc.get_mut(*first) {
            Some(v) => v,
            None => return,
        },
    };
    for p in &init[1..] {
        cur = match cur {
            Bson::Document(d) => match d.get_mut(*p) {
                Some(v) => v,
                None => return,
            },
            Bson::Array(a) => match array_index(p).and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match cur {
        Bson::Document(d) => {
            d.remove(*last);
        }
        // mongod leaves a null in place of an unset array element.
        Bson::Array(a) => {
            if let Some(v) = array_index(last).and_then(|i| a.get_mut(i)) {
                *v = Bson::Null;
            }
        }
        _ => {}
    }
}

fn arithmetic(op: &str, path: &str, cur: Option<&Bson>, arg: &Bson) -> CommandResult<Bson> {
    let is_num = |v: &Bson| matches!(v, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_));
    if !is_num(arg) {
        return Err(CommandError::new(
            ErrorCode::TypeMismatch,
            format!(
                "Cannot {} with non-numeric argument: {{{path}: ...}} (decimals are not supported by cipherdoc serve's update operators)",
                &op[1..]
            ),
        ));
    }
    let zero = Bson::Int32(0);
    let cur = match cur {
        None => {
            // $inc of a missing field sets it; $mul sets 0 of the type.
            if op == "$inc" {
                return Ok(arg.clone());
            }
            &zero
        }
        Some(c) if is_num(c) => c,
        Some(c) => {
            return Err(CommandError::new(
                ErrorCode::TypeMismatch,
                format!(
                    "Cannot apply {op} to a value of non-numeric type {} at '{path}'",
                    type_name(c)
                ),
            ));
        }
    };
    let mul = op == "$mul";
    Ok(match (cur, arg) {
        (Bson::Int32(a), Bson::Int32(b)) => {
            let r = if mul {
                a.checked_mul(*b)
            } else {
                a.checked_add(*b)
            };
            match r {
                Some(r) => Bson::Int32(r),
                None => int64(i64::from(*a), i64::from(*b), mul, path)?,
            }
        }
        (Bson::Int32(a), Bson::Int64(b)) => int64(i64::from(*a), *b, mul, path)?,
        (Bson::Int64(a), Bson::Int32(b)) => int64(*a, i64::from(*b), mul, path)?,
        (Bson::Int64(a), Bson::Int64(b)) => int64(*a, *b, mul, path)?,
        (a, b) => {
            let f = |v: &Bson| match v {
                Bson::Int32(i) => f64::from(*i),
                #[allow(clippy::cast_precision_loss)]
                Bson::Int64(i) => *i as f64,
                Bson::Double(d) => *d,
                _ => 0.0,
            };
            Bson::Double(if mul { f(a) * f(b) } else { f(a) + f(b) })
        }
    })
}

fn int64(a: i64, b: i64, mul: bool, path: &str) -> CommandResult<Bson> {
    let r = if mul {
        a.checked_mul(b)
    } else {
        a.checked_add(b)
    };
    r.map(Bson::Int64).ok_or_else(|| {
        CommandError::bad_value(format!(
            "Failed to apply update at '{path}': integer overflow"
        ))
    })
}

fn array_at<'d>(doc: &'d Document, op: &str, path: &str) -> CommandResult<Option<&'d Vec<Bson>>> {
    match get_path(doc, path) {
        None => Ok(None),
        Some(Bson::Array(a)) => Ok(Some(a)),
        Some(other) => Err(CommandError::bad_value(format!(
            "The field '{path}' must be an array but is of type {} ({op})",
            type_name(other)
        ))),
    }
}

fn each(v: &Bson) -> (Vec<Bson>, Option<&Document>) {
    match v {
        Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
            Some(Bson::Array(items)) => (items.clone(), Some(d)),
            _ => (Vec::new(), Some(d)),
        },
        other => (vec![other.clone()], None),
    }
}

fn pull_matches(cond: &Bson, elem: &Bson) -> CommandResult<bool> {
    match cond {
        Bson::Document(c) if c.keys().next().is_some_and(|k| k.starts_with('$')) => {
            let mut wrapped = Document::new();
            wrapped.insert("v", Bson::Document(c.clone()));
            let f = Filter::parse(&wrapped).map_err(|e| CommandError::bad_value(e.to_string()))?;
            let mut d = Document::new();
            d.insert("v", elem.clone());
            Ok(f.matches(&d))
        }
        Bson::Document(c) => match elem {
            Bson::Document(e) => Ok(Filter::parse(c)
                .map_err(|e| CommandError::bad_value(e.to_string()))?
                .matches(e)),
            _ => Ok(false),
        },
        other => Ok(equals(other, elem)),
    }
}

fn apply_op(doc: &mut Document, op: &str, path: &str, v: &Bson, to: Apply) -> CommandResult<()> {
    match op {
        "$set" => set_path(doc, path, v.clone()),
        "$setOnInsert" => {
            if to == Apply::Upsert {
                set_path(doc, path, v.clone())
            } else {
                Ok(())
            }
        }
        "$unset" => {
            unset_path(doc, path);
            Ok(())
        }
        "$inc" | "$mul" => {
            let new = arithmetic(op, path, get_path(doc, path), v)?;
            set_path(doc, path, new)
        }
        "$min" | "$max" => {
            let want = if op == "$min" {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            match get_path(doc, path) {
                Some(cur) if compare(v, cur) != want => Ok(()),
                _ => set_path(doc, path, v.clone()),
            }
        }
        "$rename" => {
            let Bson::String(to) = v else { return Ok(()) };
            if let Some(val) = get_path(doc, path).cloned() {
                unset_path(doc, path);
                set_path(doc, to, val)?;
            }
            Ok(())
        }
        "$currentDate" => {
            let ts = matches!(v, Bson::Document(d) if d.get_str("$type") == Ok("timestamp"));
            let now = if ts {
                let secs = u32::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                )
                .unwrap_or(u32::MAX);
                Bson::Timestamp(bson::Timestamp {
                    time: secs,
                    increment: 1,
                })
            } else {
                Bson::DateTime(bson::DateTime::now())
            };
            set_path(doc, path, now)
        }
        "$push" | "$addToSet" => {
            let mut arr = array_at(doc, op, path)?.cloned().unwrap_or_default();
            let (items, mods) = each(v);
            if op == "$push" {
                let at = match mods.and_then(|m| m.get("$position")) {
                    Some(Bson::Int32(p)) => usize::try_from(*p).ok(),
                    Some(Bson::Int64(p)) => usize::try_from(*p).ok(),
                    _ => None,
                };
                match at {
                    Some(p) if p < arr.len() => {
                        for (i, it) in items.into_iter().enumerate() {
                            arr.insert(p + i, it);
                        }
                    }
                    _ => arr.extend(items),
                }
                if let Some(s) = mods.and_then(|m| m.get("$slice")) {
                    let n = match s {
                        Bson::Int32(n) => i64::from(*n),
                        Bson::Int64(n) => *n,
                        _ => i64::MAX,
                    };
                    let len = i64::try_from(arr.len()).unwrap_or(i64::MAX);
                    if n >= 0 {
                        arr.truncate(usize::try_from(n.min(len)).unwrap_or(0));
                    } else {
                        let keep = usize::try_from((-n).min(len)).unwrap_or(0);
                        arr = arr.split_off(arr.len() - keep);
                    }
                }
            } else {
                for it in items {
                    if !arr.iter().any(|e| equals(e, &it)) {
                        arr.push(it);
                    }
                }
            }
            set_path(doc, path, Bson::Array(arr))
        }
        "$pull" | "$pullAll" => {
            let Some(arr) = array_at(doc, op, path)?.cloned() else {
                return Ok(());
            };
            let mut kept = Vec::with_capacity(arr.len());
            for e in arr {
                let gone = if op == "$pullAll" {
                    let Bson::Array(vals) = v else {
                        return Err(CommandError::bad_value(
                            "$pullAll requires an array argument",
                        ));
                    };
                    vals.iter().any(|x| equals(x, &e))
                } else {
                    pull_matches(v, &e)?
                };
                if !gone {
                    kept.push(e);
                }
            }
            set_path(doc, path, Bson::Array(kept))
        }
        "$pop" => {
            let Some(arr) = array_at(doc, op, path)?.cloned() else {
                return Ok(());
            };
            let mut arr = arr;
            let first = crate::pipeline::unit(v) == Some(-1);
            if first {
                if !arr.is_empty() {
                    arr.remove(0);
                }
            } else {
                arr.pop();
            }
            set_path(doc, path, Bson::Array(arr))
        }
        _ => Ok(()),
    }
}

/// The document an upsert starts from: the equality conditions of the
/// query (`{a: 1}`, `{a: {$eq: 1}}`, inside `$and`), as mongod seeds it.
pub(crate) fn upsert_seed(query: &Document) -> CommandResult<Document> {
    let mut out = Document::new();
    seed_into(query, &mut out)?;
    Ok(out)
}

fn seed_into(query: &Document, out: &mut Document) -> CommandResult<()> {
    for (k, v) in query {
        if k == "$and" {
            if let Bson::Array(items) = v {
                for it in items {
                    if let Bson::Document(d) = it {
                        seed_into(d, out)?;
                    }
                }
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let value = match v {
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                match d.get("$eq") {
                    Some(x) => x.clone(),
                    None => continue,
                }
            }
            Bson::RegularExpression(_) => continue,
            other => other.clone(),
        };
        set_path(out, k, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bson::doc;

    fn run(doc: &Document, u: Document) -> CommandResult<Document> {
        Update::parse(&Bson::Document(u))?.apply(doc, Apply::Existing)
    }

    #[test]
    fn modifiers() {
        let d = doc! {"_id": 1, "a": 1, "arr": [1, 2, 3], "s": {"x": 1}};
        assert_eq!(
            run(&d, doc! {"$set": {"s.y": 2, "n.m": 3}, "$inc": {"a": 2}}).unwrap(),
            doc! {"_id": 1, "a": 3, "arr": [1, 2, 3], "s": {"x": 1, "y": 2}, "n": {"m": 3}}
        );
        assert_eq!(
            run(
                &d,
                doc! {"$unset": {"s": ""}, "$push": {"arr": {"$each": [4, 5]}}}
            )
            .unwrap(),
            doc! {"_id": 1, "a": 1, "arr": [1, 2, 3, 4, 5]}
        );
        assert_eq!(
            run(
                &d,
                doc! {"$pull": {"arr": {"$gte": 2}}, "$addToSet": {"t": 1}}
            )
            .unwrap(),
            doc! {"_id": 1, "a": 1, "arr": [1], "s": {"x": 1}, "t": [1]}
        );
        assert_eq!(
            run(&d, doc! {"$inc": {"a": i32::MAX}}).unwrap().get("a"),
            Some(&Bson::Int64(i64::from(i32::MAX) + 1))
        );
        assert_eq!(
            run(&d, doc! {"$rename": {"a": "b"}, "$max": {"arr.0": 9}}).unwrap(),
            doc! {"_id": 1, "arr": [9, 2, 3], "s": {"x": 1}, "b": 1}
        );
        assert!(run(&d, doc! {"$set": {"a": 1}, "$inc": {"a": 1}}).is_err());
        assert!(run(&d, doc! {"$set": {"_id": 2}}).is_err());
        assert!(run(&d, doc! {"$set": {"__safeContent__": []}}).is_err());
        assert!(run(&d, doc! {"$set": {"a.b": 1}}).is_err(), "a is a number");
        assert!(run(&d, doc! {"$bogus": {"a": 1}}).is_err());
    }

    #[test]
    fn replacement_keeps_id() {
        let d = doc! {"_id": 1, "a": 1};
        assert_eq!(run(&d, doc! {"b": 2}).unwrap(), doc! {"_id": 1, "b": 2});
        assert!(run(&d, doc! {"_id": 2, "b": 2}).is_err());
    }

    #[test]
    fn upsert_seed_takes_equalities() {
        let q = doc! {"a": 1, "b": {"$eq": 2}, "c": {"$gt": 3}, "$and": [{"d.e": 4}]};
        assert_eq!(
            upsert_seed(&q).unwrap(),
            doc! {"a": 1, "b": 2, "d": {"e": 4}}
        );
    }
}
