//! The public HTTP listener and the request path, top to bottom:
//!
//! 1. **route**: the serving application, read once ([`crate::reload`]
//!    swaps it whole; a request keeps the one it started on), and its
//!    manifest's route for the path (404 without one);
//! 2. **read the body**: size cap (413), deadline (408), in an upload slot;
//! 3. **admit**: route limits and the global cap ([`crate::admission`], 503),
//!    then the request's reservation from the guest memory budget, waiting
//!    for room ([`crate::guest_memory`], 503 at the deadline);
//! 4. **get an instance**: fresh, or reused when that is enabled
//!    ([`crate::instances`]);
//! 5. **call** `wasi:http/incoming-handler` under the request's deadline;
//! 6. **respond**: the guest's response as the guest set it (with the
//!    caller's `X-Request-ID` echoed, only if it sent one), or the error
//!    that stopped it.
//!
//! The body is read before admission so that a slow upload (a body trickled
//! a byte at a time) holds one of the upload slots until the request's
//! deadline answers it with 408, never one of the guest slots: a handful of
//! slow clients cannot starve the instances. Bodies in memory are bounded by
//! the two caps (uploads being received plus requests admitted, each at most
//! the body limit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
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
use tracing::Instrument;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::admission::{Admission, Admitted, RouteLimit};
use crate::application::Application;
use crate::guest_memory::Holding;
use crate::instances::{Instance, Outcome};
use crate::reload::Reloader;
use crate::routing::RouteMatch;
use crate::runtime::{Runtime, is_deadline, is_memory_short};
use crate::telemetry;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub header_read_timeout: Duration,
    /// After SIGTERM, how long open keep-alive connections are left for the
    /// client to close; until then every response says `Connection: close`.
    pub idle_drain: Duration,
    /// Per-route concurrency limits (`--route-limit`).
    pub route_limits: Vec<RouteLimit>,
}

pub struct Server {
    runtime: Arc<Runtime>,
    /// The serving application.
    applications: Arc<Reloader>,
    admission: Admission,
    settings: ServerSettings,
    draining: std::sync::atomic::AtomicBool,
}

/// What the access log says about a request besides its status.
struct Handled {
    route: String,
    component: String,
    /// Whether the request ran in a reused instance; `None` if it ran in none.
    reused: Option<bool>,
    response: Response<HyperOutgoingBody>,
}

impl Handled {
    fn early(response: Response<HyperOutgoingBody>) -> Self {
        Handled {
            route: "-".into(),
            component: "-".into(),
            reused: None,
            response,
        }
    }
}

fn internal_error() -> Response<HyperOutgoingBody> {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server",
        "internal error",
    )
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

/// The request's server span for traces (HTTP semantic conventions), under
/// the caller's `traceparent` if it sent one. A disabled span, at no cost,
/// when traces are off.
fn server_span(
    req: &Request<Incoming>,
    matched: Option<&RouteMatch>,
    id: &RequestId,
    client: SocketAddr,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: telemetry::TARGET,
        "request",
        otel.name = span_name(req.method(), matched),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = matched.map(|m| m.raw_route.as_str()),
        http.response.status_code = tracing::field::Empty,
        url.path = req.uri().path(),
        url.query = req.uri().query(),
        url.scheme = "http",
        client.address = %client.ip(),
        client.port = client.port(),
        user_agent.original = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        request_id = id.as_str(),
        wasmhost.component = matched.map(|m| m.component.as_str()),
    );
    telemetry::continue_trace(&span, req.headers());
    span
}

/// `METHOD ROUTE`, or the method alone for a path no route matches.
fn span_name(method: &http::Method, matched: Option<&RouteMatch>) -> String {
    match matched {
        Some(m) => format!("{method} {}", m.raw_route),
        None => method.to_string(),
    }
}

/// The request's id for logs and traces: the caller's `X-Request-ID` if it
/// is a sane token, else a new UUID. Only the caller's own goes back in the
/// response; a made one stays in the logs and spans, so that a response
/// carries nothing its guest did not set unless the caller asked for it.
struct RequestId {
    value: HeaderValue,
    from_caller: bool,
}

impl RequestId {
    fn of(req: &Request<Incoming>) -> Self {
        let given = req.headers().get(&REQUEST_ID).filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 200 && b.iter().all(|c| c.is_ascii_graphic())
        });
        match given {
            Some(value) => RequestId {
                value: value.clone(),
                from_caller: true,
            },
            None => {
                let mut buffer = uuid::Uuid::encode_buffer();
                let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
                RequestId {
                    value: HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("invalid")),
                    from_caller: false,
                }
            }
        }
    }

    fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or("-")
    }

    /// The id to echo in the response: the caller's, if it sent one.
    fn echo(&self) -> Option<HeaderValue> {
        self.from_caller.then(|| self.value.clone())
    }
}

impl Server {
    pub fn new(
        runtime: Arc<Runtime>,
        applications: Arc<Reloader>,
        settings: ServerSettings,
    ) -> Self {
        let metrics = runtime.shared.metrics.clone();
        let admission = Admission::new(
            runtime.settings.max_concurrency,
            settings.route_limits.clone(),
            metrics,
        );
        Server {
            runtime,
            applications,
            admission,
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
        let id = RequestId::of(&req);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let application = self.applications.serving();
        let matched = route(&application, &req);
        let trace = server_span(&req, matched.as_ref(), &id, client);
        let sampled = telemetry::sampled(&trace);
        let span = tracing::info_span!("request", id = %id.as_str());
        let _in_flight = self.runtime.shared.metrics.request_started();
        let handled = match self
            .dispatch(application, req, matched, client, started, sampled)
            .instrument(span.clone())
            .instrument(trace.clone())
            .await
        {
            Ok(handled) | Err(handled) => handled,
        };
        let Handled {
            route,
            component,
            reused,
            mut response,
        } = handled;
        // The caller's request id goes back only if it sent one, and never
        // over one the guest set itself.
        if let Some(echo) = id.echo() {
            response.headers_mut().entry(REQUEST_ID).or_insert(echo);
        }
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
        trace.record("http.response.status_code", status);
        if status >= 500 {
            trace.record("otel.status_code", "error");
        }
        let trace_id = telemetry::trace_id(&trace);
        span.in_scope(|| {
            tracing::info!(
                target: "wasmhost::access",
                %method,
                path,
                route,
                component,
                status,
                reused,
                trace_id,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            )
        });
        response
    }

    /// The request path (see the module documentation); `Err` is an answer
    /// given before the guest ran.
    async fn dispatch(
        &self,
        application: Arc<Application>,
        req: Request<Incoming>,
        matched: Option<RouteMatch>,
        client: SocketAddr,
        started: Instant,
        sampled: bool,
    ) -> Result<Handled, Handled> {
        let deadline = started + self.settings.request_timeout;
        let Some(matched) = matched else {
            return Err(Handled::early(json_error(
                StatusCode::NOT_FOUND,
                "path",
                "no route matches this path",
            )));
        };
        let refused = |response| Handled {
            route: matched.raw_route.clone(),
            component: matched.component.clone(),
            reused: None,
            response,
        };
        let (parts, body) = req.into_parts();
        let body = self
            .read_body(&parts, body, deadline)
            .await
            .map_err(refused)?;
        let admitted = self
            .admit(&parts.method, parts.uri.path(), deadline)
            .await
            .map_err(refused)?;
        let guest_memory = self
            .reserve_memory(&matched, deadline)
            .await
            .map_err(refused)?;
        let instance = self
            .instance(&application, &matched, deadline, guest_memory)
            .await
            .map_err(refused)?;
        let reused = instance.reused();
        let request = guest_request(parts, body, &matched, client);
        let response = self
            .call(application, instance, request, admitted, deadline, sampled)
            .await;
        Ok(Handled {
            route: matched.raw_route,
            component: matched.component,
            reused: Some(reused),
            response,
        })
    }

    /// Step 2: the whole body, within the size cap and the deadline, read in
    /// an upload slot.
    async fn read_body(
        &self,
        parts: &http::request::Parts,
        body: Incoming,
        deadline: Instant,
    ) -> Result<Bytes, Response<HyperOutgoingBody>> {
        let metrics = &self.runtime.shared.metrics;
        let limit = self.settings.max_body_bytes;
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            metrics.rejected("body_too_large");
            linger(body);
            return Err(too_large(limit));
        }
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let Some(_upload) = self.admission.upload_slot().await else {
            metrics.rejected("uploads");
            return Err(busy("too many uploads in progress; retry shortly"));
        };
        read_body(body, limit, deadline)
            .await
            .map_err(|error| match error {
                BodyError::TooLarge(rest) => {
                    metrics.rejected("body_too_large");
                    linger(rest);
                    too_large(limit)
                }
                BodyError::Unreadable => json_error(
                    StatusCode::BAD_REQUEST,
                    "body",
                    "the request body could not be read",
                ),
                BodyError::TimedOut => {
                    metrics.rejected("body_timeout");
                    json_error(
                        StatusCode::REQUEST_TIMEOUT,
                        "body",
                        "the request body did not arrive in time",
                    )
                }
            })
    }

    /// Step 3: the route's limit, if one matches, then the global cap.
    async fn admit(
        &self,
        method: &http::Method,
        path: &str,
        deadline: Instant,
    ) -> Result<Admitted, Response<HyperOutgoingBody>> {
        self.admission
            .admit(method, path, deadline)
            .await
            .map_err(|refusal| {
                self.runtime.shared.metrics.rejected(refusal.reason());
                busy(refusal.message())
            })
    }

    /// Step 3, last: what the route's requests use of guest memory, reserved
    /// from the budget, waiting for room until the deadline.
    async fn reserve_memory(
        &self,
        matched: &RouteMatch,
        deadline: Instant,
    ) -> Result<Holding, Response<HyperOutgoingBody>> {
        self.runtime
            .shared
            .guest_memory
            .reserve(&matched.memory, deadline)
            .await
            .map_err(|_| {
                self.runtime.shared.metrics.rejected("guest_memory");
                busy("the server's memory for requests stayed full; retry shortly")
            })
    }

    /// Step 4: an instance of the route's component, holding the request's
    /// reservation of guest memory.
    async fn instance(
        &self,
        application: &Application,
        matched: &RouteMatch,
        deadline: Instant,
        guest_memory: Holding,
    ) -> Result<Instance, Response<HyperOutgoingBody>> {
        let Some(component) = application.components.get(&matched.component) else {
            return Err(json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server",
                "component not loaded",
            ));
        };
        application
            .instances
            .get(
                &self.runtime,
                &matched.component,
                component,
                deadline,
                guest_memory,
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "cannot instantiate the component");
                internal_error()
            })
    }

    /// Steps 5 and 6: calls the guest's handler and answers with its
    /// response, or with the error that stopped it. The handler runs in the
    /// connection's own task ([`GuestCall`]): until it sets its response
    /// here, then while hyper writes the body (it may keep streaming after
    /// the headers are out). When it returns, it gives the instance back and
    /// releases the admission slots. The call holds its application until it
    /// returns, however long after a reload that is.
    async fn call(
        &self,
        application: Arc<Application>,
        instance: Instance,
        request: Request<Full<Bytes>>,
        admitted: Admitted,
        deadline: Instant,
        sampled: bool,
    ) -> Response<HyperOutgoingBody> {
        let mut instance = instance;
        instance.store.data_mut().set_traced(sampled);
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
        let prepared = {
            use wasmtime_wasi_http::WasiHttpView;
            let mut http = instance.store.data_mut().http();
            http.new_incoming_request(Scheme::Http, request)
                .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
        };
        let (wasi_req, outparam) = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "malformed request");
                application.instances.finish(instance, Outcome::Trapped);
                return json_error(StatusCode::BAD_REQUEST, "request", "malformed request");
            }
        };
        // Child spans of a trace that is not sampled would be built only to
        // be dropped: they are not created at all.
        let execution = if sampled {
            let component = instance.component();
            tracing::info_span!(
                target: telemetry::TARGET,
                "execute_wasm_component",
                otel.name = format!("execute_wasm_component {component}"),
                otel.status_code = tracing::field::Empty,
                wasmhost.component = component,
                wasmhost.instance_reused = instance.reused(),
            )
        } else {
            tracing::Span::none()
        };
        let failed = execution.clone();
        let mut guest = GuestCall::new(
            async move {
                let _admitted = admitted;
                let Instance { store, proxy, .. } = &mut instance;
                let run =
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut *store, wasi_req, outparam);
                let result = match tokio::time::timeout_at(deadline.into(), run).await {
                    Ok(result) => result,
                    Err(_) => Err(wasmtime::Error::from(crate::runtime::DeadlineExceeded)),
                };
                let outcome = match &result {
                    Ok(()) => Outcome::Returned,
                    Err(e) if is_deadline(e) => Outcome::Deadline,
                    Err(_) => Outcome::Trapped,
                };
                if outcome != Outcome::Returned {
                    failed.record("otel.status_code", "error");
                }
                application.instances.finish(instance, outcome);
                result
            }
            .instrument(execution)
            .in_current_span(),
        );
        // Run the handler until it has set its response, or has ended
        // without one.
        let mut ended = None;
        let answer = std::future::poll_fn(|cx| {
            if let Poll::Ready(Some(result)) = guest.poll_end(cx) {
                ended = Some(result);
            }
            match std::pin::Pin::new(&mut receiver).poll(cx) {
                Poll::Ready(answer) => Poll::Ready(answer.ok()),
                Poll::Pending if guest.has_ended() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match answer {
            Some(Ok(response)) => {
                let (parts, body) = response.into_parts();
                let body = Driven { body, guest };
                Response::from_parts(parts, body.boxed_unsync())
            }
            Some(Err(code)) => {
                tracing::error!(error = ?code, "component returned an error instead of a response");
                internal_error()
            }
            // The guest ended (or is ending) without setting a response.
            None => match ended {
                Some(result) => self.failure(result),
                None => self.failure(guest.end().await),
            },
        }
    }

    /// The answer for a handler that ended without setting a response.
    fn failure(&self, result: wasmtime::Result<()>) -> Response<HyperOutgoingBody> {
        match result {
            Err(e) if is_deadline(&e) => {
                self.runtime.shared.metrics.rejected("deadline");
                tracing::warn!("component exceeded the request deadline");
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server",
                    "the request took too long and was cancelled",
                )
            }
            Err(e) if is_memory_short(&e) => {
                self.runtime.shared.metrics.rejected("guest_memory");
                tracing::warn!(error = %format!("{e:#}"), "component could not grow its memory");
                busy("the server's memory for requests is exhausted; retry shortly")
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "component failed");
                internal_error()
            }
            Ok(()) => {
                tracing::error!("component returned without sending a response");
                internal_error()
            }
        }
    }
}

type GuestFuture = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A guest's handler call, polled by the task that serves its connection,
/// so a request's work stays on one thread and wakes no other (a task of
/// its own per request cost a spawn, a cross-thread wake-up and a timer).
/// Dropped before the handler ended (the client went away, or hyper has
/// written the body's declared length), the rest of the call runs in a task
/// of its own: a handler always runs to its end, so its instance is given
/// back, or dropped, by what happened to it.
struct GuestCall(Option<GuestFuture>);

impl GuestCall {
    fn new(call: impl Future<Output = wasmtime::Result<()>> + Send + 'static) -> Self {
        GuestCall(Some(Box::pin(call)))
    }

    fn has_ended(&self) -> bool {
        self.0.is_none()
    }

    /// Runs the call on; `Ready(Some)` once, when it ends.
    fn poll_end(&mut self, cx: &mut Context<'_>) -> Poll<Option<wasmtime::Result<()>>> {
        let Some(call) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let result = std::task::ready!(call.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(Some(result))
    }

    /// Waits for the call's end (`Ok` if it had already ended).
    async fn end(mut self) -> wasmtime::Result<()> {
        std::future::poll_fn(|cx| self.poll_end(cx))
            .await
            .unwrap_or(Ok(()))
    }
}

impl Drop for GuestCall {
    fn drop(&mut self) {
        if let Some(rest) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(rest);
        }
    }
}

/// The guest's response body, which also runs its handler on: whatever the
/// handler writes while hyper polls is sent in the same pass (for most
/// responses, the headers and the whole body in one write). The body ends
/// when the handler finishes it; a handler still running then goes on in a
/// task of its own ([`GuestCall`]).
struct Driven {
    body: HyperOutgoingBody,
    guest: GuestCall,
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // The handler's outcome is the instance's business (see `call`).
        let _ = this.guest.poll_end(cx);
        std::pin::Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Step 1: the application's route for the path.
fn route(application: &Application, req: &Request<Incoming>) -> Option<RouteMatch> {
    application.router.route(req.uri().path())
}

/// The request as the guest sees it, as Spin 3.6 hands it over: the
/// caller's headers and Spin's `spin-*` headers ([`RouteMatch`]), the full
/// URL built from the `Host` header (`localhost` without one) as Spin builds
/// it. wasi:http withholds `Host`, `Connection` and the other hop-by-hop
/// headers from the guest, in Spin as here; `Host` still names the request's
/// authority, so a request without one gets `localhost`.
fn guest_request(
    mut parts: http::request::Parts,
    body: Bytes,
    matched: &RouteMatch,
    client: SocketAddr,
) -> Request<Full<Bytes>> {
    let full_url = {
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        format!("http://{host}{path_and_query}")
    };
    matched.insert_spin_headers(&mut parts.headers, &full_url, &client.to_string());
    if !parts.headers.contains_key(http::header::HOST) {
        parts
            .headers
            .insert(http::header::HOST, HeaderValue::from_static("localhost"));
    }
    parts.headers.remove(http::header::CONNECTION);
    Request::from_parts(parts, Full::new(body))
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
