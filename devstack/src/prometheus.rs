//! A real Prometheus (Debian's `prometheus` package) beside the replicas:
//! it scrapes every replica's admin port as `job="wasmhost"` and evaluates
//! the committed alert rules (`observability/prometheus/alerts.yml`). The
//! local stack runs one with `scripts/stack --prometheus`; the tests ask it
//! through its HTTP API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::config::environment;
use crate::process::{self, Echo, LogTail, ManagedChild};

/// The prometheus binary: `$PROMETHEUS_BIN`, else Debian's, else PATH.
pub fn prometheus_program() -> PathBuf {
    process::program(
        environment().prometheus_bin.as_deref(),
        "/usr/bin/prometheus",
        "prometheus",
    )
}

/// The scrape configuration: every target every `interval`, the rules
/// evaluated as often.
pub fn render_config(targets: &[String], rules: &Path, interval: Duration) -> String {
    let targets = targets
        .iter()
        .map(|target| format!("\"{target}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let every = format!("{}ms", interval.as_millis());
    format!(
        "global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n\
         rule_files:\n  - \"{rules}\"\n\
         scrape_configs:\n  - job_name: wasmhost\n    static_configs:\n      - targets: [{targets}]\n",
        rules = rules.display(),
    )
}

pub struct Prometheus {
    pub port: u16,
    pub log: LogTail,
    process: Option<ManagedChild>,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus on 127.0.0.1:`port` with its data in `dir`,
    /// scraping `targets` (host:port of each replica's admin listener), and
    /// waits until it is ready.
    pub async fn start(
        dir: &Path,
        port: u16,
        targets: &[String],
        rules: &Path,
        interval: Duration,
        echo: Echo,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, render_config(targets, rules, interval))?;
        let mut command = Command::new(prometheus_program());
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let log = LogTail::default();
        let process = ManagedChild::spawn("prometheus", command, &log, echo)
            .context("starting prometheus (Debian: apt-get install prometheus)")?;
        let mut prometheus = Prometheus {
            port,
            log,
            process: Some(process),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        prometheus.wait_ready(Duration::from_secs(60)).await?;
        Ok(prometheus)
    }

    /// Waits until `/-/ready` answers 200.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.try_status()?
            {
                bail!(
                    "prometheus exited during start ({status}):\n{}",
                    self.log.last(20)
                );
            }
            let ready = self
                .http
                .get(format!("{}/-/ready", self.url()))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus was not ready after {} s:\n{}",
                    timeout.as_secs(),
                    self.log.last(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `data` of a GET on the HTTP API (`/api/v1/...`).
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url()))
            .query(query)
            .send()
            .await?
            .json()
            .await?;
        if response["status"] != "success" {
            bail!("prometheus {path}: {response}");
        }
        Ok(response["data"].clone())
    }

    /// An instant query's result vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let data = self.api("query", &[("query", promql)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The alerts pending or firing now.
    pub async fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("alerts", &[]).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            process
                .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_scrapes_every_replica_and_loads_the_rules() {
        let config = render_config(
            &["127.0.0.1:9101".into(), "127.0.0.1:9102".into()],
            Path::new("/p/alerts.yml"),
            Duration::from_secs(1),
        );
        assert!(config.contains("scrape_interval: 1000ms"));
        assert!(config.contains("- \"/p/alerts.yml\""));
        assert!(config.contains("job_name: wasmhost"));
        assert!(config.contains("targets: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]"));
    }
}
