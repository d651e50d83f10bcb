//! Hostile strings and JSON in every string field, query parameter, path
//! parameter and body: each is either stored and returned exactly as sent or
//! refused with a 4xx; never a 5xx, a hang or a crashed replica.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::support::{self, Reply, Server, register, send, send_json};

/// Strings that break naive SQL, encodings, renderers or length
/// assumptions.
fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("sql quote", "x'; DROP TABLE users; --".into()),
        ("sql or", "\" OR \"1\"=\"1' OR '1'='1".into()),
        ("sql backslash", "\\'; SELECT pg_sleep(20); --\\".into()),
        ("like wildcards", "%_%\\%".into()),
        ("placeholder", "$1::text $2 ?".into()),
        ("long", "x".repeat(100_000)),
        ("emoji", "👩‍👩‍👧‍👦 🔥😀 \u{1F600}".into()),
        (
            "zero-width",
            "a\u{200B}b\u{200C}c\u{200D}d\u{FEFF}e\u{2060}".into(),
        ),
        (
            "right-to-left",
            "\u{202E}txt.exe\u{202C} \u{200F}שלום عربي".into(),
        ),
        ("combining", "e\u{0301}\u{0301}\u{0301}\u{0301}".into()),
        ("nul", "nul\u{0000}byte".into()),
        ("control", "bell\u{0007}esc\u{001B}[31m".into()),
        ("newlines", "line1\r\nline2\n\u{2028}\u{2029}".into()),
        ("html", "<script>alert(1)</script>&amp;".into()),
    ]
}

/// Bodies that are not valid JSON, or valid JSON that parsers disagree on.
fn hostile_bodies(valid: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let wrapper = valid
        .as_object()
        .and_then(|object| object.keys().next().cloned())
        .unwrap_or_default();
    let inner = valid[&wrapper].to_string();
    let inner_fields = inner.trim_start_matches('{').trim_end_matches('}');
    vec![
        ("deep array", deep_array.clone().into_bytes()),
        ("deep object", deep_object.into_bytes()),
        (
            "deep value in every field",
            inner_with_every_string(valid, &deep_array).into_bytes(),
        ),
        (
            "duplicate wrapper",
            format!("{{\"{wrapper}\":{inner},\"{wrapper}\":{inner}}}").into_bytes(),
        ),
        (
            "duplicate field",
            format!("{{\"{wrapper}\":{{{inner_fields},{inner_fields}}}}}").into_bytes(),
        ),
        (
            "huge number as string field",
            inner_with_every_string(valid, "1e999999").into_bytes(),
        ),
        (
            "huge integer as string field",
            inner_with_every_string(valid, "123456789012345678901234567890123456789").into_bytes(),
        ),
        (
            "huge number in a list of strings",
            inner_with_every_string(valid, "[1e400, -1e400]").into_bytes(),
        ),
        (
            "invalid UTF-8 in strings",
            inner_with_every_string(valid, "\"\u{FFFD}\"")
                .replace('\u{FFFD}', "\u{1}")
                .into_bytes()
                .into_iter()
                .map(|byte| if byte == 1 { 0xFF } else { byte })
                .collect(),
        ),
        (
            "lone surrogate escape",
            inner_with_every_string(valid, "\"\\ud800\"").into_bytes(),
        ),
        (
            "raw NUL in a string",
            inner_with_every_string(valid, "\"a\u{0}b\"").into_bytes(),
        ),
        ("empty", Vec::new()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("string", b"\"user\"".to_vec()),
        ("truncated", {
            let text = valid.to_string().into_bytes();
            text[..text.len() / 2].to_vec()
        }),
        ("trailing garbage", format!("{valid}}}x").into_bytes()),
        (
            "BOM",
            [b"\xEF\xBB\xBF".as_slice(), valid.to_string().as_bytes()].concat(),
        ),
        (
            "UTF-16",
            valid
                .to_string()
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
    ]
}

/// `valid` as JSON text with every string value replaced by `raw` (JSON text
/// inserted as it is).
fn inner_with_every_string(valid: &Value, raw: &str) -> String {
    fn replace(value: &Value, raw: &str) -> String {
        match value {
            Value::String(_) => raw.to_owned(),
            Value::Object(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(key, value)| format!(
                        "{}:{}",
                        Value::String(key.clone()),
                        replace(value, raw)
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Value::Array(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|item| replace(item, raw))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => other.to_string(),
        }
    }
    replace(valid, raw)
}

fn encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

struct Findings {
    failures: Vec<String>,
    requests: usize,
}

impl Findings {
    /// No 5xx; a 2xx must return `expected` at `pointer` exactly.
    fn check(&mut self, what: &str, reply: &Result<Reply>, pointer: Option<(&str, &str)>) -> bool {
        self.requests += 1;
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                self.failures.push(format!(
                    "{}: no answer ({})",
                    truncated(what),
                    truncated(&format!("{error:#}"))
                ));
                return false;
            }
        };
        if reply.status >= 500 {
            self.failures.push(format!(
                "{}: {} {}",
                truncated(what),
                reply.status,
                truncated(&reply.text())
            ));
            return false;
        }
        if (200..300).contains(&reply.status)
            && let Some((pointer, expected)) = pointer
        {
            let got = reply.json().pointer(pointer).cloned();
            if got.as_ref().and_then(Value::as_str) != Some(expected) {
                self.failures.push(format!(
                    "{what}: {} but {pointer} came back as {} (sent {} bytes)",
                    reply.status,
                    truncated(&got.map(|v| v.to_string()).unwrap_or_default()),
                    expected.len()
                ));
                return false;
            }
        }
        (200..300).contains(&reply.status)
    }

    fn expect_4xx(&mut self, what: &str, reply: &Result<Reply>) {
        self.requests += 1;
        match reply {
            Ok(reply) if (400..500).contains(&reply.status) => {}
            Ok(reply) => self.failures.push(format!(
                "{what}: expected a 4xx, got {} {}",
                reply.status,
                truncated(&reply.text())
            )),
            Err(error) => self.failures.push(format!(
                "{}: no answer ({})",
                truncated(what),
                truncated(&format!("{error:#}"))
            )),
        }
    }
}

fn truncated(text: &str) -> String {
    text.chars().take(200).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_strings_and_json_are_stored_exactly_or_refused_never_a_5xx() -> Result<()> {
    let _serial = support::serial().await;
    let server = Server::start(&[]).await?;
    // A hang shows up as a timeout here.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let base = server.base.clone();
    let api = |path: &str| format!("{base}/api{path}");
    let owner = register(&http, &base, "injector", "injector-password").await?;
    let mut findings = Findings {
        failures: Vec::new(),
        requests: 0,
    };

    for (index, (name, text)) in hostile_strings().into_iter().enumerate() {
        // Registration: username, email and password carry the string.
        let username = format!("u{index}{text}");
        let email = format!("e{index}{}@example.com", text.replace(['@', ' '], ""));
        let reply = send_json(
            &http,
            "POST",
            &api("/users"),
            None,
            &json!({"user": {"username": username, "email": email, "password": text}}),
        )
        .await;
        if findings.check(
            &format!("{name}: register"),
            &reply,
            Some(("/user/username", &username)),
        ) {
            // The password works byte for byte.
            let login = send_json(
                &http,
                "POST",
                &api("/users/login"),
                None,
                &json!({"user": {"email": email, "password": text}}),
            )
            .await;
            if findings.check(
                &format!("{name}: login"),
                &login,
                Some(("/user/email", &email)),
            ) && login.as_ref().map(|r| r.status).ok() != Some(200)
            {
                findings
                    .failures
                    .push(format!("{name}: login with the registered password failed"));
            }
        }
        // Username alone (a short ASCII email), so a string refused as an
        // email is still tried as a username.
        let reply = send_json(
            &http,
            "POST",
            &api("/users"),
            None,
            &json!({"user": {"username": username, "email": format!("plain{index}@example.com"), "password": "p"}}),
        )
        .await;
        findings.check(
            &format!("{name}: username"),
            &reply,
            Some(("/user/username", &username)),
        );

        // Profile fields.
        for field in ["bio", "image"] {
            let reply = send_json(
                &http,
                "PUT",
                &api("/user"),
                Some(&owner),
                &json!({"user": {field: text}}),
            )
            .await;
            findings.check(
                &format!("{name}: user {field}"),
                &reply,
                Some((&format!("/user/{field}"), &text)),
            );
        }

        // Articles: every string field and a tag.
        let tag = format!("t{index}{text}");
        let reply = send_json(
            &http,
            "POST",
            &api("/articles"),
            Some(&owner),
            &json!({"article": {"title": text, "description": text, "body": text, "tagList": [tag]}}),
        )
        .await;
        let mut slug = None;
        if findings.check(
            &format!("{name}: create article"),
            &reply,
            Some(("/article/title", &text)),
        ) {
            let article = reply.as_ref().map(Reply::json).unwrap_or_default();
            for (pointer, expected) in [
                ("/article/description", text.as_str()),
                ("/article/body", text.as_str()),
                ("/article/tagList/0", tag.as_str()),
            ] {
                if article.pointer(pointer).and_then(Value::as_str) != Some(expected) {
                    findings
                        .failures
                        .push(format!("{name}: article {pointer} not returned as sent"));
                }
            }
            slug = article["article"]["slug"].as_str().map(str::to_owned);
        }
        if let Some(slug) = &slug {
            let reply = send(&http, "GET", &api(&format!("/articles/{slug}")), None, None).await;
            findings.check(
                &format!("{name}: read article"),
                &reply,
                Some(("/article/body", &text)),
            );
            let reply = send_json(
                &http,
                "PUT",
                &api(&format!("/articles/{slug}")),
                Some(&owner),
                &json!({"article": {"body": text, "description": text}}),
            )
            .await;
            findings.check(
                &format!("{name}: update article"),
                &reply,
                Some(("/article/body", &text)),
            );
            let reply = send_json(
                &http,
                "POST",
                &api(&format!("/articles/{slug}/comments")),
                Some(&owner),
                &json!({"comment": {"body": text}}),
            )
            .await;
            findings.check(
                &format!("{name}: comment"),
                &reply,
                Some(("/comment/body", &text)),
            );
            let reply = send(
                &http,
                "GET",
                &api(&format!("/articles?tag={}", encode_path(&tag))),
                None,
                None,
            )
            .await;
            if tag.len() > 8_000 {
                // Too long for a request line through nginx (see below).
            } else if findings.check(&format!("{name}: list by tag"), &reply, None) {
                let count = reply
                    .as_ref()
                    .map(|r| r.json()["articlesCount"].clone())
                    .unwrap_or_default();
                if count != json!(1) {
                    findings.failures.push(format!(
                        "{name}: the tag finds {count} articles, expected 1"
                    ));
                }
            }
        }

        // Query and path parameters, at most 8 KiB: nginx answers 414 for
        // longer request lines (large_client_header_buffers), so nothing
        // longer reaches a replica.
        let encoded: String = encode_path(&text).chars().take(8_000).collect();
        for query in ["tag", "author", "favorited", "limit", "offset"] {
            let reply = send(
                &http,
                "GET",
                &api(&format!("/articles?{query}={encoded}")),
                None,
                None,
            )
            .await;
            findings.check(&format!("{name}: ?{query}="), &reply, None);
        }
        let reply = send(
            &http,
            "GET",
            &api(&format!("/articles/feed?limit={encoded}")),
            Some(format!("Token {owner}").as_bytes()),
            None,
        )
        .await;
        findings.check(&format!("{name}: feed ?limit="), &reply, None);
        for path in [
            format!("/profiles/{encoded}"),
            format!("/profiles/{encoded}/follow"),
            format!("/articles/{encoded}"),
            format!("/articles/{encoded}/comments"),
            format!("/articles/{encoded}/comments/{encoded}"),
        ] {
            let reply = send(&http, "GET", &api(&path), None, None).await;
            findings.check(&format!("{name}: GET {}", truncated(&path)), &reply, None);
            let reply = send(
                &http,
                "DELETE",
                &api(&path),
                Some(format!("Token {owner}").as_bytes()),
                None,
            )
            .await;
            findings.check(
                &format!("{name}: DELETE {}", truncated(&path)),
                &reply,
                None,
            );
        }
    }

    // Invalid UTF-8 and overlong numbers in paths and queries.
    for path in [
        "/profiles/%FF%FE",
        "/articles/%C0%AF",
        "/articles/x/comments/99999999999999999999999999",
        "/articles/x/comments/-1",
        "/articles?limit=1e309&offset=99999999999999999999",
        "/articles?tag=%FF%00",
        "/profiles/%00",
    ] {
        let reply = send(&http, "GET", &api(path), None, None).await;
        findings.check(&format!("GET {path}"), &reply, None);
    }

    // Malformed and ambiguous JSON on every operation that reads a body.
    let article = send_json(
        &http,
        "POST",
        &api("/articles"),
        Some(&owner),
        &json!({"article": {"title": "json target", "description": "d", "body": "b"}}),
    )
    .await?;
    let slug = article.json()["article"]["slug"]
        .as_str()
        .unwrap_or("missing")
        .to_owned();
    let operations: Vec<(&str, String, bool, Value)> = vec![
        (
            "POST",
            "/users".into(),
            false,
            json!({"user": {"username": "dup", "email": "dup@example.com", "password": "p"}}),
        ),
        (
            "POST",
            "/users/login".into(),
            false,
            json!({"user": {"email": "injector@example.com", "password": "injector-password"}}),
        ),
        (
            "PUT",
            "/user".into(),
            true,
            json!({"user": {"bio": "b", "image": "i"}}),
        ),
        (
            "POST",
            "/articles".into(),
            true,
            json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        ),
        (
            "PUT",
            format!("/articles/{slug}"),
            true,
            json!({"article": {"title": "t2", "body": "b2"}}),
        ),
        (
            "POST",
            format!("/articles/{slug}/comments"),
            true,
            json!({"comment": {"body": "c"}}),
        ),
    ];
    let authorization = format!("Token {owner}");
    for (method, path, authenticated, valid) in &operations {
        let token = authenticated.then_some(authorization.as_bytes());
        for (what, body) in hostile_bodies(valid) {
            let reply = send(
                &http,
                method,
                &api(path),
                token,
                Some(("application/json", body)),
            )
            .await;
            findings.expect_4xx(&format!("{method} {path}: {what}"), &reply);
        }
        let reply = send(
            &http,
            method,
            &api(path),
            token,
            Some(("text/plain", valid.to_string().into_bytes())),
        )
        .await;
        findings.expect_4xx(&format!("{method} {path}: text/plain"), &reply);
    }

    let alive = server.alive().await;
    eprintln!(
        "{} hostile requests, {} failures; replica alive afterwards: {alive}",
        findings.requests,
        findings.failures.len()
    );
    ensure!(alive, "the replica died:\n{}", server.replica.log.last(40));
    ensure!(
        findings.failures.is_empty(),
        "{} of {} hostile requests misbehaved:\n{}\n--- wasmhost log\n{}",
        findings.failures.len(),
        findings.requests,
        findings.failures.join("\n"),
        server.replica.log.last(30)
    );
    Ok(())
}
