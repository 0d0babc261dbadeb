//! Client operations for range indexes (qe-protocol §6.2, §6.4, §6.9, §8):
//! range insert payloads (blob 11 with edges), range find payloads (blob 13)
//! and their stubs, explicit encryption of `$and` range expressions
//! (libmongocrypt `mc-fle2-rfds.c`), and placeholders from query analysis.
//!
//! Byte-exact with libmongocrypt given the same random bytes: an insert draws
//! the contention factor (8 bytes per draw, only when `cm > 0`), the IV of
//! `p`, the IV of `v`, then one IV per edge `p`, edges in payload order. Finds
//! draw nothing.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::mac::HmacSha256Key;
use bson::{Bson, Document};
use zeroize::Zeroizing;

use crate::aead;
use crate::client::UserKey;
use crate::error::{Error, Result};
use crate::payload::{
    EdgeFindTokenSetV2, EdgeTokenSetV2, EncryptionPlaceholder, FindRangeEdgesInfoV2,
    FindRangePayloadV2, InsertUpdatePayloadV2, PlaceholderAlgorithm, PlaceholderType,
    RangeFindSpec, RangeInsertSpec, RangeOperator, value_bytes,
};
use crate::random::{RandomSource, choose_contention_factor, validate_max_contention};
use crate::range::{OnEmpty, RangeError, RangeIndex, RangeOptions, RangeValue, RangeValueKind};
use crate::tokens::{
    EdcDerivedFromDataToken, EscDerivedFromDataToken, IndexKeyTokens, ServerDerivedFromDataToken,
};

/// A range-maths error as a crate error. The message names the offending
/// value and bounds (e.g. "value 300 is outside the range index bounds
/// [0, 200]").
#[allow(clippy::needless_pass_by_value)] // used as `map_err(range_err)`
fn range_err(e: RangeError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// The range value of a BSON value: int32, int64, date, double or decimal128.
pub fn range_value_from_bson(v: &Bson) -> Result<RangeValue> {
    Ok(match v {
        Bson::Int32(n) => RangeValue::Int32(*n),
        Bson::Int64(n) => RangeValue::Int64(*n),
        Bson::DateTime(d) => RangeValue::Date(d.timestamp_millis()),
        Bson::Double(d) => RangeValue::Double(*d),
        Bson::Decimal128(d) => RangeValue::Decimal128(*d),
        other => {
            return Err(Error::Bson(format!(
                "a range index supports int32, int64, date, double and decimal128 values, not {:?}",
                other.element_type()
            )));
        }
    })
}

/// The BSON value of a range value (same BSON type: `mn`/`mx` are written as
/// the value's type).
pub fn range_value_to_bson(v: RangeValue) -> Bson {
    match v {
        RangeValue::Int32(n) => Bson::Int32(n),
        RangeValue::Int64(n) => Bson::Int64(n),
        RangeValue::Date(n) => Bson::DateTime(bson::DateTime::from_millis(n)),
        RangeValue::Double(d) => Bson::Double(d),
        RangeValue::Decimal128(d) => Bson::Decimal128(d),
    }
}

/// Parses explicit-encryption range options (`RangeOpts`):
/// `{min?, max?, sparsity?: int64|int32, trimFactor?: int32, precision?: int32}`.
pub fn range_options_from_document(doc: &Document) -> Result<RangeOptions> {
    let mut o = RangeOptions::default();
    let int = |k: &str, v: &Bson| -> Result<i64> {
        match v {
            Bson::Int32(n) => Ok(i64::from(*n)),
            Bson::Int64(n) => Ok(*n),
            _ => Err(Error::InvalidArgument(format!(
                "range option '{k}' must be an integer"
            ))),
        }
    };
    let int32 = |k: &str, v: &Bson| -> Result<i32> {
        i32::try_from(int(k, v)?)
            .map_err(|_| Error::InvalidArgument(format!("range option '{k}' is too large")))
    };
    for (k, v) in doc {
        match k.as_str() {
            "min" => o.min = Some(range_value_from_bson(v)?),
            "max" => o.max = Some(range_value_from_bson(v)?),
            "sparsity" => o.sparsity = Some(int(k, v)?),
            "trimFactor" => o.trim_factor = Some(int32(k, v)?),
            "precision" => o.precision = Some(int32(k, v)?),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown range option '{other}'"
                )));
            }
        }
    }
    o.validate().map_err(range_err)?;
    Ok(o)
}

/// Resolves explicit range options for values of `value`'s type (§8.1
/// defaults: sparsity 2, trimFactor `min(6, bits − 1)`, ±DBL_MAX / ±max
/// decimal bounds for double/decimal128 without precision).
pub fn resolve_range_options(options: &RangeOptions, value: &Bson) -> Result<RangeIndex> {
    let kind = range_value_from_bson(value)?.kind();
    options.resolve(kind).map_err(range_err)
}

fn check_kind(index: &RangeIndex, v: &RangeValue) -> Result<()> {
    if v.kind() == index.kind() {
        Ok(())
    } else {
        Err(range_err(RangeError::TypeMismatch {
            expected: index.kind().name(),
            got: v.kind().name(),
        }))
    }
}

/// The encodings check `[min, max]` for integers, dates and precision mode;
/// a double index without precision ignores its bounds when encoding, so the
/// bounds (normally ±DBL_MAX) are checked here.
fn check_double_bounds(index: &RangeIndex, v: &RangeValue) -> Result<()> {
    if let (RangeValue::Double(x), RangeValue::Double(lo), RangeValue::Double(hi), None) =
        (*v, index.index_min(), index.index_max(), index.precision())
    {
        if x.is_finite() && !(lo <= x && x <= hi) {
            return Err(range_err(RangeError::ValueOutOfBounds {
                min: lo.to_string(),
                max: hi.to_string(),
            }));
        }
    }
    Ok(())
}

/// `p` of an insert payload or edge: `EncryptCTR(ECOCToken, s ‖ isLeaf)`
/// with the given IV.
fn encrypted_tokens(tokens: &IndexKeyTokens, iv: &[u8], esc: &[u8; 32], is_leaf: bool) -> Vec<u8> {
    let mut pt = Zeroizing::new([0u8; 33]);
    pt[..32].copy_from_slice(esc);
    pt[32] = u8::from(is_leaf);
    let mut iv16 = [0u8; 16];
    iv16.copy_from_slice(iv.get(..16).unwrap_or(&[0; 16]));
    aead::encrypt_ctr_with_iv(tokens.ecoc(), &iv16, &*pt)
}

/// HMAC-SHA-256 states keyed with the index key's EDC, ESC and
/// ServerTokenDerivationLevel1 tokens, prepared once per value (or query).
///
/// Every edge and mincover string derives its three data-level tokens from
/// these same keys; cloning a keyed state skips the two key-block
/// compressions each fresh HMAC would redo, which is most of the per-edge
/// cost. (The `tokens` module derives one token per call, so this lives here.)
struct DataTokenMacs {
    // Zeroizing key schedules (`crate::mac`): these are keyed with tokens.
    edc: HmacSha256Key,
    esc: HmacSha256Key,
    server: HmacSha256Key,
}

impl DataTokenMacs {
    fn new(tokens: &IndexKeyTokens) -> Self {
        let mac = HmacSha256Key::new;
        Self {
            edc: mac(tokens.edc().as_bytes()),
            esc: mac(tokens.esc().as_bytes()),
            server: mac(tokens.server_token_derivation_level1().as_bytes()),
        }
    }

    fn run(m: &HmacSha256Key, v: &[u8]) -> [u8; 32] {
        m.mac(&[v])
    }

    fn edc(&self, v: &[u8]) -> EdcDerivedFromDataToken {
        EdcDerivedFromDataToken::from_bytes(Self::run(&self.edc, v))
    }

    fn esc(&self, v: &[u8]) -> EscDerivedFromDataToken {
        EscDerivedFromDataToken::from_bytes(Self::run(&self.esc, v))
    }

    fn server(&self, v: &[u8]) -> ServerDerivedFromDataToken {
        ServerDerivedFromDataToken::from_bytes(Self::run(&self.server, v))
    }
}

/// Builds a range insert payload (blob 11 with `g`, `sp`, `pn?`, `tf`, `mn`,
/// `mx`) for `value` under `index` (§6.2, §6.9).
///
/// `tokens` are the cached key-level tokens of the index key `ki`; only the
/// per-value and per-edge derivations are computed here. A value outside the
/// index's `[min, max]`, or of another type than the index, is refused before
/// any randomness is drawn.
#[allow(clippy::many_single_char_names)] // names mirror the protocol fields
pub fn encrypt_range_insert(
    value: &Bson,
    index: &RangeIndex,
    tokens: &IndexKeyTokens,
    user: UserKey<'_>,
    max_contention: u64,
    rng: &mut dyn RandomSource,
) -> Result<InsertUpdatePayloadV2> {
    let rv = range_value_from_bson(value)?;
    check_kind(index, &rv)?;
    check_double_bounds(index, &rv)?;
    let edges = index.edges(&rv).map_err(range_err)?;
    if edges.len() > crate::payload::IndexedRangeEncryptedValueV2::MAX_EDGES {
        return Err(Error::InvalidArgument(format!(
            "{} edges exceed the 255 a stored range value can hold",
            edges.len()
        )));
    }

    let k = choose_contention_factor(max_contention, rng)?;
    // All IVs in one draw: p, v, then one per edge. A random source is a
    // stream, so this consumes exactly the bytes libmongocrypt's sequence of
    // 16-byte draws does, with one system call instead of 2 + edges.
    let mut ivs = Zeroizing::new(vec![0u8; 16 * (2 + edges.len())]);
    rng.fill(&mut ivs)?;
    let (iv_p, rest) = ivs.split_at(16);
    let (iv_v, iv_edges) = rest.split_at(16);

    let macs = DataTokenMacs::new(tokens);
    let vb = value_bytes(value)?;
    let edc = macs.edc(&vb).with_contention(k);
    let esc = macs.esc(&vb).with_contention(k);
    let l = macs.server(&vb);
    let p = encrypted_tokens(tokens, iv_p, esc.as_bytes(), false);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(iv_v);
    let ct = aead::cbc_aead_encrypt_with_iv(user.key, &iv, user.id.as_bytes(), &vb)?;
    let mut v = Vec::with_capacity(16 + ct.len());
    v.extend_from_slice(user.id.as_bytes());
    v.extend_from_slice(&ct);

    let mut g = Vec::with_capacity(edges.len());
    for (edge, iv_e) in edges.iter().zip(iv_edges.chunks_exact(16)) {
        let e = edge.as_bytes();
        let esc_e = macs.esc(e).with_contention(k);
        let p_e = encrypted_tokens(tokens, iv_e, esc_e.as_bytes(), edge.is_leaf());
        g.push(EdgeTokenSetV2 {
            edc_derived_token: macs.edc(e).with_contention(k),
            esc_derived_token: esc_e,
            server_derived_from_data_token: macs.server(e),
            encrypted_tokens: p_e,
        });
    }

    Ok(InsertUpdatePayloadV2 {
        edc_derived_token: edc,
        esc_derived_token: esc,
        encrypted_tokens: p,
        index_key_id: *tokens.key_id(),
        bson_type: value.element_type(),
        value: v,
        server_encryption_token: tokens.server_data_encryption_level1().clone(),
        server_derived_from_data_token: l,
        contention_factor: k,
        edge_token_sets: Some(g),
        sparsity: Some(index.sparsity()),
        precision: index.precision(),
        trim_factor: Some(index.trim_factor()),
        index_min: Some(range_value_to_bson(index.index_min())),
        index_max: Some(range_value_to_bson(index.index_max())),
        text_search_token_sets: None,
    })
}

/// `payloadId` and operators of a range find payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeFindOperators {
    /// Shared by both halves of one query ([`next_payload_id`] in production;
    /// libmongocrypt's fixtures use 0).
    pub payload_id: i32,
    /// The operator of the first comparison.
    pub first: RangeOperator,
    /// The operator of the second comparison (two-sided queries).
    pub second: Option<RangeOperator>,
}

static PAYLOAD_ID: AtomicI32 = AtomicI32::new(0);

/// A process-wide `payloadId` counter like libmongocrypt's
/// `mc_getNextPayloadId`: 0, 1, 2, … wrapping to 0 after `i32::MAX`.
pub fn next_payload_id() -> i32 {
    let mut cur = PAYLOAD_ID.load(Ordering::Relaxed);
    loop {
        let next = if cur < i32::MAX { cur + 1 } else { 0 };
        match PAYLOAD_ID.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return cur,
            Err(now) => cur = now,
        }
    }
}

/// Builds a full range find payload (blob 13 with `payload`) for the query
/// `lower (≤|<) x (≤|<) upper` over `index` (§6.4, §8.5). A double ±∞ bound
/// stands for an open end (replaced by the index min/max, inclusive). An
/// empty range is an error, as in libmongocrypt. Consumes no randomness.
#[allow(clippy::too_many_arguments)] // mirrors the protocol's inputs one to one
pub fn encrypt_range_find(
    lower: &Bson,
    include_lower: bool,
    upper: &Bson,
    include_upper: bool,
    index: &RangeIndex,
    tokens: &IndexKeyTokens,
    max_contention: u64,
    operators: RangeFindOperators,
) -> Result<FindRangePayloadV2> {
    let lo = range_value_from_bson(lower)?;
    let hi = range_value_from_bson(upper)?;
    let cover = index
        .min_cover(&lo, include_lower, &hi, include_upper, OnEmpty::Error)
        .map_err(range_err)?;
    let macs = DataTokenMacs::new(tokens);
    let edges = cover
        .iter()
        .map(|c| EdgeFindTokenSetV2 {
            edc_derived_token: macs.edc(c),
            esc_derived_token: macs.esc(c),
            server_derived_from_data_token: macs.server(c),
        })
        .collect();
    Ok(FindRangePayloadV2 {
        payload: Some(FindRangeEdgesInfoV2 {
            edges,
            max_contention_factor: max_contention,
        }),
        payload_id: operators.payload_id,
        first_operator: operators.first,
        second_operator: operators.second,
        sparsity: Some(index.sparsity()),
        precision: index.precision(),
        trim_factor: Some(cover.used_trim_factor()),
        index_min: Some(range_value_to_bson(index.index_min())),
        index_max: Some(range_value_to_bson(index.index_max())),
    })
}

/// The stub half of a two-sided query (blob 13 without `payload`).
pub fn encrypt_range_find_stub(operators: RangeFindOperators) -> FindRangePayloadV2 {
    FindRangePayloadV2::stub(operators.payload_id, operators.first, operators.second)
}

fn blob6(bytes: Vec<u8>) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: bson::spec::BinarySubtype::Encrypted,
        bytes,
    })
}

/// One comparison of a range expression.
struct Comparison {
    field: String,
    op: RangeOperator,
    value: Bson,
}

fn expr_err(m: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("range expression: {}", m.into()))
}

/// Parses `{$and: [...]}` the way libmongocrypt's
/// `mc_FLE2RangeFindDriverSpec_parse` does. Returns the comparisons and
/// whether the aggregate form (`{$gt: ["$f", v]}`) was used.
fn parse_expression(expr: &Document) -> Result<(Vec<Comparison>, bool)> {
    let mut it = expr.iter();
    let arr = match it.next() {
        Some((k, Bson::Array(a))) if k == "$and" => a,
        Some((k, _)) if k == "$and" => return Err(expr_err("expected '$and' to be an array")),
        _ => return Err(expr_err("unable to find '$and'")),
    };
    if let Some((k, _)) = it.next() {
        return Err(expr_err(format!("unexpected extra key '{k}' after '$and'")));
    }
    let mut aggregate = None;
    let mut out: Vec<Comparison> = Vec::new();
    for el in arr {
        let Bson::Document(d) = el else {
            return Err(expr_err("expected documents in the '$and' array"));
        };
        let mut dit = d.iter();
        let (key, arg) = dit
            .next()
            .ok_or_else(|| expr_err("unexpected empty document in '$and'"))?;
        let agg = *aggregate.get_or_insert_with(|| RangeOperator::from_name(key).is_some());
        let cmp = if agg {
            let op = RangeOperator::from_name(key)
                .ok_or_else(|| expr_err(format!("unsupported operator {key}")))?;
            let Bson::Array(a) = arg else {
                return Err(expr_err(format!("expected an array argument to {key}")));
            };
            match a.as_slice() {
                [Bson::String(f), v] => Comparison {
                    field: f.clone(),
                    op,
                    value: v.clone(),
                },
                [_, _] => {
                    return Err(expr_err(format!(
                        "expected a field path string as the first element of {key}"
                    )));
                }
                other => {
                    return Err(expr_err(format!(
                        "expected 2 elements in operand {key}, got {}",
                        other.len()
                    )));
                }
            }
        } else {
            let Bson::Document(inner) = arg else {
                return Err(expr_err(format!("expected a document for field {key}")));
            };
            let mut iit = inner.iter();
            let (op_name, v) = iit
                .next()
                .ok_or_else(|| expr_err(format!("expected 1 operator for field {key}, got 0")))?;
            if iit.next().is_some() {
                return Err(expr_err(format!(
                    "expected 1 operator for field {key}, got more"
                )));
            }
            let op = RangeOperator::from_name(op_name)
                .ok_or_else(|| expr_err(format!("unsupported operator: {op_name}")))?;
            Comparison {
                field: key.clone(),
                op,
                value: v.clone(),
            }
        };
        if dit.next().is_some() {
            return Err(expr_err(format!(
                "expected 1 field per '$and' element, got more after {key}"
            )));
        }
        if let Some(prev) = out.first() {
            if prev.field != cmp.field {
                return Err(expr_err(format!(
                    "all comparisons must be on one field: got {} and {}",
                    prev.field, cmp.field
                )));
            }
        }
        if out.iter().any(|c| c.op.is_lower() == cmp.op.is_lower()) {
            return Err(expr_err(format!("duplicate bound {}", cmp.op.name())));
        }
        out.push(cmp);
    }
    if out.is_empty() {
        return Err(expr_err("expected lower or upper bound to be set"));
    }
    Ok((out, aggregate.unwrap_or(false)))
}

/// Explicit encryption of a range query expression, as libmongocrypt's
/// `mc-fle2-rfds.c`: `{$and: [{f: {$gte: a}}, {f: {$lte: b}}]}` (or the
/// aggregate form `{$and: [{$gte: ["$f", a]}, {$lte: ["$f", b]}]}`, or one
/// comparison only) becomes the same expression with the first constant
/// replaced by the full find payload and the second by a stub, both with
/// `payload_id` and the expression's operators. A missing bound is ±∞ (the
/// index min/max, inclusive).
pub fn encrypt_range_expression(
    expr: &Document,
    index: &RangeIndex,
    tokens: &IndexKeyTokens,
    max_contention: u64,
    payload_id: i32,
) -> Result<Document> {
    let (cmps, aggregate) = parse_expression(expr)?;
    let lower = cmps.iter().find(|c| c.op.is_lower());
    let upper = cmps.iter().find(|c| !c.op.is_lower());
    let first = cmps
        .first()
        .ok_or_else(|| expr_err("expected lower or upper bound to be set"))?;
    let ops = RangeFindOperators {
        payload_id,
        first: first.op,
        second: cmps.get(1).map(|c| c.op),
    };
    let (lb, lbi) = lower.map_or((Bson::Double(f64::NEG_INFINITY), true), |c| {
        (c.value.clone(), c.op.is_inclusive())
    });
    let (ub, ubi) = upper.map_or((Bson::Double(f64::INFINITY), true), |c| {
        (c.value.clone(), c.op.is_inclusive())
    });
    let full = encrypt_range_find(&lb, lbi, &ub, ubi, index, tokens, max_contention, ops)?;
    let mut blobs = vec![full.encode()];
    if cmps.len() == 2 {
        blobs.push(encrypt_range_find_stub(ops).encode());
    }
    let elems = cmps
        .iter()
        .zip(blobs)
        .map(|(c, blob)| {
            let mut d = Document::new();
            if aggregate {
                d.insert(
                    c.op.name(),
                    Bson::Array(vec![Bson::String(c.field.clone()), blob6(blob)]),
                );
            } else {
                let mut inner = Document::new();
                inner.insert(c.op.name(), blob6(blob));
                d.insert(c.field.clone(), inner);
            }
            Bson::Document(d)
        })
        .collect();
    let mut out = Document::new();
    out.insert("$and", Bson::Array(elems));
    Ok(out)
}

/// A payload built from a range placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum RangePayload {
    /// From an insert placeholder (`t = 1`).
    Insert(InsertUpdatePayloadV2),
    /// From a find placeholder (`t = 2`), full or stub.
    Find(FindRangePayloadV2),
}

impl RangePayload {
    /// The blob (first byte included).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RangePayload::Insert(p) => p.encode(),
            RangePayload::Find(p) => p.encode(),
        }
    }
}

fn placeholder_sparsity(ph: &EncryptionPlaceholder) -> Result<i64> {
    // libmongocrypt reads a missing `s` as 0, which edge generation rejects.
    ph.sparsity.ok_or_else(|| {
        Error::InvalidArgument(
            "range placeholder has no sparsity 's'; sparsity must be >= 1".into(),
        )
    })
}

/// Builds the payload for a range placeholder (blob 3 with `a = 3`) from
/// query analysis (§6.9). `tokens` must be the index key `ph.index_key_id`'s
/// tokens and `user` the key `ph.user_key_id`. Only inserts draw randomness.
pub fn encrypt_range_placeholder(
    ph: &EncryptionPlaceholder,
    tokens: &IndexKeyTokens,
    user: UserKey<'_>,
    rng: &mut dyn RandomSource,
) -> Result<RangePayload> {
    if ph.algorithm != PlaceholderAlgorithm::Range {
        return Err(Error::InvalidArgument(
            "not a range placeholder (a != 3)".into(),
        ));
    }
    if tokens.key_id() != &ph.index_key_id || user.id != ph.user_key_id {
        return Err(Error::InvalidArgument(
            "the keys given do not match the placeholder's ki/ku".into(),
        ));
    }
    let cm = validate_max_contention(ph.max_contention)?;
    let Bson::Document(v) = &ph.value else {
        return Err(Error::decode(
            "FLE2EncryptionPlaceholder",
            "range placeholder 'v' must be a document",
        ));
    };
    match ph.kind {
        PlaceholderType::Insert => {
            let spec = RangeInsertSpec::from_document(v)?;
            let index = RangeIndex::new(
                range_value_from_bson(&spec.min)?,
                range_value_from_bson(&spec.max)?,
                spec.precision,
                placeholder_sparsity(ph)?,
                spec.trim_factor,
            )
            .map_err(range_err)?;
            encrypt_range_insert(&spec.value, &index, tokens, user, cm, rng)
                .map(RangePayload::Insert)
        }
        PlaceholderType::Find => {
            let spec = RangeFindSpec::from_document(v)?;
            let ops = RangeFindOperators {
                payload_id: spec.payload_id,
                first: spec.first_operator,
                second: spec.second_operator,
            };
            let Some(info) = spec.edges_info else {
                return Ok(RangePayload::Find(encrypt_range_find_stub(ops)));
            };
            let index = RangeIndex::new(
                range_value_from_bson(&info.index_min)?,
                range_value_from_bson(&info.index_max)?,
                info.precision,
                placeholder_sparsity(ph)?,
                info.trim_factor,
            )
            .map_err(range_err)?;
            encrypt_range_find(
                &info.lower_bound,
                info.lb_included,
                &info.upper_bound,
                info.ub_included,
                &index,
                tokens,
                cm,
                ops,
            )
            .map(RangePayload::Find)
        }
    }
}

/// The value kind a range index over `value`'s BSON type uses.
pub fn range_kind_of(value: &Bson) -> Result<RangeValueKind> {
    range_value_from_bson(value).map(|v| v.kind())
}
