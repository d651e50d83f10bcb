//! The compose project under test (`compose.rs`, `compose_release.rs`):
//! `docker compose` with the committed `docker/compose.yaml` on the project
//! that `scripts/check-compose` brought up, the containers as the engine
//! reports them, and clients through nginx's published port.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use devstack::project_root;
use serde_json::Value;

use super::Api;

/// The compose project under test and how to drive it.
pub struct Project {
    pub docker: String,
    pub name: String,
    pub env_file: String,
    /// A client through nginx trusting the CA in `COMPOSE_TEST_CA`.
    pub api: Api,
}

impl Project {
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run this test through scripts/check-compose")
            })
        };
        Ok(Project {
            docker: std::env::var("DOCKER").unwrap_or_else(|_| "docker".into()),
            name: var("COMPOSE_TEST_PROJECT")?,
            env_file: var("COMPOSE_TEST_ENV_FILE")?,
            api: api_trusting_ca_file(
                &var("COMPOSE_TEST_URL")?,
                std::path::Path::new(&var("COMPOSE_TEST_CA")?),
            )?,
        })
    }

    /// The local CA the nginx container made in its `tls` volume.
    pub async fn nginx_ca(&self) -> Result<String> {
        let pem = self
            .compose(&["exec", "-T", "nginx", "cat", "/etc/nginx/tls/ca.crt"])
            .await?;
        ensure!(
            pem.contains("BEGIN CERTIFICATE"),
            "no CA certificate in the nginx container: {pem}"
        );
        Ok(pem)
    }

    /// `docker compose` on this project, with the committed compose file;
    /// its standard output.
    pub async fn compose(&self, args: &[&str]) -> Result<String> {
        Ok(self.compose_with_env(&[], args).await?.0)
    }

    /// `docker compose` on this project with `env` added to its environment
    /// (which wins over the project's `.env`, e.g. `CONDUIT_IMAGE_TAG`); its
    /// standard output and standard error.
    pub async fn compose_with_env(
        &self,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<(String, String)> {
        let compose_file = project_root().join("docker/compose.yaml");
        let compose_file = compose_file.display().to_string();
        let mut full = vec![
            "compose",
            "-p",
            &self.name,
            "--env-file",
            &self.env_file,
            "-f",
            &compose_file,
        ];
        full.extend_from_slice(args);
        self.run(env, &full).await
    }

    /// `docker` with `args`; its standard output.
    pub async fn docker(&self, args: &[&str]) -> Result<String> {
        Ok(self.run(&[], args).await?.0)
    }

    async fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Result<(String, String)> {
        let output = tokio::process::Command::new(&self.docker)
            .args(args)
            .envs(env.iter().copied())
            .output()
            .await
            .with_context(|| format!("running {} {}", self.docker, args.join(" ")))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        ensure!(
            output.status.success(),
            "{} {} failed ({}): {stderr}",
            self.docker,
            args.join(" "),
            output.status,
        );
        Ok((String::from_utf8_lossy(&output.stdout).into_owned(), stderr))
    }

    /// Container ids of a service.
    pub async fn containers(&self, service: &str) -> Result<Vec<String>> {
        Ok(self
            .compose(&["ps", "-q", service])
            .await?
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect())
    }

    pub async fn inspect(&self, container: &str) -> Result<Value> {
        let text = self.docker(&["inspect", container]).await?;
        let list: Value = serde_json::from_str(&text)?;
        list.get(0)
            .cloned()
            .context("docker inspect returned nothing")
    }

    /// Waits until `count` api containers and nginx are healthy and nginx
    /// answers through the published port, over HTTPS verified against the
    /// CA it holds.
    pub async fn wait_healthy(&self, count: usize, within: Duration) -> Result<Duration> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < within {
            let mut healthy = 0;
            for id in self.containers("api").await? {
                if self.inspect(&id).await?["State"]["Health"]["Status"] == "healthy" {
                    healthy += 1;
                }
            }
            let nginx_healthy = match self.containers("nginx").await?.first() {
                Some(id) => self.inspect(id).await?["State"]["Health"]["Status"] == "healthy",
                None => false,
            };
            // Through the published port with the CA nginx holds now: after
            // `down -v` it has made a new one.
            let answers = match self.nginx_ca().await {
                Ok(pem) => match api_trusting_ca(&self.api.base, pem.as_bytes()) {
                    Ok(api) => matches!(api.get("/api/tags").await, Ok(r) if r.status() == 200),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if healthy == count && nginx_healthy && answers {
                return Ok(started.elapsed());
            }
            last = format!(
                "{healthy} of {count} api healthy, nginx healthy: {nginx_healthy}, answers: {answers}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("not healthy after {within:?}: {last}")
    }

    /// The address of each api container on the network nginx reaches it
    /// by, with the container's name.
    pub async fn api_addresses(&self) -> Result<BTreeMap<String, String>> {
        let mut addresses = BTreeMap::new();
        for id in self.containers("api").await? {
            let details = self.inspect(&id).await?;
            addresses.insert(app_address(&details)?, container_name(&details).to_owned());
        }
        Ok(addresses)
    }

    /// The upstream of every request in nginx's JSON access log.
    pub async fn upstreams_in_nginx_log(&self) -> Result<Vec<String>> {
        self.upstreams_in_nginx_log_since(None).await
    }

    /// The upstream of every request in nginx's JSON access log, of the
    /// lines logged since `since` (what `docker logs --since` takes, e.g. a
    /// Unix time) when given.
    pub async fn upstreams_in_nginx_log_since(&self, since: Option<&str>) -> Result<Vec<String>> {
        let mut args = vec!["logs", "--no-log-prefix"];
        if let Some(since) = since {
            args.extend(["--since", since]);
        }
        args.push("nginx");
        let log = self.compose(&args).await?;
        Ok(log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter_map(|entry| entry["upstream_addr"].as_str().map(str::to_owned))
            .collect())
    }

    /// Has nginx load its configuration again, which resolves `api` to the
    /// replicas running now (docker/README.md). The running configuration
    /// is the one the image's start script rendered into /tmp.
    pub async fn reload_nginx(&self) -> Result<()> {
        let reload: Vec<&str> = "exec -T nginx nginx -s reload -p /tmp/ -c /tmp/nginx.conf"
            .split(' ')
            .collect();
        self.compose(&reload).await.map(drop)
    }

    /// One SQL statement on the conduit database, as the db container's
    /// superuser over its local socket; the rows as `psql -At` prints them.
    pub async fn psql(&self, sql: &str) -> Result<String> {
        let mut psql: Vec<&str> =
            "exec -T db psql -X -qAt -v ON_ERROR_STOP=1 -U postgres -d conduit"
                .split(' ')
                .collect();
        psql.extend(["-c", sql]);
        self.compose(&psql).await
    }
}

/// A container's name, as `docker inspect` reports it.
pub fn container_name(details: &Value) -> &str {
    details["Name"]
        .as_str()
        .unwrap_or("?")
        .trim_start_matches('/')
}

/// A container's address on the project's `app` network (where nginx
/// reaches the api replicas), as `docker inspect` reports it.
pub fn app_address(details: &Value) -> Result<String> {
    let networks = details["NetworkSettings"]["Networks"]
        .as_object()
        .context("no networks")?;
    let (_, app) = networks
        .iter()
        .find(|(network, _)| network.ends_with("_app"))
        .with_context(|| format!("{} is not on the app network", container_name(details)))?;
    let address = app["IPAddress"].as_str().unwrap_or_default();
    ensure!(
        !address.is_empty(),
        "{} has no address on the app network",
        container_name(details)
    );
    Ok(address.to_owned())
}

/// A client through nginx that trusts only the CA in `ca` besides the public
/// roots.
pub fn api_trusting_ca_file(base: &str, ca: &std::path::Path) -> Result<Api> {
    let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
    api_trusting_ca(base, &pem)
}

/// A client through nginx that trusts only the CA certificate `pem` besides
/// the public roots.
pub fn api_trusting_ca(base: &str, pem: &[u8]) -> Result<Api> {
    Api::new(base, devstack::nginx::client_builder_trusting(pem)?)
}
