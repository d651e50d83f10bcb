//! Shared plumbing: one `wasmhost serve` of the application manifest on a
//! scratch database (devstack's `ScratchDatabase` and `Replica`), a client
//! that keeps raw status, headers and bytes, token forging, and statistics.
//!
//! Every test takes [`serial`] first: the machine has two cores, and the
//! timing and abuse measurements are only meaningful without another test's
//! load next to them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devstack::postgres::{ScratchDatabase, test_database_url};
use devstack::replica::{Replica, ReplicaSpec};
use devstack::{Echo, free_port, project_root, random_hex};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Serializes the tests of this binary (see the module comment).
pub async fn serial() -> MutexGuard<'static, ()> {
    devstack::kill_children_on_signal();
    ONE_TEST_AT_A_TIME.lock().await
}

/// The application manifest: `$DEVSTACK_MANIFEST` (components built into
/// another target directory, as devstack reads it), else `<root>/spin.toml`.
pub fn manifest() -> PathBuf {
    std::env::var_os("DEVSTACK_MANIFEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("spin.toml"))
}

pub fn wasmhost() -> Result<PathBuf> {
    let wasmhost = devstack::stack::wasmhost_program(&project_root());
    ensure!(
        wasmhost.is_file(),
        "{} is missing: cargo build --release -p host",
        wasmhost.display()
    );
    Ok(wasmhost)
}

/// Fails early, with the command to run, when a build output is missing.
pub fn check_components() -> Result<()> {
    let manifest = manifest();
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let dir = manifest.parent().context("manifest path")?;
    for line in text.lines().filter(|line| line.starts_with("source = ")) {
        let source = line.trim_start_matches("source = ").trim_matches('"');
        let path = dir.join(source);
        ensure!(
            path.is_file(),
            "{} is missing: cargo build --release --target wasm32-wasip2 -p conduit -p docs",
            path.display()
        );
    }
    Ok(())
}

/// Runs `wasmhost migrate` as the schema owner.
pub async fn migrate(owner_url: &str) -> Result<()> {
    let output = tokio::process::Command::new(wasmhost()?)
        .arg("migrate")
        .arg("--database-url")
        .arg(owner_url)
        .arg("--migrations-dir")
        .arg(project_root().join("migrations"))
        .output()
        .await
        .context("running wasmhost migrate")?;
    if !output.status.success() {
        bail!(
            "wasmhost migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Precompiled components shared by every replica this process starts, so a
/// replica is ready in milliseconds instead of compiling Conduit each time.
async fn component_cache() -> Result<PathBuf> {
    static CACHE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    CACHE
        .get_or_try_init(|| async {
            let dir = std::env::temp_dir().join(format!("security-tests-{}", std::process::id()));
            let output = tokio::process::Command::new(wasmhost()?)
                .arg("compile")
                .arg("--manifest")
                .arg(manifest())
                .arg("--cache-dir")
                .arg(&dir)
                .current_dir(project_root())
                .output()
                .await?;
            ensure!(
                output.status.success(),
                "wasmhost compile: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(dir)
        })
        .await
        .cloned()
}

/// One replica of the application on a fresh, migrated scratch database.
pub struct Server {
    pub base: String,
    pub jwt_secret: String,
    pub replica: Replica,
    pub database: ScratchDatabase,
}

impl Server {
    /// `extra_env` is added to (and may override) the usual variables.
    pub async fn start(extra_env: &[(&str, &str)]) -> Result<Server> {
        check_components()?;
        let database = ScratchDatabase::create(&test_database_url().await?).await?;
        migrate(&database.owner_url).await?;
        let app_url = url::Url::parse(&database.app_url)?;
        let jwt_secret = random_hex(32)?;
        let mut env: Vec<(String, String)> = vec![
            ("SPIN_VARIABLE_DB_URL".into(), database.app_url.clone()),
            (
                "SPIN_VARIABLE_DB_HOST".into(),
                app_url.host_str().unwrap_or("127.0.0.1").into(),
            ),
            (
                "SPIN_VARIABLE_DB_PORT".into(),
                app_url.port().unwrap_or(5432).to_string(),
            ),
            ("SPIN_VARIABLE_JWT_SECRET".into(), jwt_secret.clone()),
            (
                "WASMHOST_CACHE_DIR".into(),
                component_cache().await?.display().to_string(),
            ),
            ("WASMHOST_REQUEST_TIMEOUT_MS".into(), "10000".into()),
        ];
        for (name, value) in extra_env {
            env.retain(|(existing, _)| existing != name);
            env.push(((*name).into(), (*value).into()));
        }
        let mut replica = Replica::new(ReplicaSpec {
            index: 1,
            api_port: free_port()?,
            admin_port: free_port()?,
            wasmhost: wasmhost()?,
            manifest: manifest(),
            root: project_root(),
            env,
            echo: Echo::Quiet,
        })?;
        replica.start()?;
        replica.wait_ready(Duration::from_secs(120)).await?;
        Ok(Server {
            base: replica.api_url(),
            jwt_secret,
            replica,
            database,
        })
    }

    /// Whether the replica process is still up and its admin port answers.
    pub async fn alive(&self) -> bool {
        let url = format!("{}/healthz", self.replica.admin_url());
        matches!(
            client().get(url).send().await.map(|r| r.status().as_u16()),
            Ok(200)
        )
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|error| panic!("building an HTTP client: {error}"))
}

/// A response as received: status, content type and the raw body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub elapsed: Duration,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// A request with optional raw `Authorization` value and raw body.
pub async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    authorization: Option<&[u8]>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Reply> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut request = http.request(method.clone(), url);
    if let Some(value) = authorization {
        request = request.header(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(value)?,
        );
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let started = Instant::now();
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await?.to_vec();
    Ok(Reply {
        status,
        content_type,
        bytes,
        elapsed: started.elapsed(),
    })
}

pub async fn send_json(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<Reply> {
    let authorization = token.map(|token| format!("Token {token}"));
    send(
        http,
        method,
        url,
        authorization.as_deref().map(str::as_bytes),
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await
}

/// Registers `name` (`<name>@example.com`, password `password`) and returns
/// the token.
pub async fn register(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> Result<String> {
    let reply = send_json(
        http,
        "POST",
        &format!("{base}/api/users"),
        None,
        &json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": password}}),
    )
    .await?;
    ensure!(
        reply.status == 201,
        "register {name}: {} {}",
        reply.status,
        reply.text()
    );
    reply.json()["user"]["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token")
}

/// A JWT with the given header and claims, its signature made by `sign`
/// over `base64url(header).base64url(claims)`.
pub fn forge_token(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(sign(input.as_bytes()));
    format!("{input}.{signature}")
}

pub fn hs256(secret: &str) -> impl Fn(&[u8]) -> Vec<u8> {
    let key = secret.as_bytes().to_vec();
    move |input| {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

pub fn hs512(secret: &str) -> impl Fn(&[u8]) -> Vec<u8> {
    let key = secret.as_bytes().to_vec();
    move |input| {
        let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// The `sub` claim of a token we were issued.
pub fn subject(token: &str) -> Result<String> {
    let claims = token.split('.').nth(1).context("token without claims")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims)?)?;
    claims["sub"].as_str().map(str::to_owned).context("no sub")
}

pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

pub fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples[index.min(samples.len() - 1)]
}

/// Raises this process's open-file limit to its hard limit (children such as
/// nginx inherit it) and returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// Reads the file at `path` relative to the project root.
pub fn read_project_file(path: &str) -> Result<String> {
    let full: &Path = &project_root().join(path);
    std::fs::read_to_string(full).with_context(|| format!("reading {}", full.display()))
}
