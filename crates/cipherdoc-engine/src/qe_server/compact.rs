//! Compaction (§9.7) and cleanup (§9.8) with client-supplied tokens.
//!
//! Each run is one transaction: remember the ESC non-anchors, move the ECOC
//! aside (`<ecoc>.compact`), turn its distinct entries into anchors (or, for
//! cleanup, into null anchors), delete the remembered non-anchors and drop
//! `<ecoc>.compact`. If the transaction fails nothing changes, so a failed
//! run is simply run again.
//!
//! Resuming: if `<ecoc>.compact` already exists (left by an interrupted run
//! of a tool that commits step by step), its entries are first turned into
//! anchors — anchors are always safe to add — without deleting anything,
//! since the non-anchors remembered by that run are unknown; then a fresh
//! run follows. Every non-anchor the fresh run deletes was written before
//! it started, together with its ECOC entry, which is in one of the two
//! ECOC generations processed, so its count is kept by an anchor.

use std::collections::{BTreeMap, HashSet};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};
use cipherdoc_crypto::OsRandom;
use cipherdoc_crypto::server::text::text_padding_count;
use cipherdoc_crypto::server::{
    AnchorValue, EscTokens, anchor_id, cleanup_padding_plan, cleanup_plan, compaction_anchor,
    decrypt_ecoc_value, null_anchor_id, padding_anchor_positions,
};
use cipherdoc_crypto::tokens::{
    AnchorPaddingTokenRoot, EcocToken, EscDerivedFromDataTokenAndContentionFactor,
};

use super::QeError;
use super::probe::{self, Search};
use super::schema::{FieldKind, QeSchema};
use crate::engine::Transaction;
use crate::qe_state::{EscId, EscValue};
use crate::{EngineError, Result};

/// The tokens of one field for compaction or cleanup.
#[derive(Debug, Clone)]
pub struct FieldTokens {
    /// ECOCToken: decrypts the field's ECOC entries.
    pub ecoc: EcocToken,
    /// AnchorPaddingTokenRoot (range and text-search fields only).
    pub anchor_padding: Option<AnchorPaddingTokenRoot>,
}

/// `compactionTokens` / `cleanupTokens`: per encrypted path, the tokens the
/// client derives from the field's index key (`IndexKeyTokens::ecoc()` and,
/// for range and text-search fields, `IndexKeyTokens::anchor_padding_root()`;
/// `EncryptedField::compaction_token` builds the document form).
#[derive(Debug, Clone, Default)]
pub struct CompactionTokens {
    fields: BTreeMap<String, FieldTokens>,
}

impl CompactionTokens {
    /// No tokens yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an equality (or unindexed) field's ECOC token.
    #[must_use]
    pub fn with_field(mut self, path: impl Into<String>, ecoc: EcocToken) -> Self {
        self.fields.insert(
            path.into(),
            FieldTokens {
                ecoc,
                anchor_padding: None,
            },
        );
        self
    }

    /// Add a range or text-search field's ECOC and anchor padding tokens.
    #[must_use]
    pub fn with_range_field(
        mut self,
        path: impl Into<String>,
        ecoc: EcocToken,
        anchor_padding: AnchorPaddingTokenRoot,
    ) -> Self {
        self.fields.insert(
            path.into(),
            FieldTokens {
                ecoc,
                anchor_padding: Some(anchor_padding),
            },
        );
        self
    }

    /// Parse MongoDB's `compactionTokens` document: `{<path>: BinData(0,
    /// ECOCToken)}` or, for range and text-search fields, `{<path>: {ecoc: BinData,
    /// anchorPaddingToken: BinData}}`.
    pub fn from_document(doc: &Document) -> std::result::Result<Self, QeError> {
        let bad = |path: &str, what: &str| QeError::Tokens {
            collection: String::new(),
            reason: format!("compaction token for {path:?}: {what}"),
        };
        let token32 = |path: &str, v: &Bson| -> std::result::Result<[u8; 32], QeError> {
            match v {
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes,
                }) => <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| bad(path, "must be 32 bytes")),
                _ => Err(bad(path, "must be BinData subtype 0")),
            }
        };
        let mut out = Self::new();
        for (path, v) in doc {
            let t = match v {
                Bson::Document(d) => {
                    let ecoc = d
                        .get("ecoc")
                        .ok_or_else(|| bad(path, "missing ecoc"))
                        .and_then(|v| token32(path, v))?;
                    let pad = d
                        .get("anchorPaddingToken")
                        .map(|v| token32(path, v))
                        .transpose()?;
                    FieldTokens {
                        ecoc: EcocToken::from_bytes(ecoc),
                        anchor_padding: pad.map(AnchorPaddingTokenRoot::from_bytes),
                    }
                }
                other => FieldTokens {
                    ecoc: EcocToken::from_bytes(token32(path, other)?),
                    anchor_padding: None,
                },
            };
            out.fields.insert(path.clone(), t);
        }
        Ok(out)
    }

    /// The tokens of `path`, if given.
    pub fn field(&self, path: &str) -> Option<&FieldTokens> {
        self.fields.get(path)
    }

    /// MongoDB's `compactionTokens` (or `cleanupTokens`) document, the
    /// inverse of [`Self::from_document`]: the paths in the order of
    /// `paths` (libmongocrypt follows the `encryptedFields` order), then
    /// any others.
    pub fn to_document<'p>(&self, paths: impl IntoIterator<Item = &'p str>) -> Document {
        let bin = |b: &[u8; 32]| {
            Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: b.to_vec(),
            })
        };
        let one = |t: &FieldTokens| match &t.anchor_padding {
            None => bin(t.ecoc.as_bytes()),
            Some(pad) => {
                let mut d = Document::new();
                d.insert("ecoc", bin(t.ecoc.as_bytes()));
                d.insert("anchorPaddingToken", bin(pad.as_bytes()));
                Bson::Document(d)
            }
        };
        let mut out = Document::new();
        for p in paths {
            if let Some(t) = self.fields.get(p) {
                out.insert(p, one(t));
            }
        }
        for (p, t) in &self.fields {
            if !out.contains_key(p) {
                out.insert(p.clone(), one(t));
            }
        }
        out
    }
}

/// What a compaction or cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// ECOC entries read (with duplicates).
    pub ecoc_entries: u64,
    /// Distinct (field, value, contention factor) counters among them.
    pub unique_counters: u64,
    /// Anchors inserted (compaction).
    pub anchors_inserted: u64,
    /// Padding anchors inserted for range and text-search fields
    /// (compaction, §9.7 step 4).
    pub padding_anchors_inserted: u64,
    /// Null anchors inserted or updated (cleanup).
    pub null_anchors_written: u64,
    /// Anchors deleted (cleanup).
    pub anchors_deleted: u64,
    /// ESC non-anchors deleted.
    pub non_anchors_deleted: u64,
    /// Whether an interrupted run's `<ecoc>.compact` was found and finished.
    pub resumed: bool,
}

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Compact,
    Cleanup,
}

fn check_tokens(collection: &str, schema: &QeSchema, tokens: &CompactionTokens) -> Result<()> {
    let bad = |reason: String| -> EngineError {
        QeError::Tokens {
            collection: collection.to_owned(),
            reason,
        }
        .into()
    };
    for path in tokens.fields.keys() {
        if !schema.fields.iter().any(|f| &f.path == path) {
            return Err(bad(format!(
                "a token was given for {path:?}, which is not an encrypted field"
            )));
        }
    }
    for f in &schema.fields {
        if f.indexed() && tokens.field(&f.path).is_none() {
            // Without the token its ECOC entries could not become anchors,
            // and deleting its non-anchors would lose counts.
            return Err(bad(format!(
                "no token for the indexed field {:?}; every indexed field needs one",
                f.path
            )));
        }
    }
    Ok(())
}

/// The distinct ESC counters named by ECOC entries.
struct Counter {
    field: String,
    esc: EscDerivedFromDataTokenAndContentionFactor,
    range_is_leaf: Option<bool>,
    /// Text search: the value's tag count on an exact entry, 0 on the
    /// others.
    text_msize: Option<u32>,
}

fn counters(
    collection: &str,
    tokens: &CompactionTokens,
    entries: &[crate::qe_state::EcocEntry],
) -> Result<Vec<Counter>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in entries {
        let Some(t) = tokens.field(&e.field_name) else {
            return Err(QeError::Tokens {
                collection: collection.to_owned(),
                reason: format!(
                    "the ECOC holds entries for {:?}, which has no token",
                    e.field_name
                ),
            }
            .into());
        };
        let d = decrypt_ecoc_value(&t.ecoc, &e.value).map_err(|source| QeError::State {
            collection: collection.to_owned(),
            source,
        })?;
        if seen.insert((
            e.field_name.clone(),
            *d.esc_token.as_bytes(),
            d.range_is_leaf,
        )) {
            out.push(Counter {
                field: e.field_name.clone(),
                esc: d.esc_token,
                range_is_leaf: d.range_is_leaf,
                text_msize: d.text_msize,
            });
        }
    }
    Ok(out)
}

fn state(collection: &str) -> impl Fn(cipherdoc_crypto::Error) -> EngineError + '_ {
    move |source| {
        QeError::State {
            collection: collection.to_owned(),
            source,
        }
        .into()
    }
}

/// Insert an anchor for every counter that moved (§9.7 step 3).
async fn anchor_counters(
    tx: &mut dyn Transaction,
    collection: &str,
    counters: &[Counter],
) -> Result<u64> {
    let toks: Vec<EscTokens> = counters.iter().map(|c| EscTokens::new(&c.esc)).collect();
    let results = probe::run(tx, collection, toks.iter().map(Search::new).collect()).await?;
    let mut docs = Vec::new();
    for (t, r) in toks.iter().zip(&results) {
        if let Some((apos, value)) = compaction_anchor(r).map_err(state(collection))? {
            let v = value
                .encrypt(&t.value, &mut OsRandom)
                .map_err(state(collection))?;
            docs.push((anchor_id(&t.tag, apos), Some(EscValue(v))));
        }
    }
    super::state(tx)?.esc_insert_many(collection, &docs).await?;
    Ok(docs.len() as u64)
}

/// Cleanup of every counter (§9.8): null anchors, and the anchors they
/// replace scheduled for deletion.
async fn cleanup_counters(
    tx: &mut dyn Transaction,
    collection: &str,
    counters: &[Counter],
    delete: &mut Vec<EscId>,
    stats: &mut CompactionStats,
) -> Result<()> {
    let toks: Vec<EscTokens> = counters.iter().map(|c| EscTokens::new(&c.esc)).collect();
    let results = probe::run(tx, collection, toks.iter().map(Search::new).collect()).await?;
    for (t, r) in toks.iter().zip(&results) {
        if r.apos == Some(0) && r.cpos.unwrap_or(0) == 0 {
            // As compaction does (§9.7 step 3): an ECOC entry always has an
            // ESC entry, so this is a wrong token, and a null anchor for a
            // value that does not exist must not be written.
            return Err(state(collection)(cipherdoc_crypto::Error::EscState(
                "ECOC entry without any ESC entry (cpos = apos = 0); is the cleanup token right?"
                    .into(),
            )));
        }
        let plan = cleanup_plan(r).map_err(state(collection))?;
        if let Some(n) = plan.null_anchor {
            let v = n
                .encrypt(&t.value, &mut OsRandom)
                .map_err(state(collection))?;
            super::state(tx)?
                .esc_upsert(collection, &null_anchor_id(&t.tag), Some(EscValue(v)))
                .await?;
            stats.null_anchors_written += 1;
        }
        if let Some((a, b)) = plan.delete_anchors {
            for i in a..=b {
                delete.push(anchor_id(&t.tag, i));
            }
        }
    }
    Ok(())
}

/// Padding cleanup for range and text-search fields (§9.8, last
/// paragraph).
async fn cleanup_padding(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: &QeSchema,
    tokens: &CompactionTokens,
    delete: &mut Vec<EscId>,
    stats: &mut CompactionStats,
) -> Result<()> {
    let roots: Vec<AnchorPaddingTokenRoot> = schema
        .fields
        .iter()
        .filter(|f| f.padded())
        .filter_map(|f| tokens.field(&f.path).and_then(|t| t.anchor_padding.clone()))
        .collect();
    if roots.is_empty() {
        return Ok(());
    }
    let results = probe::run(tx, collection, roots.iter().map(Search::padding).collect()).await?;
    for (root, r) in roots.iter().zip(&results) {
        let plan = cleanup_padding_plan(r);
        let (key, value) = (root.key(), root.value());
        if let Some(n) = plan.null_anchor {
            let v = n
                .encrypt(&value, &mut OsRandom)
                .map_err(state(collection))?;
            super::state(tx)?
                .esc_upsert(collection, &null_anchor_id(&key), Some(EscValue(v)))
                .await?;
            stats.null_anchors_written += 1;
        }
        if let Some((a, b)) = plan.delete_anchors {
            for i in a..=b {
                delete.push(anchor_id(&key, i));
            }
        }
    }
    Ok(())
}

/// One compaction or cleanup inside `tx`.
pub(crate) async fn run(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: &QeSchema,
    tokens: &CompactionTokens,
    mode: Mode,
) -> Result<CompactionStats> {
    check_tokens(collection, schema, tokens)?;
    let mut stats = CompactionStats::default();
    let mut non_anchors = super::state(tx)?.esc_non_anchor_ids(collection).await?;
    if !super::state(tx)?.ecoc_begin_compaction(collection).await? {
        stats.resumed = true;
        let left = super::state(tx)?.ecoc_read_compact(collection).await?;
        stats.ecoc_entries += left.len() as u64;
        let cs = counters(collection, tokens, &left)?;
        stats.anchors_inserted += anchor_counters(tx, collection, &cs).await?;
        stats.padding_anchors_inserted += pad_fields(tx, collection, schema, tokens, &cs).await?;
        super::state(tx)?.ecoc_drop_compact(collection).await?;
        non_anchors = super::state(tx)?.esc_non_anchor_ids(collection).await?;
        if !super::state(tx)?.ecoc_begin_compaction(collection).await? {
            return Err(QeError::State {
                collection: collection.to_owned(),
                source: cipherdoc_crypto::Error::EscState(
                    "the ECOC compaction table reappeared while compacting".into(),
                ),
            }
            .into());
        }
    }
    let entries = super::state(tx)?.ecoc_read_compact(collection).await?;
    stats.ecoc_entries += entries.len() as u64;
    let cs = counters(collection, tokens, &entries)?;
    stats.unique_counters = cs.len() as u64;
    let mut delete_anchors = Vec::new();
    match mode {
        Mode::Compact => {
            stats.anchors_inserted += anchor_counters(tx, collection, &cs).await?;
            stats.padding_anchors_inserted +=
                pad_fields(tx, collection, schema, tokens, &cs).await?;
        }
        Mode::Cleanup => {
            cleanup_counters(tx, collection, &cs, &mut delete_anchors, &mut stats).await?;
            cleanup_padding(
                tx,
                collection,
                schema,
                tokens,
                &mut delete_anchors,
                &mut stats,
            )
            .await?;
            stats.anchors_deleted = super::state(tx)?
                .esc_delete_many(collection, &delete_anchors)
                .await?;
        }
    }
    stats.non_anchors_deleted = super::state(tx)?
        .esc_delete_many(collection, &non_anchors)
        .await?;
    super::state(tx)?.ecoc_drop_compact(collection).await?;
    Ok(stats)
}

/// `anchorPaddingFactor` (§9.7 step 4): MongoDB's default, as no command
/// option reaches this API.
const ANCHOR_PADDING_FACTOR: f64 = 1.0;

/// Padding anchors for range and text-search fields (§9.7 step 4): per
/// such field with entries in `cs`, `ceil(factor × missing)` anchors
/// `(0, 0)` after the padding set's last anchor, so that the number of
/// anchors does not reveal how many distinct values (and how many shared
/// edges or substrings) the field holds. `missing` is `pathLength ×
/// uniqueLeaves − uniqueTokens` for range, and for text search the sum of
/// the distinct entries' `msize` less their number (MongoDB's
/// `compactOneTextSearchFieldPad`): each value's exact entry counts all of
/// its token sets, which shared strings and repeated padding entries turn
/// into fewer distinct counters.
async fn pad_fields(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: &QeSchema,
    tokens: &CompactionTokens,
    cs: &[Counter],
) -> Result<u64> {
    let mut plans: Vec<(AnchorPaddingTokenRoot, u64)> = Vec::new();
    for f in schema.fields.iter().filter(|f| f.padded()) {
        let mine: Vec<&Counter> = cs.iter().filter(|c| c.field == f.path).collect();
        if mine.is_empty() {
            continue;
        }
        let bad = |reason: String| -> EngineError {
            QeError::Tokens {
                collection: collection.to_owned(),
                reason,
            }
            .into()
        };
        let Some(root) = tokens.field(&f.path).and_then(|t| t.anchor_padding.clone()) else {
            return Err(bad(format!(
                "the field {:?} (range or text search) needs {{ecoc, anchorPaddingToken}} compaction tokens",
                f.path
            )));
        };
        let missing = if matches!(f.kind, FieldKind::Text { .. }) {
            let msize = mine
                .iter()
                .map(|c| u64::from(c.text_msize.unwrap_or(0)))
                .fold(0u64, u64::saturating_add);
            text_padding_count(msize, mine.len() as u64).map_err(state(collection))?
        } else {
            let Some(path_length) = f.range_edges() else {
                return Err(bad(format!(
                    "the range options of {:?} do not resolve for its bsonType, so its anchor padding cannot be sized; fix encryptedFields",
                    f.path
                )));
            };
            let leaves = mine
                .iter()
                .filter(|c| c.range_is_leaf == Some(true))
                .count();
            (path_length as u64)
                .saturating_mul(leaves as u64)
                .saturating_sub(mine.len() as u64)
        };
        // Exact for any count below 2^53; the factor is MongoDB's default.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let pads = (ANCHOR_PADDING_FACTOR * missing as f64).ceil() as u64;
        if pads > 0 {
            plans.push((root, pads));
        }
    }
    if plans.is_empty() {
        return Ok(0);
    }
    let results = probe::run(
        tx,
        collection,
        plans.iter().map(|(r, _)| Search::padding(r)).collect(),
    )
    .await?;
    let mut docs = Vec::new();
    for ((root, pads), r) in plans.iter().zip(&results) {
        let (key, value) = (root.key(), root.value());
        for pos in padding_anchor_positions(r, *pads).map_err(state(collection))? {
            let v = AnchorValue { apos: 0, cpos: 0 }
                .encrypt(&value, &mut OsRandom)
                .map_err(state(collection))?;
            docs.push((anchor_id(&key, pos), Some(EscValue(v))));
        }
    }
    super::state(tx)?.esc_insert_many(collection, &docs).await?;
    Ok(docs.len() as u64)
}
