//! Outbound gRPC channels: connected lazily (a peer may start after us) and with a deadline on
//! every call, so a hung peer costs a bounded wait, never a stuck request.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Deadline of one outbound call, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A lazily connecting channel to `url` whose calls time out after [`CALL_TIMEOUT`].
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| anyhow::anyhow!("invalid gRPC URL {url:?}: {err}"))?
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect_lazy())
}
