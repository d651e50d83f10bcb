//! `wasmhost`: a production server for Spin HTTP applications.
//!
//! It reads a Spin manifest (`spin.toml`), runs the same WebAssembly
//! components `spin up` and SpinKube run, and implements the Spin interfaces
//! they import, with pooled outbound PostgreSQL.
//!
//! The request path: `server` (HTTP in, routing by `routing`, admission by
//! `admission`, an instance from `instances`, the response out), on the
//! `runtime` (engine, limits, stores) and the serving `application` (what
//! the manifest defines, swapped whole by `reload`). What components may
//! import beyond WASI are capabilities, each a unit of its own in the shape
//! `capability` describes: `variables`, `postgres`, `key_value`, `sqlite`,
//! `redis`, `mqtt`, configured by `runtime_config`; `outbound` (+
//! `outbound_http`, `outbound_url` for the addresses Redis and MQTT connect
//! to, and `sockets` for `wasi:sockets`) holds the allowed-hosts rules they
//! share, `component` what each component is given. Around them:
//! `manifest`, `admin` (health, metrics and reloads), `migrate`,
//! `telemetry`, and `compat`, the profiles that reproduce another runtime's
//! observable behaviour.

pub mod admin;
pub mod admission;
pub mod application;
pub mod capability;
pub mod compat;
pub mod component;
pub mod guest_memory;
pub mod instances;
pub mod key_value;
pub mod manifest;
pub mod metrics;
pub mod migrate;
pub mod mqtt;
pub mod outbound;
pub mod outbound_http;
pub mod outbound_url;
pub mod postgres;
pub mod redis;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod runtime_config;
pub mod server;
pub mod sockets;
pub mod sqlite;
pub mod telemetry;
pub mod variables;
