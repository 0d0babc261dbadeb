//! `check_deploy` findings the clinic's settings do not produce: a secret
//! inline, a KMS secret file others may read, a key vault without its
//! unique `keyAltNames` index.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;

use cipherdoc::App;
use cipherdoc::deploy::{
    DeployFile, DeployFinding, DeployOptions, check_deploy, key_vault_has_unique_alt_names,
};
use cipherdoc::migrations::Severity;
use cipherdoc::settings::Settings;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{CreateCollectionOptions, Engine as _};

#[tokio::test]
async fn inline_and_exposed_secrets_are_errors_naming_the_setting_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("azure.token");
    std::fs::write(&secret, "tok").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = r#"
[databases.default]
engine = "sqlite"
path = "encrypted.db"
name = "encrypted_db"

[databases.default.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
encrypted_fields_map = "map.json"
default_kms_provider = "aws"
kms_providers.aws.access_key_id = "AKIDEXAMPLE"
kms_providers.aws.secret_access_key = "inline-secret-value"
kms_providers.azure.access_token_file = "azure.token"
kms_credentials.aws.key = "arn:aws:kms:us-east-1:111122223333:key/k"
kms_credentials.aws.region = "us-east-1"
kms_credentials.azure.key_vault_endpoint = "vault.example.invalid"
kms_credentials.azure.key_name = "k"
"#;
    std::fs::write(dir.path().join("map.json"), "{}").unwrap();
    let app = App::open(Settings::from_toml(text, dir.path()).unwrap())
        .await
        .unwrap();
    for db in ["encrypted.db", "encrypted.db-wal"] {
        let p = dir.path().join(db);
        if p.exists() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    // Opening refuses an exposed secret file; one exposed later (a
    // deployment script's chmod, a mounted volume) is what the check finds.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let found = check_deploy(&app, DeployOptions::default()).await.unwrap();
    assert_eq!(
        found,
        vec![
            DeployFinding::InlineSecret {
                setting: "databases.default.encryption.kms_providers.aws.secret_access_key"
                    .to_owned()
            },
            DeployFinding::FileExposed {
                alias: "default".to_owned(),
                kind: DeployFile::KmsSecret,
                path: secret.clone(),
                mode: 0o604,
            },
        ],
        "{found:?}"
    );
    for f in &found {
        assert_eq!(f.severity(), Severity::Error);
        let text = f.to_string();
        assert!(!text.contains("inline-secret-value") && !text.contains("tok\n"));
    }
    assert!(found[0].to_string().contains("secret_access_key_file"));
}

#[tokio::test]
async fn a_key_vault_without_its_unique_index_is_found() {
    let engine = SqliteEngine::temporary().unwrap();
    engine
        .create_collection("__keyVault", CreateCollectionOptions::default())
        .await
        .unwrap();
    assert!(
        !key_vault_has_unique_alt_names(&engine, "__keyVault")
            .await
            .unwrap()
    );
    cipherdoc_engine::key_vault::ensure_key_vault(&engine, "__keyVault")
        .await
        .unwrap();
    assert!(
        key_vault_has_unique_alt_names(&engine, "__keyVault")
            .await
            .unwrap()
    );
}
