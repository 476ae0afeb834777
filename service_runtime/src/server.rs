//! Serving a service: its HTTP server (axum) and gRPC server (tonic) in one process, with gRPC
//! health and reflection, background workers, and one shutdown signal for all of them.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, task::JoinSet};
use tonic::{server::NamedService, service::Routes, transport::server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{
    outbox::Outbox,
    redis_store::Redis,
    shutdown::{self, Shutdown, ShutdownTrigger},
};

type Worker = Box<dyn FnOnce(Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How long workers get to finish their current step after the servers stopped.
const WORKER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long open connections get to close after shutdown. A client that never acts on the
/// server's GOAWAY (hung, or its runtime blocked) would otherwise keep the process alive.
const SERVER_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every service's `main` does: install tracing, read the config from the environment,
/// bind, and serve until SIGINT or SIGTERM.
pub async fn run_from_env<C, Build, Built>(
    config_from_env: impl FnOnce() -> anyhow::Result<C>,
    build: Build,
) -> anyhow::Result<()>
where
    Build: FnOnce(C) -> Built,
    Built: Future<Output = anyhow::Result<Service>>,
{
    crate::telemetry::init();
    let config = config_from_env()?;
    build(config).await?.run_until_stopped().await
}

/// A service binary's whole `main`: `service_main!(message_service)` runs
/// [`run_from_env`] with that crate's `Config::from_env` and `build`.
#[macro_export]
macro_rules! service_main {
    ($service:ident) => {
        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            $crate::server::run_from_env($service::Config::from_env, $service::build).await
        }
    };
}

/// Describes a service before its listeners are bound.
pub struct ServiceBuilder {
    name: &'static str,
    http: Option<(u16, Router, utoipa::openapi::OpenApi)>,
    grpc: Option<(u16, Routes, Vec<&'static str>)>,
    redis: Option<Redis>,
    workers: Vec<(&'static str, Worker)>,
    shutdown: (ShutdownTrigger, Shutdown),
}

impl ServiceBuilder {
    /// A service called `name` (used in logs). Installs the metrics recorder, so everything
    /// the service records from here on is served at `/metrics`.
    pub fn new(name: &'static str) -> Self {
        crate::metrics::install();
        Self {
            name,
            http: None,
            grpc: None,
            redis: None,
            workers: Vec::new(),
            shutdown: shutdown::channel(),
        }
    }

    /// The service's shutdown signal, for long-lived work inside handlers (e.g. server streams,
    /// which would otherwise hold the graceful shutdown open forever).
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.1.clone()
    }

    /// Serves `routes` (plus `/health`, `/metrics` and `/openapi.json`, which describes `api`,
    /// the routes' OpenAPI document) on `port`; 0 picks a free port.
    pub fn http(mut self, port: u16, routes: Router, api: utoipa::openapi::OpenApi) -> Self {
        self.http = Some((port, routes, api));
        self
    }

    /// Serves the generated gRPC `server` (plus health and reflection) on `port`; 0 picks a
    /// free port. Its service name is reported by the gRPC health service and reflection.
    pub fn grpc<S>(mut self, port: u16, server: S) -> Self
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc = Some((port, Routes::new(server), vec![S::NAME]));
        self
    }

    /// Runs the delivery worker of `outbox` beside the servers.
    pub fn outbox<P>(self, name: &'static str, outbox: Outbox<P>) -> Self
    where
        P: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        self.worker(name, move |shutdown| outbox.run(shutdown))
    }

    /// A service called `name` that works on database `db` of the Redis at `redis_url`
    /// (connected lazily: the service starts while Redis is down); its health reports
    /// whether that Redis answers. Returns the Redis handle too.
    pub fn with_redis(
        name: &'static str,
        redis_url: &str,
        db: u8,
    ) -> anyhow::Result<(Self, Redis)> {
        let redis = Redis::connect(redis_url, db)?;
        let mut builder = Self::new(name);
        builder.redis = Some(redis.clone());
        Ok((builder, redis))
    }

    /// Runs `worker` beside the servers; it must return soon after its [`Shutdown`] fires.
    pub fn worker<F, Fut>(mut self, name: &'static str, worker: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.workers
            .push((name, Box::new(move |shutdown| Box::pin(worker(shutdown)))));
        self
    }

    /// Binds every listener on all interfaces, so the real ports are known before serving.
    pub async fn bind(self) -> anyhow::Result<Service> {
        let http = match self.http {
            Some((port, routes, api)) => {
                let listener = bind(port, "HTTP").await?;
                let routes =
                    crate::http::with_common_routes(self.name, routes, api, self.redis.clone());
                Some((listener, routes))
            }
            None => None,
        };
        let grpc = match self.grpc {
            Some((port, routes, names)) => Some((bind(port, "gRPC").await?, routes, names)),
            None => None,
        };
        Ok(Service {
            name: self.name,
            http,
            grpc,
            workers: self.workers,
            shutdown: self.shutdown,
        })
    }
}

async fn bind(port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen for {what} on port {port}: {err}"))
}

/// A service whose listeners are bound; [`Service::run_until_stopped`] serves it.
pub struct Service {
    name: &'static str,
    http: Option<(TcpListener, Router)>,
    grpc: Option<(TcpListener, Routes, Vec<&'static str>)>,
    workers: Vec<(&'static str, Worker)>,
    shutdown: (ShutdownTrigger, Shutdown),
}

impl Service {
    /// The HTTP server's real address (the port is known even when 0 was asked for).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The gRPC server's real address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc
            .as_ref()
            .and_then(|(listener, _, _)| listener.local_addr().ok())
    }

    /// Writes `{"http": <port>, "grpc": <port>}` (a port `null` where there is no such server)
    /// to the file `READY_FILE` names, if it is set: a supervisor that started the service on
    /// port 0 learns the real ports from it, and its presence says the listeners are bound.
    /// Written to a temporary name and renamed, so a reader never sees half of it.
    fn announce_ports(&self) -> anyhow::Result<()> {
        let Some(path) = crate::config::var("READY_FILE") else {
            return Ok(());
        };
        let ports = serde_json::json!({
            "http": self.http_addr().map(|addr| addr.port()),
            "grpc": self.grpc_addr().map(|addr| addr.port()),
        });
        let partial = format!("{path}.partial");
        std::fs::write(&partial, ports.to_string())
            .and_then(|()| std::fs::rename(&partial, &path))
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
        let (trigger, shutdown) = self.shutdown;
        let mut servers = JoinSet::new();
        if let Some((listener, routes)) = self.http {
            tracing::info!(service = self.name, addr = %local(&listener), "HTTP server listening");
            servers.spawn(serve_http(listener, routes, shutdown.clone()));
        }
        if let Some((listener, routes, names)) = self.grpc {
            tracing::info!(service = self.name, addr = %local(&listener), "gRPC server listening");
            servers.spawn(serve_grpc(listener, routes, names, shutdown.clone()));
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
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let result = axum::serve(listener, routes)
        .with_graceful_shutdown(shutdown.wait())
        .await
        .map_err(anyhow::Error::from);
    ("HTTP", result)
}

async fn serve_grpc(
    listener: TcpListener,
    routes: Routes,
    service_names: Vec<&'static str>,
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let result = async {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        for name in &service_names {
            health_reporter
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        // Advertise only what this server answers: the descriptor set holds all four services.
        let advertised: Vec<&str> = service_names
            .iter()
            .copied()
            .chain(["grpc.health.v1.Health"])
            .collect();
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
        };
        let reflection_v1 = reflection().build_v1()?;
        // Older grpcurl builds only speak the v1alpha reflection protocol.
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .layer(crate::telemetry::GrpcTelemetryLayer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.wait())
            .await?;
        anyhow::Ok(())
    }
    .await;
    ("gRPC", result)
}
