//! A release with a schema change, rolled out under load on the local stack
//! (three replicas behind the real nginx, HTTPS verified against the stack's
//! CA, a private PostgreSQL cluster), in the order that needs no downtime
//! (the procedure and its checks: `support/release.rs`):
//!
//! 1. expand: `wasmhost migrate` with `release/expand/` adds
//!    `articles.revision`, nullable, while version N (the product's
//!    component) serves and keeps serving;
//! 2. roll: each replica in turn is taken out of nginx's rotation, drained,
//!    stopped and started again with version N+1 (the component built with
//!    its `release-fixture` feature, `release/spin.toml`), and put back only
//!    once ready; N+1 writes and reads the new column, N ignores it;
//! 3. contract: `wasmhost migrate` with `release/contract/` backfills the
//!    rows N wrote, in batches, and makes the column NOT NULL through a
//!    CHECK added NOT VALID and validated apart.
//!
//! Four writers (an article, then a comment on it) and four readers (the
//! list, the newest article, its comments) run through the whole procedure.
//! The test proves that no request failed, that every acknowledged write is
//! there at the end, that N answered on the expanded schema, that only N+1
//! answers once the rollout is done (every replica asked directly, too), and
//! that the schema ends contracted with every row backfilled.
//!
//! Needs what the fault tests need (`target/release/wasmhost`, the
//! components, nginx, the PostgreSQL server binaries) and N+1's component:
//! `cargo build --release --target wasm32-wasip2 -p conduit --features
//! release-fixture --target-dir target/release-fixture` (scripts/test
//! builds it).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use devstack::{Database, Stack, StackConfig, project_root};
use support::release::{Deployment, Version, release_under_load, version_of};

const REPLICAS: usize = 3;
/// How long a replica is out of nginx's rotation before it is stopped.
const DRAIN: Duration = Duration::from_secs(2);

fn release_dir() -> PathBuf {
    project_root().join("devstack/tests/release")
}

fn check_prerequisites(config: &StackConfig, next_manifest: &Path) -> Result<()> {
    support::check_stack_built(config)?;
    let next = next_manifest
        .parent()
        .context("manifest path")?
        .join("../../../target/release-fixture/wasm32-wasip2/release/conduit.wasm");
    ensure!(
        next.is_file(),
        "{} is missing: cargo build --release --target wasm32-wasip2 -p conduit \
         --features release-fixture --target-dir target/release-fixture",
        next.display()
    );
    Ok(())
}

#[tokio::test]
async fn release_with_expand_roll_contract_under_load_fails_no_request_and_loses_no_write()
-> Result<()> {
    devstack::kill_children_on_signal();
    let dir = tempfile::tempdir()?;
    let mut config = StackConfig::new(
        &project_root(),
        &dir.path().join("state"),
        Database::Private {
            data_dir: dir.path().join("postgres"),
            port: 0,
        },
    )?;
    config.replicas = REPLICAS;
    config.replica_env = vec![
        ("WASMHOST_SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    let next_manifest = release_dir().join("spin.toml");
    check_prerequisites(&config, &next_manifest)?;

    let mut stack = Stack::start(config).await?;
    let result = release_on_the_local_stack(&mut stack, &next_manifest).await;
    if let Err(error) = &result {
        eprintln!("{error:#}\n{}", stack.log_tails(40));
    }
    stack.stop().await?;
    result
}

async fn release_on_the_local_stack(stack: &mut Stack, next_manifest: &Path) -> Result<()> {
    // Built before the release starts, as an image is.
    stack.precompile(next_manifest).await?;
    let base = stack.url();
    // Clients that verify nginx's certificate against the stack's CA.
    let tls_dir = stack.nginx.tls_dir.clone();
    let mut local = LocalStack {
        stack,
        next_manifest,
    };
    release_under_load("release under load", &mut local, &base, || {
        devstack::nginx::client_builder(&tls_dir)
    })
    .await
}

/// The release's steps on the local stack: `wasmhost migrate` with a
/// release directory, and devstack's replica replacement (out of nginx's
/// rotation, drained, SIGTERM, started with N+1's manifest, ready, back in).
struct LocalStack<'a> {
    stack: &'a mut Stack,
    next_manifest: &'a Path,
}

impl Deployment for LocalStack<'_> {
    fn replicas(&self) -> usize {
        self.stack.replicas.len()
    }

    async fn expand(&mut self) -> Result<()> {
        self.stack.migrate(&release_dir().join("expand")).await
    }

    async fn replace_replica(&mut self, index: usize) -> Result<()> {
        let old_pid = self.stack.replicas[index].pid();
        self.stack
            .replace_replica(index, self.next_manifest, DRAIN)
            .await?;
        ensure!(
            self.stack.replicas[index].pid() != old_pid,
            "{} was not replaced",
            self.stack.replicas[index].name()
        );
        Ok(())
    }

    async fn contract(&mut self) -> Result<()> {
        self.stack.migrate(&release_dir().join("contract")).await
    }

    async fn every_replica_runs_next(&self) -> Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        for replica in &self.stack.replicas {
            let response = client
                .get(format!("{}/api/tags", replica.api_url()))
                .send()
                .await?;
            ensure!(
                response.status() == 200 && version_of(&response) == Version::Next,
                "{} answered {} with {:?}",
                replica.name(),
                response.status(),
                response.headers()
            );
        }
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<String> {
        devstack::postgres::psql(&self.stack.database.owner_url, sql).await
    }
}
