//! Shared setup for the end-to-end tests: two SQLite databases, one
//! encrypted with a local master key, and the encrypted collection a model
//! needs (what `migrate` does: one data key per encrypted field, then the
//! collection with its encryptedFields).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use bson::{Bson, Document, doc};
use cipherdoc::App;
use cipherdoc::model::Model;
use cipherdoc::settings::Settings;
use cipherdoc_engine::{CreateCollectionOptions, Filter, FindOptions};

pub fn settings(dir: &Path, app_label: &str, routed_to: &str) -> Settings {
    std::fs::write(dir.join("master.key"), [42u8; 96]).unwrap();
    // Secret files must be owner-only (cipherdoc refuses others).
    #[cfg(unix)]
    std::fs::set_permissions(
        dir.join("master.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
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

[[routers]]
app = "{app_label}"
database = "{routed_to}"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

pub async fn create_encrypted_collection<M: Model>(app: &App) {
    let db = app.database("encrypted").unwrap();
    let enc = db.encryption().unwrap();
    let schema = M::schema();
    let master = enc.master_key_for(None).unwrap();
    let mut fields = Vec::new();
    for p in schema.encrypted_paths() {
        let alt = format!("{}.{}", schema.collection, p.path);
        let id = enc.keys().create_data_key(master, vec![alt]).await.unwrap();
        let mut f = p.to_document();
        f.insert("keyId", id.to_binary());
        fields.push(Bson::Document(f));
    }
    let options = CreateCollectionOptions {
        encrypted_fields: Some(doc! { "fields": fields }),
    };
    db.engine()
        .create_collection(&schema.collection, options)
        .await
        .unwrap();
}

pub async fn raw_docs<M: Model>(app: &App, alias: &str) -> Vec<Document> {
    let db = app.database(alias).unwrap();
    db.engine()
        .find(
            &M::schema().collection,
            &Filter::all(),
            &FindOptions::default(),
        )
        .await
        .unwrap()
}
