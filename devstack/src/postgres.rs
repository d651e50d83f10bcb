//! PostgreSQL for the stack and for tests.
//!
//! [`PostgresCluster`] is a private cluster run from the locally installed
//! server binaries, on its own data directory and port, as a child process
//! (so it is stopped with the stack and its log is streamed like the others).
//! [`ScratchDatabase`] is a uniquely named database with its own roles on an
//! existing server, for tests that need a fresh schema; it is dropped on Drop.
//! [`test_database_url`] decides which server the tests use: `TEST_DATABASE_URL`,
//! a container started with `testcontainers`, or the local server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::process::Command;
use url::Url;

use crate::process::{self, Echo, LogTail, ManagedChild, command_as};

mod test_server;
pub use test_server::{LOCAL_TEST_DATABASE_URL, POSTGRES_IMAGE, test_database_url};

/// The user PostgreSQL's server binaries run as when we are root.
#[derive(Clone, Debug)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

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
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
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
fn psql_program() -> PathBuf {
    server_bin_dir()
        .map(|dir| dir.join("psql"))
        .ok()
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

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
fn psql_blocking(url: &str, statements: &[String]) -> Result<()> {
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

/// A private PostgreSQL cluster on its own data directory and loopback port.
pub struct PostgresCluster {
    pub data_dir: PathBuf,
    pub port: u16,
    superuser_password: String,
    bin_dir: PathBuf,
    run_as: Option<SystemUser>,
    /// `-c name=value` given after the defaults, so they win (see
    /// [`PostgresCluster::set`]).
    settings: Vec<(String, String)>,
    process: Option<ManagedChild>,
    pub log: LogTail,
    echo: Echo,
}

impl PostgresCluster {
    /// A cluster on `data_dir`, created with initdb if the directory holds none
    /// yet (the superuser `postgres` then gets `superuser_password`). Returns
    /// whether it was created. Not started.
    pub async fn open_or_init(
        data_dir: &Path,
        port: u16,
        superuser_password: &str,
        echo: Echo,
    ) -> Result<(Self, bool)> {
        let cluster = Self {
            data_dir: data_dir.to_path_buf(),
            port,
            superuser_password: superuser_password.to_owned(),
            bin_dir: server_bin_dir()?,
            run_as: server_user()?,
            settings: Vec::new(),
            process: None,
            log: LogTail::default(),
            echo,
        };
        let created = !data_dir.join("PG_VERSION").exists();
        if created {
            cluster.initdb().await?;
        }
        Ok((cluster, created))
    }

    async fn initdb(&self) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        // initdb reads the password from a file; it must be readable by the
        // server user, and must not be inside the (still empty) data directory.
        let parent = self
            .data_dir
            .parent()
            .context("data directory has no parent")?;
        let password_file = parent.join(format!(".initdb-password-{}", std::process::id()));
        std::fs::write(&password_file, &self.superuser_password)?;
        self.hand_to_server_user(&self.data_dir, 0o700)?;
        self.hand_to_server_user(&password_file, 0o600)?;
        let mut command = command_as(&self.bin_dir.join("initdb"), self.run_as.as_ref());
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C"])
            .args(["--auth-host=scram-sha-256", "--auth-local=scram-sha-256"])
            .arg(format!("--pwfile={}", password_file.display()));
        let result = process::run("initdb", command).await;
        let _ = std::fs::remove_file(&password_file);
        result.map(|_| ())
    }

    /// A server setting for the next [`start`](Self::start), overriding the
    /// defaults there: tests turn on TLS (`ssl`, `ssl_cert_file`, ...) or
    /// listen on more loopback addresses this way.
    pub fn set(&mut self, name: &str, value: &str) {
        self.settings.push((name.to_owned(), value.to_owned()));
    }

    /// Gives `path` to the server user (when running as root) with `mode`,
    /// and lets that user reach it: for files the server reads, such as a
    /// TLS key (which PostgreSQL wants owned by its user, mode 0600).
    pub fn hand_to_server_user(&self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if let Some(user) = &self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
            // The server user must be able to reach the path.
            let mut dir = path.parent();
            while let Some(current) = dir {
                let meta = std::fs::metadata(current)?;
                if meta.permissions().mode() & 0o001 == 0 {
                    let mode = meta.permissions().mode() | 0o011;
                    std::fs::set_permissions(current, std::fs::Permissions::from_mode(mode))?;
                }
                dir = current.parent();
            }
        }
        Ok(())
    }

    /// Starts the server (TCP on 127.0.0.1 only) and waits until it accepts
    /// connections.
    pub async fn start(&mut self) -> Result<()> {
        if self.process.is_some() {
            bail!("PostgreSQL is already running");
        }
        // Whatever answers on the port would pass the readiness check below,
        // and the init script and migrations would then run against it (for
        // example the cluster of another stack started from the same
        // checkout, while this server refuses its data directory's lock).
        if let Err(error) = std::net::TcpListener::bind(("127.0.0.1", self.port)) {
            bail!(
                "port {} on 127.0.0.1 is taken ({error}); is another stack or PostgreSQL \
                 running there? Stop it or choose another port.",
                self.port
            );
        }
        let mut command = command_as(&self.bin_dir.join("postgres"), self.run_as.as_ref());
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            // No Unix socket: nothing to clean up, no clash with /var/run.
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=200"])
            .args(["-c", "log_min_messages=warning"])
            .args(["-c", "log_line_prefix=%m [%p] "]);
        for (name, value) in &self.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        self.process = Some(ManagedChild::spawn(
            "postgres", command, &self.log, self.echo,
        )?);
        self.wait_ready(Duration::from_secs(60)).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let url = self.superuser_url("postgres");
        loop {
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.try_status()?
            {
                self.process = None;
                bail!(
                    "PostgreSQL exited during start ({status}):\n{}",
                    self.log.last(30)
                );
            }
            match psql(&url, "SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(error.context(format!(
                        "PostgreSQL not ready after {timeout:?}:\n{}",
                        self.log.last(30)
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// `pg_ctl stop -m fast`: disconnects every client, shuts down cleanly.
    pub async fn stop_fast(&mut self) -> Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        let mut command = command_as(&self.bin_dir.join("pg_ctl"), self.run_as.as_ref());
        command
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "-t", "60"]);
        let stopped = process::run("pg_ctl stop", command).await;
        let waited = process.wait_timeout(Duration::from_secs(10)).await;
        if stopped.is_err() || waited.is_err() {
            // The graceful path failed; make sure nothing is left running.
            let _ = process.stop(Signal::SIGQUIT, Duration::from_secs(5)).await;
        }
        stopped.map(|_| ())
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    pub fn superuser_url(&self, database: &str) -> String {
        database_url("postgres", &self.superuser_password, self.port, database)
    }
}

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

/// A random lowercase hex string from the kernel's CSPRNG.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl ScratchDatabase {
    /// Creates the database and roles through `admin_url` (a superuser URL).
    pub async fn create(admin_url: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.subsec_nanos();
        let suffix = format!(
            "{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let name = format!("conduit_test_{suffix}");
        let owner_role = format!("{name}_owner");
        let app_role = format!("{name}_app");
        let owner_password = random_hex(16)?;
        let app_password = random_hex(16)?;

        let admin = Url::parse(admin_url).context("the superuser URL is not a URL")?;
        let with = |user: &str, password: Option<&str>| -> Result<String> {
            let mut url = admin.clone();
            url.set_path(&format!("/{name}"));
            url.set_username(user)
                .map_err(|_| anyhow::anyhow!("cannot set user in {admin}"))?;
            url.set_password(password)
                .map_err(|_| anyhow::anyhow!("cannot set password in {admin}"))?;
            Ok(url.to_string())
        };
        let superuser_url = with(admin.username(), admin.password())?;
        let owner_url = with(&owner_role, Some(&owner_password))?;
        let app_url = with(&app_role, Some(&app_password))?;

        psql(
            admin_url,
            &format!(
                "CREATE ROLE {owner_role} LOGIN PASSWORD '{owner_password}';
                 CREATE ROLE {app_role} LOGIN PASSWORD '{app_password}';"
            ),
        )
        .await?;
        let scratch = Self {
            name: name.clone(),
            owner_role: owner_role.clone(),
            app_role: app_role.clone(),
            superuser_url: superuser_url.clone(),
            owner_url,
            app_url,
            admin_url: admin_url.to_owned(),
        };
        // CREATE DATABASE cannot run in a transaction block with other
        // statements, hence its own call.
        psql(
            admin_url,
            &format!("CREATE DATABASE {name} OWNER {owner_role};"),
        )
        .await?;
        psql(
            admin_url,
            &format!(
                "REVOKE ALL ON DATABASE {name} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {owner_role};
                 GRANT CONNECT ON DATABASE {name} TO {app_role};"
            ),
        )
        .await?;
        psql(
            &superuser_url,
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
        Ok(scratch)
    }
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
