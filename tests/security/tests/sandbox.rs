//! The sandbox seen from inside a component, through the real `wasmhost`
//! binary: no file outside the component's `files`, no connection outside
//! `allowed_outbound_hosts` (a listener proves not even a TCP connect
//! happens), no host environment variable; and secret variables never in a
//! response or a log line, even when the configuration is wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, ensure};
use devstack::postgres::test_database_url;
use devstack::replica::{Replica, ReplicaSpec};
use devstack::{Echo, free_port, project_root, random_hex};
use serde_json::json;

use crate::support::{self, Server, client, send, send_json, wasmhost};

/// Every (where, what) pair in which a needle occurs, as failure lines.
/// Needles shorter than 8 characters are refused: they would match by chance.
pub fn find_secrets(needles: &[(&str, &str)], haystacks: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, needle) in needles {
        if needle.len() < 8 {
            found.push(format!("secret {name} is too short to search for"));
            continue;
        }
        for (place, text) in haystacks {
            if text.contains(needle) {
                found.push(format!("secret {name} appears in {place}"));
            }
        }
    }
    found
}

/// A loopback listener that counts the connections it accepts.
async fn counting_listener() -> Result<(u16, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Ok((port, accepted))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_sees_only_its_files_its_variables_and_its_allowed_database() -> Result<()> {
    let _serial = support::serial().await;
    let root = project_root();
    let wasm = root.join("target/wasm32-wasip2/release/test_app.wasm");
    ensure!(
        wasm.is_file(),
        "{} is missing: cargo build --release --target wasm32-wasip2 -p test-app",
        wasm.display()
    );
    let dir = tempfile::tempdir()?;
    let static_dir = dir.path().join("static");
    std::fs::create_dir(&static_dir)?;
    std::fs::write(static_dir.join("visible.txt"), "inside the sandbox")?;
    let outside = dir.path().join("outside.txt");
    let outside_secret = format!("outside-{}", random_hex(8)?);
    std::fs::write(&outside, &outside_secret)?;
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(root.join("host/tests/fixtures/test-app/spin.toml"))?
            .replace("WASM_PATH", &wasm.display().to_string())
            .replace("STATIC_DIR", &static_dir.display().to_string()),
    )?;

    let (forbidden_port, accepted) = counting_listener().await?;
    let host_secret = format!("host-env-{}", random_hex(12)?);
    let admin_url = test_database_url().await?;
    let database = url::Url::parse(&admin_url)?;
    let mut replica = Replica::new(ReplicaSpec {
        index: 1,
        api_port: free_port()?,
        admin_port: free_port()?,
        wasmhost: wasmhost()?,
        manifest,
        root: root.clone(),
        env: vec![
            ("SPIN_VARIABLE_DB_URL".into(), admin_url.clone()),
            (
                "SPIN_VARIABLE_DB_HOST".into(),
                database.host_str().unwrap_or("127.0.0.1").into(),
            ),
            (
                "SPIN_VARIABLE_DB_PORT".into(),
                database.port().unwrap_or(5432).to_string(),
            ),
            (
                "SPIN_VARIABLE_FORBIDDEN_DB_URL".into(),
                format!(
                    "postgres://postgres:{host_secret}@127.0.0.1:{forbidden_port}/postgres?sslmode=disable"
                ),
            ),
            ("SECURITY_TEST_HOST_SECRET".into(), host_secret.clone()),
            ("RUST_LOG".into(), "debug".into()),
        ],
        echo: Echo::Quiet,
    })?;
    replica.start()?;
    replica.wait_ready(Duration::from_secs(120)).await?;
    let http = client();
    let base = replica.api_url();
    let mut failures = Vec::new();

    // Files: the mounted file is readable (the route works), nothing else.
    let reply = send(
        &http,
        "GET",
        &format!("{base}/read?path=/static/visible.txt"),
        None,
        None,
    )
    .await?;
    ensure!(
        reply.status == 200 && reply.text() == "inside the sandbox",
        "the mounted file is not readable: {} {}",
        reply.status,
        reply.text()
    );
    for path in [
        outside.display().to_string(),
        "/etc/passwd".into(),
        "/proc/self/environ".into(),
        root.join("Cargo.toml").display().to_string(),
        "/static/../outside.txt".into(),
        "../outside.txt".into(),
    ] {
        let reply = send(
            &http,
            "GET",
            &format!("{base}/read?path={path}"),
            None,
            None,
        )
        .await?;
        if reply.status == 200
            || reply.text().contains(&outside_secret)
            || reply.text().contains("root:")
        {
            failures.push(format!("read {path}: {} {}", reply.status, reply.text()));
        }
    }

    // Environment: nothing of the host's, no SPIN_VARIABLE_* either.
    let reply = send(&http, "GET", &format!("{base}/env"), None, None).await?;
    if reply.status != 200
        || reply.text().contains(&host_secret)
        || reply.text().contains("SPIN_VARIABLE")
        || reply.text().contains("PATH")
    {
        failures.push(format!(
            "guest environment: {} {}",
            reply.status,
            reply.text()
        ));
    }
    // An undeclared variable is not readable as a Spin variable either.
    let reply = send(
        &http,
        "GET",
        &format!("{base}/vars/security_test_host_secret"),
        None,
        None,
    )
    .await?;
    if reply.status == 200 || reply.text().contains(&host_secret) {
        failures.push(format!(
            "undeclared variable: {} {}",
            reply.status,
            reply.text()
        ));
    }

    // Outbound: a database address outside allowed_outbound_hosts is refused
    // before any connection is made, and the refusal does not carry the
    // URL's password.
    let reply = send(&http, "GET", &format!("{base}/pg/denied"), None, None).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connections = accepted.load(Ordering::SeqCst);
    if reply.status != 403 || connections != 0 {
        failures.push(format!(
            "forbidden database: {} {} ({connections} connections reached the listener)",
            reply.status,
            reply.text()
        ));
    }
    failures.extend(find_secrets(
        &[("forbidden database password", &host_secret)],
        &[
            ("the refusal".into(), reply.text()),
            ("wasmhost log".into(), replica.log.lines().join("\n")),
        ],
    ));
    eprintln!(
        "sandbox: files, environment and outbound checks done; {connections} connections reached the forbidden address"
    );
    replica.terminate(Duration::from_secs(10)).await?;
    ensure!(
        failures.is_empty(),
        "sandbox escapes:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// Wrong configuration is where secrets usually leak: a database URL the
/// component may not use (its password must not show up in the 503 or the
/// log) and a placeholder signing key (refused, not used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_responses_and_logs_when_the_configuration_is_wrong() -> Result<()> {
    let _serial = support::serial().await;
    let mut failures = Vec::new();

    // db_url names a port outside allowed_outbound_hosts (db_port stays the
    // real one), with a password we can search for.
    let (port, accepted) = counting_listener().await?;
    let password = format!("leaky{}", random_hex(12)?);
    let url = format!("postgres://conduit_app:{password}@127.0.0.1:{port}/conduit?sslmode=disable");
    let server = Server::start(&[("SPIN_VARIABLE_DB_URL", &url), ("RUST_LOG", "debug")]).await?;
    let http = client();
    let mut bodies = Vec::new();
    for (method, path, body) in [
        ("GET", "/api/tags", None),
        ("GET", "/api/articles", None),
        (
            "POST",
            "/api/users/login",
            Some(json!({"user": {"email": "a@b.co", "password": "x"}})),
        ),
    ] {
        let reply = match body {
            Some(body) => {
                send_json(
                    &http,
                    method,
                    &format!("{}{path}", server.base),
                    None,
                    &body,
                )
                .await?
            }
            None => send(&http, method, &format!("{}{path}", server.base), None, None).await?,
        };
        if reply.status < 500 {
            failures.push(format!(
                "{method} {path} without a permitted database: {}",
                reply.status
            ));
        }
        bodies.push(reply.text());
    }
    let metrics = server.replica.metrics().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connections = accepted.load(Ordering::SeqCst);
    if connections != 0 {
        failures.push(format!(
            "{connections} connections reached a database outside allowed_outbound_hosts"
        ));
    }
    failures.extend(find_secrets(
        &[
            ("db_url password", &password),
            ("jwt_secret", &server.jwt_secret),
        ],
        &[
            ("error responses".into(), bodies.join("\n")),
            ("wasmhost log".into(), server.replica.log.lines().join("\n")),
            ("metrics".into(), metrics),
        ],
    ));
    drop(server);

    // The docker/.env.example placeholder as the signing key: no token is
    // ever issued with it.
    let placeholder = "change-me-jwt-secret-at-least-32-random-bytes";
    let server = Server::start(&[("SPIN_VARIABLE_JWT_SECRET", placeholder)]).await?;
    let reply = send_json(
        &http,
        "POST",
        &format!("{}/api/users", server.base),
        None,
        &json!({"user": {"username": "placeholder", "email": "placeholder@example.com", "password": "p"}}),
    )
    .await?;
    if reply.status < 500 || reply.text().contains("token") {
        failures.push(format!(
            "registration with the placeholder signing key: {} {}",
            reply.status,
            reply.text()
        ));
    }
    failures.extend(find_secrets(
        &[("placeholder jwt_secret", placeholder)],
        &[
            ("error response".into(), reply.text()),
            ("wasmhost log".into(), server.replica.log.lines().join("\n")),
        ],
    ));
    let log = server.replica.log.lines().join("\n");
    if !log.contains("jwt_secret") {
        failures.push("the log does not say why the signing key was refused".into());
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
