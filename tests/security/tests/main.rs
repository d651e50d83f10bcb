//! Attacks on the deployment the way the internet will make them:
//! forged and malformed credentials, hostile strings and JSON, oversized,
//! slow and idle connections and login floods through the real nginx, the
//! sandbox seen from inside a component, secrets in logs, and the database
//! roles' privileges.
//!
//! Needs `target/release/wasmhost`, the components built for wasm32-wasip2
//! (and the host's `test-app` fixture for the sandbox test), nginx and the
//! PostgreSQL server binaries, and a PostgreSQL server from
//! `devstack::postgres::test_database_url` (TEST_DATABASE_URL when set, else a
//! container when a Docker engine answers, else the local server on 5432).
//! The README's test command builds and installs them.

mod abuse;
mod auth;
mod injection;
mod privilege;
mod sandbox;
mod support;
