//! How outbound PostgreSQL failures reach a component: server errors with
//! their SQLSTATE and fields, lost connections as `connection-failed`, or,
//! under Spin's compatibility profile, text worded as Spin 3.6 words it.

use super::bindings::{DbError, Error as PgError, QueryError};
use super::client::DbErrorReporting;

pub(super) fn db_error(e: &tokio_postgres::Error) -> Option<PgError> {
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
pub(super) fn query_error(
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

/// Spin 3.6's wording of a driver error: the error converted to
/// `anyhow::Error` and rendered with `{:?}`, as its outbound PostgreSQL does,
/// e.g.
///
/// ```text
/// db error: ERROR: duplicate key value violates unique constraint "users_username_key"
/// DETAIL: Key (username)=(jake) already exists.
///
/// Caused by:
///     ERROR: duplicate key value violates unique constraint "users_username_key"
///     DETAIL: Key (username)=(jake) already exists.
/// ```
///
/// Spin 3.6 links tokio-postgres 0.7.12, whose message ends with its cause
/// (`db error: ERROR: ...`); later versions say only `db error`, so the
/// cause is appended here when the message lacks it.
pub fn spin_error_text(error: &tokio_postgres::Error) -> String {
    let causes: Vec<String> =
        std::iter::successors(std::error::Error::source(error), |cause| cause.source())
            .map(ToString::to_string)
            .collect();
    let mut text = error.to_string();
    if let Some(first) = causes.first()
        && !text.contains(first.as_str())
    {
        text = format!("{text}: {first}");
    }
    if !causes.is_empty() {
        text.push_str("\n\nCaused by:");
    }
    let numbered = causes.len() > 1;
    for (index, cause) in causes.iter().enumerate() {
        // anyhow indents each cause by four spaces, numbering them when
        // there are several.
        let mut lines = cause.lines();
        let first = lines.next().unwrap_or_default();
        if numbered {
            text.push_str(&format!("\n{index:>5}: {first}"));
        } else {
            text.push_str(&format!("\n    {first}"));
        }
        for line in lines {
            let indent = if numbered { "       " } else { "    " };
            text.push_str(&format!("\n{indent}{line}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ending_errors_are_lost_connections() {
        assert!(ends_connection("57P01", "FATAL"));
        assert!(ends_connection("08006", "ERROR"));
        assert!(ends_connection("XX000", "PANIC"));
        assert!(!ends_connection("23505", "ERROR"));
        assert!(!ends_connection("40001", "ERROR"));
    }
}
