//! Outgoing `wasi:http` requests, restricted to `allowed_outbound_hosts`.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::outbound::AllowedHosts;

pub struct OutboundHttp {
    allowed: Arc<AllowedHosts>,
}

impl OutboundHttp {
    pub fn new(allowed: Arc<AllowedHosts>) -> Self {
        OutboundHttp { allowed }
    }

    fn permits(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return false;
        };
        let Some(port) = uri
            .port_u16()
            .or_else(|| crate::outbound::default_port(scheme))
        else {
            return false;
        };
        self.allowed.allows(
            scheme,
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        )
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        if !self.permits(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound HTTP request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}
