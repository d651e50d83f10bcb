//! The stack's building blocks on their own, without the API: the private
//! PostgreSQL cluster, scratch databases, and nginx with the production config.

use std::time::Duration;

use anyhow::Result;
use devstack::nginx::Nginx;
use devstack::postgres::{PostgresCluster, ScratchDatabase, psql, random_hex, test_database_url};
use devstack::{Echo, free_port, project_root};

#[tokio::test]
async fn private_cluster_keeps_committed_rows_across_a_fast_restart() -> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("postgres");
    let password = random_hex(16)?;
    let port = free_port()?;
    let (mut cluster, created) =
        PostgresCluster::open_or_init(&data_dir, port, &password, Echo::Quiet).await?;
    assert!(created);
    cluster.start().await?;
    let url = cluster.superuser_url("postgres");
    psql(
        &url,
        "CREATE TABLE kept (value text); INSERT INTO kept VALUES ('before restart')",
    )
    .await?;

    cluster.stop_fast().await?;
    assert!(
        psql(&url, "SELECT 1").await.is_err(),
        "server still answers after stop"
    );
    cluster.start().await?;
    assert_eq!(
        psql(&url, "SELECT value FROM kept").await?.trim(),
        "before restart"
    );
    cluster.stop_fast().await?;

    // Opening the same directory again finds the cluster instead of creating one.
    let (mut reopened, created) =
        PostgresCluster::open_or_init(&data_dir, port, &password, Echo::Quiet).await?;
    assert!(!created);
    reopened.start().await?;
    assert_eq!(psql(&url, "SELECT count(*) FROM kept").await?.trim(), "1");
    reopened.stop_fast().await
}

#[tokio::test]
async fn scratch_database_gives_the_app_role_rows_but_no_ddl_and_is_dropped() -> Result<()> {
    let admin = test_database_url().await?;
    let scratch = ScratchDatabase::create(&admin).await?;
    psql(
        &scratch.owner_url,
        "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY, name text)",
    )
    .await?;
    psql(&scratch.app_url, "INSERT INTO items (name) VALUES ('one')").await?;
    assert_eq!(
        psql(&scratch.app_url, "SELECT name FROM items")
            .await?
            .trim(),
        "one"
    );
    assert!(
        psql(&scratch.app_url, "CREATE TABLE forbidden (x int)")
            .await
            .is_err(),
        "the application role must not be able to create tables"
    );
    assert!(psql(&scratch.app_url, "DROP TABLE items").await.is_err());

    let name = scratch.name.clone();
    drop(scratch);
    let left = psql(
        &admin,
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
    )
    .await?;
    assert_eq!(left.trim(), "0", "scratch database still exists after drop");
    Ok(())
}

/// nginx with the production config, upstreams that refuse connections: the
/// rate limit answers before any upstream is tried, and nginx's own errors
/// carry JSON and a request id.
#[tokio::test]
async fn nginx_rate_limits_login_and_answers_its_own_errors_in_json() -> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let dead_upstreams = [free_port()?, free_port()?];
    let mut nginx = Nginx::new(
        &project_root().join("docker/nginx/nginx.conf"),
        &dir.path().join("nginx"),
        free_port()?,
        &dead_upstreams,
        Echo::Quiet,
    );
    nginx.start().await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let response = client
        .get(format!("{}/api/tags", nginx.url()))
        .header("X-Request-ID", "trace-me-42")
        .send()
        .await?;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body: serde_json::Value = response.json().await?;
    assert!(body["errors"]["service"].is_array(), "{body}");

    // A malformed id is replaced by nginx's own.
    let response = client
        .get(format!("{}/api/tags", nginx.url()))
        .header("X-Request-ID", "bad id with spaces")
        .send()
        .await?;
    let id = response.headers()["x-request-id"].to_str()?.to_owned();
    assert_eq!(id.len(), 32, "expected nginx's $request_id, got {id:?}");

    let mut statuses = Vec::new();
    for _ in 0..30 {
        let response = client
            .post(format!("{}/api/users/login", nginx.url()))
            .json(&serde_json::json!({"user": {"email": "a@b.c", "password": "x"}}))
            .send()
            .await?;
        statuses.push(response.status().as_u16());
    }
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(
        limited >= 10,
        "expected 429s past the burst, got {statuses:?}"
    );
    // GETs are never rate limited.
    for _ in 0..20 {
        let response = client
            .get(format!("{}/api/users", nginx.url()))
            .send()
            .await?;
        assert_ne!(response.status(), 429);
    }

    let log = nginx.access_log();
    assert!(
        log.iter().any(|entry| entry["request_id"] == "trace-me-42"
            && entry["upstream_addr"]
                .as_str()
                .is_some_and(|a| a.contains("127.0.0.1"))),
        "access log lacks the request id or upstream: {log:?}"
    );
    nginx.stop().await
}
