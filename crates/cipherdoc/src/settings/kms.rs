//! KMS settings: which providers a database may use (`kms_providers`, the
//! credentials) and which master key new data keys are wrapped with
//! (`kms_credentials`), in the shapes of the reference's `KMS_CREDENTIALS`.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Table;
use zeroize::Zeroizing;

use bson::{Document, doc};
use cipherdoc_kms::{
    KmipMasterKeyDoc, KmsError, LocalMasterKeyDoc, MasterKey, ProviderKind, ProviderName,
};

use super::SettingsError;
use super::reader::TableReader;

/// Parses a provider name as the settings write it (`aws`, `aws:prod`):
/// the one parser, [`ProviderName`]'s, with its message.
pub(crate) fn provider_name(s: &str) -> Result<ProviderName, String> {
    s.parse::<ProviderName>().map_err(|e| e.to_string())
}

/// Where a secret comes from. Resolved only when needed, so that the secret
/// is held for as short a time as possible and a key file may be created
/// after the settings are read (the clinic does so on first run).
#[derive(Clone)]
pub enum SecretSource {
    /// Read from this file (trailing whitespace trimmed for text secrets).
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
    /// Written in the settings file: development only, warned about at load.
    Inline(Zeroizing<String>),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Env(v) => f.debug_tuple("Env").field(v).finish(),
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
        }
    }
}

impl SecretSource {
    /// Reads the secret's bytes. Errors name the source, never the secret.
    pub fn read_bytes(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        match self {
            // Only files that nobody but their owner may read.
            Self::File(p) => crate::private_file::read_private(p).map_err(|e| e.to_string()),
            Self::Env(v) => std::env::var(v)
                .map(|s| Zeroizing::new(s.into_bytes()))
                .map_err(|_| format!("environment variable {v} is not set")),
            Self::Inline(s) => Ok(Zeroizing::new(s.as_bytes().to_vec())),
        }
    }

    /// Reads the secret as text, trimming surrounding whitespace.
    pub fn read_string(&self) -> Result<Zeroizing<String>, String> {
        let bytes = self.read_bytes()?;
        let s = std::str::from_utf8(&bytes).map_err(|_| "secret is not UTF-8 text".to_owned())?;
        Ok(Zeroizing::new(s.trim().to_owned()))
    }
}

/// Credentials of one configured provider (`kms_providers.<name>`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KmsCredentialsSettings {
    /// `key_file` (raw 96 bytes), `key_env` or `key` (base64 of 96 bytes).
    Local {
        /// The master key's source.
        key: SecretSource,
        /// Whether `key` holds raw bytes (a key file) or base64 text.
        raw: bool,
    },
    /// AWS; `None` credentials mean the standard AWS environment variables.
    Aws {
        /// Access key id (not secret).
        access_key_id: Option<String>,
        /// Secret access key.
        secret_access_key: Option<SecretSource>,
        /// Session token for temporary credentials.
        session_token: Option<SecretSource>,
    },
    /// Azure: client credentials or a given access token.
    Azure {
        /// Tenant id.
        tenant_id: Option<String>,
        /// Client id.
        client_id: Option<String>,
        /// Client secret.
        client_secret: Option<SecretSource>,
        /// Identity platform endpoint (default login.microsoftonline.com).
        identity_platform_endpoint: Option<String>,
        /// A ready access token instead of client credentials.
        access_token: Option<SecretSource>,
    },
    /// GCP: a service account or a given access token.
    Gcp {
        /// Service account e-mail.
        email: Option<String>,
        /// Service account private key (PEM or base64 PKCS#8).
        private_key: Option<SecretSource>,
        /// OAuth endpoint override.
        endpoint: Option<String>,
        /// A ready access token instead of a service account.
        access_token: Option<SecretSource>,
    },
    /// KMIP over TLS with a client certificate.
    Kmip {
        /// `host:port` of the KMIP server.
        endpoint: String,
        /// CA certificate (PEM) that signed the server's certificate.
        tls_ca_file: Option<PathBuf>,
        /// Client certificate (PEM).
        tls_cert_file: Option<PathBuf>,
        /// Client private key (PEM).
        tls_key_file: Option<PathBuf>,
    },
}

/// Where and how to reach a provider, beyond its credentials: settings
/// that cipherdoc alone decides, never a key document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KmsTransportSettings {
    /// The KMS endpoint every request goes to instead of the one a master
    /// key names (`endpoint` for aws and azure, `kms_endpoint` for gcp,
    /// whose `endpoint` is the OAuth host as in MongoDB's settings):
    /// `https://host[:port]` or `host[:port]`; `http://` only on loopback.
    pub endpoint: Option<String>,
    /// PEM file of CA certificates trusted in addition to the public roots.
    pub tls_ca_file: Option<PathBuf>,
    /// `timeout_ms`: the most a wrap or unwrap may take, retries included;
    /// past it the operation fails with `KmsError::DeadlineExceeded`
    /// naming the provider (`None`: [`cipherdoc_kms::DEFAULT_DEADLINE`],
    /// 10 s).
    pub timeout_ms: Option<u64>,
    /// Hosts (`host` or `host:port`) whose master keys may be used even
    /// though `kms_credentials` does not name them (e.g. keys of an older
    /// master key after rotation). A key document pointing anywhere else is
    /// refused.
    pub allowed_hosts: Vec<String>,
}

impl KmsTransportSettings {
    /// Transport settings with this allowlist.
    pub fn with_allowed_hosts(hosts: Vec<String>) -> Self {
        Self {
            allowed_hosts: hosts,
            ..Self::default()
        }
    }
}

/// Reads a provider's `endpoint`/`kms_endpoint`, `tls_ca_file`,
/// `timeout_ms` and `allowed_hosts` (what applies to its kind).
pub(crate) fn read_transport(
    r: &mut TableReader<'_>,
    kind: ProviderKind,
    base_dir: &Path,
) -> Result<KmsTransportSettings, SettingsError> {
    let mut t = KmsTransportSettings::default();
    if kind == ProviderKind::Local {
        return Ok(t);
    }
    if let Some(ms) = r.opt_int("timeout_ms")? {
        t.timeout_ms = Some(
            u64::try_from(ms)
                .ok()
                .filter(|ms| (1..=3_600_000).contains(ms))
                .ok_or_else(|| {
                    r.error(
                        "timeout_ms",
                        format!("{ms} is out of range; give milliseconds from 1 to 3600000 (default 10000)"),
                    )
                })?,
        );
    }
    if let Some(list) = r.opt_array("allowed_hosts")? {
        for (i, v) in list.iter().enumerate() {
            let h = v.as_str().ok_or_else(|| {
                r.error(
                    "allowed_hosts",
                    format!("element {i} must be a string \"host\" or \"host:port\""),
                )
            })?;
            cipherdoc_kms::Endpoint::parse(h)
                .map_err(|e| r.error("allowed_hosts", format!("element {i} ({h:?}) {e}")))?;
            if h.contains("://") || h.contains('/') {
                return Err(r.error(
                    "allowed_hosts",
                    format!("element {i} ({h:?}) must be \"host\" or \"host:port\", without scheme or path"),
                ));
            }
            t.allowed_hosts.push(h.to_owned());
        }
    }
    let endpoint_key = match kind {
        ProviderKind::Aws | ProviderKind::Azure => Some("endpoint"),
        ProviderKind::Gcp => Some("kms_endpoint"),
        _ => None,
    };
    if let Some(key) = endpoint_key {
        if let Some(e) = r.opt_str(key)? {
            check_endpoint_url(&e).map_err(|p| r.error(key, p))?;
            t.endpoint = Some(e);
        }
        t.tls_ca_file = r.opt_str("tls_ca_file")?.map(|p| base_dir.join(p));
    }
    Ok(t)
}

/// An endpoint setting: `https://host[:port]`, `host[:port]`, or
/// `http://` to a loopback address (test servers).
fn check_endpoint_url(e: &str) -> Result<(), String> {
    let (scheme, rest) = match e.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("https", e),
    };
    let ep = cipherdoc_kms::Endpoint::parse(rest)?;
    let loopback = ep.host() == "localhost"
        || ep
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err("plain http is allowed only to a loopback address; use https://".into()),
        other => Err(format!(
            "unsupported scheme {other:?}; use https://host[:port]"
        )),
    }
}

/// Reads a secret given as `<key>_file`, `<key>_env` or inline `<key>`.
fn secret(
    r: &mut TableReader<'_>,
    file_key: &'static str,
    env_key: &'static str,
    inline_key: &'static str,
    base_dir: &Path,
) -> Result<Option<SecretSource>, SettingsError> {
    let file = r.opt_str(file_key)?;
    let env = r.opt_str(env_key)?;
    let inline = r.opt_str(inline_key)?;
    let given =
        usize::from(file.is_some()) + usize::from(env.is_some()) + usize::from(inline.is_some());
    if given > 1 {
        return Err(r.error(
            inline_key,
            format!("give only one of `{file_key}`, `{env_key}` and `{inline_key}`"),
        ));
    }
    Ok(if let Some(f) = file {
        Some(SecretSource::File(base_dir.join(f)))
    } else if let Some(e) = env {
        Some(SecretSource::Env(e))
    } else if let Some(s) = inline {
        tracing::warn!(
            setting = %r.child_path(inline_key),
            "secret written inline in the settings file; this is for development only: use `{file_key}` or `{env_key}`"
        );
        Some(SecretSource::Inline(Zeroizing::new(s)))
    } else {
        None
    })
}

pub(crate) fn read_provider(
    r: &mut TableReader<'_>,
    name: &ProviderName,
    base_dir: &Path,
) -> Result<KmsCredentialsSettings, SettingsError> {
    Ok(match name.kind() {
        ProviderKind::Local => {
            let has_file = r.has("key_file");
            let key = secret(r, "key_file", "key_env", "key", base_dir)?.ok_or_else(|| {
                r.error(
                    "key_file",
                    "missing; the local provider needs a 96-byte master key: set `key_file` (e.g. \"var/master.key\") or `key_env`",
                )
            })?;
            r.finish(&["key_file", "key_env", "key"])?;
            KmsCredentialsSettings::Local { key, raw: has_file }
        }
        ProviderKind::Aws => {
            let access_key_id = r.opt_str("access_key_id")?;
            let secret_access_key = secret(
                r,
                "secret_access_key_file",
                "secret_access_key_env",
                "secret_access_key",
                base_dir,
            )?;
            let session_token = secret(
                r,
                "session_token_file",
                "session_token_env",
                "session_token",
                base_dir,
            )?;
            if access_key_id.is_some() != secret_access_key.is_some() {
                return Err(r.error(
                    if access_key_id.is_some() { "secret_access_key" } else { "access_key_id" },
                    "missing; give both `access_key_id` and a secret access key, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment",
                ));
            }
            r.finish(&[
                "access_key_id",
                "secret_access_key",
                "secret_access_key_file",
                "secret_access_key_env",
                "session_token",
                "session_token_file",
                "session_token_env",
            ])?;
            KmsCredentialsSettings::Aws {
                access_key_id,
                secret_access_key,
                session_token,
            }
        }
        ProviderKind::Azure => read_azure(r, base_dir)?,
        ProviderKind::Gcp => read_gcp(r, base_dir)?,
        ProviderKind::Kmip => {
            let endpoint = r.req_str("endpoint", "set the KMIP server as \"host:port\"")?;
            let path = |r: &mut TableReader<'_>, k: &'static str| {
                r.opt_str(k).map(|o| o.map(|p| base_dir.join(p)))
            };
            let tls_ca_file = path(r, "tls_ca_file")?;
            let tls_cert_file = path(r, "tls_cert_file")?;
            let tls_key_file = path(r, "tls_key_file")?;
            if tls_cert_file.is_some() != tls_key_file.is_some() {
                return Err(r.error(
                    "tls_key_file",
                    "give both `tls_cert_file` and `tls_key_file` for the client certificate",
                ));
            }
            r.finish(&["endpoint", "tls_ca_file", "tls_cert_file", "tls_key_file"])?;
            KmsCredentialsSettings::Kmip {
                endpoint,
                tls_ca_file,
                tls_cert_file,
                tls_key_file,
            }
        }
        // A kind the KMS crate may add later has no settings here yet.
        _ => return Err(unsupported_kind(r, name)),
    })
}

fn unsupported_kind(r: &TableReader<'_>, name: &ProviderName) -> SettingsError {
    r.table_error(format!(
        "this version of cipherdoc cannot configure the `{name}` KMS provider"
    ))
}

fn read_azure(
    r: &mut TableReader<'_>,
    base_dir: &Path,
) -> Result<KmsCredentialsSettings, SettingsError> {
    let tenant_id = r.opt_str("tenant_id")?;
    let client_id = r.opt_str("client_id")?;
    let client_secret = secret(
        r,
        "client_secret_file",
        "client_secret_env",
        "client_secret",
        base_dir,
    )?;
    let identity_platform_endpoint = r.opt_str("identity_platform_endpoint")?;
    let access_token = secret(
        r,
        "access_token_file",
        "access_token_env",
        "access_token",
        base_dir,
    )?;
    if access_token.is_none() {
        for (key, present) in [
            ("tenant_id", tenant_id.is_some()),
            ("client_id", client_id.is_some()),
            ("client_secret", client_secret.is_some()),
        ] {
            if !present {
                return Err(r.error(key, "missing; Azure needs tenant_id, client_id and client_secret (or an access_token)"));
            }
        }
    }
    r.finish(&[
        "tenant_id",
        "client_id",
        "client_secret",
        "client_secret_file",
        "client_secret_env",
        "identity_platform_endpoint",
        "access_token",
        "access_token_file",
        "access_token_env",
    ])?;
    Ok(KmsCredentialsSettings::Azure {
        tenant_id,
        client_id,
        client_secret,
        identity_platform_endpoint,
        access_token,
    })
}

fn read_gcp(
    r: &mut TableReader<'_>,
    base_dir: &Path,
) -> Result<KmsCredentialsSettings, SettingsError> {
    let email = r.opt_str("email")?;
    let private_key = secret(
        r,
        "private_key_file",
        "private_key_env",
        "private_key",
        base_dir,
    )?;
    let endpoint = r.opt_str("endpoint")?;
    let access_token = secret(
        r,
        "access_token_file",
        "access_token_env",
        "access_token",
        base_dir,
    )?;
    if access_token.is_none() {
        if email.is_none() {
            return Err(r.error("email", "missing; GCP needs a service account `email` and `private_key_file` (or an access_token)"));
        }
        if private_key.is_none() {
            return Err(r.error(
                "private_key_file",
                "missing; GCP needs the service account's private key (or an access_token)",
            ));
        }
    }
    r.finish(&[
        "email",
        "private_key",
        "private_key_file",
        "private_key_env",
        "endpoint",
        "access_token",
        "access_token_file",
        "access_token_env",
    ])?;
    Ok(KmsCredentialsSettings::Gcp {
        email,
        private_key,
        endpoint,
        access_token,
    })
}

/// Reads `kms_credentials.<name>`: the master key new data keys of
/// provider `name` are wrapped with.
///
/// The table holds a `masterKey` document's fields in snake case. It is read
/// into that document and parsed by [`MasterKey::from_document`], the parser
/// key documents use as well, so that a master key from the settings and one
/// from the key vault are checked by the same rules (required fields, empty
/// strings, endpoints, AWS regions) and cannot disagree.
pub(crate) fn read_master_key(
    r: &mut TableReader<'_>,
    name: &ProviderName,
) -> Result<MasterKey, SettingsError> {
    // (settings key, masterKey field) of each provider kind.
    let fields: &[(&str, &str)] = match name.kind() {
        ProviderKind::Aws => {
            r.req_str("key", "set the AWS KMS key ARN, e.g. key = \"arn:aws:kms:us-east-1:123456789012:key/...\"")?;
            r.req_str(
                "region",
                "set the AWS region of the key, e.g. region = \"us-east-1\"",
            )?;
            &[
                ("key", "key"),
                ("region", "region"),
                ("endpoint", "endpoint"),
            ]
        }
        ProviderKind::Azure => {
            r.req_str(
                "key_vault_endpoint",
                "set the vault, e.g. \"myvault.vault.azure.net\"",
            )?;
            r.req_str("key_name", "set the key's name in the vault")?;
            &[
                ("key_vault_endpoint", "keyVaultEndpoint"),
                ("key_name", "keyName"),
                ("key_version", "keyVersion"),
            ]
        }
        ProviderKind::Gcp => {
            r.req_str("project_id", "set the GCP project id")?;
            r.req_str("location", "set the key ring's location, e.g. \"global\"")?;
            r.req_str("key_ring", "set the key ring's name")?;
            r.req_str("key_name", "set the key's name")?;
            &[
                ("project_id", "projectId"),
                ("location", "location"),
                ("key_ring", "keyRing"),
                ("key_name", "keyName"),
                ("key_version", "keyVersion"),
                ("endpoint", "endpoint"),
            ]
        }
        ProviderKind::Kmip => &[("key_id", "keyId"), ("endpoint", "endpoint")],
        ProviderKind::Local => &[],
        _ => return Err(unsupported_kind(r, name)),
    };
    let mut d = doc! { "provider": name.to_string() };
    for (key, field) in fields {
        if let Some(v) = r.opt_str(key)? {
            d.insert(*field, v);
        }
    }
    let mut allowed: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    if name.kind() == ProviderKind::Kmip {
        if r.opt_bool("delegated")? == Some(true) {
            d.insert("delegated", true);
        }
        allowed.push("delegated");
    }
    r.finish(&allowed)?;
    master_key(r, &d, fields)
}

/// The master key of a provider whose settings name none: `local` needs
/// none, and `kmip` registers a new key when it wraps the first data key.
pub(crate) fn implied_master_key(name: &ProviderName) -> Option<MasterKey> {
    let provider = name.clone();
    match name.kind() {
        ProviderKind::Local => Some(MasterKey::Local(LocalMasterKeyDoc { provider })),
        ProviderKind::Kmip => Some(MasterKey::Kmip(KmipMasterKeyDoc {
            provider,
            key_id: None,
            endpoint: None,
            delegated: false,
        })),
        _ => None,
    }
}

/// Parses the assembled `masterKey`, blaming the settings key a refused
/// field came from.
fn master_key(
    r: &TableReader<'_>,
    d: &Document,
    fields: &[(&str, &str)],
) -> Result<MasterKey, SettingsError> {
    MasterKey::from_document(d).map_err(|e| match e {
        KmsError::InvalidMasterKey { field, reason, .. } => {
            let key = fields
                .iter()
                .find(|(_, f)| *f == field)
                .map_or("provider", |(k, _)| *k);
            r.error(key, reason)
        }
        other => r.error("provider", other.to_string()),
    })
}

/// The Cargo feature of cipherdoc that a provider kind needs, when this
/// build lacks it (the local provider is always there).
fn missing_feature(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Aws if !cfg!(feature = "aws") => Some("aws"),
        ProviderKind::Azure if !cfg!(feature = "azure") => Some("azure"),
        ProviderKind::Gcp if !cfg!(feature = "gcp") => Some("gcp"),
        ProviderKind::Kmip if !cfg!(feature = "kmip") => Some("kmip"),
        _ => None,
    }
}

/// Reads `kms_providers` and `kms_credentials` of one database.
#[allow(clippy::type_complexity)]
pub(crate) fn read_kms(
    enc: &mut TableReader<'_>,
    base_dir: &Path,
) -> Result<
    Vec<(
        ProviderName,
        KmsCredentialsSettings,
        MasterKey,
        KmsTransportSettings,
    )>,
    SettingsError,
> {
    let providers: &Table = enc.opt_table("kms_providers")?.ok_or_else(|| {
        enc.error(
            "kms_providers",
            "missing; configure at least one KMS provider, e.g. kms_providers.local.key_file = \"var/master.key\"",
        )
    })?;
    if providers.is_empty() {
        return Err(enc.error(
            "kms_providers",
            "empty; configure at least one KMS provider",
        ));
    }
    let empty = Table::new();
    let credentials = enc.opt_table("kms_credentials")?.unwrap_or(&empty);
    let pr = enc.sub("kms_providers", providers);
    let cr = enc.sub("kms_credentials", credentials);
    for name in credentials.keys() {
        if !providers.contains_key(name) {
            return Err(cr.error(
                name,
                format!(
                    "no provider `{name}` in kms_providers; configure it there or remove this table"
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (name_str, value) in providers {
        let name = provider_name(name_str).map_err(|p| pr.error(name_str, p))?;
        if let Some(feature) = missing_feature(name.kind()) {
            return Err(SettingsError::FeatureMissing {
                path: pr.child_path(name_str),
                what: format!("{} KMS provider", name.kind().as_str()),
                feature,
            });
        }
        let table = value
            .as_table()
            .ok_or_else(|| pr.error(name_str, "expected a table"))?;
        let mut r = pr.sub(name_str, table);
        let transport = read_transport(&mut r, name.kind(), base_dir)?;
        let provider = read_provider(&mut r, &name, base_dir)?;
        let master = match credentials.get(name_str) {
            Some(v) => {
                let t = v
                    .as_table()
                    .ok_or_else(|| cr.error(name_str, "expected a table"))?;
                read_master_key(&mut cr.sub(name_str, t), &name)?
            }
            None => match implied_master_key(&name) {
                Some(m) => m,
                None => {
                    return Err(cr.error(
                        name_str,
                        format!("missing; new data keys need a master key for `{name_str}` (see the reference's KMS_CREDENTIALS)"),
                    ));
                }
            },
        };
        out.push((name, provider, master, transport));
    }
    Ok(out)
}
