//! The public HTTP listener and the request path, top to bottom:
//! route -> read the body (size cap, deadline, upload cap) -> admit
//! (concurrency cap) -> fresh store and instance -> call
//! `wasi:http/incoming-handler` -> respond.
//!
//! The body is read before admission so that a slow upload (a body trickled
//! a byte at a time) holds one of the upload slots until the request's
//! deadline answers it with 408, never one of the guest slots: a handful of
//! slow clients cannot starve the instances. Bodies in memory are bounded by
//! the two caps (uploads being received plus requests admitted, each at most
//! the body limit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::routing::Router;
use crate::runtime::{Runtime, is_deadline};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long a request may wait for a free slot under the concurrency cap or
/// the upload cap.
const ADMISSION_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub header_read_timeout: Duration,
    /// After SIGTERM, how long open keep-alive connections are left for the
    /// client to close; until then every response says `Connection: close`.
    pub idle_drain: Duration,
}

pub struct Server {
    runtime: Arc<Runtime>,
    router: Router,
    admission: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    settings: ServerSettings,
    draining: std::sync::atomic::AtomicBool,
}

fn json_error(status: StatusCode, field: &str, message: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "errors": { field: [message] } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 413, closing the connection: the rest of the body is not read (beyond
/// what `linger` discards).
fn too_large(limit: usize) -> Response<HyperOutgoingBody> {
    let mut response = json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body",
        &format!("request body exceeds {limit} bytes"),
    );
    response
        .headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How long, and how much, `linger` keeps reading a refused body.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 << 20;

/// Reads and discards what a client still sends of a refused body, for a
/// bounded time and amount, while the 413 goes out. Closing at once would
/// leave unread bytes in the socket, and the kernel would answer them with a
/// reset that can reach a client still writing its body before it reads the
/// 413 (nginx's lingering close does the same).
fn linger(body: Incoming) {
    tokio::spawn(async move {
        let mut body = body;
        let deadline = tokio::time::Instant::now() + LINGER_TIME;
        let mut discarded = 0usize;
        while discarded < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => discarded += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    });
}

enum BodyError {
    /// Over the limit; the rest of the body, still unread.
    TooLarge(Incoming),
    Unreadable,
    TimedOut,
}

/// The whole body, at most `limit` bytes, by `deadline`.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    let mut collected = bytes::BytesMut::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(BodyError::TimedOut),
            Ok(None) => return Ok(collected.freeze()),
            Ok(Some(Err(_))) => return Err(BodyError::Unreadable),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if collected.len() + data.len() > limit {
                        return Err(BodyError::TooLarge(body));
                    }
                    collected.extend_from_slice(data);
                }
            }
        }
    }
}

/// 503 with `Retry-After`: a cap is full for now.
fn busy(message: &str) -> Response<HyperOutgoingBody> {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, "server", message);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The caller's request id if it is a sane token, else a new UUID.
fn request_id(req: &Request<Incoming>) -> HeaderValue {
    req.headers()
        .get(&REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("invalid"))
        })
}

impl Server {
    pub fn new(runtime: Arc<Runtime>, router: Router, settings: ServerSettings) -> Self {
        let admission = Arc::new(Semaphore::new(runtime.settings.max_concurrency));
        let uploads = Arc::new(Semaphore::new(runtime.settings.max_concurrency));
        Server {
            runtime,
            router,
            admission,
            uploads,
            settings,
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<HyperOutgoingBody> {
        let started = Instant::now();
        let id = request_id(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", id = %id.to_str().unwrap_or("-"));
        let (route, component, mut response) = self
            .dispatch(req, client, started)
            .instrument(span.clone())
            .await;
        response.headers_mut().insert(REQUEST_ID, id.clone());
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            // The peer must not send another request on this connection:
            // closing an idle keep-alive connection could race with a request
            // (a POST a proxy cannot safely retry).
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.runtime.shared.metrics.request_finished(
            &component,
            &route,
            status,
            elapsed.as_secs_f64(),
        );
        span.in_scope(|| {
            tracing::info!(
                target: "wasmhost::access",
                %method,
                path,
                route,
                component,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            )
        });
        response
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        started: Instant,
    ) -> (String, String, Response<HyperOutgoingBody>) {
        let metrics = &self.runtime.shared.metrics;
        let _in_flight = metrics.request_started();
        let Some(matched) = self.router.route(req.uri().path()) else {
            return (
                "-".into(),
                "-".into(),
                json_error(StatusCode::NOT_FOUND, "path", "no route matches this path"),
            );
        };
        let route = matched.raw_route.clone();
        let component_id = matched.component.clone();
        let respond = |r| (route.clone(), component_id.clone(), r);

        let deadline = started + self.settings.request_timeout;
        let (mut parts, body) = req.into_parts();
        let limit = self.settings.max_body_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            metrics.rejected("body_too_large");
            linger(body);
            return respond(too_large(limit));
        }
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            let upload =
                tokio::time::timeout(ADMISSION_WAIT, self.uploads.clone().acquire_owned()).await;
            let Ok(Ok(_upload)) = upload else {
                metrics.rejected("uploads");
                return respond(busy("too many uploads in progress; retry shortly"));
            };
            match read_body(body, limit, deadline).await {
                Ok(collected) => collected,
                Err(BodyError::TooLarge(rest)) => {
                    metrics.rejected("body_too_large");
                    linger(rest);
                    return respond(too_large(limit));
                }
                Err(BodyError::Unreadable) => {
                    return respond(json_error(
                        StatusCode::BAD_REQUEST,
                        "body",
                        "the request body could not be read",
                    ));
                }
                Err(BodyError::TimedOut) => {
                    metrics.rejected("body_timeout");
                    return respond(json_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "body",
                        "the request body did not arrive in time",
                    ));
                }
            }
        };

        // A short wait absorbs the moment between a guest answering and its
        // instance being torn down, when the client already sends its next
        // request; a server that is really full still answers 503 at once.
        let admitted =
            tokio::time::timeout(ADMISSION_WAIT, self.admission.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = admitted else {
            metrics.rejected("concurrency");
            return respond(busy("too many concurrent requests; retry shortly"));
        };

        let Some(component) = self.runtime.components.get(&component_id) else {
            return respond(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server",
                "component not loaded",
            ));
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let full_url = format!("http://{host}{path_and_query}");
        for (name, value) in matched.spin_headers(&full_url, &client.to_string()) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                parts.headers.insert(name, value);
            }
        }
        if !parts.headers.contains_key(http::header::HOST) {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        parts.headers.remove(http::header::CONNECTION);
        let request = Request::from_parts(parts, Full::new(body));

        let mut store = match self.runtime.store(component, deadline) {
            Ok(store) => store,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot create the request's store");
                return respond(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server",
                    "internal error",
                ));
            }
        };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = {
            use wasmtime_wasi_http::WasiHttpView;
            let mut http = store.data_mut().http();
            http.new_incoming_request(Scheme::Http, request)
                .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
        };
        let (wasi_req, outparam) = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "malformed request");
                return respond(json_error(
                    StatusCode::BAD_REQUEST,
                    "request",
                    "malformed request",
                ));
            }
        };
        let pre = component.pre.clone();
        metrics.instance_created();
        let guest = tokio::spawn(
            async move {
                // Held until the guest finishes, including streaming its body.
                let _permit = permit;
                let run = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, wasi_req, outparam)
                        .await
                };
                match tokio::time::timeout_at(deadline.into(), run).await {
                    Ok(result) => result,
                    Err(_) => Err(wasmtime::Error::from(crate::runtime::DeadlineExceeded)),
                }
            }
            .in_current_span(),
        );

        let response = match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                tracing::error!(error = ?code, "component returned an error instead of a response");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server",
                    "internal error",
                )
            }
            // The guest ended without setting a response.
            Err(_) => match guest.await {
                Ok(Err(e)) if is_deadline(&e) => {
                    metrics.rejected("deadline");
                    tracing::warn!("component exceeded the request deadline");
                    json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server",
                        "the request took too long and was cancelled",
                    )
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "component failed");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server",
                        "internal error",
                    )
                }
                Ok(Ok(())) => {
                    tracing::error!("component returned without sending a response");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server",
                        "internal error",
                    )
                }
                Err(e) => {
                    tracing::error!(error = %e, "component task failed");
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server",
                        "internal error",
                    )
                }
            },
        };
        respond(response)
    }
}

/// A hyper connection builder with the server's protocol settings.
pub fn connection_builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for up to the shutdown timeout.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(server.settings.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let server = server.clone();
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(server.handle(req, client).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    server
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        open_connections = graceful.count(),
        "shutting down: no longer accepting connections, draining in-flight requests"
    );
    let started = tokio::time::Instant::now();
    // Open connections are closed by their clients first (each response now
    // says `Connection: close`; a proxy reaps idle ones after its keep-alive
    // timeout); whatever is left after the idle drain is closed by us.
    while graceful.count() > 0 && started.elapsed() < server.settings.idle_drain {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let remaining = server
        .settings
        .shutdown_timeout
        .saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all requests finished"),
        Err(_) => tracing::warn!(
            timeout_secs = server.settings.shutdown_timeout.as_secs(),
            "shutdown deadline reached with requests still in flight"
        ),
    }
    Ok(())
}
