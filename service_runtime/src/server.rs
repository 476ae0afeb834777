//! Serving a service: its HTTP server (axum) and gRPC server (tonic) in one process, with gRPC
//! health and reflection, background workers, and one shutdown signal for all of them.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use axum::{
    Router,
    http::{Response, header::HeaderValue},
};
use tokio::{net::TcpListener, task::JoinSet};
use tonic::{Code, Status, body::Body, server::NamedService, service::Routes};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    config::{GrpcLimits, HttpLimits, ServerLimits},
    connection,
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
/// How often the gRPC health service re-checks the service's Redis.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What every service's `main` does: install tracing, read the config and the servers' limits
/// from the environment, bind, and serve until SIGINT or SIGTERM.
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
    let limits = ServerLimits::from_env()?;
    build(config)
        .await?
        .with_limits(limits)
        .run_until_stopped()
        .await
}

/// The gRPC health name that says only "this process serves": for liveness probes.
pub const LIVENESS: &str = "liveness";

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

    /// Serves one more generated gRPC service on the port of [`ServiceBuilder::grpc`] (call
    /// that first), also reported by health and reflection.
    pub fn also_grpc<S>(mut self, server: S) -> Self
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
        let (port, routes, mut names) = self
            .grpc
            .take()
            .expect("ServiceBuilder::grpc is called before also_grpc");
        names.push(S::NAME);
        self.grpc = Some((port, routes.add_service(server), names));
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
    /// The servers get the default [`ServerLimits`] unless [`Service::with_limits`] says
    /// otherwise.
    pub async fn bind(self) -> anyhow::Result<Service> {
        let http = match self.http {
            Some((port, routes, api)) => Some((bind(port, "HTTP").await?, routes, api)),
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
            redis: self.redis,
            limits: ServerLimits::default(),
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
    http: Option<(TcpListener, Router, utoipa::openapi::OpenApi)>,
    grpc: Option<(TcpListener, Routes, Vec<&'static str>)>,
    redis: Option<Redis>,
    limits: ServerLimits,
    workers: Vec<(&'static str, Worker)>,
    shutdown: (ShutdownTrigger, Shutdown),
}

impl Service {
    /// Serves within `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

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
            );
            servers.spawn(serve_http(listener, routes, limits.http, shutdown.clone()));
        }
        if let Some((listener, routes, names)) = self.grpc {
            tracing::info!(service = self.name, addr = %local(&listener), "gRPC server listening");
            let grpc = Grpc {
                routes,
                service_names: names,
                redis: self.redis.clone(),
                limits: limits.grpc,
            };
            servers.spawn(serve_grpc(listener, grpc, shutdown.clone()));
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
        let servers = u64::from(self.http.is_some()) + u64::from(self.grpc.is_some());
        for (variable, cap) in [
            ("HTTP_MAX_CONNECTIONS", &mut limits.http.max_connections),
            ("GRPC_MAX_CONNECTIONS", &mut limits.grpc.max_connections),
        ] {
            let fitted = connection::connections_within(descriptors, servers, *cap);
            if fitted < *cap {
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
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let result = connection::serve_http(listener, routes, limits, shutdown)
        .await
        .map_err(anyhow::Error::from);
    ("HTTP", result)
}

/// What a gRPC server serves, and within which limits.
struct Grpc {
    routes: Routes,
    service_names: Vec<&'static str>,
    /// The Redis the service needs: the health service says NOT_SERVING while it is down.
    redis: Option<Redis>,
    limits: GrpcLimits,
}

async fn serve_grpc(
    listener: TcpListener,
    grpc: Grpc,
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let Grpc {
        routes,
        service_names,
        redis,
        limits,
    } = grpc;
    let result = async {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let health_names: Vec<&str> = std::iter::once("")
            .chain(service_names.iter().copied())
            .collect();
        // Until Redis has answered once, the service cannot do its job.
        let initial = match redis {
            Some(_) => ServingStatus::NotServing,
            None => ServingStatus::Serving,
        };
        for name in &health_names {
            health_reporter.set_service_status(*name, initial).await;
        }
        // "The process is alive and serving gRPC", whatever Redis does: what a liveness probe
        // asks (restarting a service cannot bring Redis back); readiness asks "".
        health_reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
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
        let incoming = connection::grpc_incoming(listener, limits);
        let request_timeout = limits.request_timeout;
        let server = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .layer(crate::telemetry::GrpcTelemetryLayer)
            .layer(tower::util::MapResponseLayer::new(
                undecodable_request_is_invalid_argument,
            ))
            .layer(tower::util::MapFutureLayer::new(move |reply| {
                answer_within(request_timeout, reply)
            }))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().wait());
        let health = async {
            if let Some(redis) = redis {
                report_redis_health(&redis, &health_reporter, &health_names, shutdown).await;
            }
        };
        tokio::pin!(server);
        // The server's end is what counts: the health reporting stops with the shutdown.
        let served = tokio::select! {
            served = &mut server => served,
            () = health => server.await,
        };
        served?;
        anyhow::Ok(())
    }
    .await;
    ("gRPC", result)
}

/// `DEADLINE_EXCEEDED` for a call whose reply has not started within `timeout` (a streamed
/// reply, once started, runs on). A client's shorter `grpc-timeout` is honoured by tonic
/// itself.
async fn answer_within<F, E>(timeout: Duration, reply: F) -> Result<Response<Body>, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    match tokio::time::timeout(timeout, reply).await {
        Ok(reply) => reply,
        Err(_) => Ok(Status::deadline_exceeded(format!(
            "the call was not answered within {timeout:?}"
        ))
        .into_http()),
    }
}

/// tonic answers a request body that is not the RPC's protobuf message with `INTERNAL`
/// ("failed to decode Protobuf message", from the codec, before any handler runs); the
/// contract keeps `INTERNAL` for our own bugs, and bytes the caller got wrong are its invalid
/// argument. The status is in the reply's head (a trailers-only reply), so only the code is
/// rewritten; the message, which says what could not be decoded, stays.
fn undecodable_request_is_invalid_argument(mut reply: Response<Body>) -> Response<Body> {
    let undecodable = Status::from_header_map(reply.headers()).is_some_and(|status| {
        status.code() == Code::Internal
            && status
                .message()
                .starts_with("failed to decode Protobuf message")
    });
    if undecodable {
        reply.headers_mut().insert(
            "grpc-status",
            HeaderValue::from(Code::InvalidArgument as i32),
        );
    }
    reply
}

/// Keeps the gRPC health of `names` (the server as a whole, "", and each service) in step
/// with whether `redis` answers, checking every [`HEALTH_CHECK_INTERVAL`] until `shutdown`.
async fn report_redis_health(
    redis: &Redis,
    reporter: &HealthReporter,
    names: &[&str],
    shutdown: Shutdown,
) {
    let mut reported = None;
    let mut ticks = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let status = if redis.is_reachable().await {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported == Some(status) {
            continue;
        }
        match status {
            ServingStatus::Serving => tracing::info!("Redis answers; gRPC health is SERVING"),
            _ => tracing::warn!("Redis does not answer; gRPC health is NOT_SERVING"),
        }
        for name in names {
            reporter.set_service_status(*name, status).await;
        }
        reported = Some(status);
    }
}
