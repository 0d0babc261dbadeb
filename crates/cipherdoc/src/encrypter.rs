//! Automatic encryption: what libmongocrypt does for a driver, over an
//! encrypted fields map instead of query analysis.
//!
//! - [`Encrypter::encrypt_document`]: a plaintext document → the same document
//!   with each encrypted path replaced by an insert payload (11) or, for
//!   unindexed fields, a stored value (16).
//! - [`Encrypter::encrypt_filter`]: a filter → the same filter with each
//!   constant compared to an encrypted path replaced by a find payload (12).
//! - [`Encrypter::decrypt_document`]: a stored document → plaintext, without
//!   `__safeContent__`, by a *checked read*: only the values the collection's
//!   encrypted fields name, of the kind, key and type each field allows.
//!
//! The encrypter refuses what QE cannot do (a null or mistyped encrypted
//! value, a comparison other than equality on an equality field, an
//! encrypted path inside an array) before anything reaches an engine, with
//! [`Error::ValueRefused`] or [`Error::QueryRefused`].

use std::sync::Arc;

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};
use cipherdoc_crypto::client::{self, UserKey};
use cipherdoc_crypto::client_range::{self, RangeFindOperators, range_value_to_bson};
use cipherdoc_crypto::client_text;
use cipherdoc_crypto::efc::TextFieldIndex;
use cipherdoc_crypto::efc::{EncryptedField, EncryptedFieldConfig, FieldKey, QueryTypeConfig};
use cipherdoc_crypto::payload::BlobSubtype;
use cipherdoc_crypto::payload::RangeOperator;
use cipherdoc_crypto::range::{OnEmpty, RangeIndex};
use cipherdoc_crypto::text::{TextError, TextQuery};
use cipherdoc_crypto::{KeyId, OsRandom};
use cipherdoc_engine::filter::SAFE_CONTENT;
use cipherdoc_engine::{EncStrOp, FieldOp, Filter};

use crate::error::{Error, FieldIndex, FieldProblem, FieldUse, QueryProblem, Result, ValueProblem};
use crate::keys::{KeyStore, LoadedKey};

/// Encrypts documents and filters, and decrypts documents, for one key store.
#[derive(Debug, Clone)]
pub struct Encrypter {
    keys: Arc<KeyStore>,
}

fn blob(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Encrypted,
        bytes,
    })
}

fn is_encrypted_blob(v: &Bson) -> bool {
    matches!(v, Bson::Binary(b) if b.subtype == BinarySubtype::Encrypted)
}

impl Encrypter {
    /// An encrypter over `keys`.
    pub fn new(keys: Arc<KeyStore>) -> Self {
        Self { keys }
    }

    /// The key store.
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    async fn field_key(&self, ns: &str, field: &EncryptedField) -> Result<Arc<LoadedKey>> {
        match &field.key {
            FieldKey::Id(id) => self.keys.key(*id).await.map_err(|e| match e {
                Error::KeyNotFound { key, .. } => Error::KeyNotFound {
                    key,
                    field: Some(field.path.clone()),
                    namespace: Some(ns.to_owned()),
                    database: None,
                },
                other => other,
            }),
            FieldKey::AltName(n) => self.keys.key_by_alt_name(n).await,
        }
    }

    /// Replaces each encrypted path's value by its payload. `ns` names the
    /// collection in errors.
    pub async fn encrypt_document(
        &self,
        ns: &str,
        doc: &Document,
        efc: &EncryptedFieldConfig,
    ) -> Result<Document> {
        if doc.contains_key(SAFE_CONTENT) {
            return Err(Error::ValueRefused {
                namespace: ns.to_owned(),
                field: SAFE_CONTENT.to_owned(),
                problem: ValueProblem::SafeContentSet,
            });
        }
        let mut out = doc.clone();
        for field in &efc.fields {
            let Some(slot) = slot_mut(&mut out, &field.path, ns)? else {
                continue;
            };
            if is_encrypted_blob(slot) {
                return Err(value_refused(ns, field, ValueProblem::AlreadyEncrypted));
            }
            check_type(ns, field, slot, FieldUse::Store)?;
            let key = self.field_key(ns, field).await?;
            let user = UserKey {
                id: key.id,
                key: &key.key,
            };
            let bytes = match field.query() {
                None => client::encrypt_unindexed(slot, user, &mut OsRandom)?.encode(),
                Some(QueryTypeConfig::Equality { contention }) => client::encrypt_equality_insert(
                    slot,
                    &key.tokens,
                    user,
                    *contention,
                    &mut OsRandom,
                )?
                .encode(),
                Some(q @ QueryTypeConfig::Range { contention, .. }) => {
                    let index = range_index(ns, field, q, slot)?;
                    let (min, max) = (
                        range_value_to_bson(index.index_min()),
                        range_value_to_bson(index.index_max()),
                    );
                    if let (Some(k), Some(lo), Some(hi)) =
                        (order_key(slot), order_key(&min), order_key(&max))
                        && (k < lo || k > hi)
                    {
                        // The value itself stays out of the message: it is secret.
                        return Err(value_refused(
                            ns,
                            field,
                            ValueProblem::OutsideRangeBounds {
                                min: min.to_string(),
                                max: max.to_string(),
                            },
                        ));
                    }
                    client_range::encrypt_range_insert(
                        slot,
                        &index,
                        &key.tokens,
                        user,
                        *contention,
                        &mut OsRandom,
                    )
                    .map_err(|e| range_error(ns, field, e))?
                    .encode()
                }
                Some(QueryTypeConfig::Text { .. }) => {
                    let ix = text_index(ns, field)?;
                    let Bson::String(s) = &*slot else {
                        return Err(value_refused(
                            ns,
                            field,
                            ValueProblem::NotAString {
                                access: FieldUse::Store,
                            },
                        ));
                    };
                    client_text::encrypt_text_insert(
                        s,
                        &ix.index,
                        &key.tokens,
                        user,
                        ix.contention,
                        &mut OsRandom,
                    )
                    .map_err(|e| text_error(ns, field, e))?
                    .encode()
                }
                Some(_) => {
                    return Err(Error::UnsupportedField {
                        namespace: ns.to_owned(),
                        field: field.path.clone(),
                        problem: Box::new(FieldProblem::UnknownQueryType),
                    });
                }
            };
            *slot = blob(bytes);
        }
        Ok(out)
    }

    /// Replaces constants compared with encrypted paths by find payloads.
    pub async fn encrypt_filter(
        &self,
        ns: &str,
        filter: &Filter,
        efc: &EncryptedFieldConfig,
    ) -> Result<Filter> {
        Box::pin(self.encrypt_filter_inner(ns, filter, efc)).await
    }

    async fn encrypt_filter_inner(
        &self,
        ns: &str,
        filter: &Filter,
        efc: &EncryptedFieldConfig,
    ) -> Result<Filter> {
        Ok(match filter {
            Filter::And(v) => Filter::And(self.encrypt_filters(ns, v, efc).await?),
            Filter::Or(v) => Filter::Or(self.encrypt_filters(ns, v, efc).await?),
            Filter::Nor(v) => Filter::Nor(self.encrypt_filters(ns, v, efc).await?),
            Filter::Not(f) => Filter::Not(Box::new(self.encrypt_filter(ns, f, efc).await?)),
            Filter::Field { path, op } => {
                if path == SAFE_CONTENT || path.starts_with("__safeContent__.") {
                    return Err(Error::QueryRefused {
                        namespace: ns.to_owned(),
                        path: path.clone(),
                        problem: QueryProblem::SafeContent,
                    });
                }
                if let Some(inside) = efc.fields.iter().find(|f| {
                    path.strip_prefix(f.path.as_str())
                        .is_some_and(|r| r.starts_with('.'))
                }) {
                    return Err(Error::QueryRefused {
                        namespace: ns.to_owned(),
                        path: path.clone(),
                        problem: QueryProblem::InsideEncryptedField {
                            encrypted: inside.path.clone(),
                        },
                    });
                }
                match efc.field(path) {
                    None => filter.clone(),
                    Some(field) if matches!(field.query(), Some(QueryTypeConfig::Range { .. })) => {
                        self.encrypt_range_op(ns, field, op).await?
                    }
                    Some(field) if matches!(field.query(), Some(QueryTypeConfig::Text { .. })) => {
                        self.encrypt_text_op(ns, field, op).await?
                    }
                    Some(field) => Filter::Field {
                        path: path.clone(),
                        op: self.encrypt_op(ns, field, op).await?,
                    },
                }
            }
            other => other.clone(),
        })
    }

    async fn encrypt_filters(
        &self,
        ns: &str,
        filters: &[Filter],
        efc: &EncryptedFieldConfig,
    ) -> Result<Vec<Filter>> {
        let mut out = Vec::with_capacity(filters.len());
        for f in filters {
            out.push(self.encrypt_filter(ns, f, efc).await?);
        }
        Ok(out)
    }

    async fn encrypt_op(&self, ns: &str, field: &EncryptedField, op: &FieldOp) -> Result<FieldOp> {
        let not_queryable = || query_refused(ns, field, QueryProblem::NotQueryable);
        let query = field.query().ok_or_else(not_queryable)?;
        if let FieldOp::Exists(_) = op {
            return Ok(op.clone());
        }
        let cm = match query {
            QueryTypeConfig::Equality { contention } => *contention,
            QueryTypeConfig::Range { .. } => {
                return Err(query_refused(
                    ns,
                    field,
                    QueryProblem::OperatorNotAllowed {
                        index: FieldIndex::Range,
                    },
                ));
            }
            _ => return Err(not_queryable()),
        };
        let key = self.field_key(ns, field).await?;
        let find = |v: &Bson| -> Result<Bson> {
            if matches!(v, Bson::Null) {
                return Err(value_refused(
                    ns,
                    field,
                    ValueProblem::Null {
                        access: FieldUse::Query,
                    },
                ));
            }
            check_type(ns, field, v, FieldUse::Query)?;
            Ok(blob(
                client::encrypt_equality_find(v, &key.tokens, cm)?.encode(),
            ))
        };
        Ok(match op {
            FieldOp::Eq(v) => FieldOp::Eq(find(v)?),
            FieldOp::Ne(v) => FieldOp::Ne(find(v)?),
            FieldOp::In(vs) => FieldOp::In(vs.iter().map(find).collect::<Result<_>>()?),
            FieldOp::Nin(vs) => FieldOp::Nin(vs.iter().map(find).collect::<Result<_>>()?),
            FieldOp::Lt(_) | FieldOp::Lte(_) | FieldOp::Gt(_) | FieldOp::Gte(_) => {
                return Err(query_refused(ns, field, QueryProblem::ComparisonOnEquality));
            }
            _ => {
                return Err(query_refused(
                    ns,
                    field,
                    QueryProblem::OperatorNotAllowed {
                        index: FieldIndex::Equality,
                    },
                ));
            }
        })
    }

    /// A lookup on a text-search field becomes text find payloads (18):
    /// `starts_with`, `ends_with` and `contains` (or the `$encStr…`
    /// expressions with a plaintext operand) the field's prefix, suffix or
    /// substring query; equality (`eq`, `ne`, `in`, `nin`) the normalized
    /// equality every text field answers — equality after the field's case
    /// and diacritic folding. The query is folded and checked against the
    /// field's lengths here, before anything reaches the engine.
    async fn encrypt_text_op(
        &self,
        ns: &str,
        field: &EncryptedField,
        op: &FieldOp,
    ) -> Result<Filter> {
        let ix = text_index(ns, field)?;
        let key = self.field_key(ns, field).await?;
        let path = field.path.clone();
        let find = |op: EncStrOp, v: &Bson| -> Result<Filter> {
            let Bson::String(s) = v else {
                return Err(value_refused(
                    ns,
                    field,
                    ValueProblem::NotAString {
                        access: FieldUse::Query,
                    },
                ));
            };
            let query = match op {
                EncStrOp::StartsWith => TextQuery::Prefix,
                EncStrOp::EndsWith => TextQuery::Suffix,
                EncStrOp::Contains => TextQuery::Substring,
                EncStrOp::NormalizedEq => TextQuery::Exact,
            };
            let payload =
                client_text::encrypt_text_find(s, &ix.index, query, &key.tokens, ix.contention)
                    .map_err(|e| text_error(ns, field, e))?;
            Ok(Filter::Field {
                path: path.clone(),
                op: FieldOp::EncStr {
                    op,
                    value: blob(payload.encode()),
                },
            })
        };
        let eq = |v: &Bson| find(EncStrOp::NormalizedEq, v);
        Ok(match op {
            FieldOp::EncStr { op, value } => find(*op, value)?,
            FieldOp::StartsWith(s) => find(EncStrOp::StartsWith, &Bson::String(s.clone()))?,
            FieldOp::EndsWith(s) => find(EncStrOp::EndsWith, &Bson::String(s.clone()))?,
            FieldOp::Contains(s) => find(EncStrOp::Contains, &Bson::String(s.clone()))?,
            FieldOp::Eq(v) => eq(v)?,
            FieldOp::Ne(v) => Filter::Not(Box::new(eq(v)?)),
            FieldOp::In(vs) => Filter::Or(vs.iter().map(eq).collect::<Result<_>>()?),
            FieldOp::Nin(vs) => Filter::Not(Box::new(Filter::Or(
                vs.iter().map(eq).collect::<Result<_>>()?,
            ))),
            FieldOp::Exists(_) => Filter::Field {
                path,
                op: op.clone(),
            },
            _ => {
                return Err(query_refused(
                    ns,
                    field,
                    QueryProblem::OperatorNotAllowed {
                        index: FieldIndex::Text,
                    },
                ));
            }
        })
    }

    /// A comparison on a range field becomes range find payloads (13): one
    /// full payload per comparison, bounds clamped to the index's
    /// `[min, max]`; equality is the range `[v, v]`; an empty range matches
    /// nothing.
    async fn encrypt_range_op(
        &self,
        ns: &str,
        field: &EncryptedField,
        op: &FieldOp,
    ) -> Result<Filter> {
        let Some(q @ QueryTypeConfig::Range { contention, .. }) = field.query() else {
            return Err(range_error(
                ns,
                field,
                cipherdoc_crypto::Error::InvalidArgument("not a range field".into()),
            ));
        };
        let key = self.field_key(ns, field).await?;
        let path = field.path.clone();
        let one = |lo: Bound, hi: Bound, value: &Bson| -> Result<Filter> {
            if matches!(value, Bson::Null) {
                return Err(value_refused(
                    ns,
                    field,
                    ValueProblem::Null {
                        access: FieldUse::Query,
                    },
                ));
            }
            check_type(ns, field, value, FieldUse::Query)?;
            let index = range_index(ns, field, q, value)?;
            let (min, max) = (
                range_value_to_bson(index.index_min()),
                range_value_to_bson(index.index_max()),
            );
            let (lo, lo_inc) = clamp_lower(lo, &min, &max);
            let (hi, hi_inc) = clamp_upper(hi, &min, &max);
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return Ok(Filter::Or(Vec::new()));
            };
            let lo_v =
                client_range::range_value_from_bson(&lo).map_err(|e| range_error(ns, field, e))?;
            let hi_v =
                client_range::range_value_from_bson(&hi).map_err(|e| range_error(ns, field, e))?;
            let cover = index
                .min_cover(&lo_v, lo_inc, &hi_v, hi_inc, OnEmpty::EmptyCover)
                .map_err(|e| {
                    range_error(
                        ns,
                        field,
                        cipherdoc_crypto::Error::InvalidArgument(e.to_string()),
                    )
                })?;
            if cover.is_empty() {
                return Ok(Filter::Or(Vec::new()));
            }
            let ops = RangeFindOperators {
                payload_id: client_range::next_payload_id(),
                first: if lo_inc {
                    RangeOperator::Gte
                } else {
                    RangeOperator::Gt
                },
                second: Some(if hi_inc {
                    RangeOperator::Lte
                } else {
                    RangeOperator::Lt
                }),
            };
            let payload = client_range::encrypt_range_find(
                &lo,
                lo_inc,
                &hi,
                hi_inc,
                &index,
                &key.tokens,
                *contention,
                ops,
            )
            .map_err(|e| range_error(ns, field, e))?;
            Ok(Filter::Field {
                path: path.clone(),
                op: FieldOp::Gte(blob(payload.encode())),
            })
        };
        let eq = |v: &Bson| one(Bound::Inclusive(v.clone()), Bound::Inclusive(v.clone()), v);
        Ok(match op {
            FieldOp::Eq(v) => eq(v)?,
            FieldOp::Ne(v) => Filter::Not(Box::new(eq(v)?)),
            FieldOp::In(vs) => Filter::Or(vs.iter().map(eq).collect::<Result<_>>()?),
            FieldOp::Nin(vs) => Filter::Not(Box::new(Filter::Or(
                vs.iter().map(eq).collect::<Result<_>>()?,
            ))),
            FieldOp::Lt(v) => one(Bound::Unbounded, Bound::Exclusive(v.clone()), v)?,
            FieldOp::Lte(v) => one(Bound::Unbounded, Bound::Inclusive(v.clone()), v)?,
            FieldOp::Gt(v) => one(Bound::Exclusive(v.clone()), Bound::Unbounded, v)?,
            FieldOp::Gte(v) => one(Bound::Inclusive(v.clone()), Bound::Unbounded, v)?,
            FieldOp::Exists(_) => Filter::Field {
                path,
                op: op.clone(),
            },
            _ => {
                return Err(query_refused(
                    ns,
                    field,
                    QueryProblem::OperatorNotAllowed {
                        index: FieldIndex::Range,
                    },
                ));
            }
        })
    }

    /// Decrypts a stored document of the collection whose encrypted fields
    /// are `efc` (`None`: not an encrypted collection) and drops
    /// `__safeContent__`: a *checked read*.
    ///
    /// The database is not trusted to say what is encrypted: a value is
    /// decrypted only at a path `efc` names, only if it is the stored value
    /// that field's kind produces (subtype 16 unindexed, 14 equality, 15
    /// range, 17 text), names the field's key and declares the field's BSON
    /// type, and only with that key. Plaintext at an encrypted path, an
    /// encrypted blob anywhere else (inside arrays included), another
    /// field's blob or another key is an [`Error::StoredValueRejected`]
    /// naming the model and field, never the value. `model` names the model
    /// and collection in errors.
    pub async fn decrypt_document(
        &self,
        model: &str,
        mut doc: Document,
        efc: Option<&EncryptedFieldConfig>,
    ) -> Result<Document> {
        doc.remove(SAFE_CONTENT);
        let fields = efc.map_or(&[][..], |e| e.fields.as_slice());
        reject_stray_blobs(model, &doc, fields)?;
        for field in fields {
            let Some(slot) = stored_slot(model, &mut doc, &field.path)? else {
                continue;
            };
            let plain = self.decrypt_field(model, field, slot).await?;
            *slot = plain;
        }
        Ok(doc)
    }

    async fn decrypt_field(&self, model: &str, field: &EncryptedField, v: &Bson) -> Result<Bson> {
        let reject = |problem| Error::StoredValueRejected {
            model: model.to_owned(),
            field: field.path.clone(),
            problem,
        };
        let Bson::Binary(b) = v else {
            return Err(reject(IntegrityProblem::Plaintext));
        };
        if b.subtype != BinarySubtype::Encrypted {
            return Err(reject(IntegrityProblem::Plaintext));
        }
        let allowed = stored_subtype(field);
        let found = b.bytes.first().copied();
        if found != Some(allowed as u8) {
            return Err(reject(IntegrityProblem::Subtype {
                allowed: allowed as u8,
                found,
            }));
        }
        // Every stored v2 value starts subtype ‖ key id (16) ‖ BSON type.
        let (Some(id), Some(&ty)) = (b.bytes.get(1..17), b.bytes.get(17)) else {
            return Err(reject(IntegrityProblem::Malformed));
        };
        let key = self.field_key(model, field).await?;
        if id != key.id.as_bytes() {
            return Err(reject(IntegrityProblem::OtherKey));
        }
        if let Some(t) = field.bson_type
            && t.type_byte() != ty
        {
            return Err(reject(IntegrityProblem::BsonType {
                declared: t.as_str(),
            }));
        }
        // Only this field's key: a blob that asks for another one (the
        // user key inside an indexed value) is refused, not served.
        let only = OnlyKey(&key);
        let plain = match cipherdoc_crypto::client::decrypt_blob(&b.bytes, &only) {
            Ok(Some(p)) => p,
            Ok(None) => return Err(reject(IntegrityProblem::Malformed)),
            Err(cipherdoc_crypto::Error::MissingKey(_)) => {
                return Err(reject(IntegrityProblem::OtherKey));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(t) = field.bson_type
            && t.type_byte() != plain.element_type() as u8
        {
            return Err(reject(IntegrityProblem::BsonType {
                declared: t.as_str(),
            }));
        }
        Ok(plain)
    }
}

/// What is wrong with a stored value (see [`Encrypter::decrypt_document`]).
/// Carries no value, only what the value should have been.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityProblem {
    /// The field is encrypted but the stored value is not an encrypted blob.
    #[error("the field is encrypted but the database holds a plaintext value there")]
    Plaintext,
    /// An encrypted blob at a path no encrypted field names.
    #[error("the database holds an encrypted value at a path that is not encrypted")]
    NotAnEncryptedPath,
    /// A blob of another kind than the field's (another field's value).
    #[error(
        "the stored value has blob subtype {found:?}, the field's kind stores subtype {allowed}"
    )]
    Subtype {
        /// The subtype the field's kind stores.
        allowed: u8,
        /// The subtype found (its first byte).
        found: Option<u8>,
    },
    /// The blob names (or needs) a key other than the field's.
    #[error("the stored value is encrypted with a key other than the field's")]
    OtherKey,
    /// The blob declares another BSON type than the field.
    #[error("the stored value is not of the field's BSON type {declared}")]
    BsonType {
        /// The field's BSON type.
        declared: &'static str,
    },
    /// Too short to be a stored value.
    #[error("the stored value is malformed")]
    Malformed,
}

/// The stored-value subtype a field's kind produces.
fn stored_subtype(field: &EncryptedField) -> BlobSubtype {
    match field.query() {
        None => BlobSubtype::Fle2UnindexedEncryptedValueV2,
        Some(QueryTypeConfig::Range { .. }) => BlobSubtype::Fle2IndexedRangeEncryptedValueV2,
        Some(QueryTypeConfig::Text { .. }) => BlobSubtype::Fle2IndexedTextEncryptedValue,
        Some(_) => BlobSubtype::Fle2IndexedEqualityEncryptedValueV2,
    }
}

/// A key lookup that knows one key.
struct OnlyKey<'k>(&'k LoadedKey);

impl cipherdoc_crypto::client::KeyLookup for OnlyKey<'_> {
    fn data_key(&self, id: &KeyId) -> Option<&cipherdoc_crypto::DataKey> {
        (self.0.id == *id).then_some(&self.0.key)
    }
}

/// Refuses an encrypted blob at any path that no encrypted field names
/// (inside arrays too). Iterative, so no document depth can exhaust the
/// stack.
fn reject_stray_blobs(model: &str, doc: &Document, fields: &[EncryptedField]) -> Result<()> {
    let mut stack: Vec<(String, &Bson)> = doc.iter().map(|(k, v)| (k.clone(), v)).collect();
    while let Some((path, v)) = stack.pop() {
        if fields.iter().any(|f| f.path == path) {
            continue;
        }
        match v {
            Bson::Binary(b) if b.subtype == BinarySubtype::Encrypted => {
                return Err(Error::StoredValueRejected {
                    model: model.to_owned(),
                    field: path,
                    problem: IntegrityProblem::NotAnEncryptedPath,
                });
            }
            Bson::Document(d) => {
                stack.extend(d.iter().map(|(k, x)| (format!("{path}.{k}"), x)));
            }
            Bson::Array(a) => {
                stack.extend(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| (format!("{path}.{i}"), x)),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// The stored value at an encrypted path; `None` when absent (or a parent
/// is null). A parent that is not a document is refused: the field's value
/// would be there in another shape, unencrypted.
fn stored_slot<'d>(model: &str, doc: &'d mut Document, path: &str) -> Result<Option<&'d mut Bson>> {
    let mut parts = path.split('.');
    let Some(mut cur) = parts.next().and_then(|first| doc.get_mut(first)) else {
        return Ok(None);
    };
    for part in parts {
        cur = match cur {
            Bson::Document(d) => match d.get_mut(part) {
                Some(v) => v,
                None => return Ok(None),
            },
            Bson::Null => return Ok(None),
            _ => {
                return Err(Error::StoredValueRejected {
                    model: model.to_owned(),
                    field: path.to_owned(),
                    problem: IntegrityProblem::Plaintext,
                });
            }
        };
    }
    Ok(Some(cur))
}

/// A bound of a range query.
enum Bound {
    Unbounded,
    Inclusive(Bson),
    Exclusive(Bson),
}

/// An order-preserving key of a range value (the protocol's own encoding,
/// without bounds), to compare query bounds with the index bounds.
fn order_key(v: &Bson) -> Option<u128> {
    use cipherdoc_crypto::range as r;
    match v {
        Bson::Int32(n) => r::encode_int32(*n, None, None)
            .ok()
            .map(|o| u128::from(o.value)),
        Bson::Int64(n) => r::encode_int64(*n, None, None)
            .ok()
            .map(|o| u128::from(o.value)),
        Bson::DateTime(d) => r::encode_date(d.timestamp_millis(), None, None)
            .ok()
            .map(|o| u128::from(o.value)),
        Bson::Double(d) => r::encode_double(*d, None, None, None)
            .ok()
            .map(|o| u128::from(o.value)),
        Bson::Decimal128(d) => r::encode_decimal128(*d, None, None, None)
            .ok()
            .map(|o| o.value),
        _ => None,
    }
}

/// The effective lower bound within `[min, max]`; `None` when empty.
fn clamp_lower(b: Bound, min: &Bson, max: &Bson) -> (Option<Bson>, bool) {
    let (v, inc) = match b {
        Bound::Unbounded => return (Some(min.clone()), true),
        Bound::Inclusive(v) => (v, true),
        Bound::Exclusive(v) => (v, false),
    };
    match (order_key(&v), order_key(min), order_key(max)) {
        (Some(k), Some(lo), _) if k < lo => (Some(min.clone()), true),
        (Some(k), _, Some(hi)) if k > hi || (k == hi && !inc) => (None, false),
        _ => (Some(v), inc),
    }
}

/// The effective upper bound within `[min, max]`; `None` when empty.
fn clamp_upper(b: Bound, min: &Bson, max: &Bson) -> (Option<Bson>, bool) {
    let (v, inc) = match b {
        Bound::Unbounded => return (Some(max.clone()), true),
        Bound::Inclusive(v) => (v, true),
        Bound::Exclusive(v) => (v, false),
    };
    match (order_key(&v), order_key(min), order_key(max)) {
        (Some(k), _, Some(hi)) if k > hi => (Some(max.clone()), true),
        (Some(k), Some(lo), _) if k < lo || (k == lo && !inc) => (None, false),
        _ => (Some(v), inc),
    }
}

/// The range index of a field, for values like `value`.
fn range_index(
    ns: &str,
    field: &EncryptedField,
    q: &QueryTypeConfig,
    value: &Bson,
) -> Result<RangeIndex> {
    let QueryTypeConfig::Range {
        min,
        max,
        sparsity,
        precision,
        trim_factor,
        ..
    } = q
    else {
        return Err(range_error(
            ns,
            field,
            cipherdoc_crypto::Error::InvalidArgument("not a range field".into()),
        ));
    };
    let mut d = Document::new();
    if let Some(v) = min {
        d.insert("min", v.clone());
    }
    if let Some(v) = max {
        d.insert("max", v.clone());
    }
    if let Some(v) = sparsity {
        d.insert("sparsity", *v);
    }
    if let Some(v) = precision {
        d.insert("precision", *v);
    }
    if let Some(v) = trim_factor {
        d.insert("trimFactor", *v);
    }
    let options =
        client_range::range_options_from_document(&d).map_err(|e| range_error(ns, field, e))?;
    client_range::resolve_range_options(&options, value).map_err(|e| range_error(ns, field, e))
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(|e| range_error(..., e))`
fn range_error(ns: &str, field: &EncryptedField, e: cipherdoc_crypto::Error) -> Error {
    Error::RangeField {
        namespace: ns.to_owned(),
        field: field.path.clone(),
        source: e,
    }
}

fn value_refused(ns: &str, field: &EncryptedField, problem: ValueProblem) -> Error {
    Error::ValueRefused {
        namespace: ns.to_owned(),
        field: field.path.clone(),
        problem,
    }
}

fn query_refused(ns: &str, field: &EncryptedField, problem: QueryProblem) -> Error {
    Error::QueryRefused {
        namespace: ns.to_owned(),
        path: field.path.clone(),
        problem,
    }
}

/// A text-search field's combined index (its `encryptedFields` options).
fn text_index(ns: &str, field: &EncryptedField) -> Result<TextFieldIndex> {
    match field.text_index(&field.path) {
        Ok(Some(ix)) => Ok(ix),
        Ok(None) => Err(Error::UnsupportedField {
            namespace: ns.to_owned(),
            field: field.path.clone(),
            problem: Box::new(FieldProblem::NotTextSearch),
        }),
        Err(e) => Err(Error::UnsupportedField {
            namespace: ns.to_owned(),
            field: field.path.clone(),
            problem: Box::new(FieldProblem::InvalidTextOptions(e)),
        }),
    }
}

/// A refused text value or query, naming the field (never the value).
fn text_error(ns: &str, field: &EncryptedField, e: cipherdoc_crypto::Error) -> Error {
    match e {
        cipherdoc_crypto::Error::Text(source) => text_refused(ns, field, source),
        other => Error::Crypto(other),
    }
}

fn text_refused(ns: &str, field: &EncryptedField, source: TextError) -> Error {
    Error::TextSearch {
        ns: ns.to_owned(),
        field: field.path.clone(),
        source,
    }
}

fn check_type(ns: &str, field: &EncryptedField, v: &Bson, access: FieldUse) -> Result<()> {
    if matches!(v, Bson::Null | Bson::Undefined) {
        return Err(value_refused(ns, field, ValueProblem::Null { access }));
    }
    if let Some(t) = field.bson_type {
        let actual = v.element_type() as u8;
        if t.type_byte() != actual {
            return Err(value_refused(
                ns,
                field,
                ValueProblem::WrongType {
                    expected: t.as_str(),
                    actual: v.element_type(),
                },
            ));
        }
    }
    Ok(())
}

/// The value at a dotted path, for replacement. `Ok(None)` when absent.
fn slot_mut<'d>(doc: &'d mut Document, path: &str, ns: &str) -> Result<Option<&'d mut Bson>> {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return Ok(None);
    };
    let Some(mut cur) = doc.get_mut(first) else {
        return Ok(None);
    };
    for (depth, part) in parts.enumerate() {
        cur = match cur {
            Bson::Document(d) => match d.get_mut(part) {
                Some(v) => v,
                None => return Ok(None),
            },
            Bson::Array(_) => {
                let prefix: Vec<&str> = path.split('.').take(depth + 1).collect();
                return Err(Error::ValueRefused {
                    namespace: ns.to_owned(),
                    field: path.to_owned(),
                    problem: ValueProblem::InsideArray {
                        array: prefix.join("."),
                    },
                });
            }
            Bson::Null => return Ok(None),
            _ => {
                return Err(Error::ValueRefused {
                    namespace: ns.to_owned(),
                    field: path.to_owned(),
                    problem: ValueProblem::ThroughNonDocument {
                        part: part.to_owned(),
                    },
                });
            }
        };
    }
    Ok(Some(cur))
}
