//! The stack's building blocks on their own, without the API: the private
//! PostgreSQL cluster, scratch databases, and nginx with the production config.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use devstack::nginx::{Nginx, NginxPorts};
use devstack::postgres::{PostgresCluster, ScratchDatabase, psql, test_database_url};
use devstack::{Echo, free_port, project_root, random_hex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// nginx with the production config in front of `upstream_ports`, on free
/// ports, with a local CA and certificate made in `dir/tls`.
fn production_nginx(dir: &std::path::Path, upstream_ports: &[u16]) -> Result<Nginx> {
    Ok(Nginx::new(
        &project_root().join("docker/nginx/nginx.conf"),
        &dir.join("nginx"),
        NginxPorts {
            https: free_port()?,
            http: free_port()?,
        },
        &dir.join("tls"),
        upstream_ports,
        Echo::Quiet,
    ))
}

/// A client for `nginx`'s HTTPS port that verifies its certificate against
/// the local CA.
fn verified_client(nginx: &Nginx) -> Result<reqwest::Client> {
    Ok(nginx
        .client_builder()?
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// Plain HTTP never reaches a replica: every request gets a 308 to the same
/// URL over HTTPS. Over HTTPS the certificate verifies against the local CA,
/// every answer (the replica's and nginx's own errors) carries HSTS, and the
/// replica learns the request came over HTTPS.
#[tokio::test]
async fn nginx_redirects_plain_http_and_serves_https_with_hsts() -> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let (upstream_port, received) = recording_upstream().await?;
    let mut nginx = production_nginx(dir.path(), &[upstream_port])?;
    nginx.start().await?;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    for (method, path) in [
        (reqwest::Method::GET, "/api/tags?limit=5"),
        (reqwest::Method::POST, "/api/users/login"),
        (reqwest::Method::GET, "/docs"),
    ] {
        let response = plain
            .request(method.clone(), format!("{}{path}", nginx.http_url()))
            .send()
            .await?;
        assert_eq!(response.status(), 308, "{method} {path} over plain HTTP");
        assert_eq!(
            response.headers()["location"],
            format!("{}{path}", nginx.url()).as_str(),
            "{method} {path}"
        );
    }
    assert!(
        received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .is_empty(),
        "a plain HTTP request reached the replica"
    );

    // Without the local CA the certificate is refused: nothing is trusted
    // by accident.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let refused = untrusting
        .get(format!("{}/api/tags", nginx.url()))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate from an unknown CA was accepted"
    );

    let client = verified_client(&nginx)?;
    let response = client
        .get(format!("{}/api/tags", nginx.url()))
        .header("X-Request-ID", "over-tls")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000"
    );
    // nginx's own answers carry it too: a body over 1 MiB gets its 413.
    let response = client
        .post(format!("{}/api/articles", nginx.url()))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=63072000"
    );

    let received = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let headers = received
        .iter()
        .find(|headers| header(headers, "x-request-id") == Some("over-tls"))
        .context("the upstream never got the HTTPS request")?;
    assert_eq!(header(headers, "x-forwarded-proto"), Some("https"));
    nginx.stop().await
}

/// nginx with the production config, upstreams that refuse connections: the
/// rate limit answers before any upstream is tried, and nginx's own errors
/// carry JSON and a request id.
#[tokio::test]
async fn nginx_rate_limits_login_and_answers_its_own_errors_in_json() -> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let dead_upstreams = [free_port()?, free_port()?];
    let mut nginx = production_nginx(dir.path(), &dead_upstreams)?;
    nginx.start().await?;
    let client = verified_client(&nginx)?;

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

/// The header lines of one request as a replica received them.
type ReceivedHeaders = Vec<(String, String)>;

/// A stand-in replica on a loopback port: it answers every request with an
/// empty 200 and keeps the headers each request arrived with.
async fn recording_upstream() -> Result<(u16, Arc<Mutex<Vec<ReceivedHeaders>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            let recorder = Arc::clone(&recorder);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match connection.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&chunk[..read]),
                    }
                }
                let headers = String::from_utf8_lossy(&head)
                    .lines()
                    .skip(1)
                    .filter_map(|line| line.split_once(':'))
                    .map(|(name, value)| {
                        (name.trim().to_ascii_lowercase(), value.trim().to_owned())
                    })
                    .collect();
                if let Ok(mut received) = recorder.lock() {
                    received.push(headers);
                }
                let _ = connection
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((port, received))
}

fn header<'a>(headers: &'a ReceivedHeaders, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| value.as_str())
}

/// W3C trace context goes through nginx untouched, so the replica's server
/// span joins the caller's trace with the caller's sampling decision; nginx
/// never invents a traceparent; and its access log names the trace.
#[tokio::test]
async fn nginx_passes_trace_context_through_unchanged_and_logs_the_trace_id() -> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let (upstream_port, received) = recording_upstream().await?;
    let mut nginx = production_nginx(dir.path(), &[upstream_port])?;
    nginx.start().await?;
    let client = verified_client(&nginx)?;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let tracestate = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    // Each request: (request id, traceparent sent, trace id the log must show).
    let mut cases: Vec<(String, Option<String>, &str)> = vec![
        ("traced".into(), Some(traceparent.clone()), TRACE_ID),
        ("untraced".into(), None, "-"),
    ];
    // Malformed: reaches the replica as sent (it decides), logged as absent.
    for (index, malformed) in [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "not a traceparent",
    ]
    .into_iter()
    .enumerate()
    {
        cases.push((
            format!("malformed-{index}"),
            Some(malformed.to_owned()),
            "-",
        ));
    }

    for (request_id, sent, _) in &cases {
        let mut request = client
            .get(format!("{}/api/tags", nginx.url()))
            .header("X-Request-ID", request_id.as_str());
        if let Some(sent) = sent {
            request = request
                .header("traceparent", sent.as_str())
                .header("tracestate", tracestate);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), 200, "request {request_id}");
    }

    let received = received
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?
        .clone();
    for (request_id, sent, _) in &cases {
        let headers = received
            .iter()
            .find(|headers| header(headers, "x-request-id") == Some(request_id.as_str()))
            .with_context(|| format!("the upstream never got request {request_id}"))?;
        assert_eq!(
            header(headers, "traceparent"),
            sent.as_deref(),
            "traceparent of request {request_id} as the replica got it"
        );
        let expected_state = sent.as_ref().map(|_| tracestate);
        assert_eq!(
            header(headers, "tracestate"),
            expected_state,
            "tracestate of request {request_id} as the replica got it"
        );
    }

    // nginx writes a line after its response; wait for all of them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = nginx.access_log();
        let logged = |id: &str| log.iter().any(|entry| entry["request_id"] == id);
        if cases.iter().all(|(request_id, _, _)| logged(request_id)) {
            break log;
        }
        if Instant::now() > deadline {
            bail!("access log lacks some requests: {log:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (request_id, _, trace_id) in &cases {
        let entry = log
            .iter()
            .find(|entry| entry["request_id"] == request_id.as_str())
            .context("logged request disappeared")?;
        assert_eq!(
            entry["trace_id"], *trace_id,
            "trace_id in the access log line of request {request_id}: {entry}"
        );
    }
    nginx.stop().await
}
