//! Key-value stores and SQLite databases, as a component sees them through
//! spin-sdk 5.2 (the `test-app` fixture): the semantics of each operation,
//! the permission checks, and stores shared by two replicas on Redis and on
//! PostgreSQL, against the real servers.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::redis_server::RedisServer;
use support::{
    HostConfig, ScratchDb, call, fixture_manifest, start, start_expecting_failure, text,
};

/// A host of the fixture app on `db`, with extra arguments.
async fn app(db: &ScratchDb, args: &[&str], replacements: &[(&str, &str)]) -> support::Host {
    let (host, port) = db.host_port();
    let mut config = HostConfig::new(fixture_manifest(replacements))
        .env("SPIN_VARIABLE_DB_URL", &db.url("disable"))
        .env("SPIN_VARIABLE_DB_HOST", &host)
        .env("SPIN_VARIABLE_DB_PORT", &port.to_string());
    for arg in args {
        config = config.arg(arg);
    }
    start(config).await.expect("host starts")
}

fn runtime_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, text).expect("runtime config written");
    path
}

/// Every key-value operation on one store through `base`: absent keys,
/// set, overwrite, binary values, exists, keys, delete (twice).
async fn key_value_semantics(base: &str, store: &str) {
    let kv = |key: &str| format!("{base}/kv/{store}/{key}");
    assert_eq!(text("GET", kv(""), "").await, (200, "[]".into()));
    assert_eq!(text("GET", kv("bar"), "").await.0, 404);
    assert_eq!(
        text("GET", kv("bar?exists"), "").await,
        (200, "false".into())
    );
    assert_eq!(
        text("DELETE", kv("bar"), "").await.0,
        204,
        "deleting an absent key"
    );

    assert_eq!(text("PUT", kv("bar"), "baz").await.0, 204);
    assert_eq!(text("GET", kv("bar"), "").await, (200, "baz".into()));
    assert_eq!(
        text("GET", kv("bar?exists"), "").await,
        (200, "true".into())
    );
    assert_eq!(text("PUT", kv("bar"), "wow").await.0, 204);
    assert_eq!(text("GET", kv("bar"), "").await, (200, "wow".into()));

    let binary: Vec<u8> = (0..=255).collect();
    assert_eq!(call("PUT", kv("bin"), binary.clone()).await.0, 204);
    assert_eq!(call("GET", kv("bin"), Vec::new()).await, (200, binary));
    assert_eq!(call("PUT", kv("empty"), Vec::new()).await.0, 204);
    assert_eq!(
        call("GET", kv("empty"), Vec::new()).await,
        (200, Vec::new())
    );
    assert_eq!(
        text("GET", kv(""), "").await,
        (200, r#"["bar","bin","empty"]"#.into())
    );

    for key in ["bar", "bar", "bin", "empty"] {
        assert_eq!(text("DELETE", kv(key), "").await.0, 204);
    }
    assert_eq!(text("GET", kv("bar"), "").await.0, 404);
    assert_eq!(text("GET", kv(""), "").await, (200, "[]".into()));
}

#[tokio::test]
async fn the_default_store_is_a_sqlite_file_that_outlives_the_process() {
    let db = ScratchDb::create().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();
    let mut host = app(&db, &["--state-dir", &state_dir], &[]).await;
    key_value_semantics(&host.base, "default").await;

    assert_eq!(
        text(
            "PUT",
            format!("{}/kv/default/kept", host.base),
            "across restarts"
        )
        .await
        .0,
        204
    );
    host.signal(nix::sys::signal::Signal::SIGTERM);
    host.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(state.path().join("sqlite_key_value.db").is_file());

    let host = app(&db, &["--state-dir", &state_dir], &[]).await;
    assert_eq!(
        text("GET", format!("{}/kv/default/kept", host.base), "").await,
        (200, "across restarts".into())
    );
}

#[tokio::test]
async fn stores_the_manifest_does_not_list_are_access_denied() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, &[], &[]).await;
    let (status, body) = text("GET", format!("{}/kv/forbidden/x", host.base), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let (status, body) = text("PUT", format!("{}/kv/other/x", host.base), "v").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let (status, body) = text(
        "POST",
        format!("{}/sqlite/forbidden", host.base),
        r#"{"sql": "SELECT 1"}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
}

#[tokio::test]
async fn labels_the_runtime_configuration_does_not_define_stop_the_start() {
    let db = ScratchDb::create().await.unwrap();
    let output = start_expecting_failure(
        HostConfig::new(fixture_manifest(&[(
            r#"key_value_stores = ["default"]"#,
            r#"key_value_stores = ["default", "cache"]"#,
        )]))
        .env("SPIN_VARIABLE_DB_URL", &db.url("disable")),
    )
    .unwrap();
    assert!(
        output.contains("key_value_stores") && output.contains("\"cache\""),
        "{output}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(dir.path(), "[key_value_store.default]\ntype = \"dynamo\"\n");
    let output = start_expecting_failure(
        HostConfig::new(fixture_manifest(&[]))
            .env("SPIN_VARIABLE_DB_URL", &db.url("disable"))
            .arg("--runtime-config-file")
            .arg(&config.display().to_string()),
    )
    .unwrap();
    assert!(
        output.contains("runtime config") && output.contains("dynamo"),
        "{output}"
    );
}

#[tokio::test]
async fn a_postgres_store_is_shared_by_two_replicas() {
    let db = ScratchDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(
        dir.path(),
        &format!(
            "[key_value_store.default]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"app_kv\"\n",
            db.url("disable")
        ),
    );
    let config = config.display().to_string();
    let one = app(&db, &["--runtime-config-file", &config], &[]).await;
    let two = app(&db, &["--runtime-config-file", &config], &[]).await;
    key_value_semantics(&one.base, "default").await;
    shared_between(&one.base, &two.base).await;

    // The rows are in the named table, readable by any PostgreSQL client.
    let client = db.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT value FROM app_kv WHERE store = 'default' AND key = 'shared'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), b"from two".to_vec());
}

/// A value set through one replica is read, replaced and deleted through
/// the other.
async fn shared_between(one: &str, two: &str) {
    let at = |base: &str| format!("{base}/kv/default/shared");
    assert_eq!(text("PUT", at(one), "from one").await.0, 204);
    assert_eq!(text("GET", at(two), "").await, (200, "from one".into()));
    assert_eq!(text("PUT", at(two), "from two").await.0, 204);
    assert_eq!(text("GET", at(one), "").await, (200, "from two".into()));
    assert_eq!(
        text("GET", format!("{one}/kv/default/"), "").await,
        (200, r#"["shared"]"#.into())
    );
}

#[tokio::test]
async fn a_redis_store_is_shared_by_two_replicas() {
    let redis = RedisServer::start();
    let db = ScratchDb::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = runtime_config(
        dir.path(),
        &format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}/0\"\n",
            redis.address()
        ),
    );
    let config = config.display().to_string();
    let one = app(&db, &["--runtime-config-file", &config], &[]).await;
    let two = app(&db, &["--runtime-config-file", &config], &[]).await;
    key_value_semantics(&one.base, "default").await;
    shared_between(&one.base, &two.base).await;
}

async fn sql(base: &str, route: &str, statement: &str, params: Value) -> (u16, Value) {
    let body = json!({ "sql": statement, "params": params }).to_string();
    let (status, text) = text("POST", format!("{base}/{route}/default"), &body).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[tokio::test]
async fn sqlite_runs_statements_with_typed_values_on_both_interfaces() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, &[], &[]).await;
    let base = host.base.as_str();

    let (status, created) = sql(
        base,
        "sqlite",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT, b BLOB)",
        json!([]),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let (status, inserted) = sql(
        base,
        "sqlite",
        "INSERT INTO t (n, r, s, b) VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
        json!([42, 2.5, "forty-two", {"blob": [0, 1, 255]}, null, null, null, null]),
    )
    .await;
    assert_eq!(status, 200, "{inserted}");
    assert_eq!(inserted["columns"], json!([]));
    assert_eq!(inserted["changes"], json!(2));
    assert_eq!(inserted["last_insert_rowid"], json!(2));

    for route in ["sqlite", "sqlite2"] {
        let (status, rows) = sql(
            base,
            route,
            "SELECT id, n, r, s, b FROM t WHERE id >= ? ORDER BY id",
            json!([1]),
        )
        .await;
        assert_eq!(status, 200, "{rows}");
        assert_eq!(rows["columns"], json!(["id", "n", "r", "s", "b"]));
        assert_eq!(
            rows["rows"],
            json!([
                [1, 42, 2.5, "forty-two", {"blob": [0, 1, 255]}],
                [2, null, null, null, null]
            ]),
            "{route}"
        );
    }

    // Errors are the interface's `io` error with SQLite's message, and the
    // database stays usable.
    let (status, error) = sql(base, "sqlite", "SELEKT 1", json!([])).await;
    assert_eq!(status, 422);
    assert!(
        error.as_str().unwrap_or("").contains("syntax error"),
        "{error}"
    );
    let (status, error) = sql(base, "sqlite", "INSERT INTO t (id) VALUES (1)", json!([])).await;
    assert_eq!(status, 422);
    assert!(error.as_str().unwrap_or("").contains("UNIQUE"), "{error}");
    let (status, error) = sql(base, "sqlite2", "SELECT * FROM missing", json!([])).await;
    assert_eq!(status, 422);
    assert!(
        error.as_str().unwrap_or("").contains("no such table"),
        "{error}"
    );

    // A statement that fails halfway leaves nothing behind.
    let (status, _) = sql(
        base,
        "sqlite",
        "INSERT INTO t (id, n) SELECT 10, 1 UNION ALL SELECT 1, 2",
        json!([]),
    )
    .await;
    assert_eq!(status, 422, "the second row collides with id 1");
    let (_, count) = sql(base, "sqlite", "SELECT count(*) AS c FROM t", json!([])).await;
    assert_eq!(count["rows"], json!([[2]]), "the statement was atomic");
}

/// Runs `steps` (`[connection, sql]`) on `connections` connections of one
/// request; each step's `{"rows": ..}` or `{"error": ..}`.
async fn session(base: &str, connections: usize, steps: Value) -> Vec<Value> {
    let body = json!({ "connections": connections, "steps": steps }).to_string();
    let (status, text) = text("POST", format!("{base}/sqlite-session/default"), &body).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("outcomes")
}

#[tokio::test]
async fn sqlite_transactions_belong_to_the_connection_that_began_them() {
    let db = ScratchDb::create().await.unwrap();
    let host = app(&db, &[], &[]).await;
    let base = host.base.as_str();
    let rows = |outcome: &Value| outcome["rows"].clone();
    let created = session(
        base,
        1,
        json!([[
            0,
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)"
        ]]),
    )
    .await;
    assert_eq!(rows(&created[0]), json!([]), "{created:?}");

    // A rollback undoes what the transaction wrote, and only that.
    let out = session(
        base,
        1,
        json!([
            [0, "BEGIN"],
            [0, "INSERT INTO accounts VALUES (1, 100)"],
            [0, "SELECT count(*) FROM accounts"],
            [0, "ROLLBACK"],
            [0, "SELECT count(*) FROM accounts"],
        ]),
    )
    .await;
    assert_eq!(rows(&out[2]), json!([[1]]), "{out:?}");
    assert_eq!(rows(&out[4]), json!([[0]]), "{out:?}");

    // Another connection does not see uncommitted writes, then sees them
    // once committed.
    let out = session(
        base,
        2,
        json!([
            [0, "BEGIN IMMEDIATE"],
            [0, "INSERT INTO accounts VALUES (1, 100)"],
            [1, "SELECT count(*) FROM accounts"],
            [0, "COMMIT"],
            [1, "SELECT count(*) FROM accounts"],
        ]),
    )
    .await;
    assert_eq!(rows(&out[2]), json!([[0]]), "isolated: {out:?}");
    assert_eq!(rows(&out[4]), json!([[1]]), "committed: {out:?}");

    // A failed statement inside a transaction leaves the transaction open
    // with what came before it.
    let out = session(
        base,
        1,
        json!([
            [0, "BEGIN"],
            [0, "UPDATE accounts SET balance = balance - 30 WHERE id = 1"],
            [0, "INSERT INTO accounts VALUES (1, 0)"],
            [0, "COMMIT"],
        ]),
    )
    .await;
    assert!(
        out[2]["error"].as_str().unwrap_or("").contains("UNIQUE"),
        "{out:?}"
    );
    assert_eq!(out[3], json!({ "rows": [] }), "{out:?}");

    // A transaction a request leaves open is rolled back when its
    // connection goes, and no later connection inherits it: every later
    // request can begin its own.
    let out = session(
        base,
        1,
        json!([[0, "BEGIN"], [0, "INSERT INTO accounts VALUES (2, 50)"]]),
    )
    .await;
    assert_eq!(rows(&out[1]), json!([]), "{out:?}");
    for _ in 0..20 {
        let out = session(
            base,
            2,
            json!([
                [0, "BEGIN"],
                [0, "SELECT id, balance FROM accounts ORDER BY id"],
                [0, "COMMIT"],
                [1, "SELECT count(*) FROM accounts"],
            ]),
        )
        .await;
        assert_eq!(out[0], json!({ "rows": [] }), "{out:?}");
        assert_eq!(rows(&out[1]), json!([[1, 70]]), "{out:?}");
        assert_eq!(rows(&out[3]), json!([[1]]), "{out:?}");
    }
}
