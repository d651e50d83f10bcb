//! The local stack without Docker: a private PostgreSQL cluster (or
//! `DATABASE_URL`), several `wasmhost serve` replicas on loopback ports and the
//! real nginx with the project's `docker/nginx/nginx.conf` in front.
//!
//! Used by the `devstack up` command, by the end-to-end tests in `tests/`, and
//! by API tests that need a scratch database ([`postgres::ScratchDatabase`]).
//! Every process it starts lives in its own process group and is killed when
//! its handle is dropped, so a failing test leaves nothing running.

pub mod docker;
pub mod nginx;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod replica;
pub mod stack;

pub use process::{Echo, kill_children_on_signal};
pub use stack::{Database, Secrets, Stack, StackConfig, free_port};

/// The project root as seen from this crate's sources (`devstack/..`).
pub fn project_root() -> std::path::PathBuf {
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.to_path_buf())
}
