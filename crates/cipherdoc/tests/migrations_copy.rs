//! Issue 19, copy migrations: a model's collection rebuilt under new
//! encrypted fields. The one copy suite every engine runs: for each kind of
//! change (a plaintext field becoming encrypted, an encrypted field gaining
//! queries or changing its range options, an encrypted field renamed or
//! removed, re-encryption under fresh data keys), on SQLite, (with
//! `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL, and the MongoDB engine
//! against `cipherdoc serve` started here over SQLite files (and over
//! PostgreSQL; its switch is `renameCollection` with `dropTarget`): every
//! document is present with equal plaintext, the encrypted fields answer
//! their queries, and the old collection, its ESC/ECOC and the data keys
//! nothing uses are gone. Writes during a copy are refused with
//! `Error::CopyInProgress`. What only a MongoDB client sees is checked for
//! the MongoDB engine within these tests: `listCollections` holds exactly
//! the state collections the collection's `encryptedFields` name, a copy
//! reports that the engine cannot scrub freed space, and a second copy
//! (fresh keys) works after the first. The MongoDB variants copy fewer
//! documents (CI time). The kill tests (`migrate_killed_at_random_points_*`,
//! SQLite and PostgreSQL) kill a `migrate` process with SIGKILL at random
//! points of a copy of 10,000 documents on SQLite and 2,000 on PostgreSQL
//! (`CIPHERDOC_COPY_KILL_DOCS=100000` runs both at the 100k) and
//! check that the next `migrate` ends where an uninterrupted run ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::struct_field_names,
    clippy::cast_precision_loss
)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use bson::oid::ObjectId;
use cipherdoc::key_vault::{alt_names_of, key_id_of};
use cipherdoc::migrations::{
    AppState, COPY_JOURNAL, CopyKeys, MigrateOptions, MigrateReport, Migration, MigrationObserver,
    Operation, autodetect_with, migrate, migrate_observed, model_state, temp_collection,
};
use cipherdoc::model::Model;
use cipherdoc::{App, Error};
use cipherdoc_engine::Filter;
use common::Backend;

const APP: &str = "cp";
const COLL: &str = "cp_visit";

/// The model as first migrated.
mod v1 {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "cp", collection = "cp_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted]
        pub note: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
        #[encrypted]
        pub secret: String,
    }
}

/// `diagnosis` becomes encrypted and equality-queryable.
mod encrypt_plain {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "cp", collection = "cp_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        #[encrypted(queries = "equality")]
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted]
        pub note: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
        #[encrypted]
        pub secret: String,
    }
}

/// `note` gains equality queries; `score` gets other range bounds.
mod queries {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "cp", collection = "cp_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted(queries = "equality")]
        pub note: String,
        #[encrypted(queries = "range", min = 0, max = 5000, sparsity = 1, trim_factor = 2)]
        pub score: i64,
        #[encrypted]
        pub secret: String,
    }
}

/// `code` is renamed `visit_code`.
mod renamed {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "cp", collection = "cp_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub visit_code: String,
        #[encrypted]
        pub note: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
        #[encrypted]
        pub secret: String,
    }
}

/// `secret` is removed.
mod removed {
    use bson::oid::ObjectId;
    use cipherdoc::Model;

    #[derive(Model, Debug, Clone, PartialEq)]
    #[model(app = "cp", collection = "cp_visit")]
    pub struct Visit {
        pub id: ObjectId,
        pub patient: String,
        pub diagnosis: String,
        #[encrypted(queries = "equality")]
        pub code: String,
        #[encrypted]
        pub note: String,
        #[encrypted(queries = "range", min = 0, max = 1000, sparsity = 2, trim_factor = 1)]
        pub score: i64,
    }
}

/// The settings of the databases in `dir`: the same databases every time
/// for one folder.
fn settings(backend: &Backend, dir: &Path) -> cipherdoc::settings::Settings {
    backend.settings_of_folder(dir, APP, "encrypted")
}

/// `n` documents, or fewer on the MongoDB engine: every document crosses
/// the wire to `cipherdoc serve` several times, and CI time is short.
fn docs(backend: &Backend, n: usize) -> usize {
    if backend.is_mongodb() { n.min(40) } else { n }
}

fn visit(i: usize) -> v1::Visit {
    v1::Visit {
        id: ObjectId::new(),
        patient: format!("patient {i}"),
        diagnosis: format!("diagnosis {}", i % 7),
        code: format!("C{}", i % 5),
        note: format!("note {}", i % 3),
        score: i64::try_from(i % 900).unwrap(),
        secret: format!("secret {i}"),
    }
}

fn migration(name: &str, ops: Vec<Operation>) -> Migration {
    Migration {
        app: APP.to_owned(),
        name: name.to_owned(),
        operations: ops,
    }
}

/// 0001 (the v1 model) and 0002 (the copy to `M`), as `makemigrations`
/// would write them.
fn migrations<M: Model>(reencrypt: bool) -> Vec<Migration> {
    let first = autodetect_with(
        APP,
        &AppState::default(),
        &[model_state(v1::Visit::schema())],
        &[],
    )
    .unwrap();
    let m1 = migration("0001_initial", first);
    let state = AppState::from_migrations(std::slice::from_ref(&m1)).unwrap();
    let again: Vec<String> = if reencrypt {
        vec!["Visit".to_owned()]
    } else {
        Vec::new()
    };
    let second = autodetect_with(APP, &state, &[model_state(M::schema())], &again).unwrap();
    assert_eq!(second.len(), 1, "one copy operation: {second:?}");
    let Operation::CopyModel { keys, .. } = &second[0] else {
        panic!("expected a copy, got {second:?}")
    };
    assert_eq!(
        *keys,
        if reencrypt {
            CopyKeys::Fresh
        } else {
            CopyKeys::KeepUnchanged
        }
    );
    vec![m1, migration("0002_copy_visit", second)]
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

/// A database with the v1 model migrated and `n` visits stored.
async fn seeded(backend: &Backend, dir: &Path, n: usize) -> (App, Vec<v1::Visit>) {
    let app = App::open(settings(backend, dir))
        .await
        .unwrap()
        .register::<v1::Visit>()
        .unwrap();
    let all = migrations::<encrypt_plain::Visit>(false);
    let opts = MigrateOptions {
        app: Some(APP.into()),
        target: Some("0001".into()),
        ..MigrateOptions::database("encrypted")
    };
    migrate(&app, &all, &opts).await.unwrap();
    let visits: Vec<v1::Visit> = (0..n).map(visit).collect();
    for chunk in visits.chunks(1000) {
        app.objects::<v1::Visit>()
            .bulk_create(chunk.to_vec())
            .await
            .unwrap();
    }
    (app, visits)
}

struct Copied {
    app: App,
    before: Vec<v1::Visit>,
    keys_before: Vec<(bson::Uuid, Vec<String>)>,
    report: MigrateReport,
}

/// Seeds `n` visits under v1, then migrates to `M` by a copy.
async fn copied<M: Model>(backend: &Backend, dir: &Path, n: usize, reencrypt: bool) -> Copied {
    let (app1, before) = seeded(backend, dir, n).await;
    let keys_before = keys(&app1).await;
    drop(app1);
    let app = App::open(settings(backend, dir))
        .await
        .unwrap()
        .register::<M>()
        .unwrap();
    let report = migrate(
        &app,
        &migrations::<M>(reencrypt),
        &MigrateOptions::database("encrypted"),
    )
    .await
    .unwrap();
    assert_eq!(report.applied, ["cp.0002_copy_visit"]);
    Copied {
        app,
        before,
        keys_before,
        report,
    }
}

/// The collection after a copy: no temporary collection, no journal
/// entry, ESC/ECOC as a fresh collection of these documents has them, and
/// exactly one data key per encrypted field of `M`, named after the model's
/// collection.
async fn assert_clean<M: Model>(backend: &Backend, c: &Copied) {
    let db = c.app.database("encrypted").unwrap();
    let names = db.engine().list_collections().await.unwrap();
    assert!(names.contains(&COLL.to_owned()));
    assert!(!names.contains(&temp_collection(COLL)), "{names:?}");
    assert_eq!(
        db.engine()
            .count(COPY_JOURNAL, &Filter::all())
            .await
            .unwrap(),
        0,
        "journal emptied"
    );
    let want: Vec<String> = M::schema()
        .encrypted_paths()
        .iter()
        .map(|p| format!("{COLL}.{}", p.path))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let have: Vec<String> = keys(&c.app)
        .await
        .into_iter()
        .map(|(_, n)| {
            assert_eq!(n.len(), 1, "one name per key: {n:?}");
            n[0].clone()
        })
        .collect();
    assert_eq!(have, want, "exactly the keys the new collection uses");
    // ESC/ECOC: what inserting the same documents into a new collection
    // gives (the old collection's state is gone, not merged).
    let sizes = db.engine().qe_state_sizes(COLL).await.unwrap();
    let control_dir = tempfile::tempdir().unwrap();
    let control = App::open(settings(backend, control_dir.path()))
        .await
        .unwrap()
        .register::<M>()
        .unwrap();
    let ops = autodetect_with(APP, &AppState::default(), &[model_state(M::schema())], &[]).unwrap();
    migrate(
        &control,
        &vec![migration("0001_initial", ops)],
        &MigrateOptions::database("encrypted"),
    )
    .await
    .unwrap();
    let stored = c.app.objects::<M>().all().await.unwrap();
    control.objects::<M>().bulk_create(stored).await.unwrap();
    let control_sizes = control
        .database("encrypted")
        .unwrap()
        .engine()
        .qe_state_sizes(COLL)
        .await
        .unwrap();
    assert_eq!(sizes, control_sizes);
    backend.cleanup(&control).await;
    if let Backend::MongoServe { url, .. } = backend {
        assert_state_collections_listed(url, db.name()).await;
    }
}

/// As a MongoDB client sees the server after a copy (its
/// `renameCollection` with `dropTarget`): `listCollections` holds the
/// collection, not the temporary one, and exactly the two state
/// collections the collection's `encryptedFields` name (none of the old
/// collection's or the temporary one's left).
async fn assert_state_collections_listed(url: &str, name: &str) {
    let raw = cipherdoc_mongodb::MongoEngine::connect(url, name)
        .await
        .unwrap();
    let listed = raw
        .run_command(bson::doc! {"listCollections": 1})
        .await
        .unwrap();
    let infos: Vec<bson::Document> = listed
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap()
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect();
    let names: BTreeSet<&str> = infos.iter().map(|i| i.get_str("name").unwrap()).collect();
    assert!(names.contains(COLL), "{names:?}");
    assert!(!names.contains(temp_collection(COLL).as_str()), "{names:?}");
    let efc = infos
        .iter()
        .find(|i| i.get_str("name") == Ok(COLL))
        .unwrap()
        .get_document("options")
        .unwrap()
        .get_document("encryptedFields")
        .unwrap();
    let state: BTreeSet<&str> = names
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

fn by_id<T, F: Fn(&T) -> ObjectId>(mut v: Vec<T>, id: F) -> Vec<T> {
    v.sort_by_key(|x| id(x));
    v
}

#[tokio::test]
async fn a_plaintext_field_becomes_encrypted_and_queryable() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let c =
            copied::<encrypt_plain::Visit>(&backend, dir.path(), docs(&backend, 120), false).await;
        let want: Vec<encrypt_plain::Visit> = c
            .before
            .iter()
            .map(|v| encrypt_plain::Visit {
                id: v.id,
                patient: v.patient.clone(),
                diagnosis: v.diagnosis.clone(),
                code: v.code.clone(),
                note: v.note.clone(),
                score: v.score,
                secret: v.secret.clone(),
            })
            .collect();
        let visits = c.app.objects::<encrypt_plain::Visit>();
        let got = visits.all().await.unwrap();
        assert_eq!(by_id(got, |v| v.id), by_id(want.clone(), |v| v.id));
        let found = visits
            .filter(encrypt_plain::Visit::fields().diagnosis.eq("diagnosis 3"))
            .all()
            .await
            .unwrap();
        let expect = want.iter().filter(|v| v.diagnosis == "diagnosis 3").count();
        assert_eq!(found.len(), expect);
        assert!(found.iter().all(|v| v.diagnosis == "diagnosis 3"));
        // The diagnosis is encrypted in the stored documents.
        let raw = common::raw_docs::<encrypt_plain::Visit>(&c.app, "encrypted").await;
        assert!(
            raw.iter()
                .all(|d| matches!(d.get("diagnosis"), Some(bson::Bson::Binary(_))))
        );
        // Unchanged fields kept their keys.
        let kept: Vec<_> = c
            .keys_before
            .iter()
            .filter(|(_, n)| n[0] != format!("{COLL}.diagnosis"))
            .cloned()
            .collect();
        let now = keys(&c.app).await;
        for k in &kept {
            assert!(now.contains(k), "key {k:?} kept");
        }
        assert_clean::<encrypt_plain::Visit>(&backend, &c).await;
        if backend.is_mongodb() {
            // The MongoDB engine cannot overwrite freed space, and says so.
            assert!(
                c.report
                    .notes
                    .iter()
                    .any(|n| n.contains("the mongodb engine cannot scrub freed space")),
                "{:?}",
                c.report.notes
            );
            // A second copy of the collection, under fresh keys: its
            // renameCollection drops a target that has been renamed onto
            // before (the state collections of the first copy).
            second_copy_under_fresh_keys(&backend, &c).await;
        }
        backend.cleanup(&c.app).await;
    }
}

/// After the copy to `encrypt_plain`, a re-encryption of the same model
/// (0003): every document kept, every key fresh, the collection clean.
async fn second_copy_under_fresh_keys(backend: &Backend, c: &Copied) {
    let mut all = migrations::<encrypt_plain::Visit>(false);
    let state = AppState::from_migrations(&all).unwrap();
    let ops = autodetect_with(
        APP,
        &state,
        &[model_state(encrypt_plain::Visit::schema())],
        &["Visit".to_owned()],
    )
    .unwrap();
    assert!(
        matches!(
            ops.as_slice(),
            [Operation::CopyModel {
                keys: CopyKeys::Fresh,
                ..
            }]
        ),
        "{ops:?}"
    );
    all.push(migration("0003_reencrypt_visit", ops));
    let visits = c.app.objects::<encrypt_plain::Visit>();
    let before = by_id(visits.all().await.unwrap(), |v| v.id);
    let keys_before = keys(&c.app).await;
    let report = migrate(&c.app, &all, &MigrateOptions::database("encrypted"))
        .await
        .unwrap();
    assert_eq!(report.applied, ["cp.0003_reencrypt_visit"]);
    assert_eq!(by_id(visits.all().await.unwrap(), |v| v.id), before);
    for (id, names) in &keys(&c.app).await {
        assert!(
            keys_before.iter().all(|(old, _)| old != id),
            "{names:?} has a fresh key"
        );
    }
    assert_clean::<encrypt_plain::Visit>(backend, c).await;
}

#[tokio::test]
async fn an_encrypted_field_gains_queries_and_a_range_changes_bounds() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let c = copied::<queries::Visit>(&backend, dir.path(), docs(&backend, 100), false).await;
        let visits = c.app.objects::<queries::Visit>();
        let got = by_id(visits.all().await.unwrap(), |v| v.id);
        let before = by_id(c.before.clone(), |v| v.id);
        assert_eq!(got.len(), before.len());
        for (g, b) in got.iter().zip(&before) {
            assert_eq!(
                (
                    g.id,
                    &g.patient,
                    &g.diagnosis,
                    &g.code,
                    &g.note,
                    g.score,
                    &g.secret
                ),
                (
                    b.id,
                    &b.patient,
                    &b.diagnosis,
                    &b.code,
                    &b.note,
                    b.score,
                    &b.secret
                )
            );
        }
        let notes = visits
            .filter(queries::Visit::fields().note.eq("note 1"))
            .count()
            .await
            .unwrap();
        assert_eq!(
            notes,
            before.iter().filter(|v| v.note == "note 1").count() as u64
        );
        let high = visits
            .filter(queries::Visit::fields().score.gte(50))
            .filter(queries::Visit::fields().score.lt(70))
            .count()
            .await
            .unwrap();
        assert_eq!(
            high,
            before
                .iter()
                .filter(|v| (50..70).contains(&v.score))
                .count() as u64
        );
        // The changed fields have new keys, the old ones are gone.
        let now = keys(&c.app).await;
        for field in ["note", "score"] {
            let old = c
                .keys_before
                .iter()
                .find(|(_, n)| n[0] == format!("{COLL}.{field}"));
            let new = now.iter().find(|(_, n)| n[0] == format!("{COLL}.{field}"));
            assert_ne!(old.unwrap().0, new.unwrap().0, "{field} has a new key");
        }
        assert_clean::<queries::Visit>(&backend, &c).await;
        backend.cleanup(&c.app).await;
    }
}

#[tokio::test]
async fn an_encrypted_field_is_renamed() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let c = copied::<renamed::Visit>(&backend, dir.path(), docs(&backend, 100), false).await;
        let visits = c.app.objects::<renamed::Visit>();
        let got = by_id(visits.all().await.unwrap(), |v| v.id);
        let before = by_id(c.before.clone(), |v| v.id);
        assert_eq!(got.len(), before.len());
        for (g, b) in got.iter().zip(&before) {
            assert_eq!((g.id, &g.visit_code, &g.secret), (b.id, &b.code, &b.secret));
        }
        let found = visits
            .filter(renamed::Visit::fields().visit_code.eq("C2"))
            .count()
            .await
            .unwrap();
        assert_eq!(
            found,
            before.iter().filter(|v| v.code == "C2").count() as u64
        );
        let raw = common::raw_docs::<renamed::Visit>(&c.app, "encrypted").await;
        assert!(
            raw.iter().all(|d| !d.contains_key("code")),
            "no old path left"
        );
        assert_clean::<renamed::Visit>(&backend, &c).await;
        backend.cleanup(&c.app).await;
    }
}

#[tokio::test]
async fn an_encrypted_field_is_removed_with_its_values_and_key() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let c = copied::<removed::Visit>(&backend, dir.path(), docs(&backend, 100), false).await;
        let visits = c.app.objects::<removed::Visit>();
        let got = by_id(visits.all().await.unwrap(), |v| v.id);
        let before = by_id(c.before.clone(), |v| v.id);
        for (g, b) in got.iter().zip(&before) {
            assert_eq!(
                (g.id, &g.code, &g.note, g.score),
                (b.id, &b.code, &b.note, b.score)
            );
        }
        let raw = common::raw_docs::<removed::Visit>(&c.app, "encrypted").await;
        assert_eq!(raw.len(), before.len());
        assert!(
            raw.iter().all(|d| !d.contains_key("secret")),
            "values not copied"
        );
        assert!(
            keys(&c.app)
                .await
                .iter()
                .all(|(_, n)| n[0] != format!("{COLL}.secret"))
        );
        assert_clean::<removed::Visit>(&backend, &c).await;
        backend.cleanup(&c.app).await;
    }
}

#[tokio::test]
async fn reencrypt_puts_every_field_under_fresh_keys() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        let c = copied::<v1::Visit>(&backend, dir.path(), docs(&backend, 100), true).await;
        let visits = c.app.objects::<v1::Visit>();
        assert_eq!(
            by_id(visits.all().await.unwrap(), |v| v.id),
            by_id(c.before.clone(), |v| v.id)
        );
        assert_eq!(
            visits
                .filter(v1::Visit::fields().code.eq("C4"))
                .count()
                .await
                .unwrap(),
            c.before.iter().filter(|v| v.code == "C4").count() as u64
        );
        let now = keys(&c.app).await;
        assert_eq!(now.len(), c.keys_before.len());
        for (id, names) in &now {
            assert!(
                c.keys_before.iter().all(|(old, _)| old != id),
                "{names:?} has a fresh key"
            );
        }
        assert!(
            c.report
                .notes
                .iter()
                .any(|n| n.contains("deleted data key"))
        );
        assert_clean::<v1::Visit>(&backend, &c).await;
        backend.cleanup(&c.app).await;
    }
}

/// Tries writes of both model versions when the copy has copied its first
/// batch, and records what they answered.
struct WriteDuringCopy<'a> {
    old: &'a App,
    new: &'a App,
    answers: Mutex<Vec<String>>,
}

impl MigrationObserver for WriteDuringCopy<'_> {
    fn copied(&self, _documents: u64) {
        if !self.answers.lock().unwrap().is_empty() {
            return;
        }
        let rt = tokio::runtime::Handle::current();
        let answers: Vec<String> = tokio::task::block_in_place(|| {
            rt.block_on(async {
                let mut out = Vec::new();
                let r = self.old.objects::<v1::Visit>().create(visit(99_999)).await;
                out.push(describe(r.map(|_| ())));
                let r = self
                    .new
                    .objects::<encrypt_plain::Visit>()
                    .filter(encrypt_plain::Visit::fields().patient.eq("patient 1"))
                    .delete()
                    .await;
                out.push(describe(r.map(|_| ())));
                // Reads of the old model still work during the copy.
                let n = self.old.objects::<v1::Visit>().count().await;
                out.push(format!(
                    "read {}",
                    n.map_or_else(|e| e.to_string(), |n| n.to_string())
                ));
                out
            })
        });
        *self.answers.lock().unwrap() = answers;
    }
}

fn describe(r: cipherdoc::Result<()>) -> String {
    match r {
        Err(Error::CopyInProgress {
            model, migration, ..
        }) => format!("blocked {model} by {migration}"),
        Err(e) => format!("error {e}"),
        Ok(()) => "written".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_during_a_copy_are_refused_with_copy_in_progress() {
    for backend in Backend::all_with_mongodb() {
        let dir = tempfile::tempdir().unwrap();
        // More than one batch of the copy (500), fewer on the MongoDB engine.
        let n = if backend.is_mongodb() { 600 } else { 1200 };
        let (old, before) = seeded(&backend, dir.path(), n).await;
        let new = App::open(settings(&backend, dir.path()))
            .await
            .unwrap()
            .register::<encrypt_plain::Visit>()
            .unwrap();
        let observer = WriteDuringCopy {
            old: &old,
            new: &new,
            answers: Mutex::new(Vec::new()),
        };
        migrate_observed(
            &new,
            &migrations::<encrypt_plain::Visit>(false),
            &MigrateOptions::database("encrypted"),
            &observer,
        )
        .await
        .unwrap();
        let answers = observer.answers.lock().unwrap().clone();
        assert_eq!(
            answers,
            [
                "blocked cp.Visit by cp.0002_copy_visit".to_owned(),
                "blocked cp.Visit by cp.0002_copy_visit".to_owned(),
                format!("read {}", before.len()),
            ]
        );
        // After the copy, writes go through, to the new collection.
        new.objects::<encrypt_plain::Visit>()
            .create(encrypt_plain::Visit {
                id: ObjectId::new(),
                patient: "late".into(),
                diagnosis: "after the copy".into(),
                code: "C9".into(),
                note: "n".into(),
                score: 1,
                secret: "s".into(),
            })
            .await
            .unwrap();
        let visits = new.objects::<encrypt_plain::Visit>();
        assert_eq!(visits.count().await.unwrap(), before.len() as u64 + 1);
        assert_eq!(
            visits
                .filter(
                    encrypt_plain::Visit::fields()
                        .diagnosis
                        .eq("after the copy")
                )
                .count()
                .await
                .unwrap(),
            1
        );
        backend.cleanup(&new).await;
    }
}

#[tokio::test]
async fn dry_run_reports_the_copy_and_changes_nothing() {
    // One engine: a dry run reads the plan and counts, writing nothing.
    let backend = Backend::Sqlite;
    let dir = tempfile::tempdir().unwrap();
    let (old, before) = seeded(&backend, dir.path(), 30).await;
    let keys_before = keys(&old).await;
    let opts = MigrateOptions {
        mode: cipherdoc::migrations::MigrateMode::DryRun,
        ..MigrateOptions::database("encrypted")
    };
    let r = migrate(&old, &migrations::<encrypt_plain::Visit>(false), &opts)
        .await
        .unwrap();
    assert_eq!(r.planned.len(), 1, "{:?}", r.planned);
    assert!(
        r.planned[0].contains("would copy 30 documents of encrypted_db.cp_visit"),
        "{:?}",
        r.planned
    );
    assert!(r.planned[0].contains("plaintext field 'diagnosis' becomes encrypted"));
    assert_eq!(keys(&old).await, keys_before);
    assert_eq!(
        old.objects::<v1::Visit>().count().await.unwrap(),
        before.len() as u64
    );
    let applied = cipherdoc::migrations::applied_migrations(old.database("encrypted").unwrap())
        .await
        .unwrap();
    assert_eq!(applied.len(), 1);
}

// ---- the kill test ----
// SQLite and PostgreSQL only: killing `migrate` exercises the copy's
// journal and resume logic, which is the same code over every engine; on
// the MongoDB engine it would cost minutes of CI for that same code.

/// Set in the child process: the folder of the databases to migrate.
const CHILD_DIR: &str = "CIPHERDOC_COPY_CHILD_DIR";
/// Set in the child process: the PostgreSQL server's URL when the kill
/// test runs on PostgreSQL (absent: SQLite).
const CHILD_PG: &str = "CIPHERDOC_COPY_CHILD_PG";
/// Documents of the kill tests (default 10,000 on SQLite and 2,000 on
/// PostgreSQL; the issue asks 100,000).
const KILL_DOCS: &str = "CIPHERDOC_COPY_KILL_DOCS";

/// Runs `migrate` to the copy in the folder `CIPHERDOC_COPY_CHILD_DIR`
/// names, on the backend `CIPHERDOC_COPY_CHILD_PG` names. Only the kill
/// tests run it, as a child process.
#[tokio::test]
#[ignore = "the kill tests' child process; run by migrate_killed_at_random_points_*"]
async fn kill_test_child_migrates() {
    let dir = std::env::var(CHILD_DIR).expect("CIPHERDOC_COPY_CHILD_DIR names the folder");
    let dir = Path::new(&dir);
    let backend = std::env::var(CHILD_PG).map_or(Backend::Sqlite, Backend::Postgres);
    let app = App::open(settings(&backend, dir))
        .await
        .unwrap()
        .register::<encrypt_plain::Visit>()
        .unwrap();
    migrate(
        &app,
        &migrations::<encrypt_plain::Visit>(false),
        &MigrateOptions::database("encrypted"),
    )
    .await
    .unwrap();
}

fn child(backend: &Backend, dir: &Path) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "kill_test_child_migrates",
        "--exact",
        "--ignored",
        "--quiet",
    ])
    .env(CHILD_DIR, dir)
    .env_remove(CHILD_PG);
    if let Backend::Postgres(url) = backend {
        cmd.env(CHILD_PG, url);
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// What the kill test compares: the documents (decrypted), the key names,
/// the collections, the ESC/ECOC sizes, the journal and the history.
async fn end_state(
    backend: &Backend,
    dir: &Path,
) -> (Vec<encrypt_plain::Visit>, Vec<String>, Vec<String>, String) {
    let app = App::open(settings(backend, dir))
        .await
        .unwrap()
        .register::<encrypt_plain::Visit>()
        .unwrap();
    let db = app.database("encrypted").unwrap();
    let docs = by_id(
        app.objects::<encrypt_plain::Visit>().all().await.unwrap(),
        |v| v.id,
    );
    let names: Vec<String> = keys(&app).await.into_iter().flat_map(|(_, n)| n).collect();
    let collections = db.engine().list_collections().await.unwrap();
    let sizes = db.engine().qe_state_sizes(COLL).await.unwrap();
    let journal = db
        .engine()
        .count(COPY_JOURNAL, &Filter::all())
        .await
        .unwrap();
    let applied = cipherdoc::migrations::applied_migrations(db).await.unwrap();
    (
        docs,
        names,
        collections,
        format!("{sizes:?} journal {journal} applied {applied:?}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_killed_at_random_points_ends_as_an_uninterrupted_run() {
    kill_test(&Backend::Sqlite, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_killed_at_random_points_on_postgres_ends_as_an_uninterrupted_run() {
    let Some(url) = cipherdoc_engine::postgres::testing::test_url() else {
        return;
    };
    kill_test(&Backend::Postgres(url), 2_000).await;
}

/// Seeds the same `n` documents (default `default_n`, or
/// `CIPHERDOC_COPY_KILL_DOCS`) into two databases, copies one without
/// interruption, and the other through `migrate` processes killed at
/// random points; the two end states must be equal.
async fn kill_test(backend: &Backend, default_n: usize) {
    let n: usize = std::env::var(KILL_DOCS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_n);
    let killed = tempfile::tempdir().unwrap();
    let whole = tempfile::tempdir().unwrap();
    // The same documents in both folders (same ids), same master key.
    let (a, visits) = seeded(backend, killed.path(), n).await;
    drop(a);
    let b = App::open(settings(backend, whole.path()))
        .await
        .unwrap()
        .register::<v1::Visit>()
        .unwrap();
    migrate(
        &b,
        &migrations::<encrypt_plain::Visit>(false),
        &MigrateOptions {
            app: Some(APP.into()),
            target: Some("0001".into()),
            ..MigrateOptions::database("encrypted")
        },
    )
    .await
    .unwrap();
    for chunk in visits.chunks(1000) {
        b.objects::<v1::Visit>()
            .bulk_create(chunk.to_vec())
            .await
            .unwrap();
    }
    drop(b);

    // The uninterrupted run, timed, in a child process like the others.
    let started = std::time::Instant::now();
    let status = child(backend, whole.path()).wait().unwrap();
    assert!(status.success());
    let full = started.elapsed();

    // Kill runs at random points over the whole span of a run.
    let mut rng_state = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let kills = 6;
    for _ in 0..kills {
        let at = full.mul_f64((next() % 1000) as f64 / 1000.0);
        let mut c = child(backend, killed.path());
        std::thread::sleep(at);
        if c.try_wait().unwrap().is_none() {
            c.kill().unwrap(); // SIGKILL
        }
        c.wait().unwrap();
        // Between kills, the model is never half-copied: either the old
        // collection (plaintext diagnosis, every document) or the new one.
        let app = App::open(settings(backend, killed.path()))
            .await
            .unwrap()
            .register::<v1::Visit>()
            .unwrap();
        let db = app.database("encrypted").unwrap();
        let stored = db.engine().count(COLL, &Filter::all()).await.unwrap();
        assert_eq!(stored, n as u64, "every document in the model's collection");
    }
    let status = child(backend, killed.path()).wait().unwrap();
    assert!(status.success(), "the last migrate finishes");

    let (docs_k, keys_k, colls_k, state_k) = end_state(backend, killed.path()).await;
    let (docs_w, keys_w, colls_w, state_w) = end_state(backend, whole.path()).await;
    assert_eq!(docs_k.len(), n);
    assert_eq!(docs_k, docs_w);
    assert_eq!(keys_k, keys_w);
    assert_eq!(colls_k, colls_w);
    assert_eq!(state_k, state_w);
    for dir in [killed.path(), whole.path()] {
        backend
            .cleanup(&App::open(settings(backend, dir)).await.unwrap())
            .await;
    }
}
