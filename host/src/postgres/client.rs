//! The client side of outbound PostgreSQL: parsed connection strings, one
//! pool per connection string, and the connection a guest holds.
//!
//! One pool per connection string is shared by every instance of every
//! component, so a request borrows a warm connection instead of opening one.
//! Each pooled connection keeps its own prepared-statement cache: after the
//! first use, a query costs one round trip (Bind/Execute) instead of two
//! (Parse, then Bind/Execute). Broken connections are detected when they are
//! returned or reused and replaced, so a database restart heals without
//! intervention.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;

use super::tls::{self, SslMode};
use crate::metrics::Metrics;

/// How failed statements reach the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbErrorReporting {
    /// `query-error::db-error` with SQLSTATE, message, detail and extras;
    /// a lost connection is `connection-failed`.
    #[default]
    Structured,
    /// `query-error::text` only, as Spin 3.6 reports it.
    SpinText,
}

/// Settings shared by every pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: usize,
    pub statement_cache: bool,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    /// How failed statements are reported to components.
    pub errors: DbErrorReporting,
}

/// Most distinct connection strings the host keeps pools for; components
/// normally use one.
const MAX_POOLS: usize = 32;

/// A parsed connection string, with TLS settled and the secret-free label
/// used in logs and metrics.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
    /// `host:port/database`: never includes the user's password.
    pub label: String,
}

impl Target {
    pub fn parse(address: &str) -> Result<Self> {
        let (rest, ssl_mode, root_cert) = split_tls_options(address)?;
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL connection string: {e}"))?;
        config.ssl_mode(ssl_mode.driver_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("wasmhost");
        }
        let endpoints = endpoints(&config)?;
        let label = format!(
            "{}/{}",
            endpoints
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect::<Vec<_>>()
                .join(","),
            config.get_dbname().unwrap_or("")
        );
        Ok(Target {
            config,
            ssl_mode,
            root_cert,
            label,
        })
    }

    /// Every `(host, port)` the driver may connect to.
    pub fn endpoints(&self) -> Result<Vec<(String, u16)>> {
        endpoints(&self.config)
    }
}

fn endpoints(config: &tokio_postgres::Config) -> Result<Vec<(String, u16)>> {
    let ports = config.get_ports();
    let mut out = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match host {
            Host::Tcp(name) => out.push((name.clone(), port)),
            Host::Unix(path) => bail!(
                "Unix-socket connections ({}) are not allowed; use a TCP address",
                path.display()
            ),
        }
    }
    if out.is_empty() {
        bail!("the connection string names no host");
    }
    Ok(out)
}

/// Removes `sslmode` and `sslrootcert` (which the driver does not fully
/// understand) from a URL or key=value connection string.
fn split_tls_options(address: &str) -> Result<(String, SslMode, Option<PathBuf>)> {
    let mut ssl_mode = SslMode::Prefer;
    let mut root_cert = None;
    if address.starts_with("postgres://") || address.starts_with("postgresql://") {
        let mut url = url::Url::parse(address).context("invalid PostgreSQL URL")?;
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "sslmode" => ssl_mode = SslMode::parse(&value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((url.into(), ssl_mode, root_cert))
    } else {
        let mut kept = Vec::new();
        for pair in address.split_whitespace() {
            match pair.split_once('=') {
                Some(("sslmode", value)) => ssl_mode = SslMode::parse(value)?,
                Some(("sslrootcert", value)) => root_cert = Some(PathBuf::from(value)),
                _ => kept.push(pair),
            }
        }
        Ok((kept.join(" "), ssl_mode, root_cert))
    }
}

/// An error and its causes on one line: pool and driver errors keep the
/// useful part (refused, TLS certificate, authentication) in their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Where a pool's connections go, as trace spans name it.
#[derive(Debug)]
pub struct Peer {
    /// The first host of the connection string.
    pub address: String,
    pub port: u16,
    pub database: String,
    /// `host:port/database`, without credentials.
    pub label: String,
}

/// Every pool in the process.
pub struct Pools {
    settings: PoolSettings,
    pools: Mutex<HashMap<String, (Arc<Peer>, Pool)>>,
    metrics: Arc<Metrics>,
}

impl Pools {
    pub fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> Self {
        Pools {
            settings,
            pools: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The pool for a connection string, created on first use.
    pub fn pool(&self, address: &str) -> Result<(Pool, Arc<Peer>)> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((peer, pool)) = pools.get(address) {
            return Ok((pool.clone(), peer.clone()));
        }
        if pools.len() >= MAX_POOLS {
            bail!("too many distinct PostgreSQL connection strings (limit {MAX_POOLS})");
        }
        let target = Target::parse(address)?;
        let (host, port) = target.endpoints()?.swap_remove(0);
        let peer = Arc::new(Peer {
            address: host,
            port,
            database: target.config.get_dbname().unwrap_or("").to_string(),
            label: target.label.clone(),
        });
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls::client_config(target.ssl_mode, target.root_cert.as_ref())? {
            None => Manager::from_config(target.config, tokio_postgres::NoTls, manager_config),
            Some(tls) => Manager::from_config(
                target.config,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                manager_config,
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(self.settings.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.settings.acquire_timeout))
            .create_timeout(Some(self.settings.connect_timeout))
            .recycle_timeout(Some(self.settings.connect_timeout))
            .build()
            .context("building the PostgreSQL pool")?;
        pools.insert(address.to_string(), (peer.clone(), pool.clone()));
        Ok((pool, peer))
    }

    /// Checks out a connection and runs `SELECT 1`.
    pub async fn ping(&self, address: &str) -> Result<()> {
        let (pool, _) = self.pool(address)?;
        let client = pool
            .get()
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Publishes each pool's connections in use and idle.
    pub fn record_pool_metrics(&self) {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        for (peer, pool) in pools.values() {
            let label = &peer.label;
            let status = pool.status();
            let idle = status.available;
            let in_use = status.size.saturating_sub(idle);
            self.metrics.set_pool_connections(label, in_use, idle);
        }
    }
}

/// A guest's open connection: a pooled client, returned to the pool when
/// the guest drops it (or when the request's store is dropped).
pub struct Connection {
    pub(super) client: Option<deadpool_postgres::Object>,
    pub(super) peer: Arc<Peer>,
    /// Set when the guest began a transaction itself, so the connection is
    /// rolled back before another request can borrow it.
    pub(super) in_transaction: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && self.in_transaction
            && !client.is_closed()
        {
            tokio::spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    // A connection in an unknown state must not be reused.
                    let _ = deadpool_postgres::Object::take(client);
                }
            });
        }
    }
}

pub(super) fn starts_transaction(statement: &str) -> bool {
    let head: String = statement
        .trim_start()
        .chars()
        .take(17)
        .collect::<String>()
        .to_ascii_uppercase();
    head.starts_with("BEGIN") || head.starts_with("START TRANSACTION")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn tls_options_are_taken_out_of_urls() {
        let (rest, mode, root) = split_tls_options(
            "postgres://u:p@db:6543/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root, Some(PathBuf::from("/ca.pem")));
        assert_eq!(rest, "postgres://u:p@db:6543/app?application_name=x");
        let (rest, mode, _) = split_tls_options("host=db sslmode=disable user=u").unwrap();
        assert_eq!((rest.as_str(), mode), ("host=db user=u", SslMode::Disable));
        assert!(split_tls_options("postgres://db/x?sslmode=bogus").is_err());
    }

    #[test]
    fn target_label_has_no_password() {
        let t =
            Target::parse("postgres://user:s3cret@db.example:6543/app?sslmode=disable").unwrap();
        assert_eq!(t.label, "db.example:6543/app");
        assert_eq!(
            t.endpoints().unwrap(),
            vec![("db.example".to_string(), 6543)]
        );
        let t = Target::parse("postgres://user@db/app").unwrap();
        assert_eq!(t.endpoints().unwrap(), vec![("db".to_string(), 5432)]);
    }

    #[test]
    fn detects_transaction_starts() {
        assert!(starts_transaction("  begin;"));
        assert!(starts_transaction(
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE"
        ));
        assert!(!starts_transaction("SELECT 'begin'"));
    }
}
