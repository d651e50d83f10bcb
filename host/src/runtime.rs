//! The wasmtime side: one engine, every component compiled once (or loaded
//! precompiled) and pre-instantiated at start or by a reload
//! ([`crate::reload`]), never per request, and a store per instance
//! (by default a fresh one per request, as Spin does; see
//! [`crate::instances`]). The pooling allocator with copy-on-write memory
//! images makes that instantiation cost microseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    ResourceLimiterAsync, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::{Capability, Dependency};
use crate::component::ComponentContext;
use crate::guest_memory::{Budget, GrowthRefused, GuestMemory, Holding};
use crate::key_value::{KeyValue, KeyValueInstance};
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::mqtt::{Mqtt, MqttInstance};
use crate::outbound::AllowedHosts;
use crate::postgres::client::PoolSettings;
use crate::postgres::{Postgres, PostgresInstance};
use crate::redis::{Redis, RedisInstance};
use crate::runtime_config::RuntimeConfig;
use crate::sqlite::{Sqlite, SqliteInstance};
use crate::variables::resolve::{ComponentVariables, Resolved};
use crate::variables::{Variables, VariablesInstance};

/// How often the epoch advances: the granularity of deadlines and of
/// yielding a busy guest back to the scheduler.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub max_concurrency: usize,
    pub memory_limit_bytes: usize,
    /// The linear memory all instances may hold together
    /// ([`crate::guest_memory`]).
    pub guest_memory_budget: Budget,
    pub cache_dir: Option<PathBuf>,
    pub pool: PoolSettings,
    /// Instances that may be kept idle for reuse, beyond those running
    /// (0 when every request gets a fresh instance).
    pub idle_instances: usize,
    /// Stores and databases (`--runtime-config-file`).
    pub runtime_config: RuntimeConfig,
    /// Where the default key-value store and SQLite database live.
    pub state_dir: PathBuf,
}

/// State shared by every request.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub guest_memory: Arc<GuestMemory>,
    pub capabilities: Capabilities,
}

/// Every capability the host offers beyond WASI, each a self-contained unit
/// ([`Capability`]) with one field of instance state in [`HostState`].
/// Adding one means a field here, one there, and a line in each method.
pub struct Capabilities {
    pub variables: Variables,
    pub postgres: Arc<Postgres>,
    pub key_value: Arc<KeyValue>,
    pub sqlite: Arc<Sqlite>,
    pub redis: Arc<Redis>,
    pub mqtt: Mqtt,
}

impl Capabilities {
    fn new(settings: &RuntimeSettings, metrics: &Arc<Metrics>) -> Self {
        let config = &settings.runtime_config;
        let postgres = Arc::new(Postgres::new(settings.pool.clone(), metrics.clone()));
        Capabilities {
            variables: Variables,
            key_value: Arc::new(KeyValue::new(
                config.key_value_stores.clone(),
                settings.state_dir.clone(),
                postgres.pools.clone(),
            )),
            postgres,
            sqlite: Arc::new(Sqlite::new(
                config.sqlite_databases.clone(),
                &settings.state_dir,
            )),
            redis: Arc::new(Redis::new()),
            mqtt: Mqtt,
        }
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
        Variables::add_to_linker(linker, |s| &mut s.variables)?;
        <Arc<Postgres>>::add_to_linker(linker, |s| &mut s.postgres)?;
        <Arc<KeyValue>>::add_to_linker(linker, |s| &mut s.key_value)?;
        <Arc<Sqlite>>::add_to_linker(linker, |s| &mut s.sqlite)?;
        <Arc<Redis>>::add_to_linker(linker, |s| &mut s.redis)?;
        Mqtt::add_to_linker(linker, |s| &mut s.mqtt)?;
        Ok(())
    }

    fn configure(&self, component: &ComponentContext) -> Result<()> {
        self.variables.configure(component)?;
        self.postgres.configure(component)?;
        self.key_value.configure(component)?;
        self.sqlite.configure(component)?;
        self.redis.configure(component)?;
        self.mqtt.configure(component)?;
        Ok(())
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> Instances {
        Instances {
            variables: self.variables.instance(component),
            postgres: self.postgres.instance(component),
            key_value: self.key_value.instance(component),
            sqlite: self.sqlite.instance(component),
            redis: self.redis.instance(component),
            mqtt: self.mqtt.instance(component),
        }
    }

    /// The services the components depend on, for start and readiness.
    pub fn dependencies(&self, component: &ComponentContext) -> Vec<Dependency> {
        let mut all = self.variables.dependencies(component);
        all.extend(self.postgres.dependencies(component));
        all.extend(self.key_value.dependencies(component));
        all.extend(self.sqlite.dependencies(component));
        all.extend(self.redis.dependencies(component));
        all.extend(self.mqtt.dependencies(component));
        all
    }

    pub fn record_metrics(&self) {
        self.variables.record_metrics();
        self.postgres.record_metrics();
        self.key_value.record_metrics();
        self.sqlite.record_metrics();
        self.redis.record_metrics();
        self.mqtt.record_metrics();
    }
}

/// Each capability's state for one instance.
struct Instances {
    variables: VariablesInstance,
    postgres: PostgresInstance,
    key_value: KeyValueInstance,
    sqlite: SqliteInstance,
    redis: RedisInstance,
    mqtt: MqttInstance,
}

pub struct LoadedComponent {
    pub context: Arc<ComponentContext>,
    pub pre: ProxyPre<HostState>,
}

/// Store data: one store per instance.
pub struct HostState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub http_hooks: crate::outbound_http::OutboundHttp,
    pub limits: Limits,
    /// The current request's deadline: guest code traps once it has passed.
    pub deadline: Instant,
    pub variables: VariablesInstance,
    pub postgres: PostgresInstance,
    pub key_value: KeyValueInstance,
    pub sqlite: SqliteInstance,
    pub redis: RedisInstance,
    pub mqtt: MqttInstance,
}

impl HostState {
    /// Prepares the store for a request due by `deadline`.
    pub fn begin_request(&mut self, deadline: Instant) {
        self.deadline = deadline;
        self.limits.deadline = deadline;
        self.set_traced(false);
    }

    /// Whether the current request's trace is sampled: the capabilities'
    /// work gets spans only then.
    pub fn set_traced(&mut self, traced: bool) {
        self.postgres.traced = traced;
    }

    /// Whether a memory or table growth was ever refused in this store.
    pub fn limit_hit(&self) -> bool {
        self.limits.hit
    }

    /// The largest linear memory this store's instance has had, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }

    /// The instance's share of the guest memory budget.
    pub fn guest_memory(&mut self) -> &mut Holding {
        &mut self.limits.guest_memory
    }
}

/// The store's resource limits, recording whether one was hit and how large
/// linear memory grew (what decides whether an instance may be reused). A
/// growth within the per-instance cap also needs room in the guest memory
/// budget, and may wait for it ([`crate::guest_memory`]).
pub struct Limits {
    inner: StoreLimits,
    hit: bool,
    memory_bytes: usize,
    guest_memory: Holding,
    /// The current request's deadline, the longest a growth waits.
    deadline: Instant,
    /// The last growth accounted, taken back if it fails after all.
    last_growth: usize,
}

#[async_trait::async_trait]
impl ResourceLimiterAsync for Limits {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !matches!(
            self.inner.memory_growing(current, desired, maximum),
            Ok(true)
        ) {
            self.hit = true;
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        match self.guest_memory.grow(growth, self.deadline).await {
            Ok(()) => {
                self.last_growth = growth;
                self.memory_bytes = self.memory_bytes.max(desired);
                Ok(true)
            }
            // As the per-instance cap does: `memory.grow` fails.
            Err(GrowthRefused::OverBudget) => {
                self.hit = true;
                Ok(false)
            }
            // The guest traps; the request gets a 503 ([`is_memory_short`]).
            Err(short) => {
                self.hit = true;
                Err(MemoryShort(short).into())
            }
        }
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.guest_memory
            .ungrow(std::mem::take(&mut self.last_growth));
        self.inner.memory_grow_failed(error)
    }

    async fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.hit = true;
        }
        allowed
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.hit = true;
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

/// What lives as long as the process, whatever application it serves: the
/// engine (with its pooling allocator), the linker of the host's imports,
/// the capabilities (their pools and stores) and the metrics. The
/// application's components are loaded on it by
/// [`Runtime::load_components`], at start and again by each reload.
pub struct Runtime {
    pub engine: Engine,
    linker: Linker<HostState>,
    pub shared: Arc<Shared>,
    pub settings: RuntimeSettings,
}

/// A manifest's components, loaded: what its routes reach, and the services
/// those components depend on (their databases), checked before they serve
/// and by readiness.
pub struct LoadedComponents {
    pub components: HashMap<String, LoadedComponent>,
    pub dependencies: Vec<Dependency>,
}

pub fn engine(settings: &RuntimeSettings) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.memory_init_cow(true);
    // Slots for every running instance and every idle one kept for reuse.
    let instances = u32::try_from(
        settings
            .max_concurrency
            .saturating_add(settings.idle_instances),
    )
    .unwrap_or(u32::MAX)
    .saturating_add(16);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memories_per_component(4)
        .max_core_instances_per_component(32)
        .max_tables_per_component(16)
        .max_memory_size(settings.memory_limit_bytes)
        .max_unused_warm_slots(64)
        // Reset the first pages of a reused slot by copying instead of
        // returning them to the kernel: the madvise, page faults and TLB
        // shootdowns that otherwise follow every request cost about 40% of a
        // small request's CPU (bench/README.md). What a slot keeps is outside
        // the guest memory budget ([`crate::guest_memory`]); 1 MiB instead of
        // 4 kept a replica that served 64 connections and then a login flood
        // at 260 MiB of peak RSS instead of 435, but cost about 17% of the
        // logins per second and 7% of the article reads (two interleaved
        // runs each).
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the
        // pages a request actually dirtied instead of the whole kept range.
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring wasmtime")
}

/// Where the precompiled form of `wasm` for this engine lives in a cache.
fn cache_path(engine: &Engine, cache_dir: &Path, wasm: &[u8]) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let digest = Sha256::digest(wasm);
    cache_dir.join(format!(
        "{}-{:016x}.cwasm",
        hex::encode(&digest[..16]),
        engine_hash.finish()
    ))
}

/// Compiles a component, or loads it from the cache when a compatible
/// precompiled copy exists (written by `wasmhost compile` or a previous
/// start).
pub fn load_component(engine: &Engine, path: &Path, cache_dir: Option<&Path>) -> Result<Component> {
    let wasm =
        std::fs::read(path).with_context(|| format!("cannot read component {}", path.display()))?;
    let compile = |wasm: &[u8]| {
        let component = componentize(wasm)
            .with_context(|| format!("cannot make a component of the module {}", path.display()))?;
        Component::new(engine, &component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot compile component {}", path.display()))
    };
    let Some(dir) = cache_dir else {
        return compile(&wasm);
    };
    let cached = cache_path(engine, dir, &wasm);
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` for an
        // engine with the same compatibility hash (part of its name), into a
        // cache directory the operator controls.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable precompiled component")
            }
        }
    }
    let component = compile(&wasm)?;
    if let Err(e) = write_cache(&component, &cached) {
        tracing::warn!(path = %cached.display(), error = %e, "could not cache the compiled component");
    }
    Ok(component)
}

/// A component as it is; a core module made a component, as Spin makes
/// one when it loads it: the module's embedded component type (what
/// `wit-bindgen` puts in it) gives its imports and exports, and WASI
/// preview 1 imports (a module built for wasm32-wasip1) go through
/// wasmtime's preview 1 adapter.
pub fn componentize(wasm: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    const CORE_MODULE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    if !wasm.starts_with(&CORE_MODULE) {
        return Ok(wasm.into());
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(wasm)
        .context("a core module must carry its component type (as wit-bindgen and the Spin SDKs embed it)")?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()?;
    Ok(component.into())
}

fn write_cache(component: &Component, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::<HostState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Capabilities::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Resolves what component `id` is given, compiles it (or loads it
/// precompiled) and pre-instantiates it against the host's imports.
fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    manifest: &Manifest,
    id: &str,
    variables: &Resolved,
    settings: &RuntimeSettings,
) -> Result<LoadedComponent> {
    let decl = &manifest.components[id];
    let component_variables = ComponentVariables::resolve(manifest, id, variables)?;
    let hosts = decl
        .allowed_outbound_hosts
        .iter()
        .map(|t| variables.render(manifest, t))
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?;
    let allowed_hosts = AllowedHosts::parse(&hosts)
        .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?;
    for mount in &decl.files {
        if !mount.source.is_dir() {
            bail!(
                "component `{id}`: files source {} is not a directory",
                mount.source.display()
            );
        }
    }
    let started = Instant::now();
    let component = load_component(engine, &decl.source, settings.cache_dir.as_deref())
        .with_context(|| format!("component `{id}`"))?;
    let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
        anyhow::anyhow!(
            "component `{id}` ({}) imports something this host does not provide: {e:#}",
            decl.source.display()
        )
    })?;
    let pre = ProxyPre::new(instance_pre)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component `{id}` does not export wasi:http/incoming-handler"))?;
    tracing::info!(
        component = id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "component ready"
    );
    let imports = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    Ok(LoadedComponent {
        context: Arc::new(ComponentContext {
            id: id.to_string(),
            variables: Arc::new(component_variables),
            allowed_hosts: Arc::new(allowed_hosts),
            files: decl.files.clone(),
            environment: decl
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            imports,
            key_value_stores: decl.key_value_stores.iter().cloned().collect(),
            sqlite_databases: decl.sqlite_databases.iter().cloned().collect(),
        }),
        pre,
    })
}

impl Runtime {
    pub fn new(settings: RuntimeSettings, metrics: Arc<Metrics>) -> Result<Self> {
        let engine = engine(&settings)?;
        let linker = linker(&engine)?;
        let capabilities = Capabilities::new(&settings, &metrics);
        Ok(Runtime {
            engine,
            linker,
            shared: Arc::new(Shared {
                guest_memory: GuestMemory::new(settings.guest_memory_budget, &metrics),
                metrics,
                capabilities,
            }),
            settings,
        })
    }

    /// Compiles (or loads precompiled) and pre-instantiates every component
    /// the manifest's routes reach, and checks what each is given of the
    /// capabilities: everything short of serving, so that a mistake is
    /// found before any request reaches the components.
    pub fn load_components(
        &self,
        manifest: &Manifest,
        variables: &Resolved,
    ) -> Result<LoadedComponents> {
        let capabilities = &self.shared.capabilities;
        let routed: std::collections::BTreeSet<&str> = manifest
            .http_triggers
            .iter()
            .map(|t| t.component.as_str())
            .collect();
        let mut components = HashMap::new();
        let mut dependencies = Vec::new();
        for id in routed {
            let loaded = load(
                &self.engine,
                &self.linker,
                manifest,
                id,
                variables,
                &self.settings,
            )?;
            capabilities
                .configure(&loaded.context)
                .with_context(|| format!("component `{id}`"))?;
            dependencies.extend(capabilities.dependencies(&loaded.context));
            components.insert(id.to_string(), loaded);
        }
        Ok(LoadedComponents {
            components,
            dependencies,
        })
    }

    /// Publishes what the pooling allocator keeps resident in slots no
    /// instance uses (`linear_memory_keep_resident`): memory of the process
    /// that the guest memory budget does not count.
    pub fn record_pool_metrics(&self) {
        if let Some(pool) = self.engine.pooling_allocator_metrics() {
            self.shared.metrics.guest_memory.set_pool(
                pool.unused_memory_bytes_resident(),
                pool.unused_warm_memories(),
            );
        }
    }

    /// Advances the engine's epoch every tick, for deadlines and fairness.
    pub fn start_epoch_ticker(&self) {
        let engine = self.engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = engine.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .ok();
    }

    /// A fresh store for an instance of `component`, whose guest code traps
    /// once the current request's deadline ([`HostState::begin_request`])
    /// has passed and otherwise yields every tick so one busy guest cannot
    /// starve the others.
    /// Its linear memory is accounted in `guest_memory`, the request's
    /// reservation from the guest memory budget.
    pub fn store(
        &self,
        component: &LoadedComponent,
        guest_memory: Holding,
    ) -> Result<Store<HostState>> {
        let ctx = &component.context;
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stderr();
        wasi.envs(&ctx.environment);
        for mount in &ctx.files {
            wasi.preopened_dir(&mount.source, &mount.destination, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("mounting {}", mount.source.display()))?;
        }
        crate::sockets::configure(&mut wasi, ctx);
        let Instances {
            variables,
            postgres,
            key_value,
            sqlite,
            redis,
            mqtt,
        } = self.shared.capabilities.instance(ctx);
        let state = HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            http_hooks: crate::outbound_http::OutboundHttp::new(ctx.allowed_hosts.clone()),
            limits: Limits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(self.settings.memory_limit_bytes)
                    .instances(64)
                    .build(),
                hit: false,
                memory_bytes: 0,
                guest_memory,
                deadline: Instant::now(),
                last_growth: 0,
            },
            deadline: Instant::now(),
            variables,
            postgres,
            key_value,
            sqlite,
            redis,
            mqtt,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter_async(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }
}

/// The guest ran past its request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request exceeded its deadline")]
pub struct DeadlineExceeded;

/// The guest could not grow its memory: the guest memory budget stayed full.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MemoryShort(pub GrowthRefused);

/// True if a guest error was caused by the guest memory budget being full.
pub fn is_memory_short(error: &wasmtime::Error) -> bool {
    error.is::<MemoryShort>()
        || error
            .chain()
            .any(|e| e.downcast_ref::<MemoryShort>().is_some())
}

/// True if a guest error was caused by the deadline.
pub fn is_deadline(error: &wasmtime::Error) -> bool {
    error.is::<DeadlineExceeded>()
        || error
            .chain()
            .any(|e| e.downcast_ref::<DeadlineExceeded>().is_some())
}
