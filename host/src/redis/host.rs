//! `fermyon:spin/redis@2.0.0` for one instance, as Spin 3.6's
//! crates/factor-outbound-redis/src/host.rs has it: the same checks, the
//! same errors, the same conversions of `execute`'s results.

use redis::{Cmd, FromRedisValue, RedisError, Value};
use wasmtime::component::Resource;

use super::RedisInstance;
use super::bindings::{self as r, Error, RedisParameter, RedisResult};
use super::client::{self, Connection, Link, Opened};
use crate::outbound_url::OutboundUrl;

/// Most connections one instance may hold open at once, as in Spin.
const MAX_CONNECTIONS: usize = 1024;

/// Largest result of `get` or `execute` handed to a guest, as in Spin
/// (`spin_world::MAX_HOST_BUFFERED_BYTES`).
const MAX_HOST_BUFFERED_BYTES: usize = 128 << 20;

/// Where one command runs.
struct Target {
    connection: redis::aio::MultiplexedConnection,
    /// The shared connection it is, with its address, to forget if it
    /// breaks.
    shared: Option<(String, Link)>,
}

impl RedisInstance {
    /// Where `command` runs on `handle`: its own connection when it has one
    /// or the command needs one (opened now), else the shared one.
    async fn target(
        &mut self,
        handle: &Resource<Connection>,
        command: &str,
    ) -> wasmtime::Result<Result<Target, RedisError>> {
        let connection = self.table.get_mut(handle)?;
        if connection.own.is_none() && client::needs_own_connection(command) {
            match client::connect(&connection.info, None).await {
                Ok(link) => connection.own = Some(link),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(match (&connection.own, &connection.shared) {
            (Some(own), _) => Target {
                connection: own.connection.clone(),
                shared: None,
            },
            (None, Some(shared)) => Target {
                connection: shared.connection.clone(),
                shared: Some((connection.address.clone(), shared.clone())),
            },
            (None, None) => return Err(wasmtime::format_err!("Redis connection without a link")),
        }))
    }

    /// Runs `command` (named `name`) on `handle`'s connection.
    async fn run<T: FromRedisValue>(
        &mut self,
        handle: &Resource<Connection>,
        name: &str,
        command: Cmd,
    ) -> wasmtime::Result<Result<T, RedisError>> {
        let mut target = match self.target(handle, name).await? {
            Ok(target) => target,
            Err(e) => return Ok(Err(e)),
        };
        let result = command.query_async::<T>(&mut target.connection).await;
        if let (Err(e), Some((address, link))) = (&result, &target.shared)
            && client::breaks_connection(e)
        {
            tracing::warn!(component = %self.component.id, error = %e, "shared Redis connection failed; the next open reconnects");
            self.redis.connections.forget(address, link);
        }
        Ok(result)
    }
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl r::Host for RedisInstance {}

impl r::HostConnection for RedisInstance {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, Error>> {
        if !crate::outbound_url::allows(&self.component.allowed_hosts, &address, "redis") {
            tracing::warn!(
                component = %self.component.id,
                address = %OutboundUrl::parse(&address, "redis").map(|url| url.to_string()).unwrap_or_else(|| "(not a URL)".into()),
                "outbound Redis connection denied: not in allowed_outbound_hosts"
            );
            return Ok(Err(Error::InvalidAddress));
        }
        let Ok(redis_client) = redis::Client::open(address.as_str()) else {
            return Ok(Err(Error::InvalidAddress));
        };
        let info = redis_client.get_connection_info().clone();
        let opened = match self.redis.connections.open(&address, &info).await {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(component = %self.component.id, server = %client::label(&info), error = %e, "cannot connect to Redis");
                return Ok(Err(other(e)));
            }
        };
        if self.open_connections >= MAX_CONNECTIONS {
            return Ok(Err(Error::TooManyConnections));
        }
        let (shared, own) = match opened {
            Opened::Shared(link) => (Some(link), None),
            Opened::Own(link) => (None, Some(link)),
        };
        let handle = self.table.push(Connection {
            address,
            info,
            shared,
            own,
        })?;
        self.open_connections += 1;
        Ok(Ok(handle))
    }

    async fn publish(
        &mut self,
        handle: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let command = Cmd::publish(&channel, &payload);
        Ok(self
            .run::<()>(&handle, "PUBLISH", command)
            .await?
            .map_err(other))
    }

    async fn get(
        &mut self,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let value = match self
            .run::<Option<Vec<u8>>>(&handle, "GET", Cmd::get(&key))
            .await?
        {
            Ok(value) => value,
            Err(e) => return Ok(Err(other(e))),
        };
        let size = std::mem::size_of::<Option<Vec<u8>>>() + value.as_ref().map_or(0, Vec::len);
        Ok(if size > MAX_HOST_BUFFERED_BYTES {
            Err(too_large())
        } else {
            Ok(value)
        })
    }

    async fn set(
        &mut self,
        handle: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .run::<()>(&handle, "SET", Cmd::set(&key, &value))
            .await?
            .map_err(other))
    }

    async fn incr(
        &mut self,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<i64, Error>> {
        Ok(self
            .run::<i64>(&handle, "INCRBY", Cmd::incr(&key, 1))
            .await?
            .map_err(other))
    }

    async fn del(
        &mut self,
        handle: Resource<Connection>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(self
            .run::<u32>(&handle, "DEL", Cmd::del(&keys))
            .await?
            .map_err(other))
    }

    async fn sadd(
        &mut self,
        handle: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(self
            .run::<u32>(&handle, "SADD", Cmd::sadd(&key, &values))
            .await?
            .map_err(|e| {
                // Spin's one use of `type-error`: an answer that is not a
                // count.
                if matches!(
                    e.kind(),
                    redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
                ) {
                    Error::TypeError
                } else {
                    other(e)
                }
            }))
    }

    async fn smembers(
        &mut self,
        handle: Resource<Connection>,
        key: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self
            .run::<Vec<String>>(&handle, "SMEMBERS", Cmd::smembers(&key))
            .await?
            .map_err(other))
    }

    async fn srem(
        &mut self,
        handle: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> wasmtime::Result<Result<u32, Error>> {
        Ok(self
            .run::<u32>(&handle, "SREM", Cmd::srem(&key, &values))
            .await?
            .map_err(other))
    }

    async fn execute(
        &mut self,
        handle: Resource<Connection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> wasmtime::Result<Result<Vec<RedisResult>, Error>> {
        let mut cmd = redis::cmd(&command);
        for argument in &arguments {
            match argument {
                RedisParameter::Int64(v) => cmd.arg(v),
                RedisParameter::Binary(v) => cmd.arg(v),
            };
        }
        let value = match self.run::<Value>(&handle, &command, cmd).await? {
            Ok(value) => value,
            Err(e) => return Ok(Err(other(e))),
        };
        let mut results = Vec::new();
        if let Err(e) = flatten(&mut results, value) {
            return Ok(Err(e));
        }
        let size = std::mem::size_of::<Vec<RedisResult>>()
            + results.iter().map(memory_size).sum::<usize>();
        Ok(if size > MAX_HOST_BUFFERED_BYTES {
            Err(too_large())
        } else {
            Ok(results)
        })
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open_connections -= 1;
        Ok(())
    }
}

fn too_large() -> Error {
    Error::Other(format!(
        "query result exceeds limit of {MAX_HOST_BUFFERED_BYTES} bytes"
    ))
}

/// Appends `value` to `results` as Spin does: arrays and sets flattened,
/// `OK` as the status `OK`, doubles and big numbers as their text, booleans
/// as 0 or 1; maps, attributes, verbatim strings and pushes are refused.
fn flatten(results: &mut Vec<RedisResult>, value: Value) -> Result<(), Error> {
    let unsupported = |what: &str| {
        Error::Other(format!(
            "Could not convert Redis response - TypeError: Redis {what} not supported"
        ))
    };
    match value {
        Value::Nil => results.push(RedisResult::Nil),
        Value::Int(v) => results.push(RedisResult::Int64(v)),
        Value::BulkString(bytes) => results.push(RedisResult::Binary(bytes)),
        Value::SimpleString(s) => results.push(RedisResult::Status(s)),
        Value::Okay => results.push(RedisResult::Status("OK".into())),
        Value::Array(values) | Value::Set(values) => {
            for value in values {
                flatten(results, value)?;
            }
        }
        Value::Double(v) => results.push(RedisResult::Binary(v.to_string().into_bytes())),
        Value::Boolean(v) => results.push(RedisResult::Int64(i64::from(v))),
        // Its decimal digits, as the text Spin's `to_string` gives.
        Value::BigNumber(digits) => results.push(RedisResult::Binary(digits)),
        Value::Map(_) => return Err(unsupported("Map type is")),
        Value::Attribute { .. } => return Err(unsupported("Attribute type is")),
        Value::VerbatimString { .. } => return Err(unsupported("string with format attribute is")),
        Value::Push { .. } => return Err(unsupported("Pub/Sub types are")),
        Value::ServerError(e) => {
            return Err(Error::Other(format!("Server error - ResponseError: {e:?}")));
        }
        other => return Err(Error::Other(format!("unsupported Redis value {other:?}"))),
    }
    Ok(())
}

fn memory_size(value: &RedisResult) -> usize {
    std::mem::size_of::<RedisResult>()
        + match value {
            RedisResult::Nil | RedisResult::Int64(_) => 0,
            RedisResult::Binary(b) => b.len(),
            RedisResult::Status(s) => s.len(),
        }
}
