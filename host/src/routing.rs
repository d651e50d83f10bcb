//! HTTP routes from `[[trigger.http]]`, matched with Spin's rules (the same
//! `routefinder` precedence Spin uses): exact paths beat `:name` parameters,
//! which beat trailing `/...` wildcards, and longer prefixes beat shorter.
//!
//! The match also yields the `spin-*` request headers a component reads, as
//! Spin 3.6 sets them for every component it runs (`compute_default_headers`
//! and `prepare_header_key` in Spin's `crates/trigger-http/src/headers.rs`,
//! the values from `RouteMatch` in `crates/routes/src/lib.rs`): seven headers
//! on every request plus one `spin-path-match-<name>` per route parameter,
//! and nothing else. Spin keeps `x-*` aliases (`X_FULL_URL`, ...) only for
//! Wagi's environment variables; a `wasi:http` component never sees them.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use http::{HeaderMap, HeaderName, HeaderValue};
use routefinder::{RouteSpec, Segment};

use crate::guest_memory::RouteMemory;
use crate::manifest::HttpTrigger;

#[derive(Debug, Clone)]
struct Handler {
    component: String,
    /// The route as written in the manifest.
    raw_route: String,
    headers: Arc<RouteHeaders>,
    memory: Arc<RouteMemory>,
}

/// The `spin-*` header names and values that depend on the route alone,
/// made once when the routes are built.
#[derive(Debug, PartialEq, Eq)]
struct RouteHeaders {
    /// `spin-matched-route`: the route as Spin's router keeps it, joined to
    /// the application's base `/`, which drops one trailing `/` (`/` itself
    /// becomes the empty string).
    matched_route: HeaderValue,
    /// `spin-raw-component-route`: the route as written.
    raw_route: HeaderValue,
    /// `spin-component-route`: the route without its `/...` suffix (empty
    /// for `/...`).
    component_route: HeaderValue,
    /// `spin-path-match-<name>` for each `:name` in the route.
    params: Vec<(String, HeaderName)>,
}

const PATH_INFO: HeaderName = HeaderName::from_static("spin-path-info");
const FULL_URL: HeaderName = HeaderName::from_static("spin-full-url");
const MATCHED_ROUTE: HeaderName = HeaderName::from_static("spin-matched-route");
const BASE_PATH: HeaderName = HeaderName::from_static("spin-base-path");
const RAW_COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-raw-component-route");
const COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-component-route");
const CLIENT_ADDR: HeaderName = HeaderName::from_static("spin-client-addr");

pub struct Router {
    inner: routefinder::Router<Handler>,
}

/// The result of routing one request path.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub component: String,
    pub raw_route: String,
    /// The part of the path matched by a trailing wildcard, with a leading
    /// `/` (empty for exact routes).
    pub path_info: String,
    /// `:name` parameters in route order.
    pub params: Vec<(String, String)>,
    headers: Arc<RouteHeaders>,
    /// What the route's requests use of linear memory, as learned so far.
    pub memory: Arc<RouteMemory>,
}

impl RouteHeaders {
    fn new(route: &str, spec: &RouteSpec) -> Result<Self> {
        let value = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| anyhow!("route `{route}` is not a valid header value"))
        };
        let params = spec
            .segments()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Param(name) => Some(name.to_string()),
                _ => None,
            })
            // Spin spells the name `SPIN_PATH_MATCH_<NAME>` and turns `_`
            // into `-` on the way to a header (`:user_id` gives
            // `spin-path-match-user-id`); a name that cannot be a header
            // name is left out, as Spin leaves it out.
            .filter_map(|name| {
                let header =
                    format!("spin-path-match-{}", name.replace('_', "-")).to_ascii_lowercase();
                let header = HeaderName::from_bytes(header.as_bytes()).ok()?;
                Some((name, header))
            })
            .collect();
        Ok(RouteHeaders {
            matched_route: value(route.strip_suffix('/').unwrap_or(route))?,
            raw_route: value(route)?,
            component_route: value(route.strip_suffix("/...").unwrap_or(route))?,
            params,
        })
    }
}

impl Router {
    pub fn build(triggers: &[HttpTrigger]) -> Result<Self> {
        let mut inner = routefinder::Router::new();
        let mut seen = std::collections::HashSet::new();
        for trigger in triggers {
            if !seen.insert(trigger.route.clone()) {
                // Spin lets the last duplicate win; refusing is kinder.
                return Err(anyhow!("route `{}` is declared twice", trigger.route));
            }
            let spec: RouteSpec = match trigger.route.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*").parse(),
                None => trigger.route.parse(),
            }
            .map_err(|e| anyhow!("invalid route `{}`: {e}", trigger.route))?;
            let handler = Handler {
                component: trigger.component.clone(),
                raw_route: trigger.route.clone(),
                headers: Arc::new(RouteHeaders::new(&trigger.route, &spec)?),
                memory: Arc::default(),
            };
            inner.add(spec, handler)?;
        }
        Ok(Router { inner })
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let found = self.inner.best_match(path)?;
        let handler = found.handler();
        let captures = found.captures();
        let path_info = match captures.wildcard() {
            None => String::new(),
            Some(rest) => match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            },
        };
        let params = captures
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(RouteMatch {
            component: handler.component.clone(),
            raw_route: handler.raw_route.clone(),
            path_info,
            params,
            headers: handler.headers.clone(),
            memory: handler.memory.clone(),
        })
    }
}

impl RouteMatch {
    /// Sets the headers Spin 3.6 sets on every request it hands to a
    /// component, in Spin's order. A value that cannot be a header (a
    /// control character in the URL) leaves its header out.
    ///
    /// Spin appends its headers after any of the same name the client sent;
    /// here they replace them, so that a guest reading one value reads the
    /// host's, never a client's forgery (spin-sdk's `Request`, which keeps
    /// the last value of a name, reads the same under both).
    pub fn insert_spin_headers(&self, headers: &mut HeaderMap, full_url: &str, client_addr: &str) {
        let route = &self.headers;
        if let Ok(info) = HeaderValue::from_str(&self.path_info) {
            headers.insert(PATH_INFO, info);
        }
        if let Ok(url) = HeaderValue::from_str(full_url) {
            headers.insert(FULL_URL, url);
        }
        headers.insert(MATCHED_ROUTE, route.matched_route.clone());
        // Spin 3 has no application base any more; the header stays, fixed.
        headers.insert(BASE_PATH, HeaderValue::from_static("/"));
        headers.insert(RAW_COMPONENT_ROUTE, route.raw_route.clone());
        headers.insert(COMPONENT_ROUTE, route.component_route.clone());
        if let Ok(client) = HeaderValue::from_str(client_addr) {
            headers.insert(CLIENT_ADDR, client);
        }
        for (name, value) in &self.params {
            let header = route.params.iter().find(|(param, _)| param == name);
            if let (Some((_, header)), Ok(value)) = (header, HeaderValue::from_str(value)) {
                headers.insert(header.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(
            &routes
                .iter()
                .map(|(r, c)| HttpTrigger {
                    route: r.to_string(),
                    component: c.to_string(),
                })
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_parameter_beats_wildcard() {
        let r = router(&[
            ("/...", "fallback"),
            ("/users/...", "users-wild"),
            ("/users/:name", "user"),
            ("/users/me", "me"),
        ]);
        assert_eq!(r.route("/users/me").unwrap().component, "me");
        let user = r.route("/users/alice").unwrap();
        assert_eq!(user.component, "user");
        assert_eq!(user.params, vec![("name".to_string(), "alice".to_string())]);
        let wild = r.route("/users/alice/posts").unwrap();
        assert_eq!(wild.component, "users-wild");
        assert_eq!(wild.path_info, "/alice/posts");
        assert_eq!(r.route("/other").unwrap().component, "fallback");
    }

    #[test]
    fn wildcard_matches_its_own_prefix_and_unknown_paths_miss() {
        let r = router(&[("/api/...", "api"), ("/exact", "exact")]);
        let m = r.route("/api").unwrap();
        assert_eq!((m.component.as_str(), m.path_info.as_str()), ("api", ""));
        assert_eq!(r.route("/api/").unwrap().path_info, "/");
        assert!(r.route("/exact/more").is_none());
        assert!(r.route("/nothing").is_none());
    }

    /// Every header `insert_spin_headers` sets, in order.
    fn spin_headers(route: &str, path: &str, full_url: &str) -> Vec<(String, String)> {
        let m = router(&[(route, "app")]).route(path).unwrap();
        let mut headers = HeaderMap::new();
        m.insert_spin_headers(&mut headers, full_url, "127.0.0.1:9");
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn headers_are_spins_seven_plus_one_per_parameter_and_no_aliases() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        // The conformance suite's request-shape route and request.
        assert_eq!(
            spin_headers(
                "/base/:path_segment/:path_end/...",
                "/base/path/end/rest",
                "http://example.com/base/path/end/rest?key=value",
            ),
            pairs(&[
                ("spin-path-info", "/rest"),
                (
                    "spin-full-url",
                    "http://example.com/base/path/end/rest?key=value"
                ),
                ("spin-matched-route", "/base/:path_segment/:path_end/..."),
                ("spin-base-path", "/"),
                (
                    "spin-raw-component-route",
                    "/base/:path_segment/:path_end/..."
                ),
                ("spin-component-route", "/base/:path_segment/:path_end"),
                ("spin-client-addr", "127.0.0.1:9"),
                ("spin-path-match-path-segment", "path"),
                ("spin-path-match-path-end", "end"),
            ])
        );
        // An exact route still gets `spin-path-info`, empty.
        assert_eq!(
            spin_headers("/hello", "/hello", "http://h/hello")[0],
            ("spin-path-info".to_string(), String::new())
        );
    }

    #[test]
    fn route_headers_follow_spins_router_for_root_trailing_slash_and_case() {
        let header = |route: &str, path: &str, name: &str| {
            spin_headers(route, path, "http://h/")
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        };
        assert_eq!(header("/...", "/", "spin-component-route").unwrap(), "");
        assert_eq!(header("/...", "/", "spin-path-info").unwrap(), "/");
        assert_eq!(header("/", "/", "spin-matched-route").unwrap(), "");
        assert_eq!(header("/", "/", "spin-raw-component-route").unwrap(), "/");
        assert_eq!(header("/a/", "/a", "spin-matched-route").unwrap(), "/a");
        assert_eq!(header("/a/", "/a", "spin-component-route").unwrap(), "/a/");
        assert_eq!(
            header("/u/:userId", "/u/7", "spin-path-match-userid").unwrap(),
            "7"
        );
    }

    #[test]
    fn a_spin_header_sent_by_the_client_is_replaced_not_doubled() {
        let m = router(&[("/a", "app")]).route("/a").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(CLIENT_ADDR, HeaderValue::from_static("10.0.0.1:1"));
        m.insert_spin_headers(&mut headers, "http://h/a", "127.0.0.1:9");
        let values: Vec<_> = headers.get_all(CLIENT_ADDR).iter().collect();
        assert_eq!(values, vec!["127.0.0.1:9"]);
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let dup = [
            HttpTrigger {
                route: "/a".into(),
                component: "x".into(),
            },
            HttpTrigger {
                route: "/a".into(),
                component: "y".into(),
            },
        ];
        assert!(Router::build(&dup).is_err());
    }
}
