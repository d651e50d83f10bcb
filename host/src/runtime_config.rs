//! The runtime configuration file (`--runtime-config-file`), in the TOML
//! format `spin up --runtime-config-file` reads, so one file serves both:
//!
//! ```toml
//! [key_value_store.default]        # the store behind `Store::open("default")`
//! type = "redis"                   # or "spin" (a SQLite file), or "postgres"
//! url = "redis://cache:6379"
//!
//! [key_value_store.sessions]
//! type = "spin"
//! path = "data/sessions.db"        # relative to this file's directory
//!
//! [sqlite_database.default]
//! type = "spin"
//! path = "data/app.db"
//! ```
//!
//! `type = "postgres"` (with `url` and an optional `table`) is this host's
//! own: a store in a PostgreSQL table, for deployments that already have a
//! database shared by every replica. Without a file, or for labels it does
//! not name, `default` is a SQLite file under the state directory, as in
//! Spin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The parsed file, paths resolved against its directory.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    pub sqlite_databases: BTreeMap<String, SqliteDatabaseConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyValueStoreConfig {
    /// A SQLite file (`path`, or the state directory's default file).
    Spin { path: Option<PathBuf> },
    /// A Redis server, e.g. `redis://cache:6379/0`.
    Redis { url: String },
    /// A table in a PostgreSQL database (`spin_key_value` unless named).
    Postgres { url: String, table: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SqliteDatabaseConfig {
    /// A SQLite file (`path`, or the state directory's default file).
    Spin { path: Option<PathBuf> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    key_value_store: BTreeMap<String, KeyValueStoreConfig>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, SqliteDatabaseConfig>,
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read runtime config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).with_context(|| format!("runtime config {}", path.display()))
    }

    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let raw: Raw = toml::from_str(text)?;
        let mut config = RuntimeConfig::default();
        for (label, mut store) in raw.key_value_store {
            match &mut store {
                KeyValueStoreConfig::Spin { path } => resolve(path, base),
                KeyValueStoreConfig::Postgres {
                    table: Some(table), ..
                } if !valid_table_name(table) => {
                    bail!(
                        "key_value_store.{label}: table `{table}` must be an identifier, optionally schema-qualified (letters, digits, `_`)"
                    )
                }
                _ => {}
            }
            config.key_value_stores.insert(label, store);
        }
        for (label, mut database) in raw.sqlite_database {
            let SqliteDatabaseConfig::Spin { path } = &mut database;
            resolve(path, base);
            config.sqlite_databases.insert(label, database);
        }
        Ok(config)
    }
}

fn resolve(path: &mut Option<PathBuf>, base: &Path) {
    if let Some(p) = path
        && p.is_relative()
    {
        *p = base.join(&*p);
    }
}

/// `name` or `schema.name`, each part an unquoted SQL identifier.
pub fn valid_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_format_is_read_with_paths_beside_the_file() {
        let config = RuntimeConfig::parse(
            r#"
[key_value_store.default]
type = "redis"
url = "redis://cache:6379"

[key_value_store.local]
type = "spin"
path = "data/kv.db"

[key_value_store.shared]
type = "postgres"
url = "postgres://db/app"
table = "app.kv"

[sqlite_database.default]
type = "spin"
path = "/var/lib/app.db"
"#,
            Path::new("/etc/app"),
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            KeyValueStoreConfig::Redis {
                url: "redis://cache:6379".into()
            }
        );
        assert_eq!(
            config.key_value_stores["local"],
            KeyValueStoreConfig::Spin {
                path: Some("/etc/app/data/kv.db".into())
            }
        );
        assert_eq!(
            config.sqlite_databases["default"],
            SqliteDatabaseConfig::Spin {
                path: Some("/var/lib/app.db".into())
            }
        );
    }

    #[test]
    fn unknown_types_keys_and_bad_tables_are_refused() {
        for text in [
            "[key_value_store.x]\ntype = \"azure_cosmos\"\n",
            "[key_value_store.x]\ntype = \"redis\"\n",
            "[key_value_store.x]\ntype = \"spin\"\npaht = \"x\"\n",
            "[key_value_store.x]\ntype = \"postgres\"\nurl = \"postgres://db/x\"\ntable = \"kv; DROP\"\n",
            "[llm_compute]\ntype = \"spin\"\n",
        ] {
            assert!(
                RuntimeConfig::parse(text, Path::new(".")).is_err(),
                "{text}"
            );
        }
        assert!(valid_table_name("spin_key_value") && valid_table_name("app.kv"));
        assert!(!valid_table_name("a.b.c") && !valid_table_name("1kv") && !valid_table_name(""));
    }
}
