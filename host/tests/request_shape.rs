//! The HTTP contract as Spin 3.6 gives it: the headers a guest finds on its
//! request for each form of route, and a response that carries what the
//! guest set and nothing the host made up. No database: the fixture
//! component's header routes touch none.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::{HostConfig, fixture_wasm, start};

/// The fixture component under one route of each form; every route answers
/// with the headers the component was handed.
const MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "request-shape"

[[trigger.http]]
route = "/shape/exact"
component = "app"

[[trigger.http]]
route = "/shape/users/:id"
component = "app"

[[trigger.http]]
route = "/shape/users/:user_id/posts/:post_id"
component = "app"

[[trigger.http]]
route = "/shape/static/..."
component = "app"

[[trigger.http]]
route = "/..."
component = "app"

# The route of the conformance suite's request-shape test.
[[trigger.http]]
route = "/base/:path_segment/:path_end/..."
component = "app"

[component.app]
source = "WASM_PATH"
"#;

/// A request and the headers Spin 3.6 hands the component for it.
struct Case {
    form: &'static str,
    path_and_query: &'static str,
    /// The `Host` the caller sends; `None` leaves it to the client
    /// (`127.0.0.1:<port>`).
    host: Option<&'static str>,
    guest_sees: &'static [(&'static str, &'static str)],
}

/// What the caller sends besides `Host`, as the conformance suite sends it.
const CALLER_HEADERS: [(&str, &str); 2] = [("user-agent", "my-agent"), ("accept", "*/*")];

/// The `spin-*` headers Spin 3.6 hands a `wasi:http` component, derived from
/// Spin v3.6.3 (commit 88d51cf1dafa23c4177f5fbf122b3beca46d1941):
/// `crates/trigger-http/src/headers.rs`, `compute_default_headers` (seven
/// headers on every request, then `SPIN_PATH_MATCH_<NAME>` per route
/// parameter; names through `prepare_header_key`, `_` to `-`, lower case;
/// the `X_*` aliases there are Wagi's only, `prepare_request_headers` takes
/// the first name) with the values of `crates/routes/src/lib.rs`
/// (`trailing_wildcard`, `based_route`, `raw_route`, `raw_route_or_prefix`).
/// Besides these the component gets the caller's headers less those
/// wasmtime-wasi-http withholds from a guest (`Host` among them), in Spin as
/// here. `{origin}` stands for `http://` and the request's `Host`;
/// `{client}` for the caller's address, compared by shape.
const SPIN_3_6: &[Case] = &[
    Case {
        form: "exact",
        path_and_query: "/shape/exact",
        host: None,
        guest_sees: &[
            ("spin-path-info", ""),
            ("spin-full-url", "{origin}/shape/exact"),
            ("spin-matched-route", "/shape/exact"),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/exact"),
            ("spin-component-route", "/shape/exact"),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "exact, with a query",
        path_and_query: "/shape/exact?a=1&b=two",
        host: None,
        guest_sees: &[
            ("spin-path-info", ""),
            ("spin-full-url", "{origin}/shape/exact?a=1&b=two"),
            ("spin-matched-route", "/shape/exact"),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/exact"),
            ("spin-component-route", "/shape/exact"),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "one parameter",
        path_and_query: "/shape/users/42",
        host: None,
        guest_sees: &[
            ("spin-path-info", ""),
            ("spin-full-url", "{origin}/shape/users/42"),
            ("spin-matched-route", "/shape/users/:id"),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/users/:id"),
            ("spin-component-route", "/shape/users/:id"),
            ("spin-client-addr", "{client}"),
            ("spin-path-match-id", "42"),
        ],
    },
    Case {
        form: "two parameters with `_` in their names, with a query",
        path_and_query: "/shape/users/7/posts/99?sort=new",
        host: None,
        guest_sees: &[
            ("spin-path-info", ""),
            ("spin-full-url", "{origin}/shape/users/7/posts/99?sort=new"),
            ("spin-matched-route", "/shape/users/:user_id/posts/:post_id"),
            ("spin-base-path", "/"),
            (
                "spin-raw-component-route",
                "/shape/users/:user_id/posts/:post_id",
            ),
            (
                "spin-component-route",
                "/shape/users/:user_id/posts/:post_id",
            ),
            ("spin-client-addr", "{client}"),
            ("spin-path-match-user-id", "7"),
            ("spin-path-match-post-id", "99"),
        ],
    },
    Case {
        form: "wildcard",
        path_and_query: "/shape/static/css/site.css",
        host: None,
        guest_sees: &[
            ("spin-path-info", "/css/site.css"),
            ("spin-full-url", "{origin}/shape/static/css/site.css"),
            ("spin-matched-route", "/shape/static/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/static/..."),
            ("spin-component-route", "/shape/static"),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "wildcard, its own prefix",
        path_and_query: "/shape/static",
        host: None,
        guest_sees: &[
            ("spin-path-info", ""),
            ("spin-full-url", "{origin}/shape/static"),
            ("spin-matched-route", "/shape/static/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/static/..."),
            ("spin-component-route", "/shape/static"),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "wildcard, a trailing slash kept, with a query",
        path_and_query: "/shape/static/img/?v=2",
        host: None,
        guest_sees: &[
            ("spin-path-info", "/img/"),
            ("spin-full-url", "{origin}/shape/static/img/?v=2"),
            ("spin-matched-route", "/shape/static/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/shape/static/..."),
            ("spin-component-route", "/shape/static"),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "root wildcard, the root itself",
        path_and_query: "/",
        host: None,
        guest_sees: &[
            ("spin-path-info", "/"),
            ("spin-full-url", "{origin}/"),
            ("spin-matched-route", "/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/..."),
            ("spin-component-route", ""),
            ("spin-client-addr", "{client}"),
        ],
    },
    Case {
        form: "root wildcard, with a query",
        path_and_query: "/anything/else?x=1",
        host: None,
        guest_sees: &[
            ("spin-path-info", "/anything/else"),
            ("spin-full-url", "{origin}/anything/else?x=1"),
            ("spin-matched-route", "/..."),
            ("spin-base-path", "/"),
            ("spin-raw-component-route", "/..."),
            ("spin-component-route", ""),
            ("spin-client-addr", "{client}"),
        ],
    },
    // The conformance suite's request-shape invocation
    // (fermyon/conformance-tests, tests/request-shape).
    Case {
        form: "conformance request-shape",
        path_and_query: "/base/path/end/rest?key=value",
        host: Some("example.com"),
        guest_sees: &[
            ("spin-path-info", "/rest"),
            ("spin-full-url", "{origin}/base/path/end/rest?key=value"),
            ("spin-matched-route", "/base/:path_segment/:path_end/..."),
            ("spin-base-path", "/"),
            (
                "spin-raw-component-route",
                "/base/:path_segment/:path_end/...",
            ),
            ("spin-component-route", "/base/:path_segment/:path_end"),
            ("spin-client-addr", "{client}"),
            ("spin-path-match-path-segment", "path"),
            ("spin-path-match-path-end", "end"),
        ],
    },
];

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn shape_host() -> support::Host {
    let manifest = MANIFEST.replace("WASM_PATH", &fixture_wasm().display().to_string());
    start(HostConfig::new(manifest)).await.expect("host starts")
}

/// The headers the component reports, as sorted `(name, value)` pairs, the
/// client address replaced by `{client}` once it has passed for one.
async fn headers_the_guest_saw(response: reqwest::Response) -> Vec<(String, String)> {
    assert_eq!(response.status(), 200);
    let pairs: Vec<(String, String)> = response.json().await.expect("a JSON list of pairs");
    let mut pairs: Vec<(String, String)> = pairs
        .into_iter()
        .map(|(name, value)| {
            if name == "spin-client-addr" {
                let client: SocketAddr = value.parse().unwrap_or_else(|_| {
                    panic!("spin-client-addr is not an address and port: {value:?}")
                });
                assert!(client.ip().is_loopback(), "spin-client-addr {client}");
                (name, "{client}".to_string())
            } else {
                (name, value)
            }
        })
        .collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn a_guest_sees_the_headers_spin_3_6_gives_for_every_route_form() {
    let host = shape_host().await;
    for case in SPIN_3_6 {
        let mut request = http().get(format!("{}{}", host.base, case.path_and_query));
        for (name, value) in CALLER_HEADERS {
            request = request.header(name, value);
        }
        if let Some(authority) = case.host {
            request = request.header("host", authority);
        }
        let seen = headers_the_guest_saw(request.send().await.expect("request")).await;

        let authority = case
            .host
            .map_or_else(|| format!("127.0.0.1:{}", host.port), str::to_string);
        let origin = format!("http://{authority}");
        let mut expected: Vec<(String, String)> = CALLER_HEADERS
            .iter()
            .chain(case.guest_sees)
            .map(|(name, value)| (name.to_string(), value.replace("{origin}", &origin)))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "route form: {}", case.form);
    }
}

#[tokio::test]
async fn a_response_carries_a_request_id_only_when_the_caller_sent_one() {
    let host = shape_host().await;
    // What HTTP itself adds to a response; anything else came from the guest
    // (the fixture sets `content-type` alone) or was made up by the host.
    let protocol: HashSet<&str> = ["content-length", "transfer-encoding", "date"].into();

    let plain = http()
        .get(format!("{}/shape/exact", host.base))
        .send()
        .await
        .expect("request");
    assert_eq!(plain.status(), 200);
    let extra: Vec<&str> = plain
        .headers()
        .keys()
        .map(|name| name.as_str())
        .filter(|name| *name != "content-type" && !protocol.contains(name))
        .collect();
    assert!(extra.is_empty(), "headers the guest did not set: {extra:?}");

    let traced = http()
        .get(format!("{}/shape/exact", host.base))
        .header("x-request-id", "caller-id-123")
        .send()
        .await
        .expect("request");
    assert_eq!(traced.headers()["x-request-id"], "caller-id-123");
    let guest_saw: Vec<(String, String)> = traced.json().await.expect("headers");
    assert!(
        guest_saw.contains(&("x-request-id".into(), "caller-id-123".into())),
        "the guest gets the caller's id as any other header: {guest_saw:?}"
    );

    // The made-up id of the first request is in the logs, with the caller's.
    let log = host
        .log_eventually(|log| log.contains("caller-id-123"))
        .await;
    let access: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("wasmhost::access"))
        .collect();
    assert_eq!(access.len(), 2, "one access line per request:\n{log}");
    assert!(access[1].contains("caller-id-123"), "{}", access[1]);
    assert!(
        uuid_in(access[0]).is_some(),
        "a made-up request id in {}",
        access[0]
    );
}

/// The first hyphenated UUID in `line`.
fn uuid_in(line: &str) -> Option<uuid::Uuid> {
    line.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|token| token.len() == 36)
        .find_map(|token| uuid::Uuid::try_parse(token).ok())
}
