use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use host::application::Application;
use host::capability::Dependency;
use host::compat::Compat;
use host::instances::ReuseSettings;
use host::reload::{self, Reloader};
use host::runtime_config::RuntimeConfig;
use host::{admin, manifest, metrics, migrate, postgres, runtime, server, telemetry};

/// Every request allocates and frees many small objects (stores, resource
/// tables, headers) across threads; mimalloc's thread-local free lists cost
/// less than glibc malloc's arenas here (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A production server for Spin HTTP applications, built on wasmtime.
#[derive(Parser)]
#[command(name = "wasmhost", version)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "WASMHOST_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application's HTTP triggers.
    Serve(Box<ServeArgs>),
    /// Apply numbered SQL migrations.
    Migrate {
        /// PostgreSQL URL of the role that owns the schema.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, env = "WASMHOST_MIGRATIONS_DIR", default_value = "migrations")]
        migrations_dir: PathBuf,
        /// The longest a migration's statement waits for a lock before the
        /// migration is rolled back and tried again (milliseconds).
        #[arg(long, env = "WASMHOST_MIGRATE_LOCK_TIMEOUT_MS", default_value_t = 2000)]
        lock_timeout_ms: u64,
        /// How many times a migration is tried when its locks are not free.
        #[arg(long, env = "WASMHOST_MIGRATE_ATTEMPTS", default_value_t = 10)]
        attempts: u32,
    },
    /// Exit 0 if the URL answers 2xx (for container health checks).
    Healthcheck {
        #[arg(
            long,
            env = "WASMHOST_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9090/readyz"
        )]
        url: String,
        #[arg(long, default_value = "3")]
        timeout_secs: u64,
    },
    /// Precompile the manifest's components into a cache directory.
    Compile {
        #[arg(long, env = "WASMHOST_MANIFEST", default_value = "spin.toml")]
        manifest: PathBuf,
        #[arg(long, env = "WASMHOST_CACHE_DIR")]
        cache_dir: PathBuf,
        #[arg(long, env = "WASMHOST_MAX_CONCURRENCY", default_value = "256")]
        max_concurrency: usize,
        #[arg(long, env = "WASMHOST_MEMORY_LIMIT_MB", default_value = "128")]
        memory_limit_mb: usize,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The Spin manifest.
    #[arg(long, env = "WASMHOST_MANIFEST", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address for application traffic.
    #[arg(long, env = "WASMHOST_LISTEN", default_value = "0.0.0.0:3000")]
    listen: SocketAddr,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "WASMHOST_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// Requests handled at once; more get 503 with Retry-After.
    #[arg(long, env = "WASMHOST_MAX_CONCURRENCY", default_value = "256")]
    max_concurrency: usize,
    /// Deadline for a whole request, body included.
    #[arg(long, env = "WASMHOST_REQUEST_TIMEOUT_MS", default_value = "30000")]
    request_timeout_ms: u64,
    /// Largest request body accepted (413 beyond).
    #[arg(long, env = "WASMHOST_MAX_BODY_BYTES", default_value = "1048576")]
    max_body_bytes: usize,
    /// Linear-memory cap per component instance.
    #[arg(long, env = "WASMHOST_MEMORY_LIMIT_MB", default_value = "128")]
    memory_limit_mb: usize,
    /// Linear memory all component instances may hold together (`160MiB`,
    /// `1GiB`, a number of MiB, or `unlimited`/`0`): requests wait for room
    /// instead of growing the process, 503 at their deadline.
    #[arg(
        long,
        env = "WASMHOST_GUEST_MEMORY_BUDGET",
        default_value = host::guest_memory::Budget::DEFAULT
    )]
    guest_memory_budget: host::guest_memory::Budget,
    /// Connections per PostgreSQL pool.
    #[arg(long, env = "WASMHOST_PG_POOL_SIZE", default_value = "16")]
    pg_pool_size: usize,
    /// Cache prepared statements per connection.
    #[arg(long, env = "WASMHOST_PG_STATEMENT_CACHE", default_value = "true", action = clap::ArgAction::Set)]
    pg_statement_cache: bool,
    /// How long a request waits for a pooled connection.
    #[arg(long, env = "WASMHOST_PG_ACQUIRE_TIMEOUT_MS", default_value = "5000")]
    pg_acquire_timeout_ms: u64,
    /// Timeout for opening a database connection.
    #[arg(long, env = "WASMHOST_PG_CONNECT_TIMEOUT_MS", default_value = "3000")]
    pg_connect_timeout_ms: u64,
    /// How long to wait at start for the databases to answer.
    #[arg(long, env = "WASMHOST_DB_WAIT_SECS", default_value = "60")]
    db_wait_secs: u64,
    /// Key-value stores and SQLite databases, in the TOML format of
    /// `spin up --runtime-config-file`.
    #[arg(long, env = "WASMHOST_RUNTIME_CONFIG_FILE")]
    runtime_config_file: Option<PathBuf>,
    /// Where the default key-value store and SQLite database are kept
    /// (default: `.spin` beside the manifest, as in Spin).
    #[arg(long, env = "WASMHOST_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How long in-flight requests may run after SIGTERM.
    #[arg(long, env = "WASMHOST_SHUTDOWN_TIMEOUT_SECS", default_value = "30")]
    shutdown_timeout_secs: u64,
    /// After SIGTERM, how long keep-alive connections may stay open for
    /// their clients to close (set above the proxy's upstream keep-alive
    /// timeout so the proxy closes them, not the server).
    #[arg(long, env = "WASMHOST_IDLE_DRAIN_SECS", default_value = "5")]
    idle_drain_secs: u64,
    /// Directory of precompiled components (written if missing).
    #[arg(long, env = "WASMHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Behave as another runtime does where components can tell: `spin-3.6`
    /// reports every database error as `query-error::text` worded as Spin
    /// 3.6 does, and has no request body cap (`--max-body-bytes` is ignored).
    #[arg(long, env = "WASMHOST_COMPAT", default_value = "wasmhost")]
    compat: Compat,
    /// Requests one component instance may serve, one after another. 1 (the
    /// default) gives every request a fresh instance, as Spin does; more is
    /// for components that keep no request state in memory. An instance is
    /// never reused after a trap, a deadline, a limit hit or resources left
    /// open, or once its memory grew past the watermark.
    #[arg(long, env = "WASMHOST_MAX_INSTANCE_REUSE", default_value = "1")]
    max_instance_reuse: usize,
    /// How long an idle instance is kept for the next request (with reuse).
    #[arg(long, env = "WASMHOST_IDLE_INSTANCE_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    idle_instance_timeout: Duration,
    /// An instance whose linear memory grew past this is not reused.
    #[arg(
        long,
        env = "WASMHOST_INSTANCE_MEMORY_WATERMARK_MB",
        default_value = "16"
    )]
    instance_memory_watermark_mb: usize,
    /// Caps the requests of one route that run at once, queueing the rest
    /// within their deadline (503 past the queue): `[METHOD ]PATH=N[/QUEUE]`,
    /// e.g. `POST /api/users/login=2/128`; PATH ending in `/...` is a
    /// prefix; QUEUE defaults to 64. Repeatable, or comma-separated in the
    /// environment variable.
    #[arg(
        long = "route-limit",
        env = "WASMHOST_ROUTE_LIMITS",
        value_delimiter = ','
    )]
    route_limits: Vec<host::admission::RouteLimit>,
}

fn main() {
    let cli = Cli::parse();
    // One TLS provider for every client in the process that does not name
    // its own (the OTLP/HTTP exporter's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let format = match cli.log_format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    // Inside the runtime: the gRPC trace exporter binds to it.
    let telemetry = {
        let _entered = runtime.enter();
        telemetry::init(format)
    };
    let mut telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    if telemetry.tracing() {
        tracing::info!("exporting traces over OTLP");
    }
    let result = runtime.block_on(run(cli.command));
    {
        let _entered = runtime.enter();
        telemetry.shutdown();
    }
    if let Err(e) = result {
        tracing::error!("{e:#}");
        drop(telemetry);
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate {
            database_url,
            migrations_dir,
            lock_timeout_ms,
            attempts,
        } => {
            let settings = migrate::Settings {
                lock_timeout: Duration::from_millis(lock_timeout_ms),
                attempts: attempts.max(1),
            };
            let applied = migrate::run(&database_url, &migrations_dir, &settings).await?;
            tracing::info!(applied, "migrations up to date");
            Ok(())
        }
        Command::Healthcheck { url, timeout_secs } => {
            admin::healthcheck(&url, Duration::from_secs(timeout_secs)).await
        }
        Command::Compile {
            manifest,
            cache_dir,
            max_concurrency,
            memory_limit_mb,
        } => {
            let manifest = manifest::Manifest::load(&manifest)?;
            let engine = runtime::engine(&runtime::RuntimeSettings {
                max_concurrency,
                memory_limit_bytes: memory_limit_mb << 20,
                guest_memory_budget: host::guest_memory::Budget::Unlimited,
                cache_dir: Some(cache_dir.clone()),
                pool: pool_settings(1, true, 1000, 1000, Compat::Wasmhost),
                idle_instances: 0,
                runtime_config: RuntimeConfig::default(),
                state_dir: PathBuf::new(),
            })?;
            for (id, component) in &manifest.components {
                runtime::load_component(&engine, &component.source, Some(&cache_dir))
                    .with_context(|| format!("component `{id}`"))?;
                tracing::info!(component = %id, "precompiled");
            }
            Ok(())
        }
    }
}

fn pool_settings(
    size: usize,
    cache: bool,
    acquire_ms: u64,
    connect_ms: u64,
    compat: Compat,
) -> postgres::client::PoolSettings {
    postgres::client::PoolSettings {
        max_connections: size.max(1),
        statement_cache: cache,
        connect_timeout: Duration::from_millis(connect_ms),
        acquire_timeout: Duration::from_millis(acquire_ms),
        errors: compat.db_errors(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; serve on.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Waits, with backoff, until every service the components depend on (their
/// databases) answers.
async fn wait_for_dependencies(dependencies: &[Dependency], wait: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    for dependency in dependencies {
        let (name, source) = (dependency.name(), &dependency.source);
        let mut delay = Duration::from_millis(200);
        loop {
            match dependency.check().await {
                Ok(()) => {
                    tracing::info!(dependency = %name, source = %source, "{} reachable", dependency.kind);
                    break;
                }
                Err(e) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        anyhow::bail!(
                            "{name} (from {source}) unreachable after {}s: {e:#}",
                            wait.as_secs()
                        );
                    }
                    let pause = delay.min(deadline - now);
                    tracing::warn!(dependency = %name, error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "{} not reachable yet", dependency.kind);
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let manifest = manifest::Manifest::load(&args.manifest)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let reuse = ReuseSettings {
        max_reuse: args.max_instance_reuse.max(1),
        idle_timeout: args.idle_instance_timeout,
        memory_watermark: args.instance_memory_watermark_mb.saturating_mul(1 << 20),
    };
    let settings = runtime::RuntimeSettings {
        max_concurrency: args.max_concurrency.max(1),
        memory_limit_bytes: args.memory_limit_mb.max(1) << 20,
        guest_memory_budget: args.guest_memory_budget,
        cache_dir: args.cache_dir.clone(),
        pool: pool_settings(
            args.pg_pool_size,
            args.pg_statement_cache,
            args.pg_acquire_timeout_ms,
            args.pg_connect_timeout_ms,
            args.compat,
        ),
        idle_instances: if reuse.enabled() {
            args.max_concurrency.max(1)
        } else {
            0
        },
        runtime_config: match &args.runtime_config_file {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        },
        state_dir: args
            .state_dir
            .clone()
            .unwrap_or_else(|| manifest.base_dir.join(".spin")),
    };
    let rt = Arc::new(runtime::Runtime::new(settings, metrics)?);
    rt.start_epoch_ticker();
    let application = Application::from_manifest(&rt, &manifest, 1, &reuse)?;
    wait_for_dependencies(
        &application.dependencies,
        Duration::from_secs(args.db_wait_secs),
    )
    .await?;
    let components = application.components.len();
    let applications = Reloader::new(
        rt.clone(),
        args.manifest.clone(),
        reuse.clone(),
        application,
    );
    reload::reload_on_sighup(applications.clone()).context("cannot handle SIGHUP")?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    let admin = Arc::new(admin::Admin {
        runtime: rt.clone(),
        applications: applications.clone(),
        shutting_down: false.into(),
    });
    tokio::spawn(admin::serve(admin.clone(), admin_listener));

    let srv = Arc::new(server::Server::new(
        rt.clone(),
        applications,
        server::ServerSettings {
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_body_bytes: args.compat.max_body_bytes(args.max_body_bytes),
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
            header_read_timeout: Duration::from_secs(10),
            idle_drain: Duration::from_secs(args.idle_drain_secs),
            route_limits: args.route_limits.clone(),
        },
    ));
    tracing::info!(
        application = %manifest.name,
        listen = %args.listen,
        admin = %args.admin_listen,
        components,
        compat = args.compat.name(),
        max_instance_reuse = reuse.max_reuse,
        guest_memory_budget = %args.guest_memory_budget,
        route_limits = %args
            .route_limits
            .iter()
            .map(|limit| format!("{limit}={}/{}", limit.concurrency, limit.queue))
            .collect::<Vec<_>>()
            .join(","),
        "serving"
    );
    let shutdown = {
        let admin = admin.clone();
        async move {
            shutdown_signal().await;
            admin.shutting_down.store(true, Ordering::Relaxed);
        }
    };
    server::serve(srv, listener, shutdown).await
}
