//! The clinic: first run generates a private master key; management
//! commands work on its settings; the demo (once the QE server role lands)
//! finds a patient by SSN, twice in a row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn settings_copy(dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("cipherdoc.toml"))
            .unwrap();
    let path = dir.join("cipherdoc.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn first_run_generates_a_private_master_key_and_commands_work() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_copy(dir.path());
    let app = clinic::open(&settings).await.unwrap();
    let key = dir.path().join("var/master.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 96);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let m = cipherdoc_cli::Management::new(app)
        .name("clinic")
        .migrations_dir(clinic::migrations_dir());
    let out = m
        .execute(["clinic", "makemigrations", "--check"])
        .await
        .unwrap();
    assert_eq!(
        out, "No changes detected",
        "committed migrations are current"
    );
    let out = m
        .execute(["clinic", "migrate", "--database", "encrypted"])
        .await
        .unwrap();
    assert!(out.contains("Applying myapp.0001_initial... OK"), "{out}");
    let out = m
        .execute([
            "clinic",
            "showencryptedfieldsmap",
            "--database",
            "encrypted",
        ])
        .await
        .unwrap();
    assert!(out.contains("\"encrypted_db.myapp_patient\""), "{out}");
    let out = m.execute(["clinic", "check"]).await.unwrap();
    assert_eq!(out, "System check identified no issues.");
    // A second open keeps the key.
    let before = std::fs::read(&key).unwrap();
    drop(m);
    clinic::open(&settings).await.unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn help_lists_the_management_commands_and_demo() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_copy(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clinic"))
        .arg("--help")
        .env("CIPHERDOC_SETTINGS", &settings)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "makemigrations",
        "migrate",
        "showmigrations",
        "showencryptedfieldsmap",
        "check",
        "compact",
        "createdatakey",
        "rewrapdatakeys",
        "inspect",
        "demo",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from:\n{text}");
    }
}

#[test]
fn demo_finds_the_patient_by_ssn_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_copy(dir.path());
    for run in 0..2 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clinic"))
            .arg("demo")
            .env("CIPHERDOC_SETTINGS", &settings)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {stderr}");
        assert!(
            stdout.contains("found by SSN 123-45-6789: John Doe (1001)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("found by the first letters \"LOV\": Ada Lovelace (1003)"),
            "{stdout}"
        );
        assert!(stdout.contains("\"$encrypted\""), "{stdout}");
        assert!(
            !stdout.contains("4111111111111111\","),
            "the stored document must not show the card number in plaintext"
        );
        assert_eq!(
            stdout.matches("created patient").count(),
            if run == 0 { 3 } else { 0 }
        );
    }
}

/// Issue 19: the demo stores visits with plaintext diagnoses under
/// `0003_visit`, then `0004_copy_visit` copies them into an encrypted
/// collection; afterwards no diagnosis is in any file of the SQLite
/// databases (database files and WAL), and the visit is found by its
/// encrypted diagnosis.
#[test]
fn after_the_demo_no_plaintext_diagnosis_is_in_any_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_copy(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clinic"))
        .arg("demo")
        .env("CIPHERDOC_SETTINGS", &settings)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stored 3 visits with plaintext diagnoses"),
        "{stdout}"
    );
    assert!(stdout.contains("applied myapp.0004_copy_visit"), "{stdout}");
    assert!(
        stdout.contains(
            "found the visit by its encrypted diagnosis \"sprained left ankle\": Jane Roe (1002)"
        ),
        "{stdout}"
    );
    let var = dir.path().join("var");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&var).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            files.push(e.path());
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("encrypted.db")),
        "{files:?}"
    );
    let mut scanned = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        scanned += bytes.len();
        for (_, diagnosis) in clinic::VISITS {
            assert!(
                !bytes
                    .windows(diagnosis.len())
                    .any(|w| w == diagnosis.as_bytes()),
                "'{diagnosis}' is in plaintext in {}",
                f.display()
            );
        }
    }
    assert!(scanned > 0);
}

/// `migrate --dry-run` reports the copy of 0004 with its document count and
/// changes nothing; `migrate` then applies it.
#[tokio::test]
async fn migrate_dry_run_reports_the_copy_then_migrate_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings_copy(dir.path());
    let app = clinic::open(&settings).await.unwrap();
    let m = cipherdoc_cli::Management::new(app)
        .name("clinic")
        .migrations_dir(clinic::migrations_dir());
    m.execute([
        "clinic",
        "migrate",
        "--database",
        "encrypted",
        "myapp",
        "0003",
    ])
    .await
    .unwrap();
    let db = m.app().database("encrypted").unwrap();
    let docs = clinic::VISITS
        .iter()
        .map(|(pid, d)| bson::doc! { "_id": bson::oid::ObjectId::new(), "patient_id": *pid, "diagnosis": *d })
        .collect();
    db.engine().insert_many("myapp_visit", docs).await.unwrap();
    let out = m
        .execute(["clinic", "migrate", "--database", "encrypted", "--dry-run"])
        .await
        .unwrap();
    assert!(
        out.contains("myapp.0004_copy_visit: Copy model Visit (collection myapp_visit) into a new collection: plaintext field 'diagnosis' becomes encrypted [would copy 3 documents of encrypted_db.myapp_visit]"),
        "{out}"
    );
    let applied = cipherdoc::migrations::applied_migrations(db).await.unwrap();
    assert_eq!(applied.len(), 3, "nothing applied by the dry run");
    let out = m
        .execute(["clinic", "migrate", "--database", "encrypted"])
        .await
        .unwrap();
    assert!(
        out.contains("Applying myapp.0004_copy_visit... OK"),
        "{out}"
    );
}
