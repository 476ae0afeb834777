//! Outbound gRPC channels: connected lazily (a peer may start after us), with a deadline on
//! every call, so a hung peer costs a bounded wait, never a stuck request, carrying the
//! request id of the call that made them and, when protection is on, the internal service
//! credential (see [`crate::auth`]), and counted in `grpc_client_requests_total`.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::{
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::auth::InternalCredential;

/// Deadline of one outbound call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The interceptor every outbound call goes through: the current request id and the service's
/// internal credential.
#[derive(Debug, Clone)]
pub struct Propagate {
    credential: InternalCredential,
}

impl Interceptor for Propagate {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = crate::request_id::propagate(request)?;
        self.credential.attach(&mut request);
        Ok(request)
    }
}

/// What generated clients are built on.
pub type GrpcChannel = InterceptedService<Measured, Propagate>;

/// A lazily connecting channel to the service `peer` (its name in metrics) at `url`, whose
/// calls time out after [`CALL_TIMEOUT`] and carry the current request id and `credential`
/// (`TokenKeys::internal_credential`; none in open mode).
pub fn channel(
    peer: &'static str,
    url: &str,
    credential: &InternalCredential,
) -> anyhow::Result<GrpcChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| anyhow::anyhow!("invalid gRPC URL {url:?}: {err}"))?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let propagate = Propagate {
        credential: credential.clone(),
    };
    let measured = Measured {
        peer,
        inner: endpoint.connect_lazy(),
    };
    Ok(InterceptedService::new(measured, propagate))
}

/// A channel that records each call's peer, method, status code and duration. A tower
/// service rather than part of the interceptor, because only a service sees the response.
#[derive(Debug, Clone)]
pub struct Measured {
    peer: &'static str,
    inner: Channel,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<axum::http::Request<tonic::body::Body>> for Measured {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        let peer = self.peer;
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let call = tower::Service::call(&mut self.inner, request);
        Box::pin(async move {
            match call.await {
                Ok(response) => {
                    crate::metrics::grpc_client_request(peer, &method, code_of(&response), started);
                    Ok(response)
                }
                Err(err) => {
                    // The status the generated client will make of this error (a timeout
                    // becomes CANCELLED, a refused connection UNAVAILABLE).
                    let status = tonic::Status::from_error(err.into());
                    crate::metrics::grpc_client_request(peer, &method, status.code(), started);
                    Err(status.into())
                }
            }
        })
    }
}

/// The call's code as far as the response head tells: an error status is in the head (a
/// "trailers-only" reply); a head without one starts a successful reply.
fn code_of<B>(response: &axum::http::Response<B>) -> tonic::Code {
    match response.headers().get("grpc-status") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|code| code.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from),
        None if response.status().is_success() => tonic::Code::Ok,
        // Not a gRPC server answering (a proxy's error page, say).
        None => tonic::Code::Unknown,
    }
}
