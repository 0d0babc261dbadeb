//! The encrypted fields map of the models (what `showencryptedfieldsmap`
//! prints and a production settings file pins), compaction tokens, and the
//! system check.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use cipherdoc_crypto::KeyId;
use cipherdoc_crypto::efc::{EncryptedFieldConfig, FieldKey};

use super::MigrationError;
use super::state::{ModelState, model_state};
use crate::app::{App, Database};
use crate::error::{Error, Result};
use crate::key_vault::key_id_of;
use crate::settings::ModelRef;

/// The keyAltName of an encrypted field's data key: `"<collection>.<path>"`.
pub fn alt_name(collection: &str, path: &str) -> String {
    format!("{collection}.{path}")
}

pub(crate) fn no_encryption(db: &Database, app: &str, ms: &ModelState) -> Error {
    let paths: Vec<&str> = ms
        .fields
        .iter()
        .filter(|f| f.encrypted)
        .map(|f| f.path.as_str())
        .collect();
    MigrationError::Refused(format!(
        "{app}.{} has encrypted fields ({}) but is routed to database '{}', which has no encryption settings; the reference refuses it too. Route the model's app to an encrypted database with a router (`[[routers]] app = \"{app}\", database = \"encrypted\"`) or add a [databases.{}.encryption] table",
        ms.model,
        paths.join(", "),
        db.alias(),
        db.alias()
    ))
    .into()
}

/// What [`encrypted_fields_for`] does about a field whose data key does not
/// exist yet.
#[derive(Debug)]
pub enum MissingKeys<'a> {
    /// The reference's "Have you migrated?" error.
    Refuse,
    /// Create it, and note its id here (so that a migration refused later
    /// can delete it again).
    Create(&'a mut Vec<KeyId>),
}

/// The `encryptedFields` of a model on `db`: `{fields: [{bsonType, path,
/// keyId, queries?}]}` in definition order. A missing data key is created
/// (with keyAltName `"<collection>.<path>"`, wrapped by the field's KMS
/// provider or the database's default) or refused, as `missing` says. Every
/// field's master key is resolved before any key is created, so a field
/// without one refuses the whole model, not its second half.
pub async fn encrypted_fields_for(
    db: &Database,
    app: &str,
    ms: &ModelState,
    mut missing: MissingKeys<'_>,
) -> Result<Document> {
    let Some(enc) = db.encryption() else {
        return Err(no_encryption(db, app, ms));
    };
    let vault = enc.keys().vault();
    if matches!(missing, MissingKeys::Create(_)) {
        for f in ms.fields.iter().filter(|f| f.encrypted) {
            master_for(db, app, ms, f)?;
        }
    }
    let mut fields = Vec::new();
    for f in ms.fields.iter().filter(|f| f.encrypted) {
        let alt = alt_name(&ms.collection, &f.path);
        let key_id = match vault.find_by_alt_name(&alt).await? {
            Some(d) => Binary {
                subtype: BinarySubtype::Uuid,
                bytes: key_id_of(&d)?.bytes().to_vec(),
            },
            None if matches!(missing, MissingKeys::Create(_)) => {
                let master = master_for(db, app, ms, f)?;
                let id = enc
                    .keys()
                    .create_data_key(master, vec![alt.clone()])
                    .await
                    .map_err(|source| MigrationError::DataKeyCreation {
                        alias: db.alias().to_owned(),
                        model: format!("{app}.{}", ms.model),
                        field: f.path.clone(),
                        source: Box::new(source),
                    })?;
                if let MissingKeys::Create(created) = &mut missing {
                    created.push(id);
                }
                id.to_binary()
            }
            None => {
                return Err(Error::KeyNotFound {
                    key: crate::error::KeyRef::AltName(alt.clone()),
                    field: Some(f.path.clone()),
                    namespace: Some(db.namespace(&ms.collection)),
                    database: Some(db.alias().to_owned()),
                });
            }
        };
        fields.push(Bson::Document(field_entry(app, ms, f, key_id)?));
    }
    Ok(doc! { "fields": fields })
}

/// One entry of `encryptedFields.fields`: `{bsonType, path, keyId, queries?}`.
pub(crate) fn field_entry(
    app: &str,
    ms: &ModelState,
    f: &super::FieldState,
    key_id: Binary,
) -> Result<Document> {
    let mut entry = doc! {
        "bsonType": f.bson_type.clone(),
        "path": f.path.clone(),
        "keyId": Bson::Binary(key_id),
    };
    if let Some(q) = &f.queries {
        let b = Bson::try_from(q.clone()).map_err(|e| {
            MigrationError::Inconsistent(format!(
                "queries of {app}.{} field '{}' are not extended JSON: {e}",
                ms.model, f.path
            ))
        })?;
        entry.insert("queries", b);
    }
    Ok(entry)
}

pub(crate) fn master_for<'d>(
    db: &'d Database,
    app: &str,
    ms: &ModelState,
    f: &super::FieldState,
) -> Result<&'d cipherdoc_kms::MasterKey> {
    let enc = db.encryption().ok_or_else(|| no_encryption(db, app, ms))?;
    enc.master_key_for(f.kms_provider.as_deref())
        .map_err(|e| Error::FieldKmsProvider {
            alias: db.alias().to_owned(),
            model: format!("{app}.{}", ms.model),
            field: f.path.clone(),
            source: Box::new(e),
        })
}

fn routed_here(app: &App, db: &Database, schema: &crate::model::ModelSchema) -> bool {
    app.routers()
        .allow_migrate(db.alias(), &schema.app, Some(&schema.name))
}

/// The encrypted fields map of database `alias`, keyed by
/// `"<db>.<collection>"`, for the registered models with encrypted fields
/// that the routers migrate there. Never creates keys.
pub async fn encrypted_fields_map(app: &App, alias: &str) -> Result<Document> {
    let db = app.database(alias)?;
    if db.encryption().is_none() {
        return Err(Error::NotEncrypted {
            alias: alias.to_owned(),
            operation: "have an encrypted fields map",
        });
    }
    let mut out = Document::new();
    for schema in app.models() {
        let ms = model_state(schema);
        if !ms.is_encrypted() || !routed_here(app, db, schema) {
            continue;
        }
        let efc = encrypted_fields_for(db, &schema.app, &ms, MissingKeys::Refuse).await?;
        out.insert(db.namespace(&ms.collection), efc);
    }
    Ok(out)
}

/// A map as pretty canonical extended JSON, pasteable as a pinned
/// `encrypted_fields_map` file.
pub fn encrypted_fields_map_json(map: &Document) -> String {
    let json = Bson::Document(map.clone()).into_canonical_extjson();
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

/// Whether two encryptedFields documents agree on what matters: paths,
/// keys, types and queries, in order.
pub(crate) fn same_fields_docs(a: &Document, b: &Document) -> bool {
    match (
        EncryptedFieldConfig::from_document(a),
        EncryptedFieldConfig::from_document(b),
    ) {
        (Ok(x), Ok(y)) => same_fields(&x, &y),
        _ => false,
    }
}

pub(crate) fn same_fields(a: &EncryptedFieldConfig, b: &EncryptedFieldConfig) -> bool {
    a.fields.len() == b.fields.len()
        && a.fields.iter().zip(&b.fields).all(|(x, y)| {
            x.path == y.path
                && x.key == y.key
                && x.bson_type == y.bson_type
                && x.queries == y.queries
        })
}

/// The compaction tokens of an encrypted collection: for each encrypted
/// field, its ECOCToken (derived from the field's data key), as
/// `{<path>: BinData(0, 32 bytes)}` — the `compactionTokens` argument of
/// MongoDB's `compactStructuredEncryptionData`.
pub async fn compaction_tokens(db: &Database, collection: &str) -> Result<Document> {
    let Some(enc) = db.encryption() else {
        return Err(Error::NotEncrypted {
            alias: db.alias().to_owned(),
            operation: "compact",
        });
    };
    let Some(efc) = db.encrypted_fields(collection).await? else {
        return Err(Error::NotEncryptedCollection {
            namespace: db.namespace(collection),
        });
    };
    let mut out = Document::new();
    for f in &efc.config().fields {
        let key = match &f.key {
            FieldKey::Id(id) => enc.keys().key(*id).await?,
            FieldKey::AltName(n) => enc.keys().key_by_alt_name(n).await?,
        };
        // Range and text-search fields also need the anchor padding root
        // (qe-protocol §9.7): `{ecoc, anchorPaddingToken}`, as libmongocrypt
        // sends it.
        out.insert(f.path.clone(), f.compaction_token(&key.tokens));
    }
    Ok(out)
}

/// How bad a [`check`] finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Severity {
    /// Something will fail.
    Error,
    /// Something looks wrong.
    Warning,
}

/// One finding of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMessage {
    /// How bad.
    pub severity: Severity,
    /// What and what to do.
    pub text: String,
}

/// Checks models, routers, encryption settings and, where a map is pinned,
/// that it matches the models and the key vault (and that migrated
/// collections match the models).
pub async fn check(app: &App) -> Result<Vec<CheckMessage>> {
    let mut out = Vec::new();
    let mut error = |t: String| {
        out.push(CheckMessage {
            severity: Severity::Error,
            text: t,
        });
    };
    let mut warnings = Vec::new();
    for schema in app.models() {
        let label = schema.label();
        if let Err(e) = schema.validate() {
            error(e.to_string());
            continue;
        }
        let ms = model_state(schema);
        let r = ModelRef {
            app: &schema.app,
            model: &schema.name,
        };
        let write = app.routers().db_for_write(r);
        let read = app.routers().db_for_read(r);
        let Ok(db) = app.database(&write) else {
            error(format!(
                "{label} is routed to database '{write}', which is not configured"
            ));
            continue;
        };
        if read != write {
            warnings.push(format!(
                "{label} is read from '{read}' but written to '{write}'"
            ));
        }
        if !routed_here(app, db, schema) {
            warnings.push(format!(
                "{label} is written to '{write}' but the routers do not allow migrating it there: `migrate --database {write}` will not create its collection"
            ));
        }
        if !ms.is_encrypted() {
            continue;
        }
        let Some(enc) = db.encryption() else {
            error(no_encryption(db, &schema.app, &ms).to_string());
            continue;
        };
        for f in ms.fields.iter().filter(|f| f.encrypted) {
            if let Err(e) = enc.master_key_for(f.kms_provider.as_deref()) {
                error(format!(
                    "{label} field '{}' (database '{write}'): {e}",
                    f.path
                ));
            }
        }
        for e in check_collection(db, schema, &ms, &label).await {
            error(e);
        }
    }
    for db in app.databases() {
        let Some(enc) = db.encryption() else { continue };
        let Some(pinned) = enc.pinned_map() else {
            continue;
        };
        let setting = format!("databases.{}.encryption.encrypted_fields_map", db.alias());
        let want = match encrypted_fields_map(app, db.alias()).await {
            Ok(w) => w,
            Err(e) => {
                error(format!("{setting}: cannot compare with the models: {e}"));
                continue;
            }
        };
        for (ns, efc) in &want {
            let coll = ns.split_once('.').map_or(ns.as_str(), |(_, c)| c);
            let Bson::Document(efc) = efc else { continue };
            match pinned.get(coll) {
                None => error(format!(
                    "{setting}: {ns} is missing; paste the output of `showencryptedfieldsmap --database {}`",
                    db.alias()
                )),
                Some(p) if !same_fields_docs(p, efc) => error(format!(
                    "{setting}: {ns} differs from the models and the key vault (other paths, keys, types or queries); regenerate it with `showencryptedfieldsmap --database {}`",
                    db.alias()
                )),
                Some(_) => {}
            }
        }
        for (coll, efc) in pinned {
            let ns = db.namespace(coll);
            if !want.contains_key(&ns) {
                warnings.push(format!(
                    "{setting}: {ns} is pinned but no registered model with encrypted fields is migrated there"
                ));
            }
            let cfg = match EncryptedFieldConfig::from_document(efc) {
                Ok(cfg) => cfg,
                Err(e) => {
                    error(format!("{setting}: {ns}: {e}"));
                    continue;
                }
            };
            {
                for f in &cfg.fields {
                    let FieldKey::Id(id) = &f.key else { continue };
                    match enc
                        .keys()
                        .vault()
                        .find_by_id(bson::Uuid::from_bytes(*id.as_bytes()))
                        .await
                    {
                        Ok(Some(_)) => {}
                        Ok(None) => error(format!(
                            "{setting}: {ns} field '{}' names key {id}, which is not in the key vault",
                            f.path
                        )),
                        Err(e) => error(format!(
                            "{setting}: {ns} field '{}': cannot read key {id}: {e}",
                            f.path
                        )),
                    }
                }
            }
        }
    }
    out.extend(warnings.into_iter().map(|t| CheckMessage {
        severity: Severity::Warning,
        text: t,
    }));
    Ok(out)
}

/// What `check` finds about a model's migrated collection: that it still
/// matches the model (every error reported, none dropped) and that its
/// encrypted fields cover the model (the rule every operation is held to).
async fn check_collection(
    db: &Database,
    schema: &crate::model::ModelSchema,
    ms: &ModelState,
    label: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut error = |t: String| out.push(t);
    // A migrated collection must still match the model.
    let ns = db.namespace(&ms.collection);
    let described = match db.engine().describe_collection(&ms.collection).await {
        Ok(d) => d,
        Err(e) => {
            error(format!("{ns}: cannot read the collection: {e}"));
            return out;
        }
    };
    if let Some(info) = described {
        match (
            &info.options.encrypted_fields,
            encrypted_fields_for(db, &schema.app, ms, MissingKeys::Refuse).await,
        ) {
            (None, _) => error(format!(
                "{ns} exists without encryption but {label} has encrypted fields; drop it (after saving its data) and migrate"
            )),
            (Some(cat), Ok(want)) if !same_fields_docs(cat, &want) => error(format!(
                "{ns}: the collection's encryptedFields differ from {label}'s encrypted fields; encrypted fields cannot change on an existing collection: create a new model and copy the data"
            )),
            (Some(_), Ok(_)) => {}
            (Some(_), Err(e)) => error(format!(
                "{ns}: cannot compare the collection with {label}'s encrypted fields: {e}"
            )),
        }
        // The rule every operation of the model is held to.
        match db.encrypted_fields(&ms.collection).await {
            Ok(efc) => {
                if let Some((p, reason)) = crate::coverage::first_gap(
                    schema,
                    efc.as_deref().map(crate::app::EncryptedFields::config),
                ) {
                    error(
                        Error::EncryptedFieldNotCovered {
                            alias: db.alias().to_owned(),
                            model: label.to_owned(),
                            field: p.path,
                            namespace: ns.clone(),
                            reason: Box::new(reason),
                        }
                        .to_string(),
                    );
                }
            }
            Err(e) => error(format!("{ns}: {e}")),
        }
    }
    out
}
