//! End-to-end on a Docker engine: the images built from the committed
//! Dockerfiles, the committed `docker/compose.yaml` brought up with a
//! generated `.env`, and the same fault properties the local stack's tests
//! prove, through nginx's published port.
//!
//! `scripts/check-compose` prepares everything (engine, base images, the
//! images, the project up with 3 replicas, the Postman collection) and then
//! runs this test with:
//! - `COMPOSE_TEST_PROJECT`: the compose project name;
//! - `COMPOSE_TEST_ENV_FILE`: its `.env` (random secrets, a free port);
//! - `COMPOSE_TEST_URL`: nginx's published HTTPS address, e.g.
//!   `https://127.0.0.1:18443`;
//! - `COMPOSE_TEST_CA`: the CA that signed nginx's certificate (the local CA
//!   the nginx container made), so that every request verifies it;
//! - `DOCKER`: the docker client (with the compose plugin).
//!
//! The test is ignored by a plain `cargo test`: it needs that running project.
//! Each step prints what it checked.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::compose::{Project, api_trusting_ca, container_name};
use support::{Api, WriteStream, gets_with_a_kill_midway};

#[tokio::test]
#[ignore = "needs the compose project that scripts/check-compose brings up"]
async fn compose_stack_end_to_end() -> Result<()> {
    let project = Project::from_env()?;
    api_containers_run_as_65532_on_a_read_only_root_and_are_healthy(&project).await?;
    scaled_to_5_replicas_nginx_reaches_every_one(&project).await?;
    api_container_killed_during_2000_gets_fails_no_request(&project).await?;
    database_restarted_under_writes_keeps_every_acknowledged_write(&project).await?;
    down_and_up_keeps_the_data_and_down_v_drops_it(&project).await?;
    Ok(())
}

async fn api_containers_run_as_65532_on_a_read_only_root_and_are_healthy(
    project: &Project,
) -> Result<()> {
    let containers = project.containers("api").await?;
    ensure!(
        containers.len() == 3,
        "expected 3 api containers, found {}",
        containers.len()
    );
    for id in &containers {
        let details = project.inspect(id).await?;
        let name = container_name(&details);
        ensure!(
            details["HostConfig"]["ReadonlyRootfs"] == true,
            "{name}: root filesystem is writable"
        );
        ensure!(
            details["State"]["Health"]["Status"] == "healthy",
            "{name}: health {}",
            details["State"]["Health"]["Status"]
        );
        // The process itself, as the kernel sees it.
        let pid = details["State"]["Pid"].as_u64().context("no pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uids = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .context("no Uid line")?;
        ensure!(
            uids.split_whitespace().all(|uid| uid == "65532"),
            "{name}: uids {uids}"
        );
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root_read_only = mounts.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(4) == Some(&"/")
                && fields
                    .get(5)
                    .is_some_and(|o| o.split(',').any(|f| f == "ro"))
        });
        ensure!(root_read_only, "{name}: / is not mounted read-only");
        eprintln!("checked {name}: uid 65532 (real, effective, saved, fs), / mounted ro, healthy");
    }
    Ok(())
}

async fn scaled_to_5_replicas_nginx_reaches_every_one(project: &Project) -> Result<()> {
    project
        .compose(&["up", "-d", "--no-build", "--scale", "api=5"])
        .await?;
    // nginx resolves `api` when it starts (docker/README.md).
    project.compose(&["restart", "nginx"]).await?;
    let took = project.wait_healthy(5, Duration::from_secs(180)).await?;
    eprintln!("scaled to 5 api replicas: all healthy after {took:.1?}");
    let addresses = project.api_addresses().await?;
    ensure!(addresses.len() == 5, "replica addresses: {addresses:?}");

    for _ in 0..200 {
        let response = project.api.get("/api/tags").await?;
        ensure!(
            response.status() == 200,
            "GET /api/tags: {}",
            response.status()
        );
    }
    let mut per_replica: BTreeMap<String, usize> = BTreeMap::new();
    for upstream in project.upstreams_in_nginx_log().await? {
        // "10.0.3.4:3000", or a list when nginx retried on another replica.
        for address in upstream.split([',', ' ']).filter(|part| !part.is_empty()) {
            if let Some((ip, _port)) = address.rsplit_once(':')
                && let Some(name) = addresses.get(ip)
            {
                *per_replica.entry(name.clone()).or_default() += 1;
            }
        }
    }
    let reached: HashSet<&String> = per_replica.keys().collect();
    ensure!(
        reached.len() == 5,
        "nginx's log names {} of 5 replicas: {per_replica:?}",
        reached.len()
    );
    eprintln!("nginx's access log names all 5 replicas as upstreams: {per_replica:?}");
    Ok(())
}

async fn api_container_killed_during_2000_gets_fails_no_request(project: &Project) -> Result<()> {
    let api = project.api.clone();
    let token = api.register("compose-reader").await?;
    let slug = api
        .create_article_ok(&token, "Read me while a container dies")
        .await?;
    let paths = [
        format!("/api/articles/{slug}"),
        "/api/tags".to_owned(),
        "/api/articles?limit=5".to_owned(),
    ];
    let victim = project
        .containers("api")
        .await?
        .into_iter()
        .nth(1)
        .context("no second api container")?;
    let killed_at =
        gets_with_a_kill_midway(&api, &paths, "an api container was killed", async || {
            project.docker(&["kill", &victim]).await.map(drop)
        })
        .await?;
    eprintln!(
        "docker kill of {} after {killed_at} of {} GETs: 0 failed requests",
        &victim[..12.min(victim.len())],
        support::GETS
    );
    // Back to a full set for the next steps (the restart policy may already
    // have restarted it).
    project.docker(&["start", &victim]).await?;
    project.wait_healthy(5, Duration::from_secs(120)).await?;
    Ok(())
}

async fn database_restarted_under_writes_keeps_every_acknowledged_write(
    project: &Project,
) -> Result<()> {
    let api = project.api.clone();
    let token = api.register("compose-writer").await?;
    let writes = WriteStream::start(&api, &token, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restart_started = Instant::now();
    project.compose(&["restart", "db"]).await?;
    let restarted = Instant::now();
    // Keep writing until writes succeed again, at most a minute.
    let mut recovered_after = None;
    while restarted.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let response = api.create_article(&token, "after the restart").await?;
        if response.status().is_success() {
            recovered_after = Some(restarted.elapsed());
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = writes.stop().await?;
    let recovered_after = recovered_after
        .context("no write succeeded within 60 s after `docker compose restart db`")?;

    let acknowledged: Vec<&String> = writes.iter().filter_map(|w| w.slug.as_ref()).collect();
    let refused = writes.iter().filter(|w| w.slug.is_none()).count();
    let during_restart = writes
        .iter()
        .filter(|w| w.slug.is_some() && w.finished >= restart_started && w.finished <= restarted)
        .count();
    let unexpected: Vec<Option<u16>> = writes
        .iter()
        .filter(|w| w.slug.is_none() && !matches!(w.status, Some(503) | Some(502) | None))
        .map(|w| w.status)
        .collect();
    ensure!(
        unexpected.is_empty(),
        "writes refused with unexpected statuses during the restart: {unexpected:?}"
    );
    let mut missing = Vec::new();
    for slug in &acknowledged {
        if api.article_status(slug).await? != 200 {
            missing.push((*slug).clone());
        }
    }
    ensure!(
        missing.is_empty(),
        "{} of {} acknowledged writes are gone after the restart: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
    ensure!(!acknowledged.is_empty(), "no write was acknowledged at all");
    eprintln!(
        "docker compose restart db under 4 writers: {} writes acknowledged ({during_restart} while it restarted), \
         all {} there after it; {refused} refused with 503 during the outage; writes succeed again {recovered_after:.1?} \
         after the restart command returned, with no api restart",
        acknowledged.len(),
        acknowledged.len()
    );
    Ok(())
}

async fn down_and_up_keeps_the_data_and_down_v_drops_it(project: &Project) -> Result<()> {
    let api = project.api.clone();
    let token = api.register("compose-persistent").await?;
    let slug = api
        .create_article_ok(&token, "Survives down and up")
        .await?;
    let count_before = articles_count(&api).await?;

    project.compose(&["down"]).await?;
    let started = Instant::now();
    project.compose(&["up", "-d", "--no-build"]).await?;
    let took = project.wait_healthy(3, Duration::from_secs(180)).await?;
    let count_after = articles_count(&api).await?;
    ensure!(
        api.article_status(&slug).await? == 200,
        "{slug} is gone after down and up"
    );
    ensure!(
        count_after == count_before,
        "articlesCount {count_before} before down, {count_after} after up"
    );
    eprintln!(
        "down then up: {count_after} of {count_before} articles kept on the volume; \
         up to all 3 replicas healthy in {:.1?} (wait {took:.1?})",
        started.elapsed()
    );

    // The same client, trusting the CA made at the first start, still
    // verified nginx's certificate above: the CA is kept with the data.
    // `down -v` drops it with the data, and nginx makes a new one.
    let old_ca = project.nginx_ca().await?;
    project.compose(&["down", "-v"]).await?;
    project.compose(&["up", "-d", "--no-build"]).await?;
    project.wait_healthy(3, Duration::from_secs(180)).await?;
    let new_ca = project.nginx_ca().await?;
    ensure!(new_ca != old_ca, "the local CA survived down -v");
    ensure!(
        api.get("/api/tags").await.is_err(),
        "a client trusting only the dropped CA was served"
    );
    let api = api_trusting_ca(&api.base, new_ca.as_bytes())?;
    let count_fresh = articles_count(&api).await?;
    ensure!(
        count_fresh == 0,
        "articlesCount {count_fresh} after down -v"
    );
    ensure!(
        api.article_status(&slug).await? == 404,
        "{slug} still there after down -v"
    );
    eprintln!("down -v then up: a fresh database, 0 articles ({count_before} before)");
    Ok(())
}

async fn articles_count(api: &Api) -> Result<i64> {
    let response = api.get("/api/articles?limit=1").await?;
    ensure!(response.status() == 200, "list: {}", response.status());
    let body: Value = response.json().await?;
    body["articlesCount"].as_i64().context("no articlesCount")
}
