//! `wasi:sockets` as a component sees it through std's `TcpStream` (the
//! `test-app` fixture's `/tcp` route): connections to the addresses and
//! ranges in `allowed_outbound_hosts` reach a TCP echo server this test
//! runs; any other address or port is refused with `PermissionDenied`
//! before a connection is made, and names are not resolved at all.

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::{HostConfig, fixture_manifest, start};

const MESSAGE: &str = "So rested he by the Tumtum tree";

/// A TCP echo server on one port of one or more loopback addresses,
/// counting the connections it accepts.
struct EchoServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl EchoServer {
    fn start(ips: &[&str]) -> EchoServer {
        let port = support::free_port();
        let accepted = Arc::new(AtomicUsize::new(0));
        for ip in ips {
            let ip: IpAddr = ip.parse().expect("an IP address");
            let listener = TcpListener::bind(SocketAddr::new(ip, port)).expect("echo server binds");
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let mut reader = &stream;
                        let mut writer = &stream;
                        let _ = std::io::copy(&mut reader, &mut writer);
                    });
                }
            });
        }
        EchoServer { port, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The fixture app with `rules` added to its `allowed_outbound_hosts`, the
/// manifest changed by `replacements` and the environment by `env`.
async fn app(
    rules: &[String],
    replacements: &[(&str, &str)],
    env: &[(&str, &str)],
) -> support::Host {
    let admin_url = support::admin_url().await;
    let url = url::Url::parse(&admin_url).expect("the admin URL is a URL");
    let listed: String = rules.iter().map(|rule| format!("\"{rule}\", ")).collect();
    let allowed = format!("allowed_outbound_hosts = [{listed}");
    let mut all_replacements = vec![("allowed_outbound_hosts = [", allowed.as_str())];
    all_replacements.extend_from_slice(replacements);
    let mut config = HostConfig::new(fixture_manifest(&all_replacements))
        .env("SPIN_VARIABLE_DB_URL", &admin_url)
        .env(
            "SPIN_VARIABLE_DB_HOST",
            url.host_str().unwrap_or("127.0.0.1"),
        )
        .env(
            "SPIN_VARIABLE_DB_PORT",
            &url.port().unwrap_or(5432).to_string(),
        );
    for (name, value) in env {
        config = config.env(name, value);
    }
    start(config).await.expect("host starts")
}

/// What the guest reported for `/tcp?to=to`: the status and the echoed
/// text or the failure as JSON.
async fn tcp(host: &support::Host, to: &str) -> (u16, String) {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .post(format!("{}/tcp?to={to}", host.base))
        .body(MESSAGE)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Asserts that the guest's connection failed at `step` with `kind`.
fn assert_failed(reply: &(u16, String), step: &str, kind: &str) {
    assert_eq!(reply.0, 502, "{}", reply.1);
    let failure: Value = serde_json::from_str(&reply.1).expect("a JSON failure");
    assert_eq!(failure["step"], step, "{failure}");
    assert_eq!(failure["kind"], kind, "{failure}");
}

#[tokio::test]
async fn an_allowed_address_connects_and_echoes() {
    let echo = EchoServer::start(&["127.0.0.1"]);
    let host = app(&[format!("*://127.0.0.1:{}", echo.port)], &[], &[]).await;
    let reply = tcp(&host, &format!("127.0.0.1:{}", echo.port)).await;
    assert_eq!(reply, (200, MESSAGE.to_string()));
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn an_allowed_range_admits_every_address_in_it_and_no_other() {
    let echo = EchoServer::start(&["127.0.0.1", "127.0.0.2", "127.0.1.1"]);
    let host = app(&[format!("tcp://127.0.0.0/24:{}", echo.port)], &[], &[]).await;
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let reply = tcp(&host, &format!("{ip}:{}", echo.port)).await;
        assert_eq!(reply, (200, MESSAGE.to_string()), "{ip}");
    }
    let outside = tcp(&host, &format!("127.0.1.1:{}", echo.port)).await;
    assert_failed(&outside, "connect", "PermissionDenied");
    assert_eq!(
        echo.accepted(),
        2,
        "the address outside the range is never reached"
    );
}

#[tokio::test]
async fn a_templated_range_is_checked_as_its_variables_render() {
    let echo = EchoServer::start(&["127.0.0.1", "127.0.0.2"]);
    let rule = format!(
        "*://{{{{ addr_prefix }}}}/{{{{ prefix_len }}}}:{}",
        echo.port
    );
    let variables = (
        "[variables]\n",
        "[variables]\naddr_prefix = { default = \"127.0.0.0\" }\nprefix_len = { default = \"24\" }\n",
    );

    let defaults = app(std::slice::from_ref(&rule), &[variables], &[]).await;
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let reply = tcp(&defaults, &format!("{ip}:{}", echo.port)).await;
        assert_eq!(reply, (200, MESSAGE.to_string()), "{ip} in 127.0.0.0/24");
    }

    let narrowed = app(
        &[rule],
        &[variables],
        &[
            ("SPIN_VARIABLE_ADDR_PREFIX", "127.0.0.2"),
            ("SPIN_VARIABLE_PREFIX_LEN", "32"),
        ],
    )
    .await;
    let reply = tcp(&narrowed, &format!("127.0.0.2:{}", echo.port)).await;
    assert_eq!(reply, (200, MESSAGE.to_string()));
    let outside = tcp(&narrowed, &format!("127.0.0.1:{}", echo.port)).await;
    assert_failed(&outside, "connect", "PermissionDenied");
    assert_eq!(echo.accepted(), 3);
}

#[tokio::test]
async fn another_port_on_an_allowed_address_is_denied_without_connecting() {
    let echo = EchoServer::start(&["127.0.0.1"]);
    let host = app(&[format!("*://127.0.0.1:{}", echo.port + 1)], &[], &[]).await;
    let reply = tcp(&host, &format!("127.0.0.1:{}", echo.port)).await;
    assert_failed(&reply, "connect", "PermissionDenied");
    assert_eq!(echo.accepted(), 0);
    let log = host
        .log_eventually(|log| log.contains("socket address denied"))
        .await;
    assert!(
        log.contains("socket address denied") && log.contains(&format!("127.0.0.1:{}", echo.port)),
        "{log}"
    );
}

#[tokio::test]
async fn another_address_on_an_allowed_port_is_denied_without_connecting() {
    let echo = EchoServer::start(&["127.0.0.1"]);
    let host = app(&[format!("*://127.0.0.2:{}", echo.port)], &[], &[]).await;
    let reply = tcp(&host, &format!("127.0.0.1:{}", echo.port)).await;
    assert_failed(&reply, "connect", "PermissionDenied");
    assert_eq!(echo.accepted(), 0);
}

#[tokio::test]
async fn names_are_neither_resolved_nor_matched_against_addresses() {
    let echo = EchoServer::start(&["127.0.0.1"]);
    let host = app(&[format!("*://localhost:{}", echo.port)], &[], &[]).await;
    // ip-name-lookup is refused, so a name never becomes an address ...
    let by_name = tcp(&host, &format!("localhost:{}", echo.port)).await;
    assert_eq!(by_name.0, 502, "{}", by_name.1);
    let failure: Value = serde_json::from_str(&by_name.1).expect("a JSON failure");
    assert_eq!(failure["step"], "resolve", "{failure}");
    // ... and a rule naming a host does not allow the address it has.
    let by_address = tcp(&host, &format!("127.0.0.1:{}", echo.port)).await;
    assert_failed(&by_address, "connect", "PermissionDenied");
    assert_eq!(echo.accepted(), 0);
}
