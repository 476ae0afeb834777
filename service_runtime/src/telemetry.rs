//! Tracing setup: `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` switches from
//! human-readable lines to JSON lines for log collectors. A span per HTTP request and per gRPC
//! call (method, route, request id), and one event when it finished (status, latency); the
//! same two middlewares record the request metrics ([`crate::metrics`]). An HTTP span shows
//! the request's path and query with the value of a token parameter redacted
//! ([`crate::auth::redact_query`]): a token never reaches a log line.

use std::{
    future::Future,
    io::IsTerminal,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{
    config::{LogFormat, Runtime},
    request_id,
};

/// Installs the global subscriber: `filter` (`RUST_LOG`) and `format` (`LOG_FORMAT`) as
/// [`Runtime`] read them. Call once, in `main`; a second call (services run in one test
/// process) keeps the first subscriber.
pub fn init(runtime: &Runtime) {
    init_with(&runtime.log_filter, runtime.log_format);
}

/// [`init`] with a filter and a format of its own (the test harness's in-process services).
pub fn init_with(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|err| {
        eprintln!("RUST_LOG={filter:?} is not a valid filter ({err}); using info");
        EnvFilter::new("info")
    });
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init`: an error only says a subscriber is already installed.
    if format == LogFormat::Json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init()
            .ok();
    } else {
        registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init()
            .ok();
    }
}

/// HTTP middleware: a span per request (method, route template, redacted URI, request id) around the
/// handler, the request id as a task-local for outbound calls and echoed in the reply's
/// `x-request-id`, and one event with the status and latency when the reply is ready.
pub async fn http_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request_id::from_headers(request.headers());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(crate::metrics::UNMATCHED, |path| path.as_str())
        .to_owned();
    let method = request.method().clone();
    let uri = crate::auth::redact_query(request.uri());
    let span = tracing::info_span!("http", %method, route, uri, request_id = %id);
    let started = Instant::now();
    let mut response = request_id::scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    span.in_scope(|| finished(status, status >= 500, started));
    crate::metrics::http_request(&route, &method, status, started);
    if let Ok(value) = id.parse() {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    response
}

/// gRPC middleware: what [`http_request`] does, for gRPC calls (`method` is the full path,
/// `/package.Service/Method`; the status is the `grpc-status` of the response head).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTelemetryLayer;

impl<S> tower::Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry { inner }
    }
}

/// See [`GrpcTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for GrpcTelemetry<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let id = request_id::from_headers(request.headers());
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!("grpc", method = %path, request_id = %id);
        let started = Instant::now();
        let call = span.in_scope(|| self.inner.call(request));
        let traced = async move {
            let response = call.await;
            if let Ok(response) = &response {
                // Present in the head only for an error (a "trailers-only" reply); OK otherwise.
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|code| code.parse::<i32>().ok())
                    .unwrap_or(0);
                let failed = matches!(
                    tonic::Code::from(code),
                    tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::Unknown
                );
                finished(u16::try_from(code).unwrap_or(u16::MAX), failed, started);
                crate::metrics::grpc_request(&path, tonic::Code::from(code), started);
            }
            response
        };
        Box::pin(request_id::scope(id, traced.instrument(span)))
    }
}

/// One event per finished request: at debug level, or warn when the service failed.
fn finished(status: u16, failed: bool, started: Instant) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if failed {
        tracing::warn!(status, latency_ms, "request failed");
    } else {
        tracing::debug!(status, latency_ms, "request finished");
    }
}
