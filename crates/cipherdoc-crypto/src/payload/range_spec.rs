//! The `v` documents of range placeholders (§6.1): FLE2RangeInsertSpec and
//! FLE2RangeFindSpec, as query analysis (mongocryptd / crypt_shared) writes them.

use bson::{Bson, Document};

use super::range::RangeOperator;
use crate::error::{Error, Result};

fn set<T>(what: &'static str, key: &str, slot: &mut Option<T>, v: T) -> Result<()> {
    if slot.is_some() {
        return Err(Error::decode(what, format!("duplicate field '{key}'")));
    }
    *slot = Some(v);
    Ok(())
}

fn need<T>(what: &'static str, key: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| Error::decode(what, format!("missing field '{key}'")))
}

fn i32_of(what: &'static str, key: &str, v: &Bson) -> Result<i32> {
    match v {
        Bson::Int32(n) => Ok(*n),
        _ => Err(Error::decode(what, format!("field '{key}' must be int32"))),
    }
}

fn non_negative(what: &'static str, key: &str, v: &Bson) -> Result<i32> {
    let n = i32_of(what, key, v)?;
    if n < 0 {
        return Err(Error::decode(
            what,
            format!("field '{key}' must be >= 0, got {n}"),
        ));
    }
    Ok(n)
}

fn bool_of(what: &'static str, key: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Boolean(b) => Ok(*b),
        _ => Err(Error::decode(what, format!("field '{key}' must be a bool"))),
    }
}

fn operator_of(what: &'static str, key: &str, v: &Bson) -> Result<RangeOperator> {
    let n = i32_of(what, key, v)?;
    RangeOperator::from_i32(n)
        .ok_or_else(|| Error::decode(what, format!("field '{key}': invalid range operator {n}")))
}

/// FLE2RangeInsertSpec: `{v, min, max, precision?, trimFactor?}`.
#[derive(Clone, PartialEq)]
pub struct RangeInsertSpec {
    /// The value to insert.
    pub value: Bson,
    /// Index minimum.
    pub min: Bson,
    /// Index maximum.
    pub max: Bson,
    /// Precision (double/decimal128).
    pub precision: Option<i32>,
    /// trimFactor, if configured.
    pub trim_factor: Option<i32>,
}

impl std::fmt::Debug for RangeInsertSpec {
    // The value is a plaintext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeInsertSpec")
            .field("min", &self.min)
            .field("max", &self.max)
            .field("precision", &self.precision)
            .field("trim_factor", &self.trim_factor)
            .finish_non_exhaustive()
    }
}

impl RangeInsertSpec {
    const WHAT: &'static str = "FLE2RangeInsertSpec";

    /// Parses the placeholder's `v` document.
    pub fn from_document(doc: &Document) -> Result<Self> {
        let what = Self::WHAT;
        let (mut v, mut min, mut max, mut pn, mut tf) = (None, None, None, None, None);
        for (k, val) in doc {
            match k.as_str() {
                "v" => set(what, k, &mut v, val.clone())?,
                "min" => set(what, k, &mut min, val.clone())?,
                "max" => set(what, k, &mut max, val.clone())?,
                "precision" => set(what, k, &mut pn, non_negative(what, k, val)?)?,
                "trimFactor" => set(what, k, &mut tf, non_negative(what, k, val)?)?,
                other => return Err(Error::decode(what, format!("unknown field '{other}'"))),
            }
        }
        Ok(Self {
            value: need(what, "v", v)?,
            min: need(what, "min", min)?,
            max: need(what, "max", max)?,
            precision: pn,
            trim_factor: tf,
        })
    }
}

/// `edgesInfo` of a FLE2RangeFindSpec: the bounds and index parameters.
#[derive(Clone, PartialEq)]
pub struct RangeEdgesInfo {
    /// Lower bound (a double `-Infinity` when open).
    pub lower_bound: Bson,
    /// Whether the lower bound is included.
    pub lb_included: bool,
    /// Upper bound (a double `+Infinity` when open).
    pub upper_bound: Bson,
    /// Whether the upper bound is included.
    pub ub_included: bool,
    /// Index minimum.
    pub index_min: Bson,
    /// Index maximum.
    pub index_max: Bson,
    /// Precision (double/decimal128).
    pub precision: Option<i32>,
    /// trimFactor, if configured.
    pub trim_factor: Option<i32>,
}

impl std::fmt::Debug for RangeEdgesInfo {
    // The bounds reveal the query.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeEdgesInfo")
            .field("index_min", &self.index_min)
            .field("index_max", &self.index_max)
            .field("precision", &self.precision)
            .field("trim_factor", &self.trim_factor)
            .finish_non_exhaustive()
    }
}

/// FLE2RangeFindSpec: `{edgesInfo?, payloadId, firstOperator, secondOperator?}`.
/// Without `edgesInfo` the placeholder stands for a stub payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeFindSpec {
    /// Bounds and index parameters; `None` for the stub half of a query.
    pub edges_info: Option<RangeEdgesInfo>,
    /// Shared by both halves of one query.
    pub payload_id: i32,
    /// First operator.
    pub first_operator: RangeOperator,
    /// Second operator (two-sided queries).
    pub second_operator: Option<RangeOperator>,
}

impl RangeFindSpec {
    const WHAT: &'static str = "FLE2RangeFindSpec";

    fn edges_info(doc: &Document) -> Result<RangeEdgesInfo> {
        let what = "FLE2RangeFindSpec.edgesInfo";
        let (mut lb, mut lbi, mut ub, mut ubi) = (None, None, None, None);
        let (mut mn, mut mx, mut pn, mut tf) = (None, None, None, None);
        for (k, v) in doc {
            match k.as_str() {
                "lowerBound" => set(what, k, &mut lb, v.clone())?,
                "lbIncluded" => set(what, k, &mut lbi, bool_of(what, k, v)?)?,
                "upperBound" => set(what, k, &mut ub, v.clone())?,
                "ubIncluded" => set(what, k, &mut ubi, bool_of(what, k, v)?)?,
                "indexMin" => set(what, k, &mut mn, v.clone())?,
                "indexMax" => set(what, k, &mut mx, v.clone())?,
                "precision" => set(what, k, &mut pn, non_negative(what, k, v)?)?,
                "trimFactor" => set(what, k, &mut tf, non_negative(what, k, v)?)?,
                other => return Err(Error::decode(what, format!("unknown field '{other}'"))),
            }
        }
        Ok(RangeEdgesInfo {
            lower_bound: need(what, "lowerBound", lb)?,
            lb_included: need(what, "lbIncluded", lbi)?,
            upper_bound: need(what, "upperBound", ub)?,
            ub_included: need(what, "ubIncluded", ubi)?,
            index_min: need(what, "indexMin", mn)?,
            index_max: need(what, "indexMax", mx)?,
            precision: pn,
            trim_factor: tf,
        })
    }

    /// Parses the placeholder's `v` document.
    pub fn from_document(doc: &Document) -> Result<Self> {
        let what = Self::WHAT;
        let (mut info, mut id, mut first, mut second) = (None, None, None, None);
        for (k, v) in doc {
            match k.as_str() {
                "edgesInfo" => {
                    let Bson::Document(d) = v else {
                        return Err(Error::decode(what, "field 'edgesInfo' must be a document"));
                    };
                    set(what, k, &mut info, Self::edges_info(d)?)?;
                }
                "payloadId" => set(what, k, &mut id, i32_of(what, k, v)?)?,
                "firstOperator" => set(what, k, &mut first, operator_of(what, k, v)?)?,
                "secondOperator" => {
                    // 0 ("none") is how a one-sided query may spell "absent".
                    if i32_of(what, k, v)? == 0 {
                        set(what, k, &mut second, None)?;
                    } else {
                        set(what, k, &mut second, Some(operator_of(what, k, v)?))?;
                    }
                }
                other => return Err(Error::decode(what, format!("unknown field '{other}'"))),
            }
        }
        Ok(Self {
            edges_info: info,
            payload_id: need(what, "payloadId", id)?,
            first_operator: need(what, "firstOperator", first)?,
            second_operator: second.flatten(),
        })
    }
}
