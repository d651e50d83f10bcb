//! Decides the response for a request below `/docs`, independent of Spin's
//! types so that it runs (and is tested) natively.
//!
//! Caching: versioned Swagger UI files are immutable for a year; the page and
//! its initializer are `no-cache` with a strong ETag, so a browser revalidates
//! them on every load and gets a 304 when nothing changed.

use crate::assets::{self, Asset};

/// The parts of a request the site looks at.
#[derive(Debug, Clone, Copy)]
pub struct SiteRequest<'a> {
    pub method: &'a str,
    /// The request path as received, e.g. `/docs/index.html`.
    pub full_path: &'a str,
    /// The part of the path after the component's route, e.g. `/index.html`
    /// (Spin's `spin-path-info`); empty for the route itself.
    pub path_info: &'a str,
    pub query: &'a str,
    pub accept_encoding: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
}

/// A response, still free of Spin's types.
#[derive(Debug, PartialEq, Eq)]
pub struct SiteResponse {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static [u8],
}

#[cfg(test)]
impl SiteResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Swagger UI renders with inline styles and `data:` images; everything else,
/// the OpenAPI document and "Try it out" calls included, is same-origin.
const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; \
     form-action 'self'; frame-ancestors 'none'";

pub fn respond(request: &SiteRequest<'_>) -> SiteResponse {
    let is_head = request.method.eq_ignore_ascii_case("HEAD");
    if !is_head && !request.method.eq_ignore_ascii_case("GET") {
        return SiteResponse {
            status: 405,
            headers: vec![
                ("allow", "GET, HEAD".to_owned()),
                ("content-type", "text/plain; charset=utf-8".to_owned()),
            ],
            body: b"method not allowed\n",
        };
    }

    let relative_path = match request.path_info {
        // `/docs` itself: the page's relative asset URLs only resolve below
        // `/docs/`, so send the browser there.
        "" => return redirect_to_folder(request),
        "/" => assets::INDEX,
        other => other.strip_prefix('/').unwrap_or(other),
    };

    let Some(asset) = assets::lookup(relative_path) else {
        return SiteResponse {
            status: 404,
            headers: vec![
                ("content-type", "text/plain; charset=utf-8".to_owned()),
                ("cache-control", REVALIDATE.to_owned()),
                ("x-content-type-options", "nosniff".to_owned()),
            ],
            body: b"not found\n",
        };
    };
    serve(asset, request, is_head)
}

fn redirect_to_folder(request: &SiteRequest<'_>) -> SiteResponse {
    let mut location = format!("{}/", request.full_path.trim_end_matches('/'));
    if !request.query.is_empty() {
        location.push('?');
        location.push_str(request.query);
    }
    SiteResponse {
        status: 301,
        headers: vec![
            ("location", location),
            ("cache-control", "public, max-age=86400".to_owned()),
        ],
        body: b"",
    }
}

fn serve(asset: &'static Asset, request: &SiteRequest<'_>, is_head: bool) -> SiteResponse {
    let mut headers = vec![
        ("content-type", assets::content_type(asset.path).to_owned()),
        (
            "cache-control",
            if asset.immutable {
                IMMUTABLE
            } else {
                REVALIDATE
            }
            .to_owned(),
        ),
        ("etag", asset.etag.to_owned()),
        ("x-content-type-options", "nosniff".to_owned()),
    ];
    if asset.gzip.is_some() {
        // Caches must keep the plain and the gzip form apart.
        headers.push(("vary", "Accept-Encoding".to_owned()));
    }
    if asset.path == assets::INDEX {
        headers.push(("content-security-policy", PAGE_CSP.to_owned()));
        headers.push(("referrer-policy", "same-origin".to_owned()));
    }

    if request
        .if_none_match
        .is_some_and(|tags| etag_matches(tags, asset.etag))
    {
        headers.retain(|(name, _)| *name != "content-type");
        return SiteResponse {
            status: 304,
            headers,
            body: b"",
        };
    }

    let body = match asset.gzip {
        Some(compressed) if request.accept_encoding.is_some_and(accepts_gzip) => {
            headers.push(("content-encoding", "gzip".to_owned()));
            compressed
        }
        _ => asset.body,
    };
    SiteResponse {
        status: 200,
        headers,
        body: if is_head { b"" } else { body },
    }
}

/// `If-None-Match` holds `*` or a list of entity tags, possibly weak (`W/`);
/// for GET the weak comparison applies (RFC 9110, 13.1.2).
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Whether `Accept-Encoding` allows gzip: listed (or `*`) without `q=0`.
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let wanted = coding.eq_ignore_ascii_case("gzip")
            || coding.eq_ignore_ascii_case("x-gzip")
            || coding == "*";
        let refused = parts.any(|parameter| {
            parameter
                .strip_prefix("q=")
                .and_then(|quality| quality.trim().parse::<f32>().ok())
                .is_some_and(|quality| quality <= 0.0)
        });
        wanted && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::SWAGGER_UI_VERSION;

    fn get(path_info: &str) -> SiteRequest<'_> {
        SiteRequest {
            method: "GET",
            full_path: "",
            path_info,
            query: "",
            accept_encoding: None,
            if_none_match: None,
        }
    }

    fn bundle_path() -> String {
        format!("/assets/{SWAGGER_UI_VERSION}/swagger-ui-bundle.js")
    }

    #[test]
    fn the_route_itself_redirects_to_the_folder_keeping_the_query() {
        let response = respond(&SiteRequest {
            full_path: "/docs",
            query: "a=1",
            ..get("")
        });
        assert_eq!(response.status, 301);
        assert_eq!(response.header("location"), Some("/docs/?a=1"));

        let response = respond(&SiteRequest {
            full_path: "/docs",
            ..get("")
        });
        assert_eq!(response.header("location"), Some("/docs/"));
    }

    #[test]
    fn the_folder_serves_the_page_uncached_with_a_csp() {
        let response = respond(&get("/"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(response.header("cache-control"), Some("no-cache"));
        assert!(
            response
                .header("content-security-policy")
                .is_some_and(|csp| csp.contains("script-src 'self'"))
        );
        assert!(std::str::from_utf8(response.body).is_ok_and(|html| html.contains("swagger-ui")));
        assert_eq!(respond(&get("/index.html")).body, response.body);
    }

    #[test]
    fn versioned_assets_are_cached_for_a_year() {
        let path = bundle_path();
        let response = respond(&get(&path));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(response.header("cache-control"), Some(IMMUTABLE));
        assert_eq!(response.header("vary"), Some("Accept-Encoding"));
        assert_eq!(response.header("content-encoding"), None);
        assert!(response.body.len() > 100_000);
    }

    #[test]
    fn gzip_is_sent_only_when_accepted() {
        let path = bundle_path();
        let plain = respond(&get(&path));
        for accepted in ["gzip", "gzip, deflate, br", "br;q=1.0, GZIP;q=0.5", "*"] {
            let response = respond(&SiteRequest {
                accept_encoding: Some(accepted),
                ..get(&path)
            });
            assert_eq!(
                response.header("content-encoding"),
                Some("gzip"),
                "for {accepted:?}"
            );
            assert!(response.body.len() < plain.body.len());
        }
        for refused in ["deflate, br", "gzip;q=0", "identity", ""] {
            let response = respond(&SiteRequest {
                accept_encoding: Some(refused),
                ..get(&path)
            });
            assert_eq!(response.header("content-encoding"), None, "for {refused:?}");
            assert_eq!(response.body, plain.body);
        }
    }

    #[test]
    fn a_matching_etag_gets_not_modified_without_body() {
        let page = respond(&get("/"));
        let etag = page.header("etag").unwrap_or_default().to_owned();
        for if_none_match in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let response = respond(&SiteRequest {
                if_none_match: Some(&if_none_match),
                ..get("/")
            });
            assert_eq!(response.status, 304, "for {if_none_match:?}");
            assert!(response.body.is_empty());
            assert_eq!(response.header("etag"), Some(etag.as_str()));
        }
        let stale = respond(&SiteRequest {
            if_none_match: Some("\"0000000000000000\""),
            ..get("/")
        });
        assert_eq!(stale.status, 200);
    }

    #[test]
    fn unknown_paths_are_not_found() {
        let missing_version = format!("/assets/{SWAGGER_UI_VERSION}/missing.js");
        for path in [
            "/nope",
            "/assets/0.0.1/swagger-ui.css",
            &missing_version,
            "/assets/",
            "//",
        ] {
            let response = respond(&get(path));
            assert_eq!(response.status, 404, "for {path:?}");
            assert_eq!(
                response.header("content-type"),
                Some("text/plain; charset=utf-8")
            );
        }
    }

    #[test]
    fn head_has_the_headers_but_no_body_and_other_methods_are_refused() {
        let response = respond(&SiteRequest {
            method: "HEAD",
            ..get("/")
        });
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(response.body.is_empty());

        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let response = respond(&SiteRequest { method, ..get("/") });
            assert_eq!(response.status, 405, "for {method}");
            assert_eq!(response.header("allow"), Some("GET, HEAD"));
        }
    }
}
