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
    sync::{Once, OnceLock},
    time::{Duration, Instant},
};

use anyhow::Context;
use service_runtime::{config::LogFormat, server::Service};
use tokio::sync::oneshot;

use crate::BoundPorts;

/// How long a service may take to report SERVING.
const START_UP: Duration = Duration::from_secs(15);

/// One of the four services (the same names the services present to each other).
pub use service_runtime::grpc_client::ServiceName;

/// A service's configuration, as its binary would read it from the environment.
#[derive(Debug, Clone)]
pub enum ServiceConfig {
    User(user_service::Config),
    Message(message_service::Config),
    Notification(notification_service::Config),
    Frontend(frontend_service::Config),
}

/// The configuration of `service` from `vars`, the variables its binary would get in its
/// environment (a later pair overrides an earlier one; an empty value is unset, as for the
/// binary). The one place the harness builds a service's configuration: each variable the
/// service declares is passed as its flag (`REDIS_URL=x` → `--redis-url=x`) and parsed by the
/// service's own `Config`. A variable another service declares is left out, as the binary
/// ignores it in its environment; one that no service declares is refused (a test setting it
/// would test nothing). No test sets process environment variables (tests run in parallel
/// threads of one process).
pub fn config_of(service: ServiceName, vars: &[(String, String)]) -> anyhow::Result<ServiceConfig> {
    use clap::{CommandFactory, Parser as _};
    let commands = [
        (ServiceName::User, user_service::Config::command()),
        (ServiceName::Message, message_service::Config::command()),
        (
            ServiceName::Notification,
            notification_service::Config::command(),
        ),
        (ServiceName::Frontend, frontend_service::Config::command()),
    ];
    // The long flag `command` declares for the variable `var`, if it declares one.
    let flag_of = |command: &clap::Command, var: &str| {
        command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == var))
            .and_then(|arg| arg.get_long())
            .map(str::to_owned)
    };
    let own = &commands
        .iter()
        .find(|(name, _)| *name == service)
        .expect("every service has a command")
        .1;
    // A later pair overrides an earlier one.
    let mut passed: Vec<(String, &str)> = Vec::new();
    for (var, value) in vars {
        match flag_of(own, var) {
            Some(flag) => {
                passed.retain(|(earlier, _)| *earlier != flag);
                passed.push((flag, value));
            }
            None if commands
                .iter()
                .any(|(_, command)| flag_of(command, var).is_some()) => {}
            None => anyhow::bail!("no service declares the variable {var}"),
        }
    }
    // Empty values are unset, as for the binary.
    let flags = std::iter::once(service.as_str().to_owned()).chain(
        passed
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(flag, value)| format!("--{flag}={value}")),
    );
    let config = match service {
        ServiceName::User => ServiceConfig::User(user_service::Config::try_parse_from(flags)?),
        ServiceName::Message => {
            ServiceConfig::Message(message_service::Config::try_parse_from(flags)?)
        }
        ServiceName::Notification => {
            ServiceConfig::Notification(notification_service::Config::try_parse_from(flags)?)
        }
        ServiceName::Frontend => {
            ServiceConfig::Frontend(frontend_service::Config::try_parse_from(flags)?)
        }
    };
    Ok(config)
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
        ONCE.call_once(|| {
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
            service_runtime::telemetry::init_with(&filter, LogFormat::Text);
        });
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
        let config =
            config_of(service, vars).with_context(|| format!("configure {}", service.as_str()))?;
        let built = runtime()
            .spawn(async move {
                match config {
                    ServiceConfig::User(config) => user_service::build(config).await,
                    ServiceConfig::Message(config) => message_service::build(config).await,
                    ServiceConfig::Notification(config) => {
                        notification_service::build(config).await
                    }
                    ServiceConfig::Frontend(config) => frontend_service::build(config).await,
                }
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
        if crate::process::is_serving(&url).await {
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
