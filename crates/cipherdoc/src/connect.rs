//! From settings to live connections: engines, key vaults, KMS providers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use cipherdoc_engine::Engine;
use cipherdoc_kms::{
    AwsCredentials, AzureCredentials, Endpoint, GcpCredentials, KeyTrust, KmipCredentials,
    KmsCredentials, KmsProviders, LocalCredentials, MasterKey as KmsMasterKey, ProviderSettings,
    Secret, SecretBytes,
};

use crate::error::{Error, Result};
use crate::key_vault::EngineKeyVault;
use crate::keys::{KeyCheckValues, KeyStore};
use crate::settings::{
    DatabaseSettings, EncryptionSettings, EngineSettings, KmsCredentialsSettings, SecretSource,
    SettingsError,
};

fn setting_err(path: String, problem: impl Into<String>) -> Error {
    Error::Settings(SettingsError::Invalid {
        path,
        problem: problem.into(),
    })
}

/// Opens the storage engine of a database.
pub async fn open_engine(db: &DatabaseSettings) -> Result<Arc<dyn Engine>> {
    match &db.engine {
        #[cfg(feature = "sqlite")]
        EngineSettings::Sqlite { path, max_size_mb } => {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    setting_err(
                        format!("databases.{}.path", db.alias),
                        format!("cannot create {}: {e}", dir.display()),
                    )
                })?;
            }
            let mut options = cipherdoc_engine::sqlite::SqliteOptions::default();
            if let Some(mb) = max_size_mb {
                options = options.max_size_bytes(mb.saturating_mul(1 << 20));
            }
            let engine =
                cipherdoc_engine::sqlite::SqliteEngine::open_with(path, options).map_err(|e| {
                    setting_err(
                        format!("databases.{}.path", db.alias),
                        format!("cannot open {}: {e}", path.display()),
                    )
                })?;
            Ok(Arc::new(engine))
        }
        #[cfg(feature = "postgres")]
        EngineSettings::Postgres { url, tls_ca_file } => {
            use cipherdoc_engine::postgres::{PgConnectError, PgEngine, PgOptions};
            let mut options = PgOptions::default();
            options.tls_ca_file.clone_from(tls_ca_file);
            // One PostgreSQL schema per cipherdoc database (see the engine's docs).
            let engine = PgEngine::connect_with(url.expose(), &db.name, options)
                .await
                .map_err(|e| match e {
                    cipherdoc_engine::EngineError::PostgresConnect(source) => {
                        let key = match &source {
                            PgConnectError::CaFile { path, .. }
                                if Some(path) == tls_ca_file.as_ref() =>
                            {
                                "tls_ca_file"
                            }
                            _ => "url",
                        };
                        Error::Settings(SettingsError::Postgres {
                            path: format!("databases.{}.{key}", db.alias),
                            source,
                        })
                    }
                    e => setting_err(
                        format!("databases.{}.url", db.alias),
                        format!("cannot connect: {e}"),
                    ),
                })?;
            Ok(Arc::new(engine))
        }
        #[cfg(feature = "mongodb")]
        EngineSettings::Mongodb { url } => {
            let path = format!("databases.{}.url", db.alias);
            let url = url
                .read_string()
                .map_err(|p| setting_err(path.clone(), p))?;
            let engine = cipherdoc_mongodb::MongoEngine::connect(&url, &db.name)
                .await
                .map_err(|e| setting_err(path.clone(), format!("cannot connect: {e}")))?;
            check_mongodb(db, &engine).map_err(|p| setting_err(path, p))?;
            Ok(Arc::new(engine))
        }
    }
}

/// What an encrypted database needs of its MongoDB deployment: drivers
/// refuse Queryable Encryption on a standalone server (it has no
/// transactions, and the server's QE writes need them), and QE protocol v2
/// needs MongoDB 7.0 (wire version 21). Range fields' need for 8.0 is
/// checked where the fields are known (creating the collection, and a
/// pinned map when the database is opened).
#[cfg(feature = "mongodb")]
fn check_mongodb(
    db: &DatabaseSettings,
    engine: &cipherdoc_mongodb::MongoEngine,
) -> std::result::Result<(), String> {
    use cipherdoc_mongodb::{MongoTopology, WIRE_VERSION_7_0};
    if db.encryption.is_none() {
        return Ok(());
    }
    let server = engine.server();
    if server.topology == MongoTopology::Standalone {
        return Err(format!(
            "database '{}' is encrypted, and Queryable Encryption needs a replica set or a sharded cluster; this server is a standalone (a one-member replica set is enough)",
            db.alias
        ));
    }
    if server.max_wire_version < WIRE_VERSION_7_0 {
        return Err(format!(
            "database '{}' is encrypted, and Queryable Encryption needs MongoDB 7.0 or later (wire version {WIRE_VERSION_7_0}); this server reports wire version {}",
            db.alias, server.max_wire_version
        ));
    }
    Ok(())
}

fn secret_string(src: &SecretSource, path: &str) -> Result<Secret> {
    let s = src
        .read_string()
        .map_err(|p| setting_err(path.to_owned(), p))?;
    Ok(Secret::new(s.as_str()))
}

fn endpoint(s: &str, path: &str) -> Result<Endpoint> {
    Endpoint::parse(s).map_err(|p| setting_err(path.to_owned(), p))
}

/// The KMS credentials of one configured provider, secrets resolved now.
fn credentials(
    base: &str,
    p: &KmsCredentialsSettings,
) -> Result<(KmsCredentials, cipherdoc_kms::TlsOptions)> {
    let tls = cipherdoc_kms::TlsOptions::default();
    Ok(match p {
        KmsCredentialsSettings::Local { key, raw } => {
            let path = format!("{base}.key_file");
            let bytes = key.read_bytes().map_err(|e| setting_err(path.clone(), e))?;
            let bytes = if *raw {
                bytes
            } else {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| setting_err(path.clone(), "not base64 text"))?;
                zeroize::Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|_| {
                            setting_err(path.clone(), "the local key must be base64 of 96 bytes")
                        })?,
                )
            };
            let key = cipherdoc_crypto::LocalMasterKey::from_slice(&bytes).map_err(|_| {
                setting_err(
                    path,
                    format!(
                        "the local master key must be 96 bytes, found {}",
                        bytes.len()
                    ),
                )
            })?;
            (KmsCredentials::Local(LocalCredentials { key }), tls)
        }
        KmsCredentialsSettings::Aws {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let creds = match (access_key_id, secret_access_key) {
                (Some(id), Some(secret)) => Some(AwsCredentials {
                    access_key_id: id.clone(),
                    secret_access_key: secret_string(secret, &format!("{base}.secret_access_key"))?,
                    session_token: session_token
                        .as_ref()
                        .map(|t| secret_string(t, &format!("{base}.session_token")))
                        .transpose()?,
                }),
                _ => None,
            };
            (KmsCredentials::Aws(creds), tls)
        }
        KmsCredentialsSettings::Azure {
            tenant_id,
            client_id,
            client_secret,
            identity_platform_endpoint,
            access_token,
        } => {
            let creds = if let Some(t) = access_token {
                AzureCredentials::AccessToken(secret_string(t, &format!("{base}.access_token"))?)
            } else {
                AzureCredentials::ClientSecret {
                    tenant_id: tenant_id.clone().unwrap_or_default(),
                    client_id: client_id.clone().unwrap_or_default(),
                    client_secret: match client_secret {
                        Some(s) => secret_string(s, &format!("{base}.client_secret"))?,
                        None => {
                            return Err(setting_err(format!("{base}.client_secret"), "missing"));
                        }
                    },
                    identity_platform_endpoint: identity_platform_endpoint
                        .as_deref()
                        .map(|e| endpoint(e, &format!("{base}.identity_platform_endpoint")))
                        .transpose()?,
                }
            };
            (KmsCredentials::Azure(creds), tls)
        }
        KmsCredentialsSettings::Gcp {
            email,
            private_key,
            endpoint: ep,
            access_token,
        } => {
            let creds = if let Some(t) = access_token {
                GcpCredentials::AccessToken(secret_string(t, &format!("{base}.access_token"))?)
            } else {
                let key = match private_key {
                    Some(k) => k
                        .read_bytes()
                        .map_err(|e| setting_err(format!("{base}.private_key_file"), e))?,
                    None => return Err(setting_err(format!("{base}.private_key_file"), "missing")),
                };
                GcpCredentials::ServiceAccount {
                    email: email.clone().unwrap_or_default(),
                    private_key: SecretBytes::new(key.to_vec()),
                    endpoint: ep
                        .as_deref()
                        .map(|e| endpoint(e, &format!("{base}.endpoint")))
                        .transpose()?,
                }
            };
            (KmsCredentials::Gcp(creds), tls)
        }
        KmsCredentialsSettings::Kmip {
            endpoint: ep,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
        } => {
            let tls = cipherdoc_kms::TlsOptions {
                ca_file: tls_ca_file.clone(),
                client_cert_file: tls_cert_file.clone(),
                client_key_file: tls_key_file.clone(),
            };
            (
                KmsCredentials::Kmip(KmipCredentials {
                    endpoint: endpoint(ep, &format!("{base}.endpoint"))?,
                }),
                tls,
            )
        }
    })
}

/// The encryption machinery of one database: its key vault, KMS providers
/// and the master keys new data keys are wrapped with.
pub(crate) struct OpenedEncryption {
    pub keys: Arc<KeyStore>,
    pub master_keys: Vec<KmsMasterKey>,
}

pub(crate) async fn open_encryption(
    db: &DatabaseSettings,
    enc: &EncryptionSettings,
    engine: Arc<dyn Engine>,
) -> Result<OpenedEncryption> {
    let base = format!("databases.{}.encryption", db.alias);
    let mut providers = BTreeMap::new();
    let mut master_keys = Vec::new();
    for p in &enc.kms_providers {
        let name = p.name.clone();
        let path = format!("{base}.kms_providers.{name}");
        let (credentials, tls) = credentials(&path, &p.credentials)?;
        let mut ps = ProviderSettings::new(credentials);
        ps.tls = tls;
        if let Some(ca) = &p.transport.tls_ca_file {
            ps.tls.ca_file = Some(ca.clone());
        }
        if let Some(ms) = p.transport.timeout_ms {
            // One bound for the whole operation, retries included; the
            // per-request timeout stays as it is, so a hung KMS always ends
            // in `DeadlineExceeded`.
            ps.http.deadline = Some(Duration::from_millis(ms));
        }
        if let Some(e) = &p.transport.endpoint {
            ps.http.endpoint_override = Some(if e.contains("://") {
                e.clone()
            } else {
                format!("https://{e}")
            });
        }
        let mk = p.master_key.clone();
        // Key documents are used only with this master key or on these
        // hosts: the settings decide, never the key vault.
        let allowed = p
            .transport
            .allowed_hosts
            .iter()
            .map(|h| endpoint(h, &format!("{path}.allowed_hosts")))
            .collect::<Result<Vec<_>>>()?;
        ps.trust = KeyTrust::new(vec![mk.clone()], &allowed);
        providers.insert(name, ps);
        master_keys.push(mk);
    }
    let kms = KmsProviders::from_settings(&providers)?;
    let (_, vault_coll) = enc.key_vault();
    let vault = EngineKeyVault::open(engine, vault_coll).await?;
    let mut keys = KeyStore::new(
        Arc::new(vault),
        Arc::new(kms),
        Duration::from_secs(enc.data_key_cache_ttl_secs),
    );
    if let Some(path) = &enc.key_check_values {
        let setting = format!("{base}.key_check_values");
        keys = keys.with_key_check_values(KeyCheckValues::read(path, &setting)?, setting);
    }
    Ok(OpenedEncryption {
        keys: Arc::new(keys),
        master_keys,
    })
}
