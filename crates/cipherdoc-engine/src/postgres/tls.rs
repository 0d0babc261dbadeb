//! How a connection to PostgreSQL is protected: decided from the
//! connection string's `sslmode` and `sslrootcert`, the CA file setting and
//! whether every host is on this machine, before any connection is made.
//!
//! The decision table is the documentation of [`PgTransport`].

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::url;

/// The `sslmode` of a connection string, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgSslMode {
    /// `disable`: no TLS.
    Disable,
    /// `allow`: plain text first, TLS if the server insists (refused).
    Allow,
    /// `prefer`: TLS if the server offers it.
    Prefer,
    /// `require`: TLS (verified here, unlike libpq).
    Require,
    /// `verify-ca`: TLS with a verified chain (the name is checked too here).
    VerifyCa,
    /// `verify-full`: TLS with a verified chain and host name.
    VerifyFull,
}

impl PgSslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for PgSslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// What the server's certificate chain must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTrustAnchors {
    /// The certificates in a PEM file (`sslrootcert=<path>` or the
    /// `tls_ca_file` setting).
    CaFile(PathBuf),
    /// Mozilla's root certificates, bundled with cipherdoc
    /// (`sslrootcert=system`): for a server whose certificate a public CA
    /// issued.
    WebPkiRoots,
}

impl fmt::Display for PgTrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CaFile(p) => write!(f, "the CA file {}", p.display()),
            Self::WebPkiRoots => f.write_str("the public web roots (sslrootcert=system)"),
        }
    }
}

/// How the connections of an engine are protected, decided from the
/// connection string's `sslmode` and `sslrootcert`, the CA file setting
/// and whether every host is on this machine, before any connection:
///
/// | `sslmode` | loopback host or Unix socket | any other host |
/// |---|---|---|
/// | absent, no CA given | plain | **refused**: give a CA or `sslmode=disable` |
/// | absent, CA given | verified TLS | verified TLS |
/// | `disable` | plain | plain (logged as a warning) |
/// | `allow` | **refused** | **refused** |
/// | `prefer`, CA given | verified TLS if the server offers TLS, else plain | **refused** |
/// | `require`, `verify-ca`, `verify-full`, CA given | verified TLS | verified TLS |
/// | `prefer`, `require`, `verify-ca`, `verify-full`, no CA | **refused** | **refused** |
///
/// *Verified TLS* is rustls (ring provider, TLS 1.2 and 1.3): the server's
/// certificate chain must lead to a trust anchor — the CA file named by
/// `sslrootcert` or by the `tls_ca_file` setting, or Mozilla's roots
/// (bundled, from `webpki-roots`) with `sslrootcert=system` — and the
/// certificate must name the host connected to (DNS name, or IP address
/// for an IP literal). Where libpq is weaker, cipherdoc is not:
/// - libpq's `require` encrypts without checking the certificate, and its
///   `verify-ca` skips the host name. Neither stops an active attacker,
///   who can present any certificate, so both are verified here as
///   `verify-full`: a URL written for libpq keeps working when its
///   certificate is right, and fails the handshake (naming what was
///   checked) when it is not.
/// - A TLS mode without any trust anchor is refused before connecting
///   (libpq would look for `~/.postgresql/root.crt`; cipherdoc reads no
///   implicit file).
/// - `allow` tries plain text first, and `prefer` to another host falls
///   back to plain text when anyone on the path answers "no TLS"; both
///   are refused rather than quietly downgraded. On loopback nobody is on
///   the path, so `prefer` keeps its meaning there.
/// - A CA given together with `sslmode=disable`, or two different CAs (URL
///   and setting), are contradictions and refused.
/// - PostgreSQL offers no TLS over a Unix socket: TLS always on with a
///   Unix socket among the hosts is refused (`prefer` uses the socket
///   plain).
/// - libpq's other TLS parameters (`sslcert`, `sslkey`, `sslcrl`,
///   `sslsni`, …) are refused by name: no client certificates yet.
///
/// "Loopback" means every address connected to is a loopback address
/// (`127.0.0.0/8`, `::1`), the name `localhost`, or a Unix socket: the
/// traffic never leaves the machine. With `hostaddr`, that address decides
/// (the host name is then only what the certificate must name).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTransport {
    /// No TLS: every host is loopback or a Unix socket, or `sslmode=disable`.
    Plain,
    /// `sslmode=prefer` to loopback: verified TLS when the server offers
    /// it, plain text when it does not.
    TlsIfOffered(PgTrustAnchors),
    /// TLS on every connection, certificate chain and host name verified.
    VerifiedTls(PgTrustAnchors),
}

impl PgTransport {
    /// Decide how to connect, from the connection string and the CA file
    /// setting, without connecting or reading any file: the check settings
    /// make when they are loaded.
    pub fn resolve(url: &str, tls_ca_file: Option<&Path>) -> Result<Self, PgConnectError> {
        Plan::new(url, tls_ca_file).map(|p| p.transport)
    }

    /// The trust anchors, when TLS is used.
    pub fn trust_anchors(&self) -> Option<&PgTrustAnchors> {
        match self {
            Self::Plain => None,
            Self::TlsIfOffered(a) | Self::VerifiedTls(a) => Some(a),
        }
    }
}

const ALLOW_WHY: &str = "it sends everything in plain text unless the server insists on TLS, and libpq does not check the certificate then";

const FIX: &str = "add sslrootcert=/path/to/ca.pem to the URL (or tls_ca_file to the database's settings; sslrootcert=system trusts the public web CAs)";

/// Why a PostgreSQL connection string was refused (before any connection
/// was attempted), or why its TLS handshake failed. Messages never contain
/// the connection string or any value of it but host names and paths.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgConnectError {
    /// The connection string could not be read.
    #[error(
        "the PostgreSQL connection string could not be parsed: {reason}; expected postgres://user@host:port/dbname?sslmode=verify-full&sslrootcert=/path/to/ca.pem"
    )]
    Syntax {
        /// What is wrong (never a value of the string).
        reason: String,
    },
    /// `sslmode` has a value libpq does not know.
    #[error(
        "unknown sslmode in the PostgreSQL connection string; use verify-full (or require, verify-ca: verified the same way), prefer (loopback only) or disable"
    )]
    UnknownSslMode,
    /// An `sslmode` that could send data in plain text where it must not.
    #[error(
        "sslmode={mode} is refused: {why}; use sslmode=verify-full with a CA, or sslmode=disable for plain text"
    )]
    SslModeRefused {
        /// The refused mode.
        mode: PgSslMode,
        /// Why.
        why: &'static str,
    },
    /// A non-loopback host, no `sslmode` and no CA: cipherdoc would need
    /// verified TLS and has nothing to verify the certificate against.
    #[error(
        "host {host} is not a loopback address, so the connection must use TLS with a verified certificate (sslmode defaults to verify-full), but no CA is given: {FIX}, or set sslmode=disable to send the data and the password in plain text"
    )]
    RemoteWithoutCa {
        /// The first host that is not on this machine.
        host: String,
    },
    /// `sslmode=prefer` to a host that is not on this machine.
    #[error(
        "sslmode=prefer is refused for host {host}, which is not a loopback address: anyone on the path can answer \"no TLS\" and get the data in plain text; use sslmode=verify-full with a CA, or sslmode=disable"
    )]
    PreferToRemote {
        /// The first host that is not on this machine.
        host: String,
    },
    /// A TLS mode with no trust anchor.
    #[error(
        "sslmode={mode} needs a CA to verify the server's certificate against (cipherdoc verifies it under every TLS mode): {FIX}"
    )]
    MissingCa {
        /// The mode asked for.
        mode: PgSslMode,
    },
    /// A CA with `sslmode=disable`.
    #[error(
        "sslmode=disable contradicts the CA given ({anchors}); remove sslmode=disable to use TLS, or remove the CA"
    )]
    CaWithTlsDisabled {
        /// The CA that was given.
        anchors: PgTrustAnchors,
    },
    /// `sslrootcert` and the `tls_ca_file` setting name different CAs.
    #[error(
        "the connection string's sslrootcert ({url}) and the tls_ca_file setting ({setting}) differ; keep one"
    )]
    ConflictingCa {
        /// What `sslrootcert` names.
        url: PgTrustAnchors,
        /// What the setting names.
        setting: PgTrustAnchors,
    },
    /// TLS asked for over a Unix socket, where PostgreSQL has none.
    #[error(
        "TLS was asked for (sslmode or a CA) but a host is a Unix socket, over which PostgreSQL offers no TLS; a Unix socket does not leave the machine: use sslmode=disable, or a TCP host"
    )]
    TlsOverUnixSocket,
    /// A TLS target without a name the certificate could be checked against.
    #[error(
        "TLS needs the host name the certificate names, and {what}; set host= to that name (hostaddr= may still give the address)"
    )]
    TlsHostName {
        /// What is wrong with the name.
        what: String,
    },
    /// A libpq TLS parameter cipherdoc does not implement.
    #[error(
        "the connection string parameter {name} is not supported (cipherdoc implements sslmode and sslrootcert; no client certificates); remove it"
    )]
    UnsupportedParameter {
        /// The parameter.
        name: String,
    },
    /// The CA file could not be used.
    #[error("CA file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS handshake failed: most often the certificate did not verify.
    #[error(
        "TLS handshake with the PostgreSQL server failed: {reason}; cipherdoc checks the server's certificate against {anchors} and that it names the host connected to, under every TLS sslmode (require and verify-ca included)"
    )]
    Handshake {
        /// What was trusted.
        anchors: PgTrustAnchors,
        /// rustls's reason.
        reason: String,
    },
}

/// Where each configured target connects.
enum Reach {
    Loopback,
    UnixSocket,
    Remote(String),
}

fn is_loopback_ip(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

fn is_loopback_name(name: &str) -> bool {
    name.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

/// tokio-postgres connects to `hostaddr[i]` when given, else to `host[i]`.
fn reach(config: &tokio_postgres::Config) -> Vec<Reach> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    (0..hosts.len().max(addrs.len()))
        .map(|i| match (addrs.get(i), hosts.get(i)) {
            (Some(a), _) if is_loopback_ip(*a) => Reach::Loopback,
            (Some(a), _) => Reach::Remote(a.to_string()),
            (None, Some(Host::Unix(_))) => Reach::UnixSocket,
            (None, Some(Host::Tcp(name))) if is_loopback_name(name) => Reach::Loopback,
            (None, Some(Host::Tcp(name))) => Reach::Remote(name.clone()),
            (None, None) => Reach::Loopback,
        })
        .collect()
}

/// The connection string resolved: tokio-postgres's configuration (TLS
/// parameters removed, its `sslmode` set to match) and the transport.
struct Plan {
    config: tokio_postgres::Config,
    transport: PgTransport,
    /// A host off this machine reached in plain text (`sslmode=disable`).
    plain_to: Option<String>,
}

impl Plan {
    fn new(url: &str, tls_ca_file: Option<&Path>) -> Result<Self, PgConnectError> {
        let split = url::split(url)?;
        if let Some(name) = split.unsupported.first() {
            return Err(PgConnectError::UnsupportedParameter { name: name.clone() });
        }
        let mode = split
            .sslmode
            .as_deref()
            .map(|m| PgSslMode::parse(m).ok_or(PgConnectError::UnknownSslMode))
            .transpose()?;
        let from_url = split.sslrootcert.as_deref().map(|r| match r {
            "system" => PgTrustAnchors::WebPkiRoots,
            path => PgTrustAnchors::CaFile(PathBuf::from(path)),
        });
        let from_setting = tls_ca_file.map(|p| PgTrustAnchors::CaFile(p.to_path_buf()));
        let anchors = match (from_url, from_setting) {
            (Some(u), Some(s)) if u != s => {
                return Err(PgConnectError::ConflictingCa { url: u, setting: s });
            }
            (u, s) => u.or(s),
        };
        let mut config: tokio_postgres::Config =
            split.rest.parse().map_err(|e: tokio_postgres::Error| {
                // tokio-postgres names options and byte positions, never values.
                PgConnectError::Syntax {
                    reason: e.to_string(),
                }
            })?;
        let reach = reach(&config);
        let remote = reach.iter().find_map(|r| match r {
            Reach::Remote(h) => Some(h.clone()),
            _ => None,
        });
        let mut plain_to = None;
        let transport = match (mode, anchors) {
            (Some(PgSslMode::Allow), _) => {
                return Err(PgConnectError::SslModeRefused {
                    mode: PgSslMode::Allow,
                    why: ALLOW_WHY,
                });
            }
            (Some(PgSslMode::Disable), Some(anchors)) => {
                return Err(PgConnectError::CaWithTlsDisabled { anchors });
            }
            (Some(PgSslMode::Disable) | None, None) if remote.is_none() => PgTransport::Plain,
            (Some(PgSslMode::Disable), None) => {
                plain_to = remote;
                PgTransport::Plain
            }
            (None, None) => {
                return Err(PgConnectError::RemoteWithoutCa {
                    host: remote.unwrap_or_default(),
                });
            }
            (Some(PgSslMode::Prefer), _) if remote.is_some() => {
                return Err(PgConnectError::PreferToRemote {
                    host: remote.unwrap_or_default(),
                });
            }
            (Some(mode), None) => return Err(PgConnectError::MissingCa { mode }),
            (Some(PgSslMode::Prefer), Some(anchors)) => {
                check_names(&config, &reach, TlsNeed::IfOffered)?;
                PgTransport::TlsIfOffered(anchors)
            }
            (_, Some(anchors)) => {
                check_names(&config, &reach, TlsNeed::Always)?;
                PgTransport::VerifiedTls(anchors)
            }
        };
        config.ssl_mode(match transport {
            PgTransport::Plain => SslMode::Disable,
            PgTransport::TlsIfOffered(_) => SslMode::Prefer,
            PgTransport::VerifiedTls(_) => SslMode::Require,
        });
        if config.get_application_name().is_none() {
            config.application_name("cipherdoc");
        }
        Ok(Self {
            config,
            transport,
            plain_to,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsNeed {
    IfOffered,
    Always,
}

/// Every TCP target must have a name rustls can check the certificate
/// against; with TLS always on, no target may be a Unix socket.
fn check_names(
    config: &tokio_postgres::Config,
    reach: &[Reach],
    need: TlsNeed,
) -> Result<(), PgConnectError> {
    let hosts = config.get_hosts();
    for (i, r) in reach.iter().enumerate() {
        match (r, hosts.get(i)) {
            (Reach::UnixSocket, _) if need == TlsNeed::Always => {
                return Err(PgConnectError::TlsOverUnixSocket);
            }
            (Reach::UnixSocket, _) => {}
            (_, Some(Host::Tcp(name))) => {
                if ServerName::try_from(name.as_str()).is_err() {
                    return Err(PgConnectError::TlsHostName {
                        what: format!("{name:?} is neither a DNS name nor an IP address"),
                    });
                }
            }
            (_, Some(Host::Unix(_))) => {
                return Err(PgConnectError::TlsHostName {
                    what: "a hostaddr is paired with a Unix socket path".to_owned(),
                });
            }
            (_, None) => {
                return Err(PgConnectError::TlsHostName {
                    what: "a hostaddr has no host name".to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Connects as a resolved connection string says: the pool's connections
/// and the test helpers' own.
#[derive(Clone)]
pub(super) struct Dialer {
    config: tokio_postgres::Config,
    transport: PgTransport,
    tls: Option<MakeRustlsConnect>,
}

impl Dialer {
    /// Resolve the connection string and read the CA file, if any.
    pub(super) fn new(url: &str, tls_ca_file: Option<&Path>) -> Result<Self, PgConnectError> {
        let Plan {
            config,
            transport,
            plain_to,
        } = Plan::new(url, tls_ca_file)?;
        if let Some(host) = plain_to {
            tracing::warn!(
                host,
                "sslmode=disable: data and password go in plain text to a host that is not on this machine"
            );
        }
        let tls = transport
            .trust_anchors()
            .map(client_config)
            .transpose()?
            .map(MakeRustlsConnect::new);
        Ok(Self {
            config,
            transport,
            tls,
        })
    }

    pub(super) fn transport(&self) -> &PgTransport {
        &self.transport
    }

    /// tokio-postgres's view of the connection string (TLS parameters out).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(super) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(super) fn manager(&self) -> deadpool_postgres::Manager {
        let mgr = deadpool_postgres::ManagerConfig::default();
        match &self.tls {
            Some(tls) => {
                deadpool_postgres::Manager::from_config(self.config.clone(), tls.clone(), mgr)
            }
            None => deadpool_postgres::Manager::from_config(self.config.clone(), NoTls, mgr),
        }
    }

    /// One connection outside the pool, driven by a spawned task.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(super) async fn connect(&self) -> crate::Result<Client> {
        let spawn = |r: Result<(), tokio_postgres::Error>| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection closed");
            }
        };
        if let Some(tls) = &self.tls {
            let (client, conn) = self
                .config
                .connect(tls.clone())
                .await
                .map_err(|e| self.error(e))?;
            tokio::spawn(async move { spawn(conn.await) });
            Ok(client)
        } else {
            let (client, conn) = self.config.connect(NoTls).await?;
            tokio::spawn(async move { spawn(conn.await) });
            Ok(client)
        }
    }

    /// A connection error, typed as a handshake failure when rustls refused.
    pub(super) fn error(&self, e: tokio_postgres::Error) -> crate::EngineError {
        match (self.transport.trust_anchors(), rustls_reason(&e)) {
            (Some(anchors), Some(reason)) => PgConnectError::Handshake {
                anchors: anchors.clone(),
                reason,
            }
            .into(),
            _ => e.into(),
        }
    }

    /// A pool error, typed as a handshake failure when rustls refused.
    pub(super) fn pool_error(&self, e: deadpool_postgres::PoolError) -> crate::EngineError {
        match e {
            deadpool_postgres::PoolError::Backend(e) if rustls_reason(&e).is_some() => {
                self.error(e)
            }
            e => crate::EngineError::PostgresPool(e.to_string()),
        }
    }
}

/// rustls's error somewhere in the chain (tokio-rustls wraps it in an
/// `io::Error`, whose `source` skips it).
fn rustls_reason(e: &tokio_postgres::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(r) = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        cur = c.source();
    }
    None
}

fn client_config(anchors: &PgTrustAnchors) -> Result<rustls::ClientConfig, PgConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    match anchors {
        PgTrustAnchors::WebPkiRoots => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        PgTrustAnchors::CaFile(path) => {
            let bad = |reason: String| PgConnectError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("is not valid PEM ({e})")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("holds a certificate rustls cannot use ({e})")))?;
            }
            if roots.is_empty() {
                return Err(bad(
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| PgConnectError::Handshake {
            anchors: anchors.clone(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // PostgreSQL 17's direct TLS negotiation (sslnegotiation=direct)
    // requires this ALPN protocol; servers that predate it ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Result<PgTransport, PgConnectError> {
        PgTransport::resolve(url, None)
    }

    fn ca(p: &str) -> PgTransport {
        PgTransport::VerifiedTls(PgTrustAnchors::CaFile(PathBuf::from(p)))
    }

    #[test]
    fn loopback_is_plain_by_default() {
        for u in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@localhost/test",
            "postgres://postgres@[::1]/test",
            "postgres://postgres@127.1.2.3/test",
            "host=/var/run/postgresql user=postgres",
            "postgres://u@db.example.com/x?hostaddr=127.0.0.1",
            "postgres://u@db.example.com/x?sslmode=disable",
        ] {
            assert_eq!(resolve(u).unwrap(), PgTransport::Plain, "{u}");
        }
    }

    #[test]
    fn every_tls_mode_is_verified() {
        for m in ["require", "verify-ca", "verify-full"] {
            let u = format!("postgres://u@db.example.com/x?sslmode={m}&sslrootcert=/ca.pem");
            assert_eq!(resolve(&u).unwrap(), ca("/ca.pem"), "{m}");
        }
        // A CA alone means TLS, on loopback too.
        assert_eq!(
            PgTransport::resolve("postgres://u@127.0.0.1/x", Some(Path::new("/ca.pem"))).unwrap(),
            ca("/ca.pem")
        );
        assert_eq!(
            resolve("host=db.example.com sslrootcert=system").unwrap(),
            PgTransport::VerifiedTls(PgTrustAnchors::WebPkiRoots)
        );
        assert_eq!(
            resolve("postgres://u@127.0.0.1/x?sslmode=prefer&sslrootcert=/ca.pem").unwrap(),
            PgTransport::TlsIfOffered(PgTrustAnchors::CaFile(PathBuf::from("/ca.pem")))
        );
    }

    #[test]
    fn what_could_go_out_in_plain_text_is_refused() {
        let e = resolve("postgres://app:pw-canary@db.example.com/x").unwrap_err();
        assert!(matches!(&e, PgConnectError::RemoteWithoutCa { host } if host == "db.example.com"));
        assert!(
            e.to_string().contains("sslrootcert=") && e.to_string().contains("sslmode=disable")
        );
        assert!(!e.to_string().contains("pw-canary"));
        assert!(matches!(
            resolve("postgres://u@127.0.0.1/x?host=localhost,db.example.com").unwrap_err(),
            PgConnectError::RemoteWithoutCa { .. }
        ));
        assert!(matches!(
            resolve("postgres://u@localhost/x?hostaddr=10.0.0.5").unwrap_err(),
            PgConnectError::RemoteWithoutCa { host } if host == "10.0.0.5"
        ));
        assert!(matches!(
            resolve("postgres://u@db.example.com/x?sslmode=prefer&sslrootcert=/ca.pem")
                .unwrap_err(),
            PgConnectError::PreferToRemote { .. }
        ));
        for u in [
            "postgres://u@127.0.0.1/x?sslmode=allow",
            "postgres://u@db/x?sslmode=allow",
        ] {
            assert!(matches!(
                resolve(u).unwrap_err(),
                PgConnectError::SslModeRefused {
                    mode: PgSslMode::Allow,
                    ..
                }
            ));
        }
    }

    #[test]
    fn contradictions_and_unknowns_are_refused() {
        for (u, setting, want) in [
            ("postgres://u@h/x?sslmode=require", None, "MissingCa"),
            (
                "postgres://u@127.0.0.1/x?sslmode=verify-full",
                None,
                "MissingCa",
            ),
            (
                "postgres://u@h/x?sslmode=disable&sslrootcert=/ca.pem",
                None,
                "CaWithTlsDisabled",
            ),
            (
                "postgres://u@h/x?sslmode=disable",
                Some("/ca.pem"),
                "CaWithTlsDisabled",
            ),
            (
                "postgres://u@h/x?sslmode=verify-ful",
                None,
                "UnknownSslMode",
            ),
            (
                "postgres://u@h/x?sslmode=require&sslcert=/c.pem",
                Some("/ca.pem"),
                "UnsupportedParameter",
            ),
            (
                "host=/run/pg sslmode=require sslrootcert=/ca.pem",
                None,
                "TlsOverUnixSocket",
            ),
            (
                "hostaddr=10.0.0.5 sslmode=require sslrootcert=/ca.pem",
                None,
                "TlsHostName",
            ),
            (
                "postgres://u@h/x?sslrootcert=/a.pem",
                Some("/b.pem"),
                "ConflictingCa",
            ),
            (
                "postgres://u@h/x?sslrootcert=system",
                Some("/b.pem"),
                "ConflictingCa",
            ),
            ("postgres://u@h/x?nonsense=1", Some("/b.pem"), "Syntax"),
        ] {
            let e = PgTransport::resolve(u, setting.map(Path::new)).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{u}: {e:?}");
        }
        // The same CA twice is no contradiction.
        assert_eq!(
            PgTransport::resolve(
                "postgres://u@h/x?sslrootcert=/ca.pem",
                Some(Path::new("/ca.pem"))
            )
            .unwrap(),
            ca("/ca.pem")
        );
    }
}
