//! Logs and OpenTelemetry traces.
//!
//! Logs go to stderr through a writer thread (see [`init`]). Traces are
//! switched on the way Spin switches them on, by the standard variables, so
//! that one deployment setting gives the same picture under `spin up`,
//! SpinKube and wasmhost:
//!
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   (unset or empty: no exporter, and the spans below are never created);
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` (or `..._TRACES_PROTOCOL`): `http/protobuf`
//!   (the default) or `grpc`;
//! - `OTEL_SERVICE_NAME` (default `wasmhost`), `OTEL_RESOURCE_ATTRIBUTES`;
//! - `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default: the
//!   caller's decision in `traceparent`, else every request);
//! - `OTEL_SDK_DISABLED=true` turns it all off.
//!
//! Each request gives a server span (`GET /api/articles/...`, HTTP semantic
//! conventions), under the incoming `traceparent` when there is one; under
//! it the component's execution (`execute_wasm_component <id>`, as Spin
//! names it); under that the wait for a pooled database connection and a
//! client span per SQL statement (`db.system = postgresql`).
//!
//! Trace spans use their own target, [`TARGET`]: the log output never shows
//! them, and without an exporter no subscriber wants them, so `tracing`
//! skips them at their call sites.

use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The target of every span meant for traces rather than logs.
pub const TARGET: &str = "wasmhost::trace";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Keeps logging and tracing alive; dropping it flushes both.
pub struct Telemetry {
    _log_writer: tracing_appender::non_blocking::WorkerGuard,
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter. Call it while
    /// the async runtime still runs (the gRPC exporter needs it).
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "traces not flushed at shutdown");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The value of an environment variable, unless unset or empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment asks for traces, as Spin decides it: an OTLP
/// endpoint is set, and the SDK is not disabled.
pub fn tracing_requested() -> bool {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && (env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some())
}

/// The OTLP transport the environment asks for.
fn protocol() -> Result<Protocol> {
    let value = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match value.trim() {
        "http/protobuf" => Ok(Protocol::HttpBinary),
        "grpc" => Ok(Protocol::Grpc),
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported: use `http/protobuf` or `grpc`"
        ),
    }
}

/// The tracer provider for the environment's settings. Must run inside the
/// async runtime (the gRPC client binds to it).
fn provider() -> Result<SdkTracerProvider> {
    let exporter = match protocol()? {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .build(),
        protocol => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .build(),
    }
    .context("cannot create the OTLP trace exporter")?;
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !named {
        resource = resource.with_service_name("wasmhost");
    }
    // The sampler comes from OTEL_TRACES_SAMPLER(_ARG), read by the SDK.
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Sets up logging and, when the environment asks for it, trace export.
///
/// Logs go to stderr through a writer thread: a request formats its access
/// line and hands it over, and never waits on the terminal or the container
/// runtime's pipe. Lines that arrive while the buffer (128k lines) is full
/// are dropped rather than slowing requests down. Spans are exported in
/// batches by a thread of the SDK's own.
///
/// Call it inside the async runtime.
pub fn init(format: LogFormat) -> Result<Telemetry> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(format!("{TARGET}=off").parse()?);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
    }
    .with_filter(filter);
    let (provider, provider_error) = if tracing_requested() {
        match provider() {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wasmhost"))
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .context("cannot install the log subscriber")?;
    if let Some(e) = provider_error {
        return Err(e);
    }
    Ok(Telemetry {
        _log_writer: guard,
        provider,
    })
}

/// Reads `traceparent` and `tracestate` from request headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes the caller's W3C trace context, if the request carries one, the
/// parent of `span`.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(parent);
}

/// Whether `span` is exported: traces are on and the sampler (or the
/// caller's `traceparent`) chose this trace.
pub fn sampled(span: &tracing::Span) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return false;
    }
    span.context().span().span_context().is_sampled()
}

/// The trace id of `span`, as 32 hex digits, for the access log.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_extract_the_w3c_context() {
        use opentelemetry::trace::TraceContextExt as _;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let cx = TraceContextPropagator::new().extract(&Headers(&headers));
        let span = cx.span();
        let sc = span.span_context();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    }
}
