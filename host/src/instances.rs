//! Instances: where a request's component instance comes from and where it
//! goes afterwards.
//!
//! By default every request gets a fresh store and instance, as Spin and
//! SpinKube run the same components: nothing a request leaves in linear
//! memory can reach the next one. With `--max-instance-reuse N` (N > 1) an
//! instance that finished a request cleanly serves up to N requests in
//! total, one at a time, for components that keep no request state in
//! memory; it waits at most `--idle-instance-timeout` for the next one.
//!
//! An instance is never reused after its request trapped, ran past its
//! deadline, hit a limit (a refused memory or table growth), left resources
//! behind (a body or stream not completely written, a connection not
//! closed), or once its linear memory grew past `--instance-memory-watermark`:
//! it is dropped, and the next request gets a fresh one.
//!
//! Each application ([`crate::application`]) has its own: instances of one
//! application's components never serve another's. When a reload replaces
//! the application, its instances are retired: the idle ones are dropped at
//! once, and those still serving a request are dropped when it ends, so
//! their memory and pool slots are given back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::guest_memory::Holding;
use crate::metrics::Metrics;
use crate::runtime::{HostState, LoadedComponent, Runtime};

#[derive(Debug, Clone)]
pub struct ReuseSettings {
    /// Requests one instance may serve; 1 = a fresh instance per request.
    pub max_reuse: usize,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: Duration,
    /// An instance whose linear memory grew past this many bytes is not
    /// reused.
    pub memory_watermark: usize,
}

impl ReuseSettings {
    pub fn fresh_per_request() -> Self {
        ReuseSettings {
            max_reuse: 1,
            idle_timeout: Duration::from_secs(1),
            memory_watermark: usize::MAX,
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_reuse > 1
    }
}

/// A store and its instance, ready for a request.
pub struct Instance {
    pub store: Store<HostState>,
    pub proxy: Proxy,
    component: String,
    /// Requests served before this one.
    served: usize,
}

impl Instance {
    /// The id of the component this is an instance of.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Whether this instance served an earlier request.
    pub fn reused(&self) -> bool {
        self.served > 0
    }
}

/// How a request ended for its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned.
    Returned,
    /// The guest trapped or failed.
    Trapped,
    /// The request's deadline passed.
    Deadline,
}

struct Idle {
    instance: Instance,
    since: Instant,
}

/// Creates, reuses and drops instances; see the module documentation.
pub struct Instances {
    settings: ReuseSettings,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    /// Idle instances kept per component at most.
    idle_cap: usize,
    /// Set once a reload replaced this application: nothing is kept.
    retired: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Instances {
    pub fn new(settings: ReuseSettings, idle_cap: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Instances {
            settings,
            idle: Mutex::new(HashMap::new()),
            idle_cap,
            retired: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn settings(&self) -> &ReuseSettings {
        &self.settings
    }

    /// An instance of `component` for a request due by `deadline`: the most
    /// recently idle one when reuse is on and one is waiting, else a new one.
    /// It holds the request's reservation of guest memory (`guest_memory`).
    pub async fn get(
        &self,
        runtime: &Runtime,
        component_id: &str,
        component: &LoadedComponent,
        deadline: Instant,
        guest_memory: Holding,
    ) -> Result<Instance> {
        if self.settings.enabled()
            && let Some(mut instance) = self.take_idle(component_id)
        {
            instance
                .store
                .data_mut()
                .guest_memory()
                .take_over(guest_memory);
            instance.store.data_mut().begin_request(deadline);
            instance.store.set_epoch_deadline(1);
            self.metrics.instance_reused();
            return Ok(instance);
        }
        let mut store = runtime.store(component, guest_memory)?;
        store.data_mut().begin_request(deadline);
        let proxy = component.pre.instantiate_async(&mut store).await?;
        self.metrics.instance_created();
        Ok(Instance {
            store,
            proxy,
            component: component_id.to_owned(),
            served: 0,
        })
    }

    fn take_idle(&self, component_id: &str) -> Option<Instance> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(component_id)?;
        let now = Instant::now();
        // Most recently used first: its memory is the warmest.
        while let Some(entry) = list.pop() {
            if now.duration_since(entry.since) < self.settings.idle_timeout {
                return Some(entry.instance);
            }
            self.metrics.instance_dropped("idle_timeout");
        }
        None
    }

    /// Takes an instance back after its request: keeps it for the next one
    /// when reuse is on and nothing rules it out, else drops it.
    pub fn finish(&self, mut instance: Instance, outcome: Outcome) {
        instance.served += 1;
        let reason = match outcome {
            _ if !self.settings.enabled() => "reuse_off",
            _ if self.retired.load(Ordering::Acquire) => "retired",
            Outcome::Trapped => "trapped",
            Outcome::Deadline => "deadline",
            Outcome::Returned => {
                let state = instance.store.data();
                if state.limit_hit() {
                    "limit"
                } else if !state.table.is_empty() {
                    "resources_left"
                } else if state.memory_bytes() > self.settings.memory_watermark {
                    "memory_watermark"
                } else if instance.served >= self.settings.max_reuse {
                    "max_reuse"
                } else {
                    return self.keep(instance);
                }
            }
        };
        self.metrics.instance_dropped(reason);
    }

    fn keep(&self, mut instance: Instance) {
        // An idle instance holds its memory, and no more, from the budget.
        instance.store.data_mut().guest_memory().end_request();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that `retire` empties the lists under, so
        // no instance is kept after they were emptied.
        if self.retired.load(Ordering::Acquire) {
            drop(idle);
            self.metrics.instance_dropped("retired");
            return;
        }
        let list = idle.entry(instance.component.clone()).or_default();
        if list.len() >= self.idle_cap {
            drop(idle);
            self.metrics.instance_dropped("idle_full");
            return;
        }
        list.push(Idle {
            instance,
            since: Instant::now(),
        });
    }

    /// Drops instances idle for longer than the idle timeout, so that their
    /// memory and pool slots are given back; runs until the process ends.
    pub fn start_reaper(self: &Arc<Self>) {
        if !self.settings.enabled() {
            return;
        }
        let instances = Arc::downgrade(self);
        let period = (self.settings.idle_timeout / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            loop {
                ticks.tick().await;
                let Some(instances) = instances.upgrade() else {
                    return;
                };
                instances.reap();
            }
        });
    }

    fn reap(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let timeout = self.settings.idle_timeout;
            let now = Instant::now();
            idle.values_mut()
                .flat_map(|list| {
                    let (old, fresh): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                        .into_iter()
                        .partition(|entry| now.duration_since(entry.since) >= timeout);
                    *list = fresh;
                    old
                })
                .collect()
        };
        for _ in &expired {
            self.metrics.instance_dropped("idle_timeout");
        }
        // Dropped outside the lock: freeing a store resets its memory.
        drop(expired);
    }

    /// Keeps no instance from now on and drops the idle ones: their
    /// application was replaced by a reload.
    pub fn retire(&self) {
        let idle: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            self.retired.store(true, Ordering::Release);
            idle.drain().flat_map(|(_, list)| list).collect()
        };
        for _ in &idle {
            self.metrics.instance_dropped("retired");
        }
        // Dropped outside the lock: freeing a store resets its memory.
        drop(idle);
    }

    /// Idle instances now, for tests and metrics.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}
