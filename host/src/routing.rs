//! HTTP routes from `[[trigger.http]]`, matched with Spin's rules (the same
//! `routefinder` precedence Spin uses): exact paths beat `:name` parameters,
//! which beat trailing `/...` wildcards, and longer prefixes beat shorter.
//! The match also yields the `spin-*` request headers `spin-sdk` reads.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::manifest::HttpTrigger;

#[derive(Debug, Clone)]
struct Handler {
    component: String,
    /// The route as written in the manifest.
    raw_route: String,
    headers: Arc<RouteHeaders>,
}

/// The `spin-*` header values that depend on the route alone, made once.
#[derive(Debug, PartialEq, Eq)]
struct RouteHeaders {
    /// The route as written (`spin-matched-route`, `spin-raw-component-route`).
    raw_route: HeaderValue,
    /// The route without its `/...` suffix (`spin-component-route`).
    prefix: HeaderValue,
}

/// A `spin-*` header and its `x-*` alias.
macro_rules! spin_header {
    ($name:literal) => {
        (
            HeaderName::from_static(concat!("spin-", $name)),
            HeaderName::from_static(concat!("x-", $name)),
        )
    };
}

pub struct Router {
    inner: routefinder::Router<Handler>,
}

/// The result of routing one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    pub raw_route: String,
    /// The part of the path matched by a trailing wildcard, with a leading
    /// `/` (empty for exact routes).
    pub path_info: String,
    /// `:name` parameters in route order.
    pub params: Vec<(String, String)>,
    headers: Arc<RouteHeaders>,
}

impl RouteHeaders {
    fn new(route: &str) -> Result<Self> {
        let value = |v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| anyhow!("route `{route}` is not a valid header value"))
        };
        Ok(RouteHeaders {
            raw_route: value(route)?,
            prefix: value(route.strip_suffix("/...").unwrap_or(route))?,
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
            let spec = match trigger.route.strip_suffix("/...") {
                Some(prefix) => format!("{prefix}/*"),
                None => trigger.route.clone(),
            };
            inner
                .add(
                    spec.as_str(),
                    Handler {
                        component: trigger.component.clone(),
                        raw_route: trigger.route.clone(),
                        headers: Arc::new(RouteHeaders::new(&trigger.route)?),
                    },
                )
                .map_err(|e| anyhow!("invalid route `{}`: {e}", trigger.route))?;
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
        })
    }
}

impl RouteMatch {
    /// Sets the headers Spin sets on every request it hands to a component,
    /// under their `spin-` names and the `x-` aliases. A value that cannot be
    /// a header (a control character in the URL) leaves its header out.
    pub fn insert_spin_headers(&self, headers: &mut HeaderMap, full_url: &str, client_addr: &str) {
        let mut both = |(spin, x): (HeaderName, HeaderName), value: HeaderValue| {
            headers.insert(spin, value.clone());
            headers.insert(x, value);
        };
        if let Ok(url) = HeaderValue::from_str(full_url) {
            both(spin_header!("full-url"), url);
        }
        let route = &self.headers;
        both(spin_header!("matched-route"), route.raw_route.clone());
        both(spin_header!("base-path"), HeaderValue::from_static("/"));
        both(spin_header!("raw-component-route"), route.raw_route.clone());
        both(spin_header!("component-route"), route.prefix.clone());
        if let Ok(client) = HeaderValue::from_str(client_addr) {
            both(spin_header!("client-addr"), client);
        }
        for (name, value) in &self.params {
            let name = name.to_ascii_lowercase();
            if let (Ok(spin), Ok(x), Ok(value)) = (
                HeaderName::from_bytes(format!("spin-path-match-{name}").as_bytes()),
                HeaderName::from_bytes(format!("x-path-match-{name}").as_bytes()),
                HeaderValue::from_str(value),
            ) {
                both((spin, x), value);
            }
        }
        if let Ok(info) = HeaderValue::from_str(&self.path_info) {
            headers.insert(HeaderName::from_static("spin-path-info"), info);
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

    #[test]
    fn headers_include_aliases_and_parameters() {
        let r = router(&[("/items/:id/...", "items")]);
        let m = r.route("/items/42/x").unwrap();
        let mut headers = HeaderMap::new();
        m.insert_spin_headers(&mut headers, "http://h/items/42/x", "127.0.0.1:9");
        let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("spin-path-match-id"), Some("42"));
        assert_eq!(get("x-path-match-id"), Some("42"));
        assert_eq!(get("spin-path-info"), Some("/x"));
        assert_eq!(get("spin-component-route"), Some("/items/:id"));
        assert_eq!(get("x-raw-component-route"), Some("/items/:id/..."));
        assert_eq!(get("spin-full-url"), Some("http://h/items/42/x"));
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:9"));
        assert_eq!(get("x-base-path"), Some("/"));
        assert_eq!(headers.len(), 15);
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
