//! Request and response plumbing shared by all areas: reading the request
//! (its body bounded), the JSON body reader (content type and syntax
//! checked, failures are 422s), path parameters, query-string and
//! pagination parsing, and JSON responses. The router and every handler
//! depend on this module; it depends on neither.

use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spin_sdk::http::{IncomingRequest, Request, Response};

use crate::error::Error;

/// Largest request body the component reads; larger ones get 413. The
/// longest valid request (an article of `MAX_ARTICLE_BODY_CHARS` characters
/// with every other field at its limit) fits with room for JSON escapes.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The request with its body read, at most [`MAX_BODY_BYTES`] of it. A body
/// declared larger is refused before a byte of it is read; one that turns
/// out larger is refused as soon as it passes the limit.
pub async fn read_request(incoming: IncomingRequest) -> Result<Request, Error> {
    let mut request = Request::builder()
        .method(incoming.method())
        .uri(incoming.uri())
        .headers(incoming.headers())
        .build();
    let declared_length = request
        .header("content-length")
        .and_then(|value| value.as_str())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    let mut body = Vec::new();
    let mut chunks = incoming.into_body_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| Error::invalid("body", "could not be read"))?;
        append_bounded(&mut body, &chunk, MAX_BODY_BYTES)?;
    }
    *request.body_mut() = body;
    Ok(request)
}

/// Appends a chunk of the body unless that makes it longer than `limit`.
fn append_bounded(body: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), Error> {
    if body.len() + chunk.len() > limit {
        return Err(Error::PayloadTooLarge { limit });
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// Default page size of the article lists, as the spec says.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page served; larger requests are clamped to it.
pub const MAX_LIMIT: i64 = 100;

/// Reads the body as JSON of type `T`.
///
/// The body must be declared `application/json` (or `+json`; parameters such
/// as `charset` are allowed) and parse as `T`; anything else is a 422 whose
/// message says what was wrong, never a 500.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, Error> {
    let content_type = req.header("content-type").and_then(|value| value.as_str());
    parse_json_body(content_type, req.body())
}

pub fn parse_json_body<T: DeserializeOwned>(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, Error> {
    if !is_json_content_type(content_type) {
        return Err(Error::invalid(
            "body",
            "Content-Type must be application/json",
        ));
    }
    let value = serde_json::from_slice(body)
        .map_err(|error| Error::invalid("body", format!("invalid JSON: {error}")))?;
    // PostgreSQL text cannot hold U+0000, so a string with one could never be
    // stored as sent (and used as a filter it would make the query fail):
    // refuse it up front.
    if has_escaped_nul(body) {
        return Err(Error::invalid("body", NUL_MESSAGE));
    }
    Ok(value)
}

const NUL_MESSAGE: &str = "must not contain NUL characters (\\u0000)";

/// Whether valid JSON text contains the escape `\u0000`. Outside strings valid
/// JSON has no backslashes, and inside them every backslash starts an escape,
/// so walking escape by escape finds exactly the NULs.
fn has_escaped_nul(json: &[u8]) -> bool {
    let mut index = 0;
    while index < json.len() {
        if json[index] == b'\\' {
            if json.get(index + 1) == Some(&b'u') && json.get(index + 2..index + 6) == Some(b"0000")
            {
                return true;
            }
            index += 2;
        } else {
            index += 1;
        }
    }
    false
}

/// Whether any name or value of a query string decodes to a string with
/// U+0000 (see `parse_json_body`).
pub fn query_has_nul(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(name, value)| name.contains('\0') || value.contains('\0'))
}

fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(value)
        .map_err(|error| Error::Internal(format!("serializing a response: {error}")))?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build())
}

/// A JSON document that is already text (one PostgreSQL built with
/// `json_build_object` in the shape of a response model).
pub fn json_text(status: u16, body: String) -> Result<Response, Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.into_bytes())
        .build())
}

/// A JSON document `{"<key>": <value>}` around `value`, a JSON text that
/// PostgreSQL built in the shape of a response model, sent as it came
/// instead of being parsed and serialized again.
pub fn json_text_under(status: u16, key: &str, value: &str) -> Result<Response, Error> {
    let mut body = String::with_capacity(value.len() + key.len() + 5);
    body.push_str("{\"");
    body.push_str(key);
    body.push_str("\":");
    body.push_str(value);
    body.push('}');
    json_text(status, body)
}

/// 204 No Content.
pub fn no_content() -> Response {
    Response::new(204, Vec::<u8>::new())
}

/// The decoded `name=value` pairs of a query string (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The last value given for `name`, if any.
pub fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// A page of a list: how many items to skip and how many to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// Parses `limit` and `offset`.
    ///
    /// Policy: a missing `limit` means 20; `limit` is clamped into 1..=100
    /// (0 becomes 1, 1000 becomes 100); a missing `offset` means 0. A value that
    /// is not an integer, or is negative, is a 422 on that parameter.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Page, Error> {
        let limit = match query_value(pairs, "limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => parse_non_negative("limit", raw)?.clamp(1, MAX_LIMIT),
        };
        let offset = match query_value(pairs, "offset") {
            None => 0,
            Some(raw) => parse_non_negative("offset", raw)?,
        };
        Ok(Page { limit, offset })
    }
}

fn parse_non_negative(name: &str, raw: &str) -> Result<i64, Error> {
    match raw.trim().parse::<i64>() {
        Ok(value) if value >= 0 => Ok(value),
        Ok(_) => Err(Error::invalid(name, "must not be negative")),
        Err(_) => Err(Error::invalid(
            name,
            format!("must be an integer between 0 and {}", i64::MAX),
        )),
    }
}

/// Path parameters by name, percent-decoded (the router fills them in, the
/// handlers read them).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PathParams(Vec<(&'static str, String)>);

impl PathParams {
    pub fn new(params: Vec<(&'static str, String)>) -> PathParams {
        PathParams(params)
    }

    pub fn get(&self, name: &str) -> Result<&str, Error> {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| Error::Internal(format!("route has no parameter {name}")))
    }
}

/// Decodes one `%XX`-escaped path segment; `None` if the result is not UTF-8
/// or contains U+0000 (no stored name can contain it, so nothing matches).
pub fn decode_path_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .filter(|decoded| !decoded.contains('\0'))
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(query: &str) -> Result<Page, Error> {
        Page::from_query(&query_pairs(query))
    }

    #[test]
    fn pagination_defaults_to_twenty_from_the_start() {
        assert_eq!(
            page("").unwrap(),
            Page {
                limit: 20,
                offset: 0
            }
        );
    }

    #[test]
    fn pagination_clamps_limit_into_one_to_hundred() {
        assert_eq!(page("limit=0").unwrap().limit, 1);
        assert_eq!(page("limit=5").unwrap().limit, 5);
        assert_eq!(page("limit=100000").unwrap().limit, 100);
        assert_eq!(
            page("limit=3&offset=7").unwrap(),
            Page {
                limit: 3,
                offset: 7
            }
        );
    }

    #[test]
    fn pagination_rejects_negative_and_non_numeric_values() {
        for (query, field) in [
            ("limit=-1", "limit"),
            ("offset=-5", "offset"),
            ("limit=ten", "limit"),
            ("offset=1.5", "offset"),
            ("offset=99999999999999999999999", "offset"),
        ] {
            let error = page(query).unwrap_err();
            assert_eq!(error.status(), 422, "{query}");
            assert!(error.body().errors.contains_key(field), "{query}");
        }
    }

    #[test]
    fn query_values_are_decoded() {
        let pairs = query_pairs("tag=rust%20lang&author=a+b&tag=last");
        assert_eq!(query_value(&pairs, "author"), Some("a b"));
        assert_eq!(query_value(&pairs, "tag"), Some("last"));
        assert_eq!(query_value(&pairs, "favorited"), None);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn json_body_requires_json_content_type() {
        let error = parse_json_body::<Probe>(Some("text/plain"), br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(error.status(), 422);
        let error = parse_json_body::<Probe>(None, br#"{"name":"x"}"#).unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(
            parse_json_body::<Probe>(Some("application/json; charset=utf-8"), br#"{"name":"x"}"#)
                .is_ok()
        );
        assert!(parse_json_body::<Probe>(Some("Application/JSON"), br#"{"name":"x"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_422_with_a_message() {
        let error = parse_json_body::<Probe>(Some("application/json"), b"{\"name\":").unwrap_err();
        assert_eq!(error.status(), 422);
        let message = &error.body().errors["body"][0];
        assert!(message.starts_with("invalid JSON"), "{message}");
    }

    #[test]
    fn nul_characters_are_refused_in_bodies_and_queries() {
        let error = parse_json_body::<Probe>(Some("application/json"), br#"{"name":"a\u0000b"}"#)
            .unwrap_err();
        assert_eq!(error.status(), 422);
        // An escaped backslash followed by `u0000` is plain text.
        assert!(
            parse_json_body::<Probe>(Some("application/json"), br#"{"name":"a\\u0000b"}"#).is_ok()
        );
        assert!(query_has_nul("tag=a%00b"));
        assert!(query_has_nul("a%00=b"));
        assert!(!query_has_nul("tag=a%2500b"));
        assert_eq!(decode_path_segment("nul%00byte"), None);
    }

    #[test]
    fn bodies_are_read_up_to_the_limit_and_refused_past_it() {
        let mut body = Vec::new();
        append_bounded(&mut body, &[b'x'; 6], 10).unwrap();
        append_bounded(&mut body, &[b'x'; 4], 10).unwrap();
        assert_eq!(body.len(), 10);
        let error = append_bounded(&mut body, b"x", 10).unwrap_err();
        assert_eq!(error.status(), 413);
        assert_eq!(body.len(), 10);
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            decode_path_segment("J%C3%BCrgen").as_deref(),
            Some("Jürgen")
        );
        assert_eq!(decode_path_segment("%FF"), None);
    }
}
