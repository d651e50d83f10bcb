//! Outbound PostgreSQL for components: `spin:postgres/postgres@4.0.0` over
//! `tokio-postgres`.
//!
//! One connection pool per connection string, shared by every instance of
//! every component, so a request borrows a warm connection instead of
//! opening one. Each pooled connection keeps its own prepared-statement
//! cache: after the first use, a query costs one round trip (Bind/Execute)
//! instead of two (Parse, then Bind/Execute). Broken connections are detected
//! when they are returned or reused and replaced, so a database restart heals
//! without intervention.

// The error type is `spin:postgres`'s, generated from its WIT.
#![allow(clippy::result_large_err)]

pub mod tls;
pub mod types;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tracing::Instrument;
use wasmtime::component::Resource;

use crate::bindings::pg4::{
    self, Column, DbError, Error as PgError, ParameterValue, QueryError, RowSet,
};
use crate::compat::{DbErrorReporting, spin_error_text};
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use tls::SslMode;

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
    client: Option<deadpool_postgres::Object>,
    peer: Arc<Peer>,
    /// Set when the guest began a transaction itself, so the connection is
    /// rolled back before another request can borrow it.
    in_transaction: bool,
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

fn starts_transaction(statement: &str) -> bool {
    let head: String = statement
        .trim_start()
        .chars()
        .take(17)
        .collect::<String>()
        .to_ascii_uppercase();
    head.starts_with("BEGIN") || head.starts_with("START TRANSACTION")
}

fn db_error(e: &tokio_postgres::Error) -> Option<PgError> {
    let dbe = e.as_db_error()?;
    let mut extras = Vec::new();
    let mut push = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            extras.push((key.to_string(), v.to_string()));
        }
    };
    push("hint", dbe.hint());
    push("schema", dbe.schema());
    push("table", dbe.table());
    push("column", dbe.column());
    push("constraint", dbe.constraint());
    push("datatype", dbe.datatype());
    push("where", dbe.where_());
    Some(PgError::QueryFailed(QueryError::DbError(DbError {
        as_text: e.to_string(),
        severity: dbe.severity().to_string(),
        code: dbe.code().code().to_string(),
        message: dbe.message().to_string(),
        detail: dbe.detail().map(str::to_string),
        extras,
    })))
}

/// Server errors that end the session rather than the statement: the
/// server shutting down or restarting (57P01-57P03), a connection exception
/// (class 08), or anything FATAL. The statement may or may not have run, and
/// the connection is gone: to the component this is a lost connection.
fn ends_connection(code: &str, severity: &str) -> bool {
    code.starts_with("08")
        || matches!(code, "57P01" | "57P02" | "57P03")
        || matches!(severity, "FATAL" | "PANIC")
}

/// Maps a driver error: server errors keep their SQLSTATE; a lost
/// connection is `connection-failed`, so a component can tell them apart.
/// Under Spin's reporting every error is text, worded as Spin words it.
fn query_error(
    e: tokio_postgres::Error,
    client: &deadpool_postgres::Object,
    reporting: DbErrorReporting,
) -> PgError {
    if reporting == DbErrorReporting::SpinText {
        return PgError::QueryFailed(QueryError::Text(spin_error_text(&e)));
    }
    if let Some(dbe) = e.as_db_error()
        && ends_connection(dbe.code().code(), dbe.severity())
    {
        return PgError::ConnectionFailed(format!(
            "connection to the database was lost ({}): {}",
            dbe.code().code(),
            dbe.message()
        ));
    }
    if let Some(err) = db_error(&e) {
        return err;
    }
    if client.is_closed() || e.is_closed() {
        return PgError::ConnectionFailed(format!("connection to the database was lost: {e}"));
    }
    PgError::QueryFailed(QueryError::Text(e.to_string()))
}

/// The pooled client behind a guest's connection handle.
fn client<'a>(
    table: &'a wasmtime::component::ResourceTable,
    handle: &Resource<Connection>,
) -> wasmtime::Result<&'a deadpool_postgres::Object> {
    table
        .get(handle)?
        .client
        .as_ref()
        .ok_or_else(|| wasmtime::format_err!("connection already closed"))
}

/// Prepares a statement, through the connection's cache when enabled.
async fn prepare(
    client: &deadpool_postgres::Object,
    shared: &crate::runtime::Shared,
    statement: &str,
) -> Result<tokio_postgres::Statement, PgError> {
    let prepared = if shared.pools.settings().statement_cache {
        let before = client.statement_cache.size();
        let prepared = client.prepare_cached(statement).await;
        shared
            .metrics
            .statement_cache(client.statement_cache.size() == before);
        prepared
    } else {
        client.prepare(statement).await
    };
    prepared.map_err(|e| query_error(e, client, shared.pools.settings().errors))
}

impl crate::runtime::HostState {
    fn check_address(&self, address: &str) -> Result<Target, PgError> {
        let target =
            Target::parse(address).map_err(|e| PgError::ConnectionFailed(format!("{e:#}")))?;
        let endpoints = target
            .endpoints()
            .map_err(|e| PgError::ConnectionFailed(format!("{e:#}")))?;
        let allowed: &AllowedHosts = &self.component.allowed_hosts;
        for (host, port) in endpoints {
            if !allowed.allows("postgres", &host, port) {
                tracing::warn!(
                    component = %self.component.id,
                    address = %format!("{host}:{port}"),
                    "outbound PostgreSQL connection denied: not in allowed_outbound_hosts"
                );
                return Err(PgError::ConnectionFailed(format!(
                    "address postgres://{host}:{port} is not permitted: add it to allowed_outbound_hosts of component `{}`",
                    self.component.id
                )));
            }
        }
        Ok(target)
    }
}

fn params(values: &[ParameterValue]) -> Result<Vec<Box<dyn ToSql + Send + Sync>>, PgError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            types::parameter(v)
                .map_err(|e| PgError::BadParameter(format!("parameter ${}: {e:#}", i + 1)))
        })
        .collect()
}

fn as_refs(values: &[Box<dyn ToSql + Send + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// A statement ready to run on a guest's connection.
struct Ready<'a> {
    client: &'a deadpool_postgres::Object,
    prepared: tokio_postgres::Statement,
    params: Vec<Box<dyn ToSql + Send + Sync>>,
}

/// What `query` and `execute` share: convert the parameters, note a
/// transaction the guest opens, and prepare the statement.
async fn ready<'a>(
    table: &'a mut wasmtime::component::ResourceTable,
    shared: &crate::runtime::Shared,
    handle: &Resource<Connection>,
    statement: &str,
    values: &[ParameterValue],
) -> wasmtime::Result<Result<Ready<'a>, PgError>> {
    let params = match params(values) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    if starts_transaction(statement) {
        table.get_mut(handle)?.in_transaction = true;
    }
    // The table itself is not `Sync`; only the client is held across awaits.
    let client = {
        let table: &'a wasmtime::component::ResourceTable = table;
        client(table, handle)?
    };
    let prepared = match prepare(client, shared, statement).await {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    shared.metrics.statement_executed();
    Ok(Ok(Ready {
        client,
        prepared,
        params,
    }))
}

/// A statement's client span: the statement itself, the database and the
/// server it went to (OpenTelemetry's database conventions, as Spin's
/// outbound PostgreSQL reports them). Disabled, at no cost, when traces are
/// off.
fn statement_span(peer: &Peer, statement: &str) -> tracing::Span {
    let operation = statement
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    tracing::info_span!(
        target: crate::telemetry::TARGET,
        "statement",
        otel.name = format!("{operation} {}", peer.database).trim_end(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = "postgresql",
        db.system.name = "postgresql",
        db.namespace = peer.database.as_str(),
        db.operation.name = operation.as_str(),
        db.query.text = statement,
        db.response.returned_rows = tracing::field::Empty,
        db.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        server.address = peer.address.as_str(),
        server.port = peer.port,
    )
}

/// Marks a statement's span as failed: the SQLSTATE when the server gave
/// one, else the kind of failure.
fn statement_failed(span: &tracing::Span, error: &PgError) {
    span.record("otel.status_code", "error");
    match error {
        PgError::QueryFailed(QueryError::DbError(db)) => {
            span.record("db.response.status_code", db.code.as_str());
            span.record("error.type", db.code.as_str());
        }
        PgError::ConnectionFailed(_) => {
            span.record("error.type", "connection_failed");
        }
        PgError::BadParameter(_) => {
            span.record("error.type", "bad_parameter");
        }
        _ => {
            span.record("error.type", "query_failed");
        }
    }
}

impl crate::runtime::HostState {
    fn statement_span(&self, handle: &Resource<Connection>, statement: &str) -> tracing::Span {
        if !self.traced {
            return tracing::Span::none();
        }
        match self.table.get(handle) {
            Ok(connection) => statement_span(&connection.peer, statement),
            Err(_) => tracing::Span::none(),
        }
    }

    async fn run_query(
        &mut self,
        handle: &Resource<Connection>,
        statement: String,
        values: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, PgError>> {
        let shared = self.shared.clone();
        let Ready {
            client,
            prepared,
            params,
        } = match ready(&mut self.table, &shared, handle, &statement, &values).await? {
            Ok(ready) => ready,
            Err(e) => return Ok(Err(e)),
        };
        let rows = match client.query(&prepared, &as_refs(&params)).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(query_error(e, client, shared.pools.settings().errors))),
        };
        let columns = prepared
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                data_type: types::data_type(c.type_()),
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                match types::cell(row, i) {
                    Ok(v) => values.push(v),
                    Err(e) => return Ok(Err(PgError::ValueConversionFailed(format!("{e:#}")))),
                }
            }
            out.push(values);
        }
        Ok(Ok(RowSet { columns, rows: out }))
    }

    async fn run_execute(
        &mut self,
        handle: &Resource<Connection>,
        statement: String,
        values: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        let shared = self.shared.clone();
        let Ready {
            client,
            prepared,
            params,
        } = match ready(&mut self.table, &shared, handle, &statement, &values).await? {
            Ok(ready) => ready,
            Err(e) => return Ok(Err(e)),
        };
        Ok(client
            .execute(&prepared, &as_refs(&params))
            .await
            .map_err(|e| query_error(e, client, shared.pools.settings().errors)))
    }
}

impl pg4::Host for crate::runtime::HostState {}

impl pg4::HostConnection for crate::runtime::HostState {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        if let Err(e) = self.check_address(&address) {
            return Ok(Err(e));
        }
        let (pool, peer) = match self.shared.pools.pool(&address) {
            Ok(pool) => pool,
            Err(e) => return Ok(Err(PgError::ConnectionFailed(format!("{e:#}")))),
        };
        let wait = if !self.traced {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                target: crate::telemetry::TARGET,
                "acquire_connection",
                otel.name = "acquire connection",
                otel.status_code = tracing::field::Empty,
                db.system = "postgresql",
                db.system.name = "postgresql",
                db.namespace = peer.database.as_str(),
                db.client.connection.pool.name = peer.label.as_str(),
                server.address = peer.address.as_str(),
                server.port = peer.port,
            )
        };
        let client = match pool.get().instrument(wait.clone()).await {
            Ok(client) => client,
            Err(e) => {
                wait.record("otel.status_code", "error");
                return Ok(Err(PgError::ConnectionFailed(format!(
                    "cannot get a database connection: {}",
                    error_chain(&e)
                ))));
            }
        };
        let handle = self.table.push(Connection {
            client: Some(client),
            peer,
            in_transaction: false,
        })?;
        Ok(Ok(handle))
    }

    async fn query(
        &mut self,
        handle: Resource<Connection>,
        statement: String,
        values: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, PgError>> {
        let span = self.statement_span(&handle, &statement);
        let result = self
            .run_query(&handle, statement, values)
            .instrument(span.clone())
            .await?;
        match &result {
            Ok(rows) => {
                span.record("db.response.returned_rows", rows.rows.len());
            }
            Err(e) => statement_failed(&span, e),
        }
        Ok(result)
    }

    async fn execute(
        &mut self,
        handle: Resource<Connection>,
        statement: String,
        values: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        let span = self.statement_span(&handle, &statement);
        let result = self
            .run_execute(&handle, statement, values)
            .instrument(span.clone())
            .await?;
        if let Err(e) = &result {
            statement_failed(&span, e);
        }
        Ok(result)
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
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
    fn session_ending_errors_are_lost_connections() {
        assert!(ends_connection("57P01", "FATAL"));
        assert!(ends_connection("08006", "ERROR"));
        assert!(ends_connection("XX000", "PANIC"));
        assert!(!ends_connection("23505", "ERROR"));
        assert!(!ends_connection("40001", "ERROR"));
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
