//! The shape of a host capability (outbound PostgreSQL, variables, the
//! key-value store, ...), as Spin's factors have it.
//!
//! A capability is a unit of its own: the interfaces it implements (its own
//! bindings, generated from the vendored WIT), the state it keeps for the
//! whole process (connection pools, open stores), the state each instance
//! gets (its resource table, what its component may reach), and what
//! readiness must check. The runtime knows capabilities only through this
//! trait and one field each in the store's data; a capability's interface
//! methods are implemented on its own instance state, which the linker
//! reaches through an accessor, never on the store's data itself.

use std::sync::Arc;

use anyhow::Result;
use futures::future::BoxFuture;
use wasmtime::component::Linker;

use crate::component::ComponentContext;

/// Reaches a capability's instance state `I` in a store's data `T`.
pub type Accessor<T, I> = fn(&mut T) -> &mut I;

pub trait Capability: Send + Sync + 'static {
    /// What one instance (one store) holds.
    type Instance: Send + 'static;

    /// Adds the capability's interfaces to the linker; `get` reaches the
    /// instance state the methods run on.
    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, Self::Instance>,
    ) -> Result<()>;

    /// Checks, once at start, what a component is given of this capability
    /// (the stores or databases its manifest names), so a mistake stops the
    /// server instead of failing requests.
    fn configure(&self, _component: &ComponentContext) -> Result<()> {
        Ok(())
    }

    /// The state for a new instance of `component`.
    fn instance(&self, component: &Arc<ComponentContext>) -> Self::Instance;

    /// The services this capability depends on for `component`, checked at
    /// start and by readiness.
    fn dependencies(&self, _component: &ComponentContext) -> Vec<Dependency> {
        Vec::new()
    }

    /// Publishes the capability's gauges (pool sizes) before a scrape.
    fn record_metrics(&self) {}
}

/// Fails, naming them, when a component lists labels (`key_value_stores`,
/// `sqlite_databases`) that nothing defines, as Spin refuses to start then.
pub fn check_labels<'a>(
    manifest_key: &str,
    listed: impl IntoIterator<Item = &'a String>,
    defined: impl Fn(&str) -> bool,
) -> Result<()> {
    let unknown: Vec<&String> = listed.into_iter().filter(|l| !defined(l)).collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "{manifest_key} names {unknown:?}, which the runtime configuration does not define (only `default` exists without one)"
        );
    }
    Ok(())
}

/// A service a capability needs, with the check that it answers.
pub struct Dependency {
    /// What kind of service: `database`.
    pub kind: &'static str,
    /// Where it is, without credentials: `db:5432/conduit`.
    pub target: String,
    /// What names it: the variable `conduit.db_url`.
    pub source: String,
    pub check: Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>,
}

impl Dependency {
    /// `database db:5432/conduit`.
    pub fn name(&self) -> String {
        format!("{} {}", self.kind, self.target)
    }

    pub async fn check(&self) -> Result<()> {
        (self.check)().await
    }
}

impl std::fmt::Debug for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("source", &self.source)
            .finish()
    }
}
