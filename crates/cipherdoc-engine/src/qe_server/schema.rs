//! A collection's encrypted fields as the server role needs them.

use bson::Document;
use cipherdoc_crypto::KeyId;
use cipherdoc_crypto::efc::{BsonTypeName, EncryptedFieldConfig, FieldKey, QueryTypeConfig};

use cipherdoc_crypto::client_range::range_value_from_bson;
use cipherdoc_crypto::range::{RangeIndex, RangeOptions, RangeValueKind};
use cipherdoc_crypto::text::TextIndex;

use super::QeError;

/// How a field is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// No `queries`: values are stored as the client sent them (16).
    Unindexed,
    /// `queryType: "equality"`.
    Equality { contention: u64 },
    /// `queryType: "range"`.
    Range { contention: u64 },
    /// Text search (`prefix`, `suffix`, `substring`, and their preview
    /// names): the field's combined index is [`FieldSpec::text`].
    Text { contention: u64 },
}

/// One encrypted field.
#[derive(Debug, Clone)]
pub(crate) struct FieldSpec {
    pub(crate) path: String,
    pub(crate) key_id: KeyId,
    pub(crate) bson_type: Option<BsonTypeName>,
    pub(crate) kind: FieldKind,
    /// Range fields: the index with every option resolved (§8.1), which
    /// insert and find payloads must have been made for. `None` when the
    /// options do not resolve (then range inserts, queries and compaction of
    /// the field are refused).
    pub(crate) range: Option<RangeIndex>,
    /// Text fields: the combined index of the field's text query types
    /// (folding, lengths), which find payloads must have been made for.
    pub(crate) text: Option<TextIndex>,
}

impl FieldSpec {
    /// Range fields: the number of edges every value has (§8.4
    /// `Edges::size`), used to check insert payloads and to size anchor
    /// padding (§9.7 step 4).
    pub(crate) fn range_edges(&self) -> Option<usize> {
        self.range.as_ref().map(RangeIndex::edge_count)
    }

    pub(crate) fn indexed(&self) -> bool {
        !matches!(self.kind, FieldKind::Unindexed)
    }

    /// The maximum contention factor of an indexed field.
    pub(crate) fn contention(&self) -> Option<u64> {
        match self.kind {
            FieldKind::Unindexed => None,
            FieldKind::Equality { contention }
            | FieldKind::Range { contention }
            | FieldKind::Text { contention } => Some(contention),
        }
    }

    /// Whether compaction pads the field's anchors (and cleanup folds the
    /// padding): range and text-search fields (§9.7 step 4).
    pub(crate) fn padded(&self) -> bool {
        matches!(self.kind, FieldKind::Range { .. } | FieldKind::Text { .. })
    }
}

/// Where a dotted path stands relative to the encrypted fields.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PathRel<'a> {
    /// Exactly an encrypted field.
    Exact(&'a FieldSpec),
    /// Inside an encrypted field (`ssn.x` when `ssn` is encrypted).
    Below(&'a FieldSpec),
    /// A strict prefix of an encrypted field (`record` for `record.ssn`).
    Above,
    /// Unrelated to every encrypted field.
    Plain,
}

/// The parsed `encryptedFields` of one collection.
#[derive(Debug, Clone)]
pub(crate) struct QeSchema {
    pub(crate) fields: Vec<FieldSpec>,
}

/// The edge count of a range field's values, from its `encryptedFields`
/// options resolved as the client resolves them (§8.1 defaults).
fn range_index(
    bson_type: Option<BsonTypeName>,
    min: Option<&bson::Bson>,
    max: Option<&bson::Bson>,
    sparsity: Option<i64>,
    precision: Option<i32>,
    trim_factor: Option<i32>,
) -> Option<RangeIndex> {
    let kind = match bson_type? {
        BsonTypeName::Int => RangeValueKind::Int32,
        BsonTypeName::Long => RangeValueKind::Int64,
        BsonTypeName::Date => RangeValueKind::Date,
        BsonTypeName::Double => RangeValueKind::Double,
        BsonTypeName::Decimal => RangeValueKind::Decimal128,
        _ => return None,
    };
    let value = |b: Option<&bson::Bson>| b.map(range_value_from_bson).transpose().ok();
    let options = RangeOptions {
        min: value(min)?,
        max: value(max)?,
        sparsity,
        trim_factor,
        precision,
    };
    options.resolve(kind).ok()
}

fn is_prefix(prefix: &str, path: &str) -> bool {
    path.len() > prefix.len()
        && path.starts_with(prefix)
        && path.as_bytes().get(prefix.len()) == Some(&b'.')
}

impl QeSchema {
    /// Parse and validate (as the server does) an `encryptedFields` document.
    pub(crate) fn parse(collection: &str, ef: &Document) -> Result<Self, QeError> {
        let bad = |reason: String| QeError::Schema {
            collection: collection.to_owned(),
            reason,
        };
        let efc = EncryptedFieldConfig::from_document(ef).map_err(|e| bad(e.to_string()))?;
        efc.validate().map_err(|e| bad(e.to_string()))?;
        let mut fields = Vec::with_capacity(efc.fields.len());
        for (i, f) in efc.fields.iter().enumerate() {
            let FieldKey::Id(key_id) = &f.key else {
                return Err(bad(format!(
                    "field {:?} names its key by keyAltName; the server needs keyId",
                    f.path
                )));
            };
            let kind = match f.query() {
                None => FieldKind::Unindexed,
                Some(QueryTypeConfig::Equality { contention }) => FieldKind::Equality {
                    contention: *contention,
                },
                Some(QueryTypeConfig::Range { contention, .. }) => FieldKind::Range {
                    contention: *contention,
                },
                Some(QueryTypeConfig::Text { contention, .. }) => FieldKind::Text {
                    contention: *contention,
                },
                Some(_) => {
                    return Err(bad(format!(
                        "field {:?} has a query type the server role does not know",
                        f.path
                    )));
                }
            };
            let range = match f.query() {
                Some(QueryTypeConfig::Range {
                    min,
                    max,
                    sparsity,
                    precision,
                    trim_factor,
                    ..
                }) => range_index(
                    f.bson_type,
                    min.as_ref(),
                    max.as_ref(),
                    *sparsity,
                    *precision,
                    *trim_factor,
                ),
                _ => None,
            };
            // `validate` above has already checked the text options.
            let text = f
                .text_index(&format!("fields[{i}]"))
                .map_err(|e| bad(e.to_string()))?
                .map(|t| t.index);
            fields.push(FieldSpec {
                path: f.path.clone(),
                key_id: *key_id,
                bson_type: f.bson_type,
                kind,
                range,
                text,
            });
        }
        for (i, a) in fields.iter().enumerate() {
            for b in fields.iter().skip(i + 1) {
                if a.path == b.path || is_prefix(&a.path, &b.path) || is_prefix(&b.path, &a.path) {
                    return Err(bad(format!(
                        "encrypted fields {:?} and {:?} overlap",
                        a.path, b.path
                    )));
                }
            }
        }
        Ok(Self { fields })
    }

    /// Where `path` stands.
    pub(crate) fn relation(&self, path: &str) -> PathRel<'_> {
        let mut above = false;
        for f in &self.fields {
            if f.path == path {
                return PathRel::Exact(f);
            }
            if is_prefix(&f.path, path) {
                return PathRel::Below(f);
            }
            if is_prefix(path, &f.path) {
                above = true;
            }
        }
        if above {
            PathRel::Above
        } else {
            PathRel::Plain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn relations_and_overlap() {
        let key = |b: u8| bson::Binary {
            subtype: bson::spec::BinarySubtype::Uuid,
            bytes: vec![b; 16],
        };
        let s = QeSchema::parse(
            "c",
            &doc! {"fields": [
                {"path": "r.ssn", "keyId": key(1), "bsonType": "string", "queries": {"queryType": "equality", "contention": 4}},
                {"path": "note", "keyId": key(2)},
            ]},
        )
        .unwrap();
        assert!(
            matches!(s.relation("r.ssn"), PathRel::Exact(f) if f.kind == FieldKind::Equality { contention: 4 })
        );
        assert!(matches!(s.relation("r.ssn.x"), PathRel::Below(_)));
        assert!(matches!(s.relation("r"), PathRel::Above));
        assert!(matches!(s.relation("r.ss"), PathRel::Plain));
        assert!(matches!(s.relation("note"), PathRel::Exact(f) if !f.indexed()));
        let overlap = QeSchema::parse(
            "c",
            &doc! {"fields": [{"path": "a", "keyId": key(3)}, {"path": "a.b", "keyId": key(4)}]},
        );
        assert!(matches!(overlap, Err(QeError::Schema { .. })));
    }
}
