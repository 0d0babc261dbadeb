//! The application: its databases, routers and registered models.

mod builder;

pub use builder::AppBuilder;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bson::{Bson, Document};
use cipherdoc_crypto::efc::EncryptedFieldConfig;
use cipherdoc_engine::qe_server::{CompactionStats, CompactionTokens, QeError, QeServer};
use cipherdoc_engine::{Engine, QeRole};
use cipherdoc_kms::MasterKey as KmsMasterKey;

use crate::client_encryption::ClientEncryption;
use crate::connect::{open_encryption, open_engine};
use crate::encrypter::Encrypter;
use crate::error::{Error, PinnedMapProblem, Result};
use crate::keys::KeyStore;
use crate::model::{Model, ModelSchema};
use crate::queryset::QuerySet;
use crate::settings::{
    DatabaseSettings, EncryptionSettings, EngineSettings, ModelRef, ProviderChoiceError, Router,
    Routers, Settings,
};

/// One open database connection.
pub struct Database {
    alias: String,
    name: String,
    /// Where the engine stores the data (what `check --deploy` inspects).
    engine_settings: EngineSettings,
    engine: Arc<dyn Engine>,
    encryption: Option<DbEncryption>,
}

/// Queryable Encryption on a database.
pub struct DbEncryption {
    settings: EncryptionSettings,
    keys: Arc<KeyStore>,
    encrypter: Encrypter,
    master_keys: Vec<KmsMasterKey>,
    /// The pinned map by collection name, when configured.
    pinned: Option<BTreeMap<String, Document>>,
    /// encryptedFields read from the catalog, by collection.
    /// Parsed catalog entries, each valid while the catalog still holds
    /// the same document.
    catalog_cache: Mutex<BTreeMap<String, Arc<EncryptedFields>>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("alias", &self.alias)
            .field("name", &self.name)
            .field("engine", &self.engine.kind())
            .field("encrypted", &self.encryption.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DbEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbEncryption")
            .field("key_vault_namespace", &self.settings.key_vault_namespace)
            .field("pinned", &self.pinned.is_some())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens a database from its settings.
    pub async fn open(settings: &DatabaseSettings) -> Result<Self> {
        let raw = open_engine(settings).await?;
        let (engine, encryption) = match &settings.encryption {
            None => (raw, None),
            Some(enc) => {
                let opened = open_encryption(settings, enc, Arc::clone(&raw)).await?;
                let pinned = match &enc.encrypted_fields_map {
                    None => None,
                    Some(path) => Some(read_pinned_map(path, &settings.name, &settings.alias)?),
                };
                // Engines without a native QE server (SQLite, PostgreSQL) get
                // cipherdoc's: insert payloads become stored values, tags and
                // ESC/ECOC rows in the document's transaction; find payloads
                // become tag lookups. An engine whose database server plays
                // the role (MongoDB) is handed the payloads as they are.
                let engine: Arc<dyn Engine> = match raw.qe_role() {
                    QeRole::Client => Arc::new(QeServer::new(raw)),
                    _ => raw,
                };
                (
                    engine,
                    Some(DbEncryption {
                        settings: enc.clone(),
                        encrypter: Encrypter::new(Arc::clone(&opened.keys)),
                        keys: opened.keys,
                        master_keys: opened.master_keys,
                        pinned,
                        catalog_cache: Mutex::new(BTreeMap::new()),
                    }),
                )
            }
        };
        Ok(Self {
            alias: settings.alias.clone(),
            name: settings.name.clone(),
            engine_settings: settings.engine.clone(),
            engine,
            encryption,
        })
    }

    /// Compaction of an encrypted collection (MongoDB's
    /// `compactStructuredEncryptionData`): the client derives each field's
    /// ECOC token from its data key and hands them to the QE server role,
    /// which folds the ECOC into the ESC.
    pub async fn compact(&self, collection: &str) -> Result<CompactionStats> {
        let tokens = self.compaction_tokens(collection, "compact").await?;
        Ok(self.engine.compact(collection, &tokens).await?)
    }

    /// Cleanup of an encrypted collection (MongoDB's
    /// `cleanupStructuredEncryptionData`): compaction that also removes the
    /// ESC entries of deleted values.
    pub async fn cleanup(&self, collection: &str) -> Result<CompactionStats> {
        let tokens = self.compaction_tokens(collection, "clean up").await?;
        Ok(self.engine.cleanup(collection, &tokens).await?)
    }

    async fn compaction_tokens(
        &self,
        collection: &str,
        operation: &'static str,
    ) -> Result<CompactionTokens> {
        if self.encryption.is_none() {
            return Err(Error::NotEncrypted {
                alias: self.alias.clone(),
                operation,
            });
        }
        let doc = crate::migrations::compaction_tokens(self, collection).await?;
        parse_compaction_tokens(&self.namespace(collection), &doc)
    }

    /// Where the engine stores the data (the SQLite file, the PostgreSQL URL).
    pub fn engine_settings(&self) -> &EngineSettings {
        &self.engine_settings
    }

    /// The alias (`default`, `encrypted`).
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The database name (namespaces are `<name>.<collection>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The storage engine (for encrypted databases, with the QE server role).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Queryable Encryption, when configured.
    pub fn encryption(&self) -> Option<&DbEncryption> {
        self.encryption.as_ref()
    }

    /// The namespace of a collection.
    pub fn namespace(&self, collection: &str) -> String {
        format!("{}.{collection}", self.name)
    }

    /// The encryptedFields that govern `collection`: the pinned map's when
    /// one is configured (and the catalog must agree), else the catalog's.
    /// The catalog is read on every call, so a collection dropped and
    /// re-created by another process is seen at once; what is cached is
    /// only the parsed form, keyed by the catalog document itself.
    pub async fn encrypted_fields(&self, collection: &str) -> Result<Option<Arc<EncryptedFields>>> {
        let Some(enc) = &self.encryption else {
            return Ok(None);
        };
        let catalog = self
            .engine
            .describe_collection(collection)
            .await?
            .and_then(|info| info.options.encrypted_fields);
        let pinned_problem = |problem| Error::PinnedMap {
            alias: self.alias.clone(),
            namespace: self.namespace(collection),
            problem: Box::new(problem),
        };
        if let Some(pinned) = &enc.pinned {
            let Some(want) = pinned.get(collection) else {
                if catalog.is_some() {
                    return Err(pinned_problem(PinnedMapProblem::AbsentFromMap));
                }
                return Ok(None);
            };
            let config = EncryptedFieldConfig::from_document(want)
                .map_err(|e| pinned_problem(PinnedMapProblem::InvalidPinned(e)))?;
            let Some(cat) = catalog else {
                return Err(pinned_problem(PinnedMapProblem::MissingInDatabase));
            };
            let cat_cfg = EncryptedFieldConfig::from_document(&cat)
                .map_err(|e| pinned_problem(PinnedMapProblem::InvalidCatalog(e)))?;
            if !same_fields(&config, &cat_cfg) {
                return Err(pinned_problem(PinnedMapProblem::Differs));
            }
            return Ok(Some(Arc::new(EncryptedFields {
                document: want.clone(),
                config,
            })));
        }
        let Some(cat) = catalog else { return Ok(None) };
        let mut cache = enc
            .catalog_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = cache.get(collection)
            && hit.document == cat
        {
            return Ok(Some(Arc::clone(hit)));
        }
        let config =
            EncryptedFieldConfig::from_document(&cat).map_err(|source| Error::InvalidCatalog {
                namespace: self.namespace(collection),
                source,
            })?;
        let entry = Arc::new(EncryptedFields {
            document: cat,
            config,
        });
        cache.insert(collection.to_owned(), Arc::clone(&entry));
        Ok(Some(entry))
    }

    /// Forgets cached catalog entries (after migrations).
    pub fn forget_catalog(&self) {
        if let Some(enc) = &self.encryption {
            enc.catalog_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }
}

impl DbEncryption {
    /// The settings.
    pub fn settings(&self) -> &EncryptionSettings {
        &self.settings
    }

    /// The key store (vault, KMS providers, cached keys).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// The encrypter.
    pub fn encrypter(&self) -> &Encrypter {
        &self.encrypter
    }

    /// Explicit encryption and key management on this database.
    pub fn client_encryption(&self) -> ClientEncryption {
        ClientEncryption::new(Arc::clone(&self.keys), self.master_keys.clone())
    }

    /// The master key for new data keys of `provider` (or the default one).
    pub fn master_key_for(&self, provider: Option<&str>) -> Result<&KmsMasterKey> {
        let p = self.settings.provider_for(provider)?;
        let name = p.name.to_string();
        self.master_keys
            .iter()
            .find(|m| m.provider().to_string() == name)
            .ok_or_else(|| ProviderChoiceError::NoMasterKey(name).into())
    }

    /// Whether a pinned map is configured.
    pub fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// The pinned encrypted fields map by collection name, when configured.
    pub fn pinned_map(&self) -> Option<&BTreeMap<String, Document>> {
        self.pinned.as_ref()
    }
}

/// Compares what matters of two encryptedFields: paths, keys, types, queries.
fn same_fields(a: &EncryptedFieldConfig, b: &EncryptedFieldConfig) -> bool {
    a.fields.len() == b.fields.len()
        && a.fields.iter().zip(&b.fields).all(|(x, y)| {
            x.path == y.path
                && x.key == y.key
                && x.bson_type == y.bson_type
                && x.queries == y.queries
        })
}

/// Reads a pinned encrypted fields map: canonical extended JSON keyed by
/// `"<db>.<collection>"` (plain collection names are taken as this database's).
pub fn read_pinned_map(
    path: &Path,
    db_name: &str,
    alias: &str,
) -> Result<BTreeMap<String, Document>> {
    let setting = format!("databases.{alias}.encryption.encrypted_fields_map");
    let bad = |p: String| {
        Error::Settings(crate::settings::SettingsError::Invalid {
            path: setting.clone(),
            problem: p,
        })
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| bad(format!("{} is not JSON: {e}", path.display())))?;
    let Ok(Bson::Document(doc)) = Bson::try_from(json) else {
        return Err(bad(format!(
            "{} must hold one extended-JSON object",
            path.display()
        )));
    };
    let mut out = BTreeMap::new();
    for (ns, v) in doc {
        let coll = match ns.split_once('.') {
            Some((db, coll)) if db == db_name => coll.to_owned(),
            Some((db, _)) => {
                return Err(bad(format!(
                    "namespace \"{ns}\" belongs to database '{db}', not '{db_name}'"
                )));
            }
            None => ns.clone(),
        };
        let Bson::Document(efc) = v else {
            return Err(bad(format!(
                "\"{ns}\" must map to an encryptedFields document"
            )));
        };
        EncryptedFieldConfig::from_document(&efc).map_err(|e| bad(format!("\"{ns}\": {e}")))?;
        out.insert(coll, efc);
    }
    Ok(out)
}

/// The error for an alias that no database of the settings has.
fn no_such_database<'a>(alias: &str, configured: impl Iterator<Item = &'a str>) -> Error {
    Error::UnknownDatabase {
        alias: alias.to_owned(),
        configured: configured.map(str::to_owned).collect(),
    }
}

/// The encrypted fields of one collection, as they govern its reads and
/// writes: the `encryptedFields` document (pinned or from the catalog) and
/// its parsed form.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptedFields {
    document: Document,
    config: EncryptedFieldConfig,
}

impl EncryptedFields {
    /// The `encryptedFields` document, as MongoDB stores it.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The parsed configuration (paths, key ids, types, query types).
    pub fn config(&self) -> &EncryptedFieldConfig {
        &self.config
    }
}

/// The application: databases by alias, routers, registered models.
#[derive(Debug)]
pub struct App {
    databases: BTreeMap<String, Arc<Database>>,
    routers: Routers,
    models: Vec<&'static ModelSchema>,
    /// Models used without `register` whose schema has been validated, by
    /// the address of their `'static` schema.
    validated: Mutex<Vec<usize>>,
}

impl App {
    /// Starts an [`AppBuilder`]: add models and routers, then `open`
    /// validates them all before any database is opened.
    pub fn builder(settings: Settings) -> AppBuilder {
        AppBuilder::new(settings)
    }

    /// Opens every database of the settings.
    pub async fn open(settings: Settings) -> Result<Self> {
        let mut databases = BTreeMap::new();
        for db in &settings.databases {
            databases.insert(db.alias.clone(), Arc::new(Database::open(db).await?));
        }
        Ok(Self {
            databases,
            routers: settings.routers,
            models: Vec::new(),
            validated: Mutex::new(Vec::new()),
        })
    }

    /// Loads settings from `cipherdoc.toml` (or `CIPHERDOC_SETTINGS`) and opens them.
    pub async fn from_settings_file(path: Option<&Path>) -> Result<Self> {
        let settings = match path {
            Some(p) => Settings::from_file(p)?,
            None => Settings::load()?,
        };
        Self::open(settings).await
    }

    /// Puts `wrap(alias, engine)` in front of each database's engine: what
    /// every query set sends to a database (documents after client-side
    /// encryption, filters after find payloads) then passes through it. For
    /// instrumentation and for tests that inspect every write (the property
    /// test of the coverage rule does). Call it before the app is shared.
    #[must_use]
    pub fn map_engines(mut self, wrap: impl Fn(&str, Arc<dyn Engine>) -> Arc<dyn Engine>) -> Self {
        for (alias, db) in &mut self.databases {
            if let Some(db) = Arc::get_mut(db) {
                db.engine = wrap(alias, Arc::clone(&db.engine));
            }
        }
        self
    }

    /// Adds a router in code, asked before those from the settings file.
    #[must_use]
    pub fn with_router(mut self, router: impl Router + 'static) -> Self {
        let mut routers = Routers::default();
        routers.push(router);
        for r in std::mem::take(&mut self.routers).into_boxed() {
            routers.push_boxed(r);
        }
        self.routers = routers;
        self
    }

    /// Registers a model after checking the rules the derive could not see.
    pub fn register<M: Model>(mut self) -> Result<Self> {
        let schema = M::schema();
        schema.validate()?;
        if !self.models.iter().any(|m| std::ptr::eq(*m, schema)) {
            self.models.push(schema);
        }
        Ok(self)
    }

    /// Checks `schema` as [`App::register`] does, once per model: a model
    /// used without being registered gets exactly the registered models'
    /// rules (an encrypted field inside a list of embedded models, for
    /// example, is refused rather than stored in plaintext).
    pub(crate) fn validate_model(&self, schema: &'static ModelSchema) -> Result<()> {
        if self.models.iter().any(|m| std::ptr::eq(*m, schema)) {
            return Ok(());
        }
        let addr = std::ptr::from_ref(schema) as usize;
        let mut seen = self
            .validated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains(&addr) {
            schema.validate()?;
            seen.push(addr);
        }
        Ok(())
    }

    /// The registered models, in registration order.
    pub fn models(&self) -> &[&'static ModelSchema] {
        &self.models
    }

    /// The routers.
    pub fn routers(&self) -> &Routers {
        &self.routers
    }

    /// The database with this alias.
    pub fn database(&self, alias: &str) -> Result<&Arc<Database>> {
        self.databases
            .get(alias)
            .ok_or_else(|| no_such_database(alias, self.databases.keys().map(String::as_str)))
    }

    /// Every database.
    pub fn databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases.values()
    }

    /// The database a model is written to.
    pub fn db_for_write(&self, schema: &ModelSchema) -> Result<&Arc<Database>> {
        let alias = self.routers.db_for_write(ModelRef {
            app: &schema.app,
            model: &schema.name,
        });
        self.database(&alias)
    }

    /// The database a model is read from.
    pub fn db_for_read(&self, schema: &ModelSchema) -> Result<&Arc<Database>> {
        let alias = self.routers.db_for_read(ModelRef {
            app: &schema.app,
            model: &schema.name,
        });
        self.database(&alias)
    }

    /// The query set of a model: `app.objects::<Patient>()`.
    pub fn objects<M: Model>(&self) -> QuerySet<'_, M> {
        QuerySet::new(self)
    }
}

/// The compaction tokens that [`crate::migrations::compaction_tokens`] made
/// for `namespace`, in the engine's form.
pub(crate) fn parse_compaction_tokens(namespace: &str, doc: &Document) -> Result<CompactionTokens> {
    CompactionTokens::from_document(doc).map_err(|e| {
        let e = match e {
            QeError::Tokens { reason, .. } => QeError::Tokens {
                collection: namespace.to_owned(),
                reason,
            },
            other => other,
        };
        Error::Engine(e.into())
    })
}
