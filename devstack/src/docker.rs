//! The few things the tests ask a local Docker engine directly, before and
//! beside `testcontainers`: whether an engine answers and which API version
//! it speaks, whether an image exists locally, and a small relay that lets
//! `testcontainers` talk to engines older than its client library.
//!
//! `testcontainers` 0.28 uses bollard 0.21, which sends every request under
//! API version 1.53 (`/v1.53/...`) and has no version negotiation that works
//! with an older engine (bollard's own `negotiate_version` asks
//! `/v1.53/version`). Engines refuse versions newer than theirs, so Debian
//! 12's docker.io 20.10 (API 1.41) answers every request with "client version
//! 1.53 is too new". [`ApiVersionRelay`] listens on a private Unix socket,
//! rewrites the version in each request line to the engine's, and passes the
//! bytes through unchanged otherwise.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// The default socket of a local engine.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A Docker engine API version, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(ApiVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Where the engine listens, as `testcontainers` would find it: `DOCKER_HOST`
/// when set, else the default socket.
#[derive(Debug, PartialEq, Eq)]
pub enum EngineAddress {
    Unix(PathBuf),
    /// A `DOCKER_HOST` that is not a Unix socket (tcp, ssh, ...).
    Other(String),
}

impl EngineAddress {
    /// The address `docker_host` (the value of `DOCKER_HOST`) names; unset or
    /// blank means the default socket.
    pub fn from_docker_host(docker_host: Option<&str>) -> EngineAddress {
        match docker_host {
            Some(host) if !host.trim().is_empty() => match host.strip_prefix("unix://") {
                Some(path) => EngineAddress::Unix(PathBuf::from(path)),
                None => EngineAddress::Other(host.to_owned()),
            },
            _ => EngineAddress::Unix(PathBuf::from(DEFAULT_SOCKET)),
        }
    }
}

/// A local engine reached through its Unix socket.
#[derive(Clone, Debug)]
pub struct Engine {
    pub socket: PathBuf,
    /// The newest API version the engine speaks.
    pub api_version: ApiVersion,
    /// The engine's own version, e.g. `20.10.24+dfsg1`.
    pub version: String,
}

impl Engine {
    /// Asks the engine at `socket` for its version (`GET /version`, without
    /// a version prefix, which every engine answers). An error means that no
    /// engine answers there.
    pub fn probe(socket: &Path, timeout: Duration) -> Result<Engine> {
        let (status, body) = get(socket, "/version", timeout)?;
        if status != 200 {
            bail!("GET /version answered {status}");
        }
        let version: serde_json::Value =
            serde_json::from_slice(&body).context("GET /version did not answer JSON")?;
        let api_version = version["ApiVersion"]
            .as_str()
            .and_then(ApiVersion::parse)
            .context("GET /version has no ApiVersion")?;
        Ok(Engine {
            socket: socket.to_path_buf(),
            api_version,
            version: version["Version"].as_str().unwrap_or("unknown").to_owned(),
        })
    }

    /// Whether the engine has `image` (`name:tag`) locally.
    pub fn has_image(&self, image: &str) -> Result<bool> {
        let (status, body) = get(
            &self.socket,
            &format!("/images/{image}/json"),
            Duration::from_secs(10),
        )?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            _ => bail!(
                "GET /images/{image}/json answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

/// One unversioned HTTP/1.0 GET over the Unix socket (HTTP/1.0: the engine
/// answers without chunked encoding and closes the connection).
fn get(socket: &Path, path: &str, timeout: Duration) -> Result<(u16, Vec<u8>)> {
    let mut stream = StdUnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer to GET {path}"))?;
    let head_end = find(&response, b"\r\n\r\n").context("incomplete HTTP answer")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("HTTP answer without a status code")?;
    Ok((status, response[head_end + 4..].to_vec()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Relays connections from a private Unix socket to the engine, rewriting the
/// API version of each request to `version` (see the module comment).
///
/// Each relayed request gets `Connection: close`, so the engine closes the
/// connection after its answer and the client opens a new one for its next
/// request: every request line passes through the rewrite, and the rest of
/// each connection (request body, streamed answer such as followed logs) is
/// copied byte for byte.
pub struct ApiVersionRelay {
    pub socket: PathBuf,
}

/// The longest request head the relay accepts.
const MAX_HEAD: usize = 64 * 1024;

impl ApiVersionRelay {
    /// Listens on `socket` (whose directory must exist and be private) and
    /// relays to `engine` in tasks of the current tokio runtime, which must
    /// outlive every client of the relay.
    pub fn start(socket: &Path, engine: &Engine) -> Result<ApiVersionRelay> {
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        let upstream = engine.socket.clone();
        let version = engine.api_version;
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Out of file descriptors, for example: try again later.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, version).await;
                });
            }
        });
        Ok(ApiVersionRelay {
            socket: socket.to_path_buf(),
        })
    }
}

async fn relay(mut client: UnixStream, upstream: &Path, version: ApiVersion) -> Result<()> {
    let mut buffer = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            bail!("request head longer than {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 4096];
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = std::str::from_utf8(&buffer[..head_end]).context("request head is not UTF-8")?;
    let rewritten = rewrite_head(head, version);
    let mut engine = UnixStream::connect(upstream).await?;
    engine.write_all(rewritten.as_bytes()).await?;
    engine.write_all(&buffer[head_end + 4..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut engine).await?;
    Ok(())
}

/// The request head (without its final empty line) with the API version of
/// the path replaced by `version` and `Connection: close`, plus the empty line.
fn rewrite_head(head: &str, version: ApiVersion) -> String {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut out = String::with_capacity(head.len() + 32);
    let mut parts = request_line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), Some(protocol)) => {
            out.push_str(&format!(
                "{method} {} {protocol}\r\n",
                with_api_version(path, version)
            ));
        }
        _ => {
            out.push_str(request_line);
            out.push_str("\r\n");
        }
    }
    for line in lines {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// `/v1.53/containers/json` becomes `/v1.41/containers/json`; paths without a
/// version stay as they are.
fn with_api_version(path: &str, version: ApiVersion) -> String {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((number, tail)) = rest.split_once('/')
        && ApiVersion::parse(number).is_some()
    {
        return format!("/v{version}/{tail}");
    }
    path.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_41: ApiVersion = ApiVersion {
        major: 1,
        minor: 41,
    };

    #[test]
    fn the_relay_rewrites_the_version_and_closes_the_connection() {
        let head = "POST /v1.53/containers/create?name=x HTTP/1.1\r\n\
                    content-type: application/json\r\n\
                    connection: keep-alive\r\n\
                    content-length: 2";
        assert_eq!(
            rewrite_head(head, V1_41),
            "POST /v1.41/containers/create?name=x HTTP/1.1\r\n\
             content-type: application/json\r\n\
             content-length: 2\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn paths_without_a_version_are_left_alone() {
        assert_eq!(with_api_version("/_ping", V1_41), "/_ping");
        assert_eq!(with_api_version("/volumes/x", V1_41), "/volumes/x");
        assert_eq!(
            with_api_version("/v1.53/images/postgres:17/json", V1_41),
            "/v1.41/images/postgres:17/json"
        );
    }

    #[test]
    fn docker_host_names_a_unix_socket_or_something_else_and_blank_means_the_default() {
        let default = EngineAddress::Unix(PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(EngineAddress::from_docker_host(None), default);
        assert_eq!(EngineAddress::from_docker_host(Some(" ")), default);
        assert_eq!(
            EngineAddress::from_docker_host(Some("unix:///run/user/1000/docker.sock")),
            EngineAddress::Unix(PathBuf::from("/run/user/1000/docker.sock"))
        );
        assert_eq!(
            EngineAddress::from_docker_host(Some("tcp://127.0.0.1:2375")),
            EngineAddress::Other("tcp://127.0.0.1:2375".into())
        );
    }

    #[test]
    fn api_versions_compare_numerically() {
        assert!(ApiVersion::parse("1.41") < ApiVersion::parse("1.53"));
        assert!(ApiVersion::parse("1.9") < ApiVersion::parse("1.10"));
        assert_eq!(ApiVersion::parse("x"), None);
    }
}
