//! `wasi:sockets` as Spin 3.6 gives it: a component may open TCP
//! connections and send UDP datagrams to the addresses its
//! `allowed_outbound_hosts` allow, checked as `tcp://ip:port` and
//! `udp://ip:port` (so `*://` entries cover both); it may not listen, and it
//! may not resolve names (`ip-name-lookup` fails with
//! `permanent-resolver-failure`), so a socket is always opened to an address.
//! A refused address is `access-denied` to the guest (`EACCES` through
//! wasi-libc).
//!
//! Spin 3.6 runs on wasmtime 42, whose address checks came in fewer kinds
//! than wasmtime 48's; each of ours is answered as Spin's answer came out:
//! - a TCP connect is checked as `tcp`;
//! - a TCP bind is refused, except the wildcard address with port 0: that is
//!   the ephemeral bind wasmtime 48 checks before every connect of an unbound
//!   socket, which wasmtime 42 did not check;
//! - listening and accepting are refused (Spin reached neither: WASI 0.2
//!   listens only on a bound socket, and binding is refused);
//! - a UDP bind and every datagram sent (connected or not) are checked as
//!   `udp`, with the bind checking the local address as Spin does (so UDP
//!   needs a rule that covers the wildcard address, such as `udp://*:*`);
//! - received datagrams are not filtered, as Spin's were not.
//!
//! The check runs on the request path, once per socket operation: a scan of
//! the component's rules, parsed once at start and shared by its instances
//! (a store costs one reference count and the closure wasmtime keeps).

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use crate::component::ComponentContext;
use crate::outbound::AllowedHosts;

/// Lets an instance of `component` use TCP and UDP as Spin does.
pub fn configure(wasi: &mut WasiCtxBuilder, component: &Arc<ComponentContext>) {
    let component = component.clone();
    wasi.allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false)
        .socket_addr_check(move |address, address_use| {
            let allowed = permits(&component.allowed_hosts, address, address_use);
            if !allowed {
                tracing::warn!(
                    component = %component.id,
                    %address,
                    r#use = ?address_use,
                    "socket address denied: not in allowed_outbound_hosts"
                );
            }
            Box::pin(std::future::ready(allowed))
        });
}

/// Whether `allowed` lets a component use `address` as `address_use`.
pub fn permits(allowed: &AllowedHosts, address: SocketAddr, address_use: SocketAddrUse) -> bool {
    match address_use {
        SocketAddrUse::TcpConnect => allowed.allows_address("tcp", address),
        SocketAddrUse::UdpBind | SocketAddrUse::UdpSend => allowed.allows_address("udp", address),
        SocketAddrUse::TcpBind => is_ephemeral_bind(address),
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        SocketAddrUse::UdpReceive => true,
    }
}

/// The bind the OS makes for a connect: any local address, any port.
fn is_ephemeral_bind(address: SocketAddr) -> bool {
    address.ip().is_unspecified() && address.port() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(allowed).unwrap()
    }

    fn socket(address: &str) -> SocketAddr {
        address.parse().unwrap()
    }

    #[test]
    fn tcp_connects_to_allowed_addresses_only() {
        let c = rules(&["*://127.0.0.0/24:7"]);
        assert!(permits(&c, socket("0.0.0.0:0"), SocketAddrUse::TcpBind));
        assert!(permits(&c, socket("[::]:0"), SocketAddrUse::TcpBind));
        assert!(permits(
            &c,
            socket("127.0.0.1:7"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permits(
            &c,
            socket("127.0.0.1:8"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permits(
            &c,
            socket("127.0.1.1:7"),
            SocketAddrUse::TcpConnect
        ));
    }

    #[test]
    fn nothing_listens_even_with_every_address_allowed() {
        let c = rules(&["*://*:*"]);
        assert!(!permits(&c, socket("127.0.0.1:7"), SocketAddrUse::TcpBind));
        assert!(!permits(&c, socket("0.0.0.0:8080"), SocketAddrUse::TcpBind));
        assert!(!permits(&c, socket("0.0.0.0:0"), SocketAddrUse::TcpListen));
        assert!(!permits(
            &c,
            socket("127.0.0.1:7"),
            SocketAddrUse::TcpAccept
        ));
    }

    #[test]
    fn udp_binds_and_sends_are_checked_as_udp() {
        let c = rules(&["udp://*:*", "tcp://192.0.2.1:53"]);
        assert!(permits(&c, socket("0.0.0.0:0"), SocketAddrUse::UdpBind));
        assert!(permits(&c, socket("192.0.2.1:53"), SocketAddrUse::UdpSend));
        let tcp_only = rules(&["tcp://*:*"]);
        assert!(!permits(
            &tcp_only,
            socket("0.0.0.0:0"),
            SocketAddrUse::UdpBind
        ));
        assert!(!permits(
            &tcp_only,
            socket("192.0.2.1:53"),
            SocketAddrUse::UdpSend
        ));
        // What arrives on a socket the component may use is not filtered.
        assert!(permits(
            &tcp_only,
            socket("192.0.2.1:53"),
            SocketAddrUse::UdpReceive
        ));
    }
}
