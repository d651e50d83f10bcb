//! Releases without restarts: SIGHUP and `POST /reload` on the admin
//! listener swap the manifest and its components under load without
//! failing a request; a broken release is refused while the serving one
//! serves on; a request keeps the release it started on; replaced
//! applications and their instances are freed.
//!
//! The component is the `versioned` fixture built twice: `versioned-one`
//! answers `1.0.0`, `versioned-two` answers `2.0.0`, so every answer tells
//! which release served it.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{Host, HostConfig, built_wasm, start};

const ONE: &str = "1.0.0";
const TWO: &str = "2.0.0";

/// The release serving after `reloads` reloads: one, then two, one, ...
fn release_after(reloads: usize) -> &'static str {
    if reloads.is_multiple_of(2) { ONE } else { TWO }
}

fn component(release: &str) -> PathBuf {
    built_wasm(if release == ONE {
        "versioned-one"
    } else {
        "versioned-two"
    })
}

fn manifest(source: &Path) -> String {
    format!(
        r#"spin_manifest_version = 2

[application]
name = "reload-test"

[[trigger.http]]
route = "/..."
component = "versioned"

[component.versioned]
source = "{}"
"#,
        source.display()
    )
}

/// Replaces the host's manifest whole, as a deployment would (a reload
/// never reads half a file).
fn write_manifest(host: &Host, text: &str) {
    let path = host.manifest_path();
    let staged = path.with_extension("toml.new");
    std::fs::write(&staged, text).expect("write the manifest");
    std::fs::rename(&staged, &path).expect("replace the manifest");
}

fn release(host: &Host, release: &str) {
    write_manifest(host, &manifest(&component(release)));
}

/// Compiles both releases into the tests' cache with `wasmhost compile`, as
/// a release pipeline does, so that reloads load them precompiled.
fn precompile() {
    for version in [ONE, TWO] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("spin.toml");
        std::fs::write(&path, manifest(&component(version))).expect("write the manifest");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_wasmhost"))
            .arg("compile")
            .arg("--manifest")
            .arg(&path)
            .arg("--cache-dir")
            .arg(support::cache_dir())
            .env("RUST_LOG", "warn")
            .status()
            .expect("run wasmhost compile");
        assert!(status.success(), "wasmhost compile failed");
    }
}

async fn start_release(version: &str, args: &[&str]) -> Host {
    let config = args.iter().fold(
        HostConfig::new(manifest(&component(version))),
        |config, arg| config.arg(arg),
    );
    start(config).await.expect("host starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// The release that answered, or why the request failed.
async fn answer(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

async fn reload_by_admin(host: &Host) -> (u16, serde_json::Value) {
    let response = client()
        .post(format!("{}/reload", host.admin))
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

/// The value of the sample `name` (with its labels) in a scrape.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn metric(host: &Host, name: &str) -> f64 {
    let metrics = host.metrics().await.expect("metrics");
    sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
}

/// Waits (10 s at most) for the sample `name` to reach `value`; returns
/// the value it last had.
async fn metric_reaches(host: &Host, name: &str, value: f64) -> f64 {
    let started = Instant::now();
    loop {
        let now = metric(host, name).await;
        if now == value || started.elapsed() > Duration::from_secs(10) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const GENERATION: &str = "wasmhost_application_generation";
const LIVE: &str = "wasmhost_applications_live";
const SUCCEEDED: &str = "wasmhost_reloads_total{result=\"success\"}";
const FAILED: &str = "wasmhost_reloads_total{result=\"failure\"}";
const RETIRED: &str = "wasmhost_instances_dropped_total{reason=\"retired\"}";

/// Requests on `connections` connections, one after another on each, until
/// stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Result<String, String>>>>,
}

impl Load {
    fn start(host: &Host, connections: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = client();
        let workers = (0..connections)
            .map(|_| {
                let (stop, client, url) = (stop.clone(), client.clone(), host.base.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        answers.push(answer(&client, &url).await);
                    }
                    answers
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Every answer, once the requests running have ended.
    async fn stop(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::SeqCst);
        let mut answers = Vec::new();
        for worker in self.workers {
            answers.extend(worker.await.expect("load worker"));
        }
        answers
    }
}

fn failures(answers: &[Result<String, String>]) -> Vec<&String> {
    answers.iter().filter_map(|a| a.as_ref().err()).collect()
}

fn count(answers: &[Result<String, String>], release: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.as_deref() == Ok(release))
        .count()
}

/// One request of the 2,000: how many reloads had returned when it was
/// sent, how many had begun when its answer came, and the answer.
struct Observed {
    reloads_done: usize,
    reloads_begun: usize,
    answer: Result<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_reloads_during_2000_requests_fail_none_and_each_serves_every_later_request() {
    const REQUESTS: usize = 2000;
    const CONNECTIONS: usize = 16;
    const RELOADS: usize = 5;
    // Requests let go while a reload runs; the others are split evenly
    // between the windows before, between and after the reloads, so that
    // every window has requests however long a reload takes.
    const DURING: usize = 100;
    let window = (REQUESTS - RELOADS * DURING) / (RELOADS + 1);

    precompile();
    let host = start_release(ONE, &[]).await;
    let released = Arc::new(AtomicUsize::new(window));
    let next = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let begun = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let observed = Arc::new(Mutex::new(Vec::<Observed>::new()));
    let client = client();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (released, next, completed, begun, done, observed, client, url) = (
                released.clone(),
                next.clone(),
                completed.clone(),
                begun.clone(),
                done.clone(),
                observed.clone(),
                client.clone(),
                host.base.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let ticket = next.fetch_add(1, Ordering::SeqCst);
                    if ticket >= REQUESTS {
                        return;
                    }
                    while ticket >= released.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let reloads_done = done.load(Ordering::SeqCst);
                    let answer = answer(&client, &url).await;
                    let reloads_begun = begun.load(Ordering::SeqCst);
                    observed.lock().unwrap().push(Observed {
                        reloads_done,
                        reloads_begun,
                        answer,
                    });
                    completed.fetch_add(1, Ordering::SeqCst);
                    // While a reload runs, requests are spread over it.
                    if reloads_begun > done.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        })
        .collect();

    // Readiness is asked all along: a reload never makes the host unready.
    let polling = Arc::new(AtomicBool::new(true));
    let readiness = {
        let (polling, url) = (polling.clone(), format!("{}/readyz", host.admin));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut asked, mut unready) = (0, 0);
            while polling.load(Ordering::SeqCst) {
                asked += 1;
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => unready += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (asked, unready)
        })
    };

    let mut durations = Vec::new();
    for reload in 1..=RELOADS {
        // Every request of the window before this reload has its answer.
        while completed.load(Ordering::SeqCst) < released.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        release(&host, release_after(reload));
        begun.store(reload, Ordering::SeqCst);
        released.fetch_add(DURING, Ordering::SeqCst);
        let started = Instant::now();
        let expected_generation = (reload + 1) as f64;
        if reload % 2 == 1 {
            let (status, body) = reload_by_admin(&host).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["generation"], reload as u64 + 1, "{body}");
        } else {
            host.signal(Signal::SIGHUP);
            let generation = metric_reaches(&host, GENERATION, expected_generation).await;
            assert_eq!(generation, expected_generation, "{}", host.log());
        }
        durations.push(started.elapsed());
        done.store(reload, Ordering::SeqCst);
        let until = if reload == RELOADS {
            REQUESTS
        } else {
            (reload + 1) * window + reload * DURING
        };
        released.store(until, Ordering::SeqCst);
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    polling.store(false, Ordering::SeqCst);
    let (asked, unready) = readiness.await.expect("readiness poller");

    let observed = std::mem::take(&mut *observed.lock().unwrap());
    assert_eq!(observed.len(), REQUESTS);
    let failed: Vec<_> = observed
        .iter()
        .filter_map(|o| o.answer.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    // Each answer comes from a release that was serving while the request
    // ran: the one the last returned reload installed, or one a reload that
    // began meanwhile installed.
    for o in observed.iter() {
        let allowed: Vec<&str> = (o.reloads_done..=o.reloads_begun)
            .map(release_after)
            .collect();
        let answer = o.answer.as_deref().unwrap_or_default();
        assert!(
            allowed.contains(&answer),
            "after {} reloads returned ({} begun) the answer was {answer}, not one of {allowed:?}",
            o.reloads_done,
            o.reloads_begun
        );
    }
    let answers: Vec<_> = observed.iter().map(|o| o.answer.clone()).collect();
    let (ones, twos) = (count(&answers, ONE), count(&answers, TWO));
    // Between two reloads, every request got the release of the last one.
    let mut windows = Vec::new();
    for reload in 0..=RELOADS {
        let settled: Vec<_> = observed
            .iter()
            .filter(|o| o.reloads_done == reload && o.reloads_begun == reload)
            .collect();
        assert!(!settled.is_empty(), "no request after reload {reload}");
        assert!(
            settled
                .iter()
                .all(|o| o.answer.as_deref() == Ok(release_after(reload)))
        );
        windows.push(format!("{}x{}", settled.len(), release_after(reload)));
    }
    let overlapping = observed
        .iter()
        .filter(|o| o.reloads_begun > o.reloads_done)
        .count();
    eprintln!(
        "{REQUESTS} requests on {CONNECTIONS} connections, {RELOADS} reloads: 0 failed; \
         {ones} answered {ONE}, {twos} answered {TWO}; between reloads {}; \
         {overlapping} ran during a reload; reloads took {durations:?}; \
         readiness asked {asked} times, unready {unready}",
        windows.join(", ")
    );
    assert!(ones > 0 && twos > 0);
    assert_eq!(unready, 0, "readiness failed during a reload");
    assert_eq!(metric(&host, SUCCEEDED).await, RELOADS as f64);
    assert_eq!(metric(&host, FAILED).await, 0.0);
    assert_eq!(metric(&host, LIVE).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_release_is_refused_under_load_and_the_serving_one_serves_on() {
    let host = start_release(ONE, &[]).await;
    let load = Load::start(&host, 16);

    // A component file that is not WebAssembly, by the admin endpoint.
    let not_wasm = host.manifest_path().with_file_name("not-wasm.wasm");
    std::fs::write(&not_wasm, "this is not WebAssembly").unwrap();
    write_manifest(&host, &manifest(&not_wasm));
    let (status, body) = reload_by_admin(&host).await;
    assert_eq!(status, 422, "{body}");
    let reason = body["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not-wasm.wasm") && reason.contains("`versioned`"),
        "{body}"
    );

    // A manifest that does not parse, by SIGHUP.
    write_manifest(&host, "spin_manifest_version = 2\n[application\n");
    host.signal(Signal::SIGHUP);
    assert_eq!(metric_reaches(&host, FAILED, 2.0).await, 2.0);

    // A route to a component the manifest does not define, by the admin
    // endpoint again.
    write_manifest(
        &host,
        &manifest(&component(TWO)).replace("component = \"versioned\"", "component = \"gone\""),
    );
    let (status, body) = reload_by_admin(&host).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("gone"));

    let answers = load.stop().await;
    let failed = failures(&answers);
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(count(&answers, ONE), answers.len());
    eprintln!(
        "3 refused reloads under load: {} requests, 0 failed, all answered {ONE}",
        answers.len()
    );
    assert_eq!(metric(&host, FAILED).await, 3.0);
    assert_eq!(metric(&host, SUCCEEDED).await, 0.0);
    assert_eq!(metric(&host, GENERATION).await, 1.0);
    assert_eq!(metric_reaches(&host, LIVE, 1.0).await, 1.0);
    let log = host
        .log_eventually(|log| log.matches("reload refused").count() == 3)
        .await;
    assert_eq!(log.matches("reload refused").count(), 3, "{log}");
    assert!(log.contains("not-wasm.wasm"), "{log}");

    // Fixed, the release goes out.
    release(&host, TWO);
    let (status, body) = reload_by_admin(&host).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(answer(&client(), &host.base).await.as_deref(), Ok(TWO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_running_during_a_reload_finishes_on_the_release_it_started_on() {
    // Precompiled, the reload takes milliseconds: far less than the request.
    precompile();
    let host = start_release(ONE, &[]).await;
    let slow = {
        let url = format!("{}/?sleep_ms=3000", host.base);
        tokio::spawn(async move { answer(&client(), &url).await })
    };
    assert_eq!(
        metric_reaches(&host, "wasmhost_requests_in_flight", 1.0).await,
        1.0
    );

    release(&host, TWO);
    let (status, body) = reload_by_admin(&host).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !slow.is_finished(),
        "the reload returned without waiting for the running request"
    );
    assert_eq!(answer(&client(), &host.base).await.as_deref(), Ok(TWO));
    // The old application stays in memory while its request runs.
    assert_eq!(metric(&host, LIVE).await, 2.0);

    assert_eq!(slow.await.unwrap().as_deref(), Ok(ONE));
    assert_eq!(metric_reaches(&host, LIVE, 1.0).await, 1.0);
}

#[tokio::test]
async fn reloads_asked_for_at_once_run_one_after_the_other() {
    let host = start_release(ONE, &[]).await;
    release(&host, TWO);
    let ((first, a), (second, b)) = tokio::join!(reload_by_admin(&host), reload_by_admin(&host));
    assert_eq!((first, second), (200, 200), "{a} {b}");
    let mut generations = [a["generation"].as_u64(), b["generation"].as_u64()];
    generations.sort();
    assert_eq!(generations, [Some(2), Some(3)]);
    assert_eq!(metric(&host, GENERATION).await, 3.0);
    assert_eq!(metric_reaches(&host, LIVE, 1.0).await, 1.0);

    let response = client()
        .get(format!("{}/reload", host.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    // The public listener has no reload.
    let response = client()
        .post(format!("{}/reload", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), TWO);
}

/// The resident set of a process, in bytes.
fn resident_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaced_applications_and_their_reused_instances_are_freed() {
    const WARM_UP: usize = 10;
    const MEASURED: usize = 50;
    // Instances are kept for reuse, and never dropped for being idle: only
    // retiring the replaced application frees them.
    precompile();
    let host = start_release(
        ONE,
        &[
            "--max-instance-reuse",
            "1000",
            "--idle-instance-timeout",
            "1h",
        ],
    )
    .await;
    let cycle = |reload: usize| {
        let host = &host;
        async move {
            release(host, release_after(reload));
            let (status, body) = reload_by_admin(host).await;
            assert_eq!(status, 200, "{body}");
            let client = client();
            let burst = (0..16).map(|_| {
                let (client, url) = (client.clone(), host.base.clone());
                async move {
                    let mut answers = Vec::new();
                    for _ in 0..25 {
                        answers.push(answer(&client, &url).await);
                    }
                    answers
                }
            });
            let answers: Vec<_> = futures::future::join_all(burst)
                .await
                .into_iter()
                .flatten()
                .collect();
            assert_eq!(count(&answers, release_after(reload)), answers.len());
        }
    };
    for reload in 1..=WARM_UP {
        cycle(reload).await;
    }
    assert_eq!(metric_reaches(&host, LIVE, 1.0).await, 1.0);
    let before = resident_bytes(host.pid());
    let retired_before = metric(&host, RETIRED).await;
    for reload in WARM_UP + 1..=WARM_UP + MEASURED {
        cycle(reload).await;
    }
    assert_eq!(metric_reaches(&host, LIVE, 1.0).await, 1.0);
    let after = resident_bytes(host.pid());
    let retired = metric(&host, RETIRED).await - retired_before;
    eprintln!(
        "{MEASURED} reloads with 400 requests each and instance reuse: resident {} MiB before, \
         {} MiB after; {retired} idle instances of replaced applications dropped",
        before >> 20,
        after >> 20
    );
    assert!(
        retired > 0.0,
        "no idle instance of a replaced application was dropped"
    );
    assert!(
        after <= before + (32 << 20),
        "resident memory grew from {} MiB to {} MiB over {MEASURED} reloads",
        before >> 20,
        after >> 20
    );
}
