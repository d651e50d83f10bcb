//! Every environment variable devstack reads, read once, in one place.
//!
//! [`Environment::read`] is the only code that looks at the process
//! environment; [`environment`] reads it on first use and the rest of the
//! crate takes its values from there. Each variable overrides a default that
//! is chosen where the value is used:
//!
//! | variable | what it sets | default |
//! | --- | --- | --- |
//! | `WASMHOST_BIN` | the wasmhost binary | next to the running executable, else `<root>/target/release/wasmhost` |
//! | `DEVSTACK_MANIFEST` | the application manifest (components built into another target directory) | `<root>/spin.toml` |
//! | `WASMHOST_ROUTE_LIMITS` | when set, the replicas inherit it as it is | the stack gives them [`PASSWORD_ROUTE_LIMITS`](crate::stack::PASSWORD_ROUTE_LIMITS) |
//! | `NGINX_BIN` | the nginx binary | `/usr/sbin/nginx` (Debian), else `nginx` on PATH |
//! | `PROMETHEUS_BIN` | the prometheus binary | `/usr/bin/prometheus` (Debian), else `prometheus` on PATH |
//! | `PG_BIN_DIR` | the directory with `initdb`, `pg_ctl`, `postgres` (and `psql`) | the newest `/usr/lib/postgresql/<version>/bin` |
//! | `TEST_DATABASE_URL` | the tests' PostgreSQL server (a superuser URL) | a test container, else the local server (see `postgres::test_server`) |
//! | `DOCKER_HOST` | the Docker engine the test container runs on | `/var/run/docker.sock` |
//! | `DEVSTACK_ROOT` | `devstack up`'s project root | the current directory when it holds spin.toml, else the source tree |
//! | `JWT_SECRET`, `CONDUIT_OWNER_PASSWORD`, `CONDUIT_APP_PASSWORD`, `POSTGRES_PASSWORD` | `devstack up`'s secrets | `DATA_DIR/secrets.env` |
//!
//! `devstack up`'s flags can be given as variables too (`DATABASE_URL`,
//! `APP_DATABASE_URL`, `CONDUIT_TLS_DIR`, `DEVSTACK_DATA_DIR`,
//! `DEVSTACK_STATE_DIR`, `DEVSTACK_PG_PORT`); those are declared with their
//! flags in `main.rs`, where `--help` shows them. Whatever else is set
//! (`RUST_LOG`, `OTEL_*`, `WASMHOST_*`) devstack does not read: the replicas
//! inherit it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The values of the variables in the table above; `None` when unset (a
/// text variable that is not valid UTF-8 counts as unset).
#[derive(Clone, Default)]
pub struct Environment {
    /// `WASMHOST_BIN`.
    pub wasmhost_bin: Option<PathBuf>,
    /// `DEVSTACK_MANIFEST`.
    pub manifest: Option<PathBuf>,
    /// `WASMHOST_ROUTE_LIMITS`.
    pub route_limits: Option<OsString>,
    /// `NGINX_BIN`.
    pub nginx_bin: Option<PathBuf>,
    /// `PROMETHEUS_BIN`.
    pub prometheus_bin: Option<PathBuf>,
    /// `PG_BIN_DIR`.
    pub pg_bin_dir: Option<PathBuf>,
    /// `TEST_DATABASE_URL`.
    pub test_database_url: Option<String>,
    /// `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// `DEVSTACK_ROOT`.
    pub root: Option<PathBuf>,
    /// `JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// `CONDUIT_OWNER_PASSWORD`.
    pub owner_password: Option<String>,
    /// `CONDUIT_APP_PASSWORD`.
    pub app_password: Option<String>,
    /// `POSTGRES_PASSWORD`.
    pub superuser_password: Option<String>,
}

impl Environment {
    /// The variables as this process has them now.
    pub fn read() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// The variables as `lookup` gives them (a name to its value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let path = |name: &str| lookup(name).map(PathBuf::from);
        let text = |name: &str| lookup(name).and_then(|value| value.into_string().ok());
        Self {
            wasmhost_bin: path("WASMHOST_BIN"),
            manifest: path("DEVSTACK_MANIFEST"),
            route_limits: lookup("WASMHOST_ROUTE_LIMITS"),
            nginx_bin: path("NGINX_BIN"),
            prometheus_bin: path("PROMETHEUS_BIN"),
            pg_bin_dir: path("PG_BIN_DIR"),
            test_database_url: text("TEST_DATABASE_URL"),
            docker_host: text("DOCKER_HOST"),
            root: path("DEVSTACK_ROOT"),
            jwt_secret: text("JWT_SECRET"),
            owner_password: text("CONDUIT_OWNER_PASSWORD"),
            app_password: text("CONDUIT_APP_PASSWORD"),
            superuser_password: text("POSTGRES_PASSWORD"),
        }
    }
}

/// The environment as it was when first asked for: devstack changes its own
/// environment once (`DOCKER_HOST`, for testcontainers, after reading it),
/// and what the operator set is what counts.
pub fn environment() -> &'static Environment {
    static ENVIRONMENT: OnceLock<Environment> = OnceLock::new();
    ENVIRONMENT.get_or_init(Environment::read)
}

/// The project root as seen from this crate's sources (`devstack/..`).
pub fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_stay_unset_and_set_ones_are_taken_as_given() {
        let environment = Environment::from_lookup(|name| match name {
            "NGINX_BIN" => Some("/opt/nginx/sbin/nginx".into()),
            "TEST_DATABASE_URL" => Some("".into()),
            _ => None,
        });
        assert_eq!(
            environment.nginx_bin.as_deref(),
            Some(Path::new("/opt/nginx/sbin/nginx"))
        );
        // Set but empty is still set: the caller decides what empty means.
        assert_eq!(environment.test_database_url.as_deref(), Some(""));
        assert!(environment.wasmhost_bin.is_none());
        assert!(environment.docker_host.is_none());
    }

    #[test]
    fn a_text_variable_that_is_not_utf8_counts_as_unset() {
        use std::os::unix::ffi::OsStringExt;
        let environment = Environment::from_lookup(|name| {
            (name == "JWT_SECRET").then(|| OsString::from_vec(vec![0xff, 0xfe]))
        });
        assert!(environment.jwt_secret.is_none());
    }
}
