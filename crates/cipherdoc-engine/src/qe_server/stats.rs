//! What the server has seen of an encrypted collection's values, counted
//! for the leakage report (`cipherdoc::leakage`): every ECOC entry names the
//! ESC counter of one (value or edge, contention bucket) — the token the
//! server received with the insert — and emuBinary over the ESC says how
//! many inserts that counter has taken. Decrypting an ECOC entry needs the
//! field's ECOCToken (the client's compaction token), so only a holder of
//! the data keys can run this; it returns counts only, never a token or a
//! value.

use std::collections::HashMap;

use cipherdoc_crypto::server::{EscTokens, decrypt_ecoc_value};
use cipherdoc_crypto::tokens::EscDerivedFromDataTokenAndContentionFactor;

use super::QeError;
use super::compact::CompactionTokens;
use super::probe::{self, Search};
use crate::engine::Transaction;
use crate::qe_state::EcocGeneration;
use crate::{EngineError, Result};

/// What one ESC counter stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CounterKind {
    /// A whole value in one contention bucket: every counter of an
    /// equality field, a range field's leaf edge, a text field's exact
    /// string. Its inserts are documents the server knows share a value.
    Value,
    /// A range field's inner edge: shared by every value below it, which
    /// is how range queries (and the server) learn order.
    RangeEdge,
    /// A text field's prefix, suffix or substring.
    TextPart,
}

/// One ESC counter named by the live ECOC.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterCount {
    /// The encrypted field's dotted path.
    pub field: String,
    /// What the counter stands for.
    pub kind: CounterKind,
    /// Inserts the counter has taken (emuBinary's count, compacted history
    /// included): the tags a query for it touches.
    pub count: u64,
    /// Entries of the live ECOC that name it (inserts since the last
    /// compaction).
    pub ecoc_entries: u64,
}

/// The counters named by the live ECOC of `collection`, each with its ESC
/// count; counters of fields without a token are skipped (unindexed fields
/// write no ECOC entries).
pub(crate) async fn run(
    tx: &mut dyn Transaction,
    collection: &str,
    tokens: &CompactionTokens,
) -> Result<Vec<CounterCount>> {
    let entries = super::state(tx)?
        .ecoc_read(collection, EcocGeneration::Live)
        .await?;
    let mut index: HashMap<(String, [u8; 32], CounterKind), usize> = HashMap::new();
    let mut out: Vec<CounterCount> = Vec::new();
    let mut esc: Vec<EscDerivedFromDataTokenAndContentionFactor> = Vec::new();
    for e in entries {
        let Some(t) = tokens.field(&e.field_name) else {
            continue;
        };
        let d = decrypt_ecoc_value(&t.ecoc, &e.value).map_err(|source| -> EngineError {
            QeError::State {
                collection: collection.to_owned(),
                source,
            }
            .into()
        })?;
        let kind = match (d.range_is_leaf, d.text_msize) {
            (Some(false), _) => CounterKind::RangeEdge,
            (_, Some(0)) => CounterKind::TextPart,
            _ => CounterKind::Value,
        };
        let key = (e.field_name, *d.esc_token.as_bytes(), kind);
        if let Some(&i) = index.get(&key) {
            if let Some(c) = out.get_mut(i) {
                c.ecoc_entries += 1;
            }
            continue;
        }
        index.insert(key.clone(), out.len());
        out.push(CounterCount {
            field: key.0,
            kind,
            count: 0,
            ecoc_entries: 1,
        });
        esc.push(d.esc_token);
    }
    let toks: Vec<EscTokens> = esc.iter().map(EscTokens::new).collect();
    let results = probe::run(tx, collection, toks.iter().map(Search::new).collect()).await?;
    for (c, r) in out.iter_mut().zip(&results) {
        c.count = r.query_count();
    }
    Ok(out)
}
