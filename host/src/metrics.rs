//! Prometheus metrics, served as text on the admin listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub component: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub component: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The route limit, as `[METHOD ]PATH`.
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub database: String,
    pub state: &'static str,
}

/// An application in memory; see [`Metrics::application_loaded`].
pub struct LiveApplication(Gauge);

impl Drop for LiveApplication {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A request in flight; see [`Metrics::request_started`].
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Metrics {
    registry: Registry,
    /// The guest memory budget's series ([`crate::guest_memory`]).
    pub guest_memory: GuestMemoryMetrics,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    rejected: Family<ReasonLabels, Counter>,
    instances: Counter,
    instances_reused: Counter,
    instances_dropped: Family<ReasonLabels, Counter>,
    route_limits: Family<LimitLabels, Gauge>,
    route_waiting: Family<LimitLabels, Gauge>,
    statements: Counter,
    statement_cache: Family<CacheLabels, Counter>,
    pool_connections: Family<PoolLabels, Gauge>,
    reloads: Family<ResultLabels, Counter>,
    generation: Gauge,
    loaded_at: Gauge<f64, std::sync::atomic::AtomicU64>,
    applications: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmhost");
        let guest_memory = GuestMemoryMetrics::register(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by component, route and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ])
        });
        registry.register(
            "request_duration_seconds",
            "Time to the response's headers, by component and route",
            durations.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "requests_rejected",
            "Requests refused before reaching a component, by reason",
            rejected.clone(),
        );
        let instances = Counter::default();
        registry.register(
            "instances",
            "Component instances created (one per request unless instances are reused)",
            instances.clone(),
        );
        let instances_reused = Counter::default();
        registry.register(
            "instances_reused",
            "Requests served by an instance that had served an earlier one",
            instances_reused.clone(),
        );
        let instances_dropped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "instances_dropped",
            "Instances dropped after a request, by reason (reuse_off, max_reuse, trapped, \
             deadline, limit, resources_left, memory_watermark, idle_timeout, idle_full, \
             retired)",
            instances_dropped.clone(),
        );
        let route_limits = Family::<LimitLabels, Gauge>::default();
        registry.register(
            "route_limit",
            "Requests a route limit lets run at once",
            route_limits.clone(),
        );
        let route_waiting = Family::<LimitLabels, Gauge>::default();
        registry.register(
            "route_limit_waiting",
            "Requests waiting in a route limit's queue",
            route_waiting.clone(),
        );
        let statements = Counter::default();
        registry.register(
            "pg_statements",
            "SQL statements executed for components",
            statements.clone(),
        );
        let statement_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "pg_statement_cache",
            "Prepared-statement cache lookups, by result",
            statement_cache.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pg_pool_connections",
            "PostgreSQL pool connections, by database and state (in_use, idle)",
            pool_connections.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the manifest and components (SIGHUP or POST /reload), by result \
             (success, failure: refused, the application before it serving on)",
            reloads.clone(),
        );
        // Both series exist from the start, so a failure is a change from 0.
        for result in ["success", "failure"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        let generation = Gauge::default();
        registry.register(
            "application_generation",
            "The serving application's generation: 1 at start, one more per successful reload",
            generation.clone(),
        );
        let loaded_at = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "application_loaded_timestamp_seconds",
            "When the serving application was loaded (at start or by the last successful reload), \
             in seconds since the Unix epoch",
            loaded_at.clone(),
        );
        let applications = Gauge::default();
        registry.register(
            "applications_live",
            "Applications in memory: the serving one, and those a reload replaced while requests \
             or instances of theirs remain",
            applications.clone(),
        );
        Metrics {
            registry,
            guest_memory,
            requests,
            durations,
            in_flight,
            rejected,
            instances,
            instances_reused,
            instances_dropped,
            route_limits,
            route_waiting,
            statements,
            statement_cache,
            pool_connections,
            reloads,
            generation,
            loaded_at,
            applications,
        }
    }

    /// Counts an application in memory until the returned guard is dropped
    /// (with the application).
    pub fn application_loaded(&self) -> LiveApplication {
        self.applications.inc();
        LiveApplication(self.applications.clone())
    }

    /// The application of `generation` now serves.
    pub fn application_serving(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.loaded_at.set(now.as_secs_f64());
    }

    pub fn reloaded(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Counts a request in flight until the returned guard is dropped, which
    /// also happens when the client goes away mid-request.
    pub fn request_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn request_finished(&self, component: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                component: component.to_string(),
                route: route.to_string(),
                status,
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                component: component.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn instance_created(&self) {
        self.instances.inc();
    }

    pub fn instance_reused(&self) {
        self.instances_reused.inc();
    }

    pub fn instance_dropped(&self, reason: &'static str) {
        self.instances_dropped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn route_limit(&self, limit: &str, concurrency: usize) {
        self.route_limits
            .get_or_create(&LimitLabels {
                limit: limit.to_string(),
            })
            .set(i64::try_from(concurrency).unwrap_or(i64::MAX));
    }

    pub fn route_waiting(&self, limit: &str, delta: i64) {
        self.route_waiting
            .get_or_create(&LimitLabels {
                limit: limit.to_string(),
            })
            .inc_by(delta);
    }

    pub fn statement_executed(&self) {
        self.statements.inc();
    }

    pub fn statement_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.statement_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    pub fn set_pool_connections(&self, database: &str, in_use: usize, idle: usize) {
        for (state, value) in [("in_use", in_use), ("idle", idle)] {
            self.pool_connections
                .get_or_create(&PoolLabels {
                    database: database.to_string(),
                    state,
                })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `admission` (a request before its instance exists) or `growth` (an
    /// instance growing its memory).
    pub stage: &'static str,
}

/// The guest memory budget's series. The budget counts in the gauges' own
/// atomics, so that the request path updates nothing twice.
#[derive(Clone)]
pub struct GuestMemoryMetrics {
    budget: Gauge,
    in_use: Gauge,
    peak: Gauge,
    kept_resident: Gauge,
    warm_slots: Gauge,
    waiting: Family<StageLabels, Gauge>,
    wait_seconds: Family<StageLabels, Histogram>,
    refused: Family<ReasonLabels, Counter>,
}

impl GuestMemoryMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = GuestMemoryMetrics {
            budget: Gauge::default(),
            in_use: Gauge::default(),
            peak: Gauge::default(),
            kept_resident: Gauge::default(),
            warm_slots: Gauge::default(),
            waiting: Family::default(),
            wait_seconds: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
            }),
            refused: Family::default(),
        };
        // The waiting series exist from the start, so a wait is a change from 0.
        for stage in ["admission", "growth"] {
            drop(metrics.waiting.get_or_create(&StageLabels { stage }));
        }
        registry.register(
            "guest_memory_budget_bytes",
            "Linear memory all component instances may hold together (0: unlimited)",
            metrics.budget.clone(),
        );
        registry.register(
            "guest_memory_in_use_bytes",
            "Linear memory held by component instances and admitted requests",
            metrics.in_use.clone(),
        );
        registry.register(
            "guest_memory_peak_bytes",
            "The most linear memory held at once since the process started",
            metrics.peak.clone(),
        );
        registry.register(
            "guest_memory_kept_resident_bytes",
            "Linear memory of unused pool slots kept resident for the next instance, \
             which the budget does not count",
            metrics.kept_resident.clone(),
        );
        registry.register(
            "guest_memory_warm_slots",
            "Unused pool slots for linear memory that an instance used before",
            metrics.warm_slots.clone(),
        );
        registry.register(
            "guest_memory_waiting",
            "Requests waiting for guest memory, by stage (admission, growth)",
            metrics.waiting.clone(),
        );
        registry.register(
            "guest_memory_wait_seconds",
            "Time spent waiting for guest memory, by stage (admission, growth)",
            metrics.wait_seconds.clone(),
        );
        registry.register(
            "guest_memory_refused",
            "Waits for guest memory that failed, by reason (admission_deadline, \
             over_budget, exhausted, deadline)",
            metrics.refused.clone(),
        );
        metrics
    }

    pub fn set_budget(&self, bytes: usize) {
        self.budget.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// What the pooling allocator keeps of the slots no instance uses: the
    /// bytes left resident and the number of such slots (read at scrape).
    pub fn set_pool(&self, kept_resident: usize, warm_slots: u32) {
        self.kept_resident
            .set(i64::try_from(kept_resident).unwrap_or(i64::MAX));
        self.warm_slots.set(i64::from(warm_slots));
    }

    /// Bytes held now: the counter the budget takes from and gives back to.
    pub fn in_use(&self) -> &std::sync::atomic::AtomicI64 {
        self.in_use.inner()
    }

    /// The most bytes held at once.
    pub fn peak(&self) -> &std::sync::atomic::AtomicI64 {
        self.peak.inner()
    }

    pub fn waiting(&self, stage: &'static str, delta: i64) {
        self.waiting
            .get_or_create(&StageLabels { stage })
            .inc_by(delta);
    }

    pub fn waited(&self, stage: &'static str, seconds: f64) {
        self.wait_seconds
            .get_or_create(&StageLabels { stage })
            .observe(seconds);
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}
