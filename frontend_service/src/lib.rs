//! frontend-service: the gRPC endpoint notifications are pushed to. It keeps each receiver's
//! recent notifications in memory and streams new ones live to watchers. Its HTTP port
//! (`METRICS_PORT`) serves only `/metrics`, `/health` and `/openapi.json`.

mod grpc;
mod inbox;
mod metrics;

use axum::Router;
use proto::frontend_service::frontend_service_server::FrontendServiceServer;
use service_runtime::server::{Service, ServiceBuilder};
use utoipa::openapi::OpenApi;

pub use inbox::{Inbox, InboxLimits};

/// The contract's gRPC port of frontend-service.
pub const DEFAULT_GRPC_PORT: u16 = 3030;
/// The (additive) HTTP port of frontend-service, for `/metrics` and `/health` only.
pub const DEFAULT_METRICS_PORT: u16 = 3031;

/// Everything frontend-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_port: u16,
    /// The HTTP port for `/metrics` and `/health`; 0 picks a free port.
    pub metrics_port: u16,
    pub limits: InboxLimits,
}

impl Config {
    /// `GRPC_PORT` (default 3030), `METRICS_PORT` (default 3031).
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            grpc_port: service_runtime::config::parse_or("GRPC_PORT", DEFAULT_GRPC_PORT)?,
            metrics_port: service_runtime::config::parse_or("METRICS_PORT", DEFAULT_METRICS_PORT)?,
            limits: InboxLimits::default(),
        })
    }
}

/// Binds frontend-service's gRPC server and its metrics port; it needs no Redis, so its
/// `/health` always answers 200.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let builder = ServiceBuilder::new("frontend-service");
    metrics::describe();
    let inbox = Inbox::new(config.limits);
    let api = grpc::FrontendGrpc::new(inbox, builder.shutdown_signal());
    builder
        .grpc(config.grpc_port, FrontendServiceServer::new(api))
        // No API of its own: the runtime adds /metrics, /health and their document.
        .http(config.metrics_port, Router::new(), OpenApi::default())
        .bind()
        .await
}
