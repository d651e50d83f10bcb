//! One configured SQLite database: its file, opened for shared use, and
//! the connections no guest holds.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

/// Opens (creating when missing) a SQLite file for shared use: WAL, so
/// readers do not wait for a writer, and a busy timeout, so writers from
/// several processes wait for each other instead of failing.
pub fn open_file(path: &Path) -> Result<rusqlite::Connection> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let connection = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .with_context(|| format!("cannot use WAL in {}", path.display()))?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(connection)
}

/// How many connections outside a transaction a database keeps for the
/// next `open`; more are closed when given back.
const MAX_IDLE: usize = 16;

/// One configured database: its file and the connections not in use.
pub struct Database {
    label: String,
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Database {
    pub(super) fn new(label: String, path: PathBuf) -> Self {
        Database {
            label,
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection for one guest `open`: an idle one, or a new one.
    pub(super) async fn acquire(&self) -> Result<rusqlite::Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(connection) = idle {
            return Ok(connection);
        }
        let path = self.path.clone();
        let connection = tokio::task::spawn_blocking(move || open_file(&path)).await??;
        tracing::debug!(database = %self.label, "SQLite connection opened");
        Ok(connection)
    }

    /// Takes back a guest's connection: kept when it is outside a
    /// transaction and there is room, closed otherwise (closing rolls back
    /// what the guest left uncommitted).
    pub(crate) fn release(&self, connection: rusqlite::Connection) {
        if connection.is_autocommit() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(connection);
                return;
            }
        } else {
            tracing::debug!(database = %self.label, "SQLite connection dropped inside a transaction: rolled back");
        }
        drop(connection);
    }
}
