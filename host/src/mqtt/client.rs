//! A guest's MQTT connection: a `rumqttc` client (MQTT 3.1.1) and its event
//! loop, as Spin 3.6's `NetworkedMqttClient` has them
//! (crates/factor-outbound-mqtt/src/lib.rs).
//!
//! Opening connects nothing: the event loop connects on the first publish
//! (so an unreachable broker is a publish's `connection-failed`, not
//! `open`'s), and it is driven only while a publish waits, until the
//! publish is done for its QoS: written to the socket for at-most-once,
//! acknowledged (PUBACK) for at-least-once, completed (PUBCOMP) for
//! exactly-once. A failure while it waits is `connection-failed`; the next
//! publish on the same connection connects again.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};

/// Why opening or publishing failed, as the interface's errors name it.
#[derive(Debug)]
pub enum Failure {
    InvalidAddress,
    ConnectionFailed(String),
    Other(String),
}

/// Requests the client may queue before the event loop takes them, as in
/// Spin.
const CHANNEL_CAPACITY: usize = 1000;

pub struct Connection {
    client: AsyncClient,
    event_loop: EventLoop,
}

impl Connection {
    /// A connection to the broker `address` names
    /// (`mqtt://host:port?client_id=...`, with rumqttc's other query
    /// options), not yet connected; `invalid-address` when rumqttc cannot
    /// read it.
    pub fn new(
        address: &str,
        username: String,
        password: String,
        keep_alive: Duration,
    ) -> Result<Connection, Failure> {
        // rumqttc asserts on some options instead of refusing them (an
        // `inflight_num` of 0, a kept session without a client id): such an
        // address is invalid, not a reason for the host to panic.
        let parsed = std::panic::catch_unwind(|| MqttOptions::parse_url(address));
        let mut options = match parsed {
            Ok(Ok(options)) => options,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "invalid MQTT address");
                return Err(Failure::InvalidAddress);
            }
            Err(_) => return Err(Failure::InvalidAddress),
        };
        options.set_credentials(username, password);
        options.set_keep_alive(keep_alive);
        let (client, event_loop) = AsyncClient::new(options, CHANNEL_CAPACITY);
        Ok(Connection { client, event_loop })
    }

    /// Publishes `payload` to `topic`, connecting first when not connected,
    /// and returns once the publish is done for `qos`.
    pub async fn publish(
        &mut self,
        topic: String,
        qos: QoS,
        payload: Vec<u8>,
    ) -> Result<(), Failure> {
        self.client
            .publish_bytes(topic, qos, false, payload.into())
            .await
            .map_err(|e| Failure::Other(e.to_string()))?;
        loop {
            let event = self
                .event_loop
                .poll()
                .await
                .map_err(|e| Failure::ConnectionFailed(e.to_string()))?;
            match (qos, event) {
                (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
                | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => return Ok(()),
                _ => continue,
            }
        }
    }
}
