//! The route table and dispatch. Routes are written with OpenAPI's path
//! syntax (`/articles/{slug}`) relative to `/api`, the same strings the
//! handlers' `#[utoipa::path]` attributes use; a unit test checks the table
//! and the OpenAPI document agree, so neither can drift from the other.

use spin_sdk::http::{Request, Response};

use crate::error::Error;
use crate::web::{PathParams, decode_path_segment, query_has_nul};
use crate::{articles, comments, openapi, profiles, tags, users};

/// A handler: the request and the decoded path parameters in, a response or
/// an `Error` (rendered by `dispatch`) out.
pub type Handler = fn(&Request, &PathParams) -> Result<Response, Error>;

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub handler: Handler,
}

const fn route(method: &'static str, path: &'static str, handler: Handler) -> Route {
    Route {
        method,
        path,
        handler,
    }
}

/// Every route of the API. Literal segments win over parameters because the
/// table is searched in order (`/articles/feed` before `/articles/{slug}`).
pub const ROUTES: &[Route] = &[
    route("POST", "/users/login", users::login),
    route("POST", "/users", users::register),
    route("GET", "/user", users::current),
    route("PUT", "/user", users::update),
    route("GET", "/profiles/{username}", profiles::get),
    route("POST", "/profiles/{username}/follow", profiles::follow),
    route("DELETE", "/profiles/{username}/follow", profiles::unfollow),
    route("GET", "/articles/feed", articles::feed),
    route("GET", "/articles", articles::list),
    route("POST", "/articles", articles::create),
    route("GET", "/articles/{slug}", articles::get),
    route("PUT", "/articles/{slug}", articles::update),
    route("DELETE", "/articles/{slug}", articles::delete),
    route("POST", "/articles/{slug}/favorite", articles::favorite),
    route("DELETE", "/articles/{slug}/favorite", articles::unfavorite),
    route("GET", "/articles/{slug}/comments", comments::list),
    route("POST", "/articles/{slug}/comments", comments::create),
    route("DELETE", "/articles/{slug}/comments/{id}", comments::delete),
    route("GET", "/tags", tags::list),
    route("GET", OPENAPI_PATH, openapi::serve),
];

/// Where the OpenAPI document is served (not itself part of the document).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The API's mount point, from the application manifest's `/api/...` route.
const BASE_PATH: &str = "/api";

#[derive(Debug)]
pub enum RouteMatch {
    Found(&'static Route, PathParams),
    /// The path exists, but not for this method; lists the allowed methods.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

fn match_path(pattern: &'static str, segments: &[&str]) -> Option<PathParams> {
    let pattern_segments: Vec<&'static str> = pattern.split('/').skip(1).collect();
    if pattern_segments.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (expected, actual) in pattern_segments.iter().zip(segments) {
        if let Some(name) = expected
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            let value = decode_path_segment(actual)?;
            if value.is_empty() {
                return None;
            }
            params.push((name, value));
        } else if expected != actual {
            return None;
        }
    }
    Some(PathParams::new(params))
}

/// Finds the route for `method` and `path` (the full request path, with or
/// without the `/api` prefix; any query string already removed).
pub fn find(method: &str, path: &str) -> RouteMatch {
    let relative = path.strip_prefix(BASE_PATH).unwrap_or(path);
    if !relative.starts_with('/') {
        return RouteMatch::NotFound;
    }
    let segments: Vec<&str> = relative.split('/').skip(1).collect();
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, &segments) {
            if route.method == method {
                return RouteMatch::Found(route, params);
            }
            allowed.push(route.method);
        }
    }
    if allowed.is_empty() {
        RouteMatch::NotFound
    } else {
        RouteMatch::MethodNotAllowed(allowed)
    }
}

/// Routes a request and renders any error as the spec's error body.
pub fn dispatch(req: &Request) -> Response {
    let method = req.method().to_string();
    if query_has_nul(req.query()) {
        return Error::invalid("query", "must not contain NUL characters").into_response();
    }
    let result = match find(&method, req.path()) {
        RouteMatch::Found(route, params) => (route.handler)(req, &params),
        RouteMatch::MethodNotAllowed(allowed) => Err(Error::MethodNotAllowed {
            allow: allowed.join(", "),
        }),
        RouteMatch::NotFound => Err(Error::NotFound("path")),
    };
    result.unwrap_or_else(Error::into_response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn found(method: &str, path: &str) -> (&'static str, PathParams) {
        match find(method, path) {
            RouteMatch::Found(route, params) => (route.path, params),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn literal_routes_win_over_parameters() {
        assert_eq!(found("GET", "/api/articles/feed").0, "/articles/feed");
        assert_eq!(found("GET", "/api/articles/how-to-1").0, "/articles/{slug}");
    }

    #[test]
    fn parameters_are_captured_and_percent_decoded() {
        let (path, params) = found("DELETE", "/api/articles/a-b-3/comments/17");
        assert_eq!(path, "/articles/{slug}/comments/{id}");
        assert_eq!(
            params,
            PathParams::new(vec![("slug", "a-b-3".to_owned()), ("id", "17".to_owned())])
        );
        assert_eq!(params.get("id").unwrap(), "17");
        let (_, params) = found("GET", "/api/profiles/J%C3%BCrgen%20K");
        assert_eq!(
            params,
            PathParams::new(vec![("username", "Jürgen K".to_owned())])
        );
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        match find("PATCH", "/api/user") {
            RouteMatch::MethodNotAllowed(allowed) => assert_eq!(allowed, vec!["GET", "PUT"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/api/nope",
            "/api/articles/a/b/c/d",
            "/api/",
            "/api/articles/",
            "/apiusers",
        ] {
            assert!(matches!(find("GET", path), RouteMatch::NotFound), "{path}");
        }
    }

    #[test]
    fn routes_match_without_the_api_prefix_too() {
        assert_eq!(found("GET", "/tags").0, "/tags");
    }

    #[test]
    fn route_table_and_openapi_document_list_the_same_operations() {
        let document: serde_json::Value =
            serde_json::from_str(&openapi::document_json().unwrap()).unwrap();
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|route| route.path != OPENAPI_PATH)
            .map(|route| (route.method.to_owned(), route.path.to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }
}
