//! `allowed_outbound_hosts`: which addresses a component may connect to.
//!
//! Rules match the way Spin's do, so a manifest behaves the same on every
//! runtime: `scheme://host:port`, where the scheme may be `*`, the host is
//! compared as text (no DNS; `*` or a `*.suffix` wildcard allowed), and the
//! port may be a number, a `start..end` range or `*`, defaulting to the
//! scheme's well-known port (5432 for `postgres`).

use anyhow::{Context, Result, bail};

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
    Suffix(String),
    Exact(String),
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

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = canonical_scheme(scheme);
        self.rules
            .iter()
            .any(|rule| rule.matches(scheme, host, port))
    }

    /// Literal `host:port` pairs allowed for a scheme (wildcards excluded):
    /// the databases a component can reach, for readiness checks.
    pub fn literal_addresses(&self, scheme: &str) -> Vec<(String, u16)> {
        let scheme = canonical_scheme(scheme);
        self.rules
            .iter()
            .filter(|rule| rule.scheme.as_deref() == Some(scheme))
            .filter_map(|rule| match (&rule.host, &rule.port) {
                (HostPattern::Exact(host), PortPattern::Range(lo, hi)) if lo == hi => {
                    Some((host.clone(), *lo))
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
        if rest.contains('/') {
            bail!("paths are not allowed");
        }
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal in brackets has colons of its own.
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (rest, None),
        };
        if host.is_empty() {
            bail!("the host is empty");
        }
        let host = match host {
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => bail!("`*` is only allowed as the whole host or a `*.` prefix"),
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
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

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(s) = &self.scheme
            && s != scheme
        {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(h) => *h == host,
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (lo..=hi).contains(&port),
        };
        host_ok && port_ok
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
}
