//! Loopback ports for the servers the stack and the tests start.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// A TCP port on 127.0.0.1 that is free now, for a server started next.
///
/// Ports come from below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), where neither outgoing connections nor
/// programs binding port 0 (Docker's port proxies, other tests) are given
/// theirs, from a random start, and never twice in one process: between
/// this check and the server's own bind nothing else on the machine is
/// handed the same port by the kernel.
pub fn free_port() -> Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (low, high) = (10_000u16, ephemeral_low().clamp(10_001, 65_535));
    let span = u32::from(high - low);
    let start = {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        (hasher.finish() % u64::from(span)) as u32
    };
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for step in 0..span {
        let port = low + ((start + step) % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port between {low} and {high}")
}

/// The first port of the kernel's ephemeral range (32768 where unreadable).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `base + offset`, or a free port when `base` is 0.
pub fn port_or_free(base: u16, offset: usize) -> Result<u16> {
    if base == 0 {
        free_port()
    } else {
        let port = usize::from(base) + offset;
        u16::try_from(port).context("port out of range")
    }
}
