//! frontend-service: the gRPC endpoint notifications are pushed to. It keeps each receiver's
//! recent notifications in memory and streams new ones live to watchers.

mod grpc;
mod inbox;

use proto::frontend_service::frontend_service_server::FrontendServiceServer;
use service_runtime::{
    auth::{Auth, AuthConfig, TokenKeys},
    config::url_or,
    limits,
    server::{Service, ServiceBuilder},
};

pub use inbox::{Inbox, InboxLimits};

/// The contract's gRPC port of frontend-service.
pub const DEFAULT_GRPC_PORT: u16 = 3030;
/// Where user-service listens unless `USER_SERVICE_GRPC_URL` says otherwise (asked whether a
/// token is still valid when protection is on).
pub const DEFAULT_USER_SERVICE_GRPC_URL: &str = "http://127.0.0.1:9797";

/// Everything frontend-service reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub grpc_port: u16,
    pub limits: InboxLimits,
    pub user_service_url: String,
    /// `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub auth: AuthConfig,
}

impl Config {
    /// `GRPC_PORT` (default 3030), `USER_SERVICE_GRPC_URL`, `AUTH_SECRET`, `AUTH_TOKEN_TTL`.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            grpc_port: service_runtime::config::parse_or("GRPC_PORT", DEFAULT_GRPC_PORT)?,
            limits: InboxLimits::default(),
            user_service_url: url_or("USER_SERVICE_GRPC_URL", DEFAULT_USER_SERVICE_GRPC_URL),
            auth: AuthConfig::from_env()?,
        })
    }
}

/// Binds frontend-service's gRPC server; it needs no Redis.
pub async fn build(config: Config) -> anyhow::Result<Service> {
    let builder = ServiceBuilder::new("frontend-service");
    let inbox = Inbox::new(config.limits);
    let auth = Auth::via_user_service(TokenKeys::new(&config.auth), &config.user_service_url)?;
    let api = grpc::FrontendGrpc::new(inbox, builder.shutdown_signal(), auth);
    builder
        .grpc(
            config.grpc_port,
            FrontendServiceServer::new(api)
                .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES),
        )
        .bind()
        .await
}
