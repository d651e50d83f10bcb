//! `wasmhost migrate`: applies `NNNN_name.sql` files in order, each in its
//! own transaction, recording them in `schema_migrations`. An advisory lock
//! serialises replicas that start together; a file changed after it was
//! applied is an error rather than silently ignored.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

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

pub async fn run(database_url: &str, dir: &Path) -> Result<usize> {
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
    let result = apply(&mut client, &migrations).await;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(client: &mut tokio_postgres::Client, migrations: &[Migration]) -> Result<usize> {
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
        let tx = client.transaction().await?;
        tx.batch_execute(&sql)
            .await
            .with_context(|| format!("applying {}", migration.path.display()))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &checksum],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, name = %migration.name, "applied migration");
        count += 1;
    }
    Ok(count)
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
