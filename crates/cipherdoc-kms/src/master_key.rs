//! `masterKey` documents, exactly as MongoDB stores them in a key-vault document.
//!
//! Field names, allowed fields and write order follow libmongocrypt
//! (`src/mongocrypt-kek.c`): unknown fields are rejected, endpoints are stored
//! as `host[:port]` (a `scheme://` prefix or a path given on input is dropped,
//! as libmongocrypt does).
//!
//! [`MasterKey`] is the document; each variant holds a `*MasterKeyDoc` with
//! that provider's fields. The 96-byte key of the `local` provider itself is
//! [`cipherdoc_crypto::LocalMasterKey`], held by the provider, never by a
//! document.

use bson::{Bson, Document};

use crate::{KmsError, ProviderKind, ProviderName};

/// A `host[:port]` endpoint as stored in a `masterKey`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// Parses `[scheme://]host[:port][/path][?query]`, keeping host and port.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s.split_once("://").map_or(s, |(_, r)| r);
        let host_port = rest.split(['/', '?']).next().unwrap_or_default();
        if host_port.is_empty() {
            return Err("must be host[:port] and not empty".into());
        }
        // Bracketed IPv6 literal: "[::1]:443".
        let (host, port) = if let Some(stripped) = host_port.strip_prefix('[') {
            let (h, after) = stripped.split_once(']').ok_or("has an unterminated '['")?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err("has garbage after ']'".into()),
            };
            (format!("[{h}]"), port)
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (host_port.to_owned(), None),
            }
        };
        // The host becomes part of a URL or a TLS server name: only a DNS
        // name or an IP literal, never userinfo, a path or whitespace.
        crate::trust::validate_host(&host)?;
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| format!("has an invalid port {p:?}"))?,
            ),
            None => None,
        };
        Ok(Self { host, port })
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, if one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]`, the stored form.
    pub fn host_and_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// `https://host[:port]`.
    pub fn https_base(&self) -> String {
        format!("https://{}", self.host_and_port())
    }
}

/// `{provider: "aws", region, key, endpoint?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsMasterKeyDoc {
    /// `aws` or `aws:<name>`.
    pub provider: ProviderName,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// Key ARN, key id or alias.
    pub key: String,
    /// Optional KMS endpoint (`host[:port]`).
    pub endpoint: Option<Endpoint>,
}

/// `{provider: "azure", keyVaultEndpoint, keyName, keyVersion?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureMasterKeyDoc {
    /// `azure` or `azure:<name>`.
    pub provider: ProviderName,
    /// Vault host, e.g. `myvault.vault.azure.net`.
    pub key_vault_endpoint: Endpoint,
    /// Key name.
    pub key_name: String,
    /// Optional key version.
    pub key_version: Option<String>,
}

/// `{provider: "gcp", projectId, location, keyRing, keyName, keyVersion?, endpoint?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpMasterKeyDoc {
    /// `gcp` or `gcp:<name>`.
    pub provider: ProviderName,
    /// Project id.
    pub project_id: String,
    /// Location, e.g. `global`.
    pub location: String,
    /// Key ring.
    pub key_ring: String,
    /// Crypto key name.
    pub key_name: String,
    /// Optional crypto key version.
    pub key_version: Option<String>,
    /// Optional Cloud KMS endpoint (`host[:port]`).
    pub endpoint: Option<Endpoint>,
}

/// `{provider: "kmip", keyId?, endpoint?, delegated?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmipMasterKeyDoc {
    /// `kmip` or `kmip:<name>`.
    pub provider: ProviderName,
    /// KMIP unique identifier of the key; filled in by `wrap` when absent.
    pub key_id: Option<String>,
    /// Optional KMIP server endpoint (`host[:port]`).
    pub endpoint: Option<Endpoint>,
    /// Whether the server encrypts the DEK itself (AES-CBC-PKCS5).
    pub delegated: bool,
}

/// `{provider: "local"}` or `{provider: "local:<name>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMasterKeyDoc {
    /// `local` or `local:<name>`.
    pub provider: ProviderName,
}

/// A key document's `masterKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterKey {
    /// AWS KMS key.
    Aws(AwsMasterKeyDoc),
    /// Azure Key Vault key.
    Azure(AzureMasterKeyDoc),
    /// GCP Cloud KMS key.
    Gcp(GcpMasterKeyDoc),
    /// KMIP key.
    Kmip(KmipMasterKeyDoc),
    /// The local provider's key (held by the provider, not the document).
    Local(LocalMasterKeyDoc),
}

struct Reader<'a> {
    doc: &'a Document,
    provider: String,
}

impl Reader<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> KmsError {
        KmsError::InvalidMasterKey {
            provider: self.provider.clone(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<String>, KmsError> {
        match self.doc.get(field) {
            None => Ok(None),
            Some(Bson::String(s)) if s.is_empty() => Err(self.err(field, "must not be empty")),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                field,
                format!("must be a string, found {:?}", other.element_type()),
            )),
        }
    }

    fn req_str(&self, field: &str) -> Result<String, KmsError> {
        self.opt_str(field)?
            .ok_or_else(|| self.err(field, "is required"))
    }

    fn opt_endpoint(&self, field: &str) -> Result<Option<Endpoint>, KmsError> {
        self.opt_str(field)?
            .map(|s| Endpoint::parse(&s).map_err(|r| self.err(field, r)))
            .transpose()
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, KmsError> {
        match self.doc.get(field) {
            None => Ok(None),
            Some(Bson::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                field,
                format!("must be a boolean, found {:?}", other.element_type()),
            )),
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), KmsError> {
        for k in self.doc.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(k, "is not allowed for this provider"));
            }
        }
        Ok(())
    }
}

impl MasterKey {
    /// The provider name stored in `masterKey.provider`.
    pub fn provider(&self) -> &ProviderName {
        match self {
            Self::Aws(k) => &k.provider,
            Self::Azure(k) => &k.provider,
            Self::Gcp(k) => &k.provider,
            Self::Kmip(k) => &k.provider,
            Self::Local(k) => &k.provider,
        }
    }

    /// The provider kind.
    pub fn kind(&self) -> ProviderKind {
        self.provider().kind()
    }

    /// Parses and validates a `masterKey` document.
    pub fn from_document(doc: &Document) -> Result<Self, KmsError> {
        let mut r = Reader {
            doc,
            provider: String::new(),
        };
        let provider_str = r.req_str("provider")?;
        r.provider.clone_from(&provider_str);
        let provider: ProviderName = provider_str
            .parse()
            .map_err(|e: KmsError| r.err("provider", e.to_string()))?;
        Ok(match provider.kind() {
            ProviderKind::Aws => {
                r.only(&["provider", "key", "region", "endpoint"])?;
                let region = r.req_str("region")?;
                crate::trust::validate_region(&region).map_err(|e| r.err("region", e))?;
                Self::Aws(AwsMasterKeyDoc {
                    key: r.req_str("key")?,
                    region,
                    endpoint: r.opt_endpoint("endpoint")?,
                    provider,
                })
            }
            ProviderKind::Azure => {
                r.only(&["provider", "keyVaultEndpoint", "keyName", "keyVersion"])?;
                Self::Azure(AzureMasterKeyDoc {
                    key_vault_endpoint: r
                        .opt_endpoint("keyVaultEndpoint")?
                        .ok_or_else(|| r.err("keyVaultEndpoint", "is required"))?,
                    key_name: r.req_str("keyName")?,
                    key_version: r.opt_str("keyVersion")?,
                    provider,
                })
            }
            ProviderKind::Gcp => {
                r.only(&[
                    "provider",
                    "endpoint",
                    "projectId",
                    "location",
                    "keyRing",
                    "keyName",
                    "keyVersion",
                ])?;
                Self::Gcp(GcpMasterKeyDoc {
                    endpoint: r.opt_endpoint("endpoint")?,
                    project_id: r.req_str("projectId")?,
                    location: r.req_str("location")?,
                    key_ring: r.req_str("keyRing")?,
                    key_name: r.req_str("keyName")?,
                    key_version: r.opt_str("keyVersion")?,
                    provider,
                })
            }
            ProviderKind::Kmip => {
                r.only(&["provider", "endpoint", "keyId", "delegated"])?;
                Self::Kmip(KmipMasterKeyDoc {
                    endpoint: r.opt_endpoint("endpoint")?,
                    key_id: r.opt_str("keyId")?,
                    delegated: r.opt_bool("delegated")?.unwrap_or(false),
                    provider,
                })
            }
            ProviderKind::Local => {
                r.only(&["provider"])?;
                Self::Local(LocalMasterKeyDoc { provider })
            }
        })
    }

    /// The `masterKey` document, fields in libmongocrypt's write order.
    ///
    /// A KMIP key without `keyId` is written without it; libmongocrypt refuses
    /// to write such a key document, so store the master key returned by
    /// [`crate::KmsProvider::wrap`], which always has one.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        d.insert("provider", self.provider().to_string());
        match self {
            Self::Aws(k) => {
                d.insert("region", k.region.clone());
                d.insert("key", k.key.clone());
                if let Some(e) = &k.endpoint {
                    d.insert("endpoint", e.host_and_port());
                }
            }
            Self::Azure(k) => {
                d.insert("keyVaultEndpoint", k.key_vault_endpoint.host_and_port());
                d.insert("keyName", k.key_name.clone());
                if let Some(v) = &k.key_version {
                    d.insert("keyVersion", v.clone());
                }
            }
            Self::Gcp(k) => {
                d.insert("projectId", k.project_id.clone());
                d.insert("location", k.location.clone());
                d.insert("keyRing", k.key_ring.clone());
                d.insert("keyName", k.key_name.clone());
                if let Some(v) = &k.key_version {
                    d.insert("keyVersion", v.clone());
                }
                if let Some(e) = &k.endpoint {
                    d.insert("endpoint", e.host_and_port());
                }
            }
            Self::Kmip(k) => {
                if let Some(e) = &k.endpoint {
                    d.insert("endpoint", e.host_and_port());
                }
                if k.delegated {
                    d.insert("delegated", true);
                }
                if let Some(id) = &k.key_id {
                    d.insert("keyId", id.clone());
                }
            }
            Self::Local(_) => {}
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn roundtrip(d: &Document) -> MasterKey {
        let k = MasterKey::from_document(d).unwrap();
        assert_eq!(&k.to_document(), d, "write order and content");
        k
    }

    #[test]
    fn all_kinds_roundtrip_in_libmongocrypt_order() {
        let k = roundtrip(
            &doc! {"provider": "aws", "region": "us-east-1", "key": "arn:aws:kms:us-east-1:1:key/x", "endpoint": "kms.us-east-1.amazonaws.com:443"},
        );
        assert!(
            matches!(k, MasterKey::Aws(ref a) if a.endpoint.as_ref().unwrap().port() == Some(443))
        );
        roundtrip(&doc! {"provider": "aws:prod", "region": "eu-west-1", "key": "alias/x"});
        roundtrip(
            &doc! {"provider": "azure", "keyVaultEndpoint": "v.vault.azure.net", "keyName": "k", "keyVersion": "abc"},
        );
        roundtrip(
            &doc! {"provider": "gcp:eu", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k", "keyVersion": "1", "endpoint": "cloudkms.googleapis.com"},
        );
        roundtrip(
            &doc! {"provider": "kmip", "endpoint": "localhost:5696", "delegated": true, "keyId": "12"},
        );
        roundtrip(&doc! {"provider": "kmip", "keyId": "12"});
        let k = roundtrip(&doc! {"provider": "local:backup"});
        assert_eq!(k.provider().to_string(), "local:backup");
    }

    #[test]
    fn endpoint_scheme_and_path_are_dropped_like_libmongocrypt() {
        let k = MasterKey::from_document(&doc! {"provider": "aws", "region": "r", "key": "k", "endpoint": "https://example.com:8443/path"}).unwrap();
        assert_eq!(
            k.to_document().get_str("endpoint").unwrap(),
            "example.com:8443"
        );
        let e = Endpoint::parse("[::1]:99").unwrap();
        assert_eq!(e.host_and_port(), "[::1]:99");
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (doc! {"region": "r", "key": "k"}, "provider"),
            (doc! {"provider": "aws", "region": "r"}, "key"),
            (doc! {"provider": "aws", "key": "k"}, "region"),
            (doc! {"provider": "aws", "key": 1, "region": "r"}, "key"),
            (
                doc! {"provider": "aws", "key": "k", "region": "r", "extra": 1},
                "extra",
            ),
            (
                doc! {"provider": "aws", "key": "k", "region": "r", "endpoint": "h:notaport"},
                "endpoint",
            ),
            (
                doc! {"provider": "azure", "keyName": "k"},
                "keyVaultEndpoint",
            ),
            (
                doc! {"provider": "gcp", "projectId": "p", "location": "l", "keyRing": "r"},
                "keyName",
            ),
            (doc! {"provider": "kmip", "delegated": "yes"}, "delegated"),
            (doc! {"provider": "local", "key": "x"}, "key"),
            (doc! {"provider": "nope"}, "provider"),
            (
                doc! {"provider": "aws:bad-name", "key": "k", "region": "r"},
                "provider",
            ),
            (doc! {"provider": "aws", "key": "", "region": "r"}, "key"),
        ];
        for (d, field) in cases {
            match MasterKey::from_document(&d) {
                Err(KmsError::InvalidMasterKey { field: f, .. }) => assert_eq!(f, field, "{d}"),
                other => panic!("{d}: {other:?}"),
            }
        }
    }
}
