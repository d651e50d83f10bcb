//! The guest memory budget (`--guest-memory-budget`): requests that need
//! more memory than the budget has free wait for it, none fails, the memory
//! held never exceeds the budget, and a request that needs more than the
//! whole budget fails at once instead of waiting.

mod support;

use std::time::Duration;

use support::{HostConfig, ScratchDb, fixture_manifest, start};

const MIB: f64 = (1 << 20) as f64;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

async fn get(url: String) -> (u16, String) {
    let r = http().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn app(db: &ScratchDb, budget: &str) -> support::Host {
    let (host, port) = db.host_port();
    let config = HostConfig::new(fixture_manifest(&[]))
        .env("SPIN_VARIABLE_DB_URL", &db.url("disable"))
        .env("SPIN_VARIABLE_DB_HOST", &host)
        .env("SPIN_VARIABLE_DB_PORT", &port.to_string())
        .env("WASMHOST_GUEST_MEMORY_BUDGET", budget)
        // Longer than any wait here: a request that waited forever would
        // end as the deadline's 503, which the tests tell apart.
        .arg("--request-timeout-ms")
        .arg("120000");
    start(config).await.expect("host starts")
}

/// The value of a series without labels, or of the first series whose
/// labels contain `labels`.
fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            series == &name
                || series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') && rest.contains(labels))
        })
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no series {name}{{{labels}}} in:\n{text}"))
}

/// Once every instance is gone (a moment after its response), nothing is
/// held from the budget.
async fn assert_all_given_back(host: &support::Host) {
    let mut in_use = f64::NAN;
    for _ in 0..100 {
        let metrics = host.metrics().await.unwrap();
        in_use = metric(&metrics, "wasmhost_guest_memory_in_use_bytes", "");
        if in_use == 0.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} MiB still held after every request ended", in_use / MIB);
}

/// `count` requests at once that each hold `mib` MiB for `ms` milliseconds.
async fn burst(host: &support::Host, count: usize, mib: usize, ms: u64) -> Vec<(u16, String)> {
    let requests: Vec<_> = (0..count)
        .map(|_| tokio::spawn(get(format!("{}/alloc?mb={mib}&ms={ms}", host.base))))
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    answers
}

#[tokio::test]
async fn a_burst_needing_four_times_the_budget_waits_for_it_and_no_request_fails() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, "48MiB").await;
    let metrics = host.metrics().await.unwrap();
    assert_eq!(
        metric(&metrics, "wasmhost_guest_memory_budget_bytes", ""),
        48.0 * MIB
    );

    // 20 requests of 10 MiB and more each, at once: the first burst meets
    // a route nothing was learned about (its first request runs alone and
    // shows what the others need), the second one whose need is known.
    for round in ["unknown route", "learned route"] {
        let answers = burst(&host, 20, 10, 150).await;
        for (status, body) in &answers {
            assert_eq!(
                (*status, body.as_str()),
                (200, "allocated 2560 pages of 4 KiB"),
                "{round}: every request succeeds"
            );
        }
    }

    let metrics = host.metrics().await.unwrap();
    let peak = metric(&metrics, "wasmhost_guest_memory_peak_bytes", "");
    assert!(
        peak <= 48.0 * MIB,
        "guest memory held at once ({} MiB) exceeded the budget",
        peak / MIB
    );
    assert!(
        peak >= 30.0 * MIB,
        "the burst barely used the budget ({} MiB)",
        peak / MIB
    );
    let admission_waits = metric(
        &metrics,
        "wasmhost_guest_memory_wait_seconds_count",
        "stage=\"admission\"",
    );
    assert!(
        admission_waits >= 1.0,
        "requests of the learned route waited to be admitted:\n{metrics}"
    );
    assert_all_given_back(&host).await;
    assert!(
        !metrics.contains("wasmhost_guest_memory_refused_total{"),
        "no wait failed:\n{metrics}"
    );

    // The slots those instances used keep part of their memory resident
    // for the next instance, outside the budget: reported, and at most the
    // 4 MiB per slot the pool is configured to keep.
    let metrics = host.metrics().await.unwrap();
    let warm = metric(&metrics, "wasmhost_guest_memory_warm_slots", "");
    let kept = metric(&metrics, "wasmhost_guest_memory_kept_resident_bytes", "");
    assert!(warm >= 1.0, "no warm slot after two bursts:\n{metrics}");
    assert!(
        kept > 0.0 && kept <= warm * 4.0 * MIB,
        "{} MiB kept resident in {warm} warm slots",
        kept / MIB
    );
}

#[tokio::test]
async fn a_request_needing_more_than_the_whole_budget_fails_at_once() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, "48MiB").await;
    // Under the per-instance cap (128 MiB), over the budget: the guest's
    // allocation fails as it would at the cap, and the guest traps.
    let (status, _) = get(format!("{}/alloc?mb=64", host.base)).await;
    assert_eq!(status, 500, "refused at once, not after a wait");
    let metrics = host.metrics().await.unwrap();
    assert!(
        metric(
            &metrics,
            "wasmhost_guest_memory_refused_total",
            "reason=\"over_budget\""
        ) >= 1.0,
        "{metrics}"
    );
    // The host serves on, and memory-hungry requests that fit still run.
    let (status, body) = get(format!("{}/alloc?mb=40", host.base)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "allocated 10240 pages of 4 KiB")
    );
    assert_all_given_back(&host).await;
}
