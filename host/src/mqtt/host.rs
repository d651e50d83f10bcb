//! `fermyon:spin/mqtt@2.0.0` for one instance, as Spin 3.6's
//! crates/factor-outbound-mqtt/src/host.rs has it.

use std::time::Duration;

use wasmtime::component::Resource;

use super::MqttInstance;
use super::bindings::{self as m, Error, Qos};
use super::client::{Connection, Failure};
use crate::outbound_url::OutboundUrl;

/// Most connections one instance may hold open at once, as in Spin.
const MAX_CONNECTIONS: usize = 1024;

impl m::Host for MqttInstance {}

impl m::HostConnection for MqttInstance {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !crate::outbound_url::allows(&self.component.allowed_hosts, &address, "mqtt") {
            tracing::warn!(
                component = %self.component.id,
                address = %OutboundUrl::parse(&address, "mqtt").map(|url| url.to_string()).unwrap_or_else(|| "(not a URL)".into()),
                "outbound MQTT connection denied: not in allowed_outbound_hosts"
            );
            // Spin's wording, the address included.
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {address} is not permitted"
            ))));
        }
        let connection = match Connection::new(
            &address,
            username,
            password,
            Duration::from_secs(keep_alive_interval_in_secs),
        ) {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(e.into())),
        };
        if self.open_connections >= MAX_CONNECTIONS {
            return Ok(Err(Error::TooManyConnections));
        }
        let handle = self.table.push(connection)?;
        self.open_connections += 1;
        Ok(Ok(handle))
    }

    async fn publish(
        &mut self,
        handle: Resource<Connection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        let connection = self.table.get_mut(&handle)?;
        let qos = match qos {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        };
        let published = connection.publish(topic, qos, payload).await;
        if let Err(e) = &published {
            tracing::debug!(component = %self.component.id, error = ?e, "MQTT publish failed");
        }
        Ok(published.map_err(Into::into))
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open_connections -= 1;
        Ok(())
    }
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidAddress => Error::InvalidAddress,
            Failure::ConnectionFailed(text) => Error::ConnectionFailed(text),
            Failure::Other(text) => Error::Other(text),
        }
    }
}
