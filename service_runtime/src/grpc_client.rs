//! Outbound gRPC channels: connected lazily (a peer may start after us), with a deadline on
//! every call, so a hung peer costs a bounded wait, never a stuck request, and carrying the
//! request id of the call that made them and, when protection is on, the internal service
//! credential (see [`crate::auth`]).

use std::time::Duration;

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
pub type GrpcChannel = InterceptedService<Channel, Propagate>;

/// A lazily connecting channel to `url` whose calls time out after [`CALL_TIMEOUT`] and carry
/// the current request id and `credential` (`TokenKeys::internal_credential`; none in open
/// mode).
pub fn channel(url: &str, credential: &InternalCredential) -> anyhow::Result<GrpcChannel> {
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
    Ok(InterceptedService::new(endpoint.connect_lazy(), propagate))
}
