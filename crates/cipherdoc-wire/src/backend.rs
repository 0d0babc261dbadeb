//! Where MongoDB databases live: one SQLite file per database under a
//! directory, or one schema per database in a PostgreSQL database. Each
//! database is opened once, on first use, as a cipherdoc engine wrapped in
//! the QE server role ([`QeServer`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cipherdoc_engine::postgres::{PgEngine, PgOptions};
use cipherdoc_engine::qe_server::QeServer;
use cipherdoc_engine::sqlite::SqliteEngine;
use cipherdoc_engine::{Engine, EngineError};
use tokio::sync::Mutex;

use crate::error::{CommandError, ErrorCode};

/// The storage behind `cipherdoc serve`.
#[derive(Clone)]
#[non_exhaustive]
pub enum Backend {
    /// `--data-dir DIR`: database `d` is the SQLite file `DIR/d.db`.
    Sqlite {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// `--postgres URL`: database `d` is the schema `d` of the PostgreSQL
    /// database at the URL.
    Postgres {
        /// The connection URL (may hold a password: never logged).
        url: String,
        /// Connections per database's pool.
        max_connections: usize,
    },
}

impl std::fmt::Debug for Backend {
    // The URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { dir } => f.debug_struct("Sqlite").field("dir", dir).finish(),
            Self::Postgres {
                max_connections, ..
            } => f
                .debug_struct("Postgres")
                .field("max_connections", max_connections)
                .finish_non_exhaustive(),
        }
    }
}

/// Whether opening a database may create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Writes create the database, as in MongoDB.
    CreateIfMissing,
    /// Reads of a database that does not exist see nothing, and create
    /// nothing.
    ExistingOnly,
}

/// One opened database.
#[derive(Debug)]
pub struct Database {
    /// The MongoDB database name.
    pub name: String,
    /// The engine with the QE server role.
    pub qe: QeServer,
}

/// The databases opened so far.
#[derive(Debug)]
pub struct Databases {
    backend: Backend,
    open: Mutex<HashMap<String, Arc<Database>>>,
}

/// mongod's rules for database names (`DatabaseName::validateDBName`), which
/// also keep them safe as file and schema names.
pub fn validate_db_name(name: &str) -> Result<(), CommandError> {
    let bad = |why: &str| {
        Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!("Invalid database name: '{name}': {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() >= 64 {
        return bad("database names must be shorter than 64 characters");
    }
    if name.chars().any(|c| {
        matches!(
            c,
            '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
        )
    }) {
        return bad("database names cannot contain / \\ . space \" $ * < > : | ? or NUL");
    }
    Ok(())
}

impl Databases {
    /// No database opened yet.
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Database `name`, opened if needed; `None` when it does not exist and
    /// `open` is `Open::ExistingOnly`.
    pub async fn get(&self, name: &str, open: Open) -> Result<Option<Arc<Database>>, CommandError> {
        validate_db_name(name)?;
        let mut map = self.open.lock().await;
        if let Some(db) = map.get(name) {
            return Ok(Some(Arc::clone(db)));
        }
        let engine: Arc<dyn Engine> = match &self.backend {
            Backend::Sqlite { dir } => {
                let path = dir.join(format!("{name}.db"));
                if open == Open::ExistingOnly && !path.exists() {
                    return Ok(None);
                }
                std::fs::create_dir_all(dir).map_err(EngineError::from)?;
                let engine = tokio::task::spawn_blocking(move || SqliteEngine::open(path))
                    .await
                    .map_err(|e| EngineError::Worker(e.to_string()))??;
                Arc::new(engine)
            }
            Backend::Postgres {
                url,
                max_connections,
            } => Arc::new(
                PgEngine::connect_with(
                    url,
                    name,
                    PgOptions::default().max_connections(*max_connections),
                )
                .await?,
            ),
        };
        let db = Arc::new(Database {
            name: name.to_owned(),
            qe: QeServer::new(engine),
        });
        map.insert(name.to_owned(), Arc::clone(&db));
        Ok(Some(db))
    }

    /// The names of the databases that exist: the SQLite files of the
    /// directory, or (PostgreSQL, whose schemas this server cannot tell
    /// apart from others') those opened since the server started.
    pub async fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.open.lock().await.keys().cloned().collect();
        if let Backend::Sqlite { dir } = &self.backend
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "db")
                    && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                    && validate_db_name(stem).is_ok()
                {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// Close every database (at shutdown): the last handles go, and with
    /// them the engines' connections.
    pub async fn close_all(&self) {
        self.open.lock().await.clear();
    }
}
