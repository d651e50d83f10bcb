//! Authentication: every credential that is not exactly a valid, unexpired
//! HS256 token of an existing user in `Authorization: Token <jwt>` gets a 401
//! with the error body on every endpoint that reads the caller; and login
//! does not tell a registered email from an unknown one, neither by its
//! answer nor by its timing.

use std::time::Duration;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::support::{
    self, Reply, Server, client, forge_token, hs256, hs512, median, now, register, send, send_json,
};

/// `{"errors": {"<field>": ["<message>", ...], ...}}` with at least one
/// message, as JSON.
fn is_error_body(reply: &Reply) -> bool {
    let body = reply.json();
    let Some(object) = body.as_object() else {
        return false;
    };
    let Some(fields) = object.get("errors").and_then(Value::as_object) else {
        return false;
    };
    object.len() == 1
        && !fields.is_empty()
        && fields.values().all(|messages| {
            messages
                .as_array()
                .is_some_and(|list| !list.is_empty() && list.iter().all(Value::is_string))
        })
        && reply.content_type.starts_with("application/json")
}

/// (method, path, body) of endpoints that read the caller from the token:
/// required auth, optional auth (an invalid token must not silently become
/// anonymous), reads and writes.
fn endpoints(victim: &str, slug: &str, comment: i64) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/api/user".into(), None),
        (
            "PUT",
            "/api/user".into(),
            Some(json!({"user": {"bio": "pwned"}})),
        ),
        ("GET", "/api/articles/feed".into(), None),
        ("GET", "/api/articles".into(), None),
        (
            "POST",
            "/api/articles".into(),
            Some(json!({"article": {"title": "forged", "description": "d", "body": "b"}})),
        ),
        ("GET", format!("/api/profiles/{victim}"), None),
        ("POST", format!("/api/profiles/{victim}/follow"), None),
        ("POST", format!("/api/articles/{slug}/favorite"), None),
        (
            "POST",
            format!("/api/articles/{slug}/comments"),
            Some(json!({"comment": {"body": "forged"}})),
        ),
        ("GET", format!("/api/articles/{slug}"), None),
        (
            "PUT",
            format!("/api/articles/{slug}"),
            Some(json!({"article": {"title": "forged"}})),
        ),
        ("GET", format!("/api/articles/{slug}/comments"), None),
        (
            "DELETE",
            format!("/api/articles/{slug}/comments/{comment}"),
            None,
        ),
        ("DELETE", format!("/api/articles/{slug}/favorite"), None),
        ("DELETE", format!("/api/profiles/{victim}/follow"), None),
        ("DELETE", format!("/api/articles/{slug}"), None),
    ]
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    authorization: &[u8],
    body: &Option<Value>,
) -> Result<Reply> {
    let body = body
        .as_ref()
        .map(|value| ("application/json", value.to_string().into_bytes()));
    send(
        http,
        method,
        &format!("{base}{path}"),
        Some(authorization),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_orphaned_and_malformed_credentials_get_401_with_the_error_body()
-> Result<()> {
    let _serial = support::serial().await;
    let server = Server::start(&[]).await?;
    let http = client();
    let base = &server.base;
    let secret = &server.jwt_secret;

    let victim_token = register(&http, base, "victim", "victim-password").await?;
    let victim_id = support::subject(&victim_token)?;
    let article = send_json(
        &http,
        "POST",
        &format!("{base}/api/articles"),
        Some(&victim_token),
        &json!({"article": {"title": "Target", "description": "d", "body": "b"}}),
    )
    .await?;
    ensure!(article.status == 201, "create article: {}", article.text());
    let slug = article.json()["article"]["slug"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let comment = send_json(
        &http,
        "POST",
        &format!("{base}/api/articles/{slug}/comments"),
        Some(&victim_token),
        &json!({"comment": {"body": "first"}}),
    )
    .await?;
    ensure!(comment.status == 200, "create comment: {}", comment.text());
    let comment_id = comment.json()["comment"]["id"].as_i64().unwrap_or_default();

    let claims = json!({"sub": victim_id, "iat": now() - 10, "exp": now() + 3600});
    let hs256_header = json!({"alg": "HS256", "typ": "JWT"});
    let mut tampered = victim_token.clone();
    // Flip the last signature character to another base64url character.
    let last = tampered.pop().unwrap_or('A');
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let other_key = forge_token(
        &hs256_header,
        &claims,
        hs256("another secret of thirty-two bytes!"),
    );
    let alg_none: Vec<String> = ["none", "None", "NONE", "nOnE"]
        .iter()
        .map(|alg| {
            let token = forge_token(&json!({"alg": alg, "typ": "JWT"}), &claims, |_| Vec::new());
            token.trim_end_matches('.').to_owned() + "."
        })
        .collect();
    let hs512_token = forge_token(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &claims,
        hs512(secret),
    );
    // Algorithm confusion: an RS256 header over a MAC made with the shared
    // secret, as if the server used the secret as an RSA public key.
    let rs256_token = forge_token(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &claims,
        hs256(secret),
    );
    let expired = forge_token(
        &hs256_header,
        &json!({"sub": victim_id, "iat": now() - 7200, "exp": now() - 3600}),
        hs256(secret),
    );
    let no_exp = forge_token(&hs256_header, &json!({"sub": victim_id}), hs256(secret));
    let string_exp = forge_token(
        &hs256_header,
        &json!({"sub": victim_id, "iat": now(), "exp": "9999999999"}),
        hs256(secret),
    );

    let mut credentials: Vec<(String, Vec<u8>)> = vec![
        (
            "bad signature".into(),
            format!("Token {tampered}").into_bytes(),
        ),
        (
            "signed with another key".into(),
            format!("Token {other_key}").into_bytes(),
        ),
        (
            "HS512 with the real key".into(),
            format!("Token {hs512_token}").into_bytes(),
        ),
        (
            "RS256 header".into(),
            format!("Token {rs256_token}").into_bytes(),
        ),
        ("expired".into(), format!("Token {expired}").into_bytes()),
        (
            "no exp claim".into(),
            format!("Token {no_exp}").into_bytes(),
        ),
        (
            "exp as a string".into(),
            format!("Token {string_exp}").into_bytes(),
        ),
        (
            "Bearer scheme".into(),
            format!("Bearer {victim_token}").into_bytes(),
        ),
        (
            "lowercase token scheme".into(),
            format!("token {victim_token}").into_bytes(),
        ),
        (
            "two spaces".into(),
            format!("Token  {victim_token}").into_bytes(),
        ),
        // (Spaces before or after the whole value are not part of it in
        // HTTP: parsers strip them, so they are not a malformed header.)
        ("no scheme".into(), victim_token.clone().into_bytes()),
        ("empty".into(), Vec::new()),
        ("scheme only".into(), b"Token".to_vec()),
        ("scheme and space".into(), b"Token ".to_vec()),
        (
            "two tokens".into(),
            format!("Token {victim_token}, Token {victim_token}").into_bytes(),
        ),
        ("garbage".into(), b"Token a.b.c".to_vec()),
        (
            "non-ASCII bytes".into(),
            b"Token \xff\xfe.\x80.\x81".to_vec(),
        ),
    ];
    for (index, token) in alg_none.iter().enumerate() {
        credentials.push((
            format!("alg none #{index}"),
            format!("Token {token}").into_bytes(),
        ));
    }

    // The real token works on each endpoint (so a 401 below is about the
    // credential, not the endpoint). Deleting the article last.
    let valid = format!("Token {victim_token}").into_bytes();
    let reply = call(&http, base, "GET", "/api/user", &valid, &None).await?;
    ensure!(
        reply.status == 200,
        "valid token on GET /api/user: {}",
        reply.status
    );

    let mut failures = Vec::new();
    for (what, authorization) in &credentials {
        for (method, path, body) in endpoints("victim", &slug, comment_id) {
            let reply = call(&http, base, method, &path, authorization, &body).await?;
            if reply.status != 401 || !is_error_body(&reply) {
                failures.push(format!(
                    "{what}: {method} {path} -> {} {}",
                    reply.status,
                    reply.text()
                ));
            }
        }
    }

    // A valid, unexpired token of a user who has since been deleted.
    let orphan_token = register(&http, base, "orphan", "orphan-password").await?;
    let orphan_id = support::subject(&orphan_token)?;
    devstack::postgres::psql(
        &server.database.superuser_url,
        &format!("DELETE FROM users WHERE id = {}", orphan_id.parse::<i64>()?),
    )
    .await?;
    let orphan = format!("Token {orphan_token}").into_bytes();
    // The token is well signed and unexpired, but names nobody: every
    // operation refuses it, reads included (not served as an anonymous or a
    // ghost viewer), and so do writes that would otherwise answer 403 (someone
    // else's article) or change nothing (an unfollow).
    for (method, path, body) in endpoints("victim", &slug, comment_id) {
        let reply = call(&http, base, method, &path, &orphan, &body).await?;
        if reply.status != 401 || !is_error_body(&reply) {
            failures.push(format!(
                "deleted user: {method} {path} -> {} {}",
                reply.status,
                reply.text()
            ));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} credential/endpoint pairs were not a 401 with the error body:\n{}\n--- wasmhost log\n{}",
        failures.len(),
        failures.join("\n"),
        server.replica.log.last(30)
    );
    Ok(())
}

/// Login with an unknown email and with a wrong password must answer alike:
/// the same status and body, and medians within a fraction of the cost of
/// the password hash itself (measured as the difference between a wrong
/// password and a request rejected before hashing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_does_not_reveal_whether_an_email_is_registered() -> Result<()> {
    const TRIES: usize = 25;
    /// The timing difference allowed, as a fraction of the argon2 cost: a
    /// database lookup that finds nothing must not save the hash (skipping it
    /// would show as a difference of about 100%). The other tests of this
    /// binary run at the same time and load the machine, so medians of
    /// equal work still differ by 10-30%; half the hash cost separates the
    /// two cases without flaking.
    const MAX_DIFFERENCE_OF_HASH_COST: f64 = 0.5;

    let _serial = support::serial().await;
    let server = Server::start(&[]).await?;
    let http = client();
    let url = format!("{}/api/users/login", server.base);
    register(&http, &server.base, "timed", "the-right-password").await?;

    let login =
        |email: &str, password: &str| json!({"user": {"email": email, "password": password}});
    let unknown = login("nobody-here@example.com", "the-right-password");
    let wrong = login("timed@example.com", "a-wrong-password");
    // Rejected by validation before any hashing: the baseline cost of a
    // login request without argon2.
    let unhashed = login("timed@example.com", "");

    // Warm up the instance pool and the database connection.
    for body in [&unknown, &wrong, &unhashed] {
        send_json(&http, "POST", &url, None, body).await?;
    }
    let mut unknown_times = Vec::new();
    let mut wrong_times = Vec::new();
    let mut baseline_times = Vec::new();
    let mut unknown_reply = None;
    let mut wrong_reply = None;
    // Interleaved, so drift in machine load affects all three alike.
    for _ in 0..TRIES {
        let reply = send_json(&http, "POST", &url, None, &unknown).await?;
        unknown_times.push(reply.elapsed);
        unknown_reply = Some(reply);
        let reply = send_json(&http, "POST", &url, None, &wrong).await?;
        wrong_times.push(reply.elapsed);
        wrong_reply = Some(reply);
        let reply = send_json(&http, "POST", &url, None, &unhashed).await?;
        ensure!(reply.status == 422, "empty password: {}", reply.status);
        baseline_times.push(reply.elapsed);
    }
    let (Some(unknown_reply), Some(wrong_reply)) = (unknown_reply, wrong_reply) else {
        anyhow::bail!("no replies");
    };
    ensure!(
        unknown_reply.status == 401,
        "unknown email: {}",
        unknown_reply.status
    );
    ensure!(
        unknown_reply.status == wrong_reply.status && unknown_reply.bytes == wrong_reply.bytes,
        "unknown email and wrong password answer differently: {} {} vs {} {}",
        unknown_reply.status,
        unknown_reply.text(),
        wrong_reply.status,
        wrong_reply.text()
    );

    let unknown_median = median(&mut unknown_times);
    let wrong_median = median(&mut wrong_times);
    let baseline_median = median(&mut baseline_times);
    let hash_cost = wrong_median.saturating_sub(baseline_median);
    let difference = unknown_median.abs_diff(wrong_median);
    let ratio = difference.as_secs_f64() / hash_cost.as_secs_f64().max(1e-6);
    eprintln!(
        "login timing over {TRIES} tries: unknown email {unknown_median:?}, wrong password \
         {wrong_median:?}, no hashing {baseline_median:?}; hash cost {hash_cost:?}, difference \
         {difference:?} = {:.1}% of the hash cost",
        ratio * 100.0
    );
    ensure!(
        hash_cost > Duration::from_millis(1),
        "the wrong-password login costs no more than a rejected one ({wrong_median:?} vs \
         {baseline_median:?}): is the password hashed at all?"
    );
    ensure!(
        ratio <= MAX_DIFFERENCE_OF_HASH_COST,
        "unknown email and wrong password differ by {difference:?}, {:.0}% of the hash cost \
         {hash_cost:?}",
        ratio * 100.0
    );
    Ok(())
}
