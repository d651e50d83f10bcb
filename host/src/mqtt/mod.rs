//! Outbound MQTT for components, `fermyon:spin/mqtt@2.0.0`, as a
//! [`Capability`], behaving as Spin 3.6's (crates/factor-outbound-mqtt):
//!
//! - `open` checks the address against `allowed_outbound_hosts` with the
//!   scheme `mqtt` (the address's own scheme when it names one); one that is
//!   not allowed is `connection-failed("address ... is not permitted")`, one
//!   rumqttc cannot read (no `client_id`, say) `invalid-address`;
//! - publishing connects on first use and completes as its QoS asks
//!   ([`client`]);
//! - an instance may hold 1024 connections at once (`too-many-connections`
//!   past that).
//!
//! Connections belong to their instance and close with it, as in Spin: an
//! MQTT client id names one session at the broker, so two instances must not
//! share one connection. The address comes from the guest at run time, so
//! the capability has no readiness dependency.
//!
//! - [`client`]: a guest's connection and how a publish completes;
//! - [`host`]: the interface's methods, on each instance's [`MqttInstance`].

pub mod bindings;
pub mod client;
pub mod host;

use std::sync::Arc;

use anyhow::Result;
use wasmtime::component::{HasSelf, Linker, ResourceTable};

use crate::capability::{Accessor, Capability};
use crate::component::ComponentContext;

/// The MQTT capability: connections belong to instances, so it keeps no
/// process-wide state.
pub struct Mqtt;

/// One instance's part: its open connections and what its component may
/// reach.
pub struct MqttInstance {
    component: Arc<ComponentContext>,
    table: ResourceTable,
    open_connections: usize,
}

impl Capability for Mqtt {
    type Instance = MqttInstance;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: Accessor<T, MqttInstance>,
    ) -> Result<()> {
        bindings::add_to_linker::<T, HasSelf<MqttInstance>>(linker, get)?;
        Ok(())
    }

    fn instance(&self, component: &Arc<ComponentContext>) -> MqttInstance {
        MqttInstance {
            component: component.clone(),
            table: ResourceTable::new(),
            open_connections: 0,
        }
    }
}
