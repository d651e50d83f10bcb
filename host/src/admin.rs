//! The admin listener, on its own port so it is never exposed through the
//! load balancer: `/healthz` (the process is alive), `/readyz` (components
//! loaded, every database reachable, not shutting down), `/metrics`, and
//! `POST /reload` (load the manifest and components again, see
//! [`crate::reload`]; 200 with the new generation, or the reason it was
//! refused: 422 for a manifest or component that does not load, 503 for a
//! database that does not answer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::reload::{ReloadError, Reloader};
use crate::runtime::Runtime;

pub struct Admin {
    pub runtime: Arc<Runtime>,
    pub applications: Arc<Reloader>,
    pub shutting_down: AtomicBool,
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

impl Admin {
    async fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        for dependency in &self.applications.serving().dependencies {
            let name = &dependency.source;
            match tokio::time::timeout(Duration::from_secs(2), dependency.check()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("{} {name} unreachable: {e:#}", dependency.kind)),
                Err(_) => {
                    return Err(format!(
                        "{} {name} did not answer within 2s",
                        dependency.kind
                    ));
                }
            }
        }
        Ok(())
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" => match self.readiness().await {
                Ok(()) => text(StatusCode::OK, "text/plain", "ready\n".into()),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{reason}\n"),
                ),
            },
            "/reload" if req.method() == Method::POST => self.reload().await,
            "/reload" => {
                let mut response = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "POST to reload\n".into(),
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
                response
            }
            "/metrics" => {
                self.runtime.shared.capabilities.record_metrics();
                self.runtime.record_pool_metrics();
                text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.runtime.shared.metrics.encode(),
                )
            }
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    /// `POST /reload`: the new generation and its components, or why the
    /// reload was refused, as JSON.
    async fn reload(&self) -> Response<Full<Bytes>> {
        // In a task of its own, so that a caller hanging up does not stop
        // a reload halfway (it is logged and counted all the same).
        let applications = self.applications.clone();
        let reload = tokio::spawn(async move { applications.reload("admin").await });
        let Ok(result) = reload.await else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                "{\"error\":\"the reload stopped\"}\n".into(),
            );
        };
        let (status, body) = match result {
            Ok(reloaded) => (
                StatusCode::OK,
                serde_json::json!({
                    "generation": reloaded.generation,
                    "components": reloaded.components,
                    "elapsed_ms": reloaded.elapsed.as_millis() as u64,
                }),
            ),
            Err(error) => {
                let status = match error {
                    ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    ReloadError::Unreachable(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, serde_json::json!({ "error": error.to_string() }))
            }
        };
        text(status, "application/json", format!("{body}\n"))
    }
}

pub async fn serve(admin: Arc<Admin>, listener: TcpListener) {
    let builder = crate::server::connection_builder(Duration::from_secs(5));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `wasmhost healthcheck`: GET a URL, succeed on 2xx. For container health
/// checks in images without a shell or curl.
pub async fn healthcheck(url: &str, timeout: Duration) -> anyhow::Result<()> {
    use anyhow::Context;
    let uri: http::Uri = url.parse().context("invalid URL")?;
    let host = uri.host().context("URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let check = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, host.as_str())
            .body(http_body_util::Empty::<Bytes>::new())?;
        let response = sender.send_request(req).await?;
        anyhow::Ok(response.status())
    };
    let status = tokio::time::timeout(timeout, check)
        .await
        .context("timed out")??;
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}")
    }
}
