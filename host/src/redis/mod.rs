//! Outbound Redis for components, `fermyon:spin/redis@2.0.0`, as a
//! [`Capability`], behaving as Spin 3.6's (crates/factor-outbound-redis):
//!
//! - `open` checks the address against `allowed_outbound_hosts` with the
//!   scheme `redis` (the address's own scheme when it names one), and an
//!   address that is not allowed, or that is not a Redis URL, is
//!   `invalid-address`; a server that cannot be reached is `other` with the
//!   reason;
//! - the commands are Spin's, with its conversions of `execute`'s results;
//! - an instance may hold 1024 connections at once (`too-many-connections`
//!   past that).
//!
//! The address comes from the guest at run time, so the capability has no
//! readiness dependency.
//!
//! - [`client`]: the connections, shared per address, and a guest's handle;
//! - [`host`]: the interface's methods, on each instance's [`RedisInstance`].

pub mod bindings;
pub mod client;
pub mod host;

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability};
use crate::component::ComponentContext;
use client::SharedConnections;

/// The process-wide part: the shared connections.
#[derive(Default)]
pub struct Redis {
    connections: SharedConnections,
}

impl Redis {
    pub fn new() -> Self {
        Self::default()
    }
}

/// One instance's part: its open connections and what its component may
/// reach.
pub struct RedisInstance {
    redis: Arc<Redis>,
    component: Arc<ComponentContext>,
    table: ResourceTable,
    open_connections: usize,
}

impl Capability for Arc<Redis> {
    type Instance = RedisInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, RedisInstance>,
    ) -> Result<()> {
        bindings::add_to_linker::<T, HasSelf<RedisInstance>>(linker, get)?;
        Ok(())
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> RedisInstance {
        RedisInstance {
            redis: self.clone(),
            component: component.clone(),
            table: ResourceTable::new(),
            open_connections: 0,
        }
    }
}
