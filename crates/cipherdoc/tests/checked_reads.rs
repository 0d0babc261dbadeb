//! Issue 15, checked reads, as the attacker would act: with write access to
//! the database (the raw engine, no master key), rearrange stored values so
//! that the application decrypts something for them. Each attack is refused
//! with `StoredValueRejected` naming the model and field, and the victim's
//! plaintext appears in no error or `Debug` output. SQLite and (with
//! `CIPHERDOC_TEST_POSTGRES_URL`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use bson::oid::ObjectId;
use bson::{Bson, Document};
use cipherdoc::encrypter::IntegrityProblem;
use cipherdoc::{App, Error, Model};
use cipherdoc_engine::{Engine, Filter, FindOptions};
use common::Backend;

#[derive(Model, Debug, Clone, PartialEq)]
#[model(app = "chk", collection = "chk_patient")]
pub struct Patient {
    pub id: ObjectId,
    pub name: String,
    pub note: String,
    pub tags: Vec<String>,
    #[encrypted(queries = "equality")]
    pub ssn: String,
    #[encrypted(queries = "equality")]
    pub mrn: String,
    #[encrypted]
    pub diagnosis: String,
    #[encrypted(queries = "range", min = 0, max = 200)]
    pub weight: i64,
}

fn patient(name: &str, secret: &str) -> Patient {
    Patient {
        id: ObjectId::new(),
        name: name.into(),
        note: "nothing to see".into(),
        tags: vec!["t".into()],
        ssn: format!("{secret}-ssn"),
        mrn: format!("{secret}-mrn"),
        diagnosis: format!("{secret}-dx"),
        weight: 80,
    }
}

struct Scene {
    app: App,
    raw: Arc<dyn Engine>,
    victim: Patient,
    attacker: Patient,
    secret: String,
}

const COLL: &str = "chk_patient";

impl Scene {
    async fn raw_doc(&self, id: ObjectId) -> Document {
        self.raw
            .find(COLL, &Filter::eq("_id", id), &FindOptions::default())
            .await
            .unwrap()
            .remove(0)
    }

    /// Rewrites the attacker's stored document with `change`.
    async fn tamper(&self, change: impl FnOnce(&mut Document, &Document)) {
        let victim = self.raw_doc(self.victim.id).await;
        let mut doc = self.raw_doc(self.attacker.id).await;
        change(&mut doc, &victim);
        assert!(
            self.raw
                .replace_one(COLL, &Bson::ObjectId(self.attacker.id), doc)
                .await
                .unwrap()
        );
    }

    /// Reads the attacker's document through the application, every way.
    async fn assert_refused(&self, field: &str, want: fn(&IntegrityProblem) -> bool) {
        let objects = self.app.objects::<Patient>();
        let f = Patient::fields();
        let reads = [
            objects.get(f.name.eq("attacker")).await.map(|_| ()),
            objects.all().await.map(|_| ()),
            objects
                .filter(f.ssn.eq(self.attacker.ssn.clone()))
                .all()
                .await
                .map(|_| ()),
            objects.values(&["note"]).await.map(|_| ()),
        ];
        for r in reads {
            let e = r.unwrap_err();
            match &e {
                Error::StoredValueRejected {
                    model,
                    field: got,
                    problem,
                } => {
                    assert!(model.contains("chk.Patient"), "{e}");
                    assert_eq!(got, field, "{e}");
                    assert!(want(problem), "{problem:?}");
                }
                other => panic!("expected StoredValueRejected, got {other:?}"),
            }
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(
                    !text.contains(&self.secret),
                    "the victim's secret leaked: {text}"
                );
            }
        }
        // The victim's own document still reads (a `get` by a plaintext field).
        let v = objects.get(f.name.eq("victim")).await.unwrap();
        assert_eq!(v, self.victim);
    }
}

async fn scene(backend: &Backend, dir: &std::path::Path) -> Scene {
    let app = App::open(backend.settings(dir, "chk", "encrypted"))
        .await
        .unwrap()
        .register::<Patient>()
        .unwrap();
    common::create_encrypted_collection::<Patient>(&app).await;
    let secret = format!("VICTIM{}", ObjectId::new().to_hex());
    let victim = patient("victim", &secret);
    let attacker = patient("attacker", "ATTACKER");
    let objects = app.objects::<Patient>();
    objects.create(victim.clone()).await.unwrap();
    objects.create(attacker.clone()).await.unwrap();
    let raw = backend.raw_engine(dir, &app, "encrypted").await;
    Scene {
        app,
        raw,
        victim,
        attacker,
        secret,
    }
}

/// Restores the attacker's document between attacks.
async fn reset(s: &Scene) {
    s.app.objects::<Patient>().save(&s.attacker).await.unwrap();
}

#[tokio::test]
async fn attacks_through_the_database_are_refused() {
    for backend in Backend::all() {
        let dir = tempfile::tempdir().unwrap();
        let s = scene(&backend, dir.path()).await;
        let objects = s.app.objects::<Patient>();
        assert_eq!(objects.count().await.unwrap(), 2);

        // 1. The victim's encrypted SSN copied into the attacker's
        //    plaintext `note`, which the attacker can read back.
        s.tamper(|d, v| {
            d.insert("note", v.get("ssn").unwrap().clone());
        })
        .await;
        s.assert_refused("note", |p| *p == IntegrityProblem::NotAnEncryptedPath)
            .await;
        reset(&s).await;

        // …or inside a plaintext array.
        s.tamper(|d, v| {
            d.insert("tags", vec![v.get("diagnosis").unwrap().clone()]);
        })
        .await;
        s.assert_refused("tags.0", |p| *p == IntegrityProblem::NotAnEncryptedPath)
            .await;
        reset(&s).await;

        // 2. Another field's blob at an encrypted path: of another kind
        //    (equality value 14 where an unindexed 16 belongs)…
        s.tamper(|d, v| {
            d.insert("diagnosis", v.get("ssn").unwrap().clone());
        })
        .await;
        s.assert_refused("diagnosis", |p| {
            matches!(
                p,
                IntegrityProblem::Subtype {
                    allowed: 16,
                    found: Some(14)
                }
            )
        })
        .await;
        reset(&s).await;

        // …and of the same kind and type but under another field's key.
        s.tamper(|d, v| {
            d.insert("ssn", v.get("mrn").unwrap().clone());
        })
        .await;
        s.assert_refused("ssn", |p| *p == IntegrityProblem::OtherKey)
            .await;
        reset(&s).await;

        // 3. Plaintext at an encrypted path.
        s.tamper(|d, _| {
            d.insert("diagnosis", "planted plaintext");
        })
        .await;
        s.assert_refused("diagnosis", |p| *p == IntegrityProblem::Plaintext)
            .await;
        reset(&s).await;

        // 4. A range value where an equality value belongs.
        s.tamper(|d, v| {
            d.insert("mrn", v.get("weight").unwrap().clone());
        })
        .await;
        s.assert_refused("mrn", |p| {
            matches!(
                p,
                IntegrityProblem::Subtype {
                    allowed: 14,
                    found: Some(15)
                }
            )
        })
        .await;
        reset(&s).await;

        // Untouched, everything reads again.
        assert_eq!(objects.all().await.unwrap().len(), 2);
        backend.cleanup(&s.app).await;
    }
}
