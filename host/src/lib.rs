//! `wasmhost`: a production server for Spin HTTP applications.
//!
//! It reads a Spin manifest (`spin.toml`), runs the same WebAssembly
//! components `spin up` and SpinKube run, and implements the Spin interfaces
//! they import, with pooled outbound PostgreSQL. One module per capability:
//! `manifest`, `routing`, `variables`, `outbound` (+ `outbound_http`),
//! `postgres`, `runtime` (engine, limits, stores), `server` (the request
//! path), `admission` (which requests may run now), `instances` (fresh or
//! reused instances), `admin` (health and metrics), `migrate`; `compat` holds the
//! profiles that reproduce another runtime's observable behaviour.

pub mod admin;
pub mod admission;
pub mod bindings;
pub mod compat;
pub mod instances;
pub mod manifest;
pub mod metrics;
pub mod migrate;
pub mod outbound;
pub mod outbound_http;
pub mod postgres;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod telemetry;
pub mod variables;
