//! A real Prometheus (Debian's) scrapes the local stack's three replicas
//! with the committed alert rules (observability/prometheus/alerts.yml): each
//! replica is `up`, and once one is killed the replica-down alert goes
//! pending and then fires after its `for` window, asked through
//! Prometheus' HTTP API.
//!
//! Needs what the fault-tolerance tests need, plus `prometheus`
//! (scripts/test installs Debian's package).

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use devstack::prometheus::{Prometheus, prometheus_program};
use devstack::{Database, Echo, Stack, StackConfig, free_port, project_root};
use serde_json::Value;

/// The `for` of WasmhostReplicaDown in alerts.yml.
const ALERT_FOR: Duration = Duration::from_secs(60);

fn value(sample: &Value) -> &str {
    sample["value"][1].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_replica_and_the_replica_down_alert_fires() -> Result<()> {
    devstack::kill_children_on_signal();
    let program = prometheus_program();
    ensure!(
        program.is_absolute() && program.exists() || which(&program),
        "prometheus is missing: apt-get install prometheus (scripts/test does)"
    );
    let root = project_root();
    let dir = tempfile::tempdir()?;
    let mut config = StackConfig::new(
        &root,
        &dir.path().join("state"),
        Database::Private {
            data_dir: dir.path().join("postgres"),
            port: 0,
        },
    )?;
    config.replica_env = vec![("RUST_LOG".into(), "warn".into())];
    let mut stack = Stack::start(config).await?;
    let targets: Vec<String> = stack
        .replicas
        .iter()
        .map(|replica| replica.admin_url().trim_start_matches("http://").to_owned())
        .collect();
    let prometheus = Prometheus::start(
        &dir.path().join("prometheus"),
        free_port()?,
        &targets,
        &root.join("observability/prometheus/alerts.yml"),
        Duration::from_secs(1),
        Echo::Quiet,
    )
    .await?;
    let outcome = async {
        // Every replica is scraped and up.
        let started = Instant::now();
        loop {
            let up = prometheus.query("up{job=\"wasmhost\"}").await?;
            if up.len() == targets.len() && up.iter().all(|sample| value(sample) == "1") {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("not every replica is up after 30 s: {up:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!(
            "prometheus: up == 1 for all {} replicas after {:.1} s",
            targets.len(),
            started.elapsed().as_secs_f64()
        );

        // One replica dies: the alert for it goes pending, then fires once
        // its `for` window has passed, and only for that replica.
        let victim = targets[1].clone();
        stack.replicas[1].kill().await?;
        let killed = Instant::now();
        let mut pending_at = None;
        loop {
            let alerts = prometheus.alerts().await?;
            let mine: Vec<&Value> = alerts
                .iter()
                .filter(|alert| alert["labels"]["alertname"] == "WasmhostReplicaDown")
                .collect();
            for alert in &mine {
                ensure!(
                    alert["labels"]["instance"] == victim.as_str(),
                    "the alert names a replica that is up: {alert}"
                );
            }
            match mine.first().map(|alert| alert["state"].as_str().unwrap_or("")) {
                Some("pending") if pending_at.is_none() => pending_at = Some(killed.elapsed()),
                Some("firing") => break,
                _ => {}
            }
            if killed.elapsed() > ALERT_FOR + Duration::from_secs(30) {
                bail!("WasmhostReplicaDown did not fire within its window: {alerts:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let fired = killed.elapsed();
        ensure!(
            fired >= ALERT_FOR,
            "fired {fired:?} after the kill, before its `for` of {ALERT_FOR:?}"
        );
        eprintln!(
            "prometheus: {victim} killed; WasmhostReplicaDown pending after {:.1} s, firing after {:.1} s",
            pending_at.unwrap_or_default().as_secs_f64(),
            fired.as_secs_f64()
        );
        Ok(())
    }
    .await;
    if outcome.is_err() {
        eprintln!("{}\n{}", prometheus.log.last(30), stack.log_tails(20));
    }
    prometheus.stop().await?;
    outcome
}

fn which(program: &std::path::Path) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
