//! `fermyon:spin/sqlite@2.0.0` and `spin:sqlite/sqlite@3.0.0` for one
//! instance. Both run statements the same way; 3.0.0 adds the row id of the
//! last insert and the count of changed rows, kept per guest connection.

use rusqlite::types::{Value as Sql, ValueRef};
use wasmtime::component::Resource;

use super::SqliteInstance;
use super::bindings::{v2, v3};
use super::connection::Connection;

/// A statement's result, before it becomes either interface's record.
struct Outcome {
    columns: Vec<String>,
    rows: Vec<Vec<Sql>>,
}

/// Why opening failed, before it becomes either interface's error.
enum OpenError {
    AccessDenied,
    NoSuchDatabase,
    Io(String),
}

impl SqliteInstance {
    async fn open_database(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<Connection>, OpenError>> {
        if !self.component.sqlite_databases.contains(label) {
            return Ok(Err(OpenError::AccessDenied));
        }
        let Some(database) = self.sqlite.database(label).cloned() else {
            return Ok(Err(OpenError::NoSuchDatabase));
        };
        let connection = match database.acquire().await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(component = %self.component.id, database = label, error = %format!("{e:#}"), "SQLite database unavailable");
                return Ok(Err(OpenError::Io(format!("{e:#}"))));
            }
        };
        Ok(Ok(self.table.push(Connection {
            database,
            connection: Some(connection),
            last_insert_rowid: 0,
            changes: 0,
        })?))
    }

    /// Runs one statement with its parameters off the async threads.
    async fn run(
        &mut self,
        handle: &Resource<Connection>,
        statement: String,
        parameters: Vec<Sql>,
    ) -> wasmtime::Result<Result<Outcome, String>> {
        let Some(connection) = self.table.get_mut(handle)?.connection.take() else {
            return Ok(Err("the connection was lost by an earlier statement".into()));
        };
        let (connection, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = execute(&connection, &statement, parameters);
            (connection, outcome)
        })
        .await?;
        let held = self.table.get_mut(handle)?;
        if outcome.is_ok() {
            held.last_insert_rowid = connection.last_insert_rowid();
            held.changes = connection.changes();
        }
        held.connection = Some(connection);
        Ok(outcome.map_err(|e| e.to_string()))
    }
}

fn execute(
    connection: &rusqlite::Connection,
    statement: &str,
    parameters: Vec<Sql>,
) -> rusqlite::Result<Outcome> {
    let mut prepared = connection.prepare_cached(statement)?;
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let width = columns.len();
    let rows = prepared
        .query_map(rusqlite::params_from_iter(parameters), |row| {
            (0..width)
                .map(|i| row.get_ref(i).map(ValueRef::into))
                .collect::<rusqlite::Result<Vec<Sql>>>()
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Outcome { columns, rows })
}

macro_rules! values {
    ($wit:ident) => {
        impl From<$wit::Value> for Sql {
            fn from(value: $wit::Value) -> Self {
                match value {
                    $wit::Value::Integer(i) => Sql::Integer(i),
                    $wit::Value::Real(r) => Sql::Real(r),
                    $wit::Value::Text(t) => Sql::Text(t),
                    $wit::Value::Blob(b) => Sql::Blob(b),
                    $wit::Value::Null => Sql::Null,
                }
            }
        }

        impl From<Outcome> for $wit::QueryResult {
            fn from(outcome: Outcome) -> Self {
                let value = |cell: Sql| match cell {
                    Sql::Integer(i) => $wit::Value::Integer(i),
                    Sql::Real(r) => $wit::Value::Real(r),
                    Sql::Text(t) => $wit::Value::Text(t),
                    Sql::Blob(b) => $wit::Value::Blob(b),
                    Sql::Null => $wit::Value::Null,
                };
                $wit::QueryResult {
                    columns: outcome.columns,
                    rows: outcome
                        .rows
                        .into_iter()
                        .map(|row| $wit::RowResult {
                            values: row.into_iter().map(value).collect(),
                        })
                        .collect(),
                }
            }
        }

        impl From<OpenError> for $wit::Error {
            fn from(error: OpenError) -> Self {
                match error {
                    OpenError::AccessDenied => $wit::Error::AccessDenied,
                    OpenError::NoSuchDatabase => $wit::Error::NoSuchDatabase,
                    OpenError::Io(text) => $wit::Error::Io(text),
                }
            }
        }
    };
}

values!(v2);
values!(v3);

impl v2::Host for SqliteInstance {}

impl v2::HostConnection for SqliteInstance {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        Ok(self.open_database(&database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        handle: Resource<Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .run(&handle, statement, parameters)
            .await?
            .map(Into::into)
            .map_err(v2::Error::Io))
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl v3::Host for SqliteInstance {}

impl v3::HostConnection for SqliteInstance {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.open_database(&database).await?.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        handle: Resource<Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let parameters = parameters.into_iter().map(Into::into).collect();
        Ok(self
            .run(&handle, statement, parameters)
            .await?
            .map(Into::into)
            .map_err(v3::Error::Io))
    }

    async fn last_insert_rowid(&mut self, handle: Resource<Connection>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&handle)?.last_insert_rowid)
    }

    async fn changes(&mut self, handle: Resource<Connection>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&handle)?.changes)
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}
