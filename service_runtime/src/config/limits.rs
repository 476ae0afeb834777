//! The limits every service's servers and outboxes keep, as settings.

use std::time::Duration;

use super::{parse_duration, positive};

/// Limits and timeouts of a service's HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HttpLimits {
    /// How long a client may take to send a request's whole header, from its first byte; a
    /// client that dawdles is disconnected.
    #[arg(id = "http_header_read_timeout", long = "http-header-read-timeout", env = "HTTP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// How long a request may take from its complete header to the reply (body upload
    /// included); past it the reply is 408.
    #[arg(id = "http_request_timeout", long = "http-request-timeout", env = "HTTP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long a connection may wait for its next request before it is closed.
    #[arg(id = "http_idle_timeout", long = "http-idle-timeout", env = "HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Connections the HTTP server holds open at once; more wait in the accept queue.
    #[arg(id = "http_max_connections", long = "http-max-connections", env = "HTTP_MAX_CONNECTIONS", default_value = "1024", value_parser = positive::<usize>)]
    pub max_connections: usize,
    /// Longest request target (path and query) answered; longer ones get 414.
    #[arg(id = "http_max_uri_bytes", long = "http-max-uri-bytes", env = "HTTP_MAX_URI_BYTES", default_value = "8192", value_parser = positive::<usize>)]
    pub max_uri_bytes: usize,
}

/// Limits and timeouts of a service's gRPC server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct GrpcLimits {
    /// How long a gRPC connection may be silent before the server pings it.
    #[arg(id = "grpc_keepalive_interval", long = "grpc-keepalive-interval", env = "GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,
    /// How long the server waits for the answer to its ping before it closes the connection.
    #[arg(id = "grpc_keepalive_timeout", long = "grpc-keepalive-timeout", env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,
    /// How long a call may take until its reply starts; past it the status is
    /// DEADLINE_EXCEEDED.
    #[arg(id = "grpc_request_timeout", long = "grpc-request-timeout", env = "GRPC_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Concurrent calls one HTTP/2 connection may carry.
    #[arg(id = "grpc_max_concurrent_streams", long = "grpc-max-concurrent-streams", env = "GRPC_MAX_CONCURRENT_STREAMS", default_value = "256", value_parser = positive::<u32>)]
    pub max_concurrent_streams: u32,
    /// Connections the gRPC server holds open at once; more wait in the accept queue.
    #[arg(id = "grpc_max_connections", long = "grpc-max-connections", env = "GRPC_MAX_CONNECTIONS", default_value = "1024", value_parser = positive::<usize>)]
    pub max_connections: usize,
}

impl GrpcLimits {
    /// How long a connection may send nothing at all: a live client answers the ping that
    /// follows `keepalive_interval` of silence within `keepalive_timeout`, so one that stays
    /// silent longer is dead, or never started talking HTTP/2.
    pub fn max_silence(&self) -> Duration {
        self.keepalive_interval + self.keepalive_timeout
    }
}

/// What bounds the servers of a service, so that slow, idle or numerous clients cannot hold
/// its connections, descriptors or tasks forever. Every limit is on: zero is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct ServerLimits {
    #[command(flatten)]
    pub http: HttpLimits,
    #[command(flatten)]
    pub grpc: GrpcLimits,
}

/// The upkeep settings shared by every outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct OutboxUpkeep {
    /// An outbox consumer (one per replica and stream) without pending entries that has not
    /// read for this long belongs to a replica that is gone and is removed from its group.
    #[arg(
        long = "outbox-idle-consumer-expiry",
        env = "OUTBOX_IDLE_CONSUMER_EXPIRY",
        default_value = "1h",
        value_parser = super::parse_duration
    )]
    pub idle_consumer_expiry: Duration,
}

impl Default for OutboxUpkeep {
    fn default() -> Self {
        Self {
            idle_consumer_expiry: Duration::from_secs(3600),
        }
    }
}
