//! The standalone `cipherdoc` command, for trying Queryable Encryption
//! without writing code: master keys, data keys, explicit encryption,
//! decryption and inspection of blobs.
//!
//! Values and blobs are read as extended JSON (or, for blobs, base64 of the
//! blob's bytes); results are printed as canonical extended JSON. Every failure
//! is one line on standard error and a non-zero exit status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use bson::spec::BinarySubtype;
use bson::{Binary, Bson};
use clap::{Args, Parser, Subcommand, ValueEnum};

use cipherdoc::client_encryption::{
    Algorithm, ClientEncryption, EncryptOptions, KeyRef, QueryType,
};
use cipherdoc::key_vault::{JsonFileKeyVault, KeyVault};

/// Queryable Encryption from the command line.
#[derive(Debug, Parser)]
#[command(name = "cipherdoc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Master keys and data keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Encrypt one value explicitly (like MongoDB's ClientEncryption.encrypt).
    Encrypt(EncryptArgs),
    /// Decrypt one blob and print its value.
    Decrypt(DecryptArgs),
    /// Show a blob's subtype and fields; needs no keys.
    Inspect(InspectArgs),
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write 96 random bytes to a new file (mode 0600): a local master key.
    GenerateMaster {
        /// The file to create; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Create a data key wrapped with the local master key; prints its id.
    Create {
        #[command(flatten)]
        keys: KeyArgs,
        /// A keyAltName for the new key (repeatable).
        #[arg(long = "alt-name")]
        alt_names: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// The key vault: a JSON file of key documents.
    #[arg(long)]
    vault: PathBuf,
    /// The local master key file (96 bytes).
    #[arg(long = "master-key")]
    master_key: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    /// Queryable Encryption, indexed (equality queries).
    Indexed,
    /// Queryable Encryption, not queryable.
    Unindexed,
    /// FLE1 AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic.
    Deterministic,
    /// FLE1 AEAD_AES_256_CBC_HMAC_SHA_512-Random.
    Random,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueryTypeArg {
    /// A find payload for an equality query instead of an insert payload.
    Equality,
}

#[derive(Debug, Args)]
struct EncryptArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// The data key by id (UUID).
    #[arg(
        long = "key-id",
        conflicts_with = "alt_name",
        required_unless_present = "alt_name"
    )]
    key_id: Option<String>,
    /// The data key by keyAltName.
    #[arg(long = "alt-name")]
    alt_name: Option<String>,
    /// The encryption algorithm.
    #[arg(long, value_enum)]
    algorithm: AlgorithmArg,
    /// Maximum contention factor (indexed only; default 8).
    #[arg(long)]
    contention: Option<i64>,
    /// Produce a query payload of this type instead of an insert payload.
    #[arg(long = "query-type", value_enum)]
    query_type: Option<QueryTypeArg>,
    /// The value, as extended JSON (e.g. '"123-45-6789"' or '{"$numberLong": "5"}').
    #[arg(long, allow_hyphen_values = true)]
    value: String,
}

#[derive(Debug, Args)]
struct DecryptArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// The blob: extended JSON `{"$binary": ...}` or base64 of its bytes.
    blob: String,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The blob: extended JSON `{"$binary": ...}` or base64 of its bytes.
    blob: String,
}

/// Runs the command with the process's arguments; prints errors as one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: the chain of causes joined, never a backtrace.
            let line = e
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command and returns what it prints.
pub async fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Key(KeyCommand::GenerateMaster { out }) => {
            cipherdoc::client_encryption::generate_local_master_key_file(&out)
                .with_context(|| format!("cannot create master key file {}", out.display()))?;
            Ok(format!(
                "wrote a 96-byte local master key to {} (mode 0600)",
                out.display()
            ))
        }
        Command::Key(KeyCommand::Create { keys, alt_names }) => {
            let ce = client(&keys)?;
            let id = ce.create_data_key("local", alt_names).await?;
            Ok(extjson(&Bson::Binary(id.to_binary())))
        }
        Command::Encrypt(args) => {
            let ce = client(&args.keys)?;
            let value = parse_value(&args.value)?;
            let key = match (&args.key_id, &args.alt_name) {
                (Some(id), _) => KeyRef::Id(parse_key_id(id)?),
                (None, Some(name)) => KeyRef::AltName(name.clone()),
                (None, None) => bail!("give --key-id or --alt-name"),
            };
            let algorithm = match args.algorithm {
                AlgorithmArg::Indexed => Algorithm::Indexed,
                AlgorithmArg::Unindexed => Algorithm::Unindexed,
                AlgorithmArg::Deterministic => Algorithm::Deterministic,
                AlgorithmArg::Random => Algorithm::Random,
            };
            let options = EncryptOptions {
                key,
                algorithm,
                contention_factor: args.contention,
                query_type: args
                    .query_type
                    .map(|QueryTypeArg::Equality| QueryType::Equality),
            };
            let blob = ce.encrypt(value, &options).await?;
            Ok(extjson(&Bson::Binary(blob)))
        }
        Command::Decrypt(args) => {
            let ce = client(&args.keys)?;
            let blob = parse_blob(&args.blob)?;
            let value = ce.decrypt(&blob).await?;
            Ok(extjson(&value))
        }
        Command::Inspect(args) => {
            let blob = parse_blob(&args.blob)?;
            let doc = cipherdoc::client_encryption::inspect(&blob.bytes)?;
            Ok(extjson(&Bson::Document(doc)))
        }
    }
}

fn client(keys: &KeyArgs) -> Result<ClientEncryption> {
    let vault: Arc<dyn KeyVault> = Arc::new(JsonFileKeyVault::new(&keys.vault));
    Ok(ClientEncryption::with_local_master_key_file(
        vault,
        &keys.master_key,
    )?)
}

/// A key id given as a UUID or as extended JSON `{"$binary": …, "subType": "04"}`
/// (what `key create` prints).
fn parse_key_id(text: &str) -> Result<cipherdoc_crypto::KeyId> {
    let text = text.trim();
    if text.starts_with('{') {
        match parse_value(text)? {
            Bson::Binary(b) => cipherdoc_crypto::KeyId::try_from(&b)
                .map_err(|_| anyhow!("--key-id must be a UUID (binary subtype 04)")),
            _ => bail!("--key-id must be a UUID or {{\"$binary\": …}}"),
        }
    } else {
        text.parse()
            .map_err(|_| anyhow!("--key-id `{text}` is not a UUID"))
    }
}

/// Canonical extended JSON of one value.
fn extjson(value: &Bson) -> String {
    value.clone().into_canonical_extjson().to_string()
}

/// Parses one value given as extended JSON (canonical or relaxed).
fn parse_value(text: &str) -> Result<Bson> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("--value is not JSON ({e}); quote strings, e.g. '\"abc\"'"))?;
    Bson::try_from(json).map_err(|e| anyhow!("--value is not extended JSON: {e}"))
}

/// Parses a blob given as `{"$binary": ...}` extended JSON or as base64.
fn parse_blob(text: &str) -> Result<Binary> {
    let trimmed = text.trim();
    if trimmed.starts_with('{') {
        match parse_value(trimmed)? {
            Bson::Binary(b) => Ok(b),
            other => bail!(
                "expected a {{\"$binary\": ...}} blob, got {:?}",
                other.element_type()
            ),
        }
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map_err(|e| anyhow!("the blob is neither extended JSON nor base64: {e}"))?;
        Ok(Binary {
            subtype: BinarySubtype::Encrypted,
            bytes,
        })
    }
}
