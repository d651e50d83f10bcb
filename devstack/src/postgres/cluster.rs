//! A private PostgreSQL cluster run from the locally installed server
//! binaries, on its own data directory and port, as a child process (so it
//! is stopped with the stack and its log is streamed like the others).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::installed::{server_bin_dir, server_user};
use super::psql::{database_url, psql};
use crate::process::{self, Echo, LogTail, ManagedChild, SystemUser, command_as};

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
