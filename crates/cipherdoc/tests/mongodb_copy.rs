//! Copy migrations on the MongoDB engine (`engine = "mongodb"`), against
//! `cipherdoc serve` started here over SQLite files and, with
//! `CIPHERDOC_TEST_POSTGRES_URL`, over PostgreSQL. The switch is MongoDB's
//! `renameCollection` with `dropTarget` (`Engine::rename_collection`).
//!
//! Checked as `migrations_copy.rs` checks the SQLite and PostgreSQL
//! engines: every document present with equal plaintext, the newly
//! encrypted field stored encrypted and answering its queries, no temporary
//! collection and no journal entry left, exactly the data keys the new
//! collection uses, and ESC/ECOC as a fresh collection of the same
//! documents has them. And what only a MongoDB client sees: the server's
//! `listCollections` holds the collection's two state collections (the ones
//! its `encryptedFields` name) and no other `enxcol_` collection, and a
//! second copy of the same collection (re-encryption under fresh keys)
//! works after the first. A copy reports that the engine cannot scrub
//! freed space.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use bson::oid::ObjectId;
use bson::{Bson, doc};
use cipherdoc::App;
use cipherdoc::key_vault::{alt_names_of, key_id_of};
use cipherdoc::migrations::{
    AppState, COPY_JOURNAL, CopyKeys, MigrateOptions, Migration, Operation, autodetect_with,
    migrate, model_state, temp_collection,
};
use cipherdoc::model::Model;
use cipherdoc::settings::Settings;
use cipherdoc_engine::Filter;
use cipherdoc_mongodb::MongoEngine;
use cipherdoc_wire::{Backend, Server, ServerConfig};

const APP: &str = "mc";
const COLL: &str = "mc_visit";

/// The model as first migrated: `diagnosis` in plaintext.
mod v1 {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "mc", collection = "mc_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
    }
}

/// `diagnosis` becomes encrypted and equality-queryable.
mod v2 {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "mc", collection = "mc_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        #[encrypted(queries = "equality")]
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
    }
}

/// `cipherdoc serve` over `backend` on a loopback port, on a thread and
/// runtime of its own; its `mongodb://` URL.
fn serve(backend: Backend) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            Server::new(ServerConfig::new(backend))
                .serve(listener, std::future::pending())
                .await;
        });
    });
    format!("mongodb://{}/", rx.recv().unwrap())
}

/// The backends serve runs over here, each with a fresh serve.
fn servers(data: &Path) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "sqlite",
        serve(Backend::Sqlite {
            dir: data.to_path_buf(),
        }),
    )];
    if let Some(url) = cipherdoc_engine::postgres::testing::test_url() {
        out.push((
            "postgres",
            serve(Backend::Postgres {
                url,
                max_connections: 8,
            }),
        ));
    }
    out
}

/// A MongoDB database name of the PostgreSQL test schemas' form
/// (`cdtest_…`, swept when stale), unique per call.
fn fresh_name() -> String {
    format!(
        "{}mc_{}",
        cipherdoc_engine::postgres::testing::TEMP_SCHEMA_PREFIX,
        ObjectId::new().to_hex()
    )
}

fn settings(dir: &Path, url: &str, name: &str) -> Settings {
    common::write_secret(&dir.join("master.key"), &[42u8; 96]);
    let text = format!(
        r#"
[databases.default]
engine = "sqlite"
path = "default.db"

[databases.encrypted]
engine = "mongodb"
url = "{url}"
name = "{name}"

[databases.encrypted.encryption]
key_vault_namespace = "{name}.__keyVault"
kms_providers.local.key_file = "master.key"

[[routers]]
app = "{APP}"
database = "encrypted"
"#
    );
    Settings::from_toml(&text, dir).unwrap()
}

fn migration(name: &str, ops: Vec<Operation>) -> Migration {
    Migration {
        app: APP.to_owned(),
        name: name.to_owned(),
        operations: ops,
    }
}

/// 0001 (v1), 0002 (the copy to v2), 0003 (v2 re-encrypted under fresh
/// keys, a second copy), as `makemigrations` would write them.
fn migrations() -> Vec<Migration> {
    let m1 = migration(
        "0001_initial",
        autodetect_with(
            APP,
            &AppState::default(),
            &[model_state(v1::Visit::schema())],
            &[],
        )
        .unwrap(),
    );
    let s1 = AppState::from_migrations(std::slice::from_ref(&m1)).unwrap();
    let ops2 = autodetect_with(APP, &s1, &[model_state(v2::Visit::schema())], &[]).unwrap();
    assert!(
        matches!(
            ops2.as_slice(),
            [Operation::CopyModel {
                keys: CopyKeys::KeepUnchanged,
                ..
            }]
        ),
        "{ops2:?}"
    );
    let m2 = migration("0002_copy_visit", ops2);
    let s2 = AppState::from_migrations(&[m1.clone(), m2.clone()]).unwrap();
    let ops3 = autodetect_with(
        APP,
        &s2,
        &[model_state(v2::Visit::schema())],
        &["Visit".to_owned()],
    )
    .unwrap();
    assert!(
        matches!(
            ops3.as_slice(),
            [Operation::CopyModel {
                keys: CopyKeys::Fresh,
                ..
            }]
        ),
        "{ops3:?}"
    );
    vec![m1, m2, migration("0003_reencrypt_visit", ops3)]
}

fn visit(i: usize) -> v1::Visit {
    v1::Visit {
        id: ObjectId::new(),
        patient: format!("patient {i}"),
        diagnosis: format!("diagnosis {}", i % 7),
        code: format!("C{}", i % 5),
        score: i64::try_from(i % 900).unwrap(),
    }
}

fn as_v2(v: &v1::Visit) -> v2::Visit {
    v2::Visit {
        id: v.id,
        patient: v.patient.clone(),
        diagnosis: v.diagnosis.clone(),
        code: v.code.clone(),
        score: v.score,
    }
}

async fn keys(app: &App) -> Vec<(bson::Uuid, Vec<String>)> {
    let db = app.database("encrypted").unwrap();
    let mut out: Vec<_> = db
        .encryption()
        .unwrap()
        .keys()
        .vault()
        .list()
        .await
        .unwrap()
        .iter()
        .map(|k| (key_id_of(k).unwrap(), alt_names_of(k).unwrap()))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

async fn open(dir: &Path, url: &str, name: &str) -> App {
    App::open(settings(dir, url, name))
        .await
        .unwrap()
        .register::<v2::Visit>()
        .unwrap()
}

/// What the copy must leave, checked through the model layer and as a
/// MongoDB client sees the server.
async fn assert_copied(app: &App, url: &str, name: &str, want: &[v2::Visit]) {
    let visits = app.objects::<v2::Visit>();
    let mut got = visits.all().await.unwrap();
    got.sort_by_key(|v| v.id);
    assert_eq!(got, want);
    let found = visits
        .filter(v2::Visit::fields().diagnosis.eq("diagnosis 3"))
        .all()
        .await
        .unwrap();
    assert_eq!(
        found.len(),
        want.iter().filter(|v| v.diagnosis == "diagnosis 3").count()
    );
    assert!(found.iter().all(|v| v.diagnosis == "diagnosis 3"));
    let in_range = visits
        .filter(v2::Visit::fields().score.gte(10))
        .filter(v2::Visit::fields().score.lt(20))
        .count()
        .await
        .unwrap();
    assert_eq!(
        in_range,
        want.iter().filter(|v| (10..20).contains(&v.score)).count() as u64
    );
    let raw = common::raw_docs::<v2::Visit>(app, "encrypted").await;
    assert_eq!(raw.len(), want.len());
    assert!(
        raw.iter()
            .all(|d| matches!(d.get("diagnosis"), Some(Bson::Binary(_)))),
        "the diagnosis is stored encrypted"
    );
    let db = app.database("encrypted").unwrap();
    assert_eq!(
        db.engine()
            .count(COPY_JOURNAL, &Filter::all())
            .await
            .unwrap(),
        0,
        "journal emptied"
    );
    let names: BTreeSet<String> = keys(app)
        .await
        .into_iter()
        .map(|(_, n)| {
            assert_eq!(n.len(), 1, "one name per key: {n:?}");
            n[0].clone()
        })
        .collect();
    let want_names: BTreeSet<String> = ["code", "diagnosis", "score"]
        .iter()
        .map(|p| format!("{COLL}.{p}"))
        .collect();
    assert_eq!(names, want_names, "exactly the keys the collection uses");

    // As a MongoDB client sees the server.
    let raw = MongoEngine::connect(url, name).await.unwrap();
    let listed = raw.run_command(doc! {"listCollections": 1}).await.unwrap();
    let infos: Vec<bson::Document> = listed
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let listed_names: BTreeSet<&str> = infos.iter().map(|i| i.get_str("name").unwrap()).collect();
    assert!(listed_names.contains(COLL), "{listed_names:?}");
    assert!(
        !listed_names.contains(temp_collection(COLL).as_str()),
        "{listed_names:?}"
    );
    let efc = infos
        .iter()
        .find(|i| i.get_str("name") == Ok(COLL))
        .unwrap()
        .get_document("options")
        .unwrap()
        .get_document("encryptedFields")
        .unwrap();
    let state: BTreeSet<&str> = listed_names
        .iter()
        .copied()
        .filter(|n| n.starts_with("enxcol_."))
        .collect();
    let recorded: BTreeSet<&str> = [
        efc.get_str("escCollection").unwrap(),
        efc.get_str("ecocCollection").unwrap(),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        state, recorded,
        "the only state collections are the ones the collection's encryptedFields name"
    );
}

/// ESC/ECOC of `app`'s collection equal those of a fresh collection with
/// the same documents (the old collection's state is gone, not merged).
async fn assert_fresh_state(app: &App, dir: &Path, url: &str) {
    let sizes = app
        .database("encrypted")
        .unwrap()
        .engine()
        .qe_state_sizes(COLL)
        .await
        .unwrap();
    assert!(sizes.esc > 0, "{sizes:?}");
    let control_dir = dir.join("control");
    std::fs::create_dir_all(&control_dir).unwrap();
    let control = open(&control_dir, url, &fresh_name()).await;
    let ops = autodetect_with(
        APP,
        &AppState::default(),
        &[model_state(v2::Visit::schema())],
        &[],
    )
    .unwrap();
    migrate(
        &control,
        &vec![migration("0001_initial", ops)],
        &MigrateOptions::database("encrypted"),
    )
    .await
    .unwrap();
    let stored = app.objects::<v2::Visit>().all().await.unwrap();
    control
        .objects::<v2::Visit>()
        .bulk_create(stored)
        .await
        .unwrap();
    let control_sizes = control
        .database("encrypted")
        .unwrap()
        .engine()
        .qe_state_sizes(COLL)
        .await
        .unwrap();
    assert_eq!(sizes, control_sizes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_migrations_switch_collections_with_rename_collection() {
    let data = tempfile::tempdir().unwrap();
    for (backend, url) in servers(data.path()) {
        let dir = tempfile::tempdir().unwrap();
        let name = fresh_name();
        let all = migrations();

        // v1 migrated, visits stored with a plaintext diagnosis.
        let app1 = App::open(settings(dir.path(), &url, &name))
            .await
            .unwrap()
            .register::<v1::Visit>()
            .unwrap();
        let first = MigrateOptions {
            app: Some(APP.into()),
            target: Some("0001".into()),
            ..MigrateOptions::database("encrypted")
        };
        migrate(&app1, &all, &first).await.unwrap();
        let before: Vec<v1::Visit> = (0..80).map(visit).collect();
        app1.objects::<v1::Visit>()
            .bulk_create(before.clone())
            .await
            .unwrap();
        let keys_v1 = keys(&app1).await;
        drop(app1);
        let mut want: Vec<v2::Visit> = before.iter().map(as_v2).collect();
        want.sort_by_key(|v| v.id);

        // The copy: diagnosis encrypted.
        let app = open(dir.path(), &url, &name).await;
        let second = MigrateOptions {
            target: Some("0002".into()),
            ..first.clone()
        };
        let report = migrate(&app, &all, &second).await.unwrap();
        assert_eq!(report.applied, ["mc.0002_copy_visit"], "{backend}");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("the mongodb engine cannot scrub freed space")),
            "{backend}: {:?}",
            report.notes
        );
        assert_copied(&app, &url, &name, &want).await;
        let kept = keys(&app).await;
        for k in keys_v1
            .iter()
            .filter(|(_, n)| n[0] != format!("{COLL}.diagnosis"))
        {
            assert!(kept.contains(k), "{backend}: key {k:?} kept");
        }
        assert_fresh_state(&app, dir.path(), &url).await;

        // A second copy of the same collection: fresh keys for every field.
        let report = migrate(&app, &all, &MigrateOptions::database("encrypted"))
            .await
            .unwrap();
        assert_eq!(report.applied, ["mc.0003_reencrypt_visit"], "{backend}");
        assert_copied(&app, &url, &name, &want).await;
        let fresh = keys(&app).await;
        for (id, names) in &fresh {
            assert!(
                kept.iter().all(|(old, _)| old != id),
                "{backend}: {names:?} has a fresh key"
            );
        }
        assert_fresh_state(&app, dir.path(), &url).await;
    }
}
