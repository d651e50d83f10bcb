//! The real nginx binary with the project's `docker/nginx/nginx.conf`.
//!
//! The production file is used as it is, except for two rendered parts: the
//! block between the `devstack:upstream-servers` markers becomes one `server`
//! line per loopback replica, and `listen 8080;` binds the chosen port on
//! 127.0.0.1. nginx runs in the foreground with its own prefix (pid file, temp
//! directories) in the stack's state directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::process::{self, Echo, LogTail, ManagedChild};

const BEGIN_MARKER: &str = "# devstack:upstream-servers:begin";
const END_MARKER: &str = "# devstack:upstream-servers:end";
const PRODUCTION_LISTEN: &str = "listen 8080;";

/// One upstream server line.
#[derive(Clone, Debug)]
pub struct UpstreamServer {
    pub port: u16,
    /// Marked `down`: nginx sends it nothing (used to drain a replica).
    pub down: bool,
}

/// The nginx binary: `$NGINX_BIN`, else Debian's `/usr/sbin/nginx`, else PATH.
pub fn nginx_program() -> PathBuf {
    process::program("NGINX_BIN", "/usr/sbin/nginx", "nginx")
}

/// The production config with the upstream block and the listen line
/// rendered for the local stack.
pub fn render_config(
    production: &str,
    listen_port: u16,
    servers: &[UpstreamServer],
) -> Result<String> {
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
    let rendered = format!("{}{}{}", &production[..begin], block, &production[end..]);
    // Directive lines only: comments may mention the directive.
    let is_listen = |line: &str| line.trim() == PRODUCTION_LISTEN;
    if rendered.lines().filter(|line| is_listen(line)).count() != 1 {
        bail!("nginx.conf must contain exactly one `{PRODUCTION_LISTEN}` line");
    }
    let mut out = String::with_capacity(rendered.len());
    for line in rendered.split_inclusive('\n') {
        if is_listen(line) {
            out.push_str(&line.replace(
                PRODUCTION_LISTEN,
                &format!("listen 127.0.0.1:{listen_port};"),
            ));
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

pub struct Nginx {
    /// nginx's prefix: rendered config, pid file, temp directories.
    pub prefix: PathBuf,
    pub port: u16,
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
        port: u16,
        upstream_ports: &[u16],
        echo: Echo,
    ) -> Self {
        Self {
            prefix: prefix.to_path_buf(),
            port,
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        let rendered = render_config(&production, self.port, &self.servers)?;
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
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nginx not listening on {} after 10 s", self.port);
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

    const PRODUCTION: &str = "http {\n    upstream api {\n        least_conn;\n        # devstack:upstream-servers:begin\n        server api:3000 max_fails=1 fail_timeout=2s;\n        # devstack:upstream-servers:end\n        keepalive 32;\n    }\n    server {\n        listen 8080;\n    }\n}\n";

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
        let rendered = render_config(PRODUCTION, 18080, &servers).unwrap();
        assert!(rendered.contains(
            "        server 127.0.0.1:3001 max_fails=1 fail_timeout=2s;\n        server 127.0.0.1:3002 max_fails=1 fail_timeout=2s down;\n        # devstack:upstream-servers:end\n        keepalive 32;"
        ));
        assert!(!rendered.contains("api:3000"));
        assert!(rendered.contains("listen 127.0.0.1:18080;"));
        assert!(!rendered.contains("listen 8080;"));
        assert!(rendered.starts_with("http {\n    upstream api {\n        least_conn;\n"));
    }

    #[test]
    fn render_refuses_a_config_without_markers() {
        let without = PRODUCTION.replace("# devstack:upstream-servers:begin", "");
        let servers = [UpstreamServer {
            port: 3001,
            down: false,
        }];
        assert!(render_config(&without, 8080, &servers).is_err());
    }
}
