//! One `wasmhost serve` process on loopback ports.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::process::{Echo, LogTail, ManagedChild};

/// Everything needed to (re)start a replica.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// 1-based, used in the log prefix (`replica-1`).
    pub index: usize,
    pub api_port: u16,
    pub admin_port: u16,
    pub wasmhost: PathBuf,
    pub manifest: PathBuf,
    /// Working directory (the project root).
    pub root: PathBuf,
    /// SPIN_VARIABLE_* and WASMHOST_* settings, on top of the caller's own
    /// environment, which the process inherits (RUST_LOG, OTEL_* for traces).
    pub env: Vec<(String, String)>,
    pub echo: Echo,
}

pub struct Replica {
    pub spec: ReplicaSpec,
    process: Option<ManagedChild>,
    pub log: LogTail,
    http: reqwest::Client,
}

impl Replica {
    pub fn new(spec: ReplicaSpec) -> Result<Self> {
        Ok(Self {
            spec,
            process: None,
            log: LogTail::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    pub fn name(&self) -> String {
        format!("replica-{}", self.spec.index)
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.api_port)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.admin_port)
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    pub fn pid(&self) -> Option<i32> {
        self.process.as_ref().map(ManagedChild::pid)
    }

    /// True (once) when the process has exited on its own.
    pub fn has_exited(&mut self) -> bool {
        let exited = match self.process.as_mut() {
            Some(process) => matches!(process.try_status(), Ok(Some(_)) | Err(_)),
            None => false,
        };
        if exited {
            self.process = None;
        }
        exited
    }

    /// Starts the process (does not wait for readiness).
    pub fn start(&mut self) -> Result<()> {
        if self.process.is_some() {
            bail!("{} is already running", self.name());
        }
        let spec = &self.spec;
        let mut command = Command::new(&spec.wasmhost);
        command
            .arg("serve")
            .arg("--manifest")
            .arg(&spec.manifest)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", spec.api_port))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", spec.admin_port))
            .current_dir(&spec.root)
            .envs(spec.env.iter().map(|(k, v)| (k, v)));
        self.process = Some(ManagedChild::spawn(
            &self.name(),
            command,
            &self.log,
            spec.echo,
        )?);
        Ok(())
    }

    /// Waits until `GET /readyz` on the admin port answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let url = format!("{}/readyz", self.admin_url());
        loop {
            let process = self
                .process
                .as_mut()
                .with_context(|| format!("{} is not running", self.spec.index))?;
            if let Some(status) = process.try_status()? {
                self.process = None;
                bail!(
                    "replica-{} exited while starting ({status}):\n{}",
                    self.spec.index,
                    self.log.last(40)
                );
            }
            let last = match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => format!("/readyz answered {}", response.status()),
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                bail!(
                    "replica-{} not ready after {timeout:?} ({last}):\n{}",
                    self.spec.index,
                    self.log.last(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (graceful: in-flight requests finish), then waits for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<()> {
        let Some(process) = self.process.take() else {
            return Ok(());
        };
        process.stop(Signal::SIGTERM, timeout).await?;
        Ok(())
    }

    /// SIGKILL: the replica dies mid-request, as in a crash or an OOM kill.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            process.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM, wait, start, wait until ready.
    pub async fn restart(&mut self, timeout: Duration) -> Result<()> {
        self.terminate(timeout).await?;
        self.start()?;
        self.wait_ready(timeout).await
    }

    /// The admin `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> Result<String> {
        let response = self
            .http
            .get(format!("{}/metrics", self.admin_url()))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.text().await?)
    }

    /// The sum of every `wasmhost_requests_total` series on `/metrics`.
    pub async fn requests_total(&self) -> Result<f64> {
        Ok(sum_counter(
            &self.metrics().await?,
            "wasmhost_requests_total",
        ))
    }
}

/// Adds up all samples of `name` (any labels) in Prometheus text format.
pub fn sum_counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`, but not `name_suffix ...`.
            let value_part = if rest.starts_with('{') {
                &rest[rest.find('}')? + 1..]
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value_part.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::sum_counter;

    #[test]
    fn sum_counter_adds_every_labelled_series_and_ignores_other_metrics() {
        let text = "# TYPE wasmhost_requests_total counter\n\
                    wasmhost_requests_total{route=\"/api/...\",status=\"200\"} 5\n\
                    wasmhost_requests_total{route=\"/docs/...\",status=\"404\"} 2\n\
                    wasmhost_requests_total_created 1700000000\n\
                    wasmhost_request_duration_seconds_count 7\n";
        assert_eq!(sum_counter(text, "wasmhost_requests_total"), 7.0);
        assert_eq!(sum_counter("", "wasmhost_requests_total"), 0.0);
    }
}
