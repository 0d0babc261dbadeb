//! The leakage report (`showleakage`, and part of `check --deploy`): for
//! each encrypted field, what the database server can observe, as MongoDB's
//! Queryable Encryption documentation and the papers on it describe it, with
//! the live collection's own numbers.
//!
//! - **equality**: every insert sends the server the ESC token of its
//!   (value, contention bucket), so the server knows which stored documents
//!   share a value within a bucket; a query touches `contention + 1`
//!   counters and the tags of every insert behind them. At contention 0 the
//!   server therefore holds the exact frequency histogram of the field's
//!   values, which is enough to guess a low-cardinality field (frequency
//!   analysis).
//! - **range**: the same per edge; each value is inserted under the edges
//!   of its path in the tree the sparsity and trim factor shape, and the
//!   edges two values share say how close they are: order information.
//! - **text**: the same for the exact string, its prefixes, suffixes and
//!   substrings; their number is padded, so the server learns the string's
//!   length class (16-byte blocks), not its length.
//! - **unindexed**: the ciphertext's length, in 16-byte blocks.
//!
//! The numbers come from the live collection: the ECOC entries since the
//! last compaction, decrypted with the fields' ECOC tokens (so the report
//! needs the data keys, as `compact` does), each name the ESC counter of one
//! (value or edge, bucket); emuBinary over the ESC counts that counter's
//! inserts, compacted history included (`Engine::qe_counters`). A field
//! whose largest (value, bucket) counter holds more than
//! `max_bucket_percent` of the field's inserts gets a warning with a
//! contention factor that would spread it. The report holds counts only:
//! never a plaintext value, a token or a tag.

use std::fmt;

use cipherdoc_crypto::efc::{EncryptedField, QueryTypeConfig};
use cipherdoc_engine::EngineError;
use cipherdoc_engine::qe_server::{CounterCount, CounterKind};
use cipherdoc_engine::{Filter, QeStateSizes};

use crate::app::Database;
use crate::error::{Error, Result};

/// Default of [`LeakageOptions::max_bucket_percent`].
pub const DEFAULT_MAX_BUCKET_PERCENT: u32 = 15;

/// Fewer value inserts than this and a field's frequencies are not judged:
/// in a handful of documents every value is frequent.
pub const MIN_SAMPLE: u64 = 50;

/// Options of [`leakage_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeakageOptions {
    /// Largest share (percent of a field's inserts) one (value, contention
    /// bucket) may hold before the report warns.
    pub max_bucket_percent: u32,
}

impl Default for LeakageOptions {
    fn default() -> Self {
        Self {
            max_bucket_percent: DEFAULT_MAX_BUCKET_PERCENT,
        }
    }
}

/// How a field is indexed, with the parameters that decide its leakage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldIndex {
    /// Equality queries.
    Equality {
        /// Maximum contention factor.
        contention: u64,
    },
    /// Range queries.
    Range {
        /// Maximum contention factor.
        contention: u64,
        /// Sparsity (`None`: the default, 2).
        sparsity: Option<i64>,
        /// Trim factor (`None`: the default, `min(6, bits - 1)`).
        trim_factor: Option<i32>,
    },
    /// Prefix, suffix or substring queries.
    Text {
        /// Maximum contention factor.
        contention: u64,
    },
    /// No queries.
    Unindexed,
}

impl FieldIndex {
    fn of(field: &EncryptedField) -> Self {
        match field.query() {
            None => Self::Unindexed,
            Some(QueryTypeConfig::Equality { contention }) => Self::Equality {
                contention: *contention,
            },
            Some(QueryTypeConfig::Range {
                contention,
                sparsity,
                trim_factor,
                ..
            }) => Self::Range {
                contention: *contention,
                sparsity: *sparsity,
                trim_factor: *trim_factor,
            },
            Some(QueryTypeConfig::Text { contention, .. }) => Self::Text {
                contention: *contention,
            },
            // A query type this version does not know: described as what
            // is certain of any indexed field.
            Some(_) => Self::Equality {
                contention: field.queries.first().map_or(0, query_contention),
            },
        }
    }

    /// The maximum contention factor of an indexed field.
    pub fn contention(&self) -> Option<u64> {
        match self {
            Self::Equality { contention }
            | Self::Range { contention, .. }
            | Self::Text { contention } => Some(*contention),
            Self::Unindexed => None,
        }
    }
}

fn query_contention(q: &QueryTypeConfig) -> u64 {
    match q {
        QueryTypeConfig::Equality { contention }
        | QueryTypeConfig::Range { contention, .. }
        | QueryTypeConfig::Text { contention, .. } => *contention,
        _ => 0,
    }
}

/// What the live collection shows of one indexed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observed {
    /// Distinct (value, contention bucket) counters the server has seen
    /// since the last compaction.
    pub value_counters: u64,
    /// Inserts behind those counters (their ESC counts summed).
    pub value_inserts: u64,
    /// The largest counter's inserts: the most documents the server knows
    /// share one value in one bucket, and the most tags one bucket of an
    /// equality query touches.
    pub largest_counter: u64,
    /// Range: distinct inner edges; text: distinct prefixes, suffixes and
    /// substrings.
    pub other_counters: u64,
    /// Range and text: ECOC entries (tokens sent) per value insert since
    /// the last compaction — the edges, or padded token sets, per value.
    pub tokens_per_insert: Option<u64>,
}

/// A field whose contention is too low for its value frequencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentionWarning {
    /// The largest counter's share of the field's inserts, in percent
    /// (rounded down).
    pub largest_percent: u64,
    /// The threshold it passed.
    pub max_percent: u32,
    /// The contention factor now.
    pub contention: u64,
    /// A contention factor under which the largest value, spread evenly,
    /// would hold half the threshold per bucket.
    pub suggested_contention: u64,
}

/// One encrypted field's leakage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FieldLeakage {
    /// The dotted path.
    pub path: String,
    /// How it is indexed.
    pub index: FieldIndex,
    /// Documents of the collection that hold the field.
    pub documents: u64,
    /// What the live collection shows (`None` for unindexed fields and on
    /// engines whose server keeps the ESC to itself).
    pub observed: Option<Observed>,
    /// Set when contention is too low for the observed frequencies.
    pub warning: Option<ContentionWarning>,
}

impl FieldLeakage {
    /// What the server can learn, in words (no number of the data).
    pub fn observes(&self) -> String {
        match self.index {
            FieldIndex::Equality { contention } => format!(
                "which documents share a value within one of its {} contention bucket(s), so the frequency of each value{}; a query touches {} counter(s) and one tag per matching insert",
                contention + 1,
                if contention == 0 {
                    " exactly"
                } else {
                    " spread over the buckets"
                },
                contention + 1
            ),
            FieldIndex::Range {
                contention,
                sparsity,
                trim_factor,
            } => format!(
                "per edge of the value's tree path (sparsity {}, trim factor {}), which documents share the edge within one of {} bucket(s): the order of the values and how close they lie; a range query touches the edges of its cover",
                sparsity.map_or_else(|| "2 (default)".to_owned(), |s| s.to_string()),
                trim_factor.map_or_else(|| "default".to_owned(), |t| t.to_string()),
                contention + 1
            ),
            FieldIndex::Text { contention } => format!(
                "which documents share an exact string, prefix, suffix or substring within one of {} bucket(s), and each string's length class (16-byte blocks after padding), not its length",
                contention + 1
            ),
            FieldIndex::Unindexed => {
                "the length of the value in 16-byte blocks, nothing else".to_owned()
            }
        }
    }
}

/// One encrypted collection's leakage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionLeakage {
    /// The collection.
    pub collection: String,
    /// Its documents.
    pub documents: u64,
    /// ESC and ECOC entries (`None` where the engine does not report them).
    pub state: Option<QeStateSizes>,
    /// Each encrypted field, in `encryptedFields` order.
    pub fields: Vec<FieldLeakage>,
}

/// The report of one database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakageReport {
    /// The database alias.
    pub alias: String,
    /// Each encrypted collection, by name.
    pub collections: Vec<CollectionLeakage>,
}

impl LeakageReport {
    /// The fields with a warning, as `(collection, field)`.
    pub fn warnings(&self) -> impl Iterator<Item = (&CollectionLeakage, &FieldLeakage)> {
        self.collections.iter().flat_map(|c| {
            c.fields
                .iter()
                .filter(|f| f.warning.is_some())
                .map(move |f| (c, f))
        })
    }
}

/// The warning of one field, as `check --deploy` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakageFinding {
    /// The database alias.
    pub alias: String,
    /// The collection.
    pub collection: String,
    /// The field's path.
    pub field: String,
    /// The numbers.
    pub warning: ContentionWarning,
}

impl fmt::Display for LeakageFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.warning;
        write!(
            f,
            "field '{}' of {} on database '{}' has contention {} but {}% of its inserts share one value in one contention bucket (more than {}%), so the server sees its value frequencies; recreate the collection with contention {} for the field (a new collection and a copy of the data: encrypted fields cannot change in place)",
            self.field,
            self.collection,
            self.alias,
            w.contention,
            w.largest_percent,
            w.max_percent,
            w.suggested_contention
        )
    }
}

impl fmt::Display for LeakageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.collections.is_empty() {
            return write!(f, "database '{}' has no encrypted collection", self.alias);
        }
        for (i, c) in self.collections.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{} ({} document(s)", c.collection, c.documents)?;
            if let Some(s) = c.state {
                write!(f, ", ESC {} entries, ECOC {} entries", s.esc, s.ecoc)?;
            }
            writeln!(f, ")")?;
            for field in &c.fields {
                let kind = match field.index {
                    FieldIndex::Equality { contention } => {
                        format!("equality, contention {contention}")
                    }
                    FieldIndex::Range { contention, .. } => {
                        format!("range, contention {contention}")
                    }
                    FieldIndex::Text { contention } => format!("text, contention {contention}"),
                    FieldIndex::Unindexed => "unindexed".to_owned(),
                };
                writeln!(
                    f,
                    "  {} ({kind}; {} document(s))",
                    field.path, field.documents
                )?;
                writeln!(f, "    the server learns {}", field.observes())?;
                if let Some(o) = field.observed {
                    write!(
                        f,
                        "    observed: {} value counter(s) over {} insert(s), the largest {}",
                        o.value_counters, o.value_inserts, o.largest_counter
                    )?;
                    if o.other_counters > 0 {
                        write!(f, "; {} edge/part counter(s)", o.other_counters)?;
                    }
                    if let Some(t) = o.tokens_per_insert {
                        write!(f, "; {t} token(s) per insert")?;
                    }
                    writeln!(f)?;
                }
                if let Some(w) = field.warning {
                    writeln!(
                        f,
                        "    WARNING: {}",
                        LeakageFinding {
                            alias: self.alias.clone(),
                            collection: c.collection.clone(),
                            field: field.path.clone(),
                            warning: w,
                        }
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// The leakage report of one database.
///
/// # Errors
/// [`Error::NotEncrypted`] when the database has no encryption settings; the
/// engine's and the key store's errors (the report unwraps each field's data
/// key to derive its ECOC token).
pub async fn leakage_report(db: &Database, options: LeakageOptions) -> Result<LeakageReport> {
    if db.encryption().is_none() {
        return Err(Error::NotEncrypted {
            alias: db.alias().to_owned(),
            operation: "report on leakage",
        });
    }
    let engine = db.engine();
    let mut collections = Vec::new();
    for collection in engine.list_collections().await? {
        let Some(efc) = db.encrypted_fields(&collection).await? else {
            continue;
        };
        let documents = engine.count(&collection, &Filter::And(Vec::new())).await?;
        let tokens = crate::migrations::compaction_tokens(db, &collection).await?;
        let tokens = crate::app::parse_compaction_tokens(&db.namespace(&collection), &tokens)?;
        let (state, counters) = match engine.qe_counters(&collection, &tokens).await {
            Ok(counters) => (
                Some(engine.qe_state_sizes(&collection).await?),
                Some(counters),
            ),
            Err(EngineError::NoQeServerRole { .. }) => (None, None),
            Err(e) => return Err(e.into()),
        };
        let mut fields = Vec::new();
        for field in &efc.config().fields {
            let index = FieldIndex::of(field);
            let documents = engine
                .count(&collection, &Filter::exists(field.path.clone()))
                .await?;
            let observed = match (index, &counters) {
                (FieldIndex::Unindexed, _) | (_, None) => None,
                (_, Some(all)) => {
                    Some(observe(index, all.iter().filter(|c| c.field == field.path)))
                }
            };
            let warning = observed.and_then(|o| judge(index, &o, options));
            fields.push(FieldLeakage {
                path: field.path.clone(),
                index,
                documents,
                observed,
                warning,
            });
        }
        collections.push(CollectionLeakage {
            collection,
            documents,
            state,
            fields,
        });
    }
    Ok(LeakageReport {
        alias: db.alias().to_owned(),
        collections,
    })
}

fn observe<'c>(index: FieldIndex, counters: impl Iterator<Item = &'c CounterCount>) -> Observed {
    let mut o = Observed::default();
    let mut ecoc_entries = 0u64;
    let mut value_ecoc = 0u64;
    for c in counters {
        ecoc_entries += c.ecoc_entries;
        if c.kind == CounterKind::Value {
            o.value_counters += 1;
            o.value_inserts += c.count;
            o.largest_counter = o.largest_counter.max(c.count);
            value_ecoc += c.ecoc_entries;
        } else {
            o.other_counters += 1;
        }
    }
    if matches!(index, FieldIndex::Range { .. } | FieldIndex::Text { .. }) && value_ecoc > 0 {
        o.tokens_per_insert = Some(ecoc_entries / value_ecoc);
    }
    o
}

/// The warning for a field whose largest (value, bucket) counter holds
/// more than the threshold, with a contention factor that spreads the value
/// behind it to half the threshold per bucket. The value's count is
/// estimated from above as `largest · (contention + 1)` (a value's largest
/// bucket holds at least its average); half, because the client picks
/// buckets at random and the fullest runs above the average.
fn judge(index: FieldIndex, o: &Observed, options: LeakageOptions) -> Option<ContentionWarning> {
    let contention = index.contention()?;
    if o.value_inserts < MIN_SAMPLE || o.value_inserts == 0 {
        return None;
    }
    let max = u64::from(options.max_bucket_percent.max(1));
    let largest_percent = o.largest_counter.saturating_mul(100) / o.value_inserts;
    if o.largest_counter.saturating_mul(100) <= max.saturating_mul(o.value_inserts) {
        return None;
    }
    let value_estimate = o
        .largest_counter
        .saturating_mul(contention.saturating_add(1));
    // buckets ≥ 2 · value_share / max, i.e. value · 200 / (inserts · max).
    let denom = o.value_inserts.saturating_mul(max);
    let buckets = value_estimate.saturating_mul(200).div_ceil(denom).max(1);
    let suggested = buckets.saturating_sub(1).max(contention.saturating_add(1));
    Some(ContentionWarning {
        largest_percent,
        max_percent: options.max_bucket_percent,
        contention,
        suggested_contention: suggested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(largest: u64, inserts: u64) -> Observed {
        Observed {
            value_counters: 2,
            value_inserts: inserts,
            largest_counter: largest,
            ..Observed::default()
        }
    }

    #[test]
    fn a_skewed_field_at_contention_0_is_warned_with_a_factor_that_spreads_it() {
        let w = judge(
            FieldIndex::Equality { contention: 0 },
            &observed(120, 200),
            LeakageOptions::default(),
        )
        .unwrap();
        assert_eq!(w.largest_percent, 60);
        // 0.6 spread to 7.5 % per bucket: 8 buckets, contention 7.
        assert_eq!(w.suggested_contention, 7);
        // The same value spread over 9 buckets is not warned.
        assert!(
            judge(
                FieldIndex::Equality { contention: 8 },
                &observed(15, 200),
                LeakageOptions::default()
            )
            .is_none()
        );
    }

    #[test]
    fn small_samples_and_unindexed_fields_are_not_judged() {
        let o = observed(10, 10);
        assert!(
            judge(
                FieldIndex::Equality { contention: 0 },
                &o,
                LeakageOptions::default()
            )
            .is_none()
        );
        assert!(
            judge(
                FieldIndex::Unindexed,
                &observed(100, 100),
                LeakageOptions::default()
            )
            .is_none()
        );
    }
}
