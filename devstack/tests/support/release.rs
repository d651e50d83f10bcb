//! A release with a schema change rolled out under load, whatever runs the
//! replicas: the local stack (`release.rs`) or the compose project
//! (`compose_release.rs`). Each implements [`Deployment`], the steps that
//! differ between them; [`release_under_load`] is the procedure and its
//! checks, the same for both:
//!
//! 1. expand: the migrations that add `articles.revision`, nullable, while
//!    version N (the product's component) serves and keeps serving;
//! 2. roll: the replicas replaced one at a time by version N+1 (the Conduit
//!    component built with its `release-fixture` feature), each new one
//!    serving only once ready, each old one drained before it stops; N+1
//!    writes and reads the new column, N ignores it;
//! 3. contract: the migrations that backfill the rows N wrote, in batches,
//!    and make the column NOT NULL through a CHECK added NOT VALID and
//!    validated apart.
//!
//! Four writers (an article, then a comment on it) and four readers (the
//! list, the newest article, its comments) run through the whole procedure.
//! It fails on any request that failed, any acknowledged write missing at the
//! end, N not answering on the expanded schema, N answering once the roll is
//! done (every replica is asked directly, too), and a schema not contracted
//! or a row not backfilled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::{Api, slug_of};

/// The header in which N+1 names itself (components/conduit/src/release.rs);
/// N sends none.
pub const VERSION_HEADER: &str = "x-conduit-version";
/// How N+1's version ends.
pub const NEXT_VERSION_SUFFIX: &str = "+release-fixture";
/// The header with the stored revision of the article N+1 answered with.
const REVISION_HEADER: &str = "x-conduit-article-revision";

const WRITERS: usize = 4;
const READERS: usize = 4;
/// Pause between two requests of a worker: a steady load that leaves the
/// two cores room for the replicas being started.
const PACE: Duration = Duration::from_millis(10);
/// How long the load runs on its own before the first step and after each
/// phase, so that every phase is seen answering.
const SETTLE: Duration = Duration::from_secs(2);

/// The steps of a release that depend on what runs the replicas.
pub trait Deployment {
    /// How many replicas serve; each is replaced once.
    fn replicas(&self) -> usize;

    /// Applies the expand migrations (`release/expand/`) while N serves.
    async fn expand(&mut self) -> Result<()>;

    /// Replaces the `index`th replica (counting from 0) running N by one
    /// running N+1: the new one receives requests only once ready, the old
    /// one finishes the requests it has before it stops. Fails unless the
    /// replica really was replaced.
    async fn replace_replica(&mut self, index: usize) -> Result<()>;

    /// Applies the contract migrations (`release/contract/`).
    async fn contract(&mut self) -> Result<()>;

    /// Fails unless every replica, asked directly (not through nginx),
    /// answers as N+1.
    async fn every_replica_runs_next(&self) -> Result<()>;

    /// Runs one SQL query on the application's database as a role that may
    /// read every table and the catalog; its rows as `psql -At` prints them.
    async fn query(&self, sql: &str) -> Result<String>;
}

/// Rolls a release through `deployment` under load, through nginx at `base`
/// with clients made by `client_builder` (which brings the trust in nginx's
/// certificate), prints what it saw and checks it; `label` names the stack
/// in the report.
pub async fn release_under_load(
    label: &str,
    deployment: &mut impl Deployment,
    base: &str,
    client_builder: impl Fn() -> Result<reqwest::ClientBuilder>,
) -> Result<()> {
    // A new connection per request: during the roll nginx reloads its
    // configuration (the local stack takes a replica out of the rotation
    // that way, compose makes nginx resolve `api` again), which closes
    // nginx's idle client connections, and an HTTP/1.1 client that sends a
    // POST on one at that instant gets a reset it must not retry. That race
    // belongs to config reloads, not to the release (an ingress controller
    // changes its endpoints without one).
    let api = Api::new(base, client_builder()?.pool_max_idle_per_host(0))?;
    let token = api.register("releaser").await?;
    let seed_slug = api.create_article_ok(&token, "Before the release").await?;

    let load = Arc::new(Load::default());
    let mut workers = Vec::new();
    for writer in 0..WRITERS {
        workers.push(tokio::spawn(write(
            api.clone(),
            token.clone(),
            writer,
            load.clone(),
        )));
    }
    for reader in 0..READERS {
        workers.push(tokio::spawn(read(
            api.clone(),
            reader,
            seed_slug.clone(),
            load.clone(),
        )));
    }

    let started = Instant::now();
    let mut steps = Vec::new();
    tokio::time::sleep(SETTLE).await;

    let step = Instant::now();
    deployment.expand().await?;
    steps.push(("expand migration", step.elapsed()));
    load.enter(Phase::Expanded);
    tokio::time::sleep(SETTLE).await;

    load.enter(Phase::Rolling);
    for index in 0..deployment.replicas() {
        let step = Instant::now();
        deployment.replace_replica(index).await?;
        steps.push(("replica replaced", step.elapsed()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    load.enter(Phase::Rolled);
    tokio::time::sleep(SETTLE).await;

    let step = Instant::now();
    deployment.contract().await?;
    steps.push(("contract migration", step.elapsed()));
    load.enter(Phase::Contracted);
    tokio::time::sleep(SETTLE).await;

    load.stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await?;
    }
    let duration = started.elapsed();
    let seen = std::mem::take(&mut *load.seen());

    let requests: usize = seen.answers.values().sum::<usize>() + seen.failures.len();
    let articles = seen.written.len();
    let comments = seen
        .written
        .iter()
        .filter(|w| w.comment_id.is_some())
        .count();
    println!(
        "{label}: {requests} requests in {duration:.1?}, {} failed; \
         {articles} articles and {comments} comments acknowledged",
        seen.failures.len()
    );
    for ((phase, version), count) in &seen.answers {
        println!("  {phase:?}: {count} answered by {version:?}");
    }
    for (step, took) in &steps {
        println!("  {step}: {took:.1?}");
    }

    if !seen.failures.is_empty() {
        bail!(
            "{} of {requests} requests failed during the release:\n{}",
            seen.failures.len(),
            seen.failures.join("\n")
        );
    }
    let answered = |phase, version| seen.answers.get(&(phase, version)).copied().unwrap_or(0);
    ensure!(
        answered(Phase::Expanded, Version::Current) > 0,
        "N answered nothing on the expanded schema: {:?}",
        seen.answers
    );
    ensure!(
        answered(Phase::Rolling, Version::Current) > 0
            && answered(Phase::Rolling, Version::Next) > 0,
        "N and N+1 did not both answer during the roll: {:?}",
        seen.answers
    );
    ensure!(
        seen.written
            .iter()
            .any(|w| w.by == Version::Current && w.comment_id.is_some()),
        "no write acknowledged by N"
    );
    ensure!(
        answered(Phase::Contracted, Version::Next) > 0,
        "nothing answered after the contract migration: {:?}",
        seen.answers
    );
    ensure!(
        articles >= 40,
        "only {articles} articles written during the release"
    );

    deployment.every_replica_runs_next().await?;
    // Nothing changes in nginx's configuration any more: connections kept.
    let api = Api::new(base, client_builder()?)?;
    let checked = every_write_is_there_with_its_revision(&api, &seen.written).await?;
    println!("  {checked} acknowledged articles and their comments read back");
    schema_is_contracted(deployment).await?;
    next_counts_revisions(&api, &token, &seen.written).await
}

/// Where the procedure is; workers note it with every answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
enum Phase {
    /// N on the schema it was built for.
    Before = 0,
    /// The expand migration is applied; every replica still runs N.
    Expanded = 1,
    /// Replicas are being replaced by N+1.
    Rolling = 2,
    /// Every replica runs N+1; the contract migration is not applied yet.
    Rolled = 3,
    /// The contract migration is applied.
    Contracted = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Before,
            1 => Phase::Expanded,
            2 => Phase::Rolling,
            3 => Phase::Rolled,
            _ => Phase::Contracted,
        }
    }
}

/// Which version answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Current,
    Next,
}

/// The version named by an answer's headers (`name: value` pairs, as a
/// client or a tool printing them received them).
pub fn version_in<'a>(mut headers: impl Iterator<Item = (&'a str, &'a str)>) -> Version {
    match headers.find(|(name, _)| name.eq_ignore_ascii_case(VERSION_HEADER)) {
        Some((_, value)) if value.trim().ends_with(NEXT_VERSION_SUFFIX) => Version::Next,
        _ => Version::Current,
    }
}

/// The version that sent `response`.
pub fn version_of(response: &reqwest::Response) -> Version {
    version_in(
        response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

fn revision_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(REVISION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What the workers share: the phase, and everything they saw.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    phase: AtomicU8,
    seen: Mutex<Seen>,
}

/// An article some writer had acknowledged, with the comment on it, if that
/// was acknowledged too.
#[derive(Clone, Debug)]
struct Written {
    slug: String,
    title: String,
    /// Which version created the article.
    by: Version,
    comment_id: Option<i64>,
}

#[derive(Default)]
struct Seen {
    /// Answered requests by the phase they started in and the version that
    /// answered.
    answers: BTreeMap<(Phase, Version), usize>,
    /// Every request that did not get a 2xx, and every answer that broke a
    /// promise of the procedure (N answering after the rollout, N+1 not
    /// reporting the revision it wrote).
    failures: Vec<String>,
    written: Vec<Written>,
}

impl Load {
    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, what: String) {
        self.seen().failures.push(what);
    }

    /// The slug of the newest acknowledged article, if any.
    fn newest_slug(&self) -> Option<String> {
        self.seen().written.last().map(|w| w.slug.clone())
    }

    /// Sends `request` and returns the answer when it is a 2xx. Anything
    /// else is a failure; so is N answering a request that started once
    /// every replica ran N+1.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Option<(Version, reqwest::Response)> {
        let phase = self.phase();
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.fail(format!("[{phase:?}] {what}: {error}"));
                return None;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            self.fail(format!("[{phase:?}] {what}: {status} {body}"));
            return None;
        }
        let version = version_of(&response);
        if version == Version::Current && phase >= Phase::Rolled {
            self.fail(format!(
                "[{phase:?}] {what}: answered by N after every replica was replaced"
            ));
        }
        *self.seen().answers.entry((phase, version)).or_default() += 1;
        Some((version, response))
    }
}

/// Until told to stop: creates an article, then a comment on it.
async fn write(api: Api, token: String, writer: usize, load: Arc<Load>) {
    let auth = format!("Token {token}");
    for i in 0.. {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        let title = format!("release {writer} {i}");
        let request = api
            .client
            .post(api.url("/api/articles"))
            .header("Authorization", &auth)
            .json(&json!({"article": {"title": title, "description": "written during a release", "body": format!("body of {title}"), "tagList": ["release"]}}));
        let what = format!("POST /api/articles ({title})");
        if let Some((by, response)) = load.send(&what, request).await {
            let revision = revision_of(&response);
            match response.json::<Value>().await.map_err(anyhow::Error::from) {
                Ok(body) => match slug_of(&body) {
                    Ok(slug) => {
                        // N+1 returns the revision it stored; N knows none.
                        let expected = (by == Version::Next).then(|| "1".to_owned());
                        if revision != expected {
                            load.fail(format!(
                                "{what}: answered by {by:?} with revision {revision:?}"
                            ));
                        }
                        let comment_id = comment(&api, &auth, &slug, &load).await;
                        load.seen().written.push(Written {
                            slug,
                            title,
                            by,
                            comment_id,
                        });
                    }
                    Err(error) => load.fail(format!("{what}: {error}")),
                },
                Err(error) => load.fail(format!("{what}: {error}")),
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Comments on `slug`; the comment's id when acknowledged.
async fn comment(api: &Api, auth: &str, slug: &str, load: &Load) -> Option<i64> {
    let path = format!("/api/articles/{slug}/comments");
    let request = api
        .client
        .post(api.url(&path))
        .header("Authorization", auth)
        .json(&json!({"comment": {"body": format!("a comment on {slug}")}}));
    let what = format!("POST {path}");
    let (_, response) = load.send(&what, request).await?;
    match response.json::<Value>().await {
        Ok(body) => {
            let id = body["comment"]["id"].as_i64();
            if id.is_none() {
                load.fail(format!("{what}: no comment id in {body}"));
            }
            id
        }
        Err(error) => {
            load.fail(format!("{what}: {error}"));
            None
        }
    }
}

/// Until told to stop: the list, the newest article, its comments.
async fn read(api: Api, reader: usize, seed_slug: String, load: Arc<Load>) {
    for i in 0usize.. {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        let slug = load.newest_slug().unwrap_or_else(|| seed_slug.clone());
        let path = match (reader + i) % 3 {
            0 => "/api/articles?limit=10".to_owned(),
            1 => format!("/api/articles/{slug}"),
            _ => format!("/api/articles/{slug}/comments"),
        };
        let what = format!("GET {path}");
        if let Some((_, response)) = load.send(&what, api.client.get(api.url(&path))).await {
            // Read to the end: a body cut short is a failure too.
            if let Err(error) = response.bytes().await {
                load.fail(format!("{what}: {error}"));
            }
        }
        tokio::time::sleep(PACE).await;
    }
}

/// Every acknowledged article is there with its body, its comment and
/// revision 1 (written by N+1, or backfilled for those N wrote). Returns
/// how many were checked.
async fn every_write_is_there_with_its_revision(api: &Api, written: &[Written]) -> Result<usize> {
    let mut problems = Vec::new();
    for w in written {
        let response = api.get(&format!("/api/articles/{}", w.slug)).await?;
        let status = response.status();
        let revision = revision_of(&response);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 || body["article"]["body"] != format!("body of {}", w.title) {
            problems.push(format!("article {} ({:?}): {status} {body}", w.slug, w.by));
            continue;
        }
        if revision.as_deref() != Some("1") {
            problems.push(format!(
                "article {} (written by {:?}) has revision {revision:?}, not 1",
                w.slug, w.by
            ));
        }
        if let Some(id) = w.comment_id {
            let comments: Value = api
                .get(&format!("/api/articles/{}/comments", w.slug))
                .await?
                .json()
                .await?;
            let found = comments["comments"]
                .as_array()
                .is_some_and(|list| list.iter().any(|c| c["id"] == json!(id)));
            if !found {
                problems.push(format!("comment {id} on {} is gone: {comments}", w.slug));
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} of {} acknowledged writes are not as written:\n{}",
            problems.len(),
            written.len(),
            problems.join("\n")
        );
    }
    Ok(written.len())
}

/// `articles.revision` is NOT NULL, the helper CHECK is gone, every row has
/// revision 1 (none has been updated yet), and every release migration is
/// recorded.
async fn schema_is_contracted(deployment: &impl Deployment) -> Result<()> {
    let not_null = deployment
        .query(
            "SELECT attnotnull FROM pg_attribute \
             WHERE attrelid = 'articles'::regclass AND attname = 'revision'",
        )
        .await?;
    ensure!(
        not_null.trim() == "t",
        "articles.revision is not NOT NULL: {not_null:?}"
    );
    let checks = deployment
        .query("SELECT count(*) FROM pg_constraint WHERE conname = 'articles_revision_not_null'")
        .await?;
    ensure!(
        checks.trim() == "0",
        "the CHECK used to set NOT NULL is still there"
    );
    let not_backfilled = deployment
        .query("SELECT count(*) FROM articles WHERE revision IS DISTINCT FROM 1")
        .await?;
    ensure!(
        not_backfilled.trim() == "0",
        "{} articles do not have revision 1",
        not_backfilled.trim()
    );
    let applied = deployment
        .query(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations \
             WHERE version > 1000",
        )
        .await?;
    ensure!(
        applied.trim() == "1001,1002,1003,1004,1005",
        "release migrations recorded: {applied:?}"
    );
    Ok(())
}

/// N+1 keeps the column up to date: an update of an article N wrote takes
/// it from the backfilled 1 to 2.
async fn next_counts_revisions(api: &Api, token: &str, written: &[Written]) -> Result<()> {
    let by_current = written
        .iter()
        .find(|w| w.by == Version::Current)
        .context("no article written by N")?;
    let response = api
        .client
        .put(api.url(&format!("/api/articles/{}", by_current.slug)))
        .header("Authorization", format!("Token {token}"))
        .json(&json!({"article": {"body": "updated after the release"}}))
        .send()
        .await?;
    let status = response.status();
    let revision = revision_of(&response);
    ensure!(
        status == 200 && revision.as_deref() == Some("2"),
        "update of {}: {status}, revision {revision:?}",
        by_current.slug
    );
    Ok(())
}
