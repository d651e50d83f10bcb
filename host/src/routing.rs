//! HTTP routes from `[[trigger.http]]`, matched with Spin's rules (the same
//! `routefinder` precedence Spin uses): exact paths beat `:name` parameters,
//! which beat trailing `/...` wildcards, and longer prefixes beat shorter.
//! The match also yields the `spin-*` request headers `spin-sdk` reads.

use anyhow::{Result, anyhow};

use crate::manifest::HttpTrigger;

#[derive(Debug, Clone)]
struct Handler {
    component: String,
    /// The route as written in the manifest.
    raw_route: String,
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
        })
    }
}

impl RouteMatch {
    /// The route without its `/...` suffix.
    pub fn route_prefix(&self) -> &str {
        self.raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
    }

    /// Headers Spin sets on every request it hands to a component, under
    /// their `spin-` names and the `x-` aliases.
    pub fn spin_headers(&self, full_url: &str, client_addr: &str) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(16);
        let mut both = |name: &str, value: &str| {
            out.push((format!("spin-{name}"), value.to_string()));
            out.push((format!("x-{name}"), value.to_string()));
        };
        both("full-url", full_url);
        both("matched-route", &self.raw_route);
        both("base-path", "/");
        both("raw-component-route", &self.raw_route);
        both("component-route", self.route_prefix());
        both("client-addr", client_addr);
        for (name, value) in &self.params {
            both(&format!("path-match-{}", name.to_ascii_lowercase()), value);
        }
        out.push(("spin-path-info".to_string(), self.path_info.clone()));
        out
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
        let headers = m.spin_headers("http://h/items/42/x", "127.0.0.1:9");
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("spin-path-match-id"), Some("42"));
        assert_eq!(get("x-path-match-id"), Some("42"));
        assert_eq!(get("spin-path-info"), Some("/x"));
        assert_eq!(get("spin-component-route"), Some("/items/:id"));
        assert_eq!(get("x-raw-component-route"), Some("/items/:id/..."));
        assert_eq!(get("spin-full-url"), Some("http://h/items/42/x"));
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
