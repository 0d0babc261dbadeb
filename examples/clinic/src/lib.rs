//! The clinic reference application: the reference's Patient models on two
//! SQLite databases, every management command, and `clinic demo`.
//!
//! ```console
//! $ cargo run -q -p clinic -- demo
//! $ cargo run -q -p clinic -- showencryptedfieldsmap --database encrypted
//! ```

pub mod models;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bson::oid::ObjectId;
use cipherdoc::App;
use cipherdoc::migrations::{
    MigrateOptions, MigrationDir, encrypted_fields_map, encrypted_fields_map_json, migrate,
};
use cipherdoc::settings::{KmsCredentialsSettings, SecretSource, Settings};
use cipherdoc_engine::{Filter, FindOptions};
use rust_decimal::Decimal;

pub use models::{Billing, Directory, Patient, PatientRecord, Visit};

/// The settings file: `$CIPHERDOC_SETTINGS`, else `cipherdoc.toml` beside
/// this crate (so the demo runs from anywhere in the repository).
pub fn settings_path() -> PathBuf {
    std::env::var_os(cipherdoc::settings::SETTINGS_ENV).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("cipherdoc.toml"),
        PathBuf::from,
    )
}

/// The migration files, committed beside this crate.
pub fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// Generates each missing local master key file named by the settings
/// (mode 0600), warning that local keys are for development only.
pub fn ensure_local_master_keys(settings: &Settings) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for db in &settings.databases {
        let Some(enc) = &db.encryption else { continue };
        for p in &enc.kms_providers {
            if let KmsCredentialsSettings::Local {
                key: SecretSource::File(path),
                raw: true,
            } = &p.credentials
                && !path.exists()
            {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                cipherdoc::client_encryption::generate_local_master_key_file(path)?;
                eprintln!(
                    "warning: generated a local master key in {} (mode 0600) for database '{}'; local keys are for development only: use a KMS provider in production",
                    path.display(),
                    db.alias
                );
                made.push(path.clone());
            }
        }
    }
    Ok(made)
}

/// Opens the clinic from a settings file, with its models registered.
pub async fn open(settings_file: &Path) -> Result<App> {
    let settings = Settings::from_file(settings_file)?;
    ensure_local_master_keys(&settings)?;
    Ok(App::open(settings)
        .await?
        .register::<Patient>()?
        .register::<Directory>()?
        .register::<Visit>()?)
}

/// Diagnoses the demo writes in plaintext under `0003_visit`, before
/// `0004_copy_visit` encrypts them (`(patient_id, diagnosis)`).
pub const VISITS: [(i64, &str); 3] = [
    (1001, "seasonal influenza"),
    (1002, "sprained left ankle"),
    (1003, "mild hypertension"),
];

/// The clinic as it was before the diagnosis was encrypted: migrated to
/// `0003_visit`, with visits stored in plaintext (a plaintext collection,
/// so the documents go to the engine as they are). Does nothing once
/// `0004_copy_visit` is applied.
async fn store_plaintext_visits(app: &App, dir: &MigrationDir, out: &mut String) -> Result<()> {
    let db = app.database("encrypted")?;
    let applied = cipherdoc::migrations::applied_migrations(db).await?;
    if applied
        .iter()
        .any(|(a, n)| a == "myapp" && n == "0004_copy_visit")
    {
        return Ok(());
    }
    let to_0003 = MigrateOptions {
        app: Some("myapp".into()),
        target: Some("0003".into()),
        ..MigrateOptions::database("encrypted")
    };
    for a in migrate(app, dir, &to_0003).await?.applied {
        writeln!(out, "migrate --database encrypted myapp 0003: applied {a}")?;
    }
    if db.engine().count("myapp_visit", &Filter::all()).await? == 0 {
        let docs = VISITS
            .iter()
            .map(|(pid, diagnosis)| {
                bson::doc! { "_id": ObjectId::new(), "patient_id": *pid, "diagnosis": *diagnosis }
            })
            .collect();
        db.engine().insert_many("myapp_visit", docs).await?;
        writeln!(
            out,
            "stored {} visits with plaintext diagnoses",
            VISITS.len()
        )?;
    }
    Ok(())
}

/// Visits stored in plaintext before 0004 were copied; a database
/// migrated past 0004 before its first demo gets them encrypted here. Finds
/// a visit by its encrypted diagnosis.
async fn find_a_visit(app: &App, out: &mut String) -> Result<()> {
    let patients = app.objects::<Patient>();
    let visits = app.objects::<Visit>();
    for (pid, diagnosis) in VISITS {
        visits
            .get_or_create(Visit::fields().patient_id.eq(pid), || Visit {
                id: ObjectId::new(),
                patient_id: pid,
                diagnosis: diagnosis.to_owned(),
            })
            .await?;
    }
    let visit = visits
        .get(Visit::fields().diagnosis.eq("sprained left ankle"))
        .await?;
    let seen = patients
        .get(Patient::fields().patient_id.eq(visit.patient_id))
        .await?;
    writeln!(
        out,
        "found the visit by its encrypted diagnosis \"{}\": {seen}",
        visit.diagnosis
    )?;
    Ok(())
}

fn patient(name: &str, pid: i64, ssn: &str, cc_type: &str, cc: &str, cents: i64) -> Patient {
    Patient {
        id: ObjectId::new(),
        name: name.into(),
        patient_id: pid,
        patient_record: PatientRecord {
            ssn: ssn.into(),
            billing: Billing {
                cc_type: cc_type.into(),
                cc_number: cc.into(),
            },
            bill_amount: Decimal::new(cents, 2),
        },
    }
}

/// The demonstration: migrate, create patients (once), find one by SSN,
/// show the encrypted fields map and a raw stored document. Returns what it
/// prints.
pub async fn demo(app: &App, migrations: &Path) -> Result<String> {
    let mut out = String::new();
    let dir = MigrationDir::new(migrations);
    store_plaintext_visits(app, &dir, &mut out).await?;
    for alias in ["default", "encrypted"] {
        let r = migrate(app, &dir, &MigrateOptions::database(alias)).await?;
        for a in &r.applied {
            writeln!(out, "migrate --database {alias}: applied {a}")?;
        }
    }
    writeln!(out, "migrations are up to date")?;

    let patients = app.objects::<Patient>();
    let people = [
        patient(
            "John Doe",
            1001,
            "123-45-6789",
            "Visa",
            "4111111111111111",
            25075,
        ),
        patient(
            "Jane Roe",
            1002,
            "987-65-4321",
            "Mastercard",
            "5555555555554444",
            9900,
        ),
        patient(
            "Ada Lovelace",
            1003,
            "555-12-3456",
            "Amex",
            "378282246310005",
            120_000,
        ),
    ];
    for p in people {
        let id = p.patient_id;
        let (_, created) = patients
            .get_or_create(Patient::fields().patient_id.eq(id), || p)
            .await?;
        if created {
            writeln!(out, "created patient {id}")?;
        }
    }

    // The directory holds each surname encrypted, searchable by its start.
    let directory = app.objects::<Directory>();
    for (id, surname) in [(1001, "Doe"), (1002, "Roe"), (1003, "Lovelace")] {
        directory
            .get_or_create(Directory::fields().patient_id.eq(id), || Directory {
                id: bson::oid::ObjectId::new(),
                patient_id: id,
                surname: surname.to_owned(),
            })
            .await?;
    }
    let entry = directory
        .get(Directory::fields().surname.starts_with("LOV"))
        .await?;
    let by_letters = patients
        .get(Patient::fields().patient_id.eq(entry.patient_id))
        .await?;
    writeln!(out, "found by the first letters \"LOV\": {by_letters}")?;

    find_a_visit(app, &mut out).await?;

    let found = patients
        .get(Patient::fields().patient_record.ssn.eq("123-45-6789"))
        .await?;
    writeln!(out, "\nfound by SSN 123-45-6789: {found}")?;
    writeln!(
        out,
        "  record: ssn {}, billing {} {}, amount {}",
        found.patient_record.ssn,
        found.patient_record.billing.cc_type,
        found.patient_record.billing.cc_number,
        found.patient_record.bill_amount
    )?;

    let map = encrypted_fields_map(app, "encrypted").await?;
    writeln!(
        out,
        "\nencrypted fields map (pin it as encrypted_fields_map in production):\n{}",
        encrypted_fields_map_json(&map)
    )?;

    let db = app.database("encrypted")?;
    let raw = db
        .engine()
        .find(
            "myapp_patient",
            &Filter::And(Vec::new()),
            &FindOptions {
                limit: Some(1),
                ..FindOptions::default()
            },
        )
        .await?;
    if let Some(doc) = raw.into_iter().next() {
        let shown = cipherdoc_cli::management::describe_encrypted(bson::Bson::Document(doc));
        writeln!(
            out,
            "\nas stored in {} (what the database sees):\n{}",
            db.namespace("myapp_patient"),
            serde_json::to_string_pretty(&shown.into_relaxed_extjson())?
        )?;
    }
    Ok(out)
}
