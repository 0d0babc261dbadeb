//! The clinic reference application.
//!
//! `clinic demo` walks through explicit Queryable Encryption on a local
//! master key kept under `var/` (development only): it creates a data key,
//! encrypts a patient's SSN for storage and for an equality query, and
//! decrypts it again.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use cipherdoc::client_encryption::{
    Algorithm, ClientEncryption, EncryptOptions, KeyRef, QueryType, generate_local_master_key_file,
    inspect,
};
use cipherdoc::key_vault::{JsonFileKeyVault, KeyVault};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cmd = std::env::args().nth(1);
    if cmd.as_deref() != Some("demo") {
        eprintln!("usage: clinic demo");
        return ExitCode::from(2);
    }
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> cipherdoc::Result<()> {
    let var = Path::new("var");
    std::fs::create_dir_all(var)
        .map_err(|e| cipherdoc::Error::Encryption(format!("cannot create var/: {e}")))?;
    let master = var.join("master.key");
    if !master.exists() {
        generate_local_master_key_file(&master)?;
        eprintln!(
            "warning: generated a local master key in {} (mode 0600); local keys are for development only",
            master.display()
        );
    }
    let vault: Arc<dyn KeyVault> = Arc::new(JsonFileKeyVault::new(var.join("key_vault.json")));
    let ce = ClientEncryption::with_local_master_key_file(Arc::clone(&vault), &master)?;
    let alt = "myapp_patient.patient_record.ssn";
    let key = match ce.keys().key_by_alt_name(alt).await {
        Ok(k) => k.id,
        Err(_) => ce.create_data_key("local", vec![alt.to_owned()]).await?,
    };
    println!("data key {key} (keyAltName \"{alt}\")");

    let ssn = bson::Bson::from("123-45-6789");
    let stored = ce
        .encrypt(
            ssn.clone(),
            &EncryptOptions::new(KeyRef::Id(key), Algorithm::Indexed),
        )
        .await?;
    println!("\ninsert payload for ssn = \"123-45-6789\":");
    println!(
        "{}",
        bson::Bson::Binary(stored.clone()).into_canonical_extjson()
    );
    println!(
        "inspected: {}",
        bson::Bson::Document(inspect(&stored.bytes)?).into_relaxed_extjson()
    );

    let mut find = EncryptOptions::new(KeyRef::AltName(alt.to_owned()), Algorithm::Indexed);
    find.query_type = Some(QueryType::Equality);
    let query = ce.encrypt(ssn, &find).await?;
    println!(
        "\nequality find payload: {}",
        bson::Bson::Document(inspect(&query.bytes)?).into_relaxed_extjson()
    );

    let back = ce.decrypt(&stored).await?;
    println!("\ndecrypted: {back}");
    Ok(())
}
