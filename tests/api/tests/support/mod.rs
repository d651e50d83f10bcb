//! Starts one `wasmhost serve` with the application manifest on a scratch
//! database migrated by `wasmhost migrate`, and a small JSON client for it.
//! Process management and scratch databases come from `devstack`; everything
//! is torn down when `Server` is dropped.
//!
//! Shared by several test binaries, each of which uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use devstack::postgres::{ScratchDatabase, test_database_url};
use devstack::replica::{Replica, ReplicaSpec};
use devstack::{Echo, free_port, project_root, random_hex};
use reqwest::Method;
use serde_json::Value;

pub struct Server {
    pub api: Api,
    /// The `jwt_secret` the host was given, to forge tokens in tests.
    pub jwt_secret: String,
    // Field order is drop order: stop the host before dropping its database.
    replica: Replica,
    database: ScratchDatabase,
}

/// The application manifest to serve: `$API_TESTS_MANIFEST` (for components
/// built into another target directory), else the project's spin.toml.
fn manifest(root: &Path) -> PathBuf {
    std::env::var_os("API_TESTS_MANIFEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("spin.toml"))
}

impl Server {
    pub async fn start() -> Result<Server> {
        Self::start_with_env(Vec::new()).await
    }

    /// Starts the host with `extra` added to its environment.
    pub async fn start_with_env(extra: Vec<(String, String)>) -> Result<Server> {
        let root = project_root();
        let manifest = manifest(&root);
        let wasmhost = devstack::stack::wasmhost_program(&root);
        if !wasmhost.is_file() {
            bail!(
                "{} is missing: build it with `cargo build --release -p host`",
                wasmhost.display()
            );
        }
        let database = ScratchDatabase::create(&test_database_url().await?).await?;
        let migrate = tokio::process::Command::new(&wasmhost)
            .arg("migrate")
            .arg("--database-url")
            .arg(&database.owner_url)
            .arg("--migrations-dir")
            .arg(root.join("migrations"))
            .output()
            .await
            .context("running wasmhost migrate")?;
        if !migrate.status.success() {
            bail!(
                "wasmhost migrate failed: {}",
                String::from_utf8_lossy(&migrate.stderr)
            );
        }

        let app_url = url::Url::parse(&database.app_url)?;
        let db_host = app_url.host_str().unwrap_or("127.0.0.1").to_owned();
        let db_port = app_url.port().unwrap_or(5432).to_string();
        let jwt_secret = random_hex(32)?;
        let spec = ReplicaSpec {
            index: 1,
            api_port: free_port()?,
            admin_port: free_port()?,
            wasmhost,
            manifest,
            root: root.clone(),
            env: vec![
                ("SPIN_VARIABLE_DB_URL".into(), database.app_url.clone()),
                ("SPIN_VARIABLE_DB_HOST".into(), db_host),
                ("SPIN_VARIABLE_DB_PORT".into(), db_port),
                ("SPIN_VARIABLE_JWT_SECRET".into(), jwt_secret.clone()),
                ("SPIN_VARIABLE_JWT_TTL_SECONDS".into(), "3600".into()),
            ]
            .into_iter()
            .chain(extra)
            .collect(),
            echo: Echo::Quiet,
        };
        let mut replica = Replica::new(spec)?;
        replica.start()?;
        replica.wait_ready(Duration::from_secs(120)).await?;
        let api = Api {
            base: format!("{}/api", replica.api_url()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        Ok(Server {
            api,
            jwt_secret,
            replica,
            database,
        })
    }

    /// The host's recent log lines, for failure messages.
    pub fn log(&self) -> String {
        self.replica.log.last(60)
    }

    /// SQL statements the host has run so far (its metrics).
    pub async fn statements(&self) -> Result<f64> {
        let metrics = self.replica.metrics().await?;
        Ok(devstack::replica::sum_counter(
            &metrics,
            "wasmhost_pg_statements_total",
        ))
    }

    /// Runs `sql` on the scratch database as its superuser; psql's unaligned
    /// output.
    pub async fn sql(&self, sql: &str) -> Result<String> {
        devstack::postgres::psql(&self.database.superuser_url, sql).await
    }
}

/// A response: status and body (JSON when it parses, else a JSON string).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub content_type: Option<String>,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    /// Sends raw bytes with an optional content type and token.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Token {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            content_type,
        }
    }

    /// Sends JSON (when given) as `application/json`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let bytes = body.map(|value| value.to_string().into_bytes());
        let content_type = bytes.as_ref().map(|_| "application/json");
        self.raw(method, path, token, content_type, bytes).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }
}

/// `2016-02-18T03:22:56.637Z`: ISO-8601, UTC, milliseconds.
pub fn is_iso8601_utc_millis(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    bytes.len() == 24
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && bytes[19] == b'.'
        && digits(20..23)
        && bytes[23] == b'Z'
}

/// An HS256 token signed with `secret` for user `sub` that expired `ago`
/// seconds ago (to prove the API checks `exp`, not just the signature).
pub fn expired_token(secret: &str, sub: &str, ago: i64) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use hmac::{Hmac, Mac};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"sub": sub, "iat": now - ago - 60, "exp": now - ago}).to_string(),
    );
    let input = format!("{header}.{claims}");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

impl Api {
    /// POST without a body (follow, favorite).
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::POST, path, token, None).await
    }
}
