//! Configuration, read once at the edge: each service declares one struct (clap, every setting
//! a flag and an environment variable, `--help` lists them with their defaults) and flattens
//! in [`Runtime`], the settings every service shares. Nothing below `main` reads the
//! environment.

use std::{ffi::OsStr, path::PathBuf};

mod cors;
mod limits;
mod parse;

use self::parse::strip_db_index;
pub use self::{
    cors::{AllowedOrigins, CorsConfig},
    limits::{GrpcLimits, HttpLimits, OutboxUpkeep, ServerLimits},
    parse::{parse_duration, positive},
};
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
/// The HTTP port may have a second variable, an alias read when the first is unset:
/// `http: ("METRICS_PORT" or "FRONTEND_HTTP_PORT", "metrics-port", 3031)`.
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
            http: ($http_var:literal $(or $http_alias:literal)?, $http_flag:literal, $http_default:literal),
            grpc: $grpc_default:literal,
            $( $(#[$field_meta:meta])* pub $field:ident : $type:ty, )*
        }
    ) => {
        #[derive(Debug, Clone, clap::Parser)]
        $(#[$meta])*
        pub struct $name {
            /// HTTP port; 0 picks a free one.
            #[arg(long = $http_flag, env = $http_var, default_value_t = $crate::config::alias_or($http_default, None $(.or(Some($http_alias)))?))]
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

/// The default of a setting with an alias variable: the alias's value when it is set (and not
/// blank), else `default`. Used by [`service_config!`]: clap reads one variable per setting,
/// so the alias becomes the default and the setting's own variable still wins. An alias that
/// does not parse stops the process, as a bad value of the setting's own variable does.
pub fn alias_or<T: std::str::FromStr>(default: T, alias: Option<&str>) -> T {
    let Some(name) = alias else { return default };
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().unwrap_or_else(|_| {
            eprintln!("error: invalid value {value:?} for {name}");
            std::process::exit(2)
        }),
        _ => default,
    }
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
    pub outbox: OutboxUpkeep,
    #[command(flatten)]
    pub cors: CorsConfig,
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
    #[command(flatten)]
    pub sentinel: SentinelConfig,
    #[command(flatten)]
    pub replication: ReplicationConfig,
}

/// Where Sentinel is, when it tells the service which Redis is the primary.
#[derive(Clone, clap::Args)]
pub struct SentinelConfig {
    /// Sentinels as `host:port[,host:port…]`: when set, the primary is the one they name
    /// (REDIS_URL then gives only the database, user and password), and the service follows
    /// a failover by itself.
    #[arg(id = "redis_sentinels", long = "redis-sentinels", env = "REDIS_SENTINELS", value_parser = parse_sentinels)]
    sentinels: Option<Sentinels>,
    /// The name the sentinels monitor the primary under.
    #[arg(
        id = "redis_sentinel_master",
        long = "redis-sentinel-master",
        env = "REDIS_SENTINEL_MASTER",
        default_value = "mymaster"
    )]
    pub master: String,
    /// The user to log in to the sentinels as (Sentinel's ACL). Unset: Sentinel's `default`
    /// user, i.e. its `requirepass`.
    #[arg(
        id = "redis_sentinel_username",
        long = "redis-sentinel-username",
        env = "REDIS_SENTINEL_USERNAME"
    )]
    username: Option<String>,
    /// The sentinels' password. Unset: the Redis password (REDIS_PASSWORD or the URL's), if
    /// any: one password for both, as with a `requirepass` shared by Redis and Sentinel.
    #[arg(id = "redis_sentinel_password", long = "redis-sentinel-password", env = "REDIS_SENTINEL_PASSWORD", hide_env_values = true, value_parser = parse_redis_password)]
    password: Option<RedisPassword>,
}

/// The sentinels' addresses, in the order given.
#[derive(Debug, Clone)]
struct Sentinels(Vec<(String, u16)>);

fn parse_sentinels(raw: &str) -> Result<Sentinels, String> {
    parse::host_ports(raw).map(Sentinels)
}

/// How many replicas must hold a write before a client is told it succeeded.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReplicationConfig {
    /// Replicas that must have a write (Redis `WAIT`) before a client is told it succeeded;
    /// 0: answered once the primary has it, as a single Redis does.
    #[arg(
        long = "redis-min-replicas-ack",
        env = "REDIS_MIN_REPLICAS_ACK",
        default_value_t = 0
    )]
    pub min_replicas_ack: u32,
    /// How long a write waits for those replicas; then the client gets UNAVAILABLE / 503
    /// ("not yet replicated") and may retry.
    #[arg(long = "redis-wait-timeout", env = "REDIS_WAIT_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub wait_timeout: std::time::Duration,
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
            .field("sentinel", &self.sentinel)
            .field("replication", &self.replication)
            .finish()
    }
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
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
            sentinel: SentinelConfig {
                sentinels: None,
                master: "mymaster".to_owned(),
                username: None,
                password: None,
            },
            replication: ReplicationConfig {
                min_replicas_ack: 0,
                wait_timeout: std::time::Duration::from_millis(500),
            },
        }
    }

    /// [`RedisConfig::at`] whose primary is the one the sentinels at `sentinels` name
    /// `master` (tests and tools).
    pub fn sentinels(mut self, sentinels: Vec<(String, u16)>, master: &str) -> Self {
        self.sentinel.sentinels = Some(Sentinels(sentinels));
        self.sentinel.master = master.to_owned();
        self
    }

    /// Where the sentinels are and how to log in to them, when Sentinel names the primary.
    pub fn sentinel_nodes(&self) -> anyhow::Result<Option<Vec<redis::ConnectionInfo>>> {
        let Some(Sentinels(nodes)) = self.sentinel.sentinels.as_ref() else {
            return Ok(None);
        };
        let password = (self
            .sentinel
            .password
            .as_ref()
            .map(|RedisPassword(p)| p.clone()))
        .or_else(|| self.password.as_ref().map(|RedisPassword(p)| p.clone()))
        .or_else(|| self.url_password());
        let username = self.sentinel.username.clone();
        let mut settings = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some(username) = username {
            settings = settings.set_username(username);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let nodes = nodes
            .iter()
            .map(|(host, port)| {
                let addr = redis::ConnectionAddr::Tcp(host.clone(), *port);
                redis::IntoConnectionInfo::into_connection_info(addr)
                    .map(|info| info.set_redis_settings(settings.clone()))
            })
            .collect::<redis::RedisResult<_>>()
            .map_err(|err| anyhow::anyhow!("invalid REDIS_SENTINELS: {err}"))?;
        Ok(Some(nodes))
    }

    /// The password inside REDIS_URL, if any.
    fn url_password(&self) -> Option<String> {
        let info = redis::IntoConnectionInfo::into_connection_info(self.base_url()).ok()?;
        info.redis_settings().password().map(str::to_owned)
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
