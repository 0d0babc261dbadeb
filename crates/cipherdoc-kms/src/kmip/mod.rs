//! KMIP provider: TTLV over TLS 1.2 with a client certificate, following
//! libmongocrypt's flows (`mongocrypt-ctx-datakey.c`, `kms_kmip_request.c`).
//!
//! * Not delegated (default): `Register` a random 96-byte SecretData (type
//!   Seed, format Opaque, usage mask 0) unless `keyId` is given, `Activate`
//!   it, `Get` it, and wrap the DEK locally with it as the local provider
//!   does (libmongocrypt uses `_mongocrypt_wrap_key`, the FLE1 AEAD of
//!   [`cipherdoc_crypto::wrap_local`]). Unwrap = `Get` + local unwrap.
//! * Delegated: `Create` an AES-256 key (usage Encrypt|Decrypt) unless
//!   `keyId` is given, `Activate`, then `Encrypt` with AES-CBC-PKCS5 and a
//!   server-chosen IV; `keyMaterial = IV(16) ‖ ciphertext`. Unwrap =
//!   `Decrypt` with the IV split off.

pub mod ttlv;

use std::sync::Arc;

use async_trait::async_trait;
use cipherdoc_crypto::LocalMasterKey;
use rand_core::{OsRng, RngCore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zeroize::Zeroizing;

use self::ttlv::{Item, Value, tag};
use crate::http::{HttpOptions, TlsOptions, read_file};
use crate::local;
use crate::{
    Endpoint, HostSet, KeyTrust, KmipCredentials, KmipMasterKeyDoc, KmsError, KmsProvider,
    MasterKey, ProviderKind, ProviderName, WrappedKey,
};

const DEFAULT_PORT: u16 = 5696;
/// Answers larger than this are refused (ours are a few hundred bytes).
const MAX_RESPONSE: usize = 1 << 20;
const SECRET_DATA_LEN: usize = 96;
const IV_LEN: usize = 16;

mod op {
    pub const CREATE: u32 = 0x01;
    pub const REGISTER: u32 = 0x03;
    pub const GET: u32 = 0x0A;
    pub const ACTIVATE: u32 = 0x12;
    pub const ENCRYPT: u32 = 0x1F;
    pub const DECRYPT: u32 = 0x20;
}

/// A KMIP provider.
pub struct KmipProvider {
    name: ProviderName,
    endpoint: Endpoint,
    connector: TlsConnector,
    opts: HttpOptions,
    trust: KeyTrust,
    /// The only hosts a connection may go to: the configured endpoint, the
    /// configured master keys' and the allowlist.
    allowed: HostSet,
}

/// Whether a flow may run again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and cryptographic operations: running them twice is harmless.
    Transient,
    /// A flow that creates server objects (Create, Register, Activate): a
    /// failure after the request was sent may have created the object, and
    /// a second run would create another.
    Never,
}

impl std::fmt::Debug for KmipProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmipProvider")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn tls_config(name: &ProviderName, tls: &TlsOptions) -> Result<rustls::ClientConfig, KmsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        let pem = read_file(name, "CA file", ca)?;
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c =
                c.map_err(|e| KmsError::config(name, format!("CA file {}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| KmsError::config(name, format!("CA file {}: {e}", ca.display())))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| KmsError::config(name, format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let cfg = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), key) => {
            let cert_pem = read_file(name, "client certificate", cert)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    KmsError::config(name, format!("client certificate {}: {e}", cert.display()))
                })?;
            let key_path = key.as_ref().unwrap_or(cert);
            let key_pem = Zeroizing::new(read_file(name, "client key", key_path)?);
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                KmsError::config(name, format!("client key {}: {e}", key_path.display()))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| KmsError::config(name, format!("client certificate/key: {e}")))?
        }
        (None, Some(_)) => {
            return Err(KmsError::config(
                name,
                "client key given without client certificate",
            ));
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(cfg)
}

impl KmipProvider {
    /// Builds the provider.
    pub fn new(
        name: &ProviderName,
        creds: KmipCredentials,
        http: &HttpOptions,
        tls: &TlsOptions,
    ) -> Result<Self, KmsError> {
        if name.kind() != ProviderKind::Kmip {
            return Err(KmsError::config(name, "not a kmip provider name"));
        }
        // KMIP servers are private: a public web-PKI root would not have
        // issued their certificate, so the CA must be given.
        if tls.ca_file.is_none() {
            return Err(KmsError::config(
                &name,
                "KMIP needs tls ca_file (the CA that issued the server certificate)",
            ));
        }
        let connector = TlsConnector::from(Arc::new(tls_config(name, tls)?));
        let mut allowed = HostSet::default();
        allowed.insert(
            creds.endpoint.host(),
            Some(creds.endpoint.port().unwrap_or(DEFAULT_PORT)),
        );
        Ok(Self {
            name: name.clone(),
            endpoint: creds.endpoint,
            connector,
            opts: http.clone(),
            trust: KeyTrust::default(),
            allowed,
        })
    }

    /// Uses the master keys and hosts the settings allow. Until then only
    /// master keys on the configured endpoint are accepted (see
    /// [`crate::KeyTrust`]).
    #[must_use]
    pub fn with_trust(mut self, trust: KeyTrust) -> Self {
        for (h, p) in trust.hosts(Some(&self.endpoint)).entries() {
            self.allowed.insert(h, p);
        }
        self.trust = trust;
        self
    }

    fn endpoint_for(&self, mk: &KmipMasterKeyDoc) -> Result<(String, u16), KmsError> {
        let e = mk.endpoint.as_ref().unwrap_or(&self.endpoint);
        let host = e
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = e.port().unwrap_or(DEFAULT_PORT);
        if !self.allowed.permits(&host, Some(port)) {
            return Err(KmsError::HostNotAllowed {
                provider: self.name.to_string(),
                host: format!("{host}:{port}"),
                allowed: self.allowed.to_string(),
            });
        }
        Ok((host, port))
    }

    async fn connect(&self, host: &str, port: u16) -> Result<TlsStream<TcpStream>, KmsError> {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| self.net(host, port, &e.to_string()))?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|e| KmsError::config(&self.name, format!("server name {host:?}: {e}")))?;
        self.connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| self.net(host, port, &format!("TLS handshake: {e}")))
    }

    fn net(&self, host: &str, port: u16, reason: &str) -> KmsError {
        KmsError::Network {
            provider: self.name.to_string(),
            endpoint: format!("{host}:{port}"),
            reason: reason.to_owned(),
            attempts: 1,
        }
    }

    /// Runs `flow` on a fresh connection with the timeout, retrying transient failures.
    async fn with_session<T, F>(
        &self,
        mk: &KmipMasterKeyDoc,
        retry: Retry,
        flow: F,
    ) -> Result<T, KmsError>
    where
        F: for<'a> Fn(
            &'a mut Session<'_>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, KmsError>> + Send + 'a>,
        >,
    {
        let (host, port) = self.endpoint_for(mk)?;
        let max = match retry {
            Retry::Transient => self.opts.retry.max_attempts.max(1),
            Retry::Never => 1,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = async {
                let mut stream = self.connect(&host, port).await?;
                let mut s = Session {
                    p: self,
                    stream: &mut stream,
                    host: &host,
                    port,
                };
                let out = flow(&mut s).await;
                let _ = stream.shutdown().await;
                out
            };
            let mut res = match tokio::time::timeout(self.opts.timeout, run).await {
                Ok(r) => r,
                Err(_) => Err(KmsError::Timeout {
                    provider: self.name.to_string(),
                    endpoint: format!("{host}:{port}"),
                    timeout_ms: u64::try_from(self.opts.timeout.as_millis()).unwrap_or(u64::MAX),
                    attempts: attempt,
                }),
            };
            if let Err(e) = &mut res {
                e.set_attempts(attempt);
                if e.is_transient() && attempt < max {
                    tokio::time::sleep(self.opts.retry.backoff(attempt)).await;
                    continue;
                }
            }
            return res;
        }
    }
}

struct Session<'s> {
    p: &'s KmipProvider,
    stream: &'s mut TlsStream<TcpStream>,
    host: &'s str,
    port: u16,
}

fn request(version_minor: i32, operation: u32, payload: Vec<Item>) -> Vec<u8> {
    Item::structure(
        tag::REQUEST_MESSAGE,
        vec![
            Item::structure(
                tag::REQUEST_HEADER,
                vec![
                    Item::structure(
                        tag::PROTOCOL_VERSION,
                        vec![
                            Item::int(tag::PROTOCOL_VERSION_MAJOR, 1),
                            Item::int(tag::PROTOCOL_VERSION_MINOR, version_minor),
                        ],
                    ),
                    Item::int(tag::BATCH_COUNT, 1),
                ],
            ),
            Item::structure(
                tag::BATCH_ITEM,
                vec![
                    Item::enumeration(tag::OPERATION, operation),
                    Item::structure(tag::REQUEST_PAYLOAD, payload),
                ],
            ),
        ],
    )
    .encode()
}

fn attribute(name: &str, value: Item) -> Item {
    Item::structure(
        tag::ATTRIBUTE,
        vec![Item::text(tag::ATTRIBUTE_NAME, name), value],
    )
}

/// KMIP result reasons we map to specific errors (KMIP 1.x §9.1.3.2.29).
mod reason {
    pub const ITEM_NOT_FOUND: u32 = 0x01;
    pub const AUTHENTICATION_NOT_SUCCESSFUL: u32 = 0x03;
    pub const PERMISSION_DENIED: u32 = 0x0C;
}

impl Session<'_> {
    async fn roundtrip(
        &mut self,
        op_name: &str,
        req: Zeroizing<Vec<u8>>,
    ) -> Result<Item, KmsError> {
        let (host, port) = (self.host, self.port);
        self.stream
            .write_all(&req)
            .await
            .map_err(|e| self.p.net(host, port, &e.to_string()))?;
        self.stream
            .flush()
            .await
            .map_err(|e| self.p.net(host, port, &e.to_string()))?;
        let mut hdr = [0u8; 8];
        self.stream.read_exact(&mut hdr).await.map_err(|e| {
            self.p
                .net(host, port, &format!("reading {op_name} response: {e}"))
        })?;
        let total = ttlv::frame_len(&hdr);
        if total > MAX_RESPONSE {
            return Err(KmsError::protocol(
                &self.p.name,
                format!("{op_name} response of {total} bytes is too large"),
            ));
        }
        let mut buf = Zeroizing::new(vec![0u8; total]);
        buf[..8].copy_from_slice(&hdr);
        self.stream.read_exact(&mut buf[8..]).await.map_err(|e| {
            self.p
                .net(host, port, &format!("reading {op_name} response: {e}"))
        })?;
        let msg = Item::decode(&buf)
            .map_err(|e| KmsError::protocol(&self.p.name, format!("{op_name} response: {e}")))?;
        if msg.tag != tag::RESPONSE_MESSAGE {
            return Err(KmsError::protocol(
                &self.p.name,
                format!("{op_name} response is not a ResponseMessage"),
            ));
        }
        let item = msg.child(tag::BATCH_ITEM).ok_or_else(|| {
            KmsError::protocol(
                &self.p.name,
                format!("{op_name} response has no batch item"),
            )
        })?;
        let status = match item.child(tag::RESULT_STATUS).map(|i| &i.value) {
            Some(Value::Enumeration(s)) => *s,
            _ => {
                return Err(KmsError::protocol(
                    &self.p.name,
                    format!("{op_name} response has no result status"),
                ));
            }
        };
        if status != 0 {
            let reason_code = match item.child(tag::RESULT_REASON).map(|i| &i.value) {
                Some(Value::Enumeration(r)) => *r,
                _ => 0,
            };
            let message = match item.child(tag::RESULT_MESSAGE).map(|i| &i.value) {
                Some(Value::TextString(m)) => crate::http::clip(m),
                _ => String::new(),
            };
            let provider = self.p.name.to_string();
            let code = format!("{op_name}: result status {status}, reason {reason_code:#x}");
            return Err(match reason_code {
                reason::ITEM_NOT_FOUND => KmsError::KeyNotFound {
                    provider,
                    code,
                    message,
                },
                reason::PERMISSION_DENIED => KmsError::KeyDisabled {
                    provider,
                    code,
                    message,
                },
                reason::AUTHENTICATION_NOT_SUCCESSFUL => KmsError::Auth {
                    provider,
                    status: 0,
                    code,
                    message,
                },
                _ => KmsError::Service {
                    provider,
                    status: 0,
                    code,
                    message,
                    attempts: 1,
                },
            });
        }
        let payload = item.child(tag::RESPONSE_PAYLOAD).ok_or_else(|| {
            KmsError::protocol(&self.p.name, format!("{op_name} response has no payload"))
        })?;
        Ok(payload.clone())
    }

    fn uid(&self, op_name: &str, payload: &Item) -> Result<String, KmsError> {
        match payload.child(tag::UNIQUE_IDENTIFIER).map(|i| &i.value) {
            Some(Value::TextString(s)) => Ok(s.clone()),
            _ => Err(KmsError::protocol(
                &self.p.name,
                format!("{op_name} response has no unique identifier"),
            )),
        }
    }

    fn bytes(
        &self,
        op_name: &str,
        payload: &Item,
        path: &[u32],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        match payload.path(path).map(|i| &i.value) {
            Some(Value::ByteString(b)) => Ok(Zeroizing::new(b.clone())),
            _ => Err(KmsError::protocol(
                &self.p.name,
                format!("{op_name} response lacks expected bytes"),
            )),
        }
    }

    async fn register_secret(&mut self, secret: &[u8]) -> Result<String, KmsError> {
        let req = Zeroizing::new(request(
            0,
            op::REGISTER,
            vec![
                Item::enumeration(tag::OBJECT_TYPE, 0x07), // Secret Data
                Item::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    // Usage mask 0: the server never uses the secret itself.
                    vec![attribute(
                        "Cryptographic Usage Mask",
                        Item::int(tag::ATTRIBUTE_VALUE, 0),
                    )],
                ),
                Item::structure(
                    tag::SECRET_DATA,
                    vec![
                        Item::enumeration(tag::SECRET_DATA_TYPE, 0x02), // Seed
                        Item::structure(
                            tag::KEY_BLOCK,
                            vec![
                                Item::enumeration(tag::KEY_FORMAT_TYPE, 0x02), // Opaque
                                Item::structure(
                                    tag::KEY_VALUE,
                                    vec![Item::bytes(tag::KEY_MATERIAL, secret)],
                                ),
                            ],
                        ),
                    ],
                ),
            ],
        ));
        let p = self.roundtrip("Register", req).await?;
        self.uid("Register", &p)
    }

    async fn create_aes_key(&mut self) -> Result<String, KmsError> {
        let req = Zeroizing::new(request(
            2,
            op::CREATE,
            vec![
                Item::enumeration(tag::OBJECT_TYPE, 0x02), // Symmetric Key
                Item::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    vec![
                        attribute(
                            "Cryptographic Algorithm",
                            Item::enumeration(tag::ATTRIBUTE_VALUE, 3),
                        ), // AES
                        attribute("Cryptographic Length", Item::int(tag::ATTRIBUTE_VALUE, 256)),
                        attribute(
                            "Cryptographic Usage Mask",
                            Item::int(tag::ATTRIBUTE_VALUE, 4 | 8),
                        ), // Encrypt|Decrypt
                    ],
                ),
            ],
        ));
        let p = self.roundtrip("Create", req).await?;
        self.uid("Create", &p)
    }

    async fn activate(&mut self, uid: &str) -> Result<(), KmsError> {
        let req = Zeroizing::new(request(
            0,
            op::ACTIVATE,
            vec![Item::text(tag::UNIQUE_IDENTIFIER, uid)],
        ));
        self.roundtrip("Activate", req).await.map(drop)
    }

    async fn get_secret(&mut self, uid: &str) -> Result<LocalMasterKey, KmsError> {
        let req = Zeroizing::new(request(
            0,
            op::GET,
            vec![Item::text(tag::UNIQUE_IDENTIFIER, uid)],
        ));
        let p = self.roundtrip("Get", req).await?;
        match p.child(tag::OBJECT_TYPE).map(|i| &i.value) {
            Some(Value::Enumeration(0x07)) => {}
            _ => {
                return Err(KmsError::protocol(
                    &self.p.name,
                    format!("KMIP object {uid:?} is not a SecretData"),
                ));
            }
        }
        let s = self.bytes(
            "Get",
            &p,
            &[
                tag::SECRET_DATA,
                tag::KEY_BLOCK,
                tag::KEY_VALUE,
                tag::KEY_MATERIAL,
            ],
        )?;
        if s.len() != SECRET_DATA_LEN {
            return Err(KmsError::protocol(
                &self.p.name,
                format!(
                    "SecretData is {} bytes, expected {SECRET_DATA_LEN}",
                    s.len()
                ),
            ));
        }
        LocalMasterKey::from_slice(&s).map_err(|e| KmsError::protocol(&self.p.name, e.to_string()))
    }

    async fn crypt(
        &mut self,
        uid: &str,
        encrypt: bool,
        data: &[u8],
        iv: Option<&[u8]>,
    ) -> Result<Item, KmsError> {
        let mut params = vec![
            Item::enumeration(tag::BLOCK_CIPHER_MODE, 1), // CBC
            Item::enumeration(tag::PADDING_METHOD, 3),    // PKCS5
            Item::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3), // AES
        ];
        if encrypt {
            params.push(Item::boolean(tag::RANDOM_IV, true));
        }
        let mut payload = vec![
            Item::text(tag::UNIQUE_IDENTIFIER, uid),
            Item::structure(tag::CRYPTOGRAPHIC_PARAMETERS, params),
            Item::bytes(tag::DATA, data),
        ];
        if let Some(iv) = iv {
            payload.push(Item::bytes(tag::IV_COUNTER_NONCE, iv));
        }
        let (name, opcode) = if encrypt {
            ("Encrypt", op::ENCRYPT)
        } else {
            ("Decrypt", op::DECRYPT)
        };
        self.roundtrip(name, Zeroizing::new(request(2, opcode, payload)))
            .await
    }
}

fn boxed<'a, T>(
    f: impl std::future::Future<Output = Result<T, KmsError>> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, KmsError>> + Send + 'a>> {
    Box::pin(f)
}

#[async_trait]
impl KmsProvider for KmipProvider {
    fn name(&self) -> &ProviderName {
        &self.name
    }

    fn check_master_key(&self, master_key: &MasterKey) -> Result<(), KmsError> {
        self.trust
            .check(&self.name, master_key, Some(&self.endpoint))
    }

    async fn wrap(&self, master_key: &MasterKey, dek: &[u8]) -> Result<WrappedKey, KmsError> {
        let MasterKey::Kmip(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.name.to_string(),
                got: master_key.kind(),
            });
        };
        self.trust
            .check(&self.name, master_key, Some(&self.endpoint))?;
        if !mk.delegated {
            // A data key the local wrap would refuse is refused before the
            // flow creates a server object.
            local::check_data_key(&self.name, dek)?;
        }
        // Without a keyId the flow creates a server object: never run twice.
        let retry = if mk.key_id.is_some() {
            Retry::Transient
        } else {
            Retry::Never
        };
        // The flow may run more than once (retries), so each run gets its own copies.
        let dek = Zeroizing::new(dek.to_vec());
        let (uid, key_material) = self
            .with_session(mk, retry, |s| {
                let mk = mk.clone();
                let dek = dek.clone();
                boxed(async move {
                    if mk.delegated {
                        let uid = if let Some(id) = &mk.key_id {
                            id.clone()
                        } else {
                            let id = s.create_aes_key().await?;
                            s.activate(&id).await?;
                            id
                        };
                        let p = s.crypt(&uid, true, &dek, None).await?;
                        let iv = s.bytes("Encrypt", &p, &[tag::IV_COUNTER_NONCE])?;
                        let ct = s.bytes("Encrypt", &p, &[tag::DATA])?;
                        if iv.len() != IV_LEN {
                            return Err(KmsError::protocol(
                                &s.p.name,
                                format!(
                                    "Encrypt returned a {}-byte IV, expected {IV_LEN}",
                                    iv.len()
                                ),
                            ));
                        }
                        Ok((uid, [iv.as_slice(), ct.as_slice()].concat()))
                    } else {
                        let uid = if let Some(id) = &mk.key_id {
                            id.clone()
                        } else {
                            let mut secret = Zeroizing::new([0u8; SECRET_DATA_LEN]);
                            OsRng.fill_bytes(&mut *secret);
                            let id = s.register_secret(&*secret).await?;
                            s.activate(&id).await?;
                            id
                        };
                        let kek = s.get_secret(&uid).await?;
                        Ok((uid, local::wrap_with(&s.p.name, &kek, &dek)?))
                    }
                })
            })
            .await?;
        let mut out = mk.clone();
        out.key_id = Some(uid);
        Ok(WrappedKey {
            key_material,
            master_key: MasterKey::Kmip(out),
        })
    }

    async fn unwrap(
        &self,
        master_key: &MasterKey,
        key_material: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let MasterKey::Kmip(mk) = master_key else {
            return Err(KmsError::WrongMasterKeyKind {
                provider: self.name.to_string(),
                got: master_key.kind(),
            });
        };
        self.trust
            .check(&self.name, master_key, Some(&self.endpoint))?;
        let Some(uid) = mk.key_id.as_deref() else {
            return Err(KmsError::InvalidMasterKey {
                provider: mk.provider.to_string(),
                field: "keyId".into(),
                reason: "is required to unwrap a KMIP data key".into(),
            });
        };
        if mk.delegated {
            if key_material.len() <= IV_LEN {
                return Err(KmsError::InvalidInput {
                    provider: self.name.to_string(),
                    reason: format!(
                        "delegated KMIP keyMaterial must be IV(16) followed by ciphertext, got {} bytes",
                        key_material.len()
                    ),
                });
            }
            let (iv, ct) = key_material.split_at(IV_LEN);
            self.with_session(mk, Retry::Transient, |s| {
                let (uid, iv, ct) = (uid.to_owned(), iv.to_vec(), ct.to_vec());
                boxed(async move {
                    let p = s.crypt(&uid, false, &ct, Some(&iv)).await?;
                    s.bytes("Decrypt", &p, &[tag::DATA])
                })
            })
            .await
        } else {
            let kek = self
                .with_session(mk, Retry::Transient, |s| {
                    let uid = uid.to_owned();
                    boxed(async move { s.get_secret(&uid).await })
                })
                .await?;
            local::unwrap_with(&self.name, &kek, key_material)
        }
    }
}
