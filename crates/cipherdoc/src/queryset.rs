//! Query sets: `app.objects::<Patient>()`, lazily built, run on await.
//!
//! A query set resolves its model's database through the routers, turns its
//! [`Q`] into an engine filter, lets the encrypter replace constants on
//! encrypted paths by find payloads, and decrypts what comes back. What QE
//! forbids (ordering or grouping by an encrypted field, multi-document
//! updates, encrypted fields on a database without encryption) is refused
//! here, before anything reaches the engine.

use std::marker::PhantomData;
use std::sync::Arc;

use bson::{Bson, Document};
use cipherdoc_engine::{FieldOp, Filter, FindOptions, SortDirection, TxMode, transact};

use crate::app::{App, Database, EncryptedFields};
use crate::coverage;
use crate::error::{Error, FieldUse, Refusal, Result};
use crate::model::{
    Cond, Expr, FieldPath, FieldValue, Lookup, Model, ModelError, ModelSchema, OrderBy, Q,
};

/// A lazily evaluated query over one model.
pub struct QuerySet<'a, M: Model> {
    app: &'a App,
    q: Q<M>,
    order: Vec<OrderBy<M>>,
    skip: u64,
    limit: Option<u64>,
    using: Option<String>,
    marker: PhantomData<fn() -> M>,
}

impl<M: Model> Clone for QuerySet<'_, M> {
    fn clone(&self) -> Self {
        Self {
            app: self.app,
            q: self.q.clone(),
            order: self.order.clone(),
            skip: self.skip,
            limit: self.limit,
            using: self.using.clone(),
            marker: PhantomData,
        }
    }
}

impl<M: Model> std::fmt::Debug for QuerySet<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySet")
            .field("model", &M::schema().label())
            .field("skip", &self.skip)
            .field("limit", &self.limit)
            .field("using", &self.using)
            .finish_non_exhaustive()
    }
}

fn label<M: Model>() -> String {
    M::schema().label()
}

impl<'a, M: Model> QuerySet<'a, M> {
    pub(crate) fn new(app: &'a App) -> Self {
        Self {
            app,
            q: Q::all(),
            order: Vec::new(),
            skip: 0,
            limit: None,
            using: None,
            marker: PhantomData,
        }
    }

    /// Keeps the documents matching `q` (and what was already kept).
    #[must_use]
    pub fn filter(&self, q: Q<M>) -> Self {
        let mut s = self.clone();
        s.q = s.q & q;
        s
    }

    /// Drops the documents matching `q`.
    #[must_use]
    pub fn exclude(&self, q: Q<M>) -> Self {
        let mut s = self.clone();
        s.q = s.q & !q;
        s
    }

    /// Sorts by a plaintext field (encrypted fields cannot be ordered).
    #[must_use]
    pub fn order_by(&self, order: OrderBy<M>) -> Self {
        let mut s = self.clone();
        s.order.push(order);
        s
    }

    /// At most `n` documents.
    #[must_use]
    pub fn limit(&self, n: u64) -> Self {
        let mut s = self.clone();
        s.limit = Some(n);
        s
    }

    /// Skips the first `n` documents.
    #[must_use]
    pub fn offset(&self, n: u64) -> Self {
        let mut s = self.clone();
        s.skip = n;
        s
    }

    /// Runs on the database `alias` instead of the one the routers choose
    /// (Django's `using`). The rules stay: a model with encrypted fields is
    /// still refused on a database without encryption, and an unknown alias
    /// is an error naming it.
    #[must_use]
    pub fn using(&self, alias: &str) -> Self {
        let mut s = self.clone();
        s.using = Some(alias.to_owned());
        s
    }

    fn read_db(&self) -> Result<&'a Arc<Database>> {
        match &self.using {
            Some(alias) => self.app.database(alias),
            None => self.app.db_for_read(M::schema()),
        }
    }

    fn write_db(&self) -> Result<&'a Arc<Database>> {
        match &self.using {
            Some(alias) => self.app.database(alias),
            None => self.app.db_for_write(M::schema()),
        }
    }

    /// The one door of every operation: validates an unregistered model on
    /// first use, resolves the collection's encrypted fields once (pinned
    /// map or catalog) and holds them to the coverage rule
    /// ([`crate::coverage`]). Writes of a model with encrypted fields to a
    /// database without encryption are refused here too.
    async fn target(&self, db: &'a Arc<Database>, access: Access) -> Result<Target<'a>> {
        let schema = M::schema();
        self.app.validate_model(schema)?;
        if db.encryption().is_none() {
            if access == Access::Store
                && let Some(p) = schema.encrypted_paths().first()
            {
                return Err(Error::Refused {
                    model: label::<M>(),
                    refusal: Refusal::EncryptedFieldOnPlainDatabase {
                        access: FieldUse::Store,
                        field: leaf(&p.path).to_owned(),
                        alias: db.alias().to_owned(),
                    },
                });
            }
            return Ok(Target { db, efc: None });
        }
        if access != Access::Filter
            && let Some(migration) =
                crate::migrations::copy_in_progress(db, &schema.collection).await?
        {
            return Err(Error::CopyInProgress {
                model: label::<M>(),
                alias: db.alias().to_owned(),
                namespace: db.namespace(&schema.collection),
                migration,
            });
        }
        let efc = db.encrypted_fields(&schema.collection).await?;
        if let Some((p, reason)) =
            coverage::first_gap(schema, efc.as_deref().map(EncryptedFields::config))
        {
            return Err(Error::EncryptedFieldNotCovered {
                alias: db.alias().to_owned(),
                model: label::<M>(),
                field: p.path,
                namespace: db.namespace(&schema.collection),
                reason: Box::new(reason),
            });
        }
        Ok(Target { db, efc })
    }

    /// The filter the engine will see, with find payloads.
    async fn engine_filter(&self, target: &Target<'_>) -> Result<Filter> {
        let expr = self.q.expr()?;
        let plain = to_filter::<M>(expr, target.db)?;
        match (target.db.encryption(), &target.efc) {
            (Some(enc), Some(efc)) => {
                enc.encrypter()
                    .encrypt_filter(&ns::<M>(target.db), &plain, efc.config())
                    .await
            }
            // The coverage rule has refused a model with encrypted fields
            // on an unencrypted collection; this guards filters built from
            // conditions the schema does not list.
            (Some(_), None) if expr_has_encrypted(expr) => Err(not_migrated::<M>(target.db)),
            _ => Ok(plain),
        }
    }

    fn find_options(&self) -> Result<FindOptions> {
        let encrypted = encrypted_paths(M::schema());
        let mut sort = Vec::new();
        for o in &self.order {
            if let Some(p) = encrypted.iter().find(|p| is_within(&o.path, p)) {
                return Err(Error::Refused {
                    model: label::<M>(),
                    refusal: Refusal::OrderByEncrypted {
                        path: o.path.clone(),
                        encrypted: p.clone(),
                    },
                });
            }
            sort.push((
                o.path.clone(),
                if o.descending {
                    SortDirection::Descending
                } else {
                    SortDirection::Ascending
                },
            ));
        }
        Ok(FindOptions {
            sort,
            skip: self.skip,
            limit: self.limit,
            ..FindOptions::default()
        })
    }

    async fn fetch(&self, opts: &FindOptions) -> Result<Vec<Document>> {
        let target = self.target(self.read_db()?, Access::Filter).await?;
        let db = target.db;
        let filter = self.engine_filter(&target).await?;
        let coll = &M::schema().collection;
        let docs = db.engine().find(coll, &filter, opts).await?;
        match db.encryption() {
            None => Ok(docs),
            Some(enc) => {
                let model = ns::<M>(db);
                let efc = target.efc.as_deref().map(EncryptedFields::config);
                let mut out = Vec::with_capacity(docs.len());
                for d in docs {
                    out.push(enc.encrypter().decrypt_document(&model, d, efc).await?);
                }
                Ok(out)
            }
        }
    }

    /// Every matching model.
    pub async fn all(&self) -> Result<Vec<M>> {
        let opts = self.find_options()?;
        self.fetch(&opts)
            .await?
            .into_iter()
            .map(|d| M::from_document(d).map_err(Error::from))
            .collect()
    }

    /// The first matching model (in the query set's order).
    pub async fn first(&self) -> Result<Option<M>> {
        Ok(self.limit(1).all().await?.into_iter().next())
    }

    /// The one model matching `q`; an error when none or several match.
    pub async fn get(&self, q: Q<M>) -> Result<M> {
        let mut found = self.filter(q).limit(2).all().await?;
        match found.len() {
            0 => Err(Error::DoesNotExist {
                model: label::<M>(),
            }),
            1 => Ok(found.remove(0)),
            _ => Err(Error::MultipleObjectsReturned {
                model: label::<M>(),
            }),
        }
    }

    /// How many documents match.
    pub async fn count(&self) -> Result<u64> {
        let target = self.target(self.read_db()?, Access::Filter).await?;
        let filter = self.engine_filter(&target).await?;
        let n = target
            .db
            .engine()
            .count(&M::schema().collection, &filter)
            .await?;
        let n = n.saturating_sub(self.skip);
        Ok(self.limit.map_or(n, |l| n.min(l)))
    }

    /// Whether any document matches.
    pub async fn exists(&self) -> Result<bool> {
        Ok(self.count().await? > 0)
    }

    /// Only these fields (dotted paths), decrypted, as documents.
    pub async fn values(&self, paths: &[&str]) -> Result<Vec<Document>> {
        let opts = self.find_options()?;
        let docs = self.fetch(&opts).await?;
        Ok(docs
            .into_iter()
            .map(|d| {
                let mut out = Document::new();
                for p in paths {
                    if let Some(v) = get_path(&d, p) {
                        out.insert(*p, v.clone());
                    }
                }
                out
            })
            .collect())
    }

    /// One field of every matching model, decrypted and typed (Django's
    /// `values_list("field", flat=True)`): the field is named by its typed
    /// path, so the result has the field's Rust type and a misspelt field
    /// does not compile.
    ///
    /// ```no_run
    /// # async fn run(app: &cipherdoc::App) -> cipherdoc::Result<()> {
    /// # #[derive(cipherdoc::Model)]
    /// # #[model(app = "myapp")]
    /// # pub struct Patient { pub id: cipherdoc::bson::oid::ObjectId, pub name: String,
    /// #   #[encrypted(queries = "equality")] pub ssn: String }
    /// let ssns: Vec<String> = app.objects::<Patient>().values_list(&Patient::fields().ssn).await?;
    /// # Ok(()) }
    /// ```
    pub async fn values_list<T: FieldValue, C>(
        &self,
        field: &FieldPath<M, T, C>,
    ) -> Result<Vec<T>> {
        let opts = self.find_options()?;
        let docs = self.fetch(&opts).await?;
        docs.into_iter()
            .map(|d| {
                match get_path(&d, field.path()) {
                    Some(v) => T::from_bson(v.clone()),
                    None => T::from_missing(),
                }
                .map_err(|source| {
                    Error::Model(ModelError::Value {
                        model: M::schema().label(),
                        path: field.path().to_owned(),
                        source,
                    })
                })
            })
            .collect()
    }

    /// Deletes every matching document; returns how many.
    pub async fn delete(&self) -> Result<u64> {
        let target = self.target(self.write_db()?, Access::Delete).await?;
        let filter = self.engine_filter(&target).await?;
        Ok(target
            .db
            .engine()
            .delete_many(&M::schema().collection, &filter)
            .await?)
    }

    /// Multi-document updates: refused on encrypted connections, as MongoDB
    /// refuses them with Queryable Encryption.
    pub async fn update(&self, set: Document) -> Result<u64> {
        let db = self.write_db()?;
        if db.encryption().is_some() {
            return Err(Error::Refused {
                model: label::<M>(),
                refusal: Refusal::MultiDocumentUpdate {
                    alias: db.alias().to_owned(),
                },
            });
        }
        let target = self.target(db, Access::Store).await?;
        let filter = self.engine_filter(&target).await?;
        let coll = M::schema().collection.clone();
        // One transaction: the documents read are the documents replaced,
        // and a failure part way leaves none of them changed.
        let n = transact(&**db.engine(), TxMode::Write, move |tx| {
            Box::pin(async move {
                let docs = tx.find(&coll, &filter, &FindOptions::default()).await?;
                let mut n = 0;
                for mut d in docs {
                    for (k, v) in &set {
                        d.insert(k.clone(), v.clone());
                    }
                    let id = d.get("_id").cloned().unwrap_or(Bson::Null);
                    if tx.replace_one(&coll, &id, d).await? {
                        n += 1;
                    }
                }
                Ok(n)
            })
        })
        .await?;
        Ok(n)
    }

    /// Distinct values of a plaintext field (grouping on an encrypted field
    /// is refused).
    pub async fn distinct(&self, path: &str) -> Result<Vec<Bson>> {
        if let Some(p) = encrypted_paths(M::schema())
            .iter()
            .find(|p| is_within(path, p))
        {
            return Err(Error::Refused {
                model: label::<M>(),
                refusal: Refusal::GroupByEncrypted {
                    path: path.to_string(),
                    encrypted: p.clone(),
                },
            });
        }
        let mut out: Vec<Bson> = Vec::new();
        for d in self.fetch(&self.find_options()?).await? {
            if let Some(v) = get_path(&d, path)
                && !out.contains(v)
            {
                out.push(v.clone());
            }
        }
        Ok(out)
    }

    /// A model as the engine must receive it: its document, encrypted by
    /// the target's (checked) encrypted fields.
    async fn prepare(&self, target: &Target<'_>, m: &M) -> Result<Document> {
        let doc = m.to_document()?;
        match (target.db.encryption(), &target.efc) {
            (Some(enc), Some(efc)) => {
                enc.encrypter()
                    .encrypt_document(&ns::<M>(target.db), &doc, efc.config())
                    .await
            }
            _ => Ok(doc),
        }
    }

    /// Inserts a model.
    pub async fn create(&self, m: M) -> Result<M> {
        let target = self.target(self.write_db()?, Access::Store).await?;
        let doc = self.prepare(&target, &m).await?;
        target
            .db
            .engine()
            .insert_one(&M::schema().collection, doc)
            .await?;
        Ok(m)
    }

    /// Inserts several models.
    pub async fn bulk_create(&self, ms: Vec<M>) -> Result<Vec<M>> {
        if ms.is_empty() {
            return Ok(ms);
        }
        let target = self.target(self.write_db()?, Access::Store).await?;
        let mut docs = Vec::with_capacity(ms.len());
        for m in &ms {
            docs.push(self.prepare(&target, m).await?);
        }
        target
            .db
            .engine()
            .insert_many(&M::schema().collection, docs)
            .await?;
        Ok(ms)
    }

    /// Saves a model: replaces the stored document with the same id, or
    /// inserts it when there is none.
    pub async fn save(&self, m: &M) -> Result<()> {
        let target = self.target(self.write_db()?, Access::Store).await?;
        let doc = self.prepare(&target, m).await?;
        let id = Bson::ObjectId(*m.id());
        let coll = M::schema().collection.clone();
        // One transaction: a concurrent save of the same new object cannot
        // slip between the replace that finds nothing and the insert.
        transact(&**target.db.engine(), TxMode::Write, move |tx| {
            Box::pin(async move {
                if !tx.replace_one(&coll, &id, doc.clone()).await? {
                    tx.insert_one(&coll, doc).await?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(())
    }

    /// The model matching `q`, or a new one from `make` (created); `true` when created.
    pub async fn get_or_create(&self, q: Q<M>, make: impl FnOnce() -> M) -> Result<(M, bool)> {
        match self.get(q).await {
            Ok(m) => Ok((m, false)),
            Err(Error::DoesNotExist { .. }) => Ok((self.create(make()).await?, true)),
            Err(e) => Err(e),
        }
    }

    /// Updates the model matching `q` from `update` (keeping its id), or
    /// creates one from `make`; `true` when created.
    pub async fn update_or_create(
        &self,
        q: Q<M>,
        update: impl FnOnce(M) -> M,
        make: impl FnOnce() -> M,
    ) -> Result<(M, bool)> {
        match self.get(q).await {
            Ok(m) => {
                let id = *m.id();
                let updated = update(m);
                if *updated.id() != id {
                    return Err(Error::Refused {
                        model: label::<M>(),
                        refusal: Refusal::IdChanged,
                    });
                }
                self.save(&updated).await?;
                Ok((updated, false))
            }
            Err(Error::DoesNotExist { .. }) => Ok((self.create(make()).await?, true)),
            Err(e) => Err(e),
        }
    }
}

/// What an operation sends to the database: the coverage rule holds for
/// both; storing documents of encrypted models in a database without
/// encryption is refused as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Only a filter (reads, counts).
    Filter,
    /// A filter whose documents are deleted.
    Delete,
    /// Documents (create, save, updates).
    Store,
}

/// A database and the encrypted fields of the model's collection, resolved
/// once for one operation and checked against the model.
struct Target<'a> {
    db: &'a Arc<Database>,
    efc: Option<Arc<EncryptedFields>>,
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn ns<M: Model>(db: &Database) -> String {
    format!(
        "{} ({})",
        label::<M>(),
        db.namespace(&M::schema().collection)
    )
}

fn not_migrated<M: Model>(db: &Database) -> Error {
    Error::Refused {
        model: label::<M>(),
        refusal: Refusal::NotMigrated {
            namespace: db.namespace(&M::schema().collection),
            alias: db.alias().to_owned(),
        },
    }
}

fn encrypted_paths(schema: &ModelSchema) -> Vec<String> {
    schema
        .encrypted_paths()
        .into_iter()
        .map(|p| p.path)
        .collect()
}

/// `path` is the encrypted path `enc` or lies inside it.
fn is_within(path: &str, enc: &str) -> bool {
    path == enc || path.strip_prefix(enc).is_some_and(|r| r.starts_with('.'))
}

fn expr_has_encrypted(e: &Expr) -> bool {
    match e {
        Expr::Cond(c) => c.encrypted.is_some(),
        Expr::And(v) | Expr::Or(v) => v.iter().any(expr_has_encrypted),
        Expr::Not(x) => expr_has_encrypted(x),
    }
}

fn get_path<'d>(d: &'d Document, path: &str) -> Option<&'d Bson> {
    let mut parts = path.split('.');
    let mut cur = d.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(x) => x.get(p)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// The engine filter of a model query (constants still plaintext).
fn to_filter<M: Model>(e: &Expr, db: &Database) -> Result<Filter> {
    Ok(match e {
        Expr::And(v) => Filter::And(
            v.iter()
                .map(|x| to_filter::<M>(x, db))
                .collect::<Result<_>>()?,
        ),
        Expr::Or(v) => Filter::Or(
            v.iter()
                .map(|x| to_filter::<M>(x, db))
                .collect::<Result<_>>()?,
        ),
        Expr::Not(x) => Filter::Not(Box::new(to_filter::<M>(x, db)?)),
        Expr::Cond(c) => cond_filter::<M>(c, db)?,
    })
}

fn misuse(c: &Cond, needs: &'static str) -> Error {
    Error::LookupMisuse {
        path: c.path.clone(),
        lookup: format!("{:?}", c.lookup).to_lowercase(),
        needs,
    }
}

fn cond_filter<M: Model>(c: &Cond, db: &Database) -> Result<Filter> {
    if c.encrypted.is_some() && db.encryption().is_none() {
        return Err(Error::Refused {
            model: label::<M>(),
            refusal: Refusal::EncryptedFieldOnPlainDatabase {
                access: FieldUse::Query,
                field: c.path.clone(),
                alias: db.alias().to_owned(),
            },
        });
    }
    let field = |op| Filter::Field {
        path: c.path.clone(),
        op,
    };
    let array = || match &c.value {
        Bson::Array(a) => Ok(a.clone()),
        _ => Err(misuse(c, "a list")),
    };
    Ok(match c.lookup {
        Lookup::Eq => field(FieldOp::Eq(c.value.clone())),
        Lookup::Ne => field(FieldOp::Ne(c.value.clone())),
        Lookup::In => field(FieldOp::In(array()?)),
        Lookup::Lt => field(FieldOp::Lt(c.value.clone())),
        Lookup::Lte => field(FieldOp::Lte(c.value.clone())),
        Lookup::Gt => field(FieldOp::Gt(c.value.clone())),
        Lookup::Gte => field(FieldOp::Gte(c.value.clone())),
        Lookup::Range => match array()?.as_slice() {
            [lo, hi] => Filter::And(vec![
                field(FieldOp::Gte(lo.clone())),
                field(FieldOp::Lte(hi.clone())),
            ]),
            _ => {
                return Err(misuse(c, "a list [low, high]"));
            }
        },
        Lookup::Contains | Lookup::StartsWith | Lookup::EndsWith => {
            let Bson::String(s) = &c.value else {
                return Err(misuse(c, "a string"));
            };
            field(match c.lookup {
                Lookup::Contains => FieldOp::Contains(s.clone()),
                Lookup::StartsWith => FieldOp::StartsWith(s.clone()),
                _ => FieldOp::EndsWith(s.clone()),
            })
        }
        Lookup::IsNull => match c.value {
            Bson::Boolean(true) => field(FieldOp::Eq(Bson::Null)),
            _ => field(FieldOp::Ne(Bson::Null)),
        },
    })
}
