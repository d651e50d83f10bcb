//! The PostgreSQL server the integration tests use, chosen in one place.
//!
//! [`test_database_url`] returns a superuser URL:
//!
//! 1. `TEST_DATABASE_URL` when it is set;
//! 2. else, when a Docker engine answers on its local socket, a throwaway
//!    container of [`POSTGRES_IMAGE`] (the image `docker/compose.yaml` runs),
//!    started with `testcontainers` once per test binary and shared by its
//!    tests, published on 127.0.0.1 only;
//! 3. else the local server, [`LOCAL_TEST_DATABASE_URL`].
//!
//! It prints one line to stderr saying which. When the container was chosen
//! but does not start (the image is missing, the engine refuses, PostgreSQL
//! does not come up), every caller gets the error: no silent fallback.
//!
//! The container is removed when the test binary exits, whether its tests
//! passed or failed: an `atexit` handler asks the thread that owns the
//! container to remove it and waits for that. A process killed by a signal
//! runs no exit handlers, so a small watcher process (`sh` and the `docker`
//! CLI, in its own process group) waits for the end of a pipe from the test
//! process and then removes every container with this run's label.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::wait::LogWaitStrategy;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};
use url::Url;

use super::psql::psql;
use crate::config::environment;
use crate::docker::{ApiVersion, ApiVersionRelay, Engine, EngineAddress};
use crate::secrets::random_hex;

/// The PostgreSQL image of `docker/compose.yaml` (`services.db.image`); a
/// unit test keeps the two equal.
pub const POSTGRES_IMAGE: &str = "postgres:17.6-bookworm";

/// The server used when neither `TEST_DATABASE_URL` nor a Docker engine is
/// there.
pub const LOCAL_TEST_DATABASE_URL: &str =
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// Label on the test container; its value identifies the test process.
const RUN_LABEL: &str = "conduit.test-database";

/// The image's readiness line. The official image's entrypoint initialises
/// the cluster with a temporary server (which prints it once and listens on
/// its Unix socket only), then starts the real server, which prints it again.
const READY_LINE: &str = "database system is ready to accept connections";

/// The superuser URL of the test server (see the module comment).
pub async fn test_database_url() -> Result<String> {
    static CHOSEN: tokio::sync::OnceCell<Result<String, String>> =
        tokio::sync::OnceCell::const_new();
    CHOSEN
        .get_or_init(|| async { choose().await.map_err(|error| format!("{error:#}")) })
        .await
        .clone()
        .map_err(|error| anyhow::anyhow!("test database: {error}"))
}

/// Written straight to the process's stderr: libtest captures what `eprintln!`
/// prints inside a test and shows it only when that test fails.
fn announce(line: &str) {
    let _ = writeln!(std::io::stderr(), "test database: {line}");
}

/// `host:port` of a URL, without its credentials.
fn server_of(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port().unwrap_or(5432)
        ),
        Err(_) => "an unparsable URL".into(),
    }
}

async fn choose() -> Result<String> {
    let environment = environment();
    if let Some(url) = &environment.test_database_url {
        announce(&format!("TEST_DATABASE_URL ({})", server_of(url)));
        return Ok(url.clone());
    }
    let Some(engine) = local_engine(environment.docker_host.as_deref()).await? else {
        return Ok(LOCAL_TEST_DATABASE_URL.into());
    };
    ensure_image(&engine).await?;
    let begun = Instant::now();
    let container = start_container(engine.clone()).await?;
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{}/postgres?sslmode=disable",
        container.password, container.port
    );
    wait_until_it_answers(&url, &container).await?;
    announce(&format!(
        "testcontainers {POSTGRES_IMAGE} at 127.0.0.1:{} (container {}, Docker {} API {}{}; \
         ready in {:.1}s)",
        container.port,
        container.name,
        engine.version,
        engine.api_version,
        if container.relayed {
            " through the API-version relay"
        } else {
            ""
        },
        begun.elapsed().as_secs_f64()
    ));
    Ok(url)
}

/// The Docker engine on the local socket `docker_host` names (the default
/// socket when unset), or `None`, said on stderr, when none answers there.
async fn local_engine(docker_host: Option<&str>) -> Result<Option<Engine>> {
    let socket = match EngineAddress::from_docker_host(docker_host) {
        EngineAddress::Unix(socket) => socket,
        EngineAddress::Other(host) => bail!(
            "DOCKER_HOST={host}: a test container needs a local engine on a Unix socket; \
             set TEST_DATABASE_URL to use a PostgreSQL server instead"
        ),
    };
    let probe = {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || Engine::probe(&socket, Duration::from_secs(5))).await?
    };
    match probe {
        Ok(engine) => Ok(Some(engine)),
        Err(error) => {
            announce(&format!(
                "local server at {} (no Docker engine answers at {}: {error:#})",
                server_of(LOCAL_TEST_DATABASE_URL),
                socket.display()
            ));
            Ok(None)
        }
    }
}

/// Fails, saying how to get it, when the engine lacks [`POSTGRES_IMAGE`]:
/// test containers are never pulled.
async fn ensure_image(engine: &Engine) -> Result<()> {
    let has_image = {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.has_image(POSTGRES_IMAGE)).await??
    };
    if !has_image {
        bail!(
            "the Docker engine at {} answers, but has no image {POSTGRES_IMAGE} and test \
             containers are never pulled: build the local stand-in images with \
             docker/standins/build (or `docker pull {POSTGRES_IMAGE}` where a registry is \
             reachable), or set TEST_DATABASE_URL to use a PostgreSQL server instead",
            engine.socket.display()
        );
    }
    Ok(())
}

/// Waits until PostgreSQL answers on the container's published port, seen
/// from this machine as the tests and wasmhost will use it.
async fn wait_until_it_answers(url: &str, container: &Started) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = psql(url, "SELECT 1").await {
        if Instant::now() > deadline {
            return Err(error.context(format!(
                "container {} is up, but PostgreSQL does not answer on 127.0.0.1:{}",
                container.name, container.port
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// What the owner thread reports once the container is ready.
struct Started {
    name: String,
    port: u16,
    password: String,
    relayed: bool,
}

/// Handed to the exit handler: ask the owner thread to remove the container,
/// and learn when it has.
struct Owner {
    stop: tokio::sync::oneshot::Sender<()>,
    removed: std::sync::mpsc::Receiver<()>,
    relay_dir: Option<PathBuf>,
}

static OWNER: Mutex<Option<Owner>> = Mutex::new(None);

/// The watcher's end of the pipe stays open as long as this process lives.
static WATCHER_PIPE: Mutex<Option<std::process::ChildStdin>> = Mutex::new(None);

extern "C" fn remove_container_at_exit() {
    let owner = OWNER.lock().ok().and_then(|mut owner| owner.take());
    if let Some(owner) = owner {
        if owner.stop.send(()).is_ok() {
            let _ = owner.removed.recv_timeout(Duration::from_secs(30));
        }
        if let Some(dir) = owner.relay_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts the container on a thread of its own, with its own runtime: a
/// test's runtime ends with the test, the container (and the relay, when
/// there is one) must live as long as the process.
async fn start_container(engine: Engine) -> Result<Started> {
    let run = format!("{}-{}", std::process::id(), random_hex(4)?);
    let relay_dir = (engine.api_version < client_api_version())
        .then(|| std::env::temp_dir().join(format!("devstack-docker-{run}")));
    spawn_watcher(&run, relay_dir.as_deref())?;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<Started, String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (removed_tx, removed_rx) = std::sync::mpsc::channel::<()>();
    let thread_relay_dir = relay_dir.clone();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            own_container(engine, run, thread_relay_dir, ready_tx, stop_rx, removed_tx)
        })?;

    *OWNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(Owner {
        stop: stop_tx,
        removed: removed_rx,
        relay_dir,
    });
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function; it runs once, at exit.
        unsafe { libc::atexit(remove_container_at_exit) };
    });

    ready_rx
        .await
        .context("the test-postgres thread ended")?
        .map_err(anyhow::Error::msg)
}

/// The body of the thread that owns the container: starts it, reports on
/// `ready`, then waits for `stop` to remove it and says so on `removed`.
fn own_container(
    engine: Engine,
    run: String,
    relay_dir: Option<PathBuf>,
    ready: tokio::sync::oneshot::Sender<Result<Started, String>>,
    stop: tokio::sync::oneshot::Receiver<()>,
    removed: std::sync::mpsc::Sender<()>,
) {
    // Multi-threaded: the relay's tasks must keep running while
    // testcontainers blocks a thread (it removes containers it drops with
    // block_in_place).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("test-postgres-rt")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(format!("tokio runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let container = match run_container(&engine, &run, relay_dir).await {
            Ok((container, started)) => {
                let _ = ready.send(Ok(started));
                container
            }
            Err(error) => {
                let _ = ready.send(Err(format!("{error:#}")));
                return;
            }
        };
        // Until the exit handler asks (or can no longer ask).
        let _ = stop.await;
        if let Err(error) = container.rm().await {
            announce(&format!("removing the test container: {error}"));
        }
        let _ = removed.send(());
    });
}

/// The API version testcontainers' client sends.
fn client_api_version() -> ApiVersion {
    let version = testcontainers::bollard::API_DEFAULT_VERSION;
    ApiVersion {
        major: version.major_version as u32,
        minor: version.minor_version as u32,
    }
}

async fn run_container(
    engine: &Engine,
    run: &str,
    relay_dir: Option<PathBuf>,
) -> Result<(testcontainers::ContainerAsync<GenericImage>, Started)> {
    let relayed = relay_dir.is_some();
    if let Some(dir) = relay_dir {
        start_relay(&dir, engine)?;
    }
    let container_name = format!("conduit-test-postgres-{run}");
    let password = random_hex(16)?;
    let container = postgres_container(run, &container_name, &password)?
        .start()
        .await
        .with_context(|| format!("starting {POSTGRES_IMAGE} with testcontainers"))?;
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .context("the container's published port")?;
    Ok((
        container,
        Started {
            name: container_name,
            port,
            password,
            relayed,
        },
    ))
}

/// Starts an [`ApiVersionRelay`] to `engine` in `dir` (made private here)
/// and points testcontainers at it.
fn start_relay(dir: &std::path::Path, engine: &Engine) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let relay = ApiVersionRelay::start(&dir.join("docker.sock"), engine)?;
    // testcontainers finds its engine through DOCKER_HOST only.
    // SAFETY: set before testcontainers' first use, while every test of
    // this process that needs the database waits for it; Rust's own
    // environment accesses are serialised with set_var.
    unsafe { std::env::set_var("DOCKER_HOST", format!("unix://{}", relay.socket.display())) };
    Ok(())
}

/// The test container: [`POSTGRES_IMAGE`] with `password` for `postgres`,
/// labelled with `run`, published on 127.0.0.1 only.
fn postgres_container(
    run: &str,
    container_name: &str,
    password: &str,
) -> Result<testcontainers::ContainerRequest<GenericImage>> {
    let (name, tag) = POSTGRES_IMAGE
        .split_once(':')
        .context("POSTGRES_IMAGE has no tag")?;
    Ok(GenericImage::new(name, tag)
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::log(
            LogWaitStrategy::stdout_or_stderr(READY_LINE).with_times(2),
        ))
        .with_env_var("POSTGRES_USER", "postgres")
        .with_env_var("POSTGRES_PASSWORD", password)
        // A throwaway server: durability buys nothing and slows down the
        // CREATE DATABASE every test runs.
        .with_cmd([
            "postgres",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
        ])
        .with_label(RUN_LABEL, run)
        .with_container_name(container_name)
        .with_startup_timeout(Duration::from_secs(120))
        // Published on 127.0.0.1 only (testcontainers publishes on every
        // interface otherwise), on a port the engine picks.
        .with_host_config_modifier(|host_config| {
            host_config.publish_all_ports = Some(false);
            host_config.port_bindings = Some(HashMap::from([(
                "5432/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )]));
        }))
}

/// Starts the process that removes this run's containers (and the relay's
/// directory) once this process is gone, however it ended.
fn spawn_watcher(run: &str, relay_dir: Option<&std::path::Path>) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let script = r#"cat >/dev/null
ids=$(docker ps -aq --filter "label=$1")
[ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1
[ -z "$2" ] || rm -rf -- "$2""#;
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("test-database-watcher")
        .arg(format!("{RUN_LABEL}={run}"))
        .arg(relay_dir.map(|dir| dir.as_os_str()).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C in the terminal signals the test's
        // group, and the watcher has to outlive the test.
        .process_group(0)
        .spawn()
        .context("starting the test container's watcher (sh)")?;
    *WATCHER_PIPE.lock().unwrap_or_else(|e| e.into_inner()) = child.stdin.take();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `services.db.image` of docker/compose.yaml, read line by line.
    fn compose_db_image(compose: &str) -> Option<String> {
        let mut in_services = false;
        let mut in_db = false;
        for line in compose.lines() {
            if !line.starts_with(' ') && !line.trim().is_empty() {
                in_services = line.trim_end() == "services:";
                in_db = false;
                continue;
            }
            if in_services && line.starts_with("  ") && !line.starts_with("   ") {
                in_db = line.trim_end() == "  db:";
                continue;
            }
            if in_db && let Some(image) = line.trim().strip_prefix("image:") {
                return Some(image.trim().trim_matches('"').to_owned());
            }
        }
        None
    }

    #[test]
    fn the_test_container_runs_the_image_compose_runs() {
        let compose =
            std::fs::read_to_string(crate::config::project_root().join("docker/compose.yaml"))
                .expect("docker/compose.yaml");
        assert_eq!(
            compose_db_image(&compose).as_deref(),
            Some(POSTGRES_IMAGE),
            "docker/compose.yaml's services.db.image and POSTGRES_IMAGE differ"
        );
    }

    #[test]
    fn the_compose_reader_finds_the_db_service_only() {
        let compose = "x-a: &a\n  image: other:1\nservices:\n  api:\n    image: api:1\n  \
                       db:\n    restart: always\n    image: \"postgres:9\"\n  web:\n    image: w\n";
        assert_eq!(compose_db_image(compose).as_deref(), Some("postgres:9"));
    }

    #[test]
    fn server_of_hides_credentials() {
        assert_eq!(
            server_of("postgres://postgres:secret@127.0.0.1:5999/postgres"),
            "127.0.0.1:5999"
        );
        assert_eq!(server_of(LOCAL_TEST_DATABASE_URL), "127.0.0.1:5432");
    }
}
