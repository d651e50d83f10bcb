//! The RealWorld "Conduit" API as a Spin HTTP component.
//!
//! One module per area of the spec (`users`, `profiles`, `articles` with
//! favorites, `comments`, `tags`), each owning its routes' handlers and SQL;
//! `router` maps requests to them, `error` renders every failure as the spec's
//! error body, `auth` owns tokens, the caller and passwords, `db` the
//! PostgreSQL access (through `spin_sdk::pg4`), `openapi` the generated
//! document, `web` the request and response plumbing they all share. `release`
//! holds what the `release-fixture` build adds (a second version of the
//! component for rehearsing releases; nothing in the product's build).
//!
//! Dependencies point one way: the router on the handlers, the handlers on
//! the modules they share (`auth`, `db`, `models`, `validate`, `web`), those
//! on `error`, and `error` on nothing of the crate. `scripts/module-graph
//! components/conduit` prints the graph and fails on a cycle.

mod articles;
mod auth;
mod comments;
mod db;
mod error;
mod models;
mod openapi;
mod profiles;
mod release;
mod router;
mod tags;
mod users;
mod validate;
mod web;

use spin_sdk::http::{IncomingRequest, Response};
use spin_sdk::http_component;

/// Reads the request itself, body bounded by [`web::MAX_BODY_BYTES`], rather
/// than letting the SDK collect a body of any size: the component's limits
/// must not depend on the runtime having one.
#[http_component]
async fn handle(incoming: IncomingRequest) -> Response {
    let response = match web::read_request(incoming).await {
        Ok(req) => router::dispatch(&req),
        Err(error) => error.into_response(),
    };
    release::with_version(response)
}
