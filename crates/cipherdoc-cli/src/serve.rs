//! `cipherdoc serve`: run the MongoDB wire-protocol endpoint
//! ([`cipherdoc_wire`]) over a directory of SQLite files or a PostgreSQL
//! database, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use cipherdoc_wire::{Backend, Server, ServerConfig, Topology};
use clap::{ArgGroup, Args};

/// Options of `cipherdoc serve`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("storage").required(true).args(["data_dir", "postgres"])))]
pub struct ServeArgs {
    /// Keep each MongoDB database as the SQLite file DIR/<database>.db.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep each MongoDB database as a schema of this PostgreSQL database
    /// (postgres://user@host:port/dbname).
    #[arg(
        long,
        value_name = "URL",
        env = "CIPHERDOC_SERVE_POSTGRES",
        hide_env_values = true
    )]
    postgres: Option<String>,
    /// Where to listen; port 0 picks a free port (printed at start).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:27017")]
    listen: String,
    /// Listen on a non-loopback address although the server has no
    /// authentication: anyone who can reach it can read and write every
    /// database (encrypted fields stay encrypted).
    #[arg(long = "allow-remote")]
    allow_remote: bool,
    /// Answer hello as a standalone server instead of a one-member replica
    /// set (drivers then refuse transactions and Queryable Encryption).
    #[arg(long)]
    standalone: bool,
    /// The replica set name hello reports.
    #[arg(
        long = "replica-set",
        default_value = "cipherdoc",
        conflicts_with = "standalone"
    )]
    replica_set: String,
    /// The maxWireVersion hello reports (25 is MongoDB 8.0; lower values
    /// make the server look older, for clients' refusal tests).
    #[arg(long = "max-wire-version", default_value_t = cipherdoc_wire::MAX_WIRE_VERSION)]
    max_wire_version: i32,
    /// Connections per database to PostgreSQL.
    #[arg(long = "pg-connections", default_value_t = 8)]
    pg_connections: usize,
    /// Log level on standard error: error, warn, info, debug (one line per
    /// command, never a value) or trace.
    #[arg(long = "log-level", default_value = "info")]
    log_level: tracing::Level,
}

/// Runs `cipherdoc serve` on its own multi-threaded runtime.
pub fn main(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = crate::error_line(&e);
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

async fn resolve(listen: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("--listen {listen:?} is not a HOST:PORT address"))?
        .collect();
    if addrs.is_empty() {
        bail!("--listen {listen:?} resolves to no address");
    }
    Ok(addrs)
}

async fn serve(args: ServeArgs) -> Result<()> {
    let addrs = resolve(&args.listen).await?;
    let remote: Vec<&SocketAddr> = addrs.iter().filter(|a| !a.ip().is_loopback()).collect();
    if !remote.is_empty() {
        if !args.allow_remote {
            bail!(
                "refusing to listen on {}: cipherdoc serve has no authentication, so anyone who reaches it can read and write every database; listen on a loopback address (127.0.0.1, ::1) or pass --allow-remote",
                remote[0]
            );
        }
        tracing::warn!(
            "listening on a non-loopback address without authentication (--allow-remote): anyone who reaches it can read and write every database"
        );
    }
    let backend = match (args.data_dir, args.postgres) {
        (Some(dir), None) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
            Backend::Sqlite { dir }
        }
        (None, Some(url)) => Backend::Postgres {
            url,
            max_connections: args.pg_connections.max(1),
        },
        _ => bail!("give exactly one of --data-dir and --postgres"),
    };
    let topology = if args.standalone {
        Topology::Standalone
    } else {
        Topology::ReplicaSet {
            set_name: args.replica_set,
        }
    };
    let config = ServerConfig::new(backend)
        .topology(topology)
        .max_wire_version(args.max_wire_version);
    let shutdown = shutdown_signal()?;
    let listener = bind(&addrs).await?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // The line scripts and tests wait for: the server accepts from now on.
    println!("listening on {local}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    tracing::info!(%local, "cipherdoc serve is accepting connections (no authentication)");
    Server::new(config).serve(listener, shutdown).await;
    Ok(())
}

async fn bind(addrs: &[SocketAddr]) -> Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in addrs {
        match tokio::net::TcpListener::bind(a).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some((a, e)),
        }
    }
    match last {
        Some((a, e)) => Err(e).with_context(|| format!("cannot listen on {a}")),
        None => bail!("no address to listen on"),
    }
}

/// Registers for Ctrl-C (SIGINT) and SIGTERM now — before the listening
/// line, so that a signal sent as soon as it is printed stops the server
/// cleanly instead of killing it — and returns what completes on either.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received; stopping");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("signal received; stopping");
        })
    }
}
