//! `spin:postgres/postgres@4.0.0` for one instance: opening pooled
//! connections its component may reach, running statements on them, and
//! the client spans of traced requests.

// The error type is `spin:postgres`'s, generated from its WIT.
#![allow(clippy::result_large_err)]

use tokio_postgres::types::ToSql;
use tracing::Instrument;
use wasmtime::component::Resource;

use super::bindings::{self as pg4, Column, Error as PgError, ParameterValue, QueryError, RowSet};
use super::client::{Connection, Peer, Target, error_chain, starts_transaction};
use super::errors::query_error;
use super::{Postgres, PostgresInstance, types};
use crate::outbound::AllowedHosts;

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
    postgres: &Postgres,
    statement: &str,
) -> Result<tokio_postgres::Statement, PgError> {
    let settings = postgres.pools.settings();
    let prepared = if settings.statement_cache {
        let before = client.statement_cache.size();
        let prepared = client.prepare_cached(statement).await;
        postgres
            .metrics
            .statement_cache(client.statement_cache.size() == before);
        prepared
    } else {
        client.prepare(statement).await
    };
    prepared.map_err(|e| query_error(e, client, settings.errors))
}

impl PostgresInstance {
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
    postgres: &Postgres,
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
    let prepared = match prepare(client, postgres, statement).await {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    postgres.metrics.statement_executed();
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

impl PostgresInstance {
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
        let postgres = self.postgres.clone();
        let Ready {
            client,
            prepared,
            params,
        } = match ready(&mut self.table, &postgres, handle, &statement, &values).await? {
            Ok(ready) => ready,
            Err(e) => return Ok(Err(e)),
        };
        let rows = match client.query(&prepared, &as_refs(&params)).await {
            Ok(rows) => rows,
            Err(e) => {
                return Ok(Err(query_error(
                    e,
                    client,
                    postgres.pools.settings().errors,
                )));
            }
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
        let postgres = self.postgres.clone();
        let Ready {
            client,
            prepared,
            params,
        } = match ready(&mut self.table, &postgres, handle, &statement, &values).await? {
            Ok(ready) => ready,
            Err(e) => return Ok(Err(e)),
        };
        Ok(client
            .execute(&prepared, &as_refs(&params))
            .await
            .map_err(|e| query_error(e, client, postgres.pools.settings().errors)))
    }
}

impl pg4::Host for PostgresInstance {}

impl pg4::HostConnection for PostgresInstance {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        if let Err(e) = self.check_address(&address) {
            return Ok(Err(e));
        }
        let (pool, peer) = match self.postgres.pools.pool(&address) {
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
