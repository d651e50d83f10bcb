//! `allowed_outbound_hosts`: which addresses a component may connect to.
//!
//! Rules match the way Spin's do, so a manifest behaves the same on every
//! runtime: `scheme://host:port`, where the scheme may be `*`, the host is a
//! name compared as text (no DNS; `*` or a `*.suffix` wildcard allowed), an
//! IP address (`127.0.0.1`, `[::1]`) or an IP range (`10.0.0.0/8`,
//! `fd00::/8`), and the port may be a number, a `start..end` range or `*`,
//! defaulting to the scheme's well-known port (5432 for `postgres`).
//!
//! Addresses and ranges match IP addresses only, names match names only:
//! `tcp://localhost:5000` does not allow a socket to 127.0.0.1, and
//! `*://10.0.0.0/8:*` does not allow a name that resolves into it. Sockets
//! (`crate::sockets`) are checked by address as `tcp://` or `udp://`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`: names below it.
    Suffix(String),
    /// A name, lower-cased.
    Name(String),
    /// An IP range, or one address as a range of one.
    Network(IpNet),
}

/// What a connection is made to: a name or an IP address.
enum Destination {
    Name(String),
    Ip(IpAddr),
}

impl Destination {
    /// A host as URLs and connection strings spell it: a name, an IPv4
    /// address, or an IPv6 address with or without brackets.
    fn parse(host: &str) -> Destination {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => Destination::Ip(ip),
            Err(_) => Destination::Name(host.to_ascii_lowercase()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    pub fn none() -> Self {
        AllowedHosts { rules: Vec::new() }
    }

    /// Parses already-expanded entries (templates rendered).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let rules = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                Rule::parse(entry)
                    .with_context(|| format!("invalid allowed_outbound_hosts entry `{entry}`"))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(AllowedHosts { rules })
    }

    /// Whether `scheme://host:port` may be reached; `host` is a name or an
    /// IP address (IPv6 with or without brackets).
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = canonical_scheme(scheme);
        let destination = Destination::parse(host);
        self.rules
            .iter()
            .any(|rule| rule.matches(scheme, &destination, port))
    }

    /// Whether a socket address may be reached as `scheme` (`tcp`, `udp`).
    pub fn allows_address(&self, scheme: &str, address: SocketAddr) -> bool {
        let destination = Destination::Ip(address.ip());
        self.rules
            .iter()
            .any(|rule| rule.matches(scheme, &destination, address.port()))
    }

    /// Literal `host:port` pairs allowed for a scheme (wildcards excluded):
    /// the databases a component can reach, for readiness checks.
    pub fn literal_addresses(&self, scheme: &str) -> Vec<(String, u16)> {
        let scheme = canonical_scheme(scheme);
        self.rules
            .iter()
            .filter(|rule| rule.scheme.as_deref() == Some(scheme))
            .filter_map(|rule| match (&rule.host, &rule.port) {
                (HostPattern::Name(host), PortPattern::Range(lo, hi)) if lo == hi => {
                    Some((host.clone(), *lo))
                }
                (HostPattern::Network(net), PortPattern::Range(lo, hi))
                    if lo == hi && net.prefix_len() == net.max_prefix_len() =>
                {
                    let host = match net.addr() {
                        IpAddr::V4(ip) => ip.to_string(),
                        IpAddr::V6(ip) => format!("[{ip}]"),
                    };
                    Some((host, *lo))
                }
                _ => None,
            })
            .collect()
    }
}

fn canonical_scheme(scheme: &str) -> &str {
    match scheme {
        "postgresql" => "postgres",
        other => other,
    }
}

impl Rule {
    fn parse(entry: &str) -> Result<Option<Rule>> {
        if entry == "insecure:allow-all" {
            return Ok(Some(Rule {
                scheme: None,
                host: HostPattern::Any,
                port: PortPattern::Any,
            }));
        }
        let (scheme, rest) = entry
            .split_once("://")
            .context("expected `scheme://host[:port]`")?;
        if scheme.is_empty() {
            bail!("the scheme is empty");
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // The port follows the last colon, as in Spin: an IP range's prefix
        // length comes before it (`10.0.0.0/8:5432`, `fd00::/8:5432`).
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal in brackets has colons of its own.
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (rest, None),
        };
        if port.is_some_and(|p| p.contains('/')) {
            bail!("paths are not allowed");
        }
        let host = HostPattern::parse(host)?;
        let scheme = match scheme {
            "*" => None,
            s => Some(canonical_scheme(s).to_string()),
        };
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(p) if p.contains("..") => {
                let (lo, hi) = p.split_once("..").context("invalid port range")?;
                let lo: u16 = lo.parse().context("invalid port range start")?;
                let hi: u16 = hi.parse().context("invalid port range end")?;
                if lo >= hi {
                    bail!("empty port range {p}");
                }
                // Spin's ranges exclude the end, like Rust's.
                PortPattern::Range(lo, hi - 1)
            }
            Some(p) => {
                let port: u16 = p.parse().with_context(|| format!("invalid port `{p}`"))?;
                PortPattern::Range(port, port)
            }
            None => match scheme.as_deref().and_then(default_port) {
                Some(port) => PortPattern::Range(port, port),
                None => bail!("a port is required for this scheme"),
            },
        };
        Ok(Some(Rule { scheme, host, port }))
    }

    fn matches(&self, scheme: &str, destination: &Destination, port: u16) -> bool {
        if let Some(s) = &self.scheme
            && s != scheme
        {
            return false;
        }
        let host_ok = match (&self.host, destination) {
            (HostPattern::Any, _) => true,
            (HostPattern::Suffix(suffix), Destination::Name(name)) => {
                name.ends_with(suffix.as_str())
            }
            (HostPattern::Name(pattern), Destination::Name(name)) => pattern == name,
            (HostPattern::Network(net), Destination::Ip(ip)) => net.contains(ip),
            (HostPattern::Suffix(_) | HostPattern::Name(_), Destination::Ip(_))
            | (HostPattern::Network(_), Destination::Name(_)) => false,
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
        };
        host_ok && port_ok
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern> {
        if host.is_empty() {
            bail!("the host is empty");
        }
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        // `10.0.0.0/8`; host bits are ignored, as Spin truncates them.
        if let Ok(net) = host.parse::<IpNet>() {
            return Ok(HostPattern::Network(net));
        }
        if host.contains('/') {
            bail!("paths are not allowed");
        }
        if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let ip: Ipv6Addr = inner
                .parse()
                .with_context(|| format!("invalid IPv6 address `{inner}`"))?;
            return Ok(HostPattern::Network(IpNet::from(IpAddr::V6(ip))));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(HostPattern::Network(IpNet::from(IpAddr::V4(ip))));
        }
        if host.contains(':') {
            bail!("an IPv6 address must be in brackets, as in `[::1]`");
        }
        if let Some(domain) = host.strip_prefix("*.")
            && !domain.contains('*')
        {
            return Ok(HostPattern::Suffix(format!(
                ".{}",
                domain.to_ascii_lowercase()
            )));
        }
        if host.contains('*') {
            bail!("`*` is only allowed as the whole host or a `*.` prefix");
        }
        Ok(HostPattern::Name(host.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_defaults_to_5432_and_matches_host_text() {
        let allowed = AllowedHosts::parse(&["postgres://db.internal"]).unwrap();
        assert!(allowed.allows("postgres", "db.internal", 5432));
        assert!(allowed.allows("postgresql", "DB.internal", 5432));
        assert!(!allowed.allows("postgres", "db.internal", 5433));
        // No DNS: another name for the same machine is a different host.
        assert!(!allowed.allows("postgres", "127.0.0.1", 5432));
        assert!(!allowed.allows("https", "db.internal", 5432));
    }

    #[test]
    fn wildcards_and_ranges() {
        let allowed =
            AllowedHosts::parse(&["*://*.example.com:*", "http://localhost:8000..8002"]).unwrap();
        assert!(allowed.allows("https", "api.example.com", 1));
        assert!(!allowed.allows("https", "example.org", 443));
        assert!(allowed.allows("http", "localhost", 8001));
        assert!(!allowed.allows("http", "localhost", 8002));
        assert_eq!(
            allowed.literal_addresses("postgres"),
            Vec::<(String, u16)>::new()
        );
    }

    #[test]
    fn literal_addresses_lists_exact_postgres_hosts() {
        let allowed = AllowedHosts::parse(&["postgres://127.0.0.1:55432", "https://x.io"]).unwrap();
        assert_eq!(
            allowed.literal_addresses("postgres"),
            vec![("127.0.0.1".to_string(), 55432)]
        );
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in [
            "db:5432",
            "postgres://",
            "postgres://h:99999",
            "postgres://h/x",
            "foo://h",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(!AllowedHosts::none().allows("postgres", "h", 5432));
    }

    fn socket(address: &str) -> SocketAddr {
        address.parse().unwrap()
    }

    #[test]
    fn an_ip_range_allows_the_addresses_inside_it_on_its_ports() {
        let allowed = AllowedHosts::parse(&["*://127.0.0.0/24:7"]).unwrap();
        assert!(allowed.allows_address("tcp", socket("127.0.0.1:7")));
        assert!(allowed.allows_address("udp", socket("127.0.0.255:7")));
        assert!(!allowed.allows_address("tcp", socket("127.0.1.1:7")));
        assert!(!allowed.allows_address("tcp", socket("127.0.0.1:8")));
        // The same address written in a URL or a connection string.
        assert!(allowed.allows("postgres", "127.0.0.9", 7));
        // An IPv4-mapped IPv6 address is another address, as in Spin.
        assert!(!allowed.allows_address("tcp", socket("[::ffff:127.0.0.1]:7")));
    }

    #[test]
    fn an_ip_range_ignores_host_bits() {
        let allowed = AllowedHosts::parse(&["tcp://10.1.2.3/16:5000..5002"]).unwrap();
        assert!(allowed.allows_address("tcp", socket("10.1.200.7:5001")));
        assert!(!allowed.allows_address("tcp", socket("10.2.0.1:5001")));
        assert!(!allowed.allows_address("tcp", socket("10.1.0.1:5002")));
        assert!(!allowed.allows_address("udp", socket("10.1.0.1:5001")));
    }

    #[test]
    fn ipv6_ranges_and_addresses() {
        let allowed = AllowedHosts::parse(&["*://fd00::/8:443", "tcp://[::1]:7"]).unwrap();
        assert!(allowed.allows_address("tcp", socket("[fd12:3456::1]:443")));
        assert!(!allowed.allows_address("tcp", socket("[fe80::1]:443")));
        assert!(allowed.allows_address("tcp", socket("[::1]:7")));
        assert!(!allowed.allows_address("tcp", socket("[::2]:7")));
        assert!(!allowed.allows_address("tcp", socket("127.0.0.1:7")));
        assert!(allowed.allows("https", "[fd00::5]", 443));
        assert!(allowed.allows("https", "fd00::5", 443));
    }

    #[test]
    fn an_address_allows_only_itself() {
        let allowed = AllowedHosts::parse(&["*://127.0.0.1:6001"]).unwrap();
        assert!(allowed.allows_address("tcp", socket("127.0.0.1:6001")));
        assert!(!allowed.allows_address("tcp", socket("127.0.0.2:6001")));
        assert!(!allowed.allows_address("tcp", socket("127.0.0.1:6002")));
    }

    #[test]
    fn names_match_names_and_addresses_match_addresses() {
        let allowed = AllowedHosts::parse(&[
            "tcp://localhost:7",
            "*://*.example.com:7",
            "*://10.0.0.0/8:7",
        ])
        .unwrap();
        assert!(!allowed.allows_address("tcp", socket("127.0.0.1:7")));
        assert!(allowed.allows("tcp", "LocalHost", 7));
        assert!(!allowed.allows("tcp", "10.example.com.evil", 7));
        assert!(allowed.allows("tcp", "a.example.com", 7));
        assert!(!allowed.allows("tcp", "10.0.0.1.example.org", 7));
        assert!(allowed.allows("tcp", "10.0.0.1", 7));
    }

    #[test]
    fn the_wildcard_host_allows_any_address() {
        let allowed = AllowedHosts::parse(&["*://*:*"]).unwrap();
        assert!(allowed.allows_address("tcp", socket("192.0.2.1:1")));
        assert!(allowed.allows_address("udp", socket("[2001:db8::1]:53")));
        let tcp_only = AllowedHosts::parse(&["tcp://*:*"]).unwrap();
        assert!(!tcp_only.allows_address("udp", socket("192.0.2.1:53")));
    }

    #[test]
    fn malformed_ip_entries_are_refused() {
        for bad in [
            // No port, and `*` and `tcp` have no well-known one.
            "*://127.0.0.0/24",
            "tcp://127.0.0.1",
            // A prefix longer than the address.
            "*://127.0.0.0/33:7",
            // A path after the port.
            "*://127.0.0.0/24:7/x",
            // Brackets are how an IPv6 address is told from its port.
            "*://::1:7",
            "*://[::1]/128:7",
            "*://[not-an-address]:7",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_templated_range_is_parsed_after_its_variables_are_rendered() {
        use crate::manifest::Manifest;
        use crate::variables::resolve::Resolved;

        let manifest = Manifest::parse(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
addr_prefix = { default = "127.0.0.0" }
prefix_len = { default = "24" }
[component.c]
source = "c.wasm"
"#,
            std::path::Path::new("."),
        )
        .unwrap();
        let template = "*://{{ addr_prefix }}/{{ prefix_len }}:7";
        let rendered = |env: &dyn Fn(&str) -> Option<String>| {
            let variables = Resolved::resolve(&manifest, env).unwrap();
            AllowedHosts::parse(&[variables.render(&manifest, template).unwrap()]).unwrap()
        };

        let defaults = rendered(&|_| None);
        assert!(defaults.allows_address("tcp", socket("127.0.0.42:7")));
        assert!(!defaults.allows_address("tcp", socket("127.0.1.1:7")));

        let narrowed =
            rendered(&|name| (name == "SPIN_VARIABLE_PREFIX_LEN").then(|| "32".to_string()));
        assert!(narrowed.allows_address("tcp", socket("127.0.0.0:7")));
        assert!(!narrowed.allows_address("tcp", socket("127.0.0.42:7")));
    }
}
