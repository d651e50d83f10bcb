//! Test support: scratch PostgreSQL databases and `wasmhost` processes.
//!
//! PostgreSQL comes from `devstack::postgres::test_database_url` (a superuser
//! URL: `TEST_DATABASE_URL` when set, else a container when a Docker engine
//! answers, else the local server on 127.0.0.1:5432). Each test gets its own
//! database, dropped afterwards, and its own host process, killed when the
//! test ends even if it fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod redis_server;

/// The superuser URL of the test server (chosen once per test binary).
pub async fn admin_url() -> String {
    devstack::postgres::test_database_url()
        .await
        .unwrap_or_else(|error| panic!("{error:#}"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host crate lives in the workspace")
        .to_path_buf()
}

/// The fixture component, built by `cargo build --release --target
/// wasm32-wasip2 -p test-app` (the README's test command does this).
pub fn fixture_wasm() -> PathBuf {
    built_wasm("test-app")
}

/// The component of the fixture package `package`, built by `cargo build
/// --release --target wasm32-wasip2 -p <package>` (the README's test
/// command builds every fixture).
pub fn built_wasm(package: &str) -> PathBuf {
    let path = workspace_root().join(format!(
        "target/wasm32-wasip2/release/{}.wasm",
        package.replace('-', "_")
    ));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --target wasm32-wasip2 -p {package}` first",
        path.display()
    );
    path
}

pub fn fixture_manifest(extra_replacements: &[(&str, &str)]) -> String {
    let dir = workspace_root().join("host/tests/fixtures/test-app");
    let mut text = std::fs::read_to_string(dir.join("spin.toml")).expect("fixture manifest");
    text = text
        .replace("WASM_PATH", &fixture_wasm().display().to_string())
        .replace("STATIC_DIR", &dir.join("static").display().to_string());
    for (from, to) in extra_replacements {
        text = text.replace(from, to);
    }
    text
}

async fn admin_client(admin_url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("cannot reach the test PostgreSQL server at {admin_url}"))?;
    tokio::spawn(conn);
    Ok(client)
}

/// A database that exists for one test.
pub struct ScratchDb {
    pub name: String,
    /// The superuser URL of the server it lives on.
    admin_url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl ScratchDb {
    pub async fn create() -> Result<Self> {
        let name = format!(
            "wasmhost_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin_url = admin_url().await;
        admin_client(&admin_url)
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(ScratchDb { name, admin_url })
    }

    /// The superuser URL for this database, with the given sslmode.
    pub fn url(&self, sslmode: &str) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("the admin URL is a URL");
        url.set_path(&format!("/{}", self.name));
        url.set_query(Some(&format!("sslmode={sslmode}")));
        url.to_string()
    }

    /// A superuser client connected to this database.
    pub async fn client(&self) -> Result<tokio_postgres::Client> {
        admin_client(&self.url("disable")).await
    }

    pub fn host_port(&self) -> (String, u16) {
        let url = url::Url::parse(&self.admin_url).expect("the admin URL is a URL");
        (
            url.host_str().unwrap_or("127.0.0.1").to_string(),
            url.port().unwrap_or(5432),
        )
    }

    /// Terminates every server connection to this database.
    pub async fn terminate_connections(&self) -> Result<u64> {
        let client = admin_client(&self.admin_url).await?;
        let rows = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await?;
        Ok(rows.len() as u64)
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        // Drop runs outside any async context the test may still hold.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = admin_client(&admin_url).await.ok()?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub fn free_port() -> u16 {
    devstack::free_port().expect("a free port")
}

/// A running `wasmhost serve`.
pub struct Host {
    child: Option<Child>,
    pub base: String,
    pub admin: String,
    pub port: u16,
    log: PathBuf,
    dir: tempfile::TempDir,
}

pub struct HostConfig {
    pub manifest: String,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl HostConfig {
    pub fn new(manifest: String) -> Self {
        HostConfig {
            manifest,
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// The directory of precompiled components every test host uses.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/wasmhost-test-cache")
}

/// Starts the host; `Ok` once `/readyz` answers 200, `Err` with the host's
/// output if it exits first.
pub async fn start(config: HostConfig) -> Result<Host> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, &config.manifest)?;
    let port = free_port();
    let admin_port = free_port();
    let log = dir.path().join("host.log");
    let log_file = std::fs::File::create(&log)?;
    let child = Command::new(env!("CARGO_BIN_EXE_wasmhost"))
        .arg("serve")
        .arg("--manifest")
        .arg(&manifest)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg("--db-wait-secs")
        .arg("5")
        .args(&config.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .spawn()
        .context("spawning wasmhost")?;
    let mut host = Host {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
        port,
        log,
        dir,
    };
    host.wait_ready(Duration::from_secs(60)).await?;
    Ok(host)
}

impl Host {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// The manifest the host was started with (a file of the test's own,
    /// which a reload test rewrites).
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.path().join("spin.toml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once `done` holds for it (log lines are written by a thread
    /// of the host's, a moment after the response), or as it is after 5 s.
    pub async fn log_eventually(&self, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let log = self.log();
            if done(&log) || started.elapsed() > Duration::from_secs(5) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "wasmhost exited with {status} before becoming ready:\n{}",
                    self.log()
                );
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.admin)).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("wasmhost not ready after {limit:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a signal to the host process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
    }

    /// Waits for the process to exit, returning its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<Option<i32>> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Ok(status.code());
            }
            if started.elapsed() > limit {
                bail!("wasmhost still running after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.admin))
            .await?
            .text()
            .await?)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `wasmhost serve` expecting it to fail at start; returns its output.
pub fn start_expecting_failure(config: HostConfig) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, &config.manifest)?;
    let output = Command::new(env!("CARGO_BIN_EXE_wasmhost"))
        .arg("serve")
        .arg("--manifest")
        .arg(&manifest)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--cache-dir")
        .arg(cache_dir())
        .arg("--db-wait-secs")
        .arg("2")
        .args(&config.args)
        .env_clear()
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .output()?;
    if output.status.success() {
        bail!("wasmhost started and exited successfully; expected a start-up failure");
    }
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// A client for the test hosts: a request that takes longer fails.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// `method url` with `body`: the status and the body that came back.
pub async fn call(method: &str, url: String, body: Vec<u8>) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let response = http()
        .request(method, url)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap_or_default().to_vec())
}

/// [`call`] with text bodies.
pub async fn text(method: &str, url: String, body: &str) -> (u16, String) {
    let (status, bytes) = call(method, url, body.as_bytes().to_vec()).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
