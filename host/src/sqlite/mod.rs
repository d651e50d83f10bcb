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
//! - [`database`]: a configured file and its idle connections.

pub mod bindings;
pub mod connection;
pub mod database;
pub mod host;

pub use database::{Database, open_file};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability, check_labels};
use crate::component::ComponentContext;
use crate::runtime_config::SqliteDatabaseConfig;

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
