//! `wasmhost migrate` against a database that serves while it runs: two
//! migrators started together, a migration queued behind a long
//! transaction, and the rule that a migration never holds an ACCESS
//! EXCLUSIVE lock on a table holding rows while it reads or rewrites that
//! table (which would block every query on it for as long as the table is
//! large).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::{ScratchDb, workspace_root};

/// The migration lock's key, as `wasmhost migrate` takes it.
const LOCK_KEY: i64 = 0x7761_736d_686f_7374;

fn product_migrations() -> PathBuf {
    workspace_root().join("migrations")
}

/// The product's migrations plus `extra` (`(file name, SQL)`), in a new
/// directory.
fn migrations_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for entry in std::fs::read_dir(product_migrations()).expect("migrations") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sql") {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    for (name, sql) in extra {
        std::fs::write(dir.path().join(name), sql).expect("extra migration");
    }
    dir
}

fn migrate_command(db: &ScratchDb, dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmhost"));
    command
        .arg("migrate")
        .arg("--database-url")
        .arg(db.url("disable"))
        .arg("--migrations-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

async fn migrate(db: &ScratchDb, dir: &Path, args: &[&str]) -> Output {
    migrate_command(db, dir, args)
        .output()
        .await
        .expect("wasmhost migrate runs")
}

fn logs(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn applied_versions(client: &tokio_postgres::Client) -> Vec<i64> {
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("schema_migrations")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn two_migrators_started_together_apply_each_migration_once() {
    let db = ScratchDb::create().await.unwrap();
    let client = db.client().await.unwrap();
    let dir = product_migrations();
    let count = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();

    // Both start while the lock is held, so both are waiting for it when it
    // is released: one applies everything, the other finds nothing to do.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let first = migrate_command(&db, &dir, &[]).output();
    let second = migrate_command(&db, &dir, &[]).output();
    let waiting = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "both migrators wait for the lock"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
            .unwrap();
    };
    let (first, second, ()) = tokio::join!(first, second, waiting);
    let (first, second) = (first.unwrap(), second.unwrap());
    assert!(first.status.success(), "{}", logs(&first));
    assert!(second.status.success(), "{}", logs(&second));

    let applied = applied_versions(&client).await;
    assert_eq!(applied.len(), count, "each migration once: {applied:?}");
    let mut counts = [&first, &second].map(|o| {
        let text = logs(o);
        let applied_lines = text.matches("applied migration").count();
        assert!(text.contains("migrations up to date"), "{text}");
        applied_lines
    });
    counts.sort();
    assert_eq!(counts, [0, count], "one applied all, the other none");
}

#[tokio::test]
async fn a_migration_behind_a_long_transaction_gives_way_to_queries_then_applies() {
    let db = ScratchDb::create().await.unwrap();
    let output = migrate(&db, &product_migrations(), &[]).await;
    assert!(output.status.success(), "{}", logs(&output));
    let dir = migrations_with(&[(
        "0100_add_reviewed_at.sql",
        "ALTER TABLE articles ADD COLUMN reviewed_at timestamptz;",
    )]);

    // A reader in a long transaction holds ACCESS SHARE on articles; the
    // migration's ACCESS EXCLUSIVE must wait for it. Without a lock
    // timeout every later query on articles would queue behind the
    // migration until the long transaction ends.
    let mut blocker = db.client().await.unwrap();
    let long = blocker.transaction().await.unwrap();
    long.query("SELECT count(*) FROM articles", &[])
        .await
        .unwrap();

    let reader = db.client().await.unwrap();
    let failing = migrate(
        &db,
        dir.path(),
        &["--lock-timeout-ms", "300", "--attempts", "3"],
    );
    let reads = async {
        let mut slowest = Duration::ZERO;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            let began = Instant::now();
            reader
                .query("SELECT count(*) FROM articles", &[])
                .await
                .unwrap();
            slowest = slowest.max(began.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        slowest
    };
    let (failed, slowest) = tokio::join!(failing, reads);
    let text = logs(&failed);
    assert!(!failed.status.success(), "{text}");
    assert!(
        text.contains("0100_add_reviewed_at.sql") && text.contains("were not free within"),
        "the error names the migration and the lock: {text}"
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "queries on the table waited at most about the lock timeout, slowest {slowest:?}"
    );
    let applied = applied_versions(&reader).await;
    assert!(!applied.contains(&100), "{applied:?}");

    // Tried again while the long transaction ends: it applies.
    let succeeding = migrate(&db, dir.path(), &["--lock-timeout-ms", "300"]);
    let release = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        long.commit().await.unwrap();
    };
    let (applied_run, ()) = tokio::join!(succeeding, release);
    let text = logs(&applied_run);
    assert!(applied_run.status.success(), "{text}");
    assert!(
        text.contains("trying again"),
        "it waited and retried: {text}"
    );
    assert!(applied_versions(&reader).await.contains(&100));
    reader
        .query("SELECT reviewed_at FROM articles LIMIT 1", &[])
        .await
        .expect("the column exists");
}

#[tokio::test]
async fn a_no_transaction_migration_builds_an_index_concurrently() {
    let db = ScratchDb::create().await.unwrap();
    let dir = migrations_with(&[(
        "0100_index_article_titles.sql",
        "-- wasmhost:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS articles_title_idx ON articles (title);\n",
    )]);
    let output = migrate(&db, dir.path(), &[]).await;
    assert!(output.status.success(), "{}", logs(&output));
    let client = db.client().await.unwrap();
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'articles_title_idx'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    assert!(applied_versions(&client).await.contains(&100));
}

/// Seeds a migrated database with rows in the tables the API writes.
async fn seed(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "INSERT INTO users (username, email, password_hash)
                 SELECT 'user' || i, 'user' || i || '@example.com', 'x' FROM generate_series(1, 50) i;
             INSERT INTO articles (slug, author_id, title, description, body)
                 SELECT 'article-' || i, 1 + i % 50, 'Article ' || i, 'd', 'b' FROM generate_series(1, 500) i;
             ANALYZE;",
        )
        .await
        .expect("seed");
}

/// The tables holding rows that `sql`, run in a transaction (committed when
/// `keep`, else rolled back),
/// holds an ACCESS EXCLUSIVE lock on while reading or rewriting them: the
/// time such a lock is held grows with the table, and every query on the
/// table waits for all of it.
async fn exclusive_while_working(
    client: &mut tokio_postgres::Client,
    sql: &str,
    keep: bool,
) -> Vec<String> {
    let before: Vec<(String, u32)> = client
        .query(
            "SELECT c.relname::text, pg_relation_filenode(c.oid)::oid
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reltuples > 0",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    // The session's table counters include work not yet reported, so the
    // migration's own work is the difference across it.
    const WORK: &str = "SELECT coalesce((SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)
                                            + n_tup_ins + n_tup_upd + n_tup_del
                                       FROM pg_stat_xact_user_tables WHERE relname = $1), 0)";
    let tx = client.transaction().await.unwrap();
    let mut work_before = Vec::new();
    for (table, _) in &before {
        work_before.push(tx.query_one(WORK, &[table]).await.unwrap().get::<_, i64>(0));
    }
    tx.batch_execute(sql).await.expect("the migration runs");
    let mut offending = Vec::new();
    for ((table, filenode), work_before) in before.iter().zip(work_before) {
        let row = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                 WHERE pid = pg_backend_pid() AND granted
                                   AND mode = 'AccessExclusiveLock'
                                   AND relation = $1::text::regclass),
                        pg_relation_filenode($1::text::regclass)::oid",
                &[table],
            )
            .await
            .unwrap();
        let exclusive: bool = row.get(0);
        let rewritten = row.get::<_, u32>(1) != *filenode;
        let work = tx.query_one(WORK, &[table]).await.unwrap().get::<_, i64>(0) - work_before;
        if exclusive && (rewritten || work > 0) {
            offending.push(table.clone());
        }
    }
    if keep {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    offending
}

#[tokio::test]
async fn no_migration_holds_an_exclusive_lock_on_a_table_while_working_through_it() {
    let db = ScratchDb::create().await.unwrap();
    let output = migrate(&db, &product_migrations(), &[]).await;
    assert!(output.status.success(), "{}", logs(&output));
    let mut client = db.client().await.unwrap();
    seed(&client).await;

    // The check itself: what it must refuse, and what it must let through.
    let refused = [
        "ALTER TABLE articles ADD COLUMN stamped timestamptz NOT NULL DEFAULT clock_timestamp()",
        "ALTER TABLE articles ADD COLUMN revision integer; UPDATE articles SET revision = 1",
        "ALTER TABLE articles ADD CONSTRAINT title_set CHECK (title <> '')",
        "ALTER TABLE users ALTER COLUMN bio TYPE varchar(500)",
        // Validating in the transaction that added the constraint keeps the
        // lock of the ADD through the scan: two migrations are needed.
        "ALTER TABLE articles ADD CONSTRAINT title_set CHECK (title <> '') NOT VALID;
         ALTER TABLE articles VALIDATE CONSTRAINT title_set",
    ];
    for sql in refused {
        assert_eq!(
            exclusive_while_working(&mut client, sql, false).await.len(),
            1,
            "{sql}"
        );
    }
    let allowed = [
        "ALTER TABLE articles ADD COLUMN revision integer",
        "ALTER TABLE articles ADD COLUMN revision integer NOT NULL DEFAULT 1",
        "ALTER TABLE articles ADD CONSTRAINT title_set CHECK (title <> '') NOT VALID",
        "UPDATE articles SET body = body || '.' WHERE id <= 100",
    ];
    for sql in allowed {
        let offending = exclusive_while_working(&mut client, sql, false).await;
        assert!(offending.is_empty(), "{sql}: {offending:?}");
    }

    // Every migration written for a database that already serves, applied
    // in order.
    for dir in pending_migration_dirs() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        for path in files {
            let sql = std::fs::read_to_string(&path).unwrap();
            if sql.starts_with("-- wasmhost:no-transaction") {
                client.batch_execute(&sql).await.unwrap();
                continue;
            }
            let offending = exclusive_while_working(&mut client, &sql, true).await;
            assert!(offending.is_empty(), "{}: {offending:?}", path.display());
        }
    }
}

/// Directories of migrations written for a database that already holds
/// data (releases after the first), checked by the rule above.
fn pending_migration_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    [
        "devstack/tests/release/expand",
        "devstack/tests/release/contract",
    ]
    .iter()
    .map(|dir| root.join(dir))
    .filter(|dir| dir.is_dir())
    .collect()
}
