//! The stores behind the key-value interface: a SQLite file (Spin's
//! default), Redis, or a PostgreSQL table. Each is opened once, on first
//! use, and shared by every instance of every component.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::postgres::client::{Pools, error_chain};

/// A guest's handle on an open store.
pub struct Store {
    pub(super) backend: Arc<Backend>,
}

pub enum Backend {
    Sqlite(SqliteStore),
    Redis(RedisStore),
    Postgres(PostgresStore),
}

/// A store's failure, as text for `error::other`.
pub type StoreResult<T> = std::result::Result<T, String>;

impl Backend {
    pub async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        match self {
            Backend::Sqlite(s) => s.get(key).await,
            Backend::Redis(s) => s.get(key).await,
            Backend::Postgres(s) => s.get(key).await,
        }
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        match self {
            Backend::Sqlite(s) => s.set(key, value).await,
            Backend::Redis(s) => s.set(key, value).await,
            Backend::Postgres(s) => s.set(key, value).await,
        }
    }

    pub async fn delete(&self, key: &str) -> StoreResult<()> {
        match self {
            Backend::Sqlite(s) => s.delete(key).await,
            Backend::Redis(s) => s.delete(key).await,
            Backend::Postgres(s) => s.delete(key).await,
        }
    }

    pub async fn exists(&self, key: &str) -> StoreResult<bool> {
        match self {
            Backend::Sqlite(s) => s.exists(key).await,
            Backend::Redis(s) => s.exists(key).await,
            Backend::Postgres(s) => s.exists(key).await,
        }
    }

    pub async fn get_keys(&self) -> StoreResult<Vec<String>> {
        match self {
            Backend::Sqlite(s) => s.get_keys().await,
            Backend::Redis(s) => s.get_keys().await,
            Backend::Postgres(s) => s.get_keys().await,
        }
    }

    /// Answers a trivial request: what readiness checks.
    pub async fn ping(&self) -> Result<()> {
        self.exists("")
            .await
            .map(|_| ())
            .map_err(anyhow::Error::msg)
    }
}

/// A store in a SQLite file, in the table Spin's own SQLite store uses
/// (`spin_key_value`, one row per store label and key), so a file written
/// by `spin up` reads the same here.
pub struct SqliteStore {
    label: String,
    connection: Arc<Mutex<rusqlite::Connection>>,
}

impl SqliteStore {
    pub fn open(label: &str, path: &Path) -> Result<Self> {
        let connection = crate::sqlite::open_file(path)?;
        connection
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS spin_key_value (
                    store TEXT NOT NULL,
                    key   TEXT NOT NULL,
                    value BLOB NOT NULL,
                    PRIMARY KEY (store, key)
                )",
            )
            .with_context(|| format!("creating the key-value table in {}", path.display()))?;
        Ok(SqliteStore {
            label: label.to_string(),
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `f` on the connection off the async threads.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let connection = self.connection.clone();
        let label = self.label.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            f(&connection, &label)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_string();
        self.with(move |c, label| {
            use rusqlite::OptionalExtension;
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((label, &key), |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn set(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.with(move |c, label| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute((label, &key, &value))
            .map(|_| ())
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.with(move |c, label| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((label, &key))
                .map(|_| ())
        })
        .await
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.with(move |c, label| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
            )?
            .query_row((label, &key), |row| row.get(0))
        })
        .await
    }

    async fn get_keys(&self) -> StoreResult<Vec<String>> {
        self.with(move |c, label| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map([label], |row| row.get(0))?
                .collect()
        })
        .await
    }
}

/// A store in a Redis database: each key a Redis string, as Spin's Redis
/// store keeps them.
pub struct RedisStore {
    connection: ConnectionManager,
}

impl RedisStore {
    pub async fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let connection = ConnectionManager::new(client)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", redis_label(url)))?;
        Ok(RedisStore { connection })
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut c = self.connection.clone();
        c.get(key).await.map_err(|e| e.to_string())
    }

    async fn set(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        let mut c = self.connection.clone();
        c.set(key, value).await.map_err(|e| e.to_string())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let mut c = self.connection.clone();
        c.del(key).await.map_err(|e| e.to_string())
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        let mut c = self.connection.clone();
        c.exists(key).await.map_err(|e| e.to_string())
    }

    async fn get_keys(&self) -> StoreResult<Vec<String>> {
        let mut c = self.connection.clone();
        let mut keys = Vec::new();
        let mut iter: redis::AsyncIter<String> = c
            .scan()
            .await
            .map_err(|e: redis::RedisError| e.to_string())?;
        while let Some(key) = iter.next_item().await {
            keys.push(key.map_err(|e| e.to_string())?);
        }
        Ok(keys)
    }
}

/// `host:port/db` of a Redis URL, without credentials.
pub fn redis_label(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or(""),
            u.port().unwrap_or(6379),
            u.path()
        ),
        Err(_) => "(invalid URL)".into(),
    }
}

/// A store in a PostgreSQL table (`store`, `key`, `value`), through the
/// same pools outbound PostgreSQL uses.
pub struct PostgresStore {
    label: String,
    url: String,
    table: String,
    pools: Arc<Pools>,
    statements: Statements,
}

struct Statements {
    get: String,
    set: String,
    delete: String,
    exists: String,
    keys: String,
}

impl PostgresStore {
    /// Opens the store, creating its table when missing (which needs the
    /// right to create it; otherwise create it beforehand, as the error
    /// says).
    pub async fn open(label: &str, url: &str, table: &str, pools: Arc<Pools>) -> Result<Self> {
        let (pool, peer) = pools.pool(url)?;
        let client = pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))
            .with_context(|| format!("cannot connect to {}", peer.label))?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                store text NOT NULL,
                key   text NOT NULL,
                value bytea NOT NULL,
                PRIMARY KEY (store, key)
            )"
        );
        client.batch_execute(&create).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot create the key-value table {table} in {}: {}; create it with: {}",
                peer.label,
                error_chain(&e),
                create.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })?;
        Ok(PostgresStore {
            label: label.to_string(),
            url: url.to_string(),
            table: table.to_string(),
            pools,
            statements: Statements {
                get: format!("SELECT value FROM {table} WHERE store = $1 AND key = $2"),
                set: format!(
                    "INSERT INTO {table} (store, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value"
                ),
                delete: format!("DELETE FROM {table} WHERE store = $1 AND key = $2"),
                exists: format!(
                    "SELECT EXISTS (SELECT 1 FROM {table} WHERE store = $1 AND key = $2)"
                ),
                keys: format!("SELECT key FROM {table} WHERE store = $1"),
            },
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        let (pool, _) = self.pools.pool(&self.url).map_err(|e| format!("{e:#}"))?;
        pool.get().await.map_err(|e| error_chain(&e))
    }

    async fn rows(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> StoreResult<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        let prepared = client
            .prepare_cached(statement)
            .await
            .map_err(|e| error_chain(&e))?;
        client
            .query(&prepared, params)
            .await
            .map_err(|e| format!("{} ({}): {}", self.table, self.label, error_chain(&e)))
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let rows = self
            .rows(&self.statements.get, &[&self.label, &key])
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn set(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.rows(&self.statements.set, &[&self.label, &key, &value])
            .await
            .map(|_| ())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.rows(&self.statements.delete, &[&self.label, &key])
            .await
            .map(|_| ())
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        let rows = self
            .rows(&self.statements.exists, &[&self.label, &key])
            .await?;
        Ok(rows.first().is_some_and(|row| row.get(0)))
    }

    async fn get_keys(&self) -> StoreResult<Vec<String>> {
        let rows = self.rows(&self.statements.keys, &[&self.label]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// Where the default SQLite file of a store lives.
pub fn default_sqlite_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sqlite_key_value.db")
}
