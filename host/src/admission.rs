//! Admission: which requests may run now, and which wait or are refused.
//!
//! Three gates, in the order a request meets them:
//!
//! - **uploads**: a request with a body holds an upload slot while the body
//!   arrives, so slow uploads never hold the slots instances need;
//! - **route limits** (`--route-limit`, none by default): at most N requests
//!   matching a method and path run at once; the rest wait in a bounded
//!   queue within their deadline. Expensive routes (a login's 19 MiB
//!   password hash) are capped this way: two cores hash no faster with 64
//!   logins in flight than with 2, while every one of those holds an instance
//!   and its memory;
//! - **the global cap** (`--max-concurrency`): instances running at once.
//!
//! A full gate answers 503 with `Retry-After`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// How long a request may wait for a free slot under the global cap or the
/// upload cap: it absorbs the moment between a guest answering and its
/// instance being torn down, when the client already sends its next request;
/// a server that is really full still answers 503 at once.
const SHORT_WAIT: Duration = Duration::from_millis(50);

/// `--route-limit`: `[METHOD ]PATH=CONCURRENCY[/QUEUE]`, e.g.
/// `POST /api/users/login=2/128`. PATH is exact, or a prefix when it ends in
/// `/...` (as in Spin routes). Without a method every method matches. The
/// queue bound defaults to 64 waiting requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    pub method: Option<Method>,
    pub path: String,
    pub concurrency: usize,
    pub queue: usize,
}

const DEFAULT_QUEUE: usize = 64;

impl RouteLimit {
    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match self.path.strip_suffix("/...") {
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => path == self.path,
        }
    }
}

impl fmt::Display for RouteLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(method) = &self.method {
            write!(f, "{method} ")?;
        }
        write!(f, "{}", self.path)
    }
}

impl FromStr for RouteLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "route limit {text:?}: expected [METHOD ]PATH=CONCURRENCY[/QUEUE], e.g. \"POST /api/users/login=2/128\""
            )
        };
        let (target, numbers) = text.trim().rsplit_once('=').ok_or_else(usage)?;
        let (method, path) = match target.trim().split_once(' ') {
            Some((method, path)) => (
                Some(Method::from_bytes(method.as_bytes()).map_err(|_| usage())?),
                path.trim(),
            ),
            None => (None, target.trim()),
        };
        if !path.starts_with('/') {
            return Err(usage());
        }
        let (concurrency, queue) = match numbers.split_once('/') {
            Some((concurrency, queue)) => (concurrency, Some(queue)),
            None => (numbers, None),
        };
        let concurrency: usize = concurrency.trim().parse().map_err(|_| usage())?;
        let queue = match queue {
            Some(queue) => queue.trim().parse().map_err(|_| usage())?,
            None => DEFAULT_QUEUE,
        };
        if concurrency == 0 {
            return Err(format!("{}: the concurrency must be at least 1", usage()));
        }
        Ok(RouteLimit {
            method,
            path: path.to_owned(),
            concurrency,
            queue,
        })
    }
}

struct RouteGate {
    limit: RouteLimit,
    label: String,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Why a request was not admitted; each is a 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The global cap stayed full.
    Concurrency,
    /// A route limit's queue was full.
    RouteQueueFull,
    /// The request's deadline passed while it waited in a route's queue.
    RouteWaitDeadline,
}

impl Refusal {
    /// The `reason` label of `wasmhost_requests_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Concurrency => "concurrency",
            Refusal::RouteQueueFull => "route_queue_full",
            Refusal::RouteWaitDeadline => "route_wait_deadline",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Concurrency => "too many concurrent requests; retry shortly",
            Refusal::RouteQueueFull => "too many requests of this kind at once; retry shortly",
            Refusal::RouteWaitDeadline => "the request waited too long for its turn; retry shortly",
        }
    }
}

/// The slots an admitted request holds until its instance is done.
pub struct Admitted {
    _route: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
}

/// Counts a request in a route's queue for as long as it waits.
struct Waiting<'a>(&'a RouteGate, &'a Metrics);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.1.route_waiting(&self.0.label, -1);
    }
}

pub struct Admission {
    global: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    routes: Vec<RouteGate>,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(max_concurrency: usize, routes: Vec<RouteLimit>, metrics: Arc<Metrics>) -> Self {
        let routes = routes
            .into_iter()
            .map(|limit| {
                let label = limit.to_string();
                metrics.route_limit(&label, limit.concurrency);
                RouteGate {
                    permits: Arc::new(Semaphore::new(limit.concurrency)),
                    label,
                    limit,
                    waiting: AtomicUsize::new(0),
                }
            })
            .collect();
        Admission {
            global: Arc::new(Semaphore::new(max_concurrency)),
            uploads: Arc::new(Semaphore::new(max_concurrency)),
            routes,
            metrics,
        }
    }

    /// An upload slot, held while a request's body is read; `None` when all
    /// stay taken for a moment.
    pub async fn upload_slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(SHORT_WAIT, self.uploads.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Admits a request to run: first its route's limit (the first that
    /// matches), waiting in that route's queue until `deadline`, then the
    /// global cap. A queued request holds no global slot.
    pub async fn admit(
        &self,
        method: &Method,
        path: &str,
        deadline: Instant,
    ) -> Result<Admitted, Refusal> {
        let route = match self
            .routes
            .iter()
            .find(|gate| gate.limit.matches(method, path))
        {
            None => None,
            Some(gate) => Some(self.route_slot(gate, deadline).await?),
        };
        let global = tokio::time::timeout(SHORT_WAIT, self.global.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Refusal::Concurrency)?;
        Ok(Admitted {
            _route: route,
            _global: global,
        })
    }

    async fn route_slot(
        &self,
        gate: &RouteGate,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, Refusal> {
        if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // Join the queue unless it is full (a failed join leaves the count
        // unchanged).
        let joined = gate
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                (waiting < gate.limit.queue).then_some(waiting + 1)
            });
        if joined.is_err() {
            return Err(Refusal::RouteQueueFull);
        }
        self.metrics.route_waiting(&gate.label, 1);
        let _waiting = Waiting(gate, &self.metrics);
        // The semaphore is fair: waiters are served in arrival order.
        match tokio::time::timeout_at(deadline.into(), gate.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::RouteWaitDeadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_limits_parse() {
        let limit: RouteLimit = "POST /api/users/login=2/128".parse().unwrap();
        assert_eq!(limit.method, Some(Method::POST));
        assert_eq!(limit.path, "/api/users/login");
        assert_eq!((limit.concurrency, limit.queue), (2, 128));
        assert_eq!(limit.to_string(), "POST /api/users/login");

        let limit: RouteLimit = " /reports/...=4 ".parse().unwrap();
        assert_eq!(limit.method, None);
        assert_eq!((limit.concurrency, limit.queue), (4, DEFAULT_QUEUE));

        for bad in [
            "",
            "POST /login",
            "login=2",
            "POST /login=0",
            "POST /login=x",
            "POST /login=2/y",
            "P@ST /login=2",
        ] {
            assert!(bad.parse::<RouteLimit>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn route_limits_match_method_and_path() {
        let exact: RouteLimit = "POST /api/users/login=1".parse().unwrap();
        assert!(exact.matches(&Method::POST, "/api/users/login"));
        assert!(!exact.matches(&Method::GET, "/api/users/login"));
        assert!(!exact.matches(&Method::POST, "/api/users/login/x"));
        assert!(!exact.matches(&Method::POST, "/api/users"));

        let prefix: RouteLimit = "/reports/...=1".parse().unwrap();
        assert!(prefix.matches(&Method::GET, "/reports"));
        assert!(prefix.matches(&Method::DELETE, "/reports/2026/q1"));
        assert!(!prefix.matches(&Method::GET, "/reportsx"));
    }

    fn admission(limits: &str) -> Admission {
        let routes = limits
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| l.parse().unwrap())
            .collect();
        Admission::new(8, routes, Arc::new(Metrics::new()))
    }

    #[tokio::test]
    async fn a_route_limit_queues_then_refuses() {
        let admission = Arc::new(admission("POST /login=1/1"));
        let later = Instant::now() + Duration::from_secs(5);
        let first = admission
            .admit(&Method::POST, "/login", later)
            .await
            .expect("the first login runs");
        // Other routes are not held up by the limit.
        let other = admission.admit(&Method::GET, "/articles", later).await;
        assert!(other.is_ok());

        // The second waits in the queue; the third finds the queue full.
        let queued = tokio::spawn({
            let admission = admission.clone();
            async move {
                admission
                    .admit(&Method::POST, "/login", later)
                    .await
                    .is_ok()
            }
        });
        while admission.routes[0].waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            admission.admit(&Method::POST, "/login", later).await.err(),
            Some(Refusal::RouteQueueFull)
        );
        assert!(!queued.is_finished(), "the queued login still waits");
        drop(first);
        assert!(
            queued.await.unwrap(),
            "the queued login runs once the first is done"
        );
    }

    #[tokio::test]
    async fn a_queued_request_gives_up_at_its_deadline() {
        let admission = admission("/slow/...=1/8");
        let _running = admission
            .admit(
                &Method::GET,
                "/slow/a",
                Instant::now() + Duration::from_secs(5),
            )
            .await
            .expect("runs");
        let started = Instant::now();
        let refused = admission
            .admit(
                &Method::GET,
                "/slow/b",
                started + Duration::from_millis(200),
            )
            .await
            .err();
        assert_eq!(refused, Some(Refusal::RouteWaitDeadline));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(admission.routes[0].waiting.load(Ordering::Acquire), 0);
    }
}
