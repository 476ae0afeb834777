//! CORS on every HTTP and gRPC-Web server, as `CORS_ALLOWED_ORIGINS` allows
//! ([`crate::config::CorsConfig`]).
//!
//! A request whose `Origin` is allowed goes through tower-http's `CorsLayer`: a preflight
//! (`OPTIONS`) is answered there, before any route, auth check or access guard sees it, and
//! every other reply gets `Access-Control-Allow-Origin` (plus, on gRPC ports, the trailers a
//! grpc-web client must read: `grpc-status`, `grpc-message`, `grpc-status-details-bin`).
//! Any other request — no `Origin` (curl, grpcurl, service to service), or an origin not on
//! the list — is served exactly as with CORS off: no CORS header at all, so a browser refuses
//! the page the reply. Credentials (cookies) are never allowed cross-origin: a page of another
//! origin sends its token in `Authorization`, which needs none, and the web inbox is served by
//! frontend-service itself, same-origin.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use axum::http::{HeaderName, Method, Request, Response, header};
use futures::future::Either;
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use crate::config::AllowedOrigins;

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Which kind of server a [`CorsPolicy`] is for: they differ in what a page may send and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The JSON API.
    Http,
    /// gRPC, and gRPC-Web for browsers.
    Grpc,
}

/// The CORS layer of one server; with [`AllowedOrigins::None`] it changes nothing.
#[derive(Clone)]
pub struct CorsPolicy {
    origins: AllowedOrigins,
    layer: CorsLayer,
}

impl CorsPolicy {
    pub fn new(origins: &AllowedOrigins, port: Port) -> Self {
        let allow_origin = match origins {
            AllowedOrigins::Any => AllowOrigin::any(),
            AllowedOrigins::None => AllowOrigin::list([]),
            AllowedOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        };
        let mut request_headers = vec![
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(crate::request_id::HEADER),
        ];
        let layer = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .max_age(PREFLIGHT_MAX_AGE);
        let layer = match port {
            Port::Http => layer.allow_headers(request_headers),
            Port::Grpc => {
                // What grpc-web clients send (grpc-timeout: a deadline) and must read.
                request_headers.extend(
                    ["x-grpc-web", "x-user-agent", "grpc-timeout"].map(HeaderName::from_static),
                );
                layer.allow_headers(request_headers).expose_headers(
                    ["grpc-status", "grpc-message", "grpc-status-details-bin"]
                        .map(HeaderName::from_static),
                )
            }
        };
        Self {
            origins: origins.clone(),
            layer,
        }
    }
}

impl<S> tower::Layer<S> for CorsPolicy {
    type Service = WithCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithCors {
            origins: self.origins.clone(),
            cors: self.layer.layer(inner),
        }
    }
}

/// A server behind its [`CorsPolicy`].
#[derive(Clone)]
pub struct WithCors<S> {
    origins: AllowedOrigins,
    cors: Cors<S>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for WithCors<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readies the inner service, whichever way the request then goes.
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let allowed = request
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|origin| self.origins.allows(origin));
        if allowed {
            Either::Left(self.cors.call(request))
        } else {
            Either::Right(self.cors.get_mut().call(request))
        }
    }
}
