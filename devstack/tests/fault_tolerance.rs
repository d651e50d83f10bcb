//! End-to-end: three wasmhost replicas running the real Conduit component,
//! behind the real nginx with the production config, on a private PostgreSQL
//! cluster with its own data directory. Each test proves one fault-tolerance
//! property of that topology.
//!
//! Needs `target/release/wasmhost` and the components in
//! `target/wasm32-wasip2/release/` (scripts/test builds them), nginx and the
//! PostgreSQL server binaries. The tests run one at a time: each starts a
//! whole stack, and the machine has two cores.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use devstack::{Database, Stack, StackConfig, project_root};
use serde_json::{Value, json};
use support::{
    Api, WriteOutcome, WriteStream, assert_no_failures, gets_with_a_kill_midway, slug_of,
};
use tokio::sync::Mutex;

static ONE_STACK_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Per-request deadline of the replicas in these tests.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

fn check_prerequisites() -> Result<()> {
    let root = project_root();
    let config = StackConfig::new(
        &root,
        &root,
        Database::Private {
            data_dir: root.clone(),
            port: 0,
        },
    )?;
    support::check_stack_built(&config)
}

fn stack_config(dir: &Path) -> Result<StackConfig> {
    let mut config = StackConfig::new(
        &project_root(),
        &dir.join("state"),
        Database::Private {
            data_dir: dir.join("postgres"),
            port: 0,
        },
    )?;
    config.replica_env = vec![
        (
            "WASMHOST_REQUEST_TIMEOUT_MS".into(),
            REQUEST_DEADLINE.as_millis().to_string(),
        ),
        ("WASMHOST_SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    Ok(config)
}

/// Runs `body` against a fresh stack; prints every process's last log lines
/// when it fails. The stack is killed by its drop whatever happens.
async fn with_stack<F>(body: F) -> Result<()>
where
    F: for<'a> AsyncFnOnce(&'a mut Stack, &'a Path) -> Result<()>,
{
    devstack::kill_children_on_signal();
    let _serial = ONE_STACK_AT_A_TIME.lock().await;
    check_prerequisites()?;
    let dir = tempfile::tempdir()?;
    let mut stack = Stack::start(stack_config(dir.path())?).await?;
    let result = body(&mut stack, dir.path()).await;
    if let Err(error) = &result {
        eprintln!("{error:#}\n{}", stack.log_tails(40));
    }
    result
}

#[tokio::test]
async fn requests_are_spread_over_every_replica() -> Result<()> {
    with_stack(async |stack, _| {
        let api = Api::new(&stack.url(), stack.client_builder()?)?;
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    statuses.push(api.get("/api/tags").await?.status().as_u16());
                }
                anyhow::Ok(statuses)
            }));
        }
        for task in tasks {
            let statuses = task.await??;
            ensure!(statuses.iter().all(|&s| s == 200), "statuses: {statuses:?}");
        }

        // Every replica counted requests on its own /metrics ...
        for replica in &stack.replicas {
            let served = replica.requests_total().await?;
            ensure!(
                served > 0.0,
                "{} served no request (wasmhost_requests_total = {served})",
                replica.name()
            );
        }
        // ... and nginx's access log names every replica as an upstream.
        let upstreams: HashSet<String> = stack
            .nginx
            .access_log()
            .iter()
            .filter_map(|entry| entry["upstream_addr"].as_str().map(str::to_owned))
            .collect();
        for replica in &stack.replicas {
            let address = format!("127.0.0.1:{}", replica.spec.api_port);
            ensure!(
                upstreams.iter().any(|u| u.contains(&address)),
                "nginx never used {address}; upstreams seen: {upstreams:?}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn replica_killed_with_sigkill_during_2000_gets_fails_no_request() -> Result<()> {
    with_stack(async |stack, _| {
        let api = Api::new(&stack.url(), stack.client_builder()?)?;
        let token = api.register("reader").await?;
        let slug = api
            .create_article_ok(&token, "Read me while replicas die")
            .await?;
        let paths = [
            format!("/api/articles/{slug}"),
            "/api/tags".to_owned(),
            "/api/articles?limit=5".to_owned(),
        ];
        gets_with_a_kill_midway(&api, &paths, "a replica was SIGKILLed", async || {
            stack.replicas[1].kill().await
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rolling_restart_during_reads_and_writes_fails_nothing_and_loses_no_write() -> Result<()> {
    with_stack(async |stack, _| {
        let api = Api::new(&stack.url(), stack.client_builder()?)?;
        let token = api.register("writer").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for worker in 0..4 {
            let (api, token, stop, failures) =
                (api.clone(), token.clone(), stop.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                write_and_read_until(&api, &token, worker, &stop, &failures).await
            }));
        }

        tokio::time::sleep(Duration::from_secs(1)).await;
        for index in 0..stack.replicas.len() {
            let old_pid = stack.replicas[index].pid();
            // Plain SIGTERM, wait, start: the replica refuses new connections
            // (nginx moves on), finishes what is in flight, and leaves its
            // keep-alive connections for nginx to close, so no request that
            // nginx cannot resend is ever written into a closing connection.
            stack.rolling_restart(index, None).await?;
            ensure!(
                stack.replicas[index].pid() != old_pid,
                "replica {index} was not restarted"
            );
            // Let nginx forget any failure it counted against the replica.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        stop.store(true, Ordering::SeqCst);

        let mut written = Vec::new();
        let mut total = 0;
        for task in tasks {
            let (slugs, requests) = task.await?;
            written.extend(slugs);
            total += requests;
        }
        let failures = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_no_failures("requests during the rolling restart", &failures, total)?;
        ensure!(
            written.len() >= 20,
            "only {} writes during the restarts",
            written.len()
        );
        for slug in &written {
            let status = api.article_status(slug).await?;
            ensure!(status == 200, "acknowledged write {slug} is gone: {status}");
        }
        Ok(())
    })
    .await
}

/// Until `stop`: creates an article, reads it back, reads the list; every
/// failure goes into `failures`. Returns the slugs written and how many
/// requests were sent.
async fn write_and_read_until(
    api: &Api,
    token: &str,
    worker: usize,
    stop: &AtomicBool,
    failures: &std::sync::Mutex<Vec<String>>,
) -> (Vec<String>, usize) {
    let mut written = Vec::new();
    let mut requests = 0usize;
    let fail = |what: String| {
        failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    };
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        requests += 2;
        let title = format!("rolling {worker} {i}");
        match api.create_article(token, &title).await {
            Ok(response) if response.status().is_success() => {
                match response
                    .json::<Value>()
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|b| slug_of(&b))
                {
                    Ok(slug) => {
                        match api.get(&format!("/api/articles/{slug}")).await {
                            Ok(r) if r.status().is_success() => {}
                            Ok(r) => fail(format!("GET {slug}: {}", r.status())),
                            Err(e) => fail(format!("GET {slug}: {e}")),
                        }
                        written.push(slug);
                    }
                    Err(e) => fail(format!("POST {title}: {e}")),
                }
            }
            Ok(response) => fail(format!("POST {title}: {}", response.status())),
            Err(e) => fail(format!("POST {title}: {e}")),
        }
        match api.get("/api/articles?limit=10").await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => fail(format!("GET list: {}", r.status())),
            Err(e) => fail(format!("GET list: {e}")),
        }
    }
    (written, requests)
}

#[tokio::test]
async fn postgres_restart_gives_fast_503s_recovers_within_5_s_and_keeps_every_acknowledged_write()
-> Result<()> {
    with_stack(async |stack, _| {
        let api = Api::new(&stack.url(), stack.client_builder()?)?;
        let token = api.register("durable").await?;
        let writes = WriteStream::start(&api, &token, 4);

        tokio::time::sleep(Duration::from_secs(2)).await;
        let postgres = stack
            .postgres
            .as_mut()
            .context("private cluster expected")?;
        let down_at = Instant::now();
        postgres.stop_fast().await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        postgres.start().await?;
        let back_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let outcomes = writes.stop().await?;

        ensure_fast_503s_and_recovery(&outcomes, down_at, back_at)?;
        let acknowledged: Vec<&String> = outcomes.iter().filter_map(|o| o.slug.as_ref()).collect();
        ensure!(
            acknowledged.len() >= 20,
            "only {} acknowledged writes",
            acknowledged.len()
        );
        for slug in acknowledged {
            let status = api.article_status(slug).await?;
            ensure!(status == 200, "acknowledged write {slug} is lost: {status}");
        }
        Ok(())
    })
    .await
}

/// The database was down from `down_at` to `back_at`: every write ended
/// within the deadline with a 2xx or a 503, some got a 503 during the
/// outage, and writes succeed again within 5 s of the database being back.
fn ensure_fast_503s_and_recovery(
    outcomes: &[WriteOutcome],
    down_at: Instant,
    back_at: Instant,
) -> Result<()> {
    let mut problems = Vec::new();
    for outcome in outcomes {
        let took = outcome.finished - outcome.started;
        if took > REQUEST_DEADLINE + Duration::from_secs(1) {
            problems.push(format!("a write took {took:?}, past the deadline"));
        }
        if let (Some(error), None) = (&outcome.error, outcome.status) {
            problems.push(format!("transport error: {error}"));
        }
        match outcome.status {
            Some(200..=299) | Some(503) | None => {}
            Some(other) => problems.push(format!(
                "status {other} at {:?} after the outage began (only 2xx or 503 allowed): {}",
                outcome.started.saturating_duration_since(down_at),
                outcome.error.as_deref().unwrap_or("")
            )),
        }
    }
    let during_outage = outcomes
        .iter()
        .filter(|o| o.started >= down_at && o.finished <= back_at)
        .collect::<Vec<_>>();
    ensure!(
        during_outage.iter().any(|o| o.status == Some(503)),
        "no 503 while the database was down ({} writes then)",
        during_outage.len()
    );
    // Recovered: every write that started 5 s after the database came
    // back succeeded, and there were such writes.
    let after_recovery: Vec<_> = outcomes
        .iter()
        .filter(|o| o.started >= back_at + Duration::from_secs(5))
        .collect();
    ensure!(!after_recovery.is_empty(), "no writes after recovery");
    for outcome in &after_recovery {
        if !matches!(outcome.status, Some(200..=299)) {
            problems.push(format!(
                "{:?} after the database was back: status {:?}",
                outcome.started - back_at,
                outcome.status
            ));
        }
    }
    let first_success = outcomes
        .iter()
        .filter(|o| o.started >= back_at && matches!(o.status, Some(200..=299)))
        .map(|o| o.finished - back_at)
        .min()
        .context("no successful write after the database came back")?;
    ensure!(
        first_success <= Duration::from_secs(5),
        "first successful write {first_success:?} after the database was back"
    );
    if !problems.is_empty() {
        bail!(
            "{} problems, first ones:\n{}",
            problems.len(),
            problems
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(())
}

#[tokio::test]
async fn whole_stack_stopped_and_started_again_keeps_all_data() -> Result<()> {
    devstack::kill_children_on_signal();
    let _serial = ONE_STACK_AT_A_TIME.lock().await;
    check_prerequisites()?;
    let dir = tempfile::tempdir()?;
    let config = stack_config(dir.path())?;

    let stack = Stack::start(config.clone()).await?;
    let api = Api::new(&stack.url(), stack.client_builder()?)?;
    let token = api.register("persistent").await?;
    let mut slugs = Vec::new();
    for i in 0..5 {
        slugs.push(
            api.create_article_ok(&token, &format!("Survives restart {i}"))
                .await?,
        );
    }
    stack.stop().await?;

    // Same data directory and secrets, new processes (and new ports).
    let stack = Stack::start(config).await?;
    let api = Api::new(&stack.url(), stack.client_builder()?)?;
    let result: Result<()> = async {
        let login = api.login("persistent").await?;
        ensure!(
            login.status() == 200,
            "login after restart: {}",
            login.status()
        );
        for (i, slug) in slugs.iter().enumerate() {
            let response = api.get(&format!("/api/articles/{slug}")).await?;
            ensure!(
                response.status() == 200,
                "{slug} after restart: {}",
                response.status()
            );
            let body: Value = response.json().await?;
            ensure!(
                body["article"]["body"] == format!("body of Survives restart {i}"),
                "{slug} changed: {body}"
            );
        }
        let tags: Value = api.get("/api/tags").await?.json().await?;
        ensure!(
            tags["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("e2e"))),
            "tags after restart: {tags}"
        );
        Ok(())
    }
    .await;
    if let Err(error) = &result {
        eprintln!("{error:#}\n{}", stack.log_tails(40));
    }
    stack.stop().await?;
    result
}

#[tokio::test]
async fn login_above_the_rate_limit_gets_429_from_nginx_while_other_endpoints_work() -> Result<()> {
    with_stack(async |stack, _| {
        let api = Api::new(&stack.url(), stack.client_builder()?)?;
        let token = api.register("hasty").await?;
        let mut logins = Vec::new();
        for _ in 0..40 {
            let api = api.clone();
            logins.push(tokio::spawn(async move {
                let response = api.login("hasty").await?;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                anyhow::Ok((status, body))
            }));
        }
        let mut statuses = Vec::new();
        for login in logins {
            let (status, body) = login.await??;
            if status == 429 {
                // nginx's answer, not the API's: the JSON body from nginx.conf.
                ensure!(body["errors"]["request"].is_array(), "429 body: {body}");
            }
            statuses.push(status);
        }
        let limited = statuses.iter().filter(|&&s| s == 429).count();
        let succeeded = statuses.iter().filter(|&&s| s == 200).count();
        ensure!(limited > 0, "no 429 among {statuses:?}");
        ensure!(
            succeeded > 0,
            "the burst allowance let no login through: {statuses:?}"
        );
        ensure!(
            limited + succeeded == statuses.len(),
            "only 200 or 429 expected: {statuses:?}"
        );

        // Still inside the limit window: everything else works.
        let tags = api.get("/api/tags").await?;
        ensure!(tags.status() == 200, "GET /api/tags: {}", tags.status());
        let me = api
            .client
            .get(api.url("/api/user"))
            .header("Authorization", format!("Token {token}"))
            .send()
            .await?;
        ensure!(me.status() == 200, "GET /api/user: {}", me.status());
        api.create_article_ok(&token, "Written while login is limited")
            .await?;
        Ok(())
    })
    .await
}
