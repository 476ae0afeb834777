//! Describing a service before its listeners are bound.

use std::{future::Future, path::PathBuf};

use axum::Router;
use tokio::net::TcpListener;
use tonic::{server::NamedService, service::Routes};

use super::{GrpcServer, Service, Worker, grpc::Grpc};
use crate::{
    auth::{AccessTable, Auth, access::Guard},
    config::{AllowedOrigins, OutboxUpkeep, Runtime, ServerLimits},
    connection::StreamPaths,
    outbox::Outbox,
    redis_store::Redis,
    shutdown::{self, Shutdown, ShutdownTrigger},
};

/// Describes a service before its listeners are bound.
pub struct ServiceBuilder {
    name: &'static str,
    http: Option<(u16, Router, utoipa::openapi::OpenApi)>,
    http_streams: StreamPaths,
    grpc: Option<(u16, Routes, Vec<&'static str>)>,
    guard: Option<(Guard, AccessTable)>,
    redis: Option<Redis>,
    limits: ServerLimits,
    cors: AllowedOrigins,
    outbox_upkeep: OutboxUpkeep,
    ready_file: Option<PathBuf>,
    workers: Vec<(&'static str, Worker)>,
    shutdown: (ShutdownTrigger, Shutdown),
}

impl ServiceBuilder {
    /// A service called `name` (used in logs) within the limits `runtime` sets. Installs the
    /// metrics recorder, so everything the service records from here on is served at
    /// `/metrics`.
    pub fn new(name: &'static str, runtime: &Runtime) -> Self {
        crate::metrics::install();
        Self {
            name,
            http: None,
            http_streams: StreamPaths::default(),
            grpc: None,
            guard: None,
            redis: None,
            limits: runtime.limits,
            cors: runtime.cors.allowed_origins.clone(),
            outbox_upkeep: runtime.outbox,
            ready_file: runtime.ready_file.clone(),
            workers: Vec::new(),
            shutdown: shutdown::channel(),
        }
    }

    /// A service called `name` that works on database `db` of the Redis `runtime` names
    /// (connected lazily: the service starts while Redis is down); its health reports
    /// whether that Redis answers. Returns the Redis handle too.
    pub fn with_redis(
        name: &'static str,
        runtime: &Runtime,
        db: u8,
    ) -> anyhow::Result<(Self, Redis)> {
        let redis = Redis::connect(&runtime.redis, db)?;
        let mut builder = Self::new(name, runtime);
        builder.redis = Some(redis.clone());
        Ok((builder, redis))
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

    /// Marks `paths` of the HTTP server as long-lived streams (`GET /live`): an HTTP/1 `GET`
    /// of one is answered on a connection of its own, without hyper's per-connection buffers
    /// (`connection/stream.rs`).
    pub fn http_streams(mut self, paths: &'static [&'static str]) -> Self {
        self.http_streams = StreamPaths(paths);
        self
    }

    /// Serves the generated gRPC `server` (plus health and reflection) on `port`; 0 picks a
    /// free port. Its service name is reported by the gRPC health service and reflection.
    pub fn grpc(mut self, port: u16, server: impl GrpcServer) -> Self {
        let name = named(&server);
        self.grpc = Some((port, Routes::new(server), vec![name]));
        self
    }

    /// Serves one more generated gRPC service on the port of [`ServiceBuilder::grpc`] (call
    /// that first), also reported by health and reflection.
    pub fn also_grpc(mut self, server: impl GrpcServer) -> Self {
        let (port, routes, mut names) = self
            .grpc
            .take()
            .expect("ServiceBuilder::grpc is called before also_grpc");
        names.push(named(&server));
        self.grpc = Some((port, routes.add_service(server), names));
        self
    }

    /// Who may call which RPC of the gRPC server, checked by `auth` before any handler runs.
    /// Required with a gRPC server: [`ServiceBuilder::bind`] refuses a table that misses one
    /// of the server's RPCs.
    pub fn grpc_access(mut self, auth: &Auth, table: AccessTable) -> Self {
        self.guard = Some((Guard::new(auth.clone(), table), table));
        self
    }

    /// Runs the delivery worker of `outbox` beside the servers, and its upkeep (removing the
    /// consumer names of replicas that are gone).
    pub fn outbox<P>(self, name: &'static str, outbox: Outbox<P>) -> Self
    where
        P: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let upkeep = self.outbox_upkeep;
        self.worker(name, move |shutdown| async move {
            let upkeep = outbox.clone().upkeep(upkeep, shutdown.clone());
            futures::future::join(outbox.run(shutdown), upkeep).await;
        })
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
            Some((port, routes, api)) => Some((bind(port, "HTTP").await?, routes, api)),
            None => None,
        };
        let grpc = match self.grpc {
            Some((port, routes, names)) => {
                let Some((guard, table)) = self.guard else {
                    anyhow::bail!("{}: a gRPC server needs grpc_access", self.name);
                };
                table.covers(&names)?;
                let listener = bind(port, "gRPC").await?;
                Some((
                    listener,
                    Grpc::new(routes, names, guard, self.redis.clone()),
                ))
            }
            None => None,
        };
        Ok(Service {
            name: self.name,
            http,
            http_streams: self.http_streams,
            grpc,
            redis: self.redis,
            limits: self.limits,
            cors: self.cors,
            ready_file: self.ready_file,
            workers: self.workers,
            shutdown: self.shutdown,
        })
    }
}

fn named<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

async fn bind(port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen for {what} on port {port}: {err}"))
}
