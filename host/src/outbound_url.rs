//! Whether an address a guest hands to a connection-opening interface
//! (outbound Redis, MQTT) is in its component's `allowed_outbound_hosts`,
//! read the way Spin 3.6 reads it (`OutboundUrl::parse` and
//! `OutboundAllowedHosts::check_url` in spin-outbound-networking-config):
//!
//! - the address is parsed as a URL; when that fails or yields no host, it is
//!   parsed again with `{scheme}://` in front (so `localhost:6379` is read as
//!   `redis://localhost:6379`);
//! - the rule is matched against the URL's own scheme (`rediss://` needs a
//!   `rediss` rule), its host, and its port or, when it names none, the
//!   scheme's well-known port (none for `rediss`, so such an address must
//!   name its port to be allowed);
//! - an address that cannot be read as a URL at all is not allowed.

use crate::outbound::{AllowedHosts, default_port};

/// The scheme, host and port an address is checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl OutboundUrl {
    /// Reads `address` as Spin does, `default_scheme` standing in when it
    /// names none.
    pub fn parse(address: &str, default_scheme: &str) -> Option<OutboundUrl> {
        let address = encode_userinfo(address);
        let parsed = match url::Url::parse(&address) {
            Ok(url) if url.has_host() => url,
            _ => url::Url::parse(&format!("{default_scheme}://{address}")).ok()?,
        };
        Some(OutboundUrl {
            scheme: parsed.scheme().to_string(),
            host: parsed
                .host_str()
                .filter(|host| !host.is_empty())?
                .to_string(),
            port: parsed.port(),
        })
    }

    /// Whether `allowed` lets a component connect here.
    pub fn allowed_by(&self, allowed: &AllowedHosts) -> bool {
        let Some(port) = self.port.or_else(|| default_port(&self.scheme)) else {
            return false;
        };
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        allowed.allows(&self.scheme, host, port)
    }
}

/// `scheme://host[:port]`: an address for logs, without its credentials.
impl std::fmt::Display for OutboundUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Whether `allowed` lets a component connect to `address` (read with
/// `default_scheme` when it names none).
pub fn allows(allowed: &AllowedHosts, address: &str, default_scheme: &str) -> bool {
    OutboundUrl::parse(address, default_scheme).is_some_and(|url| url.allowed_by(allowed))
}

/// Percent-encodes the user information of `address` (before the `@` that
/// precedes the path), as Spin does before parsing, so that a password with
/// characters a URL reserves does not hide the host.
fn encode_userinfo(address: &str) -> String {
    let Some(at) = address.find('@') else {
        return address.to_string();
    };
    let authority_start = address.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = address[authority_start..]
        .find('/')
        .map(|i| i + authority_start)
        .unwrap_or(usize::MAX);
    if at >= path_start || at < authority_start {
        return address.to_string();
    }
    let userinfo: String = address[authority_start..at]
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!(
        "{}{userinfo}{}",
        &address[..authority_start],
        &address[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rules: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(rules).unwrap()
    }

    #[test]
    fn a_port_left_out_is_the_schemes_well_known_one() {
        let rules = allowed(&["redis://cache", "mqtt://broker:1884"]);
        assert!(allows(&rules, "redis://cache", "redis"));
        assert!(allows(&rules, "redis://cache:6379/2", "redis"));
        assert!(!allows(&rules, "redis://cache:6380", "redis"));
        assert!(allows(&rules, "mqtt://broker:1884?client_id=a", "mqtt"));
        assert!(!allows(&rules, "mqtt://broker?client_id=a", "mqtt"));
    }

    #[test]
    fn an_address_without_a_scheme_is_read_with_the_interfaces_one() {
        let rules = allowed(&["redis://cache:6379"]);
        assert!(allows(&rules, "cache:6379", "redis"));
        assert!(!allows(&rules, "cache:6379", "mqtt"));
    }

    #[test]
    fn the_addresses_own_scheme_is_matched() {
        let rules = allowed(&["redis://cache:6379"]);
        assert!(!allows(&rules, "rediss://cache:6379", "redis"));
        // `rediss` has no well-known port: without one it is never allowed.
        assert!(!allows(
            &allowed(&["rediss://cache:*"]),
            "rediss://cache",
            "redis"
        ));
        assert!(allows(
            &allowed(&["rediss://cache:*"]),
            "rediss://cache:6380",
            "redis"
        ));
    }

    #[test]
    fn credentials_do_not_change_the_host() {
        let rules = allowed(&["redis://cache:6379"]);
        assert!(allows(&rules, "redis://user:p@ss@cache:6379", "redis"));
        assert!(allows(&rules, "redis://:secret@cache:6379/0", "redis"));
        assert!(!allows(&rules, "redis://cache@elsewhere:6379", "redis"));
    }

    #[test]
    fn an_address_without_a_host_is_not_allowed_even_by_a_wildcard() {
        let rules = allowed(&["*://*:*"]);
        assert!(!allows(&rules, "", "redis"));
        assert!(allows(&rules, "redis://[::1]:6379", "redis"));
    }
}
