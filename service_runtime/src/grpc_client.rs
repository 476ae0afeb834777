//! Outbound gRPC channels: connected lazily (a peer may start after us), with a deadline on
//! every call, so a hung peer costs a bounded wait, never a stuck request, and carrying the
//! request id of the call that made them.

use std::time::Duration;

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

/// Deadline of one outbound call, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The interceptor every outbound call goes through.
pub type Propagate = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// What generated clients are built on.
pub type GrpcChannel = InterceptedService<Channel, Propagate>;

/// A lazily connecting channel to `url` whose calls time out after [`CALL_TIMEOUT`] and carry
/// the current request id.
pub fn channel(url: &str) -> anyhow::Result<GrpcChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| anyhow::anyhow!("invalid gRPC URL {url:?}: {err}"))?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let propagate: Propagate = crate::request_id::propagate;
    Ok(InterceptedService::new(endpoint.connect_lazy(), propagate))
}
