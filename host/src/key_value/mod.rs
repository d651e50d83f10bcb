//! The key-value store for components, `fermyon:spin/key-value@2.0.0`, as
//! a [`Capability`].
//!
//! A component opens the stores its manifest lists in `key_value_stores`;
//! any other label is `access-denied`, as in Spin. Each label is backed by
//! what the runtime configuration names ([`crate::runtime_config`]): a
//! SQLite file, Redis, or a PostgreSQL table; `default` is a SQLite file
//! under the state directory when the configuration does not name it. A
//! store shared by several replicas must be Redis or PostgreSQL (or a
//! SQLite file they share on one machine).
//!
//! - [`store`]: the backends;
//! - [`host`]: the interface's methods, on each instance's [`KeyValueInstance`].

pub mod bindings;
pub mod host;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::OnceCell;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability, Dependency, check_labels};
use crate::component::ComponentContext;
use crate::postgres::client::Pools;
use crate::runtime_config::KeyValueStoreConfig;
use store::{Backend, PostgresStore, RedisStore, SqliteStore, redis_label};

/// The process-wide part: every configured store, opened on first use.
pub struct KeyValue {
    stores: BTreeMap<String, ConfiguredStore>,
    pools: Arc<Pools>,
}

struct ConfiguredStore {
    config: KeyValueStoreConfig,
    opened: OnceCell<Arc<Backend>>,
}

impl KeyValue {
    /// `stores` as the runtime configuration gives them; `default` is added
    /// as a SQLite file under `state_dir` when not given.
    pub fn new(
        mut stores: BTreeMap<String, KeyValueStoreConfig>,
        state_dir: PathBuf,
        pools: Arc<Pools>,
    ) -> Self {
        stores
            .entry("default".into())
            .or_insert(KeyValueStoreConfig::Spin { path: None });
        let stores = stores
            .into_iter()
            .map(|(label, config)| {
                let config = match config {
                    KeyValueStoreConfig::Spin { path: None } => KeyValueStoreConfig::Spin {
                        path: Some(store::default_sqlite_path(&state_dir)),
                    },
                    other => other,
                };
                let opened = OnceCell::new();
                (label, ConfiguredStore { config, opened })
            })
            .collect();
        KeyValue { stores, pools }
    }

    /// The store behind `label`, opened on first use; `None` when no store
    /// has that label.
    pub async fn open(&self, label: &str) -> Option<Result<Arc<Backend>>> {
        let configured = self.stores.get(label)?;
        Some(
            configured
                .opened
                .get_or_try_init(|| async {
                    let backend = match &configured.config {
                        KeyValueStoreConfig::Spin { path } => {
                            let path = path.clone().unwrap_or_default();
                            let label = label.to_string();
                            tokio::task::spawn_blocking(move || SqliteStore::open(&label, &path))
                                .await??
                                .into()
                        }
                        KeyValueStoreConfig::Redis { url } => RedisStore::open(url).await?.into(),
                        KeyValueStoreConfig::Postgres { url, table } => {
                            let table = table.as_deref().unwrap_or("spin_key_value");
                            PostgresStore::open(label, url, table, self.pools.clone())
                                .await?
                                .into()
                        }
                    };
                    tracing::info!(store = label, backend = %describe(&configured.config), "key-value store opened");
                    anyhow::Ok(Arc::new(backend))
                })
                .await
                .cloned(),
        )
    }
}

impl From<SqliteStore> for Backend {
    fn from(store: SqliteStore) -> Self {
        Backend::Sqlite(store)
    }
}

impl From<RedisStore> for Backend {
    fn from(store: RedisStore) -> Self {
        Backend::Redis(store)
    }
}

impl From<PostgresStore> for Backend {
    fn from(store: PostgresStore) -> Self {
        Backend::Postgres(store)
    }
}

/// A store's backend for logs, without credentials.
fn describe(config: &KeyValueStoreConfig) -> String {
    match config {
        KeyValueStoreConfig::Spin { path } => {
            format!("sqlite {}", path.clone().unwrap_or_default().display())
        }
        KeyValueStoreConfig::Redis { url } => format!("redis {}", redis_label(url)),
        KeyValueStoreConfig::Postgres { url, table } => format!(
            "postgres {} table {}",
            crate::postgres::client::Target::parse(url)
                .map(|t| t.label)
                .unwrap_or_else(|_| "(invalid URL)".into()),
            table.as_deref().unwrap_or("spin_key_value")
        ),
    }
}

/// One instance's part: the stores it has open and the labels it may open.
pub struct KeyValueInstance {
    key_value: Arc<KeyValue>,
    component: Arc<ComponentContext>,
    table: ResourceTable,
    open_stores: usize,
}

impl Capability for Arc<KeyValue> {
    type Instance = KeyValueInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, KeyValueInstance>,
    ) -> Result<()> {
        bindings::add_to_linker::<T, HasSelf<KeyValueInstance>>(linker, get)?;
        Ok(())
    }

    /// Every label the component lists must name a store, as in Spin.
    fn configure(&self, component: &ComponentContext) -> Result<()> {
        check_labels("key_value_stores", &component.key_value_stores, |label| {
            self.stores.contains_key(label)
        })
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> KeyValueInstance {
        KeyValueInstance {
            key_value: self.clone(),
            component: component.clone(),
            table: ResourceTable::new(),
            open_stores: 0,
        }
    }

    /// The Redis and PostgreSQL stores the component may open: shared
    /// services a replica cannot serve without.
    fn dependencies(&self, component: &ComponentContext) -> Vec<Dependency> {
        component
            .key_value_stores
            .iter()
            .filter_map(|label| {
                let configured = self.stores.get(label)?;
                if matches!(configured.config, KeyValueStoreConfig::Spin { .. }) {
                    return None;
                }
                let key_value = self.clone();
                let label = label.clone();
                Some(Dependency {
                    kind: "key-value store",
                    target: describe(&configured.config),
                    source: format!("{}: key_value_stores `{label}`", component.id),
                    check: Arc::new(move || {
                        let key_value = key_value.clone();
                        let label = label.clone();
                        Box::pin(async move {
                            match key_value.open(&label).await {
                                Some(Ok(store)) => store.ping().await,
                                Some(Err(e)) => Err(e),
                                None => Err(anyhow::anyhow!("no store `{label}`")),
                            }
                        })
                    }),
                })
            })
            .collect()
    }
}
