//! SQL through the `psql` client: the stack's init script, the tests'
//! queries, and the statements that set up and drop scratch databases.

use std::path::Path;

use anyhow::{Result, bail};
use tokio::process::Command;

use super::installed::psql_program;
use crate::process;

/// Runs SQL with psql against `url`, stopping at the first error; returns the
/// unaligned, tuples-only output.
pub async fn psql(url: &str, sql: &str) -> Result<String> {
    let mut command = Command::new(psql_program());
    command
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5");
    process::run("psql", command).await
}

/// Blocking variant of [`psql`] for Drop implementations.
/// Each statement gets its own `-c`, so each runs in its own transaction
/// (DROP DATABASE refuses to run inside one).
pub fn psql_blocking(url: &str, statements: &[String]) -> Result<()> {
    let mut command = std::process::Command::new(psql_program());
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    let output = command
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(std::process::Stdio::null())
        .output()?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Runs a psql script file with `-v name=value` variables.
pub async fn psql_file(url: &str, file: &Path, variables: &[(&str, &str)]) -> Result<()> {
    let mut command = Command::new(psql_program());
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]);
    for (name, value) in variables {
        command.arg("-v").arg(format!("{name}={value}"));
    }
    command.arg("-f").arg(file).env("PGCONNECT_TIMEOUT", "5");
    process::run(&format!("psql -f {}", file.display()), command).await?;
    Ok(())
}

/// `postgres://user:password@host:port/database?sslmode=disable`.
pub fn database_url(user: &str, password: &str, port: u16, database: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{port}/{database}?sslmode=disable")
}
