//! SQLite databases for components, `fermyon:spin/sqlite@2.0.0` and
//! `spin:sqlite/sqlite@3.0.0`, as a [`Capability`].
//!
//! A component opens the databases its manifest lists in
//! `sqlite_databases`; any other label is `access-denied`, as in Spin. Each
//! label is a local file the runtime configuration names
//! ([`crate::runtime_config`]); `default` is `sqlite_db.db` under the state
//! directory when it does not. One connection per database is shared by the
//! process, in WAL mode with a busy timeout, so replicas on one machine can
//! share a file.
//!
//! - [`host`]: the interfaces' methods, on each instance's [`SqliteInstance`].

pub mod bindings;
pub mod connection;
pub mod host;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::OnceCell;
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

/// A database's one connection, shared by every instance.
type Shared = Arc<Mutex<rusqlite::Connection>>;

/// The process-wide part: every configured database, opened on first use.
pub struct Sqlite {
    databases: BTreeMap<String, (PathBuf, OnceCell<Shared>)>,
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
                .map(|(label, path)| (label, (path, OnceCell::new())))
                .collect(),
        }
    }

    /// The connection behind `label`, opened on first use; `None` when no
    /// database has that label.
    async fn open(&self, label: &str) -> Option<Result<Shared>> {
        let (path, cell) = self.databases.get(label)?;
        Some(
            cell.get_or_try_init(|| async {
                let path = path.clone();
                let connection = tokio::task::spawn_blocking(move || open_file(&path)).await??;
                tracing::info!(database = label, "SQLite database opened");
                anyhow::Ok(Arc::new(Mutex::new(connection)))
            })
            .await
            .cloned(),
        )
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
