//! One connection pool per target, shared by every worker.

use std::time::Duration;

use anyhow::Context;
use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_client::UserServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::cli::Endpoints;

/// How long one request may take before it counts as a transport failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP base URLs, the pooled HTTP client and a few HTTP/2 channels per gRPC target.
pub struct Clients {
    pub http: reqwest::Client,
    pub user_http: String,
    pub message_http: String,
    pub notification_http: String,
    user_grpc: Vec<Channel>,
    message_grpc: Vec<Channel>,
    notification_grpc: Vec<Channel>,
    frontend_grpc: Vec<Channel>,
}

impl Clients {
    /// Channels connect lazily, so a scenario needs only the services it talks to.
    pub fn new(endpoints: &Endpoints) -> anyhow::Result<Self> {
        let host = &endpoints.host;
        let pool = |port: u16| -> anyhow::Result<Vec<Channel>> {
            let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
                .context("gRPC endpoint URL")?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(2))
                .timeout(REQUEST_TIMEOUT);
            Ok((0..endpoints.channels.max(1))
                .map(|_| endpoint.connect_lazy())
                .collect())
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("HTTP client")?;
        Ok(Self {
            http,
            user_http: format!("http://{host}:{}", endpoints.user_http),
            message_http: format!("http://{host}:{}", endpoints.message_http),
            notification_http: format!("http://{host}:{}", endpoints.notification_http),
            user_grpc: pool(endpoints.user_grpc)?,
            message_grpc: pool(endpoints.message_grpc)?,
            notification_grpc: pool(endpoints.notification_grpc)?,
            frontend_grpc: pool(endpoints.frontend_grpc)?,
        })
    }

    /// The user-service client on channel `n` (round-robin over the pool).
    pub fn user(&self, n: usize) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.user_grpc[n % self.user_grpc.len()].clone())
    }

    /// The notification-service client on channel `n` (round-robin over the pool).
    pub fn notification(&self, n: usize) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(
            self.notification_grpc[n % self.notification_grpc.len()].clone(),
        )
    }

    /// The frontend-service client on channel `n` (round-robin over the pool).
    pub fn frontend(&self, n: usize) -> FrontendServiceClient<Channel> {
        FrontendServiceClient::new(self.frontend_grpc[n % self.frontend_grpc.len()].clone())
    }

    /// The message-service client on channel `n` (round-robin over the pool).
    pub fn message(&self, n: usize) -> MessageServiceClient<Channel> {
        MessageServiceClient::new(self.message_grpc[n % self.message_grpc.len()].clone())
    }
}
