//! SQLite databases for components, `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.0.0`, as a [`Capability`].
//!
//! A component opens the databases its manifest lists in
//! `sqlite_databases`; any other label is `access-denied`, as in Spin. Each
//! label is a local file the runtime configuration names
//! ([`crate::runtime_config`]); `default` is `sqlite_db.db` under the state
//! directory when it does not. Every `open` gives the guest a SQLite
//! connection of its own, as Spin does, so a transaction is the guest's
//! alone; connections outside a transaction are kept for the next `open`
//! (with their prepared statements) instead of reopening the file. Files
//! are in WAL mode with a busy timeout, so readers do not wait for a writer
//! and replicas on one machine can share a file.
//!
//! - [`host`]: the interfaces' methods, on each instance's [`SqliteInstance`].
//! - [`connection`]: a guest's connection, given back when it is dropped.

pub mod bindings;
pub mod connection;
pub mod host;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability, check_labels};
use crate::component::ComponentContext;
use crate::runtime_config::SqliteDatabaseConfig;

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
    fn new(label: String, path: PathBuf) -> Self {
        Database {
            label,
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection for one guest `open`: an idle one, or a new one.
    async fn acquire(&self) -> Result<rusqlite::Connection> {
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

/// The process-wide part: every configured database.
pub struct Sqlite {
    databases: BTreeMap<String, Arc<Database>>,
}

impl Sqlite {
    /// `databases` as the runtime configuration gives them; `default` is a
    /// file under `state_dir` when not given.
    pub fn new(databases: BTreeMap<String, SqliteDatabaseConfig>, state_dir: &Path) -> Self {
        let mut paths: BTreeMap<String, PathBuf> = databases
            .into_iter()
            .map(|(label, SqliteDatabaseConfig::Spin { path })| {
                let path = path.unwrap_or_else(|| state_dir.join(format!("{label}.db")));
                (label, path)
            })
            .collect();
        paths
            .entry("default".into())
            .or_insert_with(|| state_dir.join("sqlite_db.db"));
        Sqlite {
            databases: paths
                .into_iter()
                .map(|(label, path)| (label.clone(), Arc::new(Database::new(label, path))))
                .collect(),
        }
    }

    /// The database behind `label`; `None` when no database has that label.
    fn database(&self, label: &str) -> Option<&Arc<Database>> {
        self.databases.get(label)
    }
}

/// One instance's part: its open connections and the labels it may open.
pub struct SqliteInstance {
    sqlite: Arc<Sqlite>,
    component: Arc<ComponentContext>,
    table: ResourceTable,
}

impl Capability for Arc<Sqlite> {
    type Instance = SqliteInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, SqliteInstance>,
    ) -> Result<()> {
        bindings::v2::add_to_linker::<T, HasSelf<SqliteInstance>>(linker, get)?;
        bindings::v3::add_to_linker::<T, HasSelf<SqliteInstance>>(linker, get)?;
        Ok(())
    }

    /// Every label the component lists must name a database, as in Spin.
    fn configure(&self, component: &ComponentContext) -> Result<()> {
        check_labels("sqlite_databases", &component.sqlite_databases, |label| {
            self.databases.contains_key(label)
        })
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> SqliteInstance {
        SqliteInstance {
            sqlite: self.clone(),
            component: component.clone(),
            table: ResourceTable::new(),
        }
    }
}
