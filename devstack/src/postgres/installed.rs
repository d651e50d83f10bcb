//! The PostgreSQL installed on this machine: where its binaries are, and
//! which system user runs them.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::config::environment;
use crate::process::SystemUser;

/// `postgres` when running as root (initdb and postgres refuse root), else
/// nobody: the binaries run as the current user.
pub fn server_user() -> Result<Option<SystemUser>> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")?
        .context("running as root, but there is no `postgres` system user to run PostgreSQL as (apt-get install postgresql creates it)")?;
    Ok(Some(SystemUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: `$PG_BIN_DIR`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub fn server_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = &environment().pg_bin_dir {
        return Ok(dir.clone());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server found in /usr/lib/postgresql (apt-get install postgresql, or set DATABASE_URL)")?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql, or set DATABASE_URL)",
    )
}

/// The `psql` client: from the server's bin dir when present, else PATH.
pub fn psql_program() -> PathBuf {
    server_bin_dir()
        .map(|dir| dir.join("psql"))
        .ok()
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("psql"))
}
