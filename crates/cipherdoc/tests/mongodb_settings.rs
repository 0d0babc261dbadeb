//! `engine = "mongodb"` from the settings, against `cipherdoc serve` run in
//! this process (there is no MongoDB server on the test machines): a plain
//! database saves and finds a model's documents; an encrypted database is
//! refused, naming its alias, on a standalone server and on a server older
//! than MongoDB 7.0 (issue 17). The QE path is `mongodb_canary.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use bson::oid::ObjectId;
use cipherdoc::settings::Settings;
use cipherdoc::{App, Model};
use cipherdoc_wire::{ServerConfig, Topology};

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "notes")]
pub struct Note {
    pub id: ObjectId,
    pub n: i64,
    pub title: String,
}

fn plain_settings(url: &str, dir: &Path) -> Settings {
    let text = format!(
        r#"
[databases.default]
engine = "mongodb"
url = "{url}"
name = "notes_db"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

fn encrypted_settings(url: &str, dir: &Path) -> Settings {
    std::fs::write(dir.join("master.key"), [42u8; 96]).unwrap();
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

[databases.secure]
engine = "mongodb"
url = "{url}"
name = "secure_db"

[databases.secure.encryption]
key_vault_namespace = "secure_db.__keyVault"
kms_providers.local.key_file = "master.key"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_database_on_mongodb_saves_and_finds() {
    let data = tempfile::tempdir().unwrap();
    let url = format!(
        "mongodb://{}/?directConnection=true",
        common::serve_sqlite(data.path(), |c| c)
    );
    let dir = tempfile::tempdir().unwrap();
    let app = App::open(plain_settings(&url, dir.path()))
        .await
        .unwrap()
        .register::<Note>()
        .unwrap();
    let notes = app.objects::<Note>();
    for n in 0..5 {
        notes
            .create(Note {
                id: ObjectId::new(),
                n,
                title: format!("note {n}"),
            })
            .await
            .unwrap();
    }
    let three = notes.get(Note::fields().n.eq(3)).await.unwrap();
    assert_eq!(three.title, "note 3");
    assert_eq!(
        notes.filter(Note::fields().n.gte(2)).count().await.unwrap(),
        3
    );
}

async fn refusal(tweak: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static) -> String {
    let data = tempfile::tempdir().unwrap();
    let url = format!(
        "mongodb://{}/?directConnection=true",
        common::serve_sqlite(data.path(), tweak)
    );
    let dir = tempfile::tempdir().unwrap();
    App::open(encrypted_settings(&url, dir.path()))
        .await
        .expect_err("an encrypted database on this server must be refused")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_database_on_a_standalone_server_is_refused_by_alias() {
    let err = refusal(|c| c.topology(Topology::Standalone)).await;
    assert!(err.contains("databases.secure.url"), "{err}");
    assert!(
        err.contains("'secure'") && err.contains("standalone"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_database_on_a_server_older_than_7_0_is_refused_by_alias() {
    let err = refusal(|c| c.max_wire_version(17)).await;
    assert!(err.contains("databases.secure.url"), "{err}");
    assert!(err.contains("'secure'") && err.contains("7.0"), "{err}");
}
