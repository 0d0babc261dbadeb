//! The KMS unreachable, slow or failing while data keys are cold, through
//! the application's own settings (`endpoint`, `tls_ca_file`, `timeout_ms`)
//! and a relay started here in front of the KMS that passes traffic
//! through, holds it without answering, answers HTTP 500 or closes the
//! connection.
//!
//! - AWS (no peer needed: every fault is the relay's own answer): an error
//!   during `migrate` names the model, the field and the provider, within
//!   the configured timeout, and nothing of the migration is kept.
//! - KMIP (pykmip from `crates/cipherdoc-kms/tests/peers/setup.sh`, over
//!   TLS with the test CA as `tls_ca_file`): keys unwrapped before the fault
//!   keep working; a cold key fails within the timeout naming the provider,
//!   and nothing is written; once the KMS answers again, the write goes
//!   through.

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cipherdoc::bson::oid::ObjectId;
use cipherdoc::migrations::{MigrateOptions, MigrationError, initial_migrations, migrate};
use cipherdoc::settings::Settings;
use cipherdoc::{App, Error, Model};
use cipherdoc_kms::KmsError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "kmsfault")]
struct Card {
    id: ObjectId,
    holder: String,
    #[encrypted(queries = "equality")]
    number: String,
}

/// What the relay does with the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Relay to the upstream.
    Pass,
    /// Accept and never answer.
    Hang,
    /// Answer every request with HTTP 500.
    Http500,
    /// Close the connection at once.
    Close,
}

struct Relay {
    port: u16,
    fault: Arc<Mutex<Fault>>,
}

impl Relay {
    async fn start(upstream: Option<String>, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(fault));
        let f = Arc::clone(&fault);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mode = *f.lock().unwrap();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    match mode {
                        Fault::Pass => {
                            let Some(up) = upstream else { return };
                            if let Ok(mut up) = TcpStream::connect(up).await {
                                let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                            }
                        }
                        Fault::Hang => {
                            // Read and discard until the client gives up.
                            let mut buf = [0u8; 4096];
                            while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                        }
                        Fault::Http500 => {
                            let mut buf = [0u8; 4096];
                            let mut seen = Vec::new();
                            while let Ok(n) = sock.read(&mut buf).await {
                                if n == 0 {
                                    return;
                                }
                                seen.extend_from_slice(&buf[..n]);
                                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                                    break;
                                }
                            }
                            let body = r#"{"__type":"KMSInternalException","message":"injected"}"#;
                            let _ = sock
                                .write_all(
                                    format!(
                                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                        body.len()
                                    )
                                    .as_bytes(),
                                )
                                .await;
                        }
                        Fault::Close => drop(sock),
                    }
                });
            }
        });
        Self { port, fault }
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// The KMS error behind an application error, if any.
fn kms_error(e: &Error) -> Option<&KmsError> {
    match e {
        Error::Kms(k) => Some(k),
        Error::Migration(MigrationError::DataKeyCreation { source, .. }) => kms_error(source),
        _ => None,
    }
}

fn write_private(path: &Path, text: &[u8]) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

async fn open(text: &str, dir: &Path) -> App {
    App::open(Settings::from_toml(text, dir).unwrap())
        .await
        .unwrap()
        .register::<Card>()
        .unwrap()
}

async fn migrate_all(app: &App) -> cipherdoc::Result<()> {
    let source = initial_migrations(app).unwrap();
    migrate(app, &source, &MigrateOptions::database("default"))
        .await
        .map(|_| ())
}

fn aws_settings(port: u16, timeout_ms: u64) -> String {
    format!(
        r#"
[databases.default]
engine = "sqlite"
path = "cards.db"
name = "cards_db"

[databases.default.encryption]
key_vault_namespace = "cards_db.__keyVault"
default_kms_provider = "aws"
kms_providers.aws.access_key_id = "AKIDKMSFAULTS"
kms_providers.aws.secret_access_key_file = "aws.secret"
kms_providers.aws.endpoint = "http://127.0.0.1:{port}"
kms_providers.aws.timeout_ms = {timeout_ms}
kms_credentials.aws.key = "arn:aws:kms:us-east-1:111122223333:key/kms-faults"
kms_credentials.aws.region = "us-east-1"
"#
    )
}

const TIMEOUT_MS: u64 = 1500;
/// What the test allows beyond the timeout (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_failing_aws_kms_during_migrate_names_model_field_and_provider_within_the_timeout() {
    const SECRET: &str = "kms-faults-secret-never-in-errors";
    // A port with nothing behind it: connection refused.
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let relay = Relay::start(None, Fault::Hang).await;
    for (fault, port) in [
        (None, unreachable),
        (Some(Fault::Hang), relay.port),
        (Some(Fault::Http500), relay.port),
        (Some(Fault::Close), relay.port),
    ] {
        if let Some(f) = fault {
            relay.set(f);
        }
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join("aws.secret"), SECRET.as_bytes());
        let app = open(&aws_settings(port, TIMEOUT_MS), dir.path()).await;
        let started = Instant::now();
        let err = migrate_all(&app).await.unwrap_err();
        let took = started.elapsed();
        let text = err.to_string();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS) + SLACK,
            "{fault:?}: {took:?}: {text}"
        );
        let Error::Migration(MigrationError::DataKeyCreation {
            alias,
            model,
            field,
            ..
        }) = &err
        else {
            panic!("{fault:?}: not a data key creation error: {err:?}");
        };
        assert_eq!(
            (alias.as_str(), model.as_str(), field.as_str()),
            ("default", "kmsfault.Card", "number")
        );
        let kms = kms_error(&err).unwrap_or_else(|| panic!("{fault:?}: {err:?}"));
        match (fault, kms) {
            (Some(Fault::Hang), KmsError::DeadlineExceeded { provider, .. }) => {
                assert_eq!(provider, "aws");
            }
            (Some(Fault::Hang), other) => panic!("a hang must hit the deadline: {other:?}"),
            (_, k) => assert!(k.is_transient(), "{fault:?}: {k:?}"),
        }
        assert!(
            text.contains("aws")
                && text.contains("kmsfault.Card")
                && text.contains("'number'")
                && !text.contains(SECRET),
            "{text}"
        );
        // Nothing of the migration is kept: no collection, no data key.
        let db = app.database("default").unwrap();
        let collections = db.engine().list_collections().await.unwrap();
        assert!(
            !collections.iter().any(|c| c == "kmsfault_card"),
            "{collections:?}"
        );
        assert!(
            db.encryption()
                .unwrap()
                .keys()
                .vault()
                .find_by_alt_name("kmsfault_card.number")
                .await
                .unwrap()
                .is_none()
        );
    }
}

struct Kmip {
    endpoint: String,
    ca: String,
    cert: String,
    key: String,
}

fn kmip_peer() -> Option<Kmip> {
    let var = |name: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("CIPHERDOC_REQUIRE_PEERS").is_none(),
                "{name} is not set but CIPHERDOC_REQUIRE_PEERS is"
            );
            println!(
                "skipped: {name} is not set (run crates/cipherdoc-kms/tests/peers/setup.sh and source its env file)"
            );
            None
        }
    };
    Some(Kmip {
        endpoint: var("CIPHERDOC_TEST_KMIP_ENDPOINT")?,
        ca: var("CIPHERDOC_TEST_KMIP_CA")?,
        cert: var("CIPHERDOC_TEST_KMIP_CLIENT_CERT")?,
        key: var("CIPHERDOC_TEST_KMIP_CLIENT_KEY")?,
    })
}

fn kmip_settings(port: u16, dir: &Path, peer: &Kmip) -> String {
    std::fs::copy(&peer.ca, dir.join("ca.pem")).unwrap();
    std::fs::copy(&peer.cert, dir.join("client.pem")).unwrap();
    write_private(&dir.join("client.key"), &std::fs::read(&peer.key).unwrap());
    format!(
        r#"
[databases.default]
engine = "sqlite"
path = "cards.db"
name = "cards_db"

[databases.default.encryption]
key_vault_namespace = "cards_db.__keyVault"
default_kms_provider = "kmip"
kms_providers.kmip.endpoint = "127.0.0.1:{port}"
kms_providers.kmip.tls_ca_file = "ca.pem"
kms_providers.kmip.tls_cert_file = "client.pem"
kms_providers.kmip.tls_key_file = "client.key"
kms_providers.kmip.timeout_ms = {TIMEOUT_MS}
"#
    )
}

fn card(n: u32) -> Card {
    Card {
        id: ObjectId::new(),
        holder: format!("holder {n}"),
        number: format!("4111-{n:04}"),
    }
}

#[tokio::test]
async fn cached_keys_survive_a_kmip_outage_and_cold_keys_fail_in_time_with_nothing_written() {
    let Some(peer) = kmip_peer() else { return };
    let relay = Relay::start(Some(peer.endpoint.clone()), Fault::Pass).await;
    let dir = tempfile::tempdir().unwrap();
    let text = kmip_settings(relay.port, dir.path(), &peer);
    let warm = open(&text, dir.path()).await;
    migrate_all(&warm).await.unwrap();
    let cards = warm.objects::<Card>();
    cards.create(card(1)).await.unwrap();

    for fault in [Fault::Hang, Fault::Close] {
        relay.set(fault);
        // Warm: the key is cached, the KMS is not asked.
        cards.create(card(2)).await.unwrap();
        let found = cards
            .filter(Card::fields().number.eq("4111-0002"))
            .count()
            .await
            .unwrap();
        assert!(found >= 1, "{fault:?}");

        // Cold: a fresh application must unwrap the key.
        let cold = open(&text, dir.path()).await;
        let before = cold.objects::<Card>().count().await.unwrap();
        let started = Instant::now();
        let err = cold.objects::<Card>().create(card(3)).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS) + SLACK,
            "{fault:?}: {took:?}: {err}"
        );
        let kms = kms_error(&err).unwrap_or_else(|| panic!("{fault:?}: {err:?}"));
        assert!(kms.is_transient(), "{fault:?}: {kms:?}");
        assert!(err.to_string().contains("kmip"), "{err}");
        if fault == Fault::Hang {
            assert!(
                matches!(kms, KmsError::DeadlineExceeded { provider, .. } if provider == "kmip"),
                "{kms:?}"
            );
        }
        // Nothing written: not the document, not a half-encrypted one.
        assert_eq!(cold.objects::<Card>().count().await.unwrap(), before);
        assert_eq!(
            cold.objects::<Card>()
                .filter(Card::fields().holder.eq("holder 3"))
                .count()
                .await
                .unwrap(),
            0
        );
    }

    // The KMS answers again: the cold application writes and reads.
    relay.set(Fault::Pass);
    let cold = open(&text, dir.path()).await;
    cold.objects::<Card>().create(card(3)).await.unwrap();
    assert_eq!(
        cold.objects::<Card>()
            .filter(Card::fields().number.eq("4111-0003"))
            .count()
            .await
            .unwrap(),
        1
    );
}
