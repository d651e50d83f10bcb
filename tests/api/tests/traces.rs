//! OpenTelemetry traces from the host running the Conduit component,
//! received by the test's own OTLP receiver (`devstack::otlp`, decoding
//! with `opentelemetry-proto`), over both transports: for one authenticated
//! read of an article, one trace under the caller's `traceparent`, with the
//! server span as its root, the component's execution under it, and under
//! that the connection wait and one client span per SQL statement. Without
//! an endpoint nothing is sent.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use devstack::otlp::{Keep, Received, Receiver};
use serde_json::json;
use support::Server;

/// The caller's trace: what nginx or a client in front of the replica sends.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// The caller's request id, as nginx in front of the replicas always sends
/// one.
const REQUEST_ID: &str = "traced-read-7f3a";

async fn register_and_publish(server: &Server, name: &str) -> (String, String) {
    let reply = server
        .api
        .post(
            "/users",
            None,
            json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "secret-password"}}),
        )
        .await;
    assert_eq!(reply.status, 201, "register: {}", reply.body);
    let token = reply.body["user"]["token"].as_str().unwrap().to_owned();
    let reply = server
        .api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": format!("Traced by {name}"), "description": "d", "body": "b", "tagList": ["otel"]}}),
        )
        .await;
    assert_eq!(reply.status, 201, "create: {}", reply.body);
    let slug = reply.body["article"]["slug"].as_str().unwrap().to_owned();
    (token, slug)
}

/// GET /api/articles/{slug} with a token and the caller's `traceparent` and
/// request id; returns the request id the host answered with (its echo of
/// the caller's).
async fn read_traced(server: &Server, token: &str, slug: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/articles/{slug}", server.api.base))
        .header("authorization", format!("Token {token}"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("x-request-id", REQUEST_ID)
        .send()
        .await
        .expect("GET article");
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("x-request-id")
        .expect("the caller's request id, echoed")
        .to_str()
        .unwrap()
        .to_owned()
}

#[track_caller]
fn attr(span: &Received, key: &str) -> String {
    span.attribute(key).unwrap_or_else(|| {
        panic!(
            "span `{}` has no attribute {key}: {:?}",
            span.span.name, span.span.attributes
        )
    })
}

fn children<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.parent_span_id() == parent.span_id())
        .collect()
}

/// Starts the host pointed at `receiver`, reads one article and checks the
/// trace it exports.
async fn check_trace(receiver: Receiver, user: &str) {
    let server = Server::start_with_env(
        receiver
            .env()
            .into_iter()
            .chain([("OTEL_SERVICE_NAME".to_string(), "conduit-test".to_string())])
            .collect(),
    )
    .await
    .expect("start the host");
    let (token, slug) = register_and_publish(&server, user).await;
    let before = server.statements().await.unwrap();
    let request_id = read_traced(&server, &token, &slug).await;
    assert_eq!(request_id, REQUEST_ID);
    let statements = (server.statements().await.unwrap() - before) as usize;
    assert!(statements >= 1, "the read ran no SQL");

    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let traced: Vec<_> = spans.iter().filter(|s| s.trace_id() == TRACE_ID).collect();
            let queries = traced
                .iter()
                .filter(|s| s.attribute("db.query.text").is_some())
                .count();
            queries >= statements && traced.iter().any(|s| s.span.name.starts_with("GET "))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nhost log:\n{}", server.log()));
    let traced: Vec<Received> = spans
        .iter()
        .filter(|s| s.trace_id() == TRACE_ID)
        .cloned()
        .collect();
    let names: Vec<&str> = traced.iter().map(|s| s.span.name.as_str()).collect();

    // The server span: the root of the replica's part, under the caller.
    let roots: Vec<&Received> = traced
        .iter()
        .filter(|s| s.parent_span_id() == CALLER_SPAN)
        .collect();
    assert_eq!(roots.len(), 1, "one span under the caller's: {names:?}");
    let server_span = roots[0];
    assert_eq!(server_span.service_name.as_deref(), Some("conduit-test"));
    assert_eq!(server_span.span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr(server_span, "http.request.method"), "GET");
    assert_eq!(attr(server_span, "http.response.status_code"), "200");
    let route = attr(server_span, "http.route");
    assert!(route.starts_with("/api"), "route {route}");
    assert_eq!(server_span.span.name, format!("GET {route}"));
    assert_eq!(
        attr(server_span, "url.path"),
        format!("/api/articles/{slug}")
    );
    assert_eq!(attr(server_span, "request_id"), request_id);

    // The component's execution, alone under the server span.
    let under_server = children(&traced, server_span);
    assert_eq!(under_server.len(), 1, "under the server span: {names:?}");
    let component = under_server[0];
    assert!(
        component.span.name.starts_with("execute_wasm_component "),
        "{}",
        component.span.name
    );

    // Under it: the wait for a pooled connection and one client span per
    // statement the host ran for this request.
    let under_component = children(&traced, component);
    let waits: Vec<_> = under_component
        .iter()
        .filter(|s| s.span.name == "acquire connection")
        .collect();
    assert!(!waits.is_empty(), "no connection wait span: {names:?}");
    let queries: Vec<&&Received> = under_component
        .iter()
        .filter(|s| s.span.name != "acquire connection")
        .collect();
    assert_eq!(
        queries.len(),
        statements,
        "one span per statement ({statements} ran): {names:?}"
    );
    let mut texts = Vec::new();
    for query in &queries {
        assert_eq!(query.span.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(attr(query, "db.system"), "postgresql");
        assert_eq!(attr(query, "server.address"), "127.0.0.1");
        assert!(attr(query, "server.port").parse::<u16>().is_ok());
        let text = attr(query, "db.query.text");
        let operation = attr(query, "db.operation.name");
        assert!(
            text.to_ascii_uppercase().starts_with(&operation),
            "{operation}: {text}"
        );
        assert!(query.span.start_time_unix_nano >= component.span.start_time_unix_nano);
        assert!(query.span.end_time_unix_nano <= component.span.end_time_unix_nano);
        texts.push(text);
    }
    assert!(
        texts
            .iter()
            .any(|t| t.to_ascii_uppercase().contains("FROM ARTICLES")),
        "the article's statement is among {texts:?}"
    );
    // The access log line carries the trace id, to go from a log line to
    // its trace.
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&request_id) && l.contains(TRACE_ID)),
        "no access line with the trace id:\n{log}"
    );
    // Nothing else of the request is left outside the tree.
    assert_eq!(traced.len(), 2 + under_component.len(), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_http_protobuf() {
    let receiver = Receiver::http("127.0.0.1:0".parse().unwrap(), Keep::Spans)
        .await
        .unwrap();
    check_trace(receiver, "tracedhttp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_grpc() {
    let receiver = Receiver::grpc("127.0.0.1:0".parse().unwrap(), Keep::Spans)
        .await
        .unwrap();
    check_trace(receiver, "tracedgrpc").await;
}

/// Without an endpoint the host exports nothing: a receiver on the port an
/// exporter would use by default (4318) gets no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_no_traces() {
    let default: SocketAddr = "127.0.0.1:4318".parse().unwrap();
    let receiver = match Receiver::http(default, Keep::Spans).await {
        Ok(r) => r,
        Err(e) => panic!("port 4318 (OTLP's default) must be free for this test: {e:#}"),
    };
    let server = Server::start_with_env(vec![
        // Everything but the endpoint.
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        ("OTEL_TRACES_SAMPLER".into(), "always_on".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), String::new()),
    ])
    .await
    .expect("start the host");
    let (token, slug) = register_and_publish(&server, "untraced").await;
    read_traced(&server, &token, &slug).await;
    // The batch exporter sends at least every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(server);
    assert_eq!(
        receiver.exports(),
        0,
        "the host sent traces without an endpoint"
    );
}

/// A caller that decided not to sample (`traceparent` flags `00`) gets no
/// span from the replica, while the next, sampled, request is exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_caller_gets_no_spans() {
    const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";
    let receiver = Receiver::http("127.0.0.1:0".parse().unwrap(), Keep::Spans)
        .await
        .unwrap();
    let server = Server::start_with_env(receiver.env()).await.unwrap();
    let (token, slug) = register_and_publish(&server, "unsampled").await;
    let response = reqwest::Client::new()
        .get(format!("{}/articles/{slug}", server.api.base))
        .header("authorization", format!("Token {token}"))
        .header("traceparent", format!("00-{UNSAMPLED}-{CALLER_SPAN}-00"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    read_traced(&server, &token, &slug).await;
    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.trace_id() == TRACE_ID && s.attribute("db.query.text").is_some())
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nhost log:\n{}", server.log()));
    assert!(
        !spans.iter().any(|s| s.trace_id() == UNSAMPLED),
        "spans of an unsampled trace were exported"
    );
}
