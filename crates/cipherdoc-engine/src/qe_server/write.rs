//! Inserts and replacements (§9.4): validate the document, turn each insert
//! payload into its stored value, write the ESC non-anchors and ECOC
//! entries, and set `__safeContent__` to exactly the tags of the document's
//! stored values.

use std::collections::{HashMap, HashSet};

use bson::spec::{BinarySubtype, ElementType};
use bson::{Binary, Bson, Document};
use cipherdoc_crypto::payload::{
    BlobSubtype, IndexedEqualityEncryptedValueV2, IndexedRangeEncryptedValueV2,
    IndexedTextEncryptedValue, InsertUpdatePayloadV2, UnindexedEncryptedValueV2,
};
use cipherdoc_crypto::server::text::{build_indexed_text_value, text_insert_token_sets};
use cipherdoc_crypto::server::{
    EscTokens, build_indexed_equality_value, build_indexed_range_value, non_anchor_id,
};
use cipherdoc_crypto::{KeyId, PrefetchedRandom};

use super::QeError;
use super::probe::{self, Search};
use super::schema::{FieldKind, FieldSpec, PathRel, QeSchema};
use crate::Result;
use crate::engine::{FindOptions, Transaction};
use crate::filter::{Filter, SAFE_CONTENT};
use crate::qe_state::{EcocEntry, Tag};

/// One ESC counter an insert payload advances: equality has one (the
/// top-level `s`/`p`), range one per edge (`g[i].s`/`g[i].p`), text search
/// one per token set of `b` (a padding entry repeated `n` times is `n` sets
/// with the same `s`, which `apply` gives consecutive positions, as
/// `server::text::text_positions` does).
struct TokenSet {
    esc: EscTokens,
    ecoc_value: Vec<u8>,
}

/// The token sets of a payload (§9.4 step 1): equality's top-level `s`/`p`,
/// every edge's `g[i].s`/`g[i].p` for range, or every text token set of `b`
/// (never the top-level ones for range and text).
fn token_sets(iup: &InsertUpdatePayloadV2) -> cipherdoc_crypto::Result<Vec<TokenSet>> {
    if iup.text_search_token_sets.is_some() {
        return Ok(text_insert_token_sets(iup)?
            .into_iter()
            .map(|t| TokenSet {
                esc: t.esc_tokens(),
                ecoc_value: t.ecoc_value,
            })
            .collect());
    }
    Ok(match &iup.edge_token_sets {
        None => vec![TokenSet {
            esc: EscTokens::new(&iup.esc_derived_token),
            ecoc_value: iup.encrypted_tokens.clone(),
        }],
        Some(edges) => edges
            .iter()
            .map(|e| TokenSet {
                esc: EscTokens::new(&e.esc_derived_token),
                ecoc_value: e.encrypted_tokens.clone(),
            })
            .collect(),
    })
}

/// The stored value and its tags for a payload whose token sets got
/// `counts` (§9.4 step 4).
fn build_stored(
    collection: &str,
    path: &str,
    iup: &InsertUpdatePayloadV2,
    counts: &[u64],
    rng: &mut PrefetchedRandom,
) -> Result<(Vec<u8>, Vec<Tag>)> {
    let payload_err = |source| QeError::Payload {
        collection: collection.to_owned(),
        path: path.to_owned(),
        source,
    };
    if iup.text_search_token_sets.is_some() {
        let v = build_indexed_text_value(iup, counts, rng).map_err(payload_err)?;
        let tags = v.tags().collect();
        return Ok((v.encode().map_err(payload_err)?, tags));
    }
    match (&iup.edge_token_sets, counts) {
        (None, [count]) => {
            let v = build_indexed_equality_value(iup, *count, rng).map_err(payload_err)?;
            let tag = v.metadata.tag;
            Ok((v.encode(), vec![tag]))
        }
        (Some(_), counts) => {
            let v = build_indexed_range_value(iup, counts, rng).map_err(payload_err)?;
            let tags = v.tags().collect();
            Ok((v.encode().map_err(payload_err)?, tags))
        }
        (None, _) => Err(QeError::State {
            collection: collection.to_owned(),
            source: cipherdoc_crypto::Error::EscState(
                "an equality payload needs exactly one ESC count".into(),
            ),
        }
        .into()),
    }
}

/// The tags of a stored value (14, 15 or 17), read from its metadata blocks.
fn stored_tags(blob: &[u8]) -> Option<Vec<Tag>> {
    match BlobSubtype::of(blob).ok()? {
        BlobSubtype::Fle2IndexedEqualityEncryptedValueV2 => {
            let v = IndexedEqualityEncryptedValueV2::decode(blob).ok()?;
            Some(vec![v.metadata.tag])
        }
        BlobSubtype::Fle2IndexedRangeEncryptedValueV2 => {
            let v = IndexedRangeEncryptedValueV2::decode(blob).ok()?;
            Some(v.tags().collect())
        }
        BlobSubtype::Fle2IndexedTextEncryptedValue => {
            let v = IndexedTextEncryptedValue::decode(blob).ok()?;
            Some(v.tags().collect())
        }
        _ => None,
    }
}

/// An insert payload found in a document.
struct Job {
    doc: usize,
    path: String,
    iup: InsertUpdatePayloadV2,
    sets: Vec<TokenSet>,
}

/// Validation state of one document.
struct Walk<'a> {
    collection: &'a str,
    schema: Option<&'a QeSchema>,
    /// The stored document being replaced, if any.
    old: Option<&'a Document>,
    doc_index: usize,
    jobs: Vec<Job>,
    carried: Vec<Tag>,
    key_ids: HashSet<KeyId>,
}

fn encrypted_bytes(v: &Bson) -> Option<&[u8]> {
    match v {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes,
        }) => Some(bytes),
        _ => None,
    }
}

fn subtype_name(b: Option<&u8>) -> String {
    match b {
        None => "an empty encrypted blob".into(),
        Some(b) => match BlobSubtype::try_from(*b) {
            Ok(s) => format!("{s:?} (subtype {b})"),
            Err(_) => format!("unknown encrypted subtype {b}"),
        },
    }
}

/// The value at a dotted path through sub-documents only.
pub(crate) fn get_path<'d>(doc: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut cur = doc;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let v = cur.get(p)?;
        if parts.peek().is_none() {
            return Some(v);
        }
        let Bson::Document(d) = v else { return None };
        cur = d;
    }
    None
}

fn set_path(doc: &mut Document, path: &str, value: Bson) -> bool {
    let mut cur = doc;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p, value);
            return true;
        }
        let Some(Bson::Document(d)) = cur.get_mut(p) else {
            return false;
        };
        cur = d;
    }
    false
}

impl Walk<'_> {
    fn invalid(&self, path: &str, reason: impl Into<String>) -> crate::EngineError {
        QeError::InvalidDocument {
            collection: self.collection.to_owned(),
            path: path.to_owned(),
            reason: reason.into(),
        }
        .into()
    }

    fn payload_err(&self, path: &str, source: cipherdoc_crypto::Error) -> crate::EngineError {
        QeError::Payload {
            collection: self.collection.to_owned(),
            path: path.to_owned(),
            source,
        }
        .into()
    }

    fn document(&mut self, doc: &Document, prefix: &str, in_array: bool) -> Result<()> {
        for (k, v) in doc {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if prefix.is_empty() && !in_array && k == SAFE_CONTENT {
                return Err(self.invalid(
                    &path,
                    "__safeContent__ is maintained by the server and cannot be written by clients; remove it",
                ));
            }
            self.value(v, &path, in_array)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &Bson, path: &str, in_array: bool) -> Result<()> {
        let rel = self.schema.map_or(PathRel::Plain, |s| s.relation(path));
        if let PathRel::Exact(f) = rel {
            if in_array {
                return Err(self.invalid(
                    path,
                    "encrypted fields cannot be inside arrays; move the field out of the array",
                ));
            }
            return self.encrypted(f, v);
        }
        match v {
            Bson::Document(d) => self.document(d, path, in_array),
            Bson::Array(items) => {
                for it in items {
                    self.value(it, path, true)?;
                }
                Ok(())
            }
            other => match encrypted_bytes(other) {
                // FLE1 ciphertexts (1, 2) carry no tokens and may live
                // anywhere; every QE blob and placeholder must be at an
                // encrypted field, or tokens/plaintext would be stored.
                Some(b) if matches!(b.first(), Some(1 | 2)) => Ok(()),
                Some(b) => Err(self.invalid(
                    path,
                    format!(
                        "{} at a path that is not an encrypted field of the collection; declare the field in encryptedFields or remove the value",
                        subtype_name(b.first())
                    ),
                )),
                None => Ok(()),
            },
        }
    }

    fn encrypted(&mut self, f: &FieldSpec, v: &Bson) -> Result<()> {
        let path = f.path.as_str();
        let Some(blob) = encrypted_bytes(v) else {
            return Err(self.invalid(
                path,
                "a plaintext value at an encrypted field; encrypt it on the client (nothing is stored in plaintext)",
            ));
        };
        let sub = blob.first().copied();
        match BlobSubtype::of(blob) {
            Ok(BlobSubtype::Fle2InsertUpdatePayloadV2) => self.insert_payload(f, blob),
            Ok(BlobSubtype::Fle2UnindexedEncryptedValueV2) => self.unindexed(f, blob),
            Ok(
                BlobSubtype::Fle2IndexedEqualityEncryptedValueV2
                | BlobSubtype::Fle2IndexedRangeEncryptedValueV2
                | BlobSubtype::Fle2IndexedTextEncryptedValue,
            ) if self.old.and_then(|o| get_path(o, path)) == Some(v) => {
                // The stored value the document already has, unchanged: keep
                // it and its tags (no new ESC position is taken).
                let tags = stored_tags(blob)
                    .ok_or_else(|| self.invalid(path, "the stored value is malformed"))?;
                self.carried.extend(tags);
                Ok(())
            }
            _ => Err(self.invalid(
                path,
                format!(
                    "{} cannot be written to an encrypted field; send an insert payload (11) for indexed fields or an unindexed value (16)",
                    subtype_name(sub.as_ref())
                ),
            )),
        }
    }

    fn check_type(&self, f: &FieldSpec, t: ElementType) -> Result<()> {
        if let Some(want) = f.bson_type
            && want.type_byte() != t as u8
        {
            return Err(self.invalid(
                &f.path,
                format!(
                    "the encrypted value has BSON type {t:?} but the field is declared as {:?}",
                    want.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn insert_payload(&mut self, f: &FieldSpec, blob: &[u8]) -> Result<()> {
        let path = f.path.as_str();
        let contention = match f.kind {
            FieldKind::Unindexed => {
                return Err(self.invalid(
                    path,
                    "the field is unindexed; send an unindexed value (16), not an insert payload",
                ));
            }
            FieldKind::Equality { contention }
            | FieldKind::Range { contention }
            | FieldKind::Text { contention } => contention,
        };
        let iup = InsertUpdatePayloadV2::decode(blob).map_err(|e| self.payload_err(path, e))?;
        if iup.index_key_id != f.key_id {
            return Err(self.invalid(
                path,
                "the payload's index key id is not the field's keyId; encrypt with the key named in encryptedFields",
            ));
        }
        self.check_type(f, iup.bson_type)?;
        let allowed = match f.kind {
            FieldKind::Text { .. } => iup.bson_type == ElementType::String,
            FieldKind::Range { .. } => {
                cipherdoc_crypto::efc::BsonTypeName::from_type_byte(iup.bson_type as u8)
                    .is_some_and(cipherdoc_crypto::efc::BsonTypeName::allows_range)
            }
            _ => cipherdoc_crypto::client::equality_type_allowed(iup.bson_type),
        };
        if !allowed {
            return Err(self.invalid(
                path,
                format!(
                    "BSON type {:?} is not allowed for this index kind",
                    iup.bson_type
                ),
            ));
        }
        if iup.contention_factor > contention {
            return Err(self.invalid(
                path,
                format!(
                    "contention factor {} exceeds the field's contention {contention}; queries would never find the value",
                    iup.contention_factor
                ),
            ));
        }
        self.check_shape(f, &iup)?;
        if !self.key_ids.insert(iup.index_key_id) {
            return Err(self.invalid(
                path,
                "two encrypted fields of one document use the same index key; give each field its own key",
            ));
        }
        let sets = token_sets(&iup).map_err(|e| self.payload_err(path, e))?;
        self.jobs.push(Job {
            doc: self.doc_index,
            path: path.to_owned(),
            iup,
            sets,
        });
        Ok(())
    }

    /// The payload's kind (equality, range edges, text token sets) must be
    /// the field's, with as many edges as the field's range options give,
    /// and text token sets only for the kinds the field indexes.
    fn check_shape(&self, f: &FieldSpec, iup: &InsertUpdatePayloadV2) -> Result<()> {
        let path = f.path.as_str();
        if let Some(b) = &iup.text_search_token_sets {
            let Some(index) = f.text.filter(|_| matches!(f.kind, FieldKind::Text { .. })) else {
                return Err(self.invalid(
                    path,
                    "a text-search insert payload for a field without text-search query types",
                ));
            };
            if iup.edge_token_sets.is_some() {
                return Err(self.invalid(path, "a text-search insert payload cannot carry edges"));
            }
            for (kind, present, indexed) in [
                ("prefix", !b.prefix.is_empty(), index.prefix.is_some()),
                ("suffix", !b.suffix.is_empty(), index.suffix.is_some()),
                (
                    "substring",
                    !b.substring.is_empty(),
                    index.substring.is_some(),
                ),
            ] {
                if present != indexed {
                    return Err(self.invalid(
                        path,
                        format!(
                            "the text-search insert payload's {kind} token sets do not fit the field's query types; encrypt with the collection's encryptedFields"
                        ),
                    ));
                }
            }
            return Ok(());
        }
        if matches!(f.kind, FieldKind::Text { .. }) {
            return Err(self.invalid(
                path,
                "a text-search field needs a text-search insert payload (with token sets for its query types)",
            ));
        }
        match (f.kind, iup.edge_token_sets.is_some()) {
            (FieldKind::Range { .. }, true) => {
                let got = iup.edge_token_sets.as_ref().map_or(0, Vec::len);
                match f.range_edges() {
                    None => {
                        return Err(self.invalid(
                            path,
                            "the field's range options (min, max, sparsity, trimFactor, precision) do not resolve for its bsonType; fix encryptedFields",
                        ));
                    }
                    Some(want) if want != got => {
                        return Err(self.invalid(
                            path,
                            format!(
                                "the range insert payload has {got} edges but the field's range options give {want}; encrypt with the collection's encryptedFields"
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            (FieldKind::Range { .. }, false) => {
                return Err(self.invalid(
                    path,
                    "a range field needs a range insert payload (with edges)",
                ));
            }
            (_, true) => {
                return Err(self.invalid(path, "an equality field got a range insert payload"));
            }
            _ => {}
        }
        Ok(())
    }

    fn unindexed(&self, f: &FieldSpec, blob: &[u8]) -> Result<()> {
        let path = f.path.as_str();
        if f.indexed() {
            return Err(self.invalid(
                path,
                "the field is indexed; send an insert payload (11), not an unindexed value",
            ));
        }
        let v = UnindexedEncryptedValueV2::decode(blob).map_err(|e| self.payload_err(path, e))?;
        if v.key_id != f.key_id {
            return Err(self.invalid(
                path,
                "the value is encrypted with another key than the field's keyId",
            ));
        }
        self.check_type(f, v.bson_type)
    }
}

/// Result of preparing a batch: the documents (payloads not yet replaced)
/// with their jobs and carried-over tags.
struct Prepared {
    docs: Vec<Document>,
    jobs: Vec<Job>,
    carried: Vec<Vec<Tag>>,
}

fn prepare(
    collection: &str,
    schema: Option<&QeSchema>,
    docs: Vec<Document>,
    old: Option<&Document>,
) -> Result<Prepared> {
    let mut jobs = Vec::new();
    let mut carried = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        let mut w = Walk {
            collection,
            schema,
            old,
            doc_index: i,
            jobs: Vec::new(),
            carried: Vec::new(),
            key_ids: HashSet::new(),
        };
        w.document(d, "", false)?;
        jobs.extend(w.jobs);
        carried.push(w.carried);
    }
    Ok(Prepared {
        docs,
        jobs,
        carried,
    })
}

/// Counts, ESC/ECOC writes and stored values for the prepared documents.
/// Token sets that repeat within the batch get consecutive positions from
/// one search.
async fn apply(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: Option<&QeSchema>,
    p: Prepared,
    wrote: &mut bool,
) -> Result<Vec<Document>> {
    let Prepared {
        mut docs,
        jobs,
        carried,
    } = p;
    let mut new_tags: Vec<Vec<Tag>> = vec![Vec::new(); docs.len()];
    if !jobs.is_empty() {
        // One search per distinct ESC counter.
        let mut slot: HashMap<[u8; 32], usize> = HashMap::new();
        let mut searches = Vec::new();
        for j in &jobs {
            for s in &j.sets {
                slot.entry(*s.esc.tag.as_bytes()).or_insert_with(|| {
                    searches.push(Search::new(&s.esc));
                    searches.len() - 1
                });
            }
        }
        // Queue behind concurrent writers of the same counters (a no-op
        // where writers are serialized anyway), in a fixed order.
        let mut counters: Vec<[u8; 32]> = slot.keys().copied().collect();
        counters.sort_unstable();
        super::state(tx)?
            .esc_lock_counters(collection, &counters)
            .await?;
        let results = probe::run(tx, collection, searches).await?;
        let mut next: Vec<u64> = Vec::with_capacity(results.len());
        for r in &results {
            next.push(r.insert_count().map_err(|source| QeError::State {
                collection: collection.to_owned(),
                source,
            })?);
        }
        let mut esc = Vec::new();
        let mut ecoc = Vec::new();
        let mut stored = Vec::with_capacity(jobs.len());
        // Three IVs of 16 bytes per stored equality value (more for range
        // edges, which refill), from one system call.
        let mut rng = PrefetchedRandom::new(48 * jobs.len());
        for j in &jobs {
            let mut counts = Vec::with_capacity(j.sets.len());
            for s in &j.sets {
                let i = slot.get(s.esc.tag.as_bytes()).copied().unwrap_or_default();
                let Some(c) = next.get_mut(i) else { continue };
                counts.push(*c);
                esc.push((non_anchor_id(&s.esc.tag, *c), None));
                ecoc.push(EcocEntry {
                    field_name: j.path.clone(),
                    value: s.ecoc_value.clone(),
                });
                *c = c.checked_add(1).ok_or_else(|| QeError::State {
                    collection: collection.to_owned(),
                    source: cipherdoc_crypto::Error::EscState("ESC position overflow".into()),
                })?;
            }
            stored.push(build_stored(
                collection, &j.path, &j.iup, &counts, &mut rng,
            )?);
        }
        // ESC first, so that a conflict (a concurrent writer took a
        // position) fails the write before it commits anything: at once,
        // or, where an engine defers the ESC insert (PostgreSQL under
        // fail-fast), in the round trip of the document insert.
        *wrote = true;
        let state = super::state(tx)?;
        state.esc_insert_many(collection, &esc).await?;
        state.ecoc_append_many(collection, &ecoc).await?;
        for (j, (blob, tags)) in jobs.iter().zip(stored) {
            let Some(doc) = docs.get_mut(j.doc) else {
                continue;
            };
            set_path(
                doc,
                &j.path,
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Encrypted,
                    bytes: blob,
                }),
            );
            if let Some(t) = new_tags.get_mut(j.doc) {
                t.extend(tags);
            }
        }
    }
    if schema.is_some_and(|s| s.fields.iter().any(FieldSpec::indexed)) {
        for ((doc, mut tags), kept) in docs.iter_mut().zip(new_tags).zip(carried) {
            tags.extend(kept);
            if !tags.is_empty() {
                let arr = tags
                    .into_iter()
                    .map(|t| {
                        Bson::Binary(Binary {
                            subtype: BinarySubtype::Generic,
                            bytes: t.as_bytes().to_vec(),
                        })
                    })
                    .collect();
                doc.insert(SAFE_CONTENT, Bson::Array(arr));
            }
        }
    }
    Ok(docs)
}

/// Insert `docs` (all or none) inside `tx`.
pub(crate) async fn insert(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: Option<&QeSchema>,
    docs: Vec<Document>,
    wrote: &mut bool,
) -> Result<Vec<Bson>> {
    let p = prepare(collection, schema, docs, None)?;
    let docs = apply(tx, collection, schema, p, wrote).await?;
    *wrote = true;
    tx.insert_many(collection, docs).await
}

/// Replace the document with `_id` `id` inside `tx`.
pub(crate) async fn replace(
    tx: &mut dyn Transaction,
    collection: &str,
    schema: Option<&QeSchema>,
    id: &Bson,
    doc: Document,
    wrote: &mut bool,
) -> Result<bool> {
    let opts = FindOptions {
        limit: Some(1),
        ..FindOptions::default()
    };
    let Some(old) = tx
        .find(collection, &Filter::eq("_id", id.clone()), &opts)
        .await?
        .pop()
    else {
        return Ok(false);
    };
    let p = prepare(collection, schema, vec![doc], Some(&old))?;
    let mut docs = apply(tx, collection, schema, p, wrote).await?;
    let Some(doc) = docs.pop() else {
        return Ok(false);
    };
    *wrote = true;
    tx.replace_one(collection, id, doc).await
}
