//! Answers every request with `hello`, and uses nothing but the response:
//! no Spin interface, only `wasi:http` and what Rust's standard library
//! imports (`wasi:cli`, which `wasmtime serve -S cli=y` provides), so
//! `wasmtime serve` runs the same `.wasm` as wasmhost (bench/run's host
//! benchmark compares the two, with and without instance reuse).

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello")
        .build())
}
