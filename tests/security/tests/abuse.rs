//! Resource abuse through the real nginx (its HTTPS port, over TLS) in front
//! of two replicas: a 100 MB body, a body trickled at one byte a second,
//! thousands of idle connections (half never starting TLS, half stopping in
//! the middle of their headers)
//! and a login flood, while a normal client keeps calling the API and its
//! success rate and latency are measured. Afterwards, no secret of the stack
//! appears in any process's log, in the replicas' metrics or in the error
//! bodies the attacks received.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use devstack::nginx::tls_connect;
use devstack::{Database, Stack, StackConfig, project_root};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::sandbox::find_secrets;
use crate::support::{self, percentile, raise_fd_limit, register, send_json};

/// Idle connections the issue asks for.
const IDLE_CONNECTIONS_WANTED: usize = 10_000;
/// The replicas' request deadline in this test (WASMHOST_REQUEST_TIMEOUT_MS),
/// which bounds how long a request body may take to arrive.
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The normal client: GET /api/tags in a loop until `stop`, each request
/// recorded as (succeeded, latency).
fn normal_client(
    base: String,
    builder: reqwest::ClientBuilder,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<(bool, Duration)>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = builder
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|error| panic!("client: {error}"));
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let ok = matches!(
                http.get(format!("{base}/api/tags"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16()),
                Ok(200)
            );
            samples.lock().await.push((ok, started.elapsed()));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Success rate and latency percentiles of the samples taken so far, which
/// are then cleared.
async fn measure(samples: &Mutex<Vec<(bool, Duration)>>) -> (usize, usize, Duration, Duration) {
    let mut samples = samples.lock().await;
    let total = samples.len();
    let ok = samples.iter().filter(|(ok, _)| *ok).count();
    let mut latencies: Vec<Duration> = samples.iter().map(|(_, latency)| *latency).collect();
    samples.clear();
    (
        ok,
        total,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
    )
}

/// POSTs an article whose 1,000-byte body arrives one byte a second
/// (`trickle`) or stops after its first byte (a stall), until an answer
/// comes or `limit` passes. Returns the bytes sent, the status and text of
/// the answer, and when it came.
async fn slow_body(
    tls_dir: &Path,
    port: u16,
    token: &str,
    trickle: bool,
    limit: Duration,
) -> Result<(usize, Option<u16>, String, Duration)> {
    let mut stream = tls_connect(tls_dir, port).await?;
    stream
        .write_all(
            format!(
                "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Token {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await?;
    let started = Instant::now();
    let mut sent = 1;
    let mut buffer = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while started.elapsed() < limit {
        let mut chunk = [0u8; 4096];
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buffer.extend_from_slice(&chunk[..n]);
                    if buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.ends_with(b"\n") {
                        break;
                    }
                }
            },
            _ = tick.tick(), if trickle => {
                if stream.write_all(b" ").await.is_ok() {
                    sent += 1;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if !trickle => {}
        }
    }
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    Ok((sent, status, text, started.elapsed()))
}

/// POSTs a 100 MB article body (`chunked` or with a Content-Length), writing
/// as long as nginx reads; returns the status nginx answered with, the body,
/// and how many bytes it took before answering.
async fn hundred_megabytes(
    tls_dir: &Path,
    port: u16,
    token: &str,
    chunked: bool,
) -> Result<(Option<u16>, String, usize)> {
    const SIZE: usize = 100 * 1024 * 1024;
    let mut stream = tls_connect(tls_dir, port).await?;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {SIZE}")
    };
    stream
        .write_all(
            format!(
                "POST /api/articles HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {token}\r\n\
                 Content-Type: application/json\r\n{framing}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < SIZE {
            let result = if chunked {
                let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
                framed.extend_from_slice(&block);
                framed.extend_from_slice(b"\r\n");
                writer.write_all(&framed).await
            } else {
                writer.write_all(&block).await
            };
            if result.is_err() {
                break;
            }
            sent += block.len();
        }
        sent
    });
    let mut buffer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            if buffer.windows(4).any(|w| w == b"\r\n\r\n") && buffer.ends_with(b"\n") {
                break;
            }
        }
    })
    .await;
    writing.abort();
    let sent = writing.await.unwrap_or(0);
    let text = String::from_utf8_lossy(&buffer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok());
    Ok((status, text, sent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_through_nginx_is_refused_while_normal_clients_are_served() -> Result<()> {
    let _serial = support::serial().await;
    support::check_components()?;
    let fd_limit = raise_fd_limit();
    let dir = tempfile::tempdir()?;
    let mut config = StackConfig::new(
        &project_root(),
        &dir.path().join("state"),
        Database::Private {
            data_dir: dir.path().join("postgres"),
            port: 0,
        },
    )?;
    config.replicas = 2;
    config.replica_env = vec![
        ("RUST_LOG".into(), "debug".into()),
        (
            "WASMHOST_REQUEST_TIMEOUT_MS".into(),
            REQUEST_DEADLINE.as_millis().to_string(),
        ),
    ];
    let stack = Stack::start(config).await?;
    let result = attack(&stack, fd_limit).await;
    if let Err(error) = &result {
        eprintln!("{error:#}\n{}", stack.log_tails(30));
    }
    result
}

async fn attack(stack: &Stack, fd_limit: u64) -> Result<()> {
    // Everything goes to nginx's HTTPS port, over TLS verified against the
    // stack's local CA, as clients reach it.
    let base = stack.url();
    let port = stack.nginx.ports.https;
    let tls_dir = stack.nginx.tls_dir.clone();
    let http = stack
        .client_builder()?
        .timeout(Duration::from_secs(30))
        .build()?;
    let token = register(&http, &base, "abused", "abused-password").await?;
    let mut error_bodies = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let client = normal_client(
        base.clone(),
        stack.client_builder()?,
        stop.clone(),
        samples.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, total, p50, p99) = measure(&samples).await;
    eprintln!("normal client alone: {ok}/{total} ok, p50 {p50:?}, p99 {p99:?}");
    let mut failures = Vec::new();

    // 1. 100 MB bodies: refused with 413 before they are read.
    for chunked in [false, true] {
        let (status, text, sent) = hundred_megabytes(&tls_dir, port, &token, chunked).await?;
        eprintln!(
            "100 MB body ({}): {status:?} after {:.1} MB written",
            if chunked { "chunked" } else { "Content-Length" },
            sent as f64 / 1_048_576.0
        );
        if status != Some(413) || !text.contains("\"errors\"") {
            failures.push(format!(
                "100 MB body (chunked: {chunked}): {status:?} {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        error_bodies.push(text);
    }

    // 2. Idle connections, as many as the open-file limit allows (each costs
    // a descriptor here and one in nginx), held while the slow body runs.
    let wanted =
        IDLE_CONNECTIONS_WANTED.min(usize::try_from(fd_limit).unwrap_or(0).saturating_sub(1_000));
    if wanted < IDLE_CONNECTIONS_WANTED {
        eprintln!(
            "open-file limit {fd_limit}: opening {wanted} idle connections instead of {IDLE_CONNECTIONS_WANTED}"
        );
    }
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(wanted);
    let mut refused = 0usize;
    let mut half_sent = Vec::with_capacity(wanted / 2);
    for index in 0..wanted {
        // Half open a connection and never start TLS; half finish the
        // handshake, start a request and never finish its headers
        // (slowloris).
        if index % 2 == 0 {
            match tokio::time::timeout(
                Duration::from_secs(2),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                Ok(Ok(stream)) => idle.push(stream),
                _ => refused += 1,
            }
        } else {
            match tokio::time::timeout(Duration::from_secs(5), tls_connect(&tls_dir, port)).await {
                Ok(Ok(mut stream)) => {
                    let _ = stream
                        .write_all(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
                        .await;
                    half_sent.push(stream);
                }
                _ => refused += 1,
            }
        }
    }
    eprintln!(
        "{} idle connections open ({} without TLS, {} half-sent over TLS; {refused} not accepted) in {:?}",
        idle.len() + half_sent.len(),
        idle.len(),
        half_sent.len(),
        opened.elapsed()
    );

    // 3. A body at one byte a second, and one that stalls after its first
    // byte, both while the idle connections are held. nginx streams bodies to
    // a replica, which reads them under the request deadline in an upload
    // slot of its own: both get the replica's 408 at the deadline.
    let limit = REQUEST_DEADLINE + Duration::from_secs(10);
    let trickled = tokio::spawn({
        let token = token.clone();
        let tls_dir = tls_dir.clone();
        async move { slow_body(&tls_dir, port, &token, true, limit).await }
    });
    let stalled = tokio::spawn({
        let token = token.clone();
        let tls_dir = tls_dir.clone();
        async move { slow_body(&tls_dir, port, &token, false, limit).await }
    });
    let trickled = trickled.await??;
    let stalled = stalled.await??;
    let (ok, total, p50, p99) = measure(&samples).await;
    for ((sent, status, text, elapsed), kind) in [(trickled, "trickled"), (stalled, "stalled")] {
        eprintln!("{kind} body: {sent} bytes sent, answered {status:?} after {elapsed:?}");
        if status != Some(408) || !text.contains("\"errors\"") {
            failures.push(format!(
                "the {kind} body got {status:?} after {elapsed:?}: {}",
                text.chars().take(300).collect::<String>()
            ));
        } else if elapsed + Duration::from_millis(500) < REQUEST_DEADLINE
            || elapsed > REQUEST_DEADLINE + Duration::from_secs(5)
        {
            failures.push(format!(
                "the {kind} body was answered after {elapsed:?}, not at the {REQUEST_DEADLINE:?} deadline"
            ));
        }
        error_bodies.push(text);
    }
    eprintln!(
        "normal client during {} idle connections and the slow bodies: {ok}/{total} ok, p50 {p50:?}, p99 {p99:?}",
        idle.len() + half_sent.len()
    );
    if ok != total || total == 0 {
        failures.push(format!(
            "normal client during the idle connections and the slow bodies: {ok} of {total} ok (p99 {p99:?})"
        ));
    }
    // nginx writes a request's log line when it is done with the connection,
    // which after an early answer includes discarding the rest of the body
    // (lingering close, up to 5 s without data): wait for both lines.
    let logged = Instant::now();
    let timed_out_by_replica = loop {
        let count = stack
            .nginx
            .access_log()
            .iter()
            .filter(|entry| {
                entry["request"] == "POST /api/articles HTTP/1.1"
                    && entry["status"] == 408
                    && entry["upstream_status"] == "408"
            })
            .count();
        if count >= 2 || logged.elapsed() > Duration::from_secs(15) {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if timed_out_by_replica != 2 {
        let posts: Vec<String> = stack
            .nginx
            .access_log()
            .iter()
            .filter(|entry| entry["request"] == "POST /api/articles HTTP/1.1")
            .map(|entry| entry.to_string())
            .collect();
        failures.push(format!(
            "{timed_out_by_replica} of the 2 slow bodies were timed out by a replica's deadline; \
             nginx logged these article POSTs:\n{}",
            posts.join("\n")
        ));
    }
    drop(idle);
    drop(half_sent);

    // 4. A login flood: 429 from nginx past the burst, other endpoints fine.
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let http = http.clone();
            let url = format!("{base}/api/users/login");
            tokio::spawn(async move {
                send_json(
                    &http,
                    "POST",
                    &url,
                    None,
                    &json!({"user": {"email": "abused@example.com", "password": "wrong"}}),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in flood {
        let reply = login.await??;
        if reply.status == 429 {
            error_bodies.push(reply.text());
        }
        statuses.push(reply.status);
    }
    let limited = statuses.iter().filter(|&&status| status == 429).count();
    let (ok, total, p50, p99) = measure(&samples).await;
    eprintln!(
        "login flood of {}: {limited} got 429, the others {:?}; normal client meanwhile {ok}/{total} ok, p50 {p50:?}, p99 {p99:?}",
        statuses.len(),
        statuses
            .iter()
            .filter(|&&s| s != 429)
            .collect::<std::collections::BTreeSet<_>>()
    );
    if limited == 0
        || statuses
            .iter()
            .any(|&status| status != 429 && status != 401)
    {
        failures.push(format!("login flood statuses: {statuses:?}"));
    }
    if ok != total || total == 0 {
        failures.push(format!(
            "normal client during the login flood: {ok} of {total} ok"
        ));
    }
    stop.store(true, Ordering::SeqCst);
    client.await.context("normal client")?;

    // 5. No secret in logs, metrics or error bodies.
    let secrets = &stack.config.secrets;
    let mut haystacks = vec![("error bodies".to_owned(), error_bodies.join("\n"))];
    for replica in &stack.replicas {
        haystacks.push((
            format!("{} log", replica.name()),
            replica.log.lines().join("\n"),
        ));
        haystacks.push((
            format!("{} metrics", replica.name()),
            replica.metrics().await?,
        ));
    }
    haystacks.push(("nginx log".into(), stack.nginx.log.lines().join("\n")));
    if let Some(postgres) = &stack.postgres {
        haystacks.push(("postgres log".into(), postgres.log.lines().join("\n")));
    }
    let needles = [
        ("jwt_secret", secrets.jwt_secret.as_str()),
        ("conduit_app password", secrets.app_password.as_str()),
        ("conduit_owner password", secrets.owner_password.as_str()),
        ("superuser password", secrets.superuser_password.as_str()),
    ];
    failures.extend(find_secrets(&needles, &haystacks));
    let log_lines: usize = stack.replicas.iter().map(|r| r.log.lines().len()).sum();
    eprintln!(
        "secrets searched in {log_lines} replica log lines, metrics, nginx and postgres logs"
    );

    ensure!(
        failures.is_empty(),
        "abuse failures:\n{}",
        failures.join("\n")
    );
    Ok(())
}
