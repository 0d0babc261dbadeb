//! Cargo features: settings that name an engine or a KMS provider are
//! loaded when this build has it, and refused with
//! `SettingsError::FeatureMissing` (alias, what is missing, the fix) when
//! it does not. `.ci/features` runs this file in a build with only
//! `sqlite`:
//! `cargo test -p cipherdoc --no-default-features --features sqlite --test features`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use cipherdoc::settings::{Settings, SettingsError};

fn load(text: &str) -> Result<Settings, SettingsError> {
    Settings::from_toml_with(
        text,
        Path::new("cipherdoc.toml"),
        Path::new("/app"),
        &|_| None,
    )
}

/// The one database, `default`, on `engine`, with `extra` lines in its table.
fn engine_settings(engine: &str, extra: &str) -> String {
    format!("[databases.default]\nengine = \"{engine}\"\n{extra}\n")
}

const POSTGRES: &str = "url = \"postgres://postgres@127.0.0.1:5432/test\"";
const MONGODB: &str = "url = \"mongodb://127.0.0.1:27017/\"";

/// A SQLite database `enc` encrypted with local keys and `provider`.
fn kms_settings(provider: &str, table: &str, credentials: &str) -> String {
    format!(
        r#"
[databases.default]
engine = "sqlite"
path = "var/default.db"

[databases.enc]
engine = "sqlite"
path = "var/enc.db"

[databases.enc.encryption]
key_vault_namespace = "enc.__keyVault"
kms_providers.local.key_file = "var/master.key"
kms_providers.{provider} = {table}
kms_credentials.{provider} = {credentials}
default_kms_provider = "local"
"#
    )
}

const AWS: (&str, &str) = (
    r#"{ access_key_id = "AKIAEXAMPLE", secret_access_key = "secret" }"#,
    r#"{ key = "arn:aws:kms:us-east-1:1:key/x", region = "us-east-1" }"#,
);

/// Asserts that `e` is the refusal of a missing `feature` at `path`, and
/// that its message says what to do.
#[cfg_attr(
    all(
        feature = "postgres",
        feature = "mongodb",
        feature = "aws",
        feature = "kmip"
    ),
    allow(dead_code)
)]
fn assert_missing(e: &SettingsError, path: &str, what: &str, feature: &str) {
    match e {
        SettingsError::FeatureMissing {
            path: p,
            what: w,
            feature: f,
        } => {
            assert_eq!(p, path);
            assert_eq!(w, what);
            assert_eq!(*f, feature);
        }
        other => panic!("expected FeatureMissing, got {other:?}"),
    }
    assert_eq!(e.setting_path(), Some(path));
    let message = e.to_string();
    assert!(message.starts_with(path), "{message}");
    assert!(
        message.contains(&format!("enable the `{feature}` feature of cipherdoc")),
        "{message}"
    );
}

#[test]
fn sqlite_settings_load_in_a_build_with_sqlite() {
    let s = load(&engine_settings("sqlite", "path = \"var/main.db\"")).unwrap();
    assert_eq!(s.database("default").unwrap().name, "default");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_settings_load_in_a_build_with_postgres() {
    let s = load(&engine_settings("postgres", POSTGRES)).unwrap();
    assert!(matches!(
        s.database("default").unwrap().engine,
        cipherdoc::settings::EngineSettings::Postgres { .. }
    ));
}

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_settings_are_refused_without_the_postgres_feature() {
    let e = load(&engine_settings("postgres", POSTGRES)).unwrap_err();
    assert_missing(
        &e,
        "databases.default.engine",
        "postgres engine",
        "postgres",
    );
}

#[cfg(feature = "mongodb")]
#[test]
fn mongodb_settings_load_in_a_build_with_mongodb() {
    let s = load(&engine_settings("mongodb", MONGODB)).unwrap();
    assert!(matches!(
        s.database("default").unwrap().engine,
        cipherdoc::settings::EngineSettings::Mongodb { .. }
    ));
}

#[cfg(not(feature = "mongodb"))]
#[test]
fn mongodb_settings_are_refused_without_the_mongodb_feature() {
    let e = load(&engine_settings("mongodb", MONGODB)).unwrap_err();
    assert_missing(&e, "databases.default.engine", "mongodb engine", "mongodb");
}

#[test]
fn an_unknown_engine_is_still_an_unknown_engine() {
    let e = load(&engine_settings("oracle", "")).unwrap_err();
    assert!(matches!(e, SettingsError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("unknown engine `oracle`"), "{e}");
}

#[cfg(feature = "aws")]
#[test]
fn an_aws_provider_loads_in_a_build_with_aws() {
    let s = load(&kms_settings("aws", AWS.0, AWS.1)).unwrap();
    let enc = s.database("enc").unwrap().encryption.as_ref().unwrap();
    assert!(enc.provider_for(Some("aws")).is_ok());
}

#[cfg(not(feature = "aws"))]
#[test]
fn an_aws_provider_is_refused_without_the_aws_feature() {
    let e = load(&kms_settings("aws", AWS.0, AWS.1)).unwrap_err();
    assert_missing(
        &e,
        "databases.enc.encryption.kms_providers.aws",
        "aws KMS provider",
        "aws",
    );
}

#[cfg(not(feature = "kmip"))]
#[test]
fn a_named_kmip_provider_is_refused_without_the_kmip_feature() {
    let e = load(&kms_settings(
        "\"kmip:vault\"",
        r#"{ endpoint = "kmip.example.com:5696" }"#,
        "{}",
    ))
    .unwrap_err();
    assert_missing(
        &e,
        "databases.enc.encryption.kms_providers.kmip:vault",
        "kmip KMS provider",
        "kmip",
    );
}
