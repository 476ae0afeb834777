//! Serving a service: its HTTP server (axum) and gRPC server (tonic) in one process, with gRPC
//! health and reflection, background workers, and one shutdown signal for all of them.

mod builder;
mod grpc;

use std::{
    convert::Infallible, future::Future, net::SocketAddr, path::PathBuf, pin::Pin, time::Duration,
};

use axum::{Router, http};
use tokio::{net::TcpListener, task::JoinSet};
use tonic::{body::Body, server::NamedService};

use self::grpc::{Grpc, serve_grpc};
pub use self::{builder::ServiceBuilder, grpc::LIVENESS};
use crate::{
    config::{AllowedOrigins, HttpLimits, ServerLimits, ServiceConfig},
    connection::{self, StreamPaths},
    cors::{CorsPolicy, Port},
    redis_store::Redis,
    shutdown::{self, Shutdown, ShutdownTrigger},
};

/// What a generated tonic server is, as [`ServiceBuilder::grpc`] takes it.
pub trait GrpcServer:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcServer for S where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

type Worker = Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How long workers get to finish their current step after the servers stopped.
const WORKER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open connections get to close after shutdown. A client that never acts on the
/// server's GOAWAY (hung, or its runtime blocked) would otherwise keep the process alive.
const SERVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every service's `main` does: read its configuration (flags and environment), install
/// tracing, bind, and serve until SIGINT or SIGTERM.
pub async fn run<C, Built>(build: impl FnOnce(C) -> Built) -> anyhow::Result<()>
where
    C: ServiceConfig,
    Built: Future<Output = anyhow::Result<Service>>,
{
    let config: C = crate::config::from_env();
    crate::telemetry::init(config.runtime());
    build(config).await?.run_until_stopped().await
}

/// A service binary's whole `main`: `service_main!(message_service)` runs
/// [`run`] with that crate's `build` (and so its `Config`).
#[macro_export]
macro_rules! service_main {
    ($service:ident) => {
        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            $crate::server::run($service::build).await
        }
    };
}

/// A service whose listeners are bound; [`Service::run_until_stopped`] serves it.
pub struct Service {
    name: &'static str,
    http: Option<(TcpListener, Router, utoipa::openapi::OpenApi)>,
    /// The HTTP server's long-lived stream paths.
    http_streams: StreamPaths,
    grpc: Option<(TcpListener, Grpc)>,
    redis: Option<Redis>,
    limits: ServerLimits,
    /// Who may call from a browser page of another origin (HTTP and gRPC-Web).
    cors: AllowedOrigins,
    ready_file: Option<PathBuf>,
    workers: Vec<(&'static str, Worker)>,
    shutdown: (ShutdownTrigger, Shutdown),
}

impl Service {
    /// The HTTP server's real address (the port is known even when 0 was asked for).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
            .as_ref()
            .and_then(|(listener, _, _)| listener.local_addr().ok())
    }

    /// The gRPC server's real address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// Writes `{"http": <port>, "grpc": <port>}` (a port `null` where there is no such server)
    /// to the `READY_FILE`, if one is set: a supervisor that started the service on port 0
    /// learns the real ports from it, and its presence says the listeners are bound. Written
    /// to a temporary name and renamed, so a reader never sees half of it.
    fn announce_ports(&self) -> anyhow::Result<()> {
        let Some(path) = &self.ready_file else {
            return Ok(());
        };
        let ports = serde_json::json!({
            "http": self.http_addr().map(|addr| addr.port()),
            "grpc": self.grpc_addr().map(|addr| addr.port()),
        });
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        std::fs::write(&partial, ports.to_string())
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|err| anyhow::anyhow!("cannot write READY_FILE {path:?}: {err}"))
    }

    /// Serves until SIGINT or SIGTERM, then drains both servers and the workers.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            let signal = shutdown::os_signal().await;
            tracing::info!(signal, "shutdown requested");
        })
        .await
    }

    /// Serves until `stop` resolves or a server fails; says which server stopped and why.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        self.announce_ports()?;
        let limits = self.limits_within_descriptors();
        let (trigger, shutdown) = self.shutdown;
        let mut servers = JoinSet::new();
        if let Some((listener, routes, api)) = self.http {
            tracing::info!(service = self.name, addr = %local(&listener), "HTTP server listening");
            let routes = crate::http::with_common_routes(
                self.name,
                routes,
                api,
                self.redis.clone(),
                limits.http,
                CorsPolicy::new(&self.cors, Port::Http),
            );
            servers.spawn(serve_http(
                listener,
                routes,
                limits.http,
                self.http_streams,
                shutdown.clone(),
            ));
        }
        if let Some((listener, grpc)) = self.grpc {
            tracing::info!(service = self.name, addr = %local(&listener), "gRPC server listening");
            let cors = CorsPolicy::new(&self.cors, Port::Grpc);
            servers.spawn(serve_grpc(
                listener,
                grpc,
                limits.grpc,
                cors,
                shutdown.clone(),
            ));
        }
        let mut workers = JoinSet::new();
        for (name, worker) in self.workers {
            let run = worker(shutdown.clone());
            workers.spawn(async move {
                run.await;
                name
            });
        }

        let mut failure = None;
        tokio::select! {
            () = stop => {}
            Some(first) = servers.join_next() => {
                failure = Some(report_stopped(first));
            }
        }
        trigger.trigger();
        let drain_servers = async {
            while let Some(stopped) = servers.join_next().await {
                if let Some(err) = report_stopped(stopped) {
                    failure.get_or_insert(Some(err));
                }
            }
        };
        if tokio::time::timeout(SERVER_DRAIN_TIMEOUT, drain_servers)
            .await
            .is_err()
        {
            tracing::warn!(
                service = self.name,
                "connections still open after shutdown; closing them"
            );
            servers.abort_all();
        }
        drain_workers(workers).await;
        tracing::info!(service = self.name, "stopped");
        match failure.flatten() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The configured limits, with each server's connection cap lowered if need be so that
    /// all of them together cannot use up the process's descriptors (whose soft limit is first
    /// raised to the hard one): a flood of connections then waits in the accept queue instead
    /// of starving Redis, outbound calls and `/health` of descriptors.
    fn limits_within_descriptors(&self) -> ServerLimits {
        let mut limits = self.limits;
        let Some(descriptors) = connection::raise_descriptor_limit() else {
            return limits;
        };
        let present = |server: bool, cap: usize| if server { cap } else { 0 };
        let fitted = connection::connections_within(
            descriptors,
            [
                present(self.http.is_some(), limits.http.max_connections),
                present(self.grpc.is_some(), limits.grpc.max_connections),
            ],
        );
        for ((variable, cap), fitted) in [
            ("HTTP_MAX_CONNECTIONS", &mut limits.http.max_connections),
            ("GRPC_MAX_CONNECTIONS", &mut limits.grpc.max_connections),
        ]
        .into_iter()
        .zip(fitted)
        {
            if fitted != 0 && fitted < *cap {
                tracing::warn!(
                    variable,
                    configured = *cap,
                    used = fitted,
                    descriptors,
                    "connection cap lowered to fit the open-descriptor limit"
                );
                *cap = fitted;
            }
        }
        limits
    }
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|err| err.to_string(), |addr| addr.to_string())
}

/// Logs which server stopped and why; returns its error, if it failed.
fn report_stopped(
    joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match joined {
        Ok((server, Ok(()))) => {
            tracing::info!(server, "server stopped");
            None
        }
        Ok((server, Err(err))) => {
            tracing::error!(server, error = %err, "server failed");
            Some(err.context(format!("{server} server failed")))
        }
        Err(err) => {
            tracing::error!(error = %err, "server task panicked");
            Some(anyhow::anyhow!("server task panicked: {err}"))
        }
    }
}

async fn drain_workers(mut workers: JoinSet<&'static str>) {
    let drain = async {
        while let Some(done) = workers.join_next().await {
            match done {
                Ok(worker) => tracing::info!(worker, "worker stopped"),
                Err(err) => tracing::error!(error = %err, "worker panicked"),
            }
        }
    };
    if tokio::time::timeout(WORKER_DRAIN_TIMEOUT, drain)
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop in time; abandoning them");
    }
}

async fn serve_http(
    listener: TcpListener,
    routes: Router,
    limits: HttpLimits,
    streams: StreamPaths,
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let result = connection::serve_http(listener, routes, limits, streams, shutdown)
        .await
        .map_err(anyhow::Error::from);
    ("HTTP", result)
}
