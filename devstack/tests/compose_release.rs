//! A release with a schema change, rolled out under load on the compose
//! project, with the commands a compose user types (docker/README.md,
//! "Release a new version"); the procedure and its checks are the local
//! stack's (`support/release.rs`):
//!
//! 1. expand: `docker compose run --rm migrate` with N+1's image
//!    (`CONDUIT_IMAGE_TAG`), whose migrations add `articles.revision`, while
//!    the three api containers of version N serve;
//! 2. roll, one container at a time: `docker compose up -d --no-deps
//!    --no-recreate --scale api=4 api` with N+1's tag starts one N+1
//!    container next to the old ones (which it keeps: the test checks it),
//!    healthy before nginx is reloaded to resolve `api` again, and serving
//!    through nginx before an old one is stopped; `docker stop` (SIGTERM:
//!    wasmhost stops accepting, nginx retries refused connections on another
//!    replica, and the requests under way finish) and `docker rm`, and
//!    nginx reloaded again;
//! 3. contract: `docker compose run --rm migrate` with the contract
//!    migrations mounted and named by `WASMHOST_MIGRATIONS_DIR`.
//!
//! Version N is the image `scripts/check-compose` built from
//! `docker/Dockerfile`; N+1 is `docker/tests/release/Dockerfile` on top of it:
//! the Conduit component built with its `release-fixture` feature and the
//! expand migration, precompiled, as a release of the component alone ships.
//!
//! Run by `scripts/check-compose` after `compose.rs`, on the same project
//! (3 api replicas running N), with the variables `compose.rs` takes and
//! `COMPOSE_TEST_NEXT_TAG`: the tag of N+1's image (`conduit-wasmhost:TAG`).
//! Ignored by a plain `cargo test`.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use devstack::project_root;
use serde_json::Value;
use support::compose::{Project, app_address, container_name};
use support::release::{Deployment, Version, release_under_load, version_in};

const REPLICAS: usize = 3;
/// The wasmhost image's repository; the tag says the version.
const IMAGE: &str = "conduit-wasmhost";

#[tokio::test]
#[ignore = "needs the compose project and N+1's image that scripts/check-compose provides"]
async fn compose_release_with_expand_roll_contract_under_load_fails_no_request_and_loses_no_write()
-> Result<()> {
    let project = Project::from_env()?;
    let next_tag = std::env::var("COMPOSE_TEST_NEXT_TAG")
        .context("COMPOSE_TEST_NEXT_TAG is not set: run this test through scripts/check-compose")?;
    project
        .wait_healthy(REPLICAS, Duration::from_secs(180))
        .await?;

    let current_image = {
        let containers = project.containers("api").await?;
        ensure!(
            containers.len() == REPLICAS,
            "expected {REPLICAS} api containers, found {}",
            containers.len()
        );
        let mut images = BTreeSet::new();
        for id in &containers {
            images.insert(image_of(&project.inspect(id).await?)?.0);
        }
        ensure!(images.len() == 1, "api containers run {images:?}");
        images.into_iter().next().context("no image")?
    };
    let next_image = format!("{IMAGE}:{next_tag}");
    ensure!(
        current_image != next_image,
        "the api containers already run {next_image}"
    );
    let next_image_id = project
        .docker(&["image", "inspect", "--format", "{{.Id}}", &next_image])
        .await
        .with_context(|| format!("N+1's image {next_image} (scripts/check-compose builds it)"))?
        .trim()
        .to_owned();
    println!("N: {current_image}; N+1: {next_image} ({next_image_id})");

    // The CA nginx holds now (compose.rs ends with `down -v`, after which
    // nginx made a new one).
    let ca = project.nginx_ca().await?;
    let base = project.api.base.clone();
    let mut compose = ComposeProject {
        project: &project,
        next_tag,
        next_image,
        next_image_id,
        current_image,
    };
    let result = release_under_load("compose release under load", &mut compose, &base, || {
        devstack::nginx::client_builder_trusting(ca.as_bytes())
    })
    .await;
    if result.is_err()
        && let Ok(ps) = project.compose(&["ps", "-a"]).await
    {
        eprintln!("{ps}");
    }
    result
}

/// The release's steps on the compose project.
struct ComposeProject<'a> {
    project: &'a Project,
    /// `CONDUIT_IMAGE_TAG` of N+1: compose's `migrate` and `api` run
    /// `conduit-wasmhost:` this tag.
    next_tag: String,
    next_image: String,
    next_image_id: String,
    current_image: String,
}

/// A container's image as compose asked for it (`conduit-wasmhost:local`)
/// and the id of the image it runs.
fn image_of(details: &Value) -> Result<(String, String)> {
    let name = details["Config"]["Image"]
        .as_str()
        .context("no Config.Image")?;
    let id = details["Image"].as_str().context("no Image")?;
    Ok((name.to_owned(), id.to_owned()))
}

impl ComposeProject<'_> {
    /// `docker compose` with N+1's image tag.
    async fn compose_next(&self, args: &[&str]) -> Result<()> {
        self.project
            .compose_with_env(&[("CONDUIT_IMAGE_TAG", &self.next_tag)], args)
            .await
            .map(drop)
    }

    /// Waits until `container` reports healthy (the image's health check:
    /// `/readyz`, components loaded and the database reachable).
    async fn wait_container_healthy(&self, container: &str, within: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let details = self.project.inspect(container).await?;
            let health = &details["State"]["Health"]["Status"];
            if health == "healthy" {
                return Ok(());
            }
            if started.elapsed() > within || details["State"]["Running"] != true {
                bail!(
                    "{} is not healthy after {:.1?}: {health}, state {}",
                    container_name(&details),
                    started.elapsed(),
                    details["State"]
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until nginx's access log names `address` as the upstream of a
    /// request logged since `since`.
    async fn wait_nginx_sends_to(
        &self,
        address: &str,
        since: &str,
        within: Duration,
    ) -> Result<()> {
        let started = Instant::now();
        let upstream = format!("{address}:3000");
        while started.elapsed() < within {
            let upstreams = self
                .project
                .upstreams_in_nginx_log_since(Some(since))
                .await?;
            if upstreams
                .iter()
                .any(|u| u.split([',', ' ']).any(|part| part == upstream))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("nginx sent no request to {upstream} within {within:?} of its reload")
    }
}

/// Now, as `docker logs --since` takes it (Unix seconds.nanoseconds).
fn unix_now() -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    Ok(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()))
}

impl Deployment for ComposeProject<'_> {
    fn replicas(&self) -> usize {
        REPLICAS
    }

    async fn expand(&mut self) -> Result<()> {
        // N+1's image holds the product's migrations and its expand one.
        self.compose_next(&["run", "--rm", "migrate"]).await
    }

    async fn replace_replica(&mut self, index: usize) -> Result<()> {
        let started = Instant::now();
        let before = self.project.containers("api").await?;
        let mut old = None;
        for id in &before {
            let details = self.project.inspect(id).await?;
            if image_of(&details)?.0 == self.current_image {
                old = Some((id.clone(), container_name(&details).to_owned()));
                break;
            }
        }
        let (old_id, old_name) =
            old.with_context(|| format!("no api container runs {} any more", self.current_image))?;

        // One more replica, from N+1's image; the running ones are kept
        // although their image is no longer the one compose would use.
        let scale = format!("api={}", before.len() + 1);
        self.compose_next(&[
            "up",
            "-d",
            "--no-deps",
            "--no-build",
            "--no-recreate",
            "--scale",
            &scale,
            "api",
        ])
        .await?;
        let after = self.project.containers("api").await?;
        let kept: Vec<&String> = before.iter().filter(|id| after.contains(id)).collect();
        ensure!(
            kept.len() == before.len(),
            "docker compose up --no-recreate replaced running api containers: \
             before {before:?}, after {after:?}"
        );
        let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
        let [new_id] = new.as_slice() else {
            bail!("expected one new api container, found {new:?}");
        };
        let new_details = self.project.inspect(new_id).await?;
        let new_name = container_name(&new_details).to_owned();
        let (image, image_id) = image_of(&new_details)?;
        ensure!(
            image == self.next_image && image_id == self.next_image_id,
            "{new_name} runs {image} ({image_id}), not {} ({})",
            self.next_image,
            self.next_image_id
        );

        self.wait_container_healthy(new_id, Duration::from_secs(120))
            .await?;
        let healthy_after = started.elapsed();
        // Only now does nginx learn the new replica's address.
        let since = unix_now()?;
        self.project.reload_nginx().await?;
        let address = app_address(&new_details)?;
        self.wait_nginx_sends_to(&address, &since, Duration::from_secs(30))
            .await?;
        let serving_after = started.elapsed();

        // SIGTERM, and Docker waits for the exit up to the service's
        // stop_grace_period.
        let stop = Instant::now();
        self.project.docker(&["stop", &old_id]).await?;
        let stopped_in = stop.elapsed();
        let exit = self.project.inspect(&old_id).await?["State"]["ExitCode"].clone();
        ensure!(
            exit == 0,
            "{old_name} exited with {exit} after docker stop, not 0 (a clean drain)"
        );
        self.project.reload_nginx().await?;
        self.project.docker(&["rm", &old_id]).await?;
        println!(
            "  replica {}: {new_name} (N+1) healthy after {healthy_after:.1?}, served through \
             nginx after {serving_after:.1?}; {old_name} (N) stopped in {stopped_in:.1?}, exit 0",
            index + 1
        );
        Ok(())
    }

    async fn contract(&mut self) -> Result<()> {
        let contract = project_root().join("devstack/tests/release/contract");
        let mount = format!("{}:/release/contract:ro", contract.display());
        self.compose_next(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "-e",
            "WASMHOST_MIGRATIONS_DIR=/release/contract",
            "migrate",
        ])
        .await
    }

    async fn every_replica_runs_next(&self) -> Result<()> {
        let containers = self.project.containers("api").await?;
        ensure!(
            containers.len() == REPLICAS,
            "{} api containers after the roll, not {REPLICAS}",
            containers.len()
        );
        for id in &containers {
            let details = self.project.inspect(id).await?;
            let name = container_name(&details);
            let (image, image_id) = image_of(&details)?;
            ensure!(
                image == self.next_image && image_id == self.next_image_id,
                "{name} runs {image} ({image_id}) after the roll"
            );
            // Straight to the replica, past nginx's balancing: from the
            // nginx container, which shares the internal `app` network with
            // it (the host may have no route there).
            let address = app_address(&details)?;
            let url = format!("http://{address}:3000/api/tags");
            let (_, headers) = self
                .project
                .compose_with_env(
                    &[],
                    &[
                        "exec",
                        "-T",
                        "nginx",
                        "wget",
                        "-S",
                        "-q",
                        "-O",
                        "/dev/null",
                        &url,
                    ],
                )
                .await
                .with_context(|| format!("GET {url} ({name}) from the nginx container"))?;
            let version = version_in(
                headers
                    .lines()
                    .filter_map(|line| line.trim().split_once(':'))
                    .map(|(name, value)| (name.trim(), value.trim())),
            );
            ensure!(
                version == Version::Next,
                "{name} ({url}) answered as {version:?}:\n{headers}"
            );
            println!("  {name} asked directly at {address}: N+1 ({image})");
        }
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<String> {
        self.project.psql(sql).await
    }
}
