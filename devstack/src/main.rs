//! `devstack up`: the whole stack on this machine, in the foreground.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use devstack::config::{Environment, environment};
use devstack::prometheus::Prometheus;
use devstack::{Database, Echo, Secrets, Stack, StackConfig};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(
    name = "devstack",
    about = "Runs the Conduit stack locally: PostgreSQL, wasmhost replicas, nginx"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Start everything, stream the logs, stop everything on Ctrl-C or SIGTERM.
    Up(UpOptions),
}

// No doc comment: `Up`'s is the subcommand's help text.
#[derive(Args)]
struct UpOptions {
    /// Number of wasmhost replicas behind nginx.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    replicas: u16,
    /// nginx's HTTPS port on 127.0.0.1 (the API).
    #[arg(long, default_value_t = 8443)]
    https_port: u16,
    /// nginx's plain HTTP port on 127.0.0.1: redirects to HTTPS.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// nginx's certificate and key (tls.crt, tls.key); when the directory
    /// has none, a local CA and a certificate for localhost and 127.0.0.1
    /// are made there once (trust its ca.crt). Default: DATA_DIR/tls.
    #[arg(long, env = "CONDUIT_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// What outlives the stack: the private cluster (postgres/), the
    /// secrets (secrets.env) and the local CA (tls/).
    #[arg(long, env = "DEVSTACK_DATA_DIR", default_value = ".data")]
    data_dir: PathBuf,
    /// What is made again at every start: nginx's prefix and the
    /// precompiled components.
    #[arg(long, env = "DEVSTACK_STATE_DIR", default_value = ".stack")]
    state_dir: PathBuf,
    /// Port of the private PostgreSQL cluster (ignored with DATABASE_URL).
    #[arg(long, env = "DEVSTACK_PG_PORT", default_value_t = 55432)]
    pg_port: u16,
    /// First replica API port (the others follow).
    #[arg(long, default_value_t = 3001)]
    api_port: u16,
    /// First replica admin port (the others follow).
    #[arg(long, default_value_t = 9101)]
    admin_port: u16,
    /// An existing database instead of the private cluster; runs the
    /// migrations, and the replicas use it unless APP_DATABASE_URL is set.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The replicas' database URL when DATABASE_URL is set (e.g. the
    /// conduit_app role instead of the owner).
    #[arg(long, env = "APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Option<String>,
    /// Also run Prometheus (Debian's `prometheus`) on this port, scraping
    /// every replica's admin port with observability/prometheus/alerts.yml.
    #[arg(long, num_args = 0..=1, default_missing_value = "9090")]
    prometheus: Option<u16>,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Commands::Up(options) => {
            let prometheus = options.prometheus;
            up(stack_config(options, environment())?, prometheus).await
        }
    }
}

/// The stack `devstack up` runs: the flags, paths taken from the project
/// root, and the secrets kept in the data directory.
fn stack_config(options: UpOptions, environment: &Environment) -> Result<StackConfig> {
    let root = project_root(environment)?;
    let data_dir = root.join(options.data_dir);
    let secrets = load_secrets(environment, &data_dir)?;
    let database = match options.database_url {
        Some(owner_url) => Database::External {
            app_url: options
                .app_database_url
                .unwrap_or_else(|| owner_url.clone()),
            owner_url,
        },
        None => Database::Private {
            data_dir: data_dir.join("postgres"),
            port: options.pg_port,
        },
    };
    let mut config = StackConfig::new(&root, &root.join(options.state_dir), database)?;
    config.secrets = secrets;
    config.replicas = usize::from(options.replicas);
    config.https_port = options.https_port;
    config.http_port = options.http_port;
    config.tls_dir = match options.tls_dir {
        Some(tls_dir) => root.join(tls_dir),
        None => data_dir.join("tls"),
    };
    config.api_base_port = options.api_port;
    config.admin_base_port = options.admin_port;
    config.echo = Echo::Stdout;
    Ok(config)
}

async fn up(config: StackConfig, prometheus_port: Option<u16>) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let replica_count = config.replicas;
    let stack = tokio::select! {
        stack = Stack::start(config) => stack?,
        // Dropping the half-started stack kills what it started.
        _ = interrupt.recv() => bail!("interrupted while starting"),
        _ = terminate.recv() => bail!("terminated while starting"),
    };
    let prometheus = match prometheus_port {
        None => None,
        Some(port) => Some(start_prometheus(&stack, port).await?),
    };
    print_banner(&stack, replica_count, prometheus.as_ref());

    let mut watch = tokio::time::interval(Duration::from_secs(1));
    let mut stack = stack;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = watch.tick() => report_exits(&mut stack),
        }
    }
    println!("devstack: stopping (Ctrl-C again to kill immediately)");
    if let Some(prometheus) = prometheus {
        prometheus.stop().await?;
    }
    tokio::select! {
        result = stack.stop() => {
            result?;
            println!("devstack: stopped");
            Ok(())
        }
        // Returning drops the stack, which kills every process group.
        _ = interrupt.recv() => bail!("killed"),
    }
}

/// Prometheus on `port`, scraping every replica's admin port with the
/// committed alert rules.
async fn start_prometheus(stack: &Stack, port: u16) -> Result<Prometheus> {
    let targets: Vec<String> = stack
        .replicas
        .iter()
        .map(|replica| replica.admin_url().trim_start_matches("http://").to_owned())
        .collect();
    let rules = stack
        .config
        .root
        .join("observability/prometheus/alerts.yml");
    Prometheus::start(
        &stack.config.state_dir.join("prometheus"),
        port,
        &targets,
        &rules,
        Duration::from_secs(5),
        Echo::Quiet,
    )
    .await
}

/// Where the API is and how to trust its certificate.
fn print_banner(stack: &Stack, replica_count: usize, prometheus: Option<&Prometheus>) {
    let url = stack.url();
    let ca = stack.nginx.tls_dir.join("ca.crt");
    println!();
    println!("Conduit is running with {replica_count} replica(s) behind nginx:");
    if ca.exists() {
        println!(
            "  API:     {url}/api   (e.g. curl --cacert {} {url}/api/tags)",
            ca.display()
        );
        println!(
            "  Swagger: {url}/docs   (trust the local CA {} once)",
            ca.display()
        );
    } else {
        println!("  API:     {url}/api   (e.g. curl {url}/api/tags)");
        println!("  Swagger: {url}/docs");
    }
    println!("  {} redirects to HTTPS", stack.nginx.http_url());
    if let Some(prometheus) = prometheus {
        println!(
            "  Prometheus: {} (alerts: {}/alerts)",
            prometheus.url(),
            prometheus.url()
        );
    }
    println!("Press Ctrl-C to stop.");
    println!();
}

/// Says so when a replica dies; nginx keeps serving from the others.
fn report_exits(stack: &mut Stack) {
    for replica in &mut stack.replicas {
        if replica.has_exited() {
            eprintln!(
                "devstack: {} exited; the other replicas keep serving",
                replica.name()
            );
        }
    }
}

/// The project root: `$DEVSTACK_ROOT`, else the current directory when it
/// holds spin.toml, else the source tree this binary was built from.
fn project_root(environment: &Environment) -> Result<PathBuf> {
    let root = match &environment.root {
        Some(root) => root.clone(),
        None => {
            let cwd = std::env::current_dir()?;
            if cwd.join("spin.toml").exists() {
                cwd
            } else {
                devstack::project_root()
            }
        }
    };
    if !root.join("spin.toml").exists() {
        bail!(
            "{} has no spin.toml; run from the project root",
            root.display()
        );
    }
    Ok(root)
}

/// Secrets from the environment, else from DATA_DIR/secrets.env (written once
/// by scripts/stack).
fn load_secrets(environment: &Environment, data_dir: &Path) -> Result<Secrets> {
    let file = data_dir.join("secrets.env");
    let from_file = match std::fs::read_to_string(&file) {
        Ok(text) => parse_env_file(&text),
        Err(_) => HashMap::new(),
    };
    let get = |name: &str, from_environment: &Option<String>| -> Result<String> {
        from_environment
            .clone()
            .or_else(|| from_file.get(name).cloned())
            .filter(|value| !value.is_empty())
            .with_context(|| {
                format!(
                    "{name} is not set and not in {}; scripts/stack creates that file",
                    file.display()
                )
            })
    };
    Ok(Secrets {
        jwt_secret: get("JWT_SECRET", &environment.jwt_secret)?,
        owner_password: get("CONDUIT_OWNER_PASSWORD", &environment.owner_password)?,
        app_password: get("CONDUIT_APP_PASSWORD", &environment.app_password)?,
        superuser_password: get("POSTGRES_PASSWORD", &environment.superuser_password)?,
    })
}

fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (key.trim().to_owned(), value.to_owned())
        })
        .collect()
}
