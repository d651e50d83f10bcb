//! The `/docs` component: Swagger UI for the Conduit API.
//!
//! It serves an HTML page, our initializer and Swagger UI's files (embedded at
//! build time from the `swagger-ui-dist` npm package, see `build.rs`). The page
//! loads the OpenAPI document from `/api/openapi.json`, which the `conduit`
//! component serves, and "Try it out" calls the API on the same origin. The
//! component needs nothing from the host beyond WASI and wasi:http: no
//! database, no variables.

mod assets;
mod site;

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// The route this component is mounted on in `spin.toml`; used only when the
/// runtime does not say which part of the path follows the route.
const MOUNT_PATH: &str = "/docs";

#[http_component]
fn handle_docs(request: Request) -> Response {
    let method = method_name(request.method());
    let header = |name| request.header(name).and_then(|value| value.as_str());
    let full_path = request.path();
    let site_request = site::SiteRequest {
        method: &method,
        full_path,
        path_info: path_info(header("spin-path-info"), full_path),
        query: request.query(),
        accept_encoding: header("accept-encoding"),
        if_none_match: header("if-none-match"),
    };
    let reply = site::respond(&site_request);

    let mut response = Response::builder();
    response.status(reply.status);
    for (name, value) in reply.headers {
        response.header(name, value);
    }
    response.body(reply.body.to_vec()).build()
}

/// The path below the route: Spin passes it as `spin-path-info`; without
/// that header the request path is taken relative to [`MOUNT_PATH`].
fn path_info<'a>(spin_path_info: Option<&'a str>, full_path: &'a str) -> &'a str {
    match spin_path_info {
        Some(path_info) => path_info,
        None => full_path.strip_prefix(MOUNT_PATH).unwrap_or(full_path),
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".to_owned(),
        Method::Head => "HEAD".to_owned(),
        Method::Post => "POST".to_owned(),
        Method::Put => "PUT".to_owned(),
        Method::Delete => "DELETE".to_owned(),
        Method::Patch => "PATCH".to_owned(),
        Method::Options => "OPTIONS".to_owned(),
        Method::Connect => "CONNECT".to_owned(),
        Method::Trace => "TRACE".to_owned(),
        Method::Other(other) => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_info_comes_from_spin_when_given() {
        assert_eq!(
            path_info(Some("/index.html"), "/docs/index.html"),
            "/index.html"
        );
        assert_eq!(path_info(Some(""), "/docs"), "");
    }

    #[test]
    fn path_info_falls_back_to_the_mount_path() {
        assert_eq!(path_info(None, "/docs"), "");
        assert_eq!(path_info(None, "/docs/"), "/");
        assert_eq!(path_info(None, "/docs/assets/x.js"), "/assets/x.js");
    }
}
