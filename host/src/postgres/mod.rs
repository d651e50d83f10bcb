//! Outbound PostgreSQL for components: `spin:postgres/postgres@4.0.0` over
//! `tokio-postgres`, as a [`Capability`].
//!
//! - [`client`]: connection strings, the pools (one per connection string,
//!   shared by every instance) and the connection a guest holds;
//! - [`host`]: the interface's methods, on each instance's [`PostgresInstance`];
//! - [`errors`]: how failures reach the component, in wasmhost's structured
//!   form or worded as Spin 3.6 words them;
//! - [`types`]: values between PostgreSQL and the WIT types;
//! - [`tls`]: `sslmode` and the certificates it verifies against.

pub mod bindings;
pub mod client;
pub mod errors;
pub mod host;
pub mod tls;
pub mod types;

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability, Dependency};
use crate::component::ComponentContext;
use crate::metrics::Metrics;
use client::{PoolSettings, Pools, Target};

/// The process-wide part: the pools and their settings.
pub struct Postgres {
    /// Shared with the key-value store's PostgreSQL backend: one pool per
    /// connection string in the process.
    pub pools: Arc<Pools>,
    metrics: Arc<Metrics>,
}

impl Postgres {
    pub fn new(settings: PoolSettings, metrics: Arc<Metrics>) -> Self {
        Postgres {
            pools: Arc::new(Pools::new(settings, metrics.clone())),
            metrics,
        }
    }
}

/// One instance's part: its open connections, what its component may
/// reach, and whether the current request is traced.
pub struct PostgresInstance {
    postgres: Arc<Postgres>,
    component: Arc<ComponentContext>,
    table: ResourceTable,
    /// Whether the current request's trace is sampled: its database work
    /// gets spans only then.
    pub traced: bool,
}

impl Capability for Arc<Postgres> {
    type Instance = PostgresInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, PostgresInstance>,
    ) -> Result<()> {
        bindings::add_to_linker::<T, HasSelf<PostgresInstance>>(linker, get)?;
        Ok(())
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> PostgresInstance {
        PostgresInstance {
            postgres: self.clone(),
            component: component.clone(),
            table: ResourceTable::new(),
            traced: false,
        }
    }

    /// The databases a component is configured with: the variables whose
    /// values are PostgreSQL connection strings to hosts it may reach, when
    /// it imports the interface at all.
    fn dependencies(&self, component: &ComponentContext) -> Vec<Dependency> {
        if !component.imports("spin:postgres/postgres@4.0.0") {
            return Vec::new();
        }
        component
            .variables
            .values()
            .filter_map(|(name, value)| {
                let target = Target::parse(value).ok()?;
                let reachable =
                    target.endpoints().ok()?.iter().all(|(host, port)| {
                        component.allowed_hosts.allows("postgres", host, *port)
                    });
                if !reachable {
                    return None;
                }
                let postgres = self.clone();
                let address = value.clone();
                Some(Dependency {
                    kind: "database",
                    target: target.label,
                    source: format!("{}.{name}", component.id),
                    check: Arc::new(move || {
                        let postgres = postgres.clone();
                        let address = address.clone();
                        Box::pin(async move { postgres.pools.ping(&address).await })
                    }),
                })
            })
            .collect()
    }

    fn record_metrics(&self) {
        self.pools.record_pool_metrics();
    }
}
