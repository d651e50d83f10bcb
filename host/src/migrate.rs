//! `wasmhost migrate`: applies `NNNN_name.sql` files in order, each in its
//! own transaction, recording them in `schema_migrations`. An advisory lock
//! serialises migrators that start together (the second waits, then finds
//! nothing left to do); a file changed after it was applied is an error
//! rather than silently ignored.
//!
//! Migrations run against a database that is serving: every lock a
//! migration asks for is bounded by `lock_timeout`, so a migration queued
//! behind a long transaction gives up after that time instead of making
//! every query on the table wait behind it, and is tried again after a
//! pause. A file whose first line is `-- wasmhost:no-transaction` runs
//! outside a transaction, for the one statement PostgreSQL refuses inside
//! one (`CREATE INDEX CONCURRENTLY`); such a file holds one statement.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

/// Key of the advisory lock held while migrating (an arbitrary constant
/// shared by every replica).
const LOCK_KEY: i64 = 0x7761_736d_686f_7374; // "wasmhost"

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub path: PathBuf,
}

pub fn discover(dir: &Path) -> Result<Vec<Migration>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read migrations directory {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") || !path.is_file() {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .context("non-UTF-8 migration file name")?;
        let (number, name) = stem.split_once('_').unwrap_or((stem, ""));
        let version: i64 = number.parse().with_context(|| {
            format!(
                "migration {} must be named NNNN_description.sql",
                path.display()
            )
        })?;
        out.push(Migration {
            version,
            name: name.to_string(),
            path,
        });
    }
    out.sort_by_key(|m| m.version);
    for pair in out.windows(2) {
        if pair[0].version == pair[1].version {
            bail!(
                "two migrations share version {}: {} and {}",
                pair[0].version,
                pair[0].path.display(),
                pair[1].path.display()
            );
        }
    }
    Ok(out)
}

/// First line of a migration that runs outside a transaction.
const NO_TRANSACTION: &str = "-- wasmhost:no-transaction";

/// How migrations wait for locks.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The longest a statement waits for a lock before the migration gives
    /// up (and is tried again).
    pub lock_timeout: Duration,
    /// How many times a migration is tried when it could not get its locks.
    pub attempts: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_secs(2),
            attempts: 10,
        }
    }
}

pub async fn run(database_url: &str, dir: &Path, settings: &Settings) -> Result<usize> {
    let migrations = discover(dir)?;
    let target = crate::postgres::client::Target::parse(database_url)?;
    let label = target.label.clone();
    let tls = crate::postgres::tls::client_config(target.ssl_mode, target.root_cert.as_ref())?;
    let mut client = match tls {
        None => {
            let (client, conn) = target
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .with_context(|| format!("cannot connect to {label}"))?;
            tokio::spawn(conn);
            client
        }
        Some(tls) => {
            let (client, conn) = target
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await
                .with_context(|| format!("cannot connect to {label}"))?;
            tokio::spawn(conn);
            client
        }
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = apply(&mut client, &migrations, settings).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
    settings: &Settings,
) -> Result<usize> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    bigint PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .context("creating schema_migrations")?;
    let applied: std::collections::HashMap<i64, String> = client
        .query("SELECT version, checksum FROM schema_migrations", &[])
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut count = 0;
    for migration in migrations {
        let sql = std::fs::read_to_string(&migration.path)
            .with_context(|| format!("cannot read {}", migration.path.display()))?;
        let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
        if let Some(previous) = applied.get(&migration.version) {
            if *previous != checksum {
                bail!(
                    "migration {} was changed after it was applied; add a new migration instead",
                    migration.path.display()
                );
            }
            continue;
        }
        let mut attempt = 1;
        loop {
            match apply_one(client, migration, &sql, &checksum, settings).await {
                Ok(()) => break,
                Err(e)
                    if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                        && attempt < settings.attempts =>
                {
                    let pause = Duration::from_millis(250 << attempt.min(5));
                    tracing::warn!(
                        version = migration.version,
                        attempt,
                        lock_timeout_ms = settings.lock_timeout.as_millis() as u64,
                        "migration could not take its locks in time; trying again"
                    );
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(e) => {
                    let hint = if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                        format!(
                            " (its locks were not free within {:?}, {attempt} times: a long transaction holds the table)",
                            settings.lock_timeout
                        )
                    } else {
                        String::new()
                    };
                    return Err(anyhow::Error::new(e)
                        .context(format!("applying {}{hint}", migration.path.display())));
                }
            }
        }
        tracing::info!(version = migration.version, name = %migration.name, attempts = attempt, "applied migration");
        count += 1;
    }
    Ok(count)
}

/// One attempt at one migration; nothing of it stays when it fails (a
/// failed statement outside a transaction leaves what PostgreSQL leaves).
async fn apply_one(
    client: &mut tokio_postgres::Client,
    migration: &Migration,
    sql: &str,
    checksum: &str,
    settings: &Settings,
) -> Result<(), tokio_postgres::Error> {
    let lock_timeout = format!(
        "SET lock_timeout = {}",
        settings.lock_timeout.as_millis().max(1)
    );
    let record = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";
    if sql.lines().next().map(str::trim) == Some(NO_TRANSACTION) {
        client.batch_execute(&lock_timeout).await?;
        let ran = client.batch_execute(sql).await;
        client.batch_execute("RESET lock_timeout").await?;
        ran?;
        client
            .execute(record, &[&migration.version, &migration.name, &checksum])
            .await?;
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&lock_timeout.replacen("SET", "SET LOCAL", 1))
        .await?;
    tx.batch_execute(sql).await?;
    tx.execute(record, &[&migration.version, &migration.name, &checksum])
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_in_numeric_order_and_rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["0010_b.sql", "0002_a.sql", "README.md"] {
            std::fs::write(dir.path().join(name), "SELECT 1;").unwrap();
        }
        std::fs::create_dir(dir.path().join("init")).unwrap();
        let found = discover(dir.path()).unwrap();
        assert_eq!(found.iter().map(|m| m.version).collect::<Vec<_>>(), [2, 10]);
        assert_eq!(found[0].name, "a");
        std::fs::write(dir.path().join("x_bad.sql"), "").unwrap();
        assert!(discover(dir.path()).is_err());
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "").unwrap();
        std::fs::write(dir.path().join("1_b.sql"), "").unwrap();
        assert!(discover(dir.path()).is_err());
    }
}
