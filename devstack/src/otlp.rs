//! A small OTLP trace receiver: what a collector does on its receiving end,
//! for the tests that check the spans a replica exports and for the bench
//! (which needs somewhere to send them).
//!
//! It listens on loopback for `http/protobuf` (`POST /v1/traces`) or `grpc`
//! (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), decodes
//! every export request with `opentelemetry-proto`, and keeps the spans
//! (or only counts them).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::net::TcpListener;

pub use opentelemetry_proto::tonic::trace::v1::Span;

/// A span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Received {
    pub service_name: Option<String>,
    pub span: Span,
}

impl Received {
    /// The span's trace id, as 32 hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent's span id, as 16 hex digits; empty for a root.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute's value as text (strings as they are, numbers and
    /// booleans formatted).
    pub fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    text(value)
}

fn text(value: &AnyValue) -> Option<String> {
    Some(match value.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

/// Whether the receiver keeps the spans or only counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Spans,
    CountOnly,
}

#[derive(Default)]
struct Store {
    spans: Mutex<Vec<Received>>,
    span_count: AtomicUsize,
    exports: AtomicUsize,
    keep_spans: bool,
}

impl Store {
    fn add(&self, request: ExportTraceServiceRequest) {
        self.exports.fetch_add(1, Ordering::Relaxed);
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"));
            for scope_spans in resource_spans.scope_spans {
                self.span_count
                    .fetch_add(scope_spans.spans.len(), Ordering::Relaxed);
                if self.keep_spans {
                    received.extend(scope_spans.spans.into_iter().map(|span| Received {
                        service_name: service_name.clone(),
                        span,
                    }));
                }
            }
        }
        if !received.is_empty() {
            self.spans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(received);
        }
    }
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    protocol: &'static str,
    store: Arc<Store>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Grpc(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// An `http/protobuf` receiver on `addr` (port 0: any free port).
    pub async fn http(addr: SocketAddr, keep: Keep) -> Result<Self> {
        Self::start(addr, keep, "http/protobuf", |listener, store| {
            tokio::spawn(serve_http(listener, store))
        })
        .await
    }

    /// A `grpc` receiver on `addr` (port 0: any free port).
    pub async fn grpc(addr: SocketAddr, keep: Keep) -> Result<Self> {
        Self::start(addr, keep, "grpc", |listener, store| {
            let service = TraceServiceServer::new(Grpc(store));
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await;
            })
        })
        .await
    }

    /// Listens on `addr` and serves `protocol` there with `serve`.
    async fn start(
        addr: SocketAddr,
        keep: Keep,
        protocol: &'static str,
        serve: impl FnOnce(TcpListener, Arc<Store>) -> tokio::task::JoinHandle<()>,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store {
            keep_spans: keep == Keep::Spans,
            ..Store::default()
        });
        let task = serve(listener, store.clone());
        Ok(Receiver {
            addr,
            protocol,
            store,
            task,
        })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The value for `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The environment that points a wasmhost (or Spin) at this receiver.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), self.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), self.protocol.into()),
        ]
    }

    /// Every span kept so far.
    pub fn spans(&self) -> Vec<Received> {
        self.store
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many spans arrived.
    pub fn span_count(&self) -> usize {
        self.store.span_count.load(Ordering::Relaxed)
    }

    /// How many export requests arrived.
    pub fn exports(&self) -> usize {
        self.store.exports.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds for the spans kept, polling; the spans at
    /// that moment, or an error after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "the receiver did not get the expected spans within {timeout:?}; it has {} spans: {:#?}",
                    spans.len(),
                    spans
                        .iter()
                        .map(|s| s.span.name.as_str())
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_http(listener: TcpListener, store: Arc<Store>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, std::convert::Infallible>(export(req, &store).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Answers one `POST /v1/traces`.
async fn export(
    req: hyper::Request<hyper::body::Incoming>,
    store: &Store,
) -> hyper::Response<Full<Bytes>> {
    let respond = |status: u16, body: Vec<u8>| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return respond(404, Vec::new());
    }
    let Ok(body) = req.into_body().collect().await else {
        return respond(400, Vec::new());
    };
    match ExportTraceServiceRequest::decode(body.to_bytes()) {
        Ok(request) => {
            store.add(request);
            respond(
                200,
                ExportTraceServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec(),
            )
        }
        Err(_) => respond(400, Vec::new()),
    }
}
