//! What the stack tests share, whether the stack under test is the local one
//! (`fault_tolerance.rs`, `release.rs`) or the compose project (`compose.rs`,
//! `compose_release.rs`): a Conduit client over verified HTTPS through nginx,
//! the 2,000 GETs during which something is killed, and the stream of writes
//! kept while the database restarts; the compose project and how to drive it
//! (`compose`); a release rolled out under load and its checks (`release`).

// Each test binary compiles this module and uses most of it, not all.
#![allow(dead_code)]

pub mod compose;
pub mod release;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use devstack::stack::StackConfig;
use serde_json::{Value, json};

/// What a local stack of `config` runs is built: wasmhost, and the
/// components beside its manifest.
pub fn check_stack_built(config: &StackConfig) -> Result<()> {
    ensure!(
        config.wasmhost.is_file(),
        "{} is missing: cargo build --release -p host",
        config.wasmhost.display()
    );
    let manifest_dir = config.manifest.parent().context("manifest path")?;
    for component in ["conduit", "docs"] {
        let path = manifest_dir.join(format!("target/wasm32-wasip2/release/{component}.wasm"));
        ensure!(
            path.is_file(),
            "{} is missing: cargo build --release --target wasm32-wasip2 -p conduit -p docs",
            path.display()
        );
    }
    Ok(())
}

/// A Conduit client through nginx.
#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    /// nginx's base URL, without a trailing slash.
    pub base: String,
}

impl Api {
    /// `builder` brings the trust in nginx's certificate (the stack's local
    /// CA, or the one the nginx container made).
    pub fn new(base: &str, builder: reqwest::ClientBuilder) -> Result<Self> {
        Ok(Self {
            client: builder.timeout(Duration::from_secs(30)).build()?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers `name` and returns its token.
    pub async fn register(&self, name: &str) -> Result<String> {
        let response = self
            .client
            .post(self.url("/api/users"))
            .json(&json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "correct horse battery"}}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "register {name}: {status} {body}");
        body["user"]["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in registration response")
    }

    pub async fn login(&self, name: &str) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(self.url("/api/users/login"))
            .json(&json!({"user": {"email": format!("{name}@example.com"), "password": "correct horse battery"}}))
            .send()
            .await?)
    }

    pub async fn create_article(&self, token: &str, title: &str) -> Result<reqwest::Response> {
        Ok(self
            .client
            .post(self.url("/api/articles"))
            .header("Authorization", format!("Token {token}"))
            .json(&json!({"article": {"title": title, "description": "written under fault", "body": format!("body of {title}"), "tagList": ["e2e"]}}))
            .send()
            .await?)
    }

    /// Creates an article and returns its slug; fails on any non-2xx.
    pub async fn create_article_ok(&self, token: &str, title: &str) -> Result<String> {
        let response = self.create_article(token, title).await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "create {title}: {status} {body}");
        slug_of(&body)
    }

    pub async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self.client.get(self.url(path)).send().await?)
    }

    /// The status of `GET /api/articles/{slug}`.
    pub async fn article_status(&self, slug: &str) -> Result<u16> {
        Ok(self
            .get(&format!("/api/articles/{slug}"))
            .await?
            .status()
            .as_u16())
    }
}

pub fn slug_of(body: &Value) -> Result<String> {
    body["article"]["slug"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no slug in {body}"))
}

/// Fails with the first few failures, if any.
pub fn assert_no_failures(what: &str, failures: &[String], total: usize) -> Result<()> {
    if !failures.is_empty() {
        bail!(
            "{what}: {} of {total} requests failed, first ones:\n{}",
            failures.len(),
            failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

/// How many GETs [`gets_with_a_kill_midway`] sends, from how many workers,
/// and after how many the kill comes.
pub const GETS: usize = 2000;
const GET_WORKERS: usize = 8;
const KILL_AFTER_GETS: usize = 400;

/// Sends [`GETS`] GETs over `paths` from concurrent workers and runs `kill`
/// once 400 have completed; `what` says what was killed (`a replica was
/// SIGKILLed`). Fails when the kill came too late to matter (fewer than 500
/// GETs left) or when any GET failed. Returns how many GETs had completed
/// when the kill began.
pub async fn gets_with_a_kill_midway(
    api: &Api,
    paths: &[String],
    what: &str,
    kill: impl AsyncFnOnce() -> Result<()>,
) -> Result<usize> {
    let paths: Arc<[String]> = paths.into();
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..GET_WORKERS {
        let (api, done, failures, paths) =
            (api.clone(), done.clone(), failures.clone(), paths.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..GETS / GET_WORKERS {
                let path = &paths[(worker + i) % paths.len()];
                let failure = match api.get(path).await {
                    Ok(response) if response.status().is_success() => None,
                    Ok(response) => Some(format!("GET {path}: {}", response.status())),
                    Err(error) => Some(format!("GET {path}: {error}")),
                };
                if let Some(failure) = failure {
                    failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(failure);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    while done.load(Ordering::SeqCst) < KILL_AFTER_GETS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = done.load(Ordering::SeqCst);
    kill().await?;
    for task in tasks {
        task.await?;
    }
    ensure!(
        killed_at < GETS - 500,
        "the kill came too late to matter ({killed_at} of {GETS} GETs done)"
    );
    let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_no_failures(&format!("GETs while {what}"), &failures, GETS)?;
    Ok(killed_at)
}

/// One write attempt: when it started and ended, and what came back.
pub struct WriteOutcome {
    pub started: Instant,
    pub finished: Instant,
    pub status: Option<u16>,
    /// The article's slug, when the write was acknowledged.
    pub slug: Option<String>,
    /// A transport error, or what an answer other than 2xx and 503 said.
    pub error: Option<String>,
}

/// Writers creating articles as `token`, one every 20 ms each, until `stop`.
pub struct WriteStream {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<WriteOutcome>>>,
}

impl WriteStream {
    pub fn start(api: &Api, token: &str, writers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..writers)
            .map(|writer| {
                let (api, token, stop) = (api.clone(), token.to_owned(), stop.clone());
                tokio::spawn(async move { write_until(&api, &token, writer, &stop).await })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the writers; every attempt, in no particular order.
    pub async fn stop(self) -> Result<Vec<WriteOutcome>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcomes = Vec::new();
        for task in self.tasks {
            outcomes.extend(task.await?);
        }
        Ok(outcomes)
    }
}

async fn write_until(
    api: &Api,
    token: &str,
    writer: usize,
    stop: &AtomicBool,
) -> Vec<WriteOutcome> {
    let mut outcomes = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let started = Instant::now();
        let result = api
            .create_article(token, &format!("durable {writer} {i}"))
            .await;
        let mut outcome = WriteOutcome {
            started,
            finished: Instant::now(),
            status: None,
            slug: None,
            error: None,
        };
        match result {
            Ok(response) => {
                let status = response.status();
                outcome.status = Some(status.as_u16());
                if status.is_success() {
                    match response.json::<Value>().await {
                        Ok(body) => outcome.slug = slug_of(&body).ok(),
                        Err(e) => outcome.error = Some(e.to_string()),
                    }
                } else if status != 503 {
                    // Kept for the report: what the unexpected answer said.
                    outcome.error = Some(format!(
                        "body: {}",
                        response.text().await.unwrap_or_default()
                    ));
                }
            }
            Err(error) => outcome.error = Some(error.to_string()),
        }
        outcomes.push(outcome);
        // Keep a steady stream without flooding the outage with thousands
        // of instant 503s.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outcomes
}
