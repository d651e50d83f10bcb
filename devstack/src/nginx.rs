//! The real nginx binary with the project's `docker/nginx/nginx.conf`.
//!
//! The production file is used as it is, except for the parts it names as
//! rendered: the block between the `devstack:upstream-servers` markers
//! becomes one `server` line per loopback replica, the two `listen` lines bind
//! the chosen HTTP and HTTPS ports on 127.0.0.1, the redirect names the HTTPS
//! port, and the certificate is read from the stack's TLS directory. That
//! directory is filled by `docker/nginx/tls-init` (the script the nginx image
//! runs): the operator's certificate when one is there, else a local CA and a
//! server certificate for localhost and 127.0.0.1, made once. nginx runs in
//! the foreground with its own prefix (pid file, temp directories) in the
//! stack's state directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::config::environment;
use crate::process::{self, Echo, LogTail, ManagedChild};

const BEGIN_MARKER: &str = "# devstack:upstream-servers:begin";
const END_MARKER: &str = "# devstack:upstream-servers:end";
const PRODUCTION_HTTP_LISTEN: &str = "listen 8080;";
const PRODUCTION_HTTPS_LISTEN: &str = "listen 8443 ssl http2;";
const PRODUCTION_HTTPS_PORT: &str = "set $conduit_https_port 8443;";
const PRODUCTION_TLS_DIR: &str = "/etc/nginx/tls/";

/// The ports nginx listens on, on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub struct NginxPorts {
    /// The API, over TLS.
    pub https: u16,
    /// Plain HTTP: redirects to `https`.
    pub http: u16,
}

/// How the API's server block listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiListener {
    /// TLS and HTTP/2, as in production.
    Tls,
    /// The same server block without TLS: only for measuring what TLS costs
    /// (`bench/`), never for serving.
    PlainForComparison,
}

/// One upstream server line.
#[derive(Clone, Debug)]
pub struct UpstreamServer {
    pub port: u16,
    /// Marked `down`: nginx sends it nothing (used to drain a replica).
    pub down: bool,
}

/// The nginx binary: `$NGINX_BIN`, else Debian's `/usr/sbin/nginx`, else PATH.
pub fn nginx_program() -> PathBuf {
    process::program(
        environment().nginx_bin.as_deref(),
        "/usr/sbin/nginx",
        "nginx",
    )
}

/// The production config with the upstream block, the listen lines, the
/// redirect's port and the certificate directory rendered for the local
/// stack.
pub fn render_config(
    production: &str,
    ports: NginxPorts,
    api_listener: ApiListener,
    tls_dir: &Path,
    servers: &[UpstreamServer],
) -> Result<String> {
    let with_servers = render_upstream_servers(production, servers)?;
    render_directives(&with_servers, ports, api_listener, tls_dir)
}

/// `production` with the block between the markers replaced by one `server`
/// line per loopback replica, each with the production line's parameters.
fn render_upstream_servers(production: &str, servers: &[UpstreamServer]) -> Result<String> {
    let begin = production
        .find(BEGIN_MARKER)
        .context("nginx.conf has no `# devstack:upstream-servers:begin` marker")?;
    let end = production
        .find(END_MARKER)
        .context("nginx.conf has no `# devstack:upstream-servers:end` marker")?;
    if end < begin {
        bail!("nginx.conf: upstream end marker before begin marker");
    }
    if servers.is_empty() {
        bail!("an upstream needs at least one server");
    }
    let indent: String = production[..begin]
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect();
    // Same failure handling as the production server line, only the address
    // differs.
    let production_block = &production[begin + BEGIN_MARKER.len()..end];
    let parameters = production_block
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("server "))
        .and_then(|rest| rest.trim_end_matches(';').split_once(' '))
        .map(|(_, parameters)| parameters.to_owned())
        .unwrap_or_default();
    let mut block = String::from(BEGIN_MARKER);
    block.push('\n');
    for server in servers {
        block.push_str(&indent);
        block.push_str(&format!("server 127.0.0.1:{}", server.port));
        if !parameters.is_empty() {
            block.push(' ');
            block.push_str(&parameters);
        }
        if server.down {
            block.push_str(" down");
        }
        block.push_str(";\n");
    }
    block.push_str(&indent);
    Ok(format!(
        "{}{}{}",
        &production[..begin],
        block,
        &production[end..]
    ))
}

/// `config` with the listen lines, the redirect's port and the certificate
/// directory rendered; each production directive must be there exactly once.
/// Directive lines only: comments may mention the directives.
fn render_directives(
    config: &str,
    ports: NginxPorts,
    api_listener: ApiListener,
    tls_dir: &Path,
) -> Result<String> {
    let tls_dir = format!("{}/", tls_dir.display());
    let replacements = [
        (
            PRODUCTION_HTTP_LISTEN,
            format!("listen 127.0.0.1:{};", ports.http),
        ),
        (
            PRODUCTION_HTTPS_LISTEN,
            match api_listener {
                ApiListener::Tls => format!("listen 127.0.0.1:{} ssl http2;", ports.https),
                ApiListener::PlainForComparison => format!("listen 127.0.0.1:{};", ports.https),
            },
        ),
        (
            PRODUCTION_HTTPS_PORT,
            format!("set $conduit_https_port {};", ports.https),
        ),
    ];
    for (directive, _) in &replacements {
        let count = config
            .lines()
            .filter(|line| line.trim() == *directive)
            .count();
        if count != 1 {
            bail!("nginx.conf must contain exactly one `{directive}` line, has {count}");
        }
    }
    let mut out = String::with_capacity(config.len());
    for line in config.split_inclusive('\n') {
        let directive = line.trim();
        if let Some((production, local)) = replacements
            .iter()
            .find(|(production, _)| directive == *production)
        {
            out.push_str(&line.replace(production, local));
        } else if directive.starts_with("ssl_certificate") && directive.contains(PRODUCTION_TLS_DIR)
        {
            out.push_str(&line.replace(PRODUCTION_TLS_DIR, &tls_dir));
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// `docker/nginx/tls-init DIR`: keeps the operator's certificate in `tls_dir`,
/// or makes (once) a local CA and a server certificate for localhost and
/// 127.0.0.1 there.
pub async fn ensure_certificate(tls_init: &Path, tls_dir: &Path) -> Result<()> {
    let mut command = Command::new("sh");
    command.arg(tls_init).arg(tls_dir);
    process::run("tls-init", command).await?;
    Ok(())
}

/// A TLS connection to nginx's HTTPS `port` on 127.0.0.1, verified against
/// the local CA in `tls_dir`, speaking HTTP/1.1 (ALPN): for tests that write
/// requests byte by byte (slow bodies, oversized bodies, half-sent headers).
pub async fn tls_connect(
    tls_dir: &Path,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio_rustls::rustls::{self, pki_types};
    let ca = tls_dir.join("ca.crt");
    let pem = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        <pki_types::CertificateDer as pki_types::pem::PemObject>::pem_slice_iter(&pem)
    {
        roots.add(certificate.with_context(|| format!("parsing {}", ca.display()))?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let name = pki_types::ServerName::try_from("127.0.0.1")?;
    Ok(connector.connect(name, tcp).await?)
}

/// A client that trusts the local CA in `tls_dir` when there is one (a
/// certificate the operator gave is checked against the public roots).
pub fn client_builder(tls_dir: &Path) -> Result<reqwest::ClientBuilder> {
    let ca = tls_dir.join("ca.crt");
    if !ca.exists() {
        return Ok(reqwest::Client::builder());
    }
    let pem = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
    client_builder_trusting(&pem)
}

/// A client that trusts the CA certificate `pem` besides the public roots.
pub fn client_builder_trusting(pem: &[u8]) -> Result<reqwest::ClientBuilder> {
    Ok(reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(pem)?))
}

pub struct Nginx {
    /// nginx's prefix: rendered config, pid file, temp directories.
    pub prefix: PathBuf,
    pub ports: NginxPorts,
    /// Certificate and key (`tls.crt`, `tls.key`), and `ca.crt` when the
    /// stack made them.
    pub tls_dir: PathBuf,
    api_listener: ApiListener,
    production_config: PathBuf,
    servers: Vec<UpstreamServer>,
    process: Option<ManagedChild>,
    pub log: LogTail,
    echo: Echo,
}

impl Nginx {
    pub fn new(
        production_config: &Path,
        prefix: &Path,
        ports: NginxPorts,
        tls_dir: &Path,
        upstream_ports: &[u16],
        echo: Echo,
    ) -> Self {
        Self {
            prefix: prefix.to_path_buf(),
            ports,
            tls_dir: tls_dir.to_path_buf(),
            api_listener: ApiListener::Tls,
            production_config: production_config.to_path_buf(),
            servers: upstream_ports
                .iter()
                .map(|&port| UpstreamServer { port, down: false })
                .collect(),
            process: None,
            log: LogTail::default(),
            echo,
        }
    }

    /// The API's server block without TLS (see [`ApiListener`]).
    pub fn without_tls_for_comparison(mut self) -> Self {
        self.api_listener = ApiListener::PlainForComparison;
        self
    }

    /// The API's base URL, over HTTPS.
    pub fn url(&self) -> String {
        match self.api_listener {
            ApiListener::Tls => format!("https://127.0.0.1:{}", self.ports.https),
            ApiListener::PlainForComparison => format!("http://127.0.0.1:{}", self.ports.https),
        }
    }

    /// The plain HTTP listener, which only redirects to [`Nginx::url`].
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    /// A client for [`Nginx::url`]: certificates verified, against the local
    /// CA when the stack made one.
    pub fn client_builder(&self) -> Result<reqwest::ClientBuilder> {
        client_builder(&self.tls_dir)
    }

    fn config_path(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    fn base_command(&self) -> Command {
        let mut command = Command::new(nginx_program());
        // A trailing slash: nginx joins the prefix and relative paths as text.
        command
            .arg("-p")
            .arg(format!("{}/", self.prefix.display()))
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(self.config_path());
        command
    }

    /// Renders the config into the prefix and checks it with `nginx -t`.
    async fn write_config(&self) -> Result<()> {
        let production = std::fs::read_to_string(&self.production_config)
            .with_context(|| format!("reading {}", self.production_config.display()))?;
        std::fs::create_dir_all(&self.prefix)?;
        let tls_dir = std::path::absolute(&self.tls_dir)?;
        let rendered = render_config(
            &production,
            self.ports,
            self.api_listener,
            &tls_dir,
            &self.servers,
        )?;
        std::fs::write(self.config_path(), rendered)?;
        let mut test = self.base_command();
        test.arg("-t").arg("-q");
        process::run("nginx -t", test).await?;
        Ok(())
    }

    /// Starts nginx in the foreground and waits until its port accepts
    /// connections.
    pub async fn start(&mut self) -> Result<()> {
        if self.process.is_some() {
            bail!("nginx is already running");
        }
        // Once per start, not per reload: tls-init sits beside nginx.conf in
        // docker/nginx/.
        ensure_certificate(
            &self.production_config.with_file_name("tls-init"),
            &self.tls_dir,
        )
        .await?;
        self.write_config().await?;
        let mut command = self.base_command();
        command.arg("-g").arg("daemon off;");
        self.process = Some(ManagedChild::spawn("nginx", command, &self.log, self.echo)?);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(process) = self.process.as_mut()
                && let Some(status) = process.try_status()?
            {
                self.process = None;
                bail!(
                    "nginx exited during start ({status}):\n{}",
                    self.log.last(20)
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.ports.https))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nginx not listening on {} after 10 s", self.ports.https);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Marks the replica on `port` down (or up again) and reloads nginx: new
    /// workers stop sending it requests, old workers finish theirs and close
    /// their idle keep-alive connections to it.
    pub async fn set_down(&mut self, port: u16, down: bool) -> Result<()> {
        let server = self
            .servers
            .iter_mut()
            .find(|server| server.port == port)
            .with_context(|| format!("no upstream server on port {port}"))?;
        server.down = down;
        self.write_config().await?;
        let process = self.process.as_ref().context("nginx is not running")?;
        process.signal(Signal::SIGHUP)?;
        Ok(())
    }

    /// Graceful stop (SIGQUIT: finish in-flight requests).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            process
                .stop(Signal::SIGQUIT, Duration::from_secs(10))
                .await?;
        }
        Ok(())
    }

    /// Parsed access log entries (the JSON `conduit` log format).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.log
            .lines()
            .iter()
            .filter(|line| line.starts_with('{'))
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCTION: &str = "http {\n    upstream api {\n        least_conn;\n        # devstack:upstream-servers:begin\n        server api:3000 max_fails=1 fail_timeout=2s;\n        # devstack:upstream-servers:end\n        keepalive 32;\n    }\n    server {\n        listen 8080;\n        set $conduit_https_port 8443;\n    }\n    server {\n        listen 8443 ssl http2;\n        ssl_certificate /etc/nginx/tls/tls.crt;\n        ssl_certificate_key /etc/nginx/tls/tls.key;\n    }\n}\n";

    const PORTS: NginxPorts = NginxPorts {
        https: 18443,
        http: 18080,
    };

    #[test]
    fn render_replaces_only_the_upstream_block_and_the_listen_line() {
        let servers = [
            UpstreamServer {
                port: 3001,
                down: false,
            },
            UpstreamServer {
                port: 3002,
                down: true,
            },
        ];
        let rendered = render_config(
            PRODUCTION,
            PORTS,
            ApiListener::Tls,
            Path::new("/data/tls"),
            &servers,
        )
        .unwrap();
        assert!(rendered.contains(
            "        server 127.0.0.1:3001 max_fails=1 fail_timeout=2s;\n        server 127.0.0.1:3002 max_fails=1 fail_timeout=2s down;\n        # devstack:upstream-servers:end\n        keepalive 32;"
        ));
        assert!(!rendered.contains("api:3000"));
        assert!(rendered.contains("listen 127.0.0.1:18080;"));
        assert!(!rendered.contains("listen 8080;"));
        assert!(rendered.contains("listen 127.0.0.1:18443 ssl http2;"));
        assert!(rendered.contains("set $conduit_https_port 18443;"));
        assert!(rendered.contains("ssl_certificate /data/tls/tls.crt;"));
        assert!(rendered.contains("ssl_certificate_key /data/tls/tls.key;"));
        assert!(!rendered.contains("/etc/nginx/tls"));
        assert!(rendered.starts_with("http {\n    upstream api {\n        least_conn;\n"));
    }

    #[test]
    fn render_refuses_a_config_without_its_https_listener() {
        let without = PRODUCTION.replace("listen 8443 ssl http2;", "listen 8443;");
        let servers = [UpstreamServer {
            port: 3001,
            down: false,
        }];
        let error = render_config(
            &without,
            PORTS,
            ApiListener::Tls,
            Path::new("/tls"),
            &servers,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("listen 8443 ssl http2;"),
            "{error}"
        );
    }

    #[test]
    fn render_refuses_a_config_without_markers() {
        let without = PRODUCTION.replace("# devstack:upstream-servers:begin", "");
        let servers = [UpstreamServer {
            port: 3001,
            down: false,
        }];
        assert!(
            render_config(
                &without,
                PORTS,
                ApiListener::Tls,
                Path::new("/tls"),
                &servers
            )
            .is_err()
        );
    }
}
