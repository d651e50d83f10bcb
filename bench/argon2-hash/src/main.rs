//! Hashes a password with the Conduit component's parameters (argon2id,
//! m=19 MiB, t=2, p=1; components/conduit/src/auth/password.rs) a number of
//! times and prints one line of JSON: the median and best milliseconds per
//! hash.
//!
//!   argon2-hash [ITERATIONS]
//!
//! bench/run runs the native build and the wasm32-wasip2 build (under
//! `wasmtime run`) of this same source, so the two figures differ only by
//! the compiler and the runtime. Every hash gets its own salt and its own
//! memory block, as at a login; after the first, the allocator hands the
//! block out again, so neither figure includes faulting in fresh pages.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::time::Instant;

fn main() -> Result<(), String> {
    let iterations: usize = match std::env::args().nth(1) {
        Some(raw) => raw.parse().map_err(|_| format!("not a count: {raw}"))?,
        None => 20,
    };
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| e.to_string())?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut millis = Vec::with_capacity(iterations);
    for round in 0..iterations.max(1) {
        let salt = SaltString::encode_b64(&(round as u64).to_le_bytes().repeat(2))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let hash = hasher
            .hash_password(b"benchmark-password", &salt)
            .map_err(|e| e.to_string())?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(hash);
    }
    millis.sort_by(f64::total_cmp);
    println!(
        "{{\"iterations\": {}, \"median_ms\": {:.3}, \"min_ms\": {:.3}, \"params\": \"argon2id m=19456 t=2 p=1\"}}",
        millis.len(),
        millis[millis.len() / 2],
        millis[0]
    );
    Ok(())
}
