//! The whole local stack: PostgreSQL, migrations, N replicas, nginx.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::Command;
use url::Url;

use crate::config::environment;
use crate::nginx::{Nginx, NginxPorts};
use crate::ports::port_or_free;
use crate::postgres::{self, PostgresCluster};
use crate::process::{self, Echo};
use crate::replica::{Replica, ReplicaSpec};
use crate::secrets::Secrets;

/// Where the database comes from.
#[derive(Clone, Debug)]
pub enum Database {
    /// An existing server: `owner_url` runs the migrations, `app_url` is what
    /// the replicas use.
    External { owner_url: String, app_url: String },
    /// A private cluster on `data_dir` (created on first use) and `port`.
    Private { data_dir: PathBuf, port: u16 },
}

/// Route limits of the shipped deployments (`WASMHOST_ROUTE_LIMITS`): two
/// password hashes at a time per replica, 128 more waiting. Two cores hash
/// no faster with more in flight, and each one holds an instance with its
/// 19 MiB.
pub const PASSWORD_ROUTE_LIMITS: &str = "POST /api/users/login=2/128,POST /api/users=2/128";

#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The project root: spin.toml, migrations/, docker/nginx/nginx.conf.
    pub root: PathBuf,
    /// nginx prefix and component cache (`.stack/` for `devstack up`).
    pub state_dir: PathBuf,
    pub database: Database,
    pub secrets: Secrets,
    pub replicas: usize,
    /// nginx's HTTPS port, the API's (0: any free port).
    pub https_port: u16,
    /// nginx's plain HTTP port, which redirects to HTTPS (0: any free port).
    pub http_port: u16,
    /// nginx's certificate: `tls.crt` and `tls.key` given by the operator, or
    /// a local CA (`ca.crt`) and a server certificate made there once.
    pub tls_dir: PathBuf,
    /// First API port and first admin port of the replicas (0: any free).
    pub api_base_port: u16,
    pub admin_base_port: u16,
    /// Extra environment for every replica (WASMHOST_* limits, RUST_LOG).
    pub replica_env: Vec<(String, String)>,
    pub wasmhost: PathBuf,
    /// The application manifest (`<root>/spin.toml`, or `$DEVSTACK_MANIFEST`
    /// for components built into another target directory).
    pub manifest: PathBuf,
    pub echo: Echo,
}

impl StackConfig {
    /// Defaults for `root`: three replicas, ports chosen freely, random
    /// secrets, quiet logs, the wasmhost next to the running binary.
    pub fn new(root: &Path, state_dir: &Path, database: Database) -> Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            database,
            secrets: Secrets::random()?,
            replicas: 3,
            https_port: 0,
            http_port: 0,
            tls_dir: state_dir.join("tls"),
            api_base_port: 0,
            admin_base_port: 0,
            replica_env: Vec::new(),
            wasmhost: wasmhost_program(root),
            manifest: environment()
                .manifest
                .clone()
                .unwrap_or_else(|| root.join("spin.toml")),
            echo: Echo::Quiet,
        })
    }
}

/// The wasmhost binary: `$WASMHOST_BIN`, else next to the running executable
/// (target/release/ for `devstack`, target/release/deps/.. for tests), else
/// `<root>/target/release/wasmhost`.
pub fn wasmhost_program(root: &Path) -> PathBuf {
    if let Some(path) = &environment().wasmhost_bin {
        return path.clone();
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("wasmhost");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    root.join("target/release/wasmhost")
}

/// The URLs the replicas and migrations use.
#[derive(Clone, Debug)]
pub struct DatabaseUrls {
    pub owner_url: String,
    pub app_url: String,
}

pub struct Stack {
    pub config: StackConfig,
    pub postgres: Option<PostgresCluster>,
    pub database: DatabaseUrls,
    pub replicas: Vec<Replica>,
    pub nginx: Nginx,
}

impl Stack {
    /// Starts everything and waits until nginx answers. On error, whatever was
    /// already started is killed (by the drops).
    pub async fn start(config: StackConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.state_dir)?;
        let (postgres, database) = start_database(&config).await?;
        migrate(&config, &database.owner_url).await?;
        let cache_dir = precompile(&config).await;
        let env = replica_env(&config, &database, cache_dir.as_deref())?;
        let replicas = start_replicas(&config, &env).await?;
        let nginx = start_nginx(&config, &replicas).await?;
        Ok(Self {
            config,
            postgres,
            database,
            replicas,
            nginx,
        })
    }

    /// nginx's base URL, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> String {
        self.nginx.url()
    }

    /// A client for [`Stack::url`] that verifies nginx's certificate (against
    /// the stack's local CA when it made one).
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder> {
        self.nginx.client_builder()
    }

    /// One rolling-restart step for replica `index` (0-based): SIGTERM, wait
    /// for the exit, start, wait until ready. With `drain`, the replica is
    /// first taken out of nginx's rotation (config reload) for that long and
    /// put back afterwards, as an orchestrator removes an endpoint first.
    pub async fn rolling_restart(&mut self, index: usize, drain: Option<Duration>) -> Result<()> {
        let port = self.replicas[index].spec.api_port;
        if let Some(drain) = drain {
            self.nginx.set_down(port, true).await?;
            // Old nginx workers finish their requests to it and close their
            // idle keep-alive connections before the replica starts refusing.
            tokio::time::sleep(drain).await;
        }
        self.replicas[index]
            .restart(Duration::from_secs(60))
            .await?;
        if drain.is_some() {
            self.nginx.set_down(port, false).await?;
        }
        Ok(())
    }

    /// One step of a rolling update: replica `index` replaced by one serving
    /// `manifest` (the next version), on the same ports. Out of nginx's
    /// rotation first, `drain` for its requests under way to finish, SIGTERM,
    /// start with the new manifest, ready, back into the rotation: no request
    /// reaches it between the stop and the readiness of its successor.
    pub async fn replace_replica(
        &mut self,
        index: usize,
        manifest: &Path,
        drain: Duration,
    ) -> Result<()> {
        self.replicas[index].spec.manifest = manifest.to_path_buf();
        self.rolling_restart(index, Some(drain)).await
    }

    /// Applies the migrations in `dir` as the schema owner (`wasmhost
    /// migrate`), e.g. a release's expand or contract migrations on top of
    /// the ones the stack started with.
    pub async fn migrate(&self, dir: &Path) -> Result<()> {
        migrate_dir(&self.config, &self.database.owner_url, dir).await
    }

    /// Compiles the components of `manifest` into the stack's component
    /// cache, so that replicas started with it (see
    /// [`Stack::replace_replica`]) start without compiling.
    pub async fn precompile(&self, manifest: &Path) -> Result<()> {
        compile_components(&self.config, manifest).await?;
        Ok(())
    }

    /// Stops everything gracefully: nginx first (no new requests), then the
    /// replicas (in-flight requests finish), then PostgreSQL.
    pub async fn stop(mut self) -> Result<()> {
        let mut errors = Vec::new();
        if let Err(error) = self.nginx.stop().await {
            errors.push(error);
        }
        let stops = self
            .replicas
            .iter_mut()
            .map(|replica| replica.terminate(Duration::from_secs(40)));
        for result in futures::future::join_all(stops).await {
            if let Err(error) = result {
                errors.push(error);
            }
        }
        if let Some(postgres) = self.postgres.as_mut()
            && let Err(error) = postgres.stop_fast().await
        {
            errors.push(error);
        }
        match errors.pop() {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// The last lines of every process's output, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        if let Some(postgres) = &self.postgres {
            out.push_str(&format!("--- postgres\n{}\n", postgres.log.last(lines)));
        }
        for replica in &self.replicas {
            out.push_str(&format!(
                "--- {}\n{}\n",
                replica.name(),
                replica.log.last(lines)
            ));
        }
        out.push_str(&format!("--- nginx\n{}\n", self.nginx.log.last(lines)));
        out
    }
}

async fn start_database(config: &StackConfig) -> Result<(Option<PostgresCluster>, DatabaseUrls)> {
    match &config.database {
        Database::External { owner_url, app_url } => Ok((
            None,
            DatabaseUrls {
                owner_url: owner_url.clone(),
                app_url: app_url.clone(),
            },
        )),
        Database::Private { data_dir, port } => {
            let port = port_or_free(*port, 0)?;
            let secrets = &config.secrets;
            let (mut cluster, _created) = PostgresCluster::open_or_init(
                data_dir,
                port,
                &secrets.superuser_password,
                config.echo,
            )
            .await?;
            cluster.start().await?;
            run_init_script_once(config, &cluster).await?;
            let urls = DatabaseUrls {
                owner_url: postgres::database_url(
                    "conduit_owner",
                    &secrets.owner_password,
                    port,
                    "conduit",
                ),
                app_url: postgres::database_url(
                    "conduit_app",
                    &secrets.app_password,
                    port,
                    "conduit",
                ),
            };
            Ok((Some(cluster), urls))
        }
    }
}

/// `migrations/init/init.sql` on a cluster that has no `conduit` database
/// yet: it creates the roles and the database, which must not exist yet, so
/// it runs once per cluster.
async fn run_init_script_once(config: &StackConfig, cluster: &PostgresCluster) -> Result<()> {
    let exists = postgres::psql(
        &cluster.superuser_url("postgres"),
        "SELECT 1 FROM pg_database WHERE datname = 'conduit'",
    )
    .await?;
    if !exists.trim().is_empty() {
        return Ok(());
    }
    let secrets = &config.secrets;
    postgres::psql_file(
        &cluster.superuser_url("postgres"),
        &config.root.join("migrations/init/init.sql"),
        &[
            ("owner_password", &secrets.owner_password),
            ("app_password", &secrets.app_password),
        ],
    )
    .await
    .context("running migrations/init/init.sql")
}

/// What every replica gets on top of the inherited environment: the
/// application's variables, the component cache, the password routes'
/// limits, then the caller's own settings (which win).
fn replica_env(
    config: &StackConfig,
    database: &DatabaseUrls,
    cache_dir: Option<&Path>,
) -> Result<Vec<(String, String)>> {
    let db = Url::parse(&database.app_url).context("database URL")?;
    let db_host = db.host_str().unwrap_or("127.0.0.1").to_owned();
    let db_port = db.port().unwrap_or(5432).to_string();
    let mut env = vec![
        ("SPIN_VARIABLE_DB_URL".to_owned(), database.app_url.clone()),
        ("SPIN_VARIABLE_DB_HOST".to_owned(), db_host),
        ("SPIN_VARIABLE_DB_PORT".to_owned(), db_port),
        (
            "SPIN_VARIABLE_JWT_SECRET".to_owned(),
            config.secrets.jwt_secret.clone(),
        ),
    ];
    if let Some(cache_dir) = cache_dir {
        env.push((
            "WASMHOST_CACHE_DIR".to_owned(),
            cache_dir.display().to_string(),
        ));
    }
    // The login and registration hash a password (argon2id, 19 MiB):
    // a few at a time per replica, the rest queued, unless the caller
    // says otherwise.
    if environment().route_limits.is_none() {
        env.push((
            "WASMHOST_ROUTE_LIMITS".to_owned(),
            PASSWORD_ROUTE_LIMITS.to_owned(),
        ));
    }
    env.extend(config.replica_env.iter().cloned());
    Ok(env)
}

/// Starts every replica, then waits until each is ready.
async fn start_replicas(config: &StackConfig, env: &[(String, String)]) -> Result<Vec<Replica>> {
    let mut replicas = Vec::with_capacity(config.replicas);
    for offset in 0..config.replicas {
        let mut replica = Replica::new(ReplicaSpec {
            index: offset + 1,
            api_port: port_or_free(config.api_base_port, offset)?,
            admin_port: port_or_free(config.admin_base_port, offset)?,
            wasmhost: config.wasmhost.clone(),
            manifest: config.manifest.clone(),
            root: config.root.clone(),
            env: env.to_vec(),
            echo: config.echo,
        })?;
        replica.start()?;
        replicas.push(replica);
    }
    for replica in &mut replicas {
        replica.wait_ready(Duration::from_secs(120)).await?;
    }
    Ok(replicas)
}

/// nginx with the production config in front of `replicas`.
async fn start_nginx(config: &StackConfig, replicas: &[Replica]) -> Result<Nginx> {
    let ports = NginxPorts {
        https: port_or_free(config.https_port, 0)?,
        http: port_or_free(config.http_port, 0)?,
    };
    let upstream_ports: Vec<u16> = replicas.iter().map(|r| r.spec.api_port).collect();
    let mut nginx = Nginx::new(
        &config.root.join("docker/nginx/nginx.conf"),
        &config.state_dir.join("nginx"),
        ports,
        &config.tls_dir,
        &upstream_ports,
        config.echo,
    );
    nginx.start().await?;
    Ok(nginx)
}

/// `wasmhost migrate` as the schema owner, with the project's migrations.
pub async fn migrate(config: &StackConfig, owner_url: &str) -> Result<()> {
    migrate_dir(config, owner_url, &config.root.join("migrations")).await
}

/// `wasmhost migrate` as the schema owner, with the migrations in `dir`.
async fn migrate_dir(config: &StackConfig, owner_url: &str, dir: &Path) -> Result<()> {
    let mut command = Command::new(&config.wasmhost);
    command
        .arg("migrate")
        .arg("--database-url")
        .arg(owner_url)
        .arg("--migrations-dir")
        .arg(dir)
        .current_dir(&config.root);
    process::run("wasmhost migrate", command).await?;
    Ok(())
}

/// Precompiles the components once so that replicas (and restarts) start in
/// milliseconds instead of compiling each time. A failure only costs speed.
async fn precompile(config: &StackConfig) -> Option<PathBuf> {
    match compile_components(config, &config.manifest).await {
        Ok(cache_dir) => Some(cache_dir),
        Err(error) => {
            eprintln!(
                "devstack: precompiling components failed, replicas compile at start: {error:#}"
            );
            None
        }
    }
}

/// `wasmhost compile` of `manifest`'s components into the stack's component
/// cache (keyed by each file's content); returns the cache directory.
async fn compile_components(config: &StackConfig, manifest: &Path) -> Result<PathBuf> {
    let cache_dir = config.state_dir.join("component-cache");
    let mut command = Command::new(&config.wasmhost);
    command
        .arg("compile")
        .arg("--manifest")
        .arg(manifest)
        .arg("--cache-dir")
        .arg(&cache_dir)
        .current_dir(&config.root);
    process::run("wasmhost compile", command).await?;
    Ok(cache_dir)
}
