//! Configuration, read once at the edge: each service declares one struct (clap, every setting
//! a flag and an environment variable, `--help` lists them with their defaults) and flattens
//! in [`Runtime`], the settings every service shares. Nothing below `main` reads the
//! environment.

use std::{ffi::OsStr, path::PathBuf, time::Duration};

use crate::auth::AuthConfig;

/// A service's declared configuration.
pub trait ServiceConfig: clap::Parser {
    /// The settings every service shares.
    fn runtime(&self) -> &Runtime;
}

/// The configuration of `C` from the command line and the environment, or the process exits
/// with clap's message. A variable set to nothing counts as unset, as it always has here
/// (compose passes `AUTH_SECRET=` for open mode).
pub fn from_env<C: clap::Parser>() -> C {
    let blank = |name: &OsStr| {
        std::env::var_os(name).is_some_and(|value| value.to_string_lossy().trim().is_empty())
    };
    let command = C::command().mut_args(|arg| match arg.get_env() {
        Some(name) if blank(name) => arg.env(None::<&'static str>),
        _ => arg,
    });
    C::from_arg_matches(&command.get_matches()).unwrap_or_else(|err| err.exit())
}

/// Declares a service's configuration: a clap struct with its HTTP and gRPC ports (the
/// contract's defaults), the service's own settings, and [`Runtime`] flattened in, plus its
/// [`ServiceConfig`] impl.
///
/// ```ignore
/// service_runtime::service_config! {
///     /// Everything message-service reads.
///     #[command(name = "message-service", version, about = "…")]
///     pub struct Config {
///         http: ("HTTP_PORT", "http-port", 8181),
///         grpc: 9696,
///         #[command(flatten)]
///         pub user_service: UserServicePeer,
///     }
/// }
/// ```
#[macro_export]
macro_rules! service_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            http: ($http_var:literal, $http_flag:literal, $http_default:literal),
            grpc: $grpc_default:literal,
            $( $(#[$field_meta:meta])* pub $field:ident : $type:ty, )*
        }
    ) => {
        #[derive(Debug, Clone, clap::Parser)]
        $(#[$meta])*
        pub struct $name {
            /// HTTP port; 0 picks a free one.
            #[arg(long = $http_flag, env = $http_var, default_value_t = $http_default)]
            pub http_port: u16,
            /// gRPC port; 0 picks a free one.
            #[arg(long = "grpc-port", env = "GRPC_PORT", default_value_t = $grpc_default)]
            pub grpc_port: u16,
            $( $(#[$field_meta])* pub $field: $type, )*
            #[command(flatten)]
            pub runtime: $crate::config::Runtime,
        }

        impl $crate::config::ServiceConfig for $name {
            fn runtime(&self) -> &$crate::config::Runtime {
                &self.runtime
            }
        }
    };
}

/// What every service reads besides its own settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Runtime {
    #[command(flatten)]
    pub redis: RedisConfig,
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub limits: ServerLimits,
    #[command(flatten)]
    pub outbox: crate::outbox::OutboxUpkeep,
    /// Log filter (tracing's `EnvFilter` syntax, e.g. `info,message_service=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
    /// `json`: one JSON object per log line, for log collectors; `text`: human-readable lines.
    #[arg(long = "log-format", env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Once the listeners are bound, write `{"http": <port>, "grpc": <port>}` here (for a
    /// supervisor that started the service on port 0).
    #[arg(long = "ready-file", env = "READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// This host's name: outbox consumer names start with it, so each replica re-reads only its
    /// own in-flight entries.
    #[arg(long = "hostname", env = "HOSTNAME", default_value = "localhost")]
    pub hostname: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where Redis is, and who to log in as.
#[derive(Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis as `redis://host:port` or `redis://user:password@host:port`; a database index in
    /// it is ignored (each service selects its own). Default: `redis://127.0.0.1:6379`, or
    /// REDIS_HOST/REDIS_PORT when set.
    #[arg(long = "redis-url", env = "REDIS_URL")]
    url: Option<String>,
    /// Redis host, the original's way (used when REDIS_URL is unset).
    #[arg(long = "redis-host", env = "REDIS_HOST")]
    host: Option<String>,
    /// Redis port, the original's way (used when REDIS_URL is unset) [default: 6379].
    #[arg(long = "redis-port", env = "REDIS_PORT")]
    port: Option<u16>,
    /// The Redis ACL user to log in as (docker/redis/users.acl has one per service); replaces
    /// a user in REDIS_URL. Unset: the user in REDIS_URL, else Redis' `default`.
    #[arg(long = "redis-username", env = "REDIS_USERNAME")]
    username: Option<String>,
    /// The password of that user (or Redis' `requirepass`); replaces a password in REDIS_URL.
    #[arg(long = "redis-password", env = "REDIS_PASSWORD", hide_env_values = true, value_parser = parse_redis_password)]
    password: Option<RedisPassword>,
}

/// A Redis password; never printed.
#[derive(Clone)]
struct RedisPassword(String);

fn parse_redis_password(raw: &str) -> Result<RedisPassword, String> {
    Ok(RedisPassword(raw.to_owned()))
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a password, neither the setting nor one inside the URL.
        f.debug_struct("RedisConfig")
            .field("url", &redact_userinfo(&self.base_url()))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| ".."))
            .finish()
    }
}

/// `url` with whatever precedes an `@` in its authority shown as `..`.
fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://..@{}", &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl RedisConfig {
    /// Redis at `url` (tests and tools).
    pub fn at(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            host: None,
            port: None,
            username: None,
            password: None,
        }
    }

    /// `redis://host:port` without a database index: REDIS_URL, else REDIS_HOST/REDIS_PORT,
    /// else the default.
    pub fn base_url(&self) -> String {
        let url = match (&self.url, &self.host, self.port) {
            (Some(url), _, _) => url.clone(),
            (None, None, None) => "redis://127.0.0.1:6379".to_owned(),
            (None, host, port) => format!(
                "redis://{}:{}",
                host.as_deref().unwrap_or("127.0.0.1"),
                port.unwrap_or(6379)
            ),
        };
        strip_db_index(&url)
    }

    /// Where and how to connect to database `db`: [`RedisConfig::base_url`] with the user and
    /// password of REDIS_USERNAME/REDIS_PASSWORD, where set, in place of the URL's.
    pub fn connection_info(&self, db: u8) -> anyhow::Result<redis::ConnectionInfo> {
        let base = self.base_url();
        let info = redis::IntoConnectionInfo::into_connection_info(format!("{base}/{db}"))
            .map_err(|err| {
                anyhow::anyhow!("invalid Redis URL {:?}: {err}", redact_userinfo(&base))
            })?;
        // No `CLIENT SETINFO` on connect: Redis before 7.2 does not know it, and the ACL users
        // of docker/redis/users.acl are not granted it.
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(RedisPassword(password)) = &self.password {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }
}

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

/// A duration: `500ms`, `10s`, `15m`, `1h`, `7d`, or plain seconds (`10`, `0.5`). Zero or
/// anything else is refused.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
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

/// A number above zero.
pub fn positive<T>(raw: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialEq,
    T::Err: std::fmt::Display,
{
    let value: T = raw.trim().parse().map_err(|err: T::Err| err.to_string())?;
    if value == T::default() {
        return Err("must be above 0".to_owned());
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

    use clap::Parser as _;

    use super::{RedisConfig, Runtime, parse_duration, strip_db_index};

    #[derive(clap::Parser)]
    struct Only {
        #[command(flatten)]
        runtime: Runtime,
    }

    #[test]
    fn the_shared_settings_are_one_valid_command_with_the_documented_defaults() {
        use clap::CommandFactory as _;
        Only::command().debug_assert();
        let only = Only::try_parse_from(["service"]).expect("defaults parse");
        let limits = only.runtime.limits;
        assert_eq!(limits.http.request_timeout, Duration::from_secs(30));
        assert_eq!(limits.grpc.request_timeout, Duration::from_secs(30));
        assert_eq!(limits.http.max_connections, 1024);
        assert_eq!(limits.grpc.max_concurrent_streams, 256);
        assert!(!only.runtime.auth.is_on());
        let refused = Only::try_parse_from(["service", "--http-idle-timeout", "0"]);
        assert!(refused.is_err(), "a zero timeout was accepted");
    }

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
    fn the_redis_user_and_password_come_from_the_url_or_the_settings_and_are_never_printed() {
        let from_url = RedisConfig::at("redis://frontend-service:s3cret@h:6379/4");
        let info = from_url.connection_info(2).expect("valid");
        assert_eq!(info.redis_settings().username(), Some("frontend-service"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 2);
        assert!(!format!("{from_url:?}").contains("s3cret"), "{from_url:?}");

        let only = Only::try_parse_from([
            "service",
            "--redis-url",
            "redis://other:old@h:6379",
            "--redis-username",
            "user-service",
            "--redis-password",
            "n3w",
        ])
        .expect("parses");
        let redis = &only.runtime.redis;
        let info = redis.connection_info(0).expect("valid");
        assert_eq!(info.redis_settings().username(), Some("user-service"));
        assert_eq!(info.redis_settings().password(), Some("n3w"));
        assert!(!format!("{redis:?}").contains("n3w"), "{redis:?}");
        assert!(!format!("{redis:?}").contains("old"), "{redis:?}");
    }

    #[test]
    fn a_database_index_in_the_url_is_dropped() {
        assert_eq!(strip_db_index("redis://h:6379/3"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379/"), "redis://h:6379");
        assert_eq!(strip_db_index("redis://h:6379"), "redis://h:6379");
    }
}
