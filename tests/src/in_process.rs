//! The services in this test process: each service's lib crate `build`s it on ports 0 and
//! runs it until its [`InProcess`] handle drops. No binary, no `READY_FILE`: the real ports are
//! read off the bound listeners. Redis stays a real `redis-server` ([`crate::RedisServer`]).
//!
//! What cannot be done in-process, and stays with [`crate::ServiceProcess`]: killing or
//! restarting a service, and reading `/metrics` (the metrics recorder is process-wide, so
//! every in-process service of every test would be counted together).
//!
//! All in-process services run on one runtime of their own ([`runtime`]), not on the test's:
//! a test that blocks its thread (or ends, dropping its runtime) then cannot stall or cancel
//! the services it talks to. Tracing is not installed per service (the subscriber is global):
//! with `TEST_LOG` set it is installed once, filtered by `RUST_LOG` (default `info`).

use std::{
    num::NonZeroU32,
    str::FromStr,
    sync::{Once, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use service_runtime::{
    auth::{AuthConfig, DEFAULT_TOKEN_TTL},
    config::{Common, GrpcLimits, HttpLimits, Ports, ServerLimits},
    server::Service,
};
use tokio::sync::oneshot;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::BoundPorts;

/// How long a service may take to report SERVING.
const START_UP: Duration = Duration::from_secs(15);

/// One of the four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    User,
    Message,
    Notification,
    Frontend,
}

impl ServiceName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user-service",
            Self::Message => "message-service",
            Self::Notification => "notification-service",
            Self::Frontend => "frontend-service",
        }
    }
}

/// A service's configuration, as its binary would read it from the environment.
#[derive(Debug, Clone)]
pub enum ServiceConfig {
    User(user_service::Config),
    Message(message_service::Config),
    Notification(notification_service::Config),
    Frontend(frontend_service::Config),
}

/// Every variable [`config_of`] understands; anything else is refused rather than silently
/// ignored (a test setting it would test nothing).
const KNOWN: &[&str] = &[
    "REDIS_URL",
    "HTTP_PORT",
    "GRPC_PORT",
    "METRICS_PORT",
    "USER_SERVICE_GRPC_URL",
    "NOTIFICATION_SERVICE_GRPC_URL",
    "FRONTEND_SERVICE_GRPC_URL",
    "AUTH_SECRET",
    "AUTH_TOKEN_TTL",
    "LOGIN_MAX_FAILURES",
    "LOGIN_FAILURE_WINDOW",
    "LOGIN_ATTEMPTS_PER_ADDRESS",
    "PASSWORD_POLICY",
    "MAX_MESSAGE_BYTES",
    "NOTIFICATION_RETENTION_COUNT",
    "NOTIFICATION_RETENTION_DAYS",
    "HTTP_HEADER_READ_TIMEOUT",
    "HTTP_REQUEST_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_URI_BYTES",
    "GRPC_KEEPALIVE_INTERVAL",
    "GRPC_KEEPALIVE_TIMEOUT",
    "GRPC_REQUEST_TIMEOUT",
    "GRPC_MAX_CONCURRENT_STREAMS",
    "GRPC_MAX_CONNECTIONS",
];

/// The configuration of `service` and its servers' limits from `vars`, the variables its
/// binary would get in its environment (a later pair overrides an earlier one; an empty value
/// is unset). The one place the harness builds a service's configuration: no test sets process
/// environment variables (tests run in parallel threads of one process).
///
/// Built field by field from the services' public `Config` structs, with their defaults.
/// Once each `Config` is a `clap::Parser` with `env`, this becomes
/// `Config::try_parse_from(flags(vars))` per service (see [`flags`]).
pub fn config_of(
    service: ServiceName,
    vars: &[(String, String)],
) -> anyhow::Result<(ServiceConfig, ServerLimits)> {
    let vars = Vars(vars);
    if let Some((name, _)) = vars
        .0
        .iter()
        .find(|(name, _)| !KNOWN.contains(&name.as_str()))
    {
        return Err(anyhow!("config_of does not know the variable {name}"));
    }
    let redis_url = vars
        .get("REDIS_URL")
        .context("REDIS_URL is required")?
        .to_owned();
    let common = |default_http: u16, default_grpc: u16| -> anyhow::Result<Common> {
        Ok(Common {
            ports: Ports {
                http: vars.parse_or("HTTP_PORT", default_http)?,
                grpc: vars.parse_or("GRPC_PORT", default_grpc)?,
            },
            redis_url: redis_url.clone(),
        })
    };
    let peer = |peer: service_runtime::config::Peer| {
        vars.get(peer.var).unwrap_or(peer.default_url).to_owned()
    };
    let token_ttl = vars.duration_or("AUTH_TOKEN_TTL", DEFAULT_TOKEN_TTL)?;
    let auth = match vars.get("AUTH_SECRET") {
        None => AuthConfig::open(token_ttl),
        Some(secret) => AuthConfig::protected(secret.as_bytes(), token_ttl)?,
    };
    let config = match service {
        ServiceName::User => {
            let defaults = user_service::LoginLimits::default();
            let max_failures = vars.parse_or("LOGIN_MAX_FAILURES", defaults.max_failures)?;
            anyhow::ensure!(max_failures >= 1, "LOGIN_MAX_FAILURES must be at least 1");
            let enforced = match vars.get("PASSWORD_POLICY") {
                None => auth.is_on(),
                Some(on) if on.eq_ignore_ascii_case("on") => true,
                Some(off) if off.eq_ignore_ascii_case("off") => false,
                Some(other) => return Err(anyhow!("PASSWORD_POLICY={other:?} is not valid")),
            };
            ServiceConfig::User(user_service::Config {
                common: common(
                    user_service::DEFAULT_HTTP_PORT,
                    user_service::DEFAULT_GRPC_PORT,
                )?,
                notification_service_url: peer(service_runtime::config::NOTIFICATION_SERVICE),
                login: user_service::LoginLimits {
                    max_failures,
                    failure_window: vars
                        .duration_or("LOGIN_FAILURE_WINDOW", defaults.failure_window)?,
                    attempts_per_address: NonZeroU32::new(vars.parse_or(
                        "LOGIN_ATTEMPTS_PER_ADDRESS",
                        defaults.attempts_per_address.map_or(0, NonZeroU32::get),
                    )?),
                },
                password_policy: user_service::PasswordPolicy { enforced },
                auth,
            })
        }
        ServiceName::Message => ServiceConfig::Message(message_service::Config {
            common: common(
                message_service::DEFAULT_HTTP_PORT,
                message_service::DEFAULT_GRPC_PORT,
            )?,
            user_service_url: peer(service_runtime::config::USER_SERVICE),
            notification_service_url: peer(service_runtime::config::NOTIFICATION_SERVICE),
            max_message_bytes: vars.parse_or(
                "MAX_MESSAGE_BYTES",
                service_runtime::limits::DEFAULT_MAX_MESSAGE_BYTES,
            )?,
            auth,
        }),
        ServiceName::Notification => ServiceConfig::Notification(notification_service::Config {
            common: common(
                notification_service::DEFAULT_HTTP_PORT,
                notification_service::DEFAULT_GRPC_PORT,
            )?,
            frontend_service_url: peer(service_runtime::config::FRONTEND_SERVICE),
            retention: notification_service::Retention {
                count: vars.parse_or("NOTIFICATION_RETENTION_COUNT", 1000)?,
                days: vars.parse_or("NOTIFICATION_RETENTION_DAYS", 30)?,
            },
            user_service_url: peer(service_runtime::config::USER_SERVICE),
            auth,
        }),
        ServiceName::Frontend => ServiceConfig::Frontend(frontend_service::Config {
            grpc_port: vars.parse_or("GRPC_PORT", frontend_service::DEFAULT_GRPC_PORT)?,
            metrics_port: vars.parse_or("METRICS_PORT", frontend_service::DEFAULT_METRICS_PORT)?,
            redis_url,
            notification_service_url: peer(service_runtime::config::NOTIFICATION_SERVICE),
            user_service_url: peer(service_runtime::config::USER_SERVICE),
            auth,
        }),
    };
    Ok((config, server_limits(&vars)?))
}

/// `vars` as the command-line flags of the services' coming `clap` configs: `REDIS_URL=x`
/// becomes `--redis-url=x`, after the program name.
pub fn flags(service: ServiceName, vars: &[(String, String)]) -> Vec<String> {
    std::iter::once(service.as_str().to_owned())
        .chain(vars.iter().map(|(name, value)| {
            format!("--{}={value}", name.to_ascii_lowercase().replace('_', "-"))
        }))
        .collect()
}

/// What `ServerLimits::from_env` reads, from `vars`.
fn server_limits(vars: &Vars<'_>) -> anyhow::Result<ServerLimits> {
    let d = ServerLimits::default();
    Ok(ServerLimits {
        http: HttpLimits {
            header_read_timeout: vars
                .duration_or("HTTP_HEADER_READ_TIMEOUT", d.http.header_read_timeout)?,
            request_timeout: vars.duration_or("HTTP_REQUEST_TIMEOUT", d.http.request_timeout)?,
            idle_timeout: vars.duration_or("HTTP_IDLE_TIMEOUT", d.http.idle_timeout)?,
            max_connections: vars.positive_or("HTTP_MAX_CONNECTIONS", d.http.max_connections)?,
            max_uri_bytes: vars.positive_or("HTTP_MAX_URI_BYTES", d.http.max_uri_bytes)?,
        },
        grpc: GrpcLimits {
            keepalive_interval: vars
                .duration_or("GRPC_KEEPALIVE_INTERVAL", d.grpc.keepalive_interval)?,
            keepalive_timeout: vars
                .duration_or("GRPC_KEEPALIVE_TIMEOUT", d.grpc.keepalive_timeout)?,
            request_timeout: vars.duration_or("GRPC_REQUEST_TIMEOUT", d.grpc.request_timeout)?,
            max_concurrent_streams: vars
                .positive_or("GRPC_MAX_CONCURRENT_STREAMS", d.grpc.max_concurrent_streams)?,
            max_connections: vars.positive_or("GRPC_MAX_CONNECTIONS", d.grpc.max_connections)?,
        },
    })
}

/// Variables as the services read them from their environment.
struct Vars<'a>(&'a [(String, String)]);

impl Vars<'_> {
    /// The last value of `name`, or `None` when it is absent or empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    fn parse_or<T>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|err| anyhow!("{name}={raw:?} is not valid: {err}")),
        }
    }

    fn positive_or<T>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr + Default + PartialEq,
        T::Err: std::fmt::Display,
    {
        let value = self.parse_or(name, default)?;
        anyhow::ensure!(value != T::default(), "{name} must be above 0");
        Ok(value)
    }

    /// `500ms`, `10s`, `15m`, `1h`, `7d` or plain seconds, above zero.
    fn duration_or(&self, name: &str, default: Duration) -> anyhow::Result<Duration> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
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
        number
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|value| Duration::try_from_secs_f64(value * unit_secs).ok())
            .filter(|duration| !duration.is_zero())
            .ok_or_else(|| anyhow!("{name}={raw:?} is not a positive duration"))
    }
}

/// The runtime every in-process service runs on, for the life of the test process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("in-process-services")
            .enable_all()
            .build()
            .expect("a runtime for the in-process services")
    })
}

/// Installs tracing once for every in-process service, when `TEST_LOG` is set.
fn init_tracing_once() {
    static ONCE: Once = Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        ONCE.call_once(service_runtime::telemetry::init);
    }
}

/// A service built and bound (its ports are known) but not serving yet.
pub struct Bound {
    name: ServiceName,
    service: Service,
}

impl Bound {
    /// Builds `service` from `vars` (see [`config_of`]) and binds its listeners.
    pub async fn bind(service: ServiceName, vars: &[(String, String)]) -> Self {
        Self::try_bind(service, vars)
            .await
            .unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// [`Bound::bind`], failing (a port already taken, …) instead of panicking.
    pub async fn try_bind(service: ServiceName, vars: &[(String, String)]) -> anyhow::Result<Self> {
        init_tracing_once();
        let (config, limits) =
            config_of(service, vars).with_context(|| format!("configure {}", service.as_str()))?;
        let built = runtime()
            .spawn(async move {
                let built = match config {
                    ServiceConfig::User(config) => user_service::build(config).await,
                    ServiceConfig::Message(config) => message_service::build(config).await,
                    ServiceConfig::Notification(config) => {
                        notification_service::build(config).await
                    }
                    ServiceConfig::Frontend(config) => frontend_service::build(config).await,
                };
                built.map(|service| service.with_limits(limits))
            })
            .await
            .expect("the build task ran")
            .with_context(|| format!("build {}", service.as_str()))?;
        Ok(Self {
            name: service,
            service: built,
        })
    }

    /// The ports the listeners are bound to.
    pub fn ports(&self) -> BoundPorts {
        BoundPorts {
            http: self.service.http_addr().map(|addr| addr.port()),
            grpc: self.service.grpc_addr().map(|addr| addr.port()),
        }
    }

    /// Serves until the returned handle drops.
    pub fn run(self) -> InProcess {
        let ports = self.ports();
        let (stop, stopped) = oneshot::channel::<()>();
        let name = self.name;
        let task = runtime().spawn(async move {
            // A dropped sender stops the service too.
            let result = self
                .service
                .run_until(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = result {
                eprintln!("in-process {} failed: {err:#}", name.as_str());
            }
        });
        InProcess {
            name,
            ports,
            stop: Some(stop),
            task,
        }
    }
}

/// A service running in this process; stopped (gracefully, in the background) on drop.
pub struct InProcess {
    name: ServiceName,
    ports: BoundPorts,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl InProcess {
    /// Builds, binds and runs `service` from `vars`.
    pub async fn start(service: ServiceName, vars: &[(String, String)]) -> Self {
        Bound::bind(service, vars).await.run()
    }

    pub fn name(&self) -> ServiceName {
        self.name
    }

    /// The ports it serves on.
    pub fn ports(&self) -> BoundPorts {
        self.ports
    }

    /// The gRPC port; every service has one.
    pub fn grpc_port(&self) -> u16 {
        self.ports.grpc.expect("every service serves gRPC")
    }

    /// Whether it is still serving (it stops by itself only when a server failed).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

/// Waits until the gRPC health service at `port` answers SERVING (its Redis answers), as
/// [`crate::ServiceProcess`] does before a process counts as started.
pub async fn wait_until_serving(service: &InProcess) {
    let url = format!("http://127.0.0.1:{}", service.grpc_port());
    let deadline = Instant::now() + START_UP;
    loop {
        assert!(
            service.is_running(),
            "in-process {} stopped during start-up",
            service.name.as_str()
        );
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("valid URL")
            .connect()
            .await
            && let Ok(reply) = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            && reply.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in-process {} did not become healthy",
            service.name.as_str()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
