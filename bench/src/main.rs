//! Helpers for `bench/run` (the benchmark is the Python package `bench/conduit_bench`):
//!
//! - `native-hello`: the smallest hyper server answering `hello`, the native
//!   reference the hello component is compared against (same runtime shape as
//!   wasmhost: tokio multi-thread, hyper 1, one task per connection).
//! - `stack`: the local stack from the `devstack` library (a private
//!   PostgreSQL cluster, N wasmhost replicas, nginx with the project's config
//!   over HTTPS), plus a second nginx with the same config whose API server
//!   block listens without TLS, only so that the driver can measure what TLS
//!   costs; described as one JSON line on stdout for the driver, kept up
//!   until stdin closes or SIGINT/SIGTERM arrives.
//! - `otlp-sink`: where traced replicas send their spans: one OTLP receiver
//!   (`devstack::otlp`, counting only) per `--listen` address, so that each
//!   replica's spans are counted apart; the counts are printed as JSON
//!   whenever the driver asks by writing a line to stdin.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use devstack::nginx::{Nginx, NginxPorts};
use devstack::otlp::{Keep, Receiver};
use devstack::{Database, Echo, Stack, StackConfig, free_port};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "Benchmark helpers (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A native hyper server answering every request with `hello`
    NativeHello {
        #[arg(long, default_value = "127.0.0.1:3900")]
        listen: SocketAddr,
    },
    /// Start the local stack and print its addresses and process ids as JSON
    Stack {
        /// Project root (spin.toml, migrations/, docker/nginx/nginx.conf)
        #[arg(long)]
        root: PathBuf,
        /// nginx prefix, component cache and the private cluster's data
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Extra replica environment, NAME=VALUE (repeatable)
        #[arg(long = "env")]
        replica_env: Vec<String>,
    },
    /// Count the spans OTLP exporters send (http/protobuf). Prints the
    /// receivers' endpoints as one JSON line, then their counts as one JSON
    /// line for every line read on stdin, and once more when stdin closes or
    /// SIGINT/SIGTERM arrives
    OtlpSink {
        /// Address of one receiver, counted apart from the others
        /// (repeatable; port 0 picks a free port)
        #[arg(long = "listen", default_value = "127.0.0.1:0")]
        listen: Vec<SocketAddr>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::NativeHello { listen } => runtime.block_on(native_hello(listen)),
        Command::Stack {
            root,
            state_dir,
            replicas,
            replica_env,
        } => runtime.block_on(stack(root, state_dir, replicas, replica_env)),
        Command::OtlpSink { listen } => runtime.block_on(otlp_sink(listen)),
    }
}

async fn native_hello(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("listening on http://{listen}");
    loop {
        let (stream, _) = listener.accept().await?;
        // Same as the host: small responses must not wait for Nagle.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                let response = Response::builder()
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from_static(b"hello")))
                    .unwrap_or_default();
                Ok::<_, Infallible>(response)
            });
            // A client closing its connection mid-request is normal under load.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn stack(
    root: PathBuf,
    state_dir: PathBuf,
    replicas: usize,
    replica_env: Vec<String>,
) -> Result<()> {
    let database = Database::Private {
        data_dir: state_dir.join("postgres"),
        port: free_port()?,
    };
    let mut config = StackConfig::new(&root, &state_dir, database)?;
    config.replicas = replicas;
    for pair in replica_env {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--env {pair:?} is not NAME=VALUE"))?;
        config.replica_env.push((name.to_owned(), value.to_owned()));
    }
    let stack = Stack::start(config).await?;
    let mut plain = Nginx::new(
        &root.join("docker/nginx/nginx.conf"),
        &state_dir.join("nginx-plain"),
        NginxPorts {
            https: free_port()?,
            http: free_port()?,
        },
        &stack.nginx.tls_dir,
        &stack
            .replicas
            .iter()
            .map(|replica| replica.spec.api_port)
            .collect::<Vec<_>>(),
        Echo::Quiet,
    )
    .without_tls_for_comparison();
    plain.start().await?;
    let description = serde_json::json!({
        "url": stack.url(),
        "ca": stack.nginx.tls_dir.join("ca.crt"),
        "nginx_pid_file": stack.nginx.prefix.join("nginx.pid"),
        "plain_url": plain.url(),
        "plain_nginx_pid_file": plain.prefix.join("nginx.pid"),
        "app_database_url": stack.database.app_url,
        "owner_database_url": stack.database.owner_url,
        "postgres_data_dir": stack.postgres.as_ref().map(|p| p.data_dir.display().to_string()),
        "replicas": stack.replicas.iter().map(|replica| serde_json::json!({
            "name": replica.name(),
            "api_url": replica.api_url(),
            "admin_url": replica.admin_url(),
            "pid": replica.pid(),
        })).collect::<Vec<_>>(),
    });
    println!("{description}");

    // The driver closes our stdin when it is done (or dies): stop then too.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let stdin_closed = async {
        while let Ok(read) = stdin.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    plain.stop().await?;
    stack.stop().await
}

/// One counting OTLP receiver per address. The driver reads the counts at
/// the moments it chooses (before a traced replica starts, after it has
/// stopped and flushed its last batch) by writing a line to our stdin.
async fn otlp_sink(listen: Vec<SocketAddr>) -> Result<()> {
    let mut receivers = Vec::with_capacity(listen.len());
    for addr in listen {
        receivers.push(Receiver::http(addr, Keep::CountOnly).await?);
    }
    emit(&serde_json::json!({
        "receivers": receivers.iter().map(|receiver| serde_json::json!({
            "endpoint": receiver.endpoint(),
            "protocol": receiver.protocol(),
        })).collect::<Vec<_>>(),
    }))?;
    let counts = || {
        serde_json::json!({
            "receivers": receivers.iter().map(|receiver| serde_json::json!({
                "spans": receiver.span_count(),
                "exports": receiver.exports(),
            })).collect::<Vec<_>>(),
        })
    };

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(_)) => emit(&counts())?,
                // stdin closed (the driver is done or gone) or unreadable.
                _ => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    // The last counts, for whoever still reads; nobody may, so a closed
    // pipe is not an error here.
    let _ = emit(&counts());
    Ok(())
}

/// One JSON line on stdout, flushed at once (the driver waits for it).
fn emit(value: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()?;
    Ok(())
}
