//! Outbound Redis and MQTT, as a component sees them through spin-sdk 5.2
//! (the `test-app` fixture's `/redis` and `/mqtt` routes), against Debian's
//! `redis-server` and `mosquitto`, each test starting its own on a free
//! port: the commands and their results, publishing received by a real
//! subscriber, connections kept per address, connection-scoped commands on
//! a connection of their own, and the errors for a denied address, an
//! unreachable server and a silent one.
//!
//! The fixture allows `redis://127.0.0.1:{{ redis_port }}` and
//! `mqtt://127.0.0.1:{{ mqtt_port }}`; each test sets the port variable.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::redis_server::{RedisServer, wait_listening};
use support::{HostConfig, fixture_manifest, free_port, start};

/// A host of the fixture app allowed to reach Redis and MQTT on these ports.
/// Its PostgreSQL variables name a server it may not reach, so it waits for
/// no database.
async fn host(redis_port: u16, mqtt_port: u16) -> support::Host {
    host_with_args(redis_port, mqtt_port, &[]).await
}

async fn host_with_args(redis_port: u16, mqtt_port: u16, args: &[&str]) -> support::Host {
    let mut config = HostConfig::new(fixture_manifest(&[]))
        .env(
            "SPIN_VARIABLE_DB_URL",
            "postgres://unused@127.0.0.2:1/unused",
        )
        .env("SPIN_VARIABLE_REDIS_PORT", &redis_port.to_string())
        .env("SPIN_VARIABLE_MQTT_PORT", &mqtt_port.to_string());
    for arg in args {
        config = config.arg(arg);
    }
    start(config).await.expect("host starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Runs `operations` through `/redis` on a connection to `address`: the
/// status, and the results (JSON) or the error (a string).
async fn redis_ops(host: &support::Host, address: &str, operations: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{}/redis", host.base))
        .header("redis-address", address)
        .body(operations.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// The `ok` results of operations that must all succeed.
async fn redis_ok(host: &support::Host, address: &str, operations: Value) -> Vec<Value> {
    let (status, results) = redis_ops(host, address, operations).await;
    assert_eq!(status, 200, "{results}");
    results
        .as_array()
        .expect("a list of results")
        .iter()
        .map(|result| {
            result
                .get("ok")
                .cloned()
                .unwrap_or_else(|| panic!("operation failed: {result}"))
        })
        .collect()
}

/// `INFO stats`'s count of connections the server has accepted.
fn connections_received(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(connection)
        .expect("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

#[tokio::test]
async fn redis_commands_answer_as_in_spin() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([
            ["get", "absent"],
            ["set", "greeting", "Eureka!"],
            ["get", "greeting"],
            ["set", "counter", "41"],
            ["incr", "counter"],
            ["incr", "fresh-counter"],
            ["del", ["greeting", "counter", "absent"]],
            ["get", "greeting"],
            ["sadd", "fruits", ["apple", "pear", "plum"]],
            ["sadd", "fruits", ["apple", "fig"]],
            ["srem", "fruits", ["plum", "kiwi"]],
            ["smembers", "fruits"],
            ["smembers", "no-such-set"],
        ]),
    )
    .await;
    assert_eq!(
        results,
        vec![
            Value::Null,
            Value::Null,
            json!("Eureka!"),
            Value::Null,
            json!(42),
            json!(1),
            json!(2),
            Value::Null,
            json!(3),
            json!(1),
            json!(1),
            json!(["apple", "fig", "pear"]),
            json!([]),
        ]
    );

    // What the guest wrote is what another client reads.
    let mut own = redis.client(0);
    let members: std::collections::BTreeSet<String> =
        redis::Commands::smembers(&mut own, "fruits").unwrap();
    assert_eq!(
        members.into_iter().collect::<Vec<_>>(),
        ["apple", "fig", "pear"]
    );
    let fresh: i64 = redis::Commands::get(&mut own, "fresh-counter").unwrap();
    assert_eq!(fresh, 1);
}

#[tokio::test]
async fn redis_execute_converts_every_kind_of_answer_as_spin_does() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([
            ["execute", "set", ["spin-example", "Eureka!"]],
            ["execute", "append", ["spin-example", " I've got it!"]],
            ["execute", "get", ["spin-example"]],
            ["execute", "get", ["absent"]],
            ["execute", "incrby", ["n", 5]],
            ["execute", "ping", []],
            ["execute", "rpush", ["list", "a", "b", 3]],
            ["execute", "lrange", ["list", 0, -1]],
            ["execute", "hset", ["hash", "field", "value"]],
            ["execute", "hgetall", ["hash"]],
            ["execute", "incrbyfloat", ["float", "1.5"]],
        ]),
    )
    .await;
    assert_eq!(
        results,
        vec![
            json!([{ "status": "OK" }]),
            json!([20]),
            json!(["Eureka! I've got it!"]),
            json!([null]),
            json!([5]),
            json!([{ "status": "PONG" }]),
            json!([3]),
            // Arrays are flattened into the list of results.
            json!(["a", "b", "3"]),
            json!([1]),
            json!(["field", "value"]),
            json!(["1.5"]),
        ]
    );

    // Server errors are `other`, with the server's message.
    let (status, results) = redis_ops(
        &host,
        &redis.address(),
        json!([
            ["execute", "no-such-command", []],
            ["incr", "spin-example"],
            ["sadd", "spin-example", ["x"]],
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let errors: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["error"].as_str().expect("an error"))
        .collect();
    assert!(
        errors[0].starts_with("Error::Other(") && errors[0].contains("unknown command"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("Error::Other(") && errors[1].contains("not an integer"),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("Error::Other(") && errors[2].contains("WRONGTYPE"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn redis_publish_reaches_a_subscriber() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let mut subscriber = redis.client(0);
    let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || {
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe("news").expect("subscribed");
        pubsub
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        subscribed_tx.send(()).unwrap();
        let message = pubsub.get_message().expect("a message on `news`");
        (
            message.get_channel_name().to_string(),
            message.get_payload_bytes().to_vec(),
        )
    });
    subscribed_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the subscriber subscribes");

    let results = redis_ok(
        &host,
        &redis.address(),
        json!([["publish", "news", "hello, subscribers"]]),
    )
    .await;
    assert_eq!(results, vec![Value::Null]);
    let (channel, payload) = listener.join().expect("the subscriber thread");
    assert_eq!(channel, "news");
    assert_eq!(payload, b"hello, subscribers");
}

#[tokio::test]
async fn requests_to_one_redis_address_share_one_connection() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let mut own = redis.client(0);
    let before = connections_received(&mut own);
    for n in 1..=10 {
        let results = redis_ok(&host, &redis.address(), json!([["incr", "requests"]])).await;
        assert_eq!(results, vec![json!(n)]);
    }
    assert_eq!(
        connections_received(&mut own) - before,
        1,
        "ten requests opening the same address connect once"
    );
}

#[tokio::test]
async fn connection_scoped_redis_commands_get_a_connection_of_their_own() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;

    // SELECT changes the database of this guest's connection only.
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([
            ["execute", "SELECT", [1]],
            ["set", "where", "in database 1"],
            ["get", "where"],
        ]),
    )
    .await;
    assert_eq!(
        results,
        vec![
            json!([{ "status": "OK" }]),
            Value::Null,
            json!("in database 1")
        ]
    );
    let results = redis_ok(&host, &redis.address(), json!([["get", "where"]])).await;
    assert_eq!(
        results,
        vec![Value::Null],
        "the next request is on database 0"
    );
    let in_one: Option<String> = redis::Commands::get(&mut redis.client(1), "where").unwrap();
    assert_eq!(in_one.as_deref(), Some("in database 1"));

    // A transaction queues its commands and runs them at EXEC.
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([
            ["execute", "MULTI", []],
            ["execute", "SET", ["a", "1"]],
            ["execute", "INCR", ["a"]],
            ["execute", "EXEC", []],
        ]),
    )
    .await;
    assert_eq!(
        results,
        vec![
            json!([{ "status": "OK" }]),
            json!([{ "status": "QUEUED" }]),
            json!([{ "status": "QUEUED" }]),
            json!([{ "status": "OK" }, 2]),
        ]
    );

    // A blocking command waits on its own connection while other requests
    // go on.
    let blocked = {
        let host_base = host.base.clone();
        let address = redis.address();
        tokio::spawn(async move {
            http()
                .post(format!("{host_base}/redis"))
                .header("redis-address", address)
                .body(json!([["execute", "BLPOP", ["queue", 10]]]).to_string())
                .send()
                .await
                .expect("request")
                .text()
                .await
                .unwrap_or_default()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([["execute", "RPUSH", ["queue", "job"]]]),
    )
    .await;
    assert_eq!(results, vec![json!([1])]);
    assert!(started.elapsed() < Duration::from_secs(5));
    let popped: Value = serde_json::from_str(&blocked.await.unwrap()).unwrap();
    assert_eq!(popped, json!([{ "ok": ["queue", "job"] }]));
}

/// `INFO clients`'s count of clients waiting in a blocking command.
fn blocked_clients(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(connection)
        .expect("INFO clients");
    info.lines()
        .find_map(|line| line.strip_prefix("blocked_clients:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("blocked_clients in INFO clients")
}

#[tokio::test]
async fn a_blocking_command_cut_off_by_the_deadline_leaves_nothing_waiting() {
    let redis = RedisServer::start();
    let host = host_with_args(redis.port, free_port(), &["--request-timeout-ms", "1000"]).await;
    let mut own = redis.client(0);
    let request = http()
        .post(format!("{}/redis", host.base))
        .header("redis-address", redis.address())
        .body(json!([["execute", "BLPOP", ["jobs", 0]]]).to_string())
        .send();
    let waiting = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        blocked_clients(&mut own)
    };
    let (response, waiting) = tokio::join!(request, waiting);
    assert_eq!(waiting, 1, "the guest's BLPOP waits at the server");
    assert_ne!(response.expect("a response").status().as_u16(), 200);

    // Its connection is closed with the instance: a job pushed now stays
    // queued instead of going to a BLPOP nobody waits for.
    let started = Instant::now();
    while blocked_clients(&mut own) != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the BLPOP still waits at the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: i64 = redis::Commands::rpush(&mut own, "jobs", "job").unwrap();
    let queued: i64 = redis::Commands::llen(&mut own, "jobs").unwrap();
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn a_restarted_redis_server_does_not_fail_the_next_request() {
    let mut redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let results = redis_ok(&host, &redis.address(), json!([["set", "k", "before"]])).await;
    assert_eq!(results, vec![Value::Null]);

    redis.restart();
    // The host notices the closed connection on its own; give it a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let results = redis_ok(
        &host,
        &redis.address(),
        json!([["get", "k"], ["set", "k", "after"], ["get", "k"]]),
    )
    .await;
    assert_eq!(results, vec![Value::Null, Value::Null, json!("after")]);
}

#[tokio::test]
async fn redis_addresses_not_allowed_are_invalid_address() {
    let redis = RedisServer::start();
    let host = host(redis.port, free_port()).await;
    let mut own = redis.client(0);
    let before = connections_received(&mut own);
    for address in [
        // Hosts are compared as text: `localhost` is not `127.0.0.1`.
        format!("redis://localhost:{}", redis.port),
        format!("redis://127.0.0.1:{}", redis.port + 1),
        format!("rediss://127.0.0.1:{}", redis.port),
        "not a redis address".to_string(),
    ] {
        assert_eq!(
            redis_ops(&host, &address, json!([])).await,
            (502, json!("Error::InvalidAddress")),
            "{address}"
        );
    }
    // Allowed, but not a Redis URL.
    assert_eq!(
        redis_ops(
            &host,
            &format!("mqtt://127.0.0.1:{}", redis.port),
            json!([])
        )
        .await,
        (502, json!("Error::InvalidAddress"))
    );
    assert_eq!(
        connections_received(&mut own),
        before,
        "nothing reached the server"
    );
}

#[tokio::test]
async fn an_unreachable_redis_server_is_an_error_not_a_hang() {
    // Nothing listens on the port: refused at once.
    let refused = free_port();
    let host_refused = host(refused, free_port()).await;
    let started = Instant::now();
    let (status, error) = redis_ops(
        &host_refused,
        &format!("redis://127.0.0.1:{refused}"),
        json!([]),
    )
    .await;
    assert_eq!(status, 502);
    let error = error.as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("Error::Other(") && error.contains("refused"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // A socket that accepts and never answers: the handshake times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let host_silent = host(silent_port, free_port()).await;
    let started = Instant::now();
    let (status, error) = redis_ops(
        &host_silent,
        &format!("redis://127.0.0.1:{silent_port}"),
        json!([]),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(status, 502, "{error}");
    let error = error.as_str().unwrap_or_default().to_string();
    assert!(
        error.starts_with("Error::Other(") && error.contains("no answer"),
        "{error}"
    );
    assert!(
        elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    drop(silent);
}

/// A `mosquitto` of Debian's, on a port of its own, gone with the test.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// A broker for anonymous clients, or, given `user`, only for `user`
    /// with `password`.
    fn start(user: Option<(&str, &str)>) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!("listener {port} 127.0.0.1\npersistence false\n");
        match user {
            None => config.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let passwords = dir.path().join("passwords");
                let status = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&passwords)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd (Debian's mosquitto package)");
                assert!(status.success());
                config.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    passwords.display()
                ));
            }
        }
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian's mosquitto package; the test command installs it)");
        wait_listening(port, "mosquitto");
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    fn address(&self, client_id: &str) -> String {
        format!("mqtt://127.0.0.1:{}?client_id={client_id}", self.port)
    }

    /// A client of the test's own (with `credentials`, if given) subscribed
    /// to `topic`; the messages it receives arrive on the returned channel.
    async fn subscribe(
        &self,
        credentials: Option<(&str, &str)>,
        topic: &str,
    ) -> tokio::sync::mpsc::UnboundedReceiver<rumqttc::Publish> {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut options = MqttOptions::new("wasmhost-test-subscriber", "127.0.0.1", self.port);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut event_loop) = AsyncClient::new(options, 10);
        client
            .subscribe(topic, QoS::ExactlyOnce)
            .await
            .expect("subscribe queued");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _client = client;
            let mut subscribed = Some(subscribed_tx);
            while let Ok(event) = event_loop.poll().await {
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        if let Some(subscribed) = subscribed.take() {
                            let _ = subscribed.send(());
                        }
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        // The test may be done with them already.
                        let _ = tx.send(publish);
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("subscribed in time")
            .expect("subscribed");
        rx
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `payload` through `/mqtt`: the status and the body.
async fn mqtt_publish(
    host: &support::Host,
    address: &str,
    credentials: (&str, &str),
    topic: &str,
    qos: u8,
    payload: &str,
) -> (u16, String) {
    let response = http()
        .post(format!("{}/mqtt?topic={topic}&qos={qos}", host.base))
        .header("mqtt-address", address)
        .header("mqtt-username", credentials.0)
        .header("mqtt-password", credentials.1)
        .body(payload.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn mqtt_publishes_reach_a_subscriber_at_every_qos() {
    let broker = Mosquitto::start(None);
    let host = host(free_port(), broker.port).await;
    let mut received = broker.subscribe(None, "wasmhost/test").await;
    for qos in [0u8, 1, 2] {
        let payload = format!("message at QoS {qos}");
        assert_eq!(
            mqtt_publish(
                &host,
                &broker.address(&format!("publisher-{qos}")),
                ("", ""),
                "wasmhost/test",
                qos,
                &payload
            )
            .await,
            (200, "published".into())
        );
        let message = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("the subscriber receives the message in time")
            .expect("a message");
        assert_eq!(message.topic, "wasmhost/test");
        assert_eq!(message.payload.as_ref(), payload.as_bytes());
        assert_eq!(message.qos as u8, qos, "delivered at the QoS published");
    }
}

#[tokio::test]
async fn mqtt_credentials_are_those_the_guest_gives() {
    let broker = Mosquitto::start(Some(("sensor", "s3cret")));
    let host = host(free_port(), broker.port).await;
    let mut received = broker
        .subscribe(Some(("sensor", "s3cret")), "readings")
        .await;
    assert_eq!(
        mqtt_publish(
            &host,
            &broker.address("sensor-1"),
            ("sensor", "s3cret"),
            "readings",
            1,
            "21.5"
        )
        .await,
        (200, "published".into())
    );
    let message = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(message.payload.as_ref(), b"21.5");

    let (status, body) = mqtt_publish(
        &host,
        &broker.address("sensor-2"),
        ("sensor", "wrong"),
        "readings",
        1,
        "22.0",
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        body.starts_with("publish: Error::ConnectionFailed(") && body.contains("NotAuthorized"),
        "{body}"
    );
}

#[tokio::test]
async fn mqtt_addresses_not_allowed_fail_to_connect_with_spins_message() {
    let broker = Mosquitto::start(None);
    let host = host(free_port(), broker.port).await;
    let denied = format!("mqtt://localhost:{}?client_id=denied", broker.port);
    assert_eq!(
        mqtt_publish(&host, &denied, ("", ""), "t", 1, "x").await,
        (
            502,
            format!("open: Error::ConnectionFailed(\"address {denied} is not permitted\")")
        )
    );
    // Allowed, but without the client id rumqttc requires.
    assert_eq!(
        mqtt_publish(
            &host,
            &format!("mqtt://127.0.0.1:{}", broker.port),
            ("", ""),
            "t",
            1,
            "x"
        )
        .await,
        (502, "open: Error::InvalidAddress".into())
    );
    // An option rumqttc would assert on is an invalid address too.
    assert_eq!(
        mqtt_publish(
            &host,
            &format!("{}&inflight_num=0", broker.address("zero")),
            ("", ""),
            "t",
            1,
            "x"
        )
        .await,
        (502, "open: Error::InvalidAddress".into())
    );
}

#[tokio::test]
async fn an_unreachable_mqtt_broker_fails_the_publish() {
    let nothing_listens = free_port();
    let host = host(free_port(), nothing_listens).await;
    let started = Instant::now();
    let (status, body) = mqtt_publish(
        &host,
        &format!("mqtt://127.0.0.1:{nothing_listens}?client_id=lonely"),
        ("", ""),
        "t",
        1,
        "x",
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        body.starts_with("publish: Error::ConnectionFailed(") && body.contains("refused"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
