//! Reading the contract's environment variables, with the contract's defaults.

use std::{env, str::FromStr, time::Duration};

use anyhow::{Context, anyhow};

/// Default Redis when neither `REDIS_URL` nor `REDIS_HOST`/`REDIS_PORT` is set.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The variable's value, or `None` when it is unset or empty.
pub fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The variable parsed as `T`, or `default` when unset; a value that does not parse is an error
/// (a typo in a port must stop the service, not silently fall back).
pub fn parse_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|err| anyhow!("{name}={raw:?} is not valid: {err}")),
    }
}

/// A peer service as the contract names it: the variable holding its gRPC URL, and the URL
/// used when the variable is unset.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub var: &'static str,
    pub default_url: &'static str,
}

impl Peer {
    /// The peer's gRPC URL from the environment, or the contract's default.
    pub fn url(self) -> String {
        url_or(self.var, self.default_url)
    }
}

pub const USER_SERVICE: Peer = Peer {
    var: "USER_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:9797",
};
pub const NOTIFICATION_SERVICE: Peer = Peer {
    var: "NOTIFICATION_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:9898",
};
pub const FRONTEND_SERVICE: Peer = Peer {
    var: "FRONTEND_SERVICE_GRPC_URL",
    default_url: "http://127.0.0.1:3030",
};

/// A peer's gRPC URL: `name` or `default`.
pub fn url_or(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// Where Redis is: `REDIS_URL`, else `REDIS_HOST`/`REDIS_PORT` (the original's names), else
/// the default. Any database index in the URL is dropped: each service selects its own.
pub fn redis_base_url() -> anyhow::Result<String> {
    let url = match (var("REDIS_URL"), var("REDIS_HOST"), var("REDIS_PORT")) {
        (Some(url), _, _) => url,
        (None, None, None) => DEFAULT_REDIS_URL.to_owned(),
        (None, host, _) => {
            let port: u16 = parse_or("REDIS_PORT", 6379)?;
            format!("redis://{}:{port}", host.as_deref().unwrap_or("127.0.0.1"))
        }
    };
    Ok(strip_db_index(&url))
}

/// The ports a service listens on, from `HTTP_PORT` / `GRPC_PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

impl Ports {
    /// Reads `HTTP_PORT` and `GRPC_PORT`, defaulting to the contract's ports of the service.
    pub fn from_env(default_http: u16, default_grpc: u16) -> anyhow::Result<Self> {
        Ok(Self {
            http: parse_or("HTTP_PORT", default_http).context("HTTP_PORT")?,
            grpc: parse_or("GRPC_PORT", default_grpc).context("GRPC_PORT")?,
        })
    }
}

/// What every service with a Redis database reads: its listening ports and where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    /// HTTP and gRPC listening ports; 0 picks free ones.
    pub ports: Ports,
    /// `redis://host:port` without a database index; each service selects its own.
    pub redis_url: String,
}

impl Common {
    /// `HTTP_PORT`, `GRPC_PORT` (defaulting to the service's contract ports), `REDIS_URL` or
    /// `REDIS_HOST`/`REDIS_PORT`.
    pub fn from_env(default_http: u16, default_grpc: u16) -> anyhow::Result<Self> {
        Ok(Self {
            ports: Ports::from_env(default_http, default_grpc)?,
            redis_url: redis_base_url()?,
        })
    }
}

/// How long an HTTP client may take to send a request's whole header, counted from its first
/// byte; a client that dawdles is disconnected.
pub const DEFAULT_HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP request may take from its complete header to the reply (body upload
/// included); past it the reply is 408.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an HTTP connection may wait for its next request before it is closed.
pub const DEFAULT_HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request target (path and query) answered; longer ones get 414.
pub const DEFAULT_HTTP_MAX_URI_BYTES: usize = 8 * 1024;
/// How long a gRPC connection may be silent before the server pings it.
pub const DEFAULT_GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the server waits for the answer to its ping before it closes the connection.
pub const DEFAULT_GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a gRPC call may take until its reply starts; past it the status is
/// `DEADLINE_EXCEEDED`.
pub const DEFAULT_GRPC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent calls one HTTP/2 connection may carry.
pub const DEFAULT_GRPC_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Connections each server holds open at once; more wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Limits and timeouts of a service's HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_uri_bytes: usize,
}

/// Limits and timeouts of a service's gRPC server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_streams: u32,
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
/// its connections, descriptors or tasks forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub http: HttpLimits,
    pub grpc: GrpcLimits,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            http: HttpLimits {
                header_read_timeout: DEFAULT_HTTP_HEADER_READ_TIMEOUT,
                request_timeout: DEFAULT_HTTP_REQUEST_TIMEOUT,
                idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_uri_bytes: DEFAULT_HTTP_MAX_URI_BYTES,
            },
            grpc: GrpcLimits {
                keepalive_interval: DEFAULT_GRPC_KEEPALIVE_INTERVAL,
                keepalive_timeout: DEFAULT_GRPC_KEEPALIVE_TIMEOUT,
                request_timeout: DEFAULT_GRPC_REQUEST_TIMEOUT,
                max_concurrent_streams: DEFAULT_GRPC_MAX_CONCURRENT_STREAMS,
                max_connections: DEFAULT_MAX_CONNECTIONS,
            },
        }
    }
}

impl ServerLimits {
    /// `HTTP_HEADER_READ_TIMEOUT`, `HTTP_REQUEST_TIMEOUT`, `HTTP_IDLE_TIMEOUT`,
    /// `HTTP_MAX_CONNECTIONS`, `HTTP_MAX_URI_BYTES`, `GRPC_KEEPALIVE_INTERVAL`,
    /// `GRPC_KEEPALIVE_TIMEOUT`, `GRPC_REQUEST_TIMEOUT`, `GRPC_MAX_CONCURRENT_STREAMS`,
    /// `GRPC_MAX_CONNECTIONS`; durations as `500ms`, `10s` or `10` (seconds). Zero is refused:
    /// every limit is on.
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = Self::default();
        Ok(Self {
            http: HttpLimits {
                header_read_timeout: duration_or(
                    "HTTP_HEADER_READ_TIMEOUT",
                    defaults.http.header_read_timeout,
                )?,
                request_timeout: duration_or(
                    "HTTP_REQUEST_TIMEOUT",
                    defaults.http.request_timeout,
                )?,
                idle_timeout: duration_or("HTTP_IDLE_TIMEOUT", defaults.http.idle_timeout)?,
                max_connections: positive_or(
                    "HTTP_MAX_CONNECTIONS",
                    defaults.http.max_connections,
                )?,
                max_uri_bytes: positive_or("HTTP_MAX_URI_BYTES", defaults.http.max_uri_bytes)?,
            },
            grpc: GrpcLimits {
                keepalive_interval: duration_or(
                    "GRPC_KEEPALIVE_INTERVAL",
                    defaults.grpc.keepalive_interval,
                )?,
                keepalive_timeout: duration_or(
                    "GRPC_KEEPALIVE_TIMEOUT",
                    defaults.grpc.keepalive_timeout,
                )?,
                request_timeout: duration_or(
                    "GRPC_REQUEST_TIMEOUT",
                    defaults.grpc.request_timeout,
                )?,
                max_concurrent_streams: positive_or(
                    "GRPC_MAX_CONCURRENT_STREAMS",
                    defaults.grpc.max_concurrent_streams,
                )?,
                max_connections: positive_or(
                    "GRPC_MAX_CONNECTIONS",
                    defaults.grpc.max_connections,
                )?,
            },
        })
    }
}

/// The variable as a duration, or `default` when unset: `500ms`, `10s`, `15m`, `1h`, `7d`,
/// or plain seconds (`10`, `0.5`). Zero or anything else is an error.
pub fn duration_or(name: &str, default: Duration) -> anyhow::Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(raw) => {
            parse_duration(&raw).map_err(|err| anyhow!("{name}={raw:?} is not valid: {err}"))
        }
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit_secs) = [
        ("ms", 0.001),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
        ("d", 86_400.0),
    ]
    .iter()
    .find_map(|(suffix, secs)| raw.strip_suffix(suffix).map(|number| (number, *secs)))
    .unwrap_or((raw, 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 10s, 15m, 1h, 7d or 10".to_owned())?;
    Duration::try_from_secs_f64(value * unit_secs)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| "must be a positive duration".to_owned())
}

/// The variable as a number above zero, or `default` when unset.
fn positive_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    let value = parse_or(name, default)?;
    if value == T::default() {
        return Err(anyhow!("{name} must be above 0"));
    }
    Ok(value)
}

fn strip_db_index(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((base, db)) if !db.is_empty() && db.bytes().all(|b| b.is_ascii_digit()) => {
            base.to_owned()
        }
        _ => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_duration, strip_db_index};

    #[test]
    fn durations_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 10 "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn zero_negative_and_unitless_garbage_are_not_durations() {
        for bad in ["0", "0ms", "-1s", "ten", "5w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_database_index_in_the_url_is_dropped() {
        assert_eq!(strip_db_index("redis://h:6379/3"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379/"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379"), "redis://h:6379");
    }
}
