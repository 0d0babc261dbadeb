//! The attacker can write to the database (the key vault included) and
//! nothing else. Each test acts through the database alone: it inserts or
//! rewrites key documents with the raw engine, then lets the application
//! read. Each attack is refused with an error that names the data key and
//! why, nothing is written, and no credential leaves the process (the
//! loopback listener the key documents point at sees no connection).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, DateTime, Document, doc};
use cipherdoc::client_encryption::{
    Algorithm, EncryptOptions, KeyRef, generate_local_master_key_file,
};
use cipherdoc::settings::Settings;
use cipherdoc::{App, Error};
use cipherdoc_engine::{Filter, FindOptions};
use tokio::net::TcpListener;

const AZURE_TOKEN: &str = "azure-bearer-token-that-must-stay-here";
const AWS_SECRET: &str = "aws-secret-key-that-must-stay-here";

async fn trap() -> (u16, Arc<AtomicU32>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

async fn open(dir: &Path) -> App {
    generate_local_master_key_file(&dir.join("master.key")).unwrap();
    for (file, secret) in [("azure.token", AZURE_TOKEN), ("aws.secret", AWS_SECRET)] {
        common::write_secret(&dir.join(file), secret.as_bytes());
    }
    let text = r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "sqlite"
path = "encrypted.db"
name = "encrypted_db"

[databases.encrypted.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
default_kms_provider = "local"
kms_providers.local.key_file = "master.key"
kms_providers.azure.access_token_file = "azure.token"
kms_providers.aws.access_key_id = "AKIDEXAMPLE"
kms_providers.aws.secret_access_key_file = "aws.secret"
kms_credentials.azure.key_vault_endpoint = "vault.example.invalid"
kms_credentials.azure.key_name = "k"
kms_credentials.aws.key = "arn:aws:kms:us-east-1:111122223333:key/k"
kms_credentials.aws.region = "us-east-1"
"#;
    App::open(Settings::from_toml(text, dir).unwrap())
        .await
        .unwrap()
}

/// What the attacker writes: a key document in the shape libmongocrypt
/// writes, with the `masterKey` of their choice.
fn key_document(id: [u8; 16], alt: &str, master_key: Document) -> Document {
    doc! {
        "_id": Binary { subtype: BinarySubtype::Uuid, bytes: id.to_vec() },
        "keyAltNames": [alt],
        "keyMaterial": Binary { subtype: BinarySubtype::Generic, bytes: vec![0x41; 256] },
        "creationDate": DateTime::now(),
        "updateDate": DateTime::now(),
        "status": 0,
        "masterKey": master_key,
    }
}

async fn vault_docs(app: &App) -> Vec<Document> {
    app.database("encrypted")
        .unwrap()
        .engine()
        .find("__keyVault", &Filter::all(), &FindOptions::default())
        .await
        .unwrap()
}

async fn plant(app: &App, doc: Document) {
    app.database("encrypted")
        .unwrap()
        .engine()
        .insert_one("__keyVault", doc)
        .await
        .unwrap();
}

fn assert_refused(err: &Error, key_id: [u8; 16], why: &str) {
    let text = err.to_string();
    let uuid = bson::Uuid::from_bytes(key_id).to_string();
    assert!(
        matches!(err, Error::UntrustedKey { key_id, .. } if *key_id == uuid),
        "{err:?}"
    );
    assert!(text.contains(&uuid) && text.contains(why), "{text}");
    for secret in [AZURE_TOKEN, AWS_SECRET] {
        assert!(
            !text.contains(secret) && !format!("{err:?}").contains(secret),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_key_document_naming_the_attackers_kms_host_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path()).await;
    let (port, hits) = trap().await;
    let ce = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .client_encryption();

    // The application's own value, under its own (local) key.
    let good = ce
        .create_data_key("local", vec!["ssn".into()])
        .await
        .unwrap();
    let blob = ce
        .encrypt(
            Bson::from("123-45-6789"),
            &EncryptOptions::new(KeyRef::Id(good), Algorithm::Unindexed),
        )
        .await
        .unwrap();

    // The attacker plants a key whose masterKey is an Azure vault on their
    // host, and points the stored value at it (bytes 1..17 of a stored
    // unindexed value are its key id).
    let evil_id = [0xEE; 16];
    plant(
        &app,
        key_document(
            evil_id,
            "evil",
            doc! {"provider": "azure", "keyVaultEndpoint": format!("127.0.0.1:{port}"), "keyName": "k"},
        ),
    )
    .await;
    let before = vault_docs(&app).await;
    let mut tampered = blob.clone();
    tampered.bytes[1..17].copy_from_slice(&evil_id);

    let err = ce.decrypt(&tampered).await.unwrap_err();
    assert_refused(&err, evil_id, &format!("127.0.0.1:{port}"));
    let err = ce
        .encrypt(
            Bson::from("x"),
            &EncryptOptions::new(KeyRef::AltName("evil".into()), Algorithm::Unindexed),
        )
        .await
        .unwrap_err();
    assert_refused(&err, evil_id, "allowed_hosts");

    // A configured vault but another key name is another master key too.
    let other_id = [0xEF; 16];
    plant(
        &app,
        key_document(
            other_id,
            "other",
            doc! {"provider": "azure", "keyVaultEndpoint": "vault.example.invalid", "keyName": "attackers"},
        ),
    )
    .await;
    let err = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .keys()
        .key_by_alt_name("other")
        .await
        .unwrap_err();
    assert_refused(&err, other_id, "kms_credentials.azure");

    // And a provider the settings do not configure.
    let gcp_id = [0xED; 16];
    plant(
        &app,
        key_document(
            gcp_id,
            "gcp",
            doc! {"provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k", "endpoint": format!("127.0.0.1:{port}")},
        ),
    )
    .await;
    let err = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .keys()
        .key_by_alt_name("gcp")
        .await
        .unwrap_err();
    assert_refused(&err, gcp_id, "no KMS provider of that name is configured");

    // The untouched value still decrypts; nothing was written; nothing was sent.
    assert_eq!(ce.decrypt(&blob).await.unwrap(), Bson::from("123-45-6789"));
    assert_eq!(vault_docs(&app).await.len(), before.len() + 2);
    tokio::task::yield_now().await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the attacker's host was contacted"
    );
}

#[tokio::test]
async fn an_aws_region_with_a_host_suffix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = open(dir.path()).await;
    let (port, hits) = trap().await;
    let keys = Arc::clone(
        app.database("encrypted")
            .unwrap()
            .encryption()
            .unwrap()
            .keys(),
    );
    for (i, region) in [
        // `https://kms.{region}.amazonaws.com` would have host 127.0.0.1.
        format!("x@127.0.0.1:{port}/#"),
        // ... or a domain of the attacker's.
        "us-east-1.attacker.example".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let id = [0xA0 + u8::try_from(i).unwrap(); 16];
        let alt = format!("aws{i}");
        plant(
            &app,
            key_document(
                id,
                &alt,
                doc! {"provider": "aws", "region": region, "key": "arn:aws:kms:us-east-1:111122223333:key/k"},
            ),
        )
        .await;
        let err = keys.key_by_alt_name(&alt).await.unwrap_err();
        assert_refused(&err, id, "region");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

async fn open_local(dir: &Path, kcv: Option<&str>) -> App {
    let pin = kcv
        .map(|f| format!("key_check_values = \"{f}\""))
        .unwrap_or_default();
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "sqlite"
path = "encrypted.db"
name = "encrypted_db"

[databases.encrypted.encryption]
key_vault_namespace = "encrypted_db.__keyVault"
kms_providers.local.key_file = "master.key"
{pin}
"#
    );
    App::open(Settings::from_toml(&text, dir).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_data_key_swapped_behind_a_pinned_key_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    generate_local_master_key_file(&dir.path().join("master.key")).unwrap();
    let (a, b, blob) = {
        let app = open_local(dir.path(), None).await;
        let enc = app.database("encrypted").unwrap().encryption().unwrap();
        let ce = enc.client_encryption();
        let a = ce.create_data_key("local", vec!["a".into()]).await.unwrap();
        let b = ce.create_data_key("local", vec!["b".into()]).await.unwrap();
        let blob = ce
            .encrypt(
                Bson::from("pinned secret"),
                &EncryptOptions::new(KeyRef::Id(a), Algorithm::Unindexed),
            )
            .await
            .unwrap();
        // Pin: what `showencryptedfieldsmap --key-check-values` prints.
        let kcv = enc.keys().key_check_values([a]).await.unwrap();
        std::fs::write(dir.path().join("kcv.json"), kcv.to_json()).unwrap();
        (a, b, blob)
    };

    // The attacker copies B's wrapped key material into A's key document: it
    // unwraps fine under the same master key, to the wrong data key.
    {
        let app = open_local(dir.path(), None).await;
        let docs = vault_docs(&app).await;
        let material = |alt: &str| {
            docs.iter()
                .find(|d| d.get_array("keyAltNames").unwrap()[0].as_str() == Some(alt))
                .unwrap()
                .get("keyMaterial")
                .unwrap()
                .clone()
        };
        let mut doc_a = docs
            .iter()
            .find(|d| d.get_array("keyAltNames").unwrap()[0].as_str() == Some("a"))
            .unwrap()
            .clone();
        doc_a.insert("keyMaterial", material("b"));
        let id = doc_a.get("_id").unwrap().clone();
        app.database("encrypted")
            .unwrap()
            .engine()
            .replace_one("__keyVault", &id, doc_a)
            .await
            .unwrap();
    }
    let _ = b;

    // Without pinned check values the swap goes unnoticed: key A now is B.
    {
        let app = open_local(dir.path(), None).await;
        let ce = app
            .database("encrypted")
            .unwrap()
            .encryption()
            .unwrap()
            .client_encryption();
        assert!(
            ce.encrypt(
                Bson::from("x"),
                &EncryptOptions::new(KeyRef::Id(a), Algorithm::Unindexed),
            )
            .await
            .is_ok()
        );
    }

    // With them, key A is refused for writing and reading, naming the key
    // and the setting, and no value leaves.
    let app = open_local(dir.path(), Some("kcv.json")).await;
    let ce = app
        .database("encrypted")
        .unwrap()
        .encryption()
        .unwrap()
        .client_encryption();
    let before = vault_docs(&app).await;
    for err in [
        ce.encrypt(
            Bson::from("new secret"),
            &EncryptOptions::new(KeyRef::Id(a), Algorithm::Unindexed),
        )
        .await
        .unwrap_err(),
        ce.decrypt(&blob).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::KeyCheckMismatch { key_id, setting }
                if *key_id == a.to_string() && setting.ends_with("encryption.key_check_values")),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&a.to_string()) && text.contains("swapped"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }
    // Key B, which is not pinned, is still usable; nothing was written.
    assert!(
        ce.encrypt(
            Bson::from("x"),
            &EncryptOptions::new(KeyRef::Id(b), Algorithm::Unindexed),
        )
        .await
        .is_ok()
    );
    assert_eq!(vault_docs(&app).await, before);
}
