//! Scratch databases: a uniquely named database with its own roles on an
//! existing server, for tests that need a fresh schema.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use url::Url;

use super::psql::{psql, psql_blocking};
use crate::secrets::random_hex;

/// A uniquely named database with its own owner and application roles,
/// granted exactly like `migrations/init/init.sql` grants `conduit_owner` and
/// `conduit_app` (roles are server-wide, so tests cannot share those names).
/// Dropped (with its roles) on Drop.
pub struct ScratchDatabase {
    pub name: String,
    pub owner_role: String,
    pub app_role: String,
    /// The superuser URL with the scratch database as its database.
    pub superuser_url: String,
    /// For migrations (the role that owns the schema).
    pub owner_url: String,
    /// For the API (SELECT/INSERT/UPDATE/DELETE only).
    pub app_url: String,
    admin_url: String,
}

impl ScratchDatabase {
    /// Creates the database and roles through `admin_url` (a superuser URL).
    pub async fn create(admin_url: &str) -> Result<Self> {
        let name = unique_name()?;
        let owner_role = format!("{name}_owner");
        let app_role = format!("{name}_app");
        let owner_password = random_hex(16)?;
        let app_password = random_hex(16)?;
        let admin = Url::parse(admin_url).context("the superuser URL is not a URL")?;
        let superuser_url = url_as(&admin, &name, admin.username(), admin.password())?;
        let owner_url = url_as(&admin, &name, &owner_role, Some(&owner_password))?;
        let app_url = url_as(&admin, &name, &app_role, Some(&app_password))?;

        psql(
            admin_url,
            &format!(
                "CREATE ROLE {owner_role} LOGIN PASSWORD '{owner_password}';
                 CREATE ROLE {app_role} LOGIN PASSWORD '{app_password}';"
            ),
        )
        .await?;
        // From here on, a failure drops the roles (and the database) again.
        let scratch = Self {
            name,
            owner_role,
            app_role,
            superuser_url,
            owner_url,
            app_url,
            admin_url: admin_url.to_owned(),
        };
        scratch.create_database().await?;
        Ok(scratch)
    }

    /// The database, owned by the owner role, with init.sql's grants.
    async fn create_database(&self) -> Result<()> {
        let Self {
            name,
            owner_role,
            app_role,
            ..
        } = self;
        // CREATE DATABASE cannot run in a transaction block with other
        // statements, hence its own call.
        psql(
            &self.admin_url,
            &format!("CREATE DATABASE {name} OWNER {owner_role};"),
        )
        .await?;
        psql(
            &self.admin_url,
            &format!(
                "REVOKE ALL ON DATABASE {name} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner_role};
                 GRANT CONNECT ON DATABASE {name} TO {app_role};"
            ),
        )
        .await?;
        psql(
            &self.superuser_url,
            &format!(
                "ALTER SCHEMA public OWNER TO {owner_role};
                 REVOKE ALL ON SCHEMA public FROM PUBLIC;
                 GRANT USAGE ON SCHEMA public TO {app_role};
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA public
                     GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app_role};
                 ALTER DEFAULT PRIVILEGES FOR ROLE {owner_role} IN SCHEMA public
                     GRANT USAGE, SELECT ON SEQUENCES TO {app_role};"
            ),
        )
        .await?;
        Ok(())
    }
}

/// `conduit_test_<pid>_<counter>_<nanoseconds>`: unique on the server across
/// processes and within one.
fn unique_name() -> Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
    Ok(format!(
        "conduit_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

/// `admin` with `database` as its database and `user` (with `password`) as
/// its user.
fn url_as(admin: &Url, database: &str, user: &str, password: Option<&str>) -> Result<String> {
    let mut url = admin.clone();
    url.set_path(&format!("/{database}"));
    url.set_username(user)
        .map_err(|_| anyhow::anyhow!("cannot set user in {admin}"))?;
    url.set_password(password)
        .map_err(|_| anyhow::anyhow!("cannot set password in {admin}"))?;
    Ok(url.to_string())
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let statements = [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.owner_role),
            format!("DROP ROLE IF EXISTS {}", self.app_role),
        ];
        if let Err(error) = psql_blocking(&self.admin_url, &statements) {
            eprintln!("dropping scratch database {}: {error:#}", self.name);
        }
    }
}
