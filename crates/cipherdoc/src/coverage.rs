//! The coverage rule: before a document or a filter of a model goes to an
//! engine, every path the model declares `#[encrypted]` must be encrypted by
//! the collection's encrypted fields (the pinned map or the catalog) exactly
//! as the model declares it — BSON type, query type and every option
//! (contention, range bounds, precision, sparsity, trim factor).
//!
//! The model is the authority on what must be secret: a database writer who
//! removes an entry from the catalog's `encryptedFields`, or weakens one,
//! must not make the client write or query that field in plaintext (or with
//! more leakage). So the check compares, fails closed, and names the fix.
//! It runs in [`crate::queryset`]'s one door, once per operation, after the
//! encrypted fields were resolved.

use cipherdoc_crypto::efc::{
    BsonTypeName, DEFAULT_CONTENTION, EncryptedField, EncryptedFieldConfig, QueryTypeConfig,
};

use crate::model::{EncryptedPath, ModelSchema, QueryConfig};

/// Why an encrypted field of a model is not covered by its collection's
/// encrypted fields. Never carries a value of the field, only schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoverageGap {
    /// The database has no encryption settings.
    #[error("the database has no encryption settings")]
    DatabaseNotEncrypted,
    /// The collection is not an encrypted collection (or does not exist).
    #[error("the collection is not an encrypted collection")]
    CollectionNotEncrypted,
    /// The collection's encrypted fields do not name the path.
    #[error("the collection's encrypted fields do not include it")]
    Missing,
    /// The collection encrypts the path with another BSON type.
    #[error("the collection encrypts it as BSON {found}, the model declares {declared}")]
    BsonType {
        /// What the model declares.
        declared: String,
        /// What the collection's encrypted fields say.
        found: String,
    },
    /// The collection indexes the path otherwise (query type or options).
    #[error("the collection's queries for it are {found}, the model declares {declared}")]
    Queries {
        /// What the model declares.
        declared: String,
        /// What the collection's encrypted fields say.
        found: String,
    },
}

/// The first encrypted path of `schema` that `efc` does not cover, with why.
/// `efc` is `None` when the collection is not encrypted.
pub(crate) fn first_gap(
    schema: &ModelSchema,
    efc: Option<&EncryptedFieldConfig>,
) -> Option<(EncryptedPath, CoverageGap)> {
    for p in schema.encrypted_paths() {
        let gap = match efc {
            None => Some(CoverageGap::CollectionNotEncrypted),
            Some(efc) => match efc.field(&p.path) {
                None => Some(CoverageGap::Missing),
                Some(field) => field_gap(&p, field),
            },
        };
        if let Some(gap) = gap {
            return Some((p, gap));
        }
    }
    None
}

/// How `field` differs from what the model declares for `p`, if at all.
fn field_gap(p: &EncryptedPath, field: &EncryptedField) -> Option<CoverageGap> {
    let declared = BsonTypeName::parse(&p.bson_type);
    if declared.is_none() || field.bson_type != declared {
        return Some(CoverageGap::BsonType {
            declared: p.bson_type.clone(),
            found: field
                .bson_type
                .map_or_else(|| "(none)".to_owned(), |t| t.as_str().to_owned()),
        });
    }
    if queries_match(p.queries.as_ref(), field) {
        return None;
    }
    Some(CoverageGap::Queries {
        declared: p.queries.as_ref().map_or_else(
            || "none (unindexed)".to_owned(),
            |q| q.to_document().to_string(),
        ),
        found: if field.queries.is_empty() {
            "none (unindexed)".to_owned()
        } else {
            format!("{:?}", field.queries)
        },
    })
}

/// Whether the collection's `queries` are exactly the model's, defaults
/// applied where MongoDB applies them (contention 8, sparsity 2). Anything
/// else — another type, a second query type, other bounds, a lower
/// contention or sparsity, another trim factor — is a mismatch. A text
/// field's query types (prefix and suffix may come together) must give the
/// model's folding, lengths and contention, and no other query type.
fn queries_match(model: Option<&QueryConfig>, field: &EncryptedField) -> bool {
    let contention = |c: Option<i64>| c.map_or(Some(DEFAULT_CONTENTION), |c| u64::try_from(c).ok());
    if let Some(QueryConfig::Text {
        index,
        contention: c,
    }) = model
    {
        return match field.text_index(&field.path) {
            Ok(Some(found)) => found.index == *index && contention(*c) == Some(found.contention),
            _ => false,
        };
    }
    match (model, field.queries.as_slice()) {
        (None, []) => true,
        (
            Some(QueryConfig::Equality { contention: c }),
            [QueryTypeConfig::Equality { contention: f }],
        ) => contention(*c) == Some(*f),
        (
            Some(QueryConfig::Range {
                min,
                max,
                sparsity,
                precision,
                trim_factor,
                contention: c,
            }),
            [
                QueryTypeConfig::Range {
                    contention: fc,
                    min: fmin,
                    max: fmax,
                    sparsity: fs,
                    precision: fp,
                    trim_factor: ft,
                },
            ],
        ) => {
            contention(*c) == Some(*fc)
                && fmin.as_ref() == Some(min)
                && fmax.as_ref() == Some(max)
                && sparsity.unwrap_or(2) == fs.unwrap_or(2)
                && precision == fp
                && trim_factor == ft
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Bson;

    fn field(q: Vec<QueryTypeConfig>, t: &str) -> EncryptedField {
        EncryptedField {
            path: "a".into(),
            key: cipherdoc_crypto::efc::FieldKey::AltName("k".into()),
            bson_type: BsonTypeName::parse(t),
            queries: q,
        }
    }

    fn path(q: Option<QueryConfig>, t: &str) -> EncryptedPath {
        let mut s = ModelSchema::new("app", "M", "c");
        let mut f = crate::model::FieldSchema::new("a", crate::model::FieldKind::Char, t);
        f.encrypted = true;
        f.queries = q;
        s.fields.push(f);
        s.encrypted_paths().remove(0)
    }

    #[test]
    fn equality_default_contention_matches_eight_only() {
        let p = path(Some(QueryConfig::Equality { contention: None }), "string");
        let ok = field(vec![QueryTypeConfig::Equality { contention: 8 }], "string");
        assert_eq!(field_gap(&p, &ok), None);
        let weaker = field(vec![QueryTypeConfig::Equality { contention: 0 }], "string");
        assert!(matches!(
            field_gap(&p, &weaker),
            Some(CoverageGap::Queries { .. })
        ));
        let unindexed = field(vec![], "string");
        assert!(matches!(
            field_gap(&p, &unindexed),
            Some(CoverageGap::Queries { .. })
        ));
    }

    #[test]
    fn unindexed_must_stay_unindexed_and_typed() {
        let p = path(None, "string");
        let indexed = field(vec![QueryTypeConfig::Equality { contention: 8 }], "string");
        assert!(matches!(
            field_gap(&p, &indexed),
            Some(CoverageGap::Queries { .. })
        ));
        let other_type = field(vec![], "int");
        assert!(matches!(
            field_gap(&p, &other_type),
            Some(CoverageGap::BsonType { .. })
        ));
        assert_eq!(field_gap(&p, &field(vec![], "string")), None);
    }

    #[test]
    fn range_options_all_count() {
        let model = QueryConfig::Range {
            min: Bson::Int64(0),
            max: Bson::Int64(100),
            sparsity: None,
            precision: None,
            trim_factor: Some(1),
            contention: Some(4),
        };
        let p = path(Some(model), "long");
        let good = QueryTypeConfig::Range {
            contention: 4,
            min: Some(Bson::Int64(0)),
            max: Some(Bson::Int64(100)),
            sparsity: Some(2),
            precision: None,
            trim_factor: Some(1),
        };
        assert_eq!(field_gap(&p, &field(vec![good.clone()], "long")), None);
        let variants: [fn(&mut QueryTypeConfig); 5] = [
            |q| {
                if let QueryTypeConfig::Range { contention, .. } = q {
                    *contention = 0;
                }
            },
            |q| {
                if let QueryTypeConfig::Range { sparsity, .. } = q {
                    *sparsity = Some(1);
                }
            },
            |q| {
                if let QueryTypeConfig::Range { trim_factor, .. } = q {
                    *trim_factor = Some(0);
                }
            },
            |q| {
                if let QueryTypeConfig::Range { max, .. } = q {
                    *max = Some(Bson::Int64(1000));
                }
            },
            |q| {
                if let QueryTypeConfig::Range { min, .. } = q {
                    *min = None;
                }
            },
        ];
        for change in variants {
            let mut q = good.clone();
            change(&mut q);
            assert!(matches!(
                field_gap(&p, &field(vec![q], "long")),
                Some(CoverageGap::Queries { .. })
            ));
        }
    }

    #[test]
    fn text_fields_match_kinds_folding_lengths_and_contention() {
        let text = |kind: &str, min: i32, contention: u64| QueryTypeConfig::Text {
            query_type: cipherdoc_crypto::efc::TextQueryType::parse(kind).unwrap(),
            contention,
            str_min_query_length: Some(min),
            str_max_query_length: Some(8),
            str_max_length: None,
            case_sensitive: Some(false),
            diacritic_sensitive: Some(false),
        };
        let catalog = field(vec![text("prefix", 2, 0)], "string");
        let index = catalog.text_index("a").unwrap().unwrap().index;
        let p = path(
            Some(QueryConfig::Text {
                index,
                contention: Some(0),
            }),
            "string",
        );
        assert_eq!(field_gap(&p, &catalog), None);
        for other in [
            vec![text("prefix", 2, 0), text("suffix", 2, 0)],
            vec![text("prefix", 3, 0)],
            vec![text("suffix", 2, 0)],
            vec![QueryTypeConfig::Equality { contention: 0 }],
            vec![],
        ] {
            assert!(matches!(
                field_gap(&p, &field(other, "string")),
                Some(CoverageGap::Queries { .. })
            ));
        }
        // No contention in the model means MongoDB's default, 8.
        let default = path(
            Some(QueryConfig::Text {
                index,
                contention: None,
            }),
            "string",
        );
        assert!(matches!(
            field_gap(&default, &catalog),
            Some(CoverageGap::Queries { .. })
        ));
        assert_eq!(
            field_gap(&default, &field(vec![text("prefix", 2, 8)], "string")),
            None
        );
    }
}
