//! `check` shows what the MongoDB engine learned at connect: the
//! deployment's topology and wire version, per database, against `cipherdoc
//! serve` answering as a replica set and as a `mongos`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cipherdoc::App;
use cipherdoc::settings::Settings;
use cipherdoc_wire::testing::serve_in_background;
use cipherdoc_wire::{Backend, ServerConfig, Topology};

/// `cipherdoc serve` over SQLite files in `dir` with `topology`; its
/// address.
fn serve(dir: &std::path::Path, topology: Topology) -> String {
    let backend = Backend::Sqlite {
        dir: dir.to_path_buf(),
    };
    serve_in_background(ServerConfig::new(backend).topology(topology)).unwrap()
}

async fn check_output(topology: Topology) -> String {
    let data = tempfile::tempdir().unwrap();
    let addr = serve(data.path(), topology);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.docs]
engine = "mongodb"
url = "mongodb://{addr}/"
name = "docs_db"
"#
    );
    let app = App::open(Settings::from_toml(&text, dir.path()).unwrap())
        .await
        .unwrap();
    cipherdoc_cli::Management::new(app)
        .name("app")
        .execute(["app", "check"])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_mongodb_deployment() {
    let out = check_output(Topology::ReplicaSet {
        set_name: "rs-check".into(),
    })
    .await;
    assert_eq!(
        out,
        "database 'docs': MongoDB replica set \"rs-check\", wire version 25\nSystem check identified no issues."
    );
    let out = check_output(Topology::Mongos).await;
    assert!(
        out.starts_with("database 'docs': MongoDB sharded cluster (mongos), wire version 25\n"),
        "{out}"
    );
}
