//! TLS to PostgreSQL: connections the engine makes are encrypted and the
//! server's certificate verified (chain and host name); what could go out
//! in plain text to another machine is refused before anything is sent;
//! loopback and Unix sockets keep working in plain text.
//!
//! The server tests need `CIPHERDOC_TEST_POSTGRES_URL` and
//! `CIPHERDOC_TEST_POSTGRES_CA` (the CA of the server's certificate, as
//! `.ci/pg-tls` sets up) and otherwise print why they are skipped; the
//! refusals need no server and always run.

// Test helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bson::doc;
use cipherdoc_engine::postgres::{
    PgConnectError, PgEngine, PgOptions, PgTransport, PgTrustAnchors, PgUrl, testing,
};
use cipherdoc_engine::{Engine, EngineError, Filter, FindOptions};

/// A unique `application_name`, to find an engine's backends in
/// `pg_stat_activity`.
fn app_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "cdtls_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `(ssl, version)` of every backend whose `application_name` is `app`.
async fn backends(app: &str) -> Vec<(bool, Option<String>)> {
    let s = testing::tls_test_server().unwrap();
    let c = testing::connect(&s.url(&format!("sslmode=verify-full {}", s.sslrootcert())))
        .await
        .unwrap();
    c.query(
        "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = $1",
        &[&app],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Use the engine so that its pool holds a connection.
async fn exercise(e: &PgEngine) {
    e.insert_one("c", doc! {"a": 1}).await.unwrap();
    let found = e
        .find("c", &Filter::eq("a", 1), &FindOptions::default())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_tls_connections_are_encrypted() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    // The CA from the URL, and from the setting.
    for (params, options) in [
        (
            format!("sslmode=verify-full {}", s.sslrootcert()),
            PgOptions::default(),
        ),
        (String::new(), PgOptions::default().tls_ca_file(s.ca())),
    ] {
        let app = app_name();
        let url = s.url(&format!("{params} application_name={app}"));
        let e = PgEngine::temporary_with(&url, options).await.unwrap();
        assert_eq!(
            e.transport(),
            &PgTransport::VerifiedTls(PgTrustAnchors::CaFile(s.ca().to_path_buf()))
        );
        exercise(&e).await;
        let b = backends(&app).await;
        assert!(!b.is_empty(), "the engine's connection is not listed");
        for (ssl, version) in b {
            assert!(ssl, "a backend of the engine is not encrypted");
            assert!(version.unwrap().starts_with("TLSv1."));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_on_loopback_uses_verified_tls_when_offered() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    let app = app_name();
    let url = s.url(&format!(
        "sslmode=prefer {} application_name={app}",
        s.sslrootcert()
    ));
    let e = PgEngine::temporary(&url).await.unwrap();
    assert!(matches!(e.transport(), PgTransport::TlsIfOffered(_)));
    exercise(&e).await;
    let b = backends(&app).await;
    assert!(!b.is_empty() && b.iter().all(|(ssl, _)| *ssl));
}

/// A CA of its own, named `cn`.
fn foreign_ca(dir: &Path, cn: &str) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    let path = dir.join(format!("{}.pem", cn.replace(' ', "-")));
    std::fs::write(&path, cert.pem()).unwrap();
    path
}

fn handshake_reason(e: EngineError) -> String {
    match e {
        EngineError::PostgresConnect(PgConnectError::Handshake { reason, .. }) => reason,
        other => panic!("expected a TLS handshake refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_refused() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = foreign_ca(dir.path(), "another CA");
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = s.url(&format!(
            "sslmode={mode} sslrootcert='{}'",
            ca.to_string_lossy()
        ));
        let e = PgEngine::connect(&url, "tls_refused").await.unwrap_err();
        let shown = e.to_string();
        let reason = handshake_reason(e);
        assert!(reason.contains("UnknownIssuer"), "{mode}: {reason}");
        // The message names what the certificate was checked against.
        assert!(
            shown.contains(&ca.to_string_lossy().into_owned()),
            "{shown}"
        );
    }
    // The same through the test helper's own connections.
    let url = s.url(&format!(
        "sslmode=verify-full sslrootcert='{}'",
        ca.display()
    ));
    let e = testing::connect(&url).await.unwrap_err();
    assert!(handshake_reason(e).contains("UnknownIssuer"));
}

async fn ip_of(host: &str) -> IpAddr {
    if let Ok(ip) = host.parse() {
        return ip;
    }
    tokio::net::lookup_host((host, 0))
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_name_is_refused() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    let ip = ip_of(s.host()).await;
    // The right server at the right address, under a name its certificate
    // does not carry: what a man in the middle holding a valid certificate
    // for some other host looks like. libpq's require and verify-ca would
    // accept it; cipherdoc checks the name under every TLS mode.
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = s.url_at(
            "pg-elsewhere.invalid",
            &format!("hostaddr={ip} sslmode={mode} {}", s.sslrootcert()),
        );
        let reason = handshake_reason(PgEngine::connect(&url, "tls_refused").await.unwrap_err());
        assert!(reason.contains("not valid for name"), "{mode}: {reason}");
    }
    // The same address under a name it carries is accepted.
    let url = s.url_at(
        "localhost",
        &format!("hostaddr={ip} sslmode=verify-full {}", s.sslrootcert()),
    );
    PgEngine::temporary(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_on_loopback_and_unix_sockets_still_works() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    for params in ["sslmode=disable", ""] {
        let app = app_name();
        let e = PgEngine::temporary(&s.url(&format!("{params} application_name={app}")))
            .await
            .unwrap();
        assert_eq!(e.transport(), &PgTransport::Plain);
        exercise(&e).await;
        let b = backends(&app).await;
        assert!(!b.is_empty() && b.iter().all(|(ssl, _)| !*ssl), "{params}");
    }
    // The Unix socket the server listens on, if it is on this machine.
    let c = testing::connect(&s.url(&format!("sslmode=verify-full {}", s.sslrootcert())))
        .await
        .unwrap();
    let dirs: String = c
        .query_one("SHOW unix_socket_directories", &[])
        .await
        .unwrap()
        .get(0);
    let Some(dir) = dirs.split(',').map(str::trim).find(|d| d.starts_with('/')) else {
        println!("skipped (Unix socket part): the server has no Unix socket directory");
        return;
    };
    let url = s.url_at(dir, "");
    match PgEngine::temporary(&url).await {
        Ok(e) => {
            assert_eq!(e.transport(), &PgTransport::Plain);
            exercise(&e).await;
        }
        Err(e) => println!("skipped (Unix socket part): {dir} is not reachable from here ({e})"),
    }
}

/// An address of this machine that is not loopback (the one it would use
/// to reach a documentation-only address), if it has one.
fn non_loopback_ip() -> Option<IpAddr> {
    ["198.51.100.1:9", "192.0.2.1:9", "[2001:db8::1]:9"]
        .iter()
        .find_map(|dest| {
            let bind = if dest.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let sock = UdpSocket::bind(bind).ok()?;
            // Connecting a UDP socket sends nothing; it only picks a route.
            sock.connect(dest).ok()?;
            let ip = sock.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_host_without_sslmode_is_refused_before_connecting() {
    let Some(ip) = non_loopback_ip() else {
        println!("skipped: this machine has no non-loopback address to listen on");
        return;
    };
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let url = format!("postgres://app:pw-canary-7f3a@{host}:{port}/x?connect_timeout=5");
    let e = PgEngine::connect(&url, "refused").await.unwrap_err();
    let shown = e.to_string();
    assert!(
        matches!(
            &e,
            EngineError::PostgresConnect(PgConnectError::RemoteWithoutCa { host: h }) if h == &ip.to_string()
        ),
        "{e:?}"
    );
    // The message says what to do, and carries no password.
    for fix in ["sslrootcert=", "tls_ca_file", "sslmode=disable"] {
        assert!(shown.contains(fix), "{shown}");
    }
    assert!(!shown.contains("pw-canary") && !format!("{e:?}").contains("pw-canary"));
    // Nothing reached the listener.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "a connection was attempted"
    );
    // sslmode=prefer and allow would fall back to plain text: refused too.
    for (mode, want) in [("prefer", "PreferToRemote"), ("allow", "SslModeRefused")] {
        let e = PgEngine::connect(
            &format!("{url}&sslmode={mode}&sslrootcert=/nonexistent/ca.pem"),
            "refused",
        )
        .await
        .unwrap_err();
        assert!(format!("{e:?}").contains(want), "{mode}: {e:?}");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "a connection was attempted"
    );
    // The listener does see an attempt when one is made: with
    // sslmode=disable the user accepted plain text, and it connects.
    let plain = format!("{url}&sslmode=disable");
    let attempt = tokio::spawn(async move { PgEngine::connect(&plain, "refused").await });
    let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(accepted.is_ok(), "the control connection never arrived");
    drop(accepted);
    drop(listener);
    assert!(attempt.await.unwrap().is_err());
}

#[tokio::test]
async fn a_missing_ca_file_is_named() {
    let e = PgEngine::connect(
        "postgres://u@127.0.0.1:1/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        "x",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, EngineError::PostgresConnect(PgConnectError::CaFile { path, .. }) if path == Path::new("/nonexistent/ca.pem")),
        "{e:?}"
    );
}

#[test]
fn the_password_is_never_shown() {
    for url in [
        "postgres://app:pw-canary-1@db.example.com/x?sslmode=verify-full",
        "postgres://app@db.example.com/x?password=pw-canary-1&sslmode=verify-full",
        "host=db.example.com user=app password='pw-canary-1' sslmode=verify-full",
    ] {
        let u = PgUrl::new(url);
        assert!(!format!("{u:?}").contains("pw-canary"), "{u:?}");
        assert!(!u.redacted().contains("pw-canary"));
        assert!(u.redacted().contains("***"));
        assert_eq!(u.expose(), url);
        // Refused for want of a CA: the error shows no password either.
        let e = PgTransport::resolve(url, None).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("pw-canary"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_shows_no_password() {
    let Some(s) = testing::tls_test_server() else {
        return;
    };
    // The test server trusts its clients and ignores the password; the
    // engine still keeps it, and must not show it.
    let url = s.url(&format!(
        "password=pw-canary-51c sslmode=verify-full {}",
        s.sslrootcert()
    ));
    let e = PgEngine::temporary(&url).await.unwrap();
    exercise(&e).await;
    let shown = format!("{e:?} {:?} {:?}", e.transport(), PgUrl::new(url.as_str()));
    assert!(!shown.contains("pw-canary"), "{shown}");
    // Nor does an error of a connection that uses it.
    let bad = s.url(&format!(
        "password=pw-canary-51c dbname=cd_no_such_database_x sslmode=verify-full {}",
        s.sslrootcert()
    ));
    let err = PgEngine::connect(&bad, "x").await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("pw-canary"), "{shown}");
}
