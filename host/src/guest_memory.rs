//! The guest memory budget: one bound on the linear memory of all component
//! instances in the process together (`--guest-memory-budget`, 160 MiB by
//! default), so that a flood of memory-hungry requests costs latency, never
//! the process's memory.
//!
//! **What is counted.** Every byte of linear memory an instance has, from
//! the moment its store creates the memory to the moment the store is
//! dropped, is held from the budget (in 64 KiB WebAssembly pages). An idle
//! instance kept for reuse keeps its memory and goes on holding it. A
//! request's instance holds a [`Holding`]; the store's resource limiter
//! ([`crate::runtime`]) asks it before every growth.
//!
//! **Where a request waits.** Each route learns what its requests use: the
//! high-water mark of their linear memory, taken at once when a request
//! uses more and given up slowly (an eighth of the difference per request)
//! when they use less ([`RouteMemory`]). Before its instance exists, a
//! request reserves that much ([`GuestMemory::reserve`]); while the budget
//! has no room it waits, in arrival order, until its deadline (then 503).
//! While nothing is learned about a route, its first request runs alone
//! (the others wait for it up to a second), and shows what they need.
//! Growth within the reservation asks nothing of anyone. Growth beyond it
//! (a route's first request, or one that uses more than its route did) is
//! taken from what is free; when nothing is, the instance waits for memory
//! to come back, ahead of every request still waiting to be admitted.
//!
//! **Why this cannot deadlock.** Deadlock needs instances that hold memory
//! and wait for more, each for memory the others hold.
//!
//! - A request waiting to be admitted (or for a route's first request to
//!   end) holds no memory (it has no instance yet), so nothing anyone waits
//!   for is held by it.
//! - While an instance waits to grow, no request is admitted: everything
//!   given back goes to the instances that wait, never to newcomers.
//! - An instance waits to grow only while some holder of memory does not
//!   wait: that one runs to its end (every request has a deadline) and gives
//!   its memory back. When every holder would wait, the one that finds it so
//!   fails its growth instead (its guest traps: a 503 with `Retry-After`),
//!   and its memory lets the others go on.
//! - Every wait ends by the request's deadline at the latest.
//!
//! A growth that cannot fit even in the whole budget is refused at once,
//! as the per-instance cap refuses one: the guest's `memory.grow` fails.
//!
//! **The default, 160 MiB**, leaves room in a 256 MiB container for the
//! host itself (about 50 MiB: code, pools, buffers) and for a few dozen
//! MiB of what the pool keeps. It is above the per-instance cap (128 MiB),
//! so one instance can always reach its cap, and it holds seven argon2
//! password hashes (19 MiB each) at once, three times what two cores hash
//! at full speed: a login flood waits for its turn instead of multiplying
//! memory.
//!
//! **What the budget does not count:** each pool slot an instance used
//! keeps up to 4 MiB of the memory it dirtied resident for the next one
//! (`linear_memory_keep_resident` in [`crate::runtime`]), and the pool
//! reuses the most recently used slots, so this grows with the most
//! instances that ever ran at once, not with the traffic: after 64
//! connections of small requests and then a login flood, a replica with no
//! flags is well above 256 MiB. `/metrics` reports it
//! (`wasmhost_guest_memory_kept_resident_bytes`,
//! `wasmhost_guest_memory_warm_slots`), and `--max-concurrency` bounds it
//! (at most 4 MiB per instance that may run).
//!
//! The request path pays two atomic operations when memory is not short
//! (reserve on admission, give back with the store), and nothing per
//! growth within a reservation.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};

use crate::metrics::{GuestMemoryMetrics, Metrics};

/// A WebAssembly page: the unit memory is counted in.
pub const PAGE: usize = 64 << 10;

/// `--guest-memory-budget`: a size (`160MiB`, `1GiB`, `512M`, or a number
/// of MiB), or `unlimited` (also `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Unlimited,
    Bytes(usize),
}

impl Budget {
    pub const DEFAULT: &'static str = "160MiB";

    pub fn bytes(self) -> Option<usize> {
        match self {
            Budget::Unlimited => None,
            Budget::Bytes(bytes) => Some(bytes),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Unlimited => f.write_str("unlimited"),
            Budget::Bytes(bytes) if bytes.is_multiple_of(1 << 20) => {
                write!(f, "{}MiB", bytes >> 20)
            }
            Budget::Bytes(bytes) => write!(f, "{}KiB", bytes >> 10),
        }
    }
}

impl FromStr for Budget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "guest memory budget {text:?}: expected a size such as 192MiB, 1GiB or 512 \
                 (MiB), or \"unlimited\" (or 0)"
            )
        };
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(Budget::Unlimited);
        }
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: usize = number.parse().map_err(|_| usage())?;
        // Binary multiples whichever way the unit is spelled, as memory
        // sizes are (`M`, `Mi`, `MB` and `MiB` all mean 2^20 bytes).
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "b" => 0,
            "k" | "ki" | "kb" | "kib" => 10,
            "" | "m" | "mi" | "mb" | "mib" => 20,
            "g" | "gi" | "gb" | "gib" => 30,
            _ => return Err(usage()),
        };
        if number == 0 {
            return Ok(Budget::Unlimited);
        }
        let bytes = number
            .checked_mul(1 << shift)
            .filter(|bytes| *bytes <= i64::MAX as usize)
            .ok_or_else(usage)?;
        Ok(Budget::Bytes(bytes.div_ceil(PAGE) * PAGE))
    }
}

/// How long the requests of a route nothing was learned about wait for its
/// first request to end (see [`GuestMemory::reserve`]).
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// What the requests of one route use, learned as they end; see the module
/// documentation.
#[derive(Debug)]
pub struct RouteMemory {
    /// Bytes; 0 until a request of the route has ended.
    expected: AtomicUsize,
    /// Held by the request that runs first while nothing is learned.
    first: Arc<Semaphore>,
}

impl Default for RouteMemory {
    fn default() -> Self {
        RouteMemory {
            expected: AtomicUsize::new(0),
            first: Arc::new(Semaphore::new(1)),
        }
    }
}

impl RouteMemory {
    /// The linear memory a request of this route is expected to need.
    pub fn expected(&self) -> usize {
        self.expected.load(Ordering::Relaxed)
    }

    /// A request of this route ended with `used` bytes of linear memory: a
    /// higher mark is taken at once, a lower one an eighth of the way.
    fn observe(&self, used: usize) {
        let _ = self
            .expected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |expected| {
                let next = if used >= expected {
                    used
                } else {
                    expected - (expected - used) / 8
                };
                (next != expected).then_some(next.div_ceil(PAGE) * PAGE)
            });
    }
}

/// Why an instance's growth failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrowthRefused {
    /// The instance would hold more than the whole budget.
    #[error("the guest's memory would exceed the host's guest memory budget")]
    OverBudget,
    /// Every instance holding memory waits for more: this one gave up.
    #[error("the host's guest memory budget is exhausted")]
    Exhausted,
    /// The request's deadline passed while it waited for memory.
    #[error("the request's deadline passed while it waited for guest memory")]
    Deadline,
}

impl GrowthRefused {
    fn reason(self) -> &'static str {
        match self {
            GrowthRefused::OverBudget => "over_budget",
            GrowthRefused::Exhausted => "exhausted",
            GrowthRefused::Deadline => "deadline",
        }
    }
}

/// The request's deadline passed before the budget had room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionDeadline;

#[derive(Clone, Copy)]
enum Stage {
    Admission,
    Growth,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Admission => "admission",
            Stage::Growth => "growth",
        }
    }
}

/// The budget; see the module documentation.
pub struct GuestMemory {
    /// Bytes; `i64::MAX` when unlimited.
    limit: i64,
    /// Bytes held, shared with the `guest_memory_in_use_bytes` gauge.
    metrics: GuestMemoryMetrics,
    /// Live holdings: instances (running or idle) and admitted requests.
    holders: AtomicUsize,
    growth_waiting: AtomicUsize,
    admission_waiting: AtomicUsize,
    /// Requests waiting to be admitted take turns in arrival order.
    admission_turn: Mutex<()>,
    /// Signalled whenever memory is given back while someone waits.
    released: Notify,
}

/// Counts a waiter, in the budget and the metrics, while it waits.
struct Waiting<'a> {
    budget: &'a GuestMemory,
    stage: Stage,
    since: Instant,
}

impl<'a> Waiting<'a> {
    fn new(budget: &'a GuestMemory, stage: Stage) -> Self {
        budget.counter(stage).fetch_add(1, Ordering::SeqCst);
        budget.metrics.waiting(stage.label(), 1);
        Waiting {
            budget,
            stage,
            since: Instant::now(),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.budget
            .counter(self.stage)
            .fetch_sub(1, Ordering::SeqCst);
        self.budget.metrics.waiting(self.stage.label(), -1);
        self.budget
            .metrics
            .waited(self.stage.label(), self.since.elapsed().as_secs_f64());
    }
}

impl GuestMemory {
    pub fn new(budget: Budget, metrics: &Metrics) -> Arc<Self> {
        let metrics = metrics.guest_memory.clone();
        let limit = budget
            .bytes()
            .map_or(i64::MAX, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
        metrics.set_budget(budget.bytes().unwrap_or(0));
        Arc::new(GuestMemory {
            limit,
            metrics,
            holders: AtomicUsize::new(0),
            growth_waiting: AtomicUsize::new(0),
            admission_waiting: AtomicUsize::new(0),
            admission_turn: Mutex::new(()),
            released: Notify::new(),
        })
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        usize::try_from(self.metrics.in_use().load(Ordering::SeqCst)).unwrap_or(0)
    }

    fn counter(&self, stage: Stage) -> &AtomicUsize {
        match stage {
            Stage::Admission => &self.admission_waiting,
            Stage::Growth => &self.growth_waiting,
        }
    }

    fn limit_bytes(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }

    /// Takes `bytes` if they are free.
    fn try_take(&self, bytes: usize) -> bool {
        let Ok(bytes) = i64::try_from(bytes) else {
            return false;
        };
        let taken =
            self.metrics
                .in_use()
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |in_use| {
                    in_use
                        .checked_add(bytes)
                        .filter(|after| *after <= self.limit)
                });
        match taken {
            Ok(before) => {
                self.metrics
                    .peak()
                    .fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, bytes: usize) {
        self.give_back_quietly(bytes);
        self.wake();
    }

    fn give_back_quietly(&self, bytes: usize) {
        if bytes > 0 {
            self.metrics
                .in_use()
                .fetch_sub(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }

    /// Wakes the waiters, if any, to look at the budget again.
    fn wake(&self) {
        if self.growth_waiting.load(Ordering::SeqCst) > 0
            || self.admission_waiting.load(Ordering::SeqCst) > 0
        {
            self.released.notify_waiters();
        }
    }

    /// A holding of `bytes` if they are free. It counts as a holder from
    /// before it takes them, so that an instance deciding whether to wait
    /// never overlooks one that is about to run.
    fn try_hold(self: &Arc<Self>, route: &Arc<RouteMemory>, bytes: usize) -> Option<Holding> {
        self.holders.fetch_add(1, Ordering::SeqCst);
        if !self.try_take(bytes) {
            self.holders.fetch_sub(1, Ordering::SeqCst);
            // An instance may have decided to wait on this holder's account.
            if self.growth_waiting.load(Ordering::SeqCst) > 0 {
                self.released.notify_waiters();
            }
            return None;
        }
        Some(Holding {
            budget: self.clone(),
            route: route.clone(),
            held: bytes,
            used: 0,
            first: None,
        })
    }

    /// What a request of `route` reserves: what its route's requests used
    /// recently, at most the whole budget.
    fn reservation(&self, route: &RouteMemory) -> usize {
        route.expected().min(self.limit_bytes())
    }

    /// A request's reservation if the budget has room for it now and nobody
    /// waits before it.
    pub fn try_reserve(self: &Arc<Self>, route: &Arc<RouteMemory>) -> Option<Holding> {
        let bytes = self.reservation(route);
        let first = self.admission_waiting.load(Ordering::SeqCst) == 0
            && self.growth_waiting.load(Ordering::SeqCst) == 0;
        if !first {
            return None;
        }
        self.try_hold(route, bytes)
    }

    /// A request's reservation, waiting in arrival order (behind every
    /// instance waiting to grow) until the budget has room or `deadline`.
    ///
    /// While nothing is learned about a route (a fresh process), its
    /// requests run one at a time until the first ends, or for at most a
    /// second: a flood meeting a fresh process would otherwise create an
    /// instance for every request before any could show what it needs, and
    /// each of those would wait to grow, holding a pool slot.
    pub async fn reserve(
        self: &Arc<Self>,
        route: &Arc<RouteMemory>,
        deadline: Instant,
    ) -> Result<Holding, AdmissionDeadline> {
        let first = Self::first_request(route, deadline).await;
        let mut holding = self.reserve_learned(route, deadline).await?;
        holding.first = first;
        Ok(holding)
    }

    /// The turn of the first request of a route nothing was learned about;
    /// `None` once something is, or after the wait.
    async fn first_request(route: &RouteMemory, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if route.expected() != 0 {
            return None;
        }
        let until = deadline.min(Instant::now() + FIRST_REQUEST_WAIT);
        let turn = tokio::time::timeout_at(until.into(), route.first.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        // Learned while it waited: it reserves what was learned.
        (route.expected() == 0).then_some(turn)
    }

    async fn reserve_learned(
        self: &Arc<Self>,
        route: &Arc<RouteMemory>,
        deadline: Instant,
    ) -> Result<Holding, AdmissionDeadline> {
        if let Some(holding) = self.try_reserve(route) {
            return Ok(holding);
        }
        let waiting = Waiting::new(self, Stage::Admission);
        let Ok(_turn) = tokio::time::timeout_at(deadline.into(), self.admission_turn.lock()).await
        else {
            self.metrics.refused("admission_deadline");
            return Err(AdmissionDeadline);
        };
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            // Read again each time: the route may have learned meanwhile.
            let bytes = self.reservation(route);
            if self.growth_waiting.load(Ordering::SeqCst) == 0
                && let Some(holding) = self.try_hold(route, bytes)
            {
                drop(waiting);
                return Ok(holding);
            }
            if tokio::time::timeout_at(deadline.into(), released)
                .await
                .is_err()
            {
                self.metrics.refused("admission_deadline");
                return Err(AdmissionDeadline);
            }
        }
    }

    /// Takes `bytes` more for a holder that grows beyond what it holds; see
    /// the module documentation for when it waits and when it fails.
    async fn take_growing(&self, bytes: usize, deadline: Instant) -> Result<(), GrowthRefused> {
        if self.try_take(bytes) {
            return Ok(());
        }
        let _waiting = Waiting::new(self, Stage::Growth);
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(bytes) {
                return Ok(());
            }
            // Every holder (this one included) waits for memory: none will
            // give any back. (A holder gives its memory back before it stops
            // counting, so one more look sees what the last one left.)
            if self.growth_waiting.load(Ordering::SeqCst) >= self.holders.load(Ordering::SeqCst) {
                return if self.try_take(bytes) {
                    Ok(())
                } else {
                    Err(GrowthRefused::Exhausted)
                };
            }
            if tokio::time::timeout_at(deadline.into(), released)
                .await
                .is_err()
            {
                return Err(GrowthRefused::Deadline);
            }
        }
    }
}

/// The budget one instance (or one admitted request, before its instance
/// exists) holds: at least its linear memory, and at least what its request
/// reserved. Given back when dropped, with the store.
pub struct Holding {
    budget: Arc<GuestMemory>,
    /// The route of the request it serves (or was reserved for).
    route: Arc<RouteMemory>,
    /// Bytes taken from the budget.
    held: usize,
    /// Bytes of linear memory the instance has.
    used: usize,
    /// The first request of its route runs alone until it ends.
    first: Option<OwnedSemaphorePermit>,
}

impl Holding {
    /// Bytes of linear memory the instance has.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Accounts a growth of linear memory by `bytes`, waiting for the budget
    /// if it has to (see the module documentation) until `deadline`.
    pub async fn grow(&mut self, bytes: usize, deadline: Instant) -> Result<(), GrowthRefused> {
        let used = self.used.saturating_add(bytes.div_ceil(PAGE) * PAGE);
        if used > self.held {
            let refused = if used > self.budget.limit_bytes() {
                Err(GrowthRefused::OverBudget)
            } else {
                self.budget.take_growing(used - self.held, deadline).await
            };
            if let Err(refused) = refused {
                self.budget.metrics.refused(refused.reason());
                return Err(refused);
            }
            self.held = used;
        }
        self.used = used;
        Ok(())
    }

    /// Takes back a growth accounted by [`Holding::grow`] that did not
    /// happen (the memory could not be grown after all).
    pub fn ungrow(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes.div_ceil(PAGE) * PAGE);
    }

    /// The instance's request ended and the instance is kept for another:
    /// its route learns what it used, and what it reserved beyond its
    /// memory goes back to the budget.
    pub fn end_request(&mut self) {
        self.route.observe(self.used);
        self.first = None;
        let unused = self.held - self.used.min(self.held);
        self.held -= unused;
        self.budget.give_back(unused);
    }

    /// A kept instance takes on a new request with that request's
    /// reservation: it holds what the larger of the two needs, and gives
    /// back the rest.
    pub fn take_over(&mut self, mut reservation: Holding) {
        let total = self.held + reservation.held;
        self.held = self.used.max(reservation.held);
        self.route = reservation.route.clone();
        self.first = reservation.first.take();
        // The reservation's bytes are this holding's now: dropping it gives
        // nothing back.
        reservation.held = 0;
        drop(reservation);
        self.budget.give_back(total - self.held);
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        // Learned before the route's next requests may go on (`first` is
        // dropped after this).
        if self.used > 0 {
            self.route.observe(self.used);
        }
        // Memory first, then the count, then the waiters: a waiter that
        // sees one holder fewer also sees its memory back.
        self.budget.give_back_quietly(self.held);
        self.budget.holders.fetch_sub(1, Ordering::SeqCst);
        self.budget.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: usize = 1 << 20;

    fn budget(mib: usize) -> Arc<GuestMemory> {
        GuestMemory::new(Budget::Bytes(mib * MIB), &Metrics::new())
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn budgets_parse_with_binary_units_and_unlimited() {
        let parse = |text: &str| text.parse::<Budget>();
        assert_eq!(parse("192MiB"), Ok(Budget::Bytes(192 * MIB)));
        assert_eq!(parse("192"), Ok(Budget::Bytes(192 * MIB)));
        assert_eq!(parse("1GiB"), Ok(Budget::Bytes(1024 * MIB)));
        assert_eq!(parse("512M"), Ok(Budget::Bytes(512 * MIB)));
        assert_eq!(parse("100KiB"), Ok(Budget::Bytes(128 << 10)));
        assert_eq!(parse("unlimited"), Ok(Budget::Unlimited));
        assert_eq!(parse("0"), Ok(Budget::Unlimited));
        for bad in ["", "MiB", "-1", "12 parsecs", "1.5GiB"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(Budget::Bytes(192 * MIB).to_string(), "192MiB");
    }

    #[test]
    fn a_route_learns_its_high_water_mark_and_forgets_it_slowly() {
        let route = RouteMemory::default();
        route.observe(20 * MIB);
        assert_eq!(route.expected(), 20 * MIB);
        route.observe(4 * MIB);
        assert_eq!(route.expected(), 18 * MIB);
        route.observe(30 * MIB);
        assert_eq!(route.expected(), 30 * MIB);
    }

    #[tokio::test]
    async fn holdings_never_exceed_the_budget_and_are_given_back_when_dropped() {
        let budget = budget(8);
        let route = Arc::new(RouteMemory::default());
        let mut first = budget.try_reserve(&route).expect("nothing reserved yet");
        first.grow(6 * MIB, soon()).await.expect("fits");
        let mut second = budget.try_reserve(&route).expect("an empty reservation");
        second.grow(2 * MIB, soon()).await.expect("fits exactly");
        assert_eq!(budget.in_use(), 8 * MIB);
        drop(first);
        assert_eq!(budget.in_use(), 2 * MIB);
        // The route learned 6 MiB from the first: a new request reserves it.
        let third = budget.try_reserve(&route).expect("room for 6 MiB");
        assert_eq!(budget.in_use(), 8 * MIB);
        drop((second, third));
        assert_eq!(budget.in_use(), 0);
        assert_eq!(
            budget.metrics.peak().load(Ordering::Relaxed),
            8 * MIB as i64
        );
    }

    #[tokio::test]
    async fn a_growth_waits_for_memory_another_instance_gives_back() {
        let budget = budget(8);
        let route = Arc::new(RouteMemory::default());
        let mut first = budget.try_reserve(&route).unwrap();
        first.grow(6 * MIB, soon()).await.unwrap();
        let mut second = budget.try_reserve(&route).unwrap();
        let grown = tokio::spawn(async move {
            second.grow(4 * MIB, soon()).await?;
            Ok::<_, GrowthRefused>(second)
        });
        while budget.growth_waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // A request arriving now waits behind the growth.
        assert!(budget.try_reserve(&route).is_none());
        drop(first);
        let second = grown.await.unwrap().expect("the growth got the memory");
        assert_eq!(second.used(), 4 * MIB);
    }

    #[tokio::test]
    async fn a_growth_past_the_whole_budget_is_refused_at_once() {
        let budget = budget(8);
        let route = Arc::new(RouteMemory::default());
        let mut only = budget.try_reserve(&route).unwrap();
        only.grow(6 * MIB, soon()).await.unwrap();
        assert_eq!(
            only.grow(4 * MIB, soon()).await,
            Err(GrowthRefused::OverBudget)
        );
        assert_eq!(only.used(), 6 * MIB);
    }

    #[tokio::test]
    async fn when_every_holder_would_wait_the_last_one_fails_instead() {
        let budget = budget(8);
        let route = Arc::new(RouteMemory::default());
        let mut first = budget.try_reserve(&route).unwrap();
        first.grow(6 * MIB, soon()).await.unwrap();
        let mut second = budget.try_reserve(&route).unwrap();
        second.grow(MIB, soon()).await.unwrap();
        // The first waits: the second still runs and will give memory back.
        let first_grown = tokio::spawn(async move {
            first.grow(2 * MIB, soon()).await?;
            Ok::<_, GrowthRefused>(first)
        });
        while budget.growth_waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The second would wait too, for memory only the first could give
        // back: it fails at once instead.
        let started = Instant::now();
        assert_eq!(
            second
                .grow(2 * MIB, started + Duration::from_secs(30))
                .await,
            Err(GrowthRefused::Exhausted)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(second);
        let first = first_grown
            .await
            .unwrap()
            .expect("grown once the second let go");
        assert_eq!(first.used(), 8 * MIB);
    }

    #[tokio::test]
    async fn an_admission_waits_for_room_until_its_deadline() {
        let budget = budget(8);
        let route = Arc::new(RouteMemory::default());
        route.observe(6 * MIB);
        let running = budget.reserve(&route, soon()).await.expect("room");
        let started = Instant::now();
        let refused = budget
            .reserve(&route, started + Duration::from_millis(100))
            .await
            .err();
        assert_eq!(refused, Some(AdmissionDeadline));
        let waiting = tokio::spawn({
            let (budget, route) = (budget.clone(), route.clone());
            async move { budget.reserve(&route, soon()).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(running);
        assert!(waiting.await.unwrap(), "admitted once memory came back");
    }

    #[tokio::test]
    async fn the_first_request_of_a_route_runs_alone_and_the_next_reserve_what_it_used() {
        let budget = budget(64);
        let route = Arc::new(RouteMemory::default());
        let mut first = budget.reserve(&route, soon()).await.unwrap();
        let next = tokio::spawn({
            let (budget, route) = (budget.clone(), route.clone());
            async move { budget.reserve(&route, soon()).await.unwrap() }
        });
        first.grow(6 * MIB, soon()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished(), "the next waits for the first to end");
        drop(first);
        let next = next.await.unwrap();
        assert_eq!(next.held, 6 * MIB, "it reserved what the first used");
        assert!(next.first.is_none());
    }

    #[tokio::test]
    async fn a_kept_instance_holds_the_larger_of_its_memory_and_the_next_reservation() {
        let budget = budget(64);
        let small = Arc::new(RouteMemory::default());
        let large = Arc::new(RouteMemory::default());
        large.observe(20 * MIB);
        let mut instance = budget.try_reserve(&small).unwrap();
        instance.grow(2 * MIB, soon()).await.unwrap();
        instance.end_request();
        assert_eq!(small.expected(), 2 * MIB);
        assert_eq!(budget.in_use(), 2 * MIB);
        instance.take_over(budget.try_reserve(&large).unwrap());
        assert_eq!(budget.in_use(), 20 * MIB);
        instance.grow(20 * MIB, soon()).await.unwrap();
        assert_eq!(budget.in_use(), 22 * MIB);
        drop(instance);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.holders.load(Ordering::SeqCst), 0);
    }
}
