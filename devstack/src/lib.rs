//! The local stack without Docker: a private PostgreSQL cluster (or
//! `DATABASE_URL`), several `wasmhost serve` replicas on loopback ports and the
//! real nginx with the project's `docker/nginx/nginx.conf` in front.
//!
//! Used by the `devstack up` command, by the end-to-end tests in `tests/`, and
//! by API tests that need a scratch database ([`postgres::ScratchDatabase`]).
//! Every process it starts lives in its own process group and is killed when
//! its handle is dropped, so a failing test leaves nothing running.
//!
//! Dependencies point one way: [`stack`] starts the parts ([`postgres`],
//! [`replica`], [`nginx`]); they and [`prometheus`] run their processes
//! through [`process`]; the tests' PostgreSQL container goes through
//! [`docker`]; and everything may use the leaves: [`config`] (the only reader
//! of environment variables), [`ports`] and [`secrets`]. No module names this
//! root: the re-exports below are for callers outside the crate.

pub mod config;
pub mod docker;
pub mod nginx;
pub mod otlp;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod replica;
pub mod secrets;
pub mod stack;

pub use config::project_root;
pub use ports::free_port;
pub use process::{Echo, kill_children_on_signal};
pub use secrets::{Secrets, random_hex};
pub use stack::{Database, Stack, StackConfig};
