//! Settings: every kind of mistake names its setting's path and the fix.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use cipherdoc::settings::{EngineSettings, MasterKey, ProviderKind, Settings, SettingsError};
use cipherdoc_engine::postgres::PgConnectError;

const GOOD: &str = r#"
[databases.default]
engine = "sqlite"
path = "var/default.db"

[databases.encrypted]
engine = "sqlite"
path = "var/encrypted.db"
name = "encrypted_db"

[databases.encrypted.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
kms_providers.local.key_file = "var/master.key"
kms_providers.aws.access_key_id = "${AKID}"
kms_providers.aws.secret_access_key_env = "AWS_SECRET"
kms_credentials.aws = { key = "arn:aws:kms:us-east-1:1:key/x", region = "us-east-1" }
default_kms_provider = "local"

[[routers]]
app = "myapp"
database = "encrypted"
"#;

fn env(name: &str) -> Option<String> {
    (name == "AKID").then(|| "AKIAEXAMPLE".to_owned())
}

fn load(text: &str) -> Result<Settings, SettingsError> {
    Settings::from_toml_with(text, Path::new("cipherdoc.toml"), Path::new("/app"), &env)
}

fn err(text: &str) -> SettingsError {
    load(text).expect_err("settings should be refused")
}

#[test]
fn the_reference_layout_loads() {
    let s = load(GOOD).unwrap();
    assert_eq!(s.databases.len(), 2);
    let enc = s.database("encrypted").unwrap();
    assert_eq!(enc.name, "encrypted_db");
    assert_eq!(
        enc.engine,
        EngineSettings::Sqlite {
            path: "/app/var/encrypted.db".into(),
            max_size_mb: None,
        }
    );
    let e = enc.encryption.as_ref().unwrap();
    assert_eq!(e.key_vault(), ("encrypted_db", "__keyVault"));
    assert_eq!(e.kms_providers.len(), 2);
    let aws = e.provider_for(Some("aws")).unwrap();
    assert!(matches!(&aws.master_key, MasterKey::Aws(k) if k.region == "us-east-1"));
    assert_eq!(
        e.provider_for(None).unwrap().name.kind(),
        ProviderKind::Local
    );
    assert_eq!(s.database("default").unwrap().name, "default");
    let patient = cipherdoc::settings::ModelRef {
        app: "myapp",
        model: "Patient",
    };
    assert_eq!(s.routers.db_for_write(patient), "encrypted");
}

fn assert_err(text: &str, path: &str, needle: &str) {
    let e = err(text);
    assert_eq!(e.setting_path(), Some(path), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with(path), "{msg}");
    assert!(msg.contains(needle), "`{msg}` should contain `{needle}`");
}

#[test]
fn missing_aws_region_is_named_by_its_full_path() {
    let text = GOOD.replace(", region = \"us-east-1\"", "");
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_credentials.aws.region",
        "missing",
    );
}

/// `kms_credentials` go through the parser key documents' `masterKey` go
/// through, so they are refused by the same rules, at load, under the
/// settings key that holds the bad value.
#[test]
fn master_keys_are_checked_like_key_documents_at_load() {
    for (from, to, key, needle) in [
        (
            "region = \"us-east-1\" }",
            "region = \"us-east-1\", endpoint = \"kms.example:notaport\" }",
            "endpoint",
            "invalid port",
        ),
        (
            "region = \"us-east-1\"",
            "region = \"us east 1\"",
            "region",
            "region",
        ),
        (
            "key = \"arn:aws:kms:us-east-1:1:key/x\"",
            "key = \"\"",
            "key",
            "must not be empty",
        ),
    ] {
        let text = GOOD.replace(from, to);
        assert_ne!(text, GOOD, "{from}");
        assert_err(
            &text,
            &format!("databases.encrypted.encryption.kms_credentials.aws.{key}"),
            needle,
        );
    }
    let s = load(GOOD).unwrap();
    let enc = s.database("encrypted").unwrap().encryption.as_ref();
    let aws = enc.unwrap().provider_for(Some("aws")).unwrap();
    assert_eq!(
        aws.master_key.to_document(),
        bson::doc! {"provider": "aws", "region": "us-east-1", "key": "arn:aws:kms:us-east-1:1:key/x"}
    );
}

#[test]
fn key_vault_namespace_must_be_in_this_database() {
    let text = GOOD.replace("\"encrypted_db.__keyVault\"", "\"other.__keyVault\"");
    assert_err(
        &text,
        "databases.encrypted.encryption.key_vault_namespace",
        "must equal the database name `encrypted_db`",
    );
    let text = GOOD.replace("\"encrypted_db.__keyVault\"", "\"encrypted_db\"");
    assert_err(
        &text,
        "databases.encrypted.encryption.key_vault_namespace",
        "<database>.<collection>",
    );
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let text = GOOD.replace(
        "engine = \"sqlite\"\npath = \"var/default.db\"",
        "enigne = \"sqlite\"\nengine = \"sqlite\"\npath = \"var/default.db\"",
    );
    assert_err(&text, "databases.default.enigne", "did you mean `engine`?");
}

#[test]
fn missing_default_database() {
    let text = GOOD.replace("[databases.default]", "[databases.other]");
    assert_err(
        &text,
        "databases.default",
        "every project needs a `default` database",
    );
}

#[test]
fn unknown_engine_and_mongodb_keys() {
    assert_err(
        &GOOD.replacen("engine = \"sqlite\"", "engine = \"oracle\"", 1),
        "databases.default.engine",
        "unknown engine `oracle`",
    );
    // The mongodb engine takes exactly one of url, url_env, url_file.
    assert_err(
        &GOOD.replacen("engine = \"sqlite\"", "engine = \"mongodb\"", 1),
        "databases.default.path",
        "takes `url`, not `path`",
    );
    let mongo = GOOD.replacen(
        "engine = \"sqlite\"\npath = \"var/default.db\"",
        "engine = \"mongodb\"\nurl_env = \"CIPHERDOC_MONGODB_URL\"",
        1,
    );
    let s = load(&mongo).unwrap();
    assert!(matches!(
        &s.database("default").unwrap().engine,
        EngineSettings::Mongodb { url: cipherdoc::settings::SecretSource::Env(v) } if v == "CIPHERDOC_MONGODB_URL"
    ));
    let both = mongo.replacen(
        "url_env = \"CIPHERDOC_MONGODB_URL\"",
        "url_env = \"X\"\nurl = \"mongodb://127.0.0.1/\"",
        1,
    );
    assert_err(&both, "databases.default.url", "exactly one of");
}

#[test]
fn engine_specific_keys() {
    let text = GOOD.replacen("path = \"var/default.db\"", "url = \"postgres://x\"", 1);
    assert_err(&text, "databases.default.url", "takes `path`");
    let text = GOOD.replacen(
        "engine = \"sqlite\"\npath = \"var/default.db\"",
        "engine = \"postgres\"",
        1,
    );
    assert_err(&text, "databases.default.url", "missing");
}

#[test]
fn unset_environment_variable() {
    let text = GOOD.replace("${AKID}", "${NOPE_NOT_SET}");
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_providers.aws.access_key_id",
        "NOPE_NOT_SET is not set",
    );
}

#[test]
fn provider_names_are_checked() {
    let text = GOOD.replace(
        "kms_providers.local.key_file",
        "kms_providers.vault.key_file",
    );
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_providers.vault",
        "invalid KMS provider name \"vault\": the kind must be one of aws, azure, gcp, kmip, local",
    );
    let text = GOOD.replace(
        "default_kms_provider = \"local\"",
        "default_kms_provider = \"gcp\"",
    );
    assert_err(
        &text,
        "databases.encrypted.encryption.default_kms_provider",
        "not in kms_providers",
    );
}

#[test]
fn credentials_without_provider_and_provider_without_master_key() {
    let text = GOOD.replace("kms_credentials.aws", "kms_credentials.azure");
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_credentials.azure",
        "no provider `azure`",
    );
    let text = GOOD.replace("kms_credentials.aws = { key = \"arn:aws:kms:us-east-1:1:key/x\", region = \"us-east-1\" }\n", "");
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_credentials.aws",
        "need a master key",
    );
}

#[test]
fn a_secret_may_come_from_one_place_only() {
    let text = GOOD.replace(
        "kms_providers.local.key_file = \"var/master.key\"",
        "kms_providers.local.key_file = \"a\"\nkms_providers.local.key = \"b\"",
    );
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_providers.local.key",
        "only one of",
    );
}

#[test]
fn local_provider_needs_a_key_and_kms_providers_must_exist() {
    let text = GOOD.replace(
        "kms_providers.local.key_file = \"var/master.key\"",
        "kms_providers.local = {}",
    );
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_providers.local.key_file",
        "96-byte master key",
    );
    let text = GOOD
        .lines()
        .filter(|l| !l.starts_with("kms_") && !l.starts_with("default_kms"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_err(
        &text,
        "databases.encrypted.encryption.kms_providers",
        "at least one KMS provider",
    );
}

#[test]
fn several_providers_need_a_choice() {
    let text = GOOD.replace("default_kms_provider = \"local\"\n", "");
    let s = load(&text).unwrap();
    let e = s
        .database("encrypted")
        .unwrap()
        .encryption
        .as_ref()
        .unwrap();
    assert!(
        e.provider_for(None)
            .unwrap_err()
            .to_string()
            .contains("several KMS providers")
    );
    assert!(
        e.provider_for(Some("gcp"))
            .unwrap_err()
            .to_string()
            .contains("not configured")
    );
}

#[test]
fn routers_must_name_a_database() {
    let text = GOOD.replace("database = \"encrypted\"\n", "database = \"nowhere\"\n");
    assert_err(&text, "routers[0].database", "no database `nowhere`");
    let text = GOOD.replace("app = \"myapp\"\n", "");
    assert_err(&text, "routers[0].app", "missing");
}

#[test]
fn wrong_types_and_bad_toml() {
    assert_err(
        &GOOD.replace("name = \"encrypted_db\"", "name = 5"),
        "databases.encrypted.name",
        "expected a string, found integer",
    );
    assert!(matches!(err("[databases"), SettingsError::Syntax { .. }));
    let e = Settings::from_file(Path::new("/nonexistent/cipherdoc.toml")).unwrap_err();
    assert!(e.to_string().contains("CIPHERDOC_SETTINGS"), "{e}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = GOOD.replace(
        "kms_providers.local.key_file = \"var/master.key\"",
        "kms_providers.local.key = \"c3VwZXItc2VjcmV0LWNhbmFyeQ==\"",
    );
    let s = load(&text).unwrap();
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("c3VwZXItc2VjcmV0"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

fn with_postgres(db: &str) -> String {
    GOOD.replacen(
        "engine = \"sqlite\"\npath = \"var/default.db\"",
        &format!("engine = \"postgres\"\n{db}"),
        1,
    )
}

#[test]
fn a_remote_postgres_url_without_tls_is_refused_by_alias() {
    let text = with_postgres("url = \"postgres://app:pw-canary@db.example.com/clinic\"");
    let e = err(&text);
    assert_eq!(e.setting_path(), Some("databases.default.url"));
    assert!(
        matches!(
            &e,
            SettingsError::Postgres {
                source: PgConnectError::RemoteWithoutCa { host },
                ..
            } if host == "db.example.com"
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    for fix in ["sslrootcert=", "tls_ca_file", "sslmode=disable"] {
        assert!(msg.contains(fix), "{msg}");
    }
    assert!(!msg.contains("pw-canary") && !format!("{e:?}").contains("pw-canary"));
    assert_err(
        &with_postgres("url = \"postgres://app@db.example.com/clinic?sslmode=prefer\""),
        "databases.default.url",
        "sslmode=prefer is refused",
    );
    assert_err(
        &with_postgres("url = \"postgres://app@db.example.com/clinic?sslmode=require\""),
        "databases.default.url",
        "needs a CA",
    );
}

#[test]
fn postgres_tls_settings_load() {
    let s = load(&with_postgres(
        "url = \"postgres://app:pw-canary@db.example.com/clinic?sslmode=verify-full\"\ntls_ca_file = \"certs/ca.pem\"",
    ))
    .unwrap();
    let EngineSettings::Postgres { url, tls_ca_file } = &s.database("default").unwrap().engine
    else {
        panic!("not postgres");
    };
    assert_eq!(tls_ca_file.as_deref(), Some(Path::new("/app/certs/ca.pem")));
    assert_eq!(
        url.expose(),
        "postgres://app:pw-canary@db.example.com/clinic?sslmode=verify-full"
    );
    // Loopback stays plain by default; sslmode=disable is the explicit word.
    load(&with_postgres("url = \"postgres://app@127.0.0.1/clinic\"")).unwrap();
    load(&with_postgres(
        "url = \"postgres://app@db.example.com/clinic?sslmode=disable\"",
    ))
    .unwrap();
    assert_err(
        &with_postgres(
            "url = \"postgres://app@db.example.com/clinic?sslmode=disable\"\ntls_ca_file = \"ca.pem\"",
        ),
        "databases.default.url",
        "contradicts",
    );
    assert_err(
        &GOOD.replacen(
            "path = \"var/default.db\"",
            "path = \"var/default.db\"\ntls_ca_file = \"ca.pem\"",
            1,
        ),
        "databases.default.tls_ca_file",
        "only the postgres engine",
    );
}

#[test]
fn the_postgres_password_never_appears_in_debug_output() {
    for url in [
        "postgres://app:pw-canary@127.0.0.1/clinic",
        "postgres://app@127.0.0.1/clinic?password=pw-canary",
        "host=127.0.0.1 user=app password=pw-canary",
    ] {
        let s = load(&with_postgres(&format!("url = \"{url}\""))).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("pw-canary"), "{dbg}");
        assert!(dbg.contains("***"), "{dbg}");
        let dbg = format!("{:?}", s.database("default").unwrap());
        assert!(!dbg.contains("pw-canary"), "{dbg}");
    }
}

/// Settings whose `default` database is the PostgreSQL server at `url`.
fn postgres_settings(url: &str, tls_ca_file: Option<&Path>) -> Settings {
    let mut db = format!("url = {}", toml::Value::String(url.to_owned()));
    if let Some(ca) = tls_ca_file {
        let ca = toml::Value::String(ca.to_string_lossy().into_owned());
        db = format!("{db}\ntls_ca_file = {ca}");
    }
    load(&with_postgres(&db)).unwrap()
}

#[tokio::test]
async fn a_ca_file_that_cannot_be_read_is_named_by_its_setting() {
    let s = postgres_settings(
        "postgres://app@127.0.0.1:1/clinic?sslmode=verify-full",
        Some(Path::new("/nonexistent/ca.pem")),
    );
    let e = cipherdoc::Database::open(s.database("default").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            cipherdoc::Error::Settings(SettingsError::Postgres {
                path,
                source: PgConnectError::CaFile { .. },
            }) if path == "databases.default.tls_ca_file"
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_ca_file_reaches_the_connection() {
    let Some(server) = cipherdoc_engine::postgres::testing::tls_test_server() else {
        return;
    };
    // verify-full with the CA from the setting alone: without it the URL
    // would be refused when the settings are read.
    let url = server.url("sslmode=verify-full");
    let s = postgres_settings(&url, Some(server.ca()));
    let mut db = s.database("default").unwrap().clone();
    // A schema the test helpers drop when a run leaves it behind.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    db.name = format!(
        "{}{secs}_{}_settings",
        cipherdoc_engine::postgres::testing::TEMP_SCHEMA_PREFIX,
        std::process::id()
    );
    let opened = cipherdoc::Database::open(&db).await.unwrap();
    drop(opened);
    let c = cipherdoc_engine::postgres::testing::connect(
        &server.url(&format!("sslmode=verify-full {}", server.sslrootcert())),
    )
    .await
    .unwrap();
    c.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", db.name))
        .await
        .unwrap();
    // Another CA in the setting: the handshake is refused, by alias.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&key).unwrap().pem()).unwrap();
    let s = postgres_settings(&url, Some(&other));
    db.engine = s.database("default").unwrap().engine.clone();
    let e = cipherdoc::Database::open(&db).await.unwrap_err();
    assert!(
        matches!(
            &e,
            cipherdoc::Error::Settings(SettingsError::Postgres {
                path,
                source: PgConnectError::Handshake { .. },
            }) if path == "databases.default.url"
        ),
        "{e:?}"
    );
}

#[test]
fn kms_endpoints_allowed_hosts_and_key_check_values() {
    let with = |extra: &str| {
        GOOD.replace(
            "default_kms_provider = \"local\"",
            &format!("default_kms_provider = \"local\"\n{extra}"),
        )
    };
    let s = load(&with(
        "kms_providers.aws.allowed_hosts = [\"kms.eu-west-1.amazonaws.com\", \"10.0.0.1:8443\"]\nkms_providers.aws.endpoint = \"https://kms.internal:8443\"\nkms_providers.aws.tls_ca_file = \"ca.pem\"\nkey_check_values = \"kcv.json\"",
    ))
    .unwrap();
    let enc = s.databases[1].encryption.as_ref().unwrap();
    let aws = enc
        .kms_providers
        .iter()
        .find(|p| p.name.kind() == ProviderKind::Aws)
        .unwrap();
    assert_eq!(
        aws.transport.allowed_hosts,
        ["kms.eu-west-1.amazonaws.com", "10.0.0.1:8443"]
    );
    assert_eq!(
        aws.transport.endpoint.as_deref(),
        Some("https://kms.internal:8443")
    );
    assert_eq!(
        aws.transport.tls_ca_file.as_deref(),
        Some(Path::new("/app/ca.pem"))
    );
    assert_eq!(
        enc.key_check_values.as_deref(),
        Some(Path::new("/app/kcv.json"))
    );

    for (extra, path, says) in [
        (
            "kms_providers.aws.allowed_hosts = [\"evil@host\"]",
            "kms_providers.aws.allowed_hosts",
            "invalid host",
        ),
        (
            "kms_providers.aws.allowed_hosts = [\"https://h/x\"]",
            "kms_providers.aws.allowed_hosts",
            "without scheme",
        ),
        (
            "kms_providers.aws.endpoint = \"http://kms.example\"",
            "kms_providers.aws.endpoint",
            "loopback",
        ),
    ] {
        let e = err(&with(extra)).to_string();
        assert!(e.contains(path) && e.contains(says), "{extra}: {e}");
    }
}

#[test]
fn kms_timeout_and_sqlite_size_are_read_and_bounded() {
    let text = r#"
[databases.default]
engine = "sqlite"
path = "a.db"
max_size_mb = 64

[databases.default.encryption]
key_vault_namespace = "default.__keyVault"
kms_providers.aws.access_key_id = "AKIDEXAMPLE"
kms_providers.aws.secret_access_key_env = "NOT_READ_HERE"
kms_providers.aws.timeout_ms = 2500
kms_credentials.aws.key = "arn:aws:kms:us-east-1:111122223333:key/k"
kms_credentials.aws.region = "us-east-1"
"#;
    let s = load(text).unwrap();
    let db = s.database("default").unwrap();
    assert_eq!(
        db.engine,
        EngineSettings::Sqlite {
            path: "/app/a.db".into(),
            max_size_mb: Some(64),
        }
    );
    let aws = db
        .encryption
        .as_ref()
        .unwrap()
        .provider_for(Some("aws"))
        .unwrap();
    assert_eq!(aws.transport.timeout_ms, Some(2500));
    let e = err(&text.replace("timeout_ms = 2500", "timeout_ms = 0")).to_string();
    assert!(
        e.contains("databases.default.encryption.kms_providers.aws.timeout_ms")
            && e.contains("1 to 3600000"),
        "{e}"
    );
    let e = err(&text.replace("max_size_mb = 64", "max_size_mb = -1")).to_string();
    assert!(e.contains("databases.default.max_size_mb"), "{e}");
}
