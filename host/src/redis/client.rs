//! Connections to Redis servers, and the guest's handle on one.
//!
//! Spin 3.6 opens a new multiplexed connection for every `open`. Here the
//! connection to an address is opened once and shared by every instance that
//! opens that address, so a request costs no TCP and handshake round trips,
//! with two provisions that keep the difference out of a guest's sight:
//!
//! - A command that changes or holds the state of its connection (`SELECT`,
//!   `MULTI` .. `EXEC`, `WATCH`, `AUTH`, `CLIENT`, `SUBSCRIBE`, ...) or that
//!   blocks it (`BLPOP`, `XREAD`, `WAIT`, ...) moves the guest's handle onto
//!   a connection of its own, opened for it and closed with it, as Spin's
//!   always is; every later command on that handle goes there too, so a
//!   transaction or a `SELECT` never reaches another instance's commands.
//! - Each shared connection's driver task records when the server closes it
//!   (a restart), and the next `open` replaces it, so the first request after
//!   a restart does not fail; a shared connection that fails a command with
//!   an I/O error or a timeout leaves the cache too.
//!
//! A server that does not answer fails `open` after [`CONNECT_TIMEOUT`], and
//! a command on a shared connection after [`SHARED_RESPONSE_TIMEOUT`]. A
//! connection of the guest's own has no response timeout (a blocking command
//! waits as long as it asks); the request's deadline bounds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ErrorKind, RedisResult};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;

/// How long connecting (TCP, TLS and Redis's handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command on a shared connection may wait for its answer. Only
/// commands that do not block run there, so a server that takes this long
/// is stuck.
pub const SHARED_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most addresses with a shared connection; past that, an `open` of a new
/// address gets a connection of its own, as in Spin.
const MAX_SHARED_ADDRESSES: usize = 64;

/// One open connection, and whether its driver (the task that reads and
/// writes the socket) still runs. The driver is stopped, and the socket
/// closed, when the last clone is dropped, even while a blocking command
/// still waits for its answer (a request past its deadline).
#[derive(Clone)]
pub struct Link {
    pub connection: MultiplexedConnection,
    open: Arc<AtomicBool>,
    id: u64,
    _driver: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Link {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

/// The shared connections, one per address (the address's text, so
/// credentials and database are part of it).
#[derive(Default)]
pub struct SharedConnections {
    by_address: Mutex<HashMap<String, Arc<OnceCell<Link>>>>,
}

/// A shared connection, or one of the guest's own when none may be shared.
pub enum Opened {
    Shared(Link),
    Own(Link),
}

impl SharedConnections {
    /// The shared connection to `address`, opened (or replaced, when its
    /// server closed it) on demand.
    pub async fn open(&self, address: &str, info: &ConnectionInfo) -> RedisResult<Opened> {
        let Some(cell) = self.cell(address) else {
            return connect(info, None).await.map(Opened::Own);
        };
        match cell
            .get_or_try_init(|| connect(info, Some(SHARED_RESPONSE_TIMEOUT)))
            .await
        {
            Ok(link) => Ok(Opened::Shared(link.clone())),
            Err(e) => {
                let mut by_address = self.lock();
                if by_address
                    .get(address)
                    .is_some_and(|current| Arc::ptr_eq(current, &cell))
                {
                    by_address.remove(address);
                }
                Err(e)
            }
        }
    }

    /// The cell for `address`: the current one unless its connection was
    /// closed, a new one otherwise; `None` when the cache is full.
    fn cell(&self, address: &str) -> Option<Arc<OnceCell<Link>>> {
        let mut by_address = self.lock();
        if let Some(cell) = by_address.get(address)
            && cell.get().is_none_or(Link::is_open)
        {
            return Some(cell.clone());
        }
        by_address.retain(|_, cell| cell.get().is_none_or(Link::is_open));
        if by_address.len() >= MAX_SHARED_ADDRESSES {
            return None;
        }
        let cell = Arc::new(OnceCell::new());
        by_address.insert(address.to_string(), cell.clone());
        Some(cell)
    }

    /// Drops the shared connection `link` to `address` after it failed, so
    /// the next `open` connects again.
    pub fn forget(&self, address: &str, link: &Link) {
        let mut by_address = self.lock();
        if by_address
            .get(address)
            .and_then(|cell| cell.get())
            .is_some_and(|current| current.id == link.id)
        {
            by_address.remove(address);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<Link>>>> {
        self.by_address.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens a connection to the server `info` names, within [`CONNECT_TIMEOUT`].
pub async fn connect(
    info: &ConnectionInfo,
    response_timeout: Option<Duration>,
) -> RedisResult<Link> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_within(info, response_timeout)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from {} within {}s",
                label(info),
                CONNECT_TIMEOUT.as_secs()
            ),
        )
        .into()),
    }
}

async fn connect_within(
    info: &ConnectionInfo,
    response_timeout: Option<Duration>,
) -> RedisResult<Link> {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            let stream = tcp(host, *port).await?;
            start(info, stream, response_timeout).await
        }
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            let stream = tcp(host, *port).await?;
            let stream = tls(host, *insecure, stream).await?;
            start(info, stream, response_timeout).await
        }
        ConnectionAddr::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path).await?;
            start(info, stream, response_timeout).await
        }
        _ => Err((ErrorKind::InvalidClientConfig, "unsupported Redis address").into()),
    }
}

async fn tcp(host: &str, port: u16) -> RedisResult<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// TLS for `rediss://`: the certificate verified against the Mozilla roots,
/// or not verified at all for `rediss://...#insecure`, as the `redis` crate
/// reads that fragment.
async fn tls(
    host: &str,
    insecure: bool,
    stream: tokio::net::TcpStream,
) -> RedisResult<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use crate::postgres::tls::{SslMode, client_config};
    let mode = if insecure {
        SslMode::Require
    } else {
        SslMode::VerifyFull
    };
    let config = client_config(mode, None)
        .ok()
        .flatten()
        .ok_or((ErrorKind::InvalidClientConfig, "TLS is unavailable"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| (ErrorKind::InvalidClientConfig, "invalid TLS server name"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(connector.connect(name, stream).await?)
}

/// Runs Redis's handshake (AUTH, HELLO, SELECT as the address asks) on
/// `stream` and spawns the connection's driver, noting when it ends.
async fn start<S>(
    info: &ConnectionInfo,
    stream: S,
    response_timeout: Option<Duration>,
) -> RedisResult<Link>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = AsyncConnectionConfig::new().set_response_timeout(response_timeout);
    let (connection, driver) =
        MultiplexedConnection::new_with_config(info.redis_settings(), stream, config).await?;
    let open = Arc::new(AtomicBool::new(true));
    let noted = open.clone();
    // The driver ends when the server closes the socket.
    let driver = tokio::spawn(async move {
        driver.await;
        noted.store(false, Ordering::Release);
    });
    Ok(Link {
        connection,
        open,
        id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
        _driver: Arc::new(AbortOnDrop(driver)),
    })
}

/// Whether a command's failure means its connection is unusable.
pub fn breaks_connection(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_unrecoverable_error()
}

/// Whether `command` changes or holds the state of its connection, or blocks
/// it: what may not run on a shared connection.
pub fn needs_own_connection(command: &str) -> bool {
    const CONNECTION_SCOPED: &[&str] = &[
        // Connection state.
        "SELECT",
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "UNWATCH",
        "AUTH",
        "HELLO",
        "CLIENT",
        "RESET",
        "QUIT",
        "READONLY",
        "READWRITE",
        "ASKING",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "MONITOR",
        "SYNC",
        "PSYNC",
        "REPLCONF",
        // Blocking.
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "XREAD",
        "XREADGROUP",
        "WAIT",
        "WAITAOF",
    ];
    let name = command.split_whitespace().next().unwrap_or_default();
    CONNECTION_SCOPED
        .iter()
        .any(|scoped| scoped.eq_ignore_ascii_case(name))
}

/// A connection's server, without credentials: `cache:6379/0`.
pub fn label(info: &ConnectionInfo) -> String {
    let db = info.redis_settings().db();
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}/{db}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}/{db} (TLS)"),
        ConnectionAddr::Unix(path) => format!("{}/{db}", path.display()),
        other => format!("{other}"),
    }
}

/// A guest's connection: the shared connection to its address, and the
/// connection of its own once a command needed one (from the start when the
/// address could not be shared).
pub struct Connection {
    pub(super) address: String,
    pub(super) info: ConnectionInfo,
    pub(super) shared: Option<Link>,
    pub(super) own: Option<Link>,
}
