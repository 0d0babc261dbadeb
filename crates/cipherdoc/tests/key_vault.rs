//! Key vaults: the same contract for every implementation.
#![allow(clippy::unwrap_used)]

use bson::spec::BinarySubtype;
use bson::{Binary, Document, Uuid, doc};
use cipherdoc::key_vault::{JsonFileKeyVault, KeyVault, KeyVaultError, MemoryKeyVault};

fn key(id: u8, names: &[&str]) -> Document {
    let mut d = doc! { "_id": Binary { subtype: BinarySubtype::Uuid, bytes: vec![id; 16] } };
    if !names.is_empty() {
        d.insert("keyAltNames", names.to_vec());
    }
    d.insert(
        "keyMaterial",
        Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![7; 160],
        },
    );
    d.insert("status", 0);
    d
}

async fn contract(vault: &dyn KeyVault) {
    vault.insert(key(1, &["a"])).await.unwrap();
    vault.insert(key(2, &[])).await.unwrap();
    vault.insert(key(3, &["b", "c"])).await.unwrap();
    assert!(matches!(
        vault.insert(key(1, &[])).await,
        Err(KeyVaultError::DuplicateId(_))
    ));
    assert!(
        matches!(vault.insert(key(4, &["c"])).await, Err(KeyVaultError::DuplicateAltName(n)) if n == "c")
    );
    assert!(matches!(
        vault.insert(key(4, &["d", "d"])).await,
        Err(KeyVaultError::DuplicateAltName(_))
    ));
    let bad = doc! { "_id": 5 };
    assert!(matches!(
        vault.insert(bad).await,
        Err(KeyVaultError::InvalidDocument(_))
    ));
    assert_eq!(vault.list().await.unwrap().len(), 3);
    let found = vault
        .find_by_id(Uuid::from_bytes([3; 16]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, key(3, &["b", "c"]));
    assert_eq!(
        vault.find_by_alt_name("c").await.unwrap(),
        Some(key(3, &["b", "c"]))
    );
    assert_eq!(vault.find_by_alt_name("zzz").await.unwrap(), None);
    assert_eq!(
        vault.find_by_id(Uuid::from_bytes([9; 16])).await.unwrap(),
        None
    );
    let mut rotated = key(2, &["e"]);
    rotated.insert("status", 1);
    vault.replace(rotated.clone()).await.unwrap();
    assert_eq!(
        vault.find_by_id(Uuid::from_bytes([2; 16])).await.unwrap(),
        Some(rotated)
    );
    assert!(matches!(
        vault.replace(key(2, &["a"])).await,
        Err(KeyVaultError::DuplicateAltName(_))
    ));
    assert!(matches!(
        vault.replace(key(8, &[])).await,
        Err(KeyVaultError::NotFound(_))
    ));
}

#[tokio::test]
async fn engine_vault_in_a_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let engine: std::sync::Arc<dyn cipherdoc_engine::Engine> = std::sync::Arc::new(
        cipherdoc_engine::sqlite::SqliteEngine::open(dir.path().join("db.sqlite")).unwrap(),
    );
    let vault = cipherdoc::key_vault::EngineKeyVault::open(engine.clone(), "__keyVault")
        .await
        .unwrap();
    contract(&vault).await;
    // Keys without alt names do not collide in the unique index.
    vault.insert(key(10, &[])).await.unwrap();
    vault.insert(key(11, &[])).await.unwrap();
}

#[tokio::test]
async fn memory_vault() {
    contract(&MemoryKeyVault::new()).await;
}

#[tokio::test]
async fn json_file_vault_is_canonical_extended_json_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.json");
    contract(&JsonFileKeyVault::new(&path)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"$binary\""), "{text}");
    assert!(text.contains("\"subType\": \"04\""), "{text}");
    assert!(text.contains("\"$numberInt\": \"1\""), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // A fresh handle on the same file sees the same keys.
    let again = JsonFileKeyVault::new(&path);
    assert_eq!(again.list().await.unwrap().len(), 3);
}

#[tokio::test]
async fn json_file_vault_reports_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.json");
    std::fs::write(&path, "{\"not\": \"an array\"}").unwrap();
    let err = JsonFileKeyVault::new(&path).list().await.unwrap_err();
    assert!(err.to_string().contains("expected a JSON array"), "{err}");
}
