//! The whole system on free ports: Redis plus the four services, wired to each other.

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU32, Ordering},
};

use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_client::UserServiceClient,
};
use tonic::transport::Channel;

use crate::{process::ServiceProcess, redis_server::RedisServer};

/// A port nobody listens on right now. Ports come from below the kernel's ephemeral range
/// (32768+), so an outgoing connection cannot take one between this check and the service
/// binding it; each test process starts at its own offset so parallel runs rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) as u16;
        let port = FIRST + (offset + n % SPAN) % SPAN;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

/// An email no other test uses: `<prefix>-<pid>-<n>@example.com`.
pub fn unique_email(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}@example.com", std::process::id())
}

/// Ports of one service.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

/// Redis and the four services, each a real process; everything stops on drop.
pub struct Stack {
    pub redis: RedisServer,
    pub frontend: ServiceProcess,
    pub notification: ServiceProcess,
    pub user: ServiceProcess,
    pub message: ServiceProcess,
    pub frontend_port: u16,
    pub notification_ports: Ports,
    pub user_ports: Ports,
    pub message_ports: Ports,
    http: reqwest::Client,
}

impl Stack {
    /// Starts everything, peers before the services that call them.
    pub async fn start() -> Self {
        let redis = RedisServer::start().await;
        let frontend_port = free_port();
        let notification_ports = Ports {
            http: free_port(),
            grpc: free_port(),
        };
        let user_ports = Ports {
            http: free_port(),
            grpc: free_port(),
        };
        let message_ports = Ports {
            http: free_port(),
            grpc: free_port(),
        };
        let grpc_url = |port: u16| format!("http://127.0.0.1:{port}");
        let common = vec![
            ("REDIS_URL".to_owned(), redis.url()),
            (
                "USER_SERVICE_GRPC_URL".to_owned(),
                grpc_url(user_ports.grpc),
            ),
            (
                "NOTIFICATION_SERVICE_GRPC_URL".to_owned(),
                grpc_url(notification_ports.grpc),
            ),
            (
                "FRONTEND_SERVICE_GRPC_URL".to_owned(),
                grpc_url(frontend_port),
            ),
        ];
        let env = |ports: Ports| {
            let mut env = common.clone();
            env.push(("HTTP_PORT".to_owned(), ports.http.to_string()));
            env.push(("GRPC_PORT".to_owned(), ports.grpc.to_string()));
            env
        };
        let frontend = ServiceProcess::start(
            "frontend-service",
            vec![("GRPC_PORT".to_owned(), frontend_port.to_string())],
            frontend_port,
        )
        .await;
        let notification = ServiceProcess::start(
            "notification-service",
            env(notification_ports),
            notification_ports.grpc,
        )
        .await;
        let user = ServiceProcess::start("user-service", env(user_ports), user_ports.grpc).await;
        let message =
            ServiceProcess::start("message-service", env(message_ports), message_ports.grpc).await;
        Self {
            redis,
            frontend,
            notification,
            user,
            message,
            frontend_port,
            notification_ports,
            user_ports,
            message_ports,
            http: reqwest::Client::new(),
        }
    }

    /// A plain HTTP client for requests the helpers below do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `http://127.0.0.1:<user-service HTTP port><path>`.
    pub fn user_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.user_ports.http)
    }

    /// `http://127.0.0.1:<message-service HTTP port><path>`.
    pub fn message_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.message_ports.http)
    }

    /// `http://127.0.0.1:<notification-service HTTP port><path>`.
    pub fn notification_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.notification_ports.http)
    }

    /// A gRPC channel to `port` on this machine.
    pub async fn channel(port: u16) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("valid URL")
            .connect()
            .await
            .expect("connect over gRPC")
    }

    pub async fn user_client(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(Self::channel(self.user_ports.grpc).await)
    }

    pub async fn message_client(&self) -> MessageServiceClient<Channel> {
        MessageServiceClient::new(Self::channel(self.message_ports.grpc).await)
    }

    pub async fn notification_client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(Self::channel(self.notification_ports.grpc).await)
    }

    pub async fn frontend_client(&self) -> FrontendServiceClient<Channel> {
        FrontendServiceClient::new(Self::channel(self.frontend_port).await)
    }

    /// `POST /users` with a JSON body; returns the status and the JSON reply.
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "email": email, "password": password, "name": name });
        let response = self
            .http
            .post(self.user_url("/users"))
            .json(&body)
            .send()
            .await
            .expect("POST /users");
        reply(response).await
    }
}

/// The status and JSON body of a reply (`Value::Null` when the body is empty, e.g. 204).
pub async fn reply(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("read the reply body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "reply is not JSON ({err}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}
