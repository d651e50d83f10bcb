//! Drives every Conduit endpoint through the real host (`wasmhost serve` with
//! the built `conduit.wasm`) against a real, freshly migrated PostgreSQL
//! database: the success paths and each error case, asserting status codes
//! and bodies.
//!
//! One server is started for the whole run (compiling the component takes a
//! while); each `check_*` function proves one area and uses its own users, so
//! the order between them does not matter.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Api, Reply, Server, expired_token, is_iso8601_utc_millis};

fn errors(field: &str, message: &str) -> Value {
    json!({"errors": {field: [message]}})
}

#[track_caller]
fn expect(reply: &Reply, status: u16, what: &str) {
    assert_eq!(
        reply.status, status,
        "{what}: expected {status}, got {} with {}",
        reply.status, reply.body
    );
}

#[track_caller]
fn expect_error(reply: &Reply, status: u16, field: &str, message: &str, what: &str) {
    expect(reply, status, what);
    assert_eq!(reply.body, errors(field, message), "{what}");
}

/// A 422 naming `field` as longer than `limit` characters.
#[track_caller]
fn expect_too_long(reply: &Reply, field: &str, limit: usize, what: &str) {
    expect_error(
        reply,
        422,
        field,
        &format!("is too long (maximum is {limit} characters)"),
        &format!("{what} {field} over {limit}"),
    );
}

/// Registers `name` (email `<name>@example.com`) and returns the token.
async fn register(api: &Api, name: &str) -> String {
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "secret-password"}}),
        )
        .await;
    expect(&reply, 201, &format!("register {name}"));
    reply.body["user"]["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn create_article(api: &Api, token: &str, title: &str, tags: &[&str]) -> Value {
    let reply = api
        .post(
            "/articles",
            Some(token),
            json!({"article": {"title": title, "description": "about it", "body": "the body", "tagList": tags}}),
        )
        .await;
    expect(&reply, 201, &format!("create article {title}"));
    reply.body["article"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conduit_api_through_the_host() {
    let server = Server::start()
        .await
        .expect("starting wasmhost on a scratch database");
    let api = &server.api;
    let outcome = async {
        check_users_registration_login_and_update(api).await;
        check_tokens_missing_bad_tampered_and_expired(api, &server.jwt_secret).await;
        check_concurrent_registrations_of_one_username(api).await;
        check_length_limits_and_body_cap(api).await;
        check_bad_bodies_are_422(api).await;
        check_profiles_and_follows(api).await;
        check_articles_crud_and_ownership(api).await;
        check_article_lists_filters_and_pagination(api).await;
        check_feed_and_favorites(api).await;
        check_comments(api).await;
        check_tags_are_distinct(api).await;
        check_tags_of_articles_written_before_tag_list(&server).await;
        check_concurrent_creations_share_tags(&server).await;
        check_articles_count_is_exact_for_every_filter(&server).await;
        check_strings_are_stored_exactly(api).await;
        check_openapi_document_and_unknown_routes(api).await;
    };
    // Print the host's log when an assertion fails, to explain a 500.
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    if let Err(panic) = result {
        eprintln!("--- wasmhost log ---\n{}", server.log());
        std::panic::resume_unwind(panic);
    }
}

async fn check_users_registration_login_and_update(api: &Api) {
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "jake", "email": "jake@jake.jake", "password": "jakejake"}}),
        )
        .await;
    expect(&reply, 201, "register");
    let user = &reply.body["user"];
    assert_eq!(user["username"], "jake");
    assert_eq!(user["email"], "jake@jake.jake");
    assert_eq!(user["bio"], "");
    assert_eq!(user["image"], "");
    assert_eq!(user["token"].as_str().unwrap().split('.').count(), 3);
    assert!(reply.content_type.unwrap().starts_with("application/json"));

    // Missing, blank and invalid fields: 422 naming each field.
    let reply = api.post("/users", None, json!({"user": {}})).await;
    expect(&reply, 422, "register without fields");
    for field in ["username", "email", "password"] {
        assert_eq!(
            reply.body["errors"][field],
            json!(["can't be blank"]),
            "{field}"
        );
    }
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "  ", "email": "x@y.z", "password": "p"}}),
        )
        .await;
    expect_error(&reply, 422, "username", "can't be blank", "blank username");
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "bad-email", "email": "not-an-email", "password": "p"}}),
        )
        .await;
    expect_error(&reply, 422, "email", "is invalid", "invalid email");

    // Taken username and email (email compared without case).
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "jake", "email": "other@jake.jake", "password": "p"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "username",
        "has already been taken",
        "taken username",
    );
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "jake2", "email": "JAKE@jake.jake", "password": "p"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "email",
        "has already been taken",
        "taken email",
    );

    // Login.
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "jake@jake.jake", "password": "jakejake"}}),
        )
        .await;
    expect(&reply, 200, "login");
    assert_eq!(reply.body["user"]["username"], "jake");
    let token = reply.body["user"]["token"].as_str().unwrap().to_owned();
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "Jake@Jake.jake", "password": "jakejake"}}),
        )
        .await;
    expect(&reply, 200, "login with the email in other case");
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "jake@jake.jake", "password": "wrong"}}),
        )
        .await;
    expect_error(
        &reply,
        401,
        "email or password",
        "is invalid",
        "wrong password",
    );
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "nobody@jake.jake", "password": "x"}}),
        )
        .await;
    expect_error(
        &reply,
        401,
        "email or password",
        "is invalid",
        "unknown email",
    );
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "jake@jake.jake"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "password",
        "can't be blank",
        "login without password",
    );

    // Current user.
    let reply = api.get("/user", Some(&token)).await;
    expect(&reply, 200, "current user");
    assert_eq!(reply.body["user"]["email"], "jake@jake.jake");

    // Update.
    let reply = api
        .put("/user", Some(&token), json!({"user": {"bio": "I like to skateboard", "image": "https://i.stack.imgur.com/xHWG8.jpg", "email": "jake@new.jake"}}))
        .await;
    expect(&reply, 200, "update user");
    assert_eq!(reply.body["user"]["bio"], "I like to skateboard");
    assert_eq!(reply.body["user"]["email"], "jake@new.jake");
    assert_eq!(reply.body["user"]["username"], "jake");
    let reply = api
        .put(
            "/user",
            Some(&token),
            json!({"user": {"password": "newpassword"}}),
        )
        .await;
    expect(&reply, 200, "change password");
    let reply = api
        .post(
            "/users/login",
            None,
            json!({"user": {"email": "jake@new.jake", "password": "newpassword"}}),
        )
        .await;
    expect(&reply, 200, "login with the new email and password");
    let reply = api.put("/user", Some(&token), json!({"user": {}})).await;
    expect_error(
        &reply,
        422,
        "user",
        "at least one field is required",
        "empty update",
    );
    let reply = api
        .put("/user", Some(&token), json!({"user": {"email": "nope"}}))
        .await;
    expect_error(
        &reply,
        422,
        "email",
        "is invalid",
        "update to an invalid email",
    );
    register(api, "taken-by-update").await;
    let reply = api
        .put(
            "/user",
            Some(&token),
            json!({"user": {"username": "taken-by-update"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "username",
        "has already been taken",
        "update to a taken username",
    );
    let reply = api.put("/user", None, json!({"user": {"bio": "x"}})).await;
    expect_error(&reply, 401, "token", "is missing", "update without token");
}

async fn check_tokens_missing_bad_tampered_and_expired(api: &Api, jwt_secret: &str) {
    let token = register(api, "tokenholder").await;
    let reply = api.get("/user", None).await;
    expect_error(&reply, 401, "token", "is missing", "no token");
    let reply = api.get("/user", Some("not-a-jwt")).await;
    expect_error(&reply, 401, "token", "is malformed", "garbage token");

    // Change one character of the claims: the signature no longer matches.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims = &mut parts[1];
    let replacement = if claims.as_bytes()[5] == b'A' {
        "B"
    } else {
        "A"
    };
    claims.replace_range(5..6, replacement);
    let tampered = parts.join(".");
    let reply = api.get("/user", Some(&tampered)).await;
    expect_error(
        &reply,
        401,
        "token",
        "has an invalid signature",
        "tampered token",
    );

    let reply = api
        .get("/user", Some(&expired_token("another secret", "1", -3600)))
        .await;
    expect_error(
        &reply,
        401,
        "token",
        "has an invalid signature",
        "token signed with another secret",
    );
    let reply = api
        .get("/user", Some(&expired_token(jwt_secret, "1", 10)))
        .await;
    expect_error(&reply, 401, "token", "has expired", "expired token");

    // A bad token is refused even where auth is optional.
    let reply = api.get("/articles", Some("not-a-jwt")).await;
    expect_error(
        &reply,
        401,
        "token",
        "is malformed",
        "bad token on an optional-auth read",
    );
    let reply = api.raw(Method::GET, "/user", None, None, None).await;
    expect(&reply, 401, "no header at all");
}

async fn check_concurrent_registrations_of_one_username(api: &Api) {
    // Twenty at once for one username, then twenty for one email (in another
    // letter case each time): exactly one wins, the others get the 422 that
    // names the taken field, never a 500.
    for (field, round) in [("username", 0), ("email", 1), ("username", 2)] {
        let attempts = (0..20).map(|attempt| {
            let api = api.clone();
            let (username, email) = if field == "username" {
                (
                    format!("racer{round}"),
                    format!("racer{round}-{attempt}@example.com"),
                )
            } else {
                (
                    format!("racer{round}-{attempt}"),
                    if attempt % 2 == 0 {
                        format!("racer{round}@example.com")
                    } else {
                        format!("RACER{round}@EXAMPLE.COM")
                    },
                )
            };
            tokio::spawn(async move {
                api.post(
                    "/users",
                    None,
                    json!({"user": {"username": username, "email": email, "password": "p"}}),
                )
                .await
            })
        });
        let replies: Vec<Reply> = futures::future::join_all(attempts)
            .await
            .into_iter()
            .map(|joined| joined.expect("request task"))
            .collect();
        let created = replies.iter().filter(|reply| reply.status == 201).count();
        assert_eq!(
            created, 1,
            "exactly one of twenty registrations of one {field} wins: {replies:?}"
        );
        for reply in replies.iter().filter(|reply| reply.status != 201) {
            expect_error(
                reply,
                422,
                field,
                "has already been taken",
                "losing registration",
            );
        }
        eprintln!("twenty concurrent registrations of one {field}: 1 created, 19 refused with 422");
    }
}

/// Every text field has a maximum length, the same on every runtime: at the
/// limit it is stored, one character over it is a 422 naming the field. A
/// body over 1 MiB is a 413 and stores nothing.
async fn check_length_limits_and_body_cap(api: &Api) {
    let token = register(api, "limits").await;
    let at = |n: usize| "é".repeat(n);
    let over = |n: usize| "x".repeat(n + 1);

    // Articles: title 256, description 1,024, body 65,536, 32 tags of 64.
    let tags: Vec<String> = (0..32)
        .map(|i| format!("{i:02}{}", "t".repeat(62)))
        .collect();
    let reply = api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": at(256), "description": at(1024), "body": at(65_536), "tagList": tags}}),
        )
        .await;
    expect(&reply, 201, "article with every field at its limit");
    assert_eq!(reply.body["article"]["body"], at(65_536));
    assert_eq!(
        reply.body["article"]["tagList"].as_array().map(Vec::len),
        Some(32)
    );
    let slug = reply.body["article"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned();
    for (field, limit) in [("title", 256), ("description", 1024), ("body", 65_536)] {
        let mut article = json!({"title": "t", "description": "d", "body": "b"});
        article[field] = json!(over(limit));
        let reply = api
            .post("/articles", Some(&token), json!({"article": article}))
            .await;
        expect_too_long(&reply, field, limit, "new article");
        let reply = api
            .put(
                &format!("/articles/{slug}"),
                Some(&token),
                json!({"article": {field: over(limit)}}),
            )
            .await;
        expect(&reply, 422, &format!("article update {field} over {limit}"));
    }
    let too_many: Vec<String> = (0..33).map(|i| format!("tag{i}")).collect();
    let reply = api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": too_many}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "tagList",
        "has too many tags (maximum is 32)",
        "33 tags",
    );
    let reply = api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": "t", "description": "d", "body": "b", "tagList": [over(64)]}}),
        )
        .await;
    expect(&reply, 422, "a 65-character tag");

    // Comments: 8,192.
    let path = format!("/articles/{slug}/comments");
    let reply = api
        .post(&path, Some(&token), json!({"comment": {"body": at(8192)}}))
        .await;
    expect(&reply, 200, "comment at its limit");
    let reply = api
        .post(
            &path,
            Some(&token),
            json!({"comment": {"body": over(8192)}}),
        )
        .await;
    expect_too_long(&reply, "body", 8192, "comment");

    // Users: bio 2,000, image 2,048, password 1,024, username 64.
    let reply = api
        .put(
            "/user",
            Some(&token),
            json!({"user": {"bio": at(2000), "image": at(2048)}}),
        )
        .await;
    expect(&reply, 200, "bio and image at their limits");
    for (field, limit) in [
        ("bio", 2000),
        ("image", 2048),
        ("password", 1024),
        ("username", 64),
    ] {
        let reply = api
            .put("/user", Some(&token), json!({"user": {field: over(limit)}}))
            .await;
        expect_too_long(&reply, field, limit, "user");
    }
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": "longpass", "email": "longpass@example.com", "password": over(1024)}}),
        )
        .await;
    expect(&reply, 422, "registration with a 1,025-character password");

    // A 12 MB title: refused with 413 (by whichever of the host and the
    // component reads the body first), and nothing is stored.
    let reply = api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": "x".repeat(12 << 20), "description": "d", "body": "b"}}),
        )
        .await;
    expect(&reply, 413, "12 MB title");
    assert!(
        reply.body["errors"]["body"].is_array(),
        "413 has the error shape: {}",
        reply.body
    );
    let reply = api.get("/articles?author=limits", None).await;
    expect(&reply, 200, "articles of limits");
    assert_eq!(
        reply.body["articlesCount"], 1,
        "only the article within the limits is stored"
    );
    let reply = api
        .put(
            "/user",
            Some(&token),
            json!({"user": {"bio": "b".repeat(2 << 20)}}),
        )
        .await;
    expect(&reply, 413, "2 MB bio");
    let reply = api.get("/user", Some(&token)).await;
    assert_eq!(reply.body["user"]["bio"], at(2000), "the bio is unchanged");
}

async fn check_bad_bodies_are_422(api: &Api) {
    let token = register(api, "badbodies").await;
    let malformed = api
        .raw(
            Method::POST,
            "/users",
            None,
            Some("application/json"),
            Some(b"{\"user\": {".to_vec()),
        )
        .await;
    expect(&malformed, 422, "malformed JSON");
    let message = malformed.body["errors"]["body"][0]
        .as_str()
        .unwrap_or_default();
    assert!(message.starts_with("invalid JSON"), "{message}");

    let wrong_type = api
        .raw(
            Method::POST,
            "/users/login",
            None,
            Some("text/plain"),
            Some(br#"{"user":{"email":"a@b.c","password":"p"}}"#.to_vec()),
        )
        .await;
    expect_error(
        &wrong_type,
        422,
        "body",
        "Content-Type must be application/json",
        "wrong content type",
    );
    let no_type = api
        .raw(
            Method::POST,
            "/articles",
            Some(&token),
            None,
            Some(br#"{"article":{}}"#.to_vec()),
        )
        .await;
    expect_error(
        &no_type,
        422,
        "body",
        "Content-Type must be application/json",
        "no content type",
    );

    let wrong_shape = api
        .post("/articles", Some(&token), json!({"article": {"title": 5}}))
        .await;
    expect(&wrong_shape, 422, "a number where a string belongs");
    let missing_wrapper = api
        .post("/articles", Some(&token), json!({"title": "x"}))
        .await;
    expect(&missing_wrapper, 422, "no article wrapper");
    let empty = api
        .raw(
            Method::PUT,
            "/user",
            Some(&token),
            Some("application/json"),
            Some(Vec::new()),
        )
        .await;
    expect(&empty, 422, "empty body");
}

async fn check_profiles_and_follows(api: &Api) {
    let celeb = register(api, "celeb").await;
    let fan = register(api, "fan").await;

    let reply = api.get("/profiles/celeb", None).await;
    expect(&reply, 200, "profile, anonymous");
    assert_eq!(
        reply.body,
        json!({"profile": {"username": "celeb", "bio": "", "image": "", "following": false}})
    );
    let reply = api.get("/profiles/nobody-here", None).await;
    expect_error(&reply, 404, "profile", "not found", "unknown profile");

    let reply = api.post_empty("/profiles/celeb/follow", Some(&fan)).await;
    expect(&reply, 200, "follow");
    assert_eq!(reply.body["profile"]["following"], true);
    let reply = api.post_empty("/profiles/celeb/follow", Some(&fan)).await;
    expect(&reply, 200, "follow twice");
    assert_eq!(reply.body["profile"]["following"], true);
    let reply = api.get("/profiles/celeb", Some(&fan)).await;
    assert_eq!(
        reply.body["profile"]["following"], true,
        "profile as the follower"
    );
    let reply = api.get("/profiles/celeb", Some(&celeb)).await;
    assert_eq!(
        reply.body["profile"]["following"], false,
        "profile as someone else"
    );

    let reply = api
        .post_empty("/profiles/nobody-here/follow", Some(&fan))
        .await;
    expect_error(&reply, 404, "profile", "not found", "follow unknown user");
    let reply = api.post_empty("/profiles/fan/follow", Some(&fan)).await;
    expect_error(
        &reply,
        422,
        "username",
        "you cannot follow yourself",
        "follow yourself",
    );
    let reply = api.post_empty("/profiles/celeb/follow", None).await;
    expect_error(&reply, 401, "token", "is missing", "follow without token");

    let reply = api.delete("/profiles/celeb/follow", Some(&fan)).await;
    expect(&reply, 200, "unfollow");
    assert_eq!(reply.body["profile"]["following"], false);
    let reply = api.get("/profiles/celeb", Some(&fan)).await;
    assert_eq!(reply.body["profile"]["following"], false, "after unfollow");
    let reply = api.delete("/profiles/nobody-here/follow", Some(&fan)).await;
    expect_error(&reply, 404, "profile", "not found", "unfollow unknown user");
    let reply = api.delete("/profiles/celeb/follow", None).await;
    expect_error(&reply, 401, "token", "is missing", "unfollow without token");
}

async fn check_articles_crud_and_ownership(api: &Api) {
    let author = register(api, "author").await;
    let other = register(api, "other-author").await;

    let article = create_article(
        api,
        &author,
        "How to train your dragon",
        &["training", "dragons", "zoo"],
    )
    .await;
    let slug = article["slug"].as_str().unwrap().to_owned();
    assert!(slug.starts_with("how-to-train-your-dragon"), "{slug}");
    assert_eq!(article["title"], "How to train your dragon");
    assert_eq!(article["body"], "the body");
    assert_eq!(
        article["tagList"],
        json!(["dragons", "training", "zoo"]),
        "tags are listed alphabetically, as the RealWorld suite expects"
    );
    assert_eq!(article["favorited"], false);
    assert_eq!(article["favoritesCount"], 0);
    assert_eq!(article["author"]["username"], "author");
    assert_eq!(article["author"]["following"], false);
    assert!(
        is_iso8601_utc_millis(&article["createdAt"]),
        "{}",
        article["createdAt"]
    );
    assert!(
        is_iso8601_utc_millis(&article["updatedAt"]),
        "{}",
        article["updatedAt"]
    );

    let twin = create_article(api, &author, "How to train your dragon", &[]).await;
    assert_ne!(
        twin["slug"], article["slug"],
        "identical titles get distinct slugs"
    );
    assert_eq!(twin["tagList"], json!([]));

    let reply = api
        .post(
            "/articles",
            Some(&author),
            json!({"article": {"description": "d", "body": "b"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "title",
        "can't be blank",
        "article without title",
    );
    let reply = api
        .post(
            "/articles",
            Some(&author),
            json!({"article": {"title": "t", "description": "", "body": "b"}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "description",
        "can't be blank",
        "article with empty description",
    );
    let reply = api
        .post(
            "/articles",
            None,
            json!({"article": {"title": "t", "description": "d", "body": "b"}}),
        )
        .await;
    expect_error(&reply, 401, "token", "is missing", "create without token");

    let reply = api.get(&format!("/articles/{slug}"), None).await;
    expect(&reply, 200, "get article anonymously");
    assert_eq!(reply.body["article"], article);
    let reply = api.get("/articles/no-such-article-1", None).await;
    expect_error(&reply, 404, "article", "not found", "unknown slug");

    // Only the author may change it.
    let reply = api
        .put(
            &format!("/articles/{slug}"),
            Some(&other),
            json!({"article": {"body": "hijacked"}}),
        )
        .await;
    expect_error(
        &reply,
        403,
        "article",
        "is not yours to change",
        "update someone else's article",
    );
    let reply = api
        .put(
            &format!("/articles/{slug}"),
            None,
            json!({"article": {"body": "x"}}),
        )
        .await;
    expect_error(&reply, 401, "token", "is missing", "update without token");
    let reply = api
        .put(
            "/articles/no-such-article-1",
            Some(&author),
            json!({"article": {"body": "x"}}),
        )
        .await;
    expect_error(&reply, 404, "article", "not found", "update unknown slug");
    let reply = api
        .put(
            &format!("/articles/{slug}"),
            Some(&author),
            json!({"article": {"title": ""}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "title",
        "can't be blank",
        "update to an empty title",
    );

    let reply = api
        .put(
            &format!("/articles/{slug}"),
            Some(&author),
            json!({"article": {"body": "With two hands"}}),
        )
        .await;
    expect(&reply, 200, "update body");
    assert_eq!(reply.body["article"]["body"], "With two hands");
    assert_eq!(
        reply.body["article"]["slug"],
        slug.as_str(),
        "slug kept when the title is kept"
    );
    assert_eq!(
        reply.body["article"]["tagList"],
        json!(["dragons", "training", "zoo"])
    );
    let reply = api
        .put(
            &format!("/articles/{slug}"),
            Some(&author),
            json!({"article": {"title": "Did you train your dragon?"}}),
        )
        .await;
    expect(&reply, 200, "update title");
    let new_slug = reply.body["article"]["slug"].as_str().unwrap().to_owned();
    assert!(
        new_slug.starts_with("did-you-train-your-dragon"),
        "{new_slug}"
    );
    assert_eq!(
        api.get(&format!("/articles/{slug}"), None).await.status,
        404,
        "old slug gone"
    );
    assert_eq!(
        api.get(&format!("/articles/{new_slug}"), None).await.status,
        200,
        "new slug works"
    );

    let reply = api
        .delete(&format!("/articles/{new_slug}"), Some(&other))
        .await;
    expect_error(
        &reply,
        403,
        "article",
        "is not yours to change",
        "delete someone else's article",
    );
    let reply = api.delete(&format!("/articles/{new_slug}"), None).await;
    expect_error(&reply, 401, "token", "is missing", "delete without token");
    let reply = api
        .delete(&format!("/articles/{new_slug}"), Some(&author))
        .await;
    expect(&reply, 204, "delete article");
    assert_eq!(reply.body, Value::Null, "204 has no body");
    let reply = api.get(&format!("/articles/{new_slug}"), None).await;
    expect_error(&reply, 404, "article", "not found", "deleted article");
    let reply = api
        .delete(&format!("/articles/{new_slug}"), Some(&author))
        .await;
    expect_error(&reply, 404, "article", "not found", "delete twice");
}

async fn check_article_lists_filters_and_pagination(api: &Api) {
    let writer = register(api, "lister").await;
    let reader = register(api, "list-reader").await;
    let mut slugs = Vec::new();
    for index in 0..5 {
        let tags: &[&str] = if index % 2 == 0 {
            &["even-list", "common-list"]
        } else {
            &["common-list"]
        };
        let article = create_article(api, &writer, &format!("List article {index}"), tags).await;
        slugs.push(article["slug"].as_str().unwrap().to_owned());
    }
    api.post_empty(&format!("/articles/{}/favorite", slugs[1]), Some(&reader))
        .await;

    let reply = api.get("/articles?author=lister", None).await;
    expect(&reply, 200, "list by author");
    assert_eq!(reply.body["articlesCount"], 5);
    let articles = reply.body["articles"].as_array().unwrap();
    let listed: Vec<&str> = articles
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = slugs.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first, "newest first");
    for article in articles {
        assert!(
            article.get("body").is_none(),
            "lists leave out the body: {article}"
        );
        assert!(is_iso8601_utc_millis(&article["createdAt"]));
        assert_eq!(article["author"]["username"], "lister");
    }

    let reply = api.get("/articles?tag=even-list", None).await;
    assert_eq!(reply.body["articlesCount"], 3, "by tag");
    let reply = api.get("/articles?tag=even-list&author=lister", None).await;
    assert_eq!(reply.body["articlesCount"], 3, "by tag and author");
    let reply = api.get("/articles?tag=no-such-tag", None).await;
    expect(&reply, 200, "unknown tag");
    assert_eq!(reply.body, json!({"articles": [], "articlesCount": 0}));
    let reply = api.get("/articles?author=no-such-user", None).await;
    assert_eq!(reply.body["articlesCount"], 0, "unknown author");

    let reply = api
        .get("/articles?favorited=list-reader", Some(&reader))
        .await;
    expect(&reply, 200, "favorited by");
    assert_eq!(reply.body["articlesCount"], 1);
    assert_eq!(reply.body["articles"][0]["slug"], slugs[1].as_str());
    assert_eq!(reply.body["articles"][0]["favorited"], true);
    assert_eq!(reply.body["articles"][0]["favoritesCount"], 1);
    let reply = api.get("/articles?favorited=list-reader", None).await;
    assert_eq!(
        reply.body["articles"][0]["favorited"], false,
        "anonymous viewer"
    );

    // Pagination: limit/offset, clamping, and 422s.
    let reply = api
        .get("/articles?author=lister&limit=2&offset=1", None)
        .await;
    expect(&reply, 200, "page");
    assert_eq!(reply.body["articlesCount"], 5, "count is over all pages");
    let page: Vec<&str> = reply.body["articles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![slugs[3].as_str(), slugs[2].as_str()]);
    let reply = api.get("/articles?author=lister&offset=100", None).await;
    assert_eq!(
        reply.body,
        json!({"articles": [], "articlesCount": 5}),
        "past the end"
    );
    let reply = api.get("/articles?author=lister&limit=0", None).await;
    assert_eq!(
        reply.body["articles"].as_array().unwrap().len(),
        1,
        "limit 0 is clamped to 1"
    );
    let reply = api.get("/articles?author=lister&limit=100000", None).await;
    expect(&reply, 200, "huge limit is clamped");
    assert_eq!(reply.body["articles"].as_array().unwrap().len(), 5);
    let reply = api.get("/articles?limit=-1", None).await;
    expect_error(
        &reply,
        422,
        "limit",
        "must not be negative",
        "negative limit",
    );
    let reply = api.get("/articles?offset=-3", None).await;
    expect_error(
        &reply,
        422,
        "offset",
        "must not be negative",
        "negative offset",
    );
    let reply = api.get("/articles?limit=lots", None).await;
    expect(&reply, 422, "non-numeric limit");
    assert!(reply.body["errors"]["limit"].is_array());
    let reply = api
        .get("/articles?offset=99999999999999999999999", None)
        .await;
    expect(&reply, 422, "offset beyond 64 bits");

    let reply = api.get("/articles", None).await;
    expect(&reply, 200, "global list");
    assert!(reply.body["articlesCount"].as_i64().unwrap() >= 5);
    assert!(
        reply.body["articles"].as_array().unwrap().len() <= 20,
        "default limit 20"
    );
}

async fn check_feed_and_favorites(api: &Api) {
    let star = register(api, "feed-star").await;
    let stranger = register(api, "feed-stranger").await;
    let follower = register(api, "feed-follower").await;
    let starred = create_article(api, &star, "Star post", &[]).await;
    create_article(api, &stranger, "Stranger post", &[]).await;
    let slug = starred["slug"].as_str().unwrap().to_owned();

    let reply = api.get("/articles/feed", Some(&follower)).await;
    expect(&reply, 200, "empty feed");
    assert_eq!(reply.body, json!({"articles": [], "articlesCount": 0}));
    api.post_empty("/profiles/feed-star/follow", Some(&follower))
        .await;
    let reply = api.get("/articles/feed", Some(&follower)).await;
    expect(&reply, 200, "feed");
    assert_eq!(reply.body["articlesCount"], 1);
    assert_eq!(reply.body["articles"][0]["slug"], slug.as_str());
    assert_eq!(reply.body["articles"][0]["author"]["following"], true);
    assert!(reply.body["articles"][0].get("body").is_none());
    let reply = api.get("/articles/feed", None).await;
    expect_error(&reply, 401, "token", "is missing", "feed without token");
    let reply = api.get("/articles/feed?limit=-1", Some(&follower)).await;
    expect_error(
        &reply,
        422,
        "limit",
        "must not be negative",
        "feed with negative limit",
    );

    let reply = api
        .post_empty(&format!("/articles/{slug}/favorite"), Some(&follower))
        .await;
    expect(&reply, 200, "favorite");
    assert_eq!(reply.body["article"]["favorited"], true);
    assert_eq!(reply.body["article"]["favoritesCount"], 1);
    let reply = api
        .post_empty(&format!("/articles/{slug}/favorite"), Some(&follower))
        .await;
    assert_eq!(
        reply.body["article"]["favoritesCount"], 1,
        "favoriting twice counts once"
    );
    let reply = api
        .post_empty(&format!("/articles/{slug}/favorite"), Some(&stranger))
        .await;
    assert_eq!(reply.body["article"]["favoritesCount"], 2);
    let reply = api.get(&format!("/articles/{slug}"), Some(&follower)).await;
    assert_eq!(reply.body["article"]["favorited"], true);
    assert_eq!(reply.body["article"]["author"]["following"], true);

    let reply = api
        .delete(&format!("/articles/{slug}/favorite"), Some(&follower))
        .await;
    expect(&reply, 200, "unfavorite");
    assert_eq!(reply.body["article"]["favorited"], false);
    assert_eq!(reply.body["article"]["favoritesCount"], 1);

    let reply = api
        .post_empty("/articles/no-such-article-1/favorite", Some(&follower))
        .await;
    expect_error(
        &reply,
        404,
        "article",
        "not found",
        "favorite unknown article",
    );
    let reply = api
        .delete("/articles/no-such-article-1/favorite", Some(&follower))
        .await;
    expect_error(
        &reply,
        404,
        "article",
        "not found",
        "unfavorite unknown article",
    );
    let reply = api
        .post_empty(&format!("/articles/{slug}/favorite"), None)
        .await;
    expect_error(&reply, 401, "token", "is missing", "favorite without token");
    let reply = api
        .delete(&format!("/articles/{slug}/favorite"), None)
        .await;
    expect_error(
        &reply,
        401,
        "token",
        "is missing",
        "unfavorite without token",
    );
}

async fn check_comments(api: &Api) {
    let author = register(api, "commenter").await;
    let other = register(api, "other-commenter").await;
    let article = create_article(api, &author, "Discuss this", &[]).await;
    let slug = article["slug"].as_str().unwrap().to_owned();
    let path = format!("/articles/{slug}/comments");

    let reply = api.get(&path, None).await;
    expect(&reply, 200, "no comments yet");
    assert_eq!(reply.body, json!({"comments": []}));

    let reply = api
        .post(
            &path,
            Some(&author),
            json!({"comment": {"body": "Thank you so much!"}}),
        )
        .await;
    expect(&reply, 200, "create comment");
    let first = reply.body["comment"].clone();
    assert_eq!(first["body"], "Thank you so much!");
    assert_eq!(first["author"]["username"], "commenter");
    assert!(first["id"].is_i64());
    assert!(is_iso8601_utc_millis(&first["createdAt"]));
    assert!(is_iso8601_utc_millis(&first["updatedAt"]));
    let reply = api
        .post(&path, Some(&other), json!({"comment": {"body": "Second"}}))
        .await;
    expect(&reply, 200, "second comment");
    let second_id = reply.body["comment"]["id"].as_i64().unwrap();

    let reply = api
        .post(&path, Some(&author), json!({"comment": {"body": ""}}))
        .await;
    expect_error(&reply, 422, "body", "can't be blank", "empty comment");
    let reply = api
        .post(&path, None, json!({"comment": {"body": "x"}}))
        .await;
    expect_error(&reply, 401, "token", "is missing", "comment without token");
    let reply = api
        .post(
            "/articles/no-such-article-1/comments",
            Some(&author),
            json!({"comment": {"body": "x"}}),
        )
        .await;
    expect_error(
        &reply,
        404,
        "article",
        "not found",
        "comment on unknown article",
    );

    let reply = api.get(&path, None).await;
    expect(&reply, 200, "list comments");
    let bodies: Vec<&str> = reply.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["Thank you so much!", "Second"], "oldest first");
    let reply = api.get("/articles/no-such-article-1/comments", None).await;
    expect_error(
        &reply,
        404,
        "article",
        "not found",
        "comments of unknown article",
    );

    let first_id = first["id"].as_i64().unwrap();
    let reply = api
        .delete(&format!("{path}/{first_id}"), Some(&other))
        .await;
    expect_error(
        &reply,
        403,
        "comment",
        "is not yours to change",
        "delete someone else's comment",
    );
    let reply = api.delete(&format!("{path}/{first_id}"), None).await;
    expect_error(
        &reply,
        401,
        "token",
        "is missing",
        "delete comment without token",
    );
    let reply = api
        .delete(&format!("{path}/not-a-number"), Some(&author))
        .await;
    expect_error(
        &reply,
        422,
        "id",
        "must be an integer",
        "non-integer comment id",
    );
    let reply = api
        .delete(
            &format!("/articles/no-such-article-1/comments/{first_id}"),
            Some(&author),
        )
        .await;
    expect_error(
        &reply,
        404,
        "comment",
        "not found",
        "comment under another slug",
    );
    let reply = api
        .delete(&format!("{path}/{first_id}"), Some(&author))
        .await;
    expect(&reply, 204, "delete comment");
    let reply = api
        .delete(&format!("{path}/{first_id}"), Some(&author))
        .await;
    expect_error(&reply, 404, "comment", "not found", "delete comment twice");
    let reply = api.get(&path, Some(&author)).await;
    let remaining: Vec<i64> = reply.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(remaining, vec![second_id]);
}

async fn check_tags_are_distinct(api: &Api) {
    let token = register(api, "tagger").await;
    create_article(
        api,
        &token,
        "Tagged one",
        &["alpha-tag", "beta-tag", "alpha-tag"],
    )
    .await;
    create_article(api, &token, "Tagged two", &["beta-tag", "gamma-tag"]).await;
    let reply = api.get("/tags", None).await;
    expect(&reply, 200, "tags");
    let tags: Vec<&str> = reply.body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tag in ["alpha-tag", "beta-tag", "gamma-tag"] {
        assert_eq!(
            tags.iter().filter(|t| **t == tag).count(),
            1,
            "{tag} once in {tags:?}"
        );
    }
    let reply = api.get("/articles?tag=alpha-tag", None).await;
    assert_eq!(
        reply.body["articles"][0]["tagList"],
        json!(["alpha-tag", "beta-tag"]),
        "duplicates dropped"
    );
}

/// An article keeps its tag names on its row (migrations/0010); one written
/// by a version from before that column has none there (NULL), and every
/// read shows the same tags for it, from its links.
async fn check_tags_of_articles_written_before_tag_list(server: &Server) {
    let api = &server.api;
    let token = register(api, "tag-list-writer").await;
    let article = create_article(
        api,
        &token,
        "Tag list kept",
        &["tag-list-zeta", "tag-list-alpha", "tag-list-mu"],
    )
    .await;
    let sorted = json!(["tag-list-alpha", "tag-list-mu", "tag-list-zeta"]);
    assert_eq!(article["tagList"], sorted, "creation");
    let slug = article["slug"].as_str().expect("slug").to_owned();
    let kept = server
        .sql(&format!(
            "SELECT array_to_string(tag_list, ',') FROM articles WHERE slug = '{slug}'"
        ))
        .await
        .expect("reading tag_list");
    assert_eq!(kept.trim(), "tag-list-alpha,tag-list-mu,tag-list-zeta");

    let reads = |label: &'static str| {
        let slug = slug.clone();
        let sorted = sorted.clone();
        async move {
            let one = api.get(&format!("/articles/{slug}"), None).await;
            expect(&one, 200, label);
            assert_eq!(
                one.body["article"]["tagList"], sorted,
                "{label}: one article"
            );
            let list = api.get("/articles?tag=tag-list-mu", None).await;
            expect(&list, 200, label);
            assert_eq!(list.body["articles"][0]["tagList"], sorted, "{label}: list");
            let mine = api.get("/articles?author=tag-list-writer", None).await;
            assert_eq!(
                mine.body["articles"][0]["tagList"], sorted,
                "{label}: by author"
            );
        }
    };
    reads("kept on the row").await;
    server
        .sql(&format!(
            "UPDATE articles SET tag_list = NULL WHERE slug = '{slug}'"
        ))
        .await
        .expect("forgetting tag_list");
    reads("read from the links").await;
    let untagged = create_article(api, &token, "No tags at all", &[]).await;
    assert_eq!(untagged["tagList"], json!([]), "creation without tags");
    let untagged_slug = untagged["slug"].as_str().expect("slug");
    let one = api.get(&format!("/articles/{untagged_slug}"), None).await;
    assert_eq!(
        one.body["article"]["tagList"],
        json!([]),
        "no tags, read back"
    );
}

/// Twenty creations at once, all naming two tags that exist and three that
/// do not (in a different order each): every article gets all five tags,
/// each new tag is created once, the existing tag rows are not written
/// (their row version is unchanged), and a creation is one statement.
async fn check_concurrent_creations_share_tags(server: &Server) {
    let api = &server.api;
    let token = register(api, "tag-racer").await;
    create_article(api, &token, "Tag race seed", &["race-old-1", "race-old-2"]).await;
    let versions = "SELECT string_agg(name || ' ' || xmin || ' ' || ctid, ',' ORDER BY name) \
                    FROM tags WHERE name LIKE 'race-old-%'";
    let before = server.sql(versions).await.expect("tag row versions");
    let statements = server.statements().await.expect("metrics");

    let names = [
        "race-old-1",
        "race-new-1",
        "race-old-2",
        "race-new-2",
        "race-new-3",
    ];
    let creations = (0..20).map(|attempt| {
        let api = api.clone();
        let token = token.clone();
        let mut tags = names.to_vec();
        tags.rotate_left(attempt % names.len());
        if attempt % 2 == 1 {
            tags.reverse();
        }
        tokio::spawn(async move {
            api.post(
                "/articles",
                Some(&token),
                json!({"article": {"title": format!("Tag race {attempt}"), "description": "d", "body": "b", "tagList": tags}}),
            )
            .await
        })
    });
    let replies: Vec<Reply> = futures::future::join_all(creations)
        .await
        .into_iter()
        .map(|joined| joined.expect("request task"))
        .collect();
    let used = server.statements().await.expect("metrics") - statements;
    assert!(
        used <= 20.0,
        "twenty creations took {used} statements, more than one each"
    );
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    for reply in &replies {
        expect(reply, 201, "concurrent creation with shared tags");
        assert_eq!(
            reply.body["article"]["tagList"],
            json!(sorted),
            "tags in the reply"
        );
        let slug = reply.body["article"]["slug"].as_str().expect("slug");
        let stored = api.get(&format!("/articles/{slug}"), None).await;
        assert_eq!(
            stored.body["article"]["tagList"],
            json!(sorted),
            "tags stored"
        );
    }
    let after = server.sql(versions).await.expect("tag row versions");
    assert_eq!(before, after, "existing tags were written to");
    let counts = server
        .sql(
            "SELECT string_agg(name || '=' || n, ',' ORDER BY name) FROM \
              (SELECT t.name, count(*) AS n FROM tags t JOIN article_tags at ON at.tag_id = t.id \
               WHERE t.name LIKE 'race-%' GROUP BY t.name) used",
        )
        .await
        .expect("tag uses");
    assert_eq!(
        counts.trim(),
        "race-new-1=20,race-new-2=20,race-new-3=20,race-old-1=21,race-old-2=21",
        "one row per tag, linked to every article"
    );
    eprintln!(
        "twenty concurrent creations sharing five tags: {used} statements, tag rows untouched"
    );
}

/// A list's filters, as its query string sets them.
#[derive(Clone, Copy, Debug, Default)]
struct Filters<'a> {
    tag: Option<&'a str>,
    author: Option<&'a str>,
    favorited: Option<&'a str>,
}

impl Filters<'_> {
    fn query(&self) -> String {
        let pairs = [
            ("tag", self.tag),
            ("author", self.author),
            ("favorited", self.favorited),
        ];
        let query: String = pairs
            .iter()
            .filter_map(|(name, value)| value.map(|value| format!("&{name}={value}")))
            .collect();
        format!("/articles?limit=1{query}")
    }

    /// count(*) of the articles the filters match, straight from the rows
    /// (the names are the test's own, plain ASCII).
    fn count_sql(&self) -> String {
        let mut conditions = vec!["true".to_owned()];
        if let Some(tag) = self.tag {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM article_tags at JOIN tags t ON t.id = at.tag_id \
                 WHERE at.article_id = a.id AND t.name = '{tag}')"
            ));
        }
        if let Some(author) = self.author {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM users u WHERE u.id = a.author_id AND u.username = '{author}')"
            ));
        }
        if let Some(favorited) = self.favorited {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM favorites fv JOIN users u ON u.id = fv.user_id \
                 WHERE fv.article_id = a.id AND u.username = '{favorited}')"
            ));
        }
        format!(
            "(SELECT count(*) FROM articles a WHERE {})",
            conditions.join(" AND ")
        )
    }
}

/// Every list below, and the feed of `reader` (token, username), answers
/// the `articlesCount` that count(*) over the rows gives; `/tags` ranks the
/// tags by their links; and every count the writes keep (`article_counts`,
/// summed over its shards) equals the rows it stands for.
async fn expect_counts_exact(
    server: &Server,
    filters: &[Filters<'_>],
    reader: (&str, &str),
    after: &str,
) {
    let (reader_token, reader_name) = reader;
    let feed_rows = server
        .sql(&format!(
            "SELECT count(*) FROM articles a WHERE a.author_id IN \
               (SELECT f.followee_id FROM follows f JOIN users u ON u.id = f.follower_id \
                WHERE u.username = '{reader_name}')"
        ))
        .await
        .expect("counting the feed's rows");
    let reply = server
        .api
        .get("/articles/feed?limit=1", Some(reader_token))
        .await;
    expect(&reply, 200, "feed");
    assert_eq!(
        reply.body["articlesCount"].to_string(),
        feed_rows.trim(),
        "articlesCount of the feed after {after}"
    );
    let ranked = server
        .sql(
            "SELECT COALESCE(json_agg(name ORDER BY uses DESC, name), '[]') FROM \
               (SELECT t.name, count(*) AS uses FROM tags t \
                JOIN article_tags at ON at.tag_id = t.id GROUP BY t.name) used",
        )
        .await
        .expect("ranking tags");
    let ranked: Value = serde_json::from_str(ranked.trim()).expect("tags as JSON");
    let reply = server.api.get("/tags", None).await;
    expect(&reply, 200, "tags");
    assert_eq!(reply.body["tags"], ranked, "tags after {after}");

    let expected = server
        .sql(&format!(
            "SELECT concat_ws(',', {})",
            filters
                .iter()
                .map(Filters::count_sql)
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
        .expect("counting rows");
    let expected: Vec<i64> = expected
        .trim()
        .split(',')
        .map(|n| n.parse().expect("a count"))
        .collect();
    for (filter, rows) in filters.iter().zip(expected) {
        let reply = server.api.get(&filter.query(), None).await;
        expect(&reply, 200, &filter.query());
        assert_eq!(
            reply.body["articlesCount"],
            rows,
            "articlesCount of {} after {after}",
            filter.query()
        );
    }
    let mismatches = server
        .sql(
            "WITH kept AS (SELECT filter_kind::text AS kind, filter_id AS id, sum(articles) AS n \
                           FROM article_counts GROUP BY 1, 2), \
             counted AS (SELECT 'all' AS kind, 0::bigint AS id, count(*) AS n FROM articles \
                         UNION ALL SELECT 'author', author_id, count(*) FROM articles GROUP BY 2 \
                         UNION ALL SELECT 'tag', tag_id, count(*) FROM article_tags GROUP BY 2 \
                         UNION ALL SELECT 'favorited', user_id, count(*) FROM favorites GROUP BY 2) \
             SELECT COALESCE(string_agg(format('%s %s: kept %s, rows %s', kind, id, \
                                               COALESCE(kept.n, 0), COALESCE(counted.n, 0)), '; '), '') \
             FROM kept FULL JOIN counted USING (kind, id) \
             WHERE COALESCE(kept.n, 0) <> COALESCE(counted.n, 0)",
        )
        .await
        .expect("comparing kept counts");
    assert_eq!(mismatches.trim(), "", "kept counts after {after}");
}

/// `articlesCount` of lists with no filter or one filter and of the feed,
/// and the ranking of `/tags`, come from counts the writes keep
/// (migrations/0009); this proves them exact through
/// creations (also concurrent ones sharing tags), deletions with their
/// cascades, favorites, and the changes only SQL can make.
async fn check_articles_count_is_exact_for_every_filter(server: &Server) {
    let api = &server.api;
    let writer = register(api, "counts-writer").await;
    let other = register(api, "counts-other").await;
    let fan = register(api, "counts-fan").await;
    for followee in ["counts-writer", "counts-other"] {
        let reply = api
            .post_empty(&format!("/profiles/{followee}/follow"), Some(&fan))
            .await;
        expect(&reply, 200, "follow");
    }
    let reader = (fan.as_str(), "counts-fan");
    let tags = ["counts-red", "counts-blue", "counts-new-1", "counts-new-2"];
    let users = ["counts-writer", "counts-other", "counts-fan"];
    let mut filters = vec![Filters::default()];
    for tag in tags.iter().chain(&["counts-no-such-tag"]) {
        filters.push(Filters {
            tag: Some(tag),
            ..Filters::default()
        });
    }
    for user in users.iter().chain(&["counts-no-such-user"]) {
        filters.push(Filters {
            author: Some(user),
            ..Filters::default()
        });
        filters.push(Filters {
            favorited: Some(user),
            ..Filters::default()
        });
    }
    filters.push(Filters {
        tag: Some("counts-red"),
        author: Some("counts-writer"),
        favorited: None,
    });
    filters.push(Filters {
        tag: Some("counts-blue"),
        author: None,
        favorited: Some("counts-fan"),
    });
    expect_counts_exact(server, &filters, reader, "registrations").await;

    let mut slugs = Vec::new();
    for (index, article_tags) in [
        &["counts-red", "counts-blue"][..],
        &["counts-red"],
        &[],
        &["counts-blue"],
    ]
    .iter()
    .enumerate()
    {
        let token = if index % 2 == 0 { &writer } else { &other };
        let article = create_article(api, token, &format!("Counted {index}"), article_tags).await;
        slugs.push(article["slug"].as_str().expect("slug").to_owned());
    }
    expect_counts_exact(server, &filters, reader, "creations").await;

    // A list is still one statement.
    let statements = server.statements().await.expect("metrics");
    let reply = api.get("/articles?tag=counts-red", None).await;
    expect(&reply, 200, "list by tag");
    let used = server.statements().await.expect("metrics") - statements;
    assert_eq!(used, 1.0, "a list took {used} statements");

    for slug in &slugs[..3] {
        let reply = api
            .post_empty(&format!("/articles/{slug}/favorite"), Some(&fan))
            .await;
        expect(&reply, 200, "favorite");
    }
    // Favoriting twice changes nothing.
    api.post_empty(&format!("/articles/{}/favorite", slugs[0]), Some(&fan))
        .await;
    api.post_empty(&format!("/articles/{}/favorite", slugs[1]), Some(&writer))
        .await;
    let reply = api
        .delete(&format!("/articles/{}/favorite", slugs[2]), Some(&fan))
        .await;
    expect(&reply, 200, "unfavorite");
    // Unfavoriting what is not a favorite changes nothing either.
    api.delete(&format!("/articles/{}/favorite", slugs[3]), Some(&fan))
        .await;
    expect_counts_exact(server, &filters, reader, "favorites").await;

    // Concurrent creations sharing tags (two of them new), favorites and a
    // deletion, all at once.
    let versions = "SELECT string_agg(name || ' ' || xmin || ' ' || ctid, ',' ORDER BY name) \
                    FROM tags WHERE name LIKE 'counts-%'";
    let tag_rows_before = server.sql(versions).await.expect("tag row versions");
    let mut writes = Vec::new();
    for attempt in 0..16 {
        let api = api.clone();
        let token = if attempt % 2 == 0 { &writer } else { &other }.clone();
        let mut names = tags.to_vec();
        names.rotate_left(attempt % tags.len());
        names.truncate(2 + attempt % 3);
        writes.push(tokio::spawn(async move {
            let reply = api
                .post(
                    "/articles",
                    Some(&token),
                    json!({"article": {"title": format!("Counted race {attempt}"), "description": "d", "body": "b", "tagList": names}}),
                )
                .await;
            (reply, 201)
        }));
    }
    for slug in &slugs[..2] {
        let (api, fan, slug) = (api.clone(), fan.clone(), slug.clone());
        writes.push(tokio::spawn(async move {
            let reply = api
                .delete(&format!("/articles/{slug}/favorite"), Some(&fan))
                .await;
            (reply, 200)
        }));
    }
    {
        let (api, other, slug) = (api.clone(), other.clone(), slugs[3].clone());
        writes.push(tokio::spawn(async move {
            (
                api.delete(&format!("/articles/{slug}"), Some(&other)).await,
                204,
            )
        }));
    }
    for joined in futures::future::join_all(writes).await {
        let (reply, status) = joined.expect("request task");
        expect(&reply, status, "concurrent write");
    }
    expect_counts_exact(server, &filters, reader, "concurrent writes").await;
    let tag_rows_after = server.sql(versions).await.expect("tag row versions");
    let tag_rows_before: Vec<&str> = tag_rows_before.trim().split(',').collect();
    for row in &tag_rows_before {
        assert!(
            tag_rows_after.trim().split(',').any(|after| after == *row),
            "tag row {row} was written to: {tag_rows_after}"
        );
    }

    // Deleting an article takes its tags and favorites with it.
    let reply = api
        .post_empty(&format!("/articles/{}/favorite", slugs[0]), Some(&fan))
        .await;
    expect(&reply, 200, "favorite again");
    let reply = api
        .delete(&format!("/articles/{}", slugs[0]), Some(&writer))
        .await;
    expect(&reply, 204, "delete a tagged, favorited article");
    // An update that changes no filter's key.
    let reply = api
        .put(
            &format!("/articles/{}", slugs[1]),
            Some(&other),
            json!({"article": {"title": "Counted, retitled"}}),
        )
        .await;
    expect(&reply, 200, "retitle");
    expect_counts_exact(server, &filters, reader, "deletion and update").await;

    // What only SQL does: move rows between keys, delete a tag and a user
    // (cascading to their links, articles and favorites).
    for (statement, what) in [
        (
            "UPDATE articles SET author_id = (SELECT id FROM users WHERE username = 'counts-fan') \
             WHERE id IN (SELECT a.id FROM articles a JOIN users u ON u.id = a.author_id \
                          WHERE u.username = 'counts-writer' ORDER BY a.id LIMIT 3)",
            "an author change",
        ),
        (
            "UPDATE article_tags SET tag_id = (SELECT id FROM tags WHERE name = 'counts-new-2') \
             WHERE tag_id = (SELECT id FROM tags WHERE name = 'counts-new-1') \
               AND article_id NOT IN (SELECT at.article_id FROM article_tags at \
                                      JOIN tags t ON t.id = at.tag_id WHERE t.name = 'counts-new-2')",
            "a tag change",
        ),
        (
            "UPDATE favorites SET user_id = (SELECT id FROM users WHERE username = 'counts-other') \
             WHERE user_id = (SELECT id FROM users WHERE username = 'counts-writer')",
            "a favoriting user change",
        ),
        (
            "DELETE FROM tags WHERE name = 'counts-blue'",
            "a tag deletion",
        ),
        (
            "DELETE FROM users WHERE username = 'counts-writer'",
            "a user deletion",
        ),
    ] {
        server.sql(statement).await.expect(what);
        expect_counts_exact(server, &filters, reader, what).await;
    }

    // TRUNCATE empties the counts of what it empties. The transaction is
    // left open, so it is rolled back when psql disconnects.
    let after_truncate = server
        .sql(
            "BEGIN; TRUNCATE articles CASCADE; \
             SELECT count(*) FROM article_counts WHERE articles <> 0",
        )
        .await
        .expect("truncate");
    assert_eq!(after_truncate.trim(), "0", "counts left after TRUNCATE");
    expect_counts_exact(server, &filters, reader, "a rolled back TRUNCATE").await;
}

async fn check_strings_are_stored_exactly(api: &Api) {
    let username = "Zoë O'Brien \"quotes\" 🦀";
    let reply = api
        .post(
            "/users",
            None,
            json!({"user": {"username": username, "email": "zoe@example.com", "password": "p"}}),
        )
        .await;
    expect(&reply, 201, "register with unicode and quotes");
    assert_eq!(reply.body["user"]["username"], username);
    let token = reply.body["user"]["token"].as_str().unwrap().to_owned();

    let title = "  Robert'); DROP TABLE articles;-- \\ 日本語  ";
    let body = "line one\nline two\ttabbed <b>html</b> %s $1 \u{00e9}";
    let reply = api
        .post(
            "/articles",
            Some(&token),
            json!({"article": {"title": title, "description": " ", "body": body}}),
        )
        .await;
    expect_error(
        &reply,
        422,
        "description",
        "can't be blank",
        "whitespace-only description",
    );
    let reply = api
        .post("/articles", Some(&token), json!({"article": {"title": title, "description": " padded ", "body": body, "tagList": ["Ünïcode tag"]}}))
        .await;
    expect(&reply, 201, "article with tricky strings");
    let slug = reply.body["article"]["slug"].as_str().unwrap().to_owned();
    let reply = api.get(&format!("/articles/{slug}"), None).await;
    assert_eq!(reply.body["article"]["title"], title);
    assert_eq!(reply.body["article"]["description"], " padded ");
    assert_eq!(reply.body["article"]["body"], body);
    assert_eq!(reply.body["article"]["tagList"], json!(["Ünïcode tag"]));
    assert_eq!(reply.body["article"]["author"]["username"], username);

    // The profile URL carries the username percent-encoded.
    let encoded: String = url::form_urlencoded::byte_serialize(username.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let reply = api.get(&format!("/profiles/{encoded}"), None).await;
    expect(&reply, 200, "profile by a percent-encoded username");
    assert_eq!(reply.body["profile"]["username"], username);
    let reply = api.get("/articles?tag=%C3%9Cn%C3%AFcode+tag", None).await;
    assert_eq!(reply.body["articlesCount"], 1, "query values are decoded");
}

async fn check_openapi_document_and_unknown_routes(api: &Api) {
    let reply = api.get("/openapi.json", None).await;
    expect(&reply, 200, "openapi.json");
    let doc = &reply.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, 19, "every operation of the spec");
    assert_eq!(
        doc["components"]["securitySchemes"]["Token"]["in"],
        "header"
    );

    let reply = api.get("/no-such-endpoint", None).await;
    expect_error(&reply, 404, "path", "not found", "unknown route");
    let reply = api.call(Method::PATCH, "/user", None, None).await;
    expect_error(
        &reply,
        405,
        "method",
        "is not allowed on this path",
        "wrong method",
    );
}
