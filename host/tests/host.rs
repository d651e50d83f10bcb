//! The host running a real spin-sdk 5.2 component (the `test-app` fixture,
//! compiled to wasm32-wasip2) against a real PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{HostConfig, ScratchDb, fixture_manifest, start, start_expecting_failure};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn get(url: String) -> (u16, String) {
    let r = http().get(url).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn app(db: &ScratchDb, config: impl FnOnce(HostConfig) -> HostConfig) -> support::Host {
    let (host, port) = db.host_port();
    let base = HostConfig::new(fixture_manifest(&[]))
        .env("SPIN_VARIABLE_DB_URL", &db.url("disable"))
        .env("SPIN_VARIABLE_DB_HOST", &host)
        .env("SPIN_VARIABLE_DB_PORT", &port.to_string());
    start(config(base)).await.expect("host starts")
}

#[tokio::test]
async fn routes_exact_parameter_and_wildcard_paths_and_404s_the_rest() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;

    assert_eq!(
        get(format!("{}/hello", host.base)).await,
        (200, "hello".into())
    );

    let (status, body) = get(format!("{}/users/alice", host.base)).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["route"], "/users/:id");
    assert_eq!(v["param_id"], "alice");
    assert_eq!(
        v["full_url"],
        format!("http://127.0.0.1:{}/users/alice", host.port)
    );
    assert!(v["client_addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    // The exact route wins over the parameter.
    let (_, body) = get(format!("{}/users/me", host.base)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["route"], "/users/me");
    assert_eq!(v["param_id"], "");

    let (_, body) = get(format!("{}/files/a/b.txt?x=1", host.base)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["route"], "/files");
    assert_eq!(v["raw_route"], "/files/...");
    assert_eq!(v["path_info"], "/a/b.txt");

    let r = http()
        .get(format!("{}/nowhere", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A host-made answer carries no request id the caller did not send.
    assert!(!r.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn variables_come_from_defaults_and_environment() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    assert_eq!(
        get(format!("{}/vars/greeting", host.base)).await,
        (200, "hello from the manifest".into())
    );
    let (status, body) = get(format!("{}/vars/undeclared", host.base)).await;
    assert_eq!(status, 404);
    assert!(body.contains("Undefined"), "{body}");
    drop(host);

    let host = app(&db, |c| {
        c.env("SPIN_VARIABLE_GREETING", "from the environment")
    })
    .await;
    assert_eq!(
        get(format!("{}/vars/greeting", host.base)).await,
        (200, "from the environment".into())
    );
}

#[tokio::test]
async fn a_missing_required_variable_stops_start_up_and_is_named() {
    let output = start_expecting_failure(HostConfig::new(fixture_manifest(&[]))).unwrap();
    assert!(output.contains("`db_url`"), "{output}");
    assert!(output.contains("SPIN_VARIABLE_DB_URL"), "{output}");
}

#[tokio::test]
async fn an_invalid_manifest_or_component_is_reported_by_name() {
    let output = start_expecting_failure(HostConfig::new(
        "spin_manifest_version = 1\n[application]\nname='x'\n".into(),
    ))
    .unwrap();
    assert!(output.contains("spin_manifest_version"), "{output}");

    let broken = fixture_manifest(&[]).replace(
        &support::fixture_wasm().display().to_string(),
        "/nonexistent/app.wasm",
    );
    let output = start_expecting_failure(
        HostConfig::new(broken).env("SPIN_VARIABLE_DB_URL", "postgres://x@127.0.0.1/x"),
    )
    .unwrap();
    assert!(
        output.contains("/nonexistent/app.wasm") && output.contains("`app`"),
        "{output}"
    );
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_retried_then_named() {
    let closed_port = support::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{closed_port}/x?sslmode=disable");
    let started = Instant::now();
    let output = start_expecting_failure(
        HostConfig::new(fixture_manifest(&[]))
            .env("SPIN_VARIABLE_DB_URL", &url)
            .env("SPIN_VARIABLE_DB_PORT", &closed_port.to_string()),
    )
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "retried for the wait period"
    );
    assert!(
        output.contains(&format!("127.0.0.1:{closed_port}/x")),
        "{output}"
    );
    assert!(output.contains("unreachable"), "{output}");
}

#[tokio::test]
async fn every_pg4_type_round_trips_including_nulls() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    let (status, body) = get(format!("{}/pg/types", host.base)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["inserted"], 1);
    let types: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("DbDataType::")
        })
        .collect();
    assert_eq!(
        types,
        [
            "Boolean",
            "Int16",
            "Int32",
            "Int64",
            "Floating32",
            "Floating64",
            "Str",
            "Str",
            "Binary",
            "Date",
            "Time",
            "Datetime",
            "Datetime",
            "Uuid",
            "Jsonb",
            "Decimal",
            "RangeInt32",
            "RangeInt64",
            "RangeDecimal",
            "ArrayInt32",
            "ArrayInt64",
            "ArrayDecimal",
            "ArrayStr",
            "Interval",
            "Datetime"
        ]
    );
    let row: Vec<&str> = v["rows"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().trim_start_matches("DbValue::"))
        .collect();
    let expected = [
        "Boolean(true)",
        "Int16(-12)",
        "Int32(123456)",
        "Int64(-9007199254740993)",
        "Floating32(1.5)",
        "Floating64(-2.25e300)",
        "Str(\"héllo 🌍 'quoted' \\\"x\\\"\")",
        "Str(\"short\")",
        "Binary([0, 1, 2, 255])",
        "Date((2024, 2, 29))",
        "Time((23, 59, 58, 123456000))",
        "Datetime((1999, 12, 31, 23, 59, 59, 999999000))",
        "Datetime((2030, 1, 2, 3, 4, 5, 0))",
        "Uuid(\"67e55044-10b1-426f-9247-bb680e5fe0c8\")",
        "Jsonb({\"k\":[1,2,{\"n\":null}]})",
        "Decimal(\"12345.6789\")",
        "RangeInt32((Some((1, RangeBoundKind::Inclusive)), Some((10, RangeBoundKind::Exclusive))))",
        "RangeInt64((Some((5, RangeBoundKind::Inclusive)), None))",
        "RangeDecimal((Some((\"1.5\", RangeBoundKind::Exclusive)), Some((\"2.5\", RangeBoundKind::Inclusive))))",
        "ArrayInt32([Some(1), None, Some(3)])",
        "ArrayInt64([Some(9223372036854775807), None])",
        "ArrayDecimal([Some(\"0.1\"), None])",
        "ArrayStr([Some(\"a\"), None, Some(\"\")])",
        "Interval(Interval { micros: 3000001, days: 2, months: 14 })",
        "Datetime((2023, 11, 14, 22, 13, 20, 0))",
    ];
    for (i, (got, want)) in row.iter().zip(expected).enumerate() {
        assert_eq!(*got, want, "column {i} ({})", v["columns"][i]["name"]);
    }
    let nulls = v["rows"][1].as_array().unwrap();
    assert_eq!(nulls.len(), expected.len());
    assert!(nulls.iter().all(|c| c == "DbValue::DbNull"), "{nulls:?}");
}

#[tokio::test]
async fn a_unique_violation_reaches_the_component_with_its_sqlstate() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    let (status, body) = get(format!("{}/pg/unique", host.base)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "23505");
    assert_eq!(v["severity"], "ERROR");
    assert_eq!(v["constraint"], "uniq_pkey");
}

#[tokio::test]
async fn the_spin_profile_reports_a_unique_violation_as_spin_36_text() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--compat").arg("spin-3.6")).await;
    let (status, body) = get(format!("{}/pg/unique", host.base)).await;
    // The fixture answers 500 with what it got when it is not a db-error.
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("QueryFailed(QueryError::Text("), "{body}");
    // Spin 3.6's wording: the driver error's message, then its causes.
    assert!(
        body.contains(
            r#"db error: ERROR: duplicate key value violates unique constraint \"uniq_pkey\""#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"\n\nCaused by:\n    ERROR: duplicate key value"#),
        "{body}"
    );
}

#[tokio::test]
async fn the_spin_profile_hands_the_component_bodies_over_the_host_cap() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| {
        c.arg("--max-body-bytes")
            .arg("1024")
            .env("WASMHOST_COMPAT", "spin-3.6")
    })
    .await;
    let reply = http()
        .post(format!("{}/echo", host.base))
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.bytes().await.unwrap().len(), 64 * 1024);
}

#[tokio::test]
async fn a_postgres_address_outside_allowed_hosts_is_refused_without_connecting() {
    let db = ScratchDb::create().await.unwrap();
    // A listener that records any connection attempt.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let attempted = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(3), trap.accept())
            .await
            .is_ok()
    });
    let forbidden = format!("postgres://postgres@127.0.0.1:{trap_port}/x?sslmode=disable");
    let host = app(&db, |c| c.env("SPIN_VARIABLE_FORBIDDEN_DB_URL", &forbidden)).await;
    let (status, body) = get(format!("{}/pg/denied", host.base)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("not permitted") && body.contains("allowed_outbound_hosts"),
        "{body}"
    );
    assert!(
        !attempted.await.unwrap(),
        "the host must not open a connection"
    );
}

#[tokio::test]
async fn outbound_http_is_limited_to_allowed_hosts() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    let (status, body) = get(format!("{}/http/denied", host.base)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_lowercase().contains("denied"), "{body}");
}

#[tokio::test]
async fn the_sandbox_exposes_only_mounted_files_and_no_host_environment() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.env("HOST_ONLY_SECRET", "do-not-leak")).await;
    assert_eq!(
        get(format!("{}/read?path=/static/readable.txt", host.base)).await,
        (200, "a file the component may read\n".into())
    );
    let (status, _) = get(format!("{}/read?path=/etc/passwd", host.base)).await;
    assert_eq!(status, 403);
    let (status, _) = get(format!("{}/read?path=/static/../../etc/passwd", host.base)).await;
    assert_eq!(status, 403);
    let (status, body) = get(format!("{}/env", host.base)).await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("do-not-leak") && !body.contains("SPIN_VARIABLE"),
        "{body}"
    );
}

#[tokio::test]
async fn an_endless_loop_ends_at_the_deadline_and_the_next_request_succeeds() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--request-timeout-ms").arg("1000")).await;
    let started = Instant::now();
    let (status, body) = get(format!("{}/loop", host.base)).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "ended early: {elapsed:?}"
    );
    assert_eq!(
        get(format!("{}/hello", host.base)).await,
        (200, "hello".into())
    );
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_requests_rejected_total{reason=\"deadline\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_guest_past_its_memory_cap_gets_a_500_and_the_process_lives_on() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--memory-limit-mb").arg("64")).await;
    let (status, _) = get(format!("{}/oom", host.base)).await;
    assert_eq!(status, 500);
    assert_eq!(
        get(format!("{}/hello", host.base)).await,
        (200, "hello".into())
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--max-body-bytes").arg("1024")).await;
    let small = http()
        .post(format!("{}/echo", host.base))
        .body(vec![b'a'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.bytes().await.unwrap().len(), 1024);
    let big = http()
        .post(format!("{}/echo", host.base))
        .body(vec![b'a'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    // Without a Content-Length: the limit applies while reading.
    let chunks = futures::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'b'; 400]))),
    );
    let streamed = http()
        .post(format!("{}/echo", host.base))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
}

#[tokio::test]
async fn requests_past_the_concurrency_cap_get_503_with_retry_after() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--max-concurrency").arg("1")).await;
    let slow = tokio::spawn(get(format!("{}/sleep?ms=1500", host.base)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http()
        .get(format!("{}/hello", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(slow.await.unwrap().0, 200);
    assert_eq!(get(format!("{}/hello", host.base)).await.0, 200);
}

/// A body trickled a byte at a time is answered 408 at the request deadline,
/// and while it trickles it holds an upload slot, not the only guest slot.
#[tokio::test]
async fn a_trickled_body_gets_408_at_the_deadline_without_taking_a_guest_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| {
        c.arg("--max-concurrency")
            .arg("1")
            .arg("--request-timeout-ms")
            .arg("3000")
    })
    .await;
    let address = host.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let mut response = Vec::new();
        loop {
            let mut buffer = [0u8; 1024];
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        response.extend_from_slice(&buffer[..n]);
                        if response.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                },
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    if stream.write_all(b"a").await.is_err() {
                        break;
                    }
                }
            }
        }
        (
            String::from_utf8_lossy(&response).into_owned(),
            started.elapsed(),
        )
    });
    // While the body trickles, the one guest slot still serves others.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..5 {
        assert_eq!(get(format!("{}/hello", host.base)).await.0, 200);
    }
    let (response, elapsed) = trickle.await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 408"),
        "trickled body: {response:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(2500) && elapsed < Duration::from_secs(6),
        "408 after {elapsed:?}, deadline 3 s"
    );
    assert!(
        host.metrics()
            .await
            .unwrap()
            .contains("reason=\"body_timeout\"")
    );
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_and_refuses_new_connections() {
    let db = ScratchDb::create().await.unwrap();
    let mut host = app(&db, |c| c).await;
    let slow = tokio::spawn(get(format!("{}/sleep?ms=2000", host.base)));
    tokio::time::sleep(Duration::from_millis(400)).await;
    host.signal(nix::sys::signal::Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/hello", host.base))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "new connections are refused during shutdown"
    );
    assert_eq!(slow.await.unwrap(), (200, "slept 2000ms".into()));
    assert_eq!(
        host.wait_exit(Duration::from_secs(10)).await.unwrap(),
        Some(0)
    );
}

#[tokio::test]
async fn killed_database_connections_cost_only_requests_in_flight() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--pg-pool-size").arg("4")).await;
    // Warm the pool with several connections.
    let warm: Vec<_> = (0..4)
        .map(|_| tokio::spawn(get(format!("{}/pg/sleep?s=0.2", host.base))))
        .collect();
    for w in warm {
        assert_eq!(w.await.unwrap().0, 200);
    }
    let in_flight = tokio::spawn(get(format!("{}/pg/sleep?s=5", host.base)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = db.terminate_connections().await.unwrap();
    assert!(killed >= 1, "some connections were open");
    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 503, "the in-flight query fails: {body}");
    assert!(
        body.contains("57P01") || body.contains("connection"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..20 {
        assert_eq!(
            get(format!("{}/pg/one", host.base)).await,
            (200, "42".into())
        );
    }
}

#[tokio::test]
async fn metrics_and_readiness_report_the_host_state() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    for _ in 0..3 {
        assert_eq!(get(format!("{}/pg/one", host.base)).await.0, 200);
    }
    let metrics = host.metrics().await.unwrap();
    for needle in [
        "wasmhost_requests_total{component=\"app\",route=\"/pg/one\",status=\"200\"} 3",
        "wasmhost_request_duration_seconds_bucket",
        "wasmhost_requests_in_flight",
        "wasmhost_pg_statement_cache_total{result=\"miss\"} 1",
        "wasmhost_pg_statement_cache_total{result=\"hit\"} 2",
        "wasmhost_pg_statements_total 3",
        "wasmhost_pg_pool_connections{database=",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    assert!(
        !metrics.contains(&db.url("disable")),
        "no connection strings in metrics"
    );
    assert_eq!(get(format!("{}/healthz", host.admin)).await.0, 200);
    assert_eq!(get(format!("{}/readyz", host.admin)).await.0, 200);
}

#[tokio::test]
async fn tls_follows_sslmode() {
    let db = ScratchDb::create().await.unwrap();
    let (_, ssl) = {
        let (client, conn) =
            tokio_postgres::connect(&support::admin_url().await, tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let row = client.query_one("SHOW ssl", &[]).await.unwrap();
        ((), row.get::<_, String>(0))
    };
    if ssl != "on" {
        eprintln!("SKIPPED tls_follows_sslmode: the test server has ssl = {ssl}");
        return;
    }
    let host = app(&db, |c| c.env("SPIN_VARIABLE_DB_URL", &db.url("require"))).await;
    assert_eq!(
        get(format!("{}/pg/one", host.base)).await,
        (200, "42".into())
    );
    drop(host);
    // The server's certificate is self-signed: verification must refuse it.
    let output = start_expecting_failure(
        HostConfig::new(fixture_manifest(&[])).env("SPIN_VARIABLE_DB_URL", &db.url("verify-full")),
    )
    .unwrap();
    assert!(output.to_lowercase().contains("certificate"), "{output}");
}

/// `/count` answers how many requests its instance has served.
async fn counts(host: &support::Host, n: usize) -> Vec<String> {
    let mut seen = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = get(format!("{}/count", host.base)).await;
        assert_eq!(status, 200, "{body}");
        seen.push(body);
    }
    seen
}

#[tokio::test]
async fn without_reuse_every_request_gets_a_fresh_instance() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    assert_eq!(counts(&host, 3).await, ["1", "1", "1"]);
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_instances_reused_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn with_reuse_consecutive_requests_share_an_instance_up_to_the_maximum() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--max-instance-reuse").arg("4")).await;
    // State in the instance's linear memory carries over: the same instance
    // served the first four, a fresh one the fifth.
    assert_eq!(counts(&host, 5).await, ["1", "2", "3", "4", "1"]);
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_instances_reused_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wasmhost_instances_dropped_total{reason=\"max_reuse\"} 1"),
        "{metrics}"
    );
    // The access log says which requests ran in a reused instance (written
    // by the host's log thread, a moment after the response).
    let log = host
        .log_eventually(|log| log.contains("reused=true") && log.contains("reused=false"))
        .await;
    assert!(log.contains("reused=true"), "{log}");
    assert!(log.contains("reused=false"), "{log}");
}

#[tokio::test]
async fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| {
        c.arg("--max-instance-reuse")
            .arg("100")
            .arg("--idle-instance-timeout")
            .arg("200ms")
    })
    .await;
    assert_eq!(counts(&host, 2).await, ["1", "2"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(counts(&host, 1).await, ["1"]);
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_instances_dropped_total{reason=\"idle_timeout\"} 1"),
        "{metrics}"
    );
}

/// After a trap, a deadline, a refused memory growth or growth past the
/// watermark, the next request gets a fresh instance (its count restarts
/// at 1), even though reuse is on.
#[tokio::test]
async fn an_instance_that_trapped_timed_out_or_hit_a_limit_is_never_reused() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| {
        c.arg("--max-instance-reuse")
            .arg("100")
            .arg("--request-timeout-ms")
            .arg("1000")
            .arg("--memory-limit-mb")
            .arg("64")
            .arg("--instance-memory-watermark-mb")
            .arg("32")
    })
    .await;
    let cases = [
        ("/trap", 500, "trapped"),
        ("/loop", 503, "deadline"),
        // 80 MiB more is past the 64 MiB limit: refused, answered, not trapped.
        ("/grow?mb=80", 200, "limit"),
        // 40 MiB more is allowed, but past the 32 MiB watermark.
        ("/grow?mb=40", 200, "memory_watermark"),
    ];
    for (path, status, reason) in cases {
        // The instance in use is reused: its count goes up by one.
        let before = counts(&host, 2).await;
        let numbers: Vec<u64> = before.iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(numbers[1], numbers[0] + 1, "before {path}: {before:?}");
        let (got, body) = get(format!("{}{path}", host.base)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(counts(&host, 1).await, ["1"], "after {path}");
        let metrics = host.metrics().await.unwrap();
        assert!(
            metrics.contains(&format!(
                "wasmhost_instances_dropped_total{{reason=\"{reason}\"}} 1"
            )),
            "{path}: {metrics}"
        );
    }
    let (_, grown) = get(format!("{}/grow?mb=80", host.base)).await;
    assert_eq!(grown, "refused");
}

/// A route limit lets N requests of that route run; the next waits its turn
/// in the queue, and past the queue bound the answer is 503 with
/// Retry-After. Other routes are not held up.
#[tokio::test]
async fn a_route_limit_queues_requests_then_refuses_past_the_queue() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--route-limit").arg("GET /sleep=1/1")).await;
    let started = Instant::now();
    let first = tokio::spawn(get(format!("{}/sleep?ms=1500", host.base)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let queued = tokio::spawn({
        let url = format!("{}/sleep?ms=10", host.base);
        async move {
            let (status, _) = get(url).await;
            (status, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = http()
        .get(format!("{}/sleep?ms=10", host.base))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let (status, body) = get(format!("{}/hello", host.base)).await;
    assert_eq!((status, body.as_str()), (200, "hello"), "other routes run");
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_route_limit_waiting{limit=\"GET /sleep\"} 1"),
        "{metrics}"
    );

    assert_eq!(first.await.unwrap().0, 200);
    let (status, waited) = queued.await.unwrap();
    assert_eq!(status, 200, "the queued request ran");
    assert!(
        waited >= Duration::from_millis(1400),
        "the queued request ran before the first finished: {waited:?}"
    );
    let metrics = host.metrics().await.unwrap();
    assert!(
        metrics.contains("wasmhost_requests_rejected_total{reason=\"route_queue_full\"} 1"),
        "{metrics}"
    );
}

/// A client that writes its whole 12 MB body before it reads anything (as
/// many HTTP libraries do) still reads the 413: the host keeps reading and
/// discarding the body for a while instead of resetting the connection.
#[tokio::test]
async fn a_client_writing_a_12_mb_body_before_reading_gets_the_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c).await;
    let body = vec![b'x'; 12 << 20];
    for declared in [true, false] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", host.port))
            .await
            .unwrap();
        let head = if declared {
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
        } else {
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
        };
        stream.write_all(head.as_bytes()).await.unwrap();
        if declared {
            stream
                .write_all(&body)
                .await
                .expect("the whole body is taken");
        } else {
            for chunk in body.chunks(64 << 10) {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await
                    .expect("the whole body is taken");
                stream.write_all(chunk).await.unwrap();
                stream.write_all(b"\r\n").await.unwrap();
            }
            stream.write_all(b"0\r\n\r\n").await.unwrap();
        }
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "declared length {declared}: {answer:.200}"
        );
        assert!(answer.contains("request body exceeds"), "{answer:.400}");
    }
}

/// The guest runs in the task serving its connection. A client that goes
/// away mid-request does not cut its handler short: the handler runs to its
/// end and gives its instance back (with reuse off, dropped as `reuse_off`),
/// and the admission slot it held is released.
#[tokio::test]
async fn a_client_leaving_mid_request_does_not_cut_the_handler_short() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, |c| c.arg("--max-concurrency").arg("1")).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let gone = impatient
        .get(format!("{}/sleep?ms=800", host.base))
        .send()
        .await;
    assert!(gone.is_err(), "the client should have given up: {gone:?}");
    let dropped = "wasmhost_instances_dropped_total{reason=\"reuse_off\"} 1";
    let metrics = host.metrics().await.unwrap();
    assert!(!metrics.contains(dropped), "still sleeping: {metrics}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let metrics = host.metrics().await.unwrap();
    assert!(metrics.contains(dropped), "{metrics}");
    // The one guest slot is free again.
    assert_eq!(get(format!("{}/hello", host.base)).await.0, 200);
}
