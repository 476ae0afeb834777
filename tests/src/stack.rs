//! The whole system: Redis plus the four services, each on ports it chose itself, wired to
//! each other.

use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_client::UserServiceClient,
};
use tonic::transport::Channel;

use crate::{process::ServiceProcess, redis_server::RedisServer};

/// Ports of one service that serves both HTTP and gRPC.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

impl Ports {
    fn of(process: &ServiceProcess) -> Self {
        Self {
            http: process.ports().http.expect("the service serves HTTP"),
            grpc: process.grpc_port(),
        }
    }
}

/// Redis and the four services, each a real process; everything stops on drop.
pub struct Stack {
    pub redis: RedisServer,
    pub frontend: ServiceProcess,
    pub notification: ServiceProcess,
    pub user: ServiceProcess,
    pub message: ServiceProcess,
    pub frontend_port: u16,
    /// frontend-service's HTTP port: `/metrics`, `/health` and `/openapi.json` only.
    pub frontend_metrics_port: u16,
    pub notification_ports: Ports,
    pub user_ports: Ports,
    pub message_ports: Ports,
    http: reqwest::Client,
}

impl Stack {
    /// Starts everything, peers before the services that call them: frontend-service,
    /// notification-service, user-service, message-service. Each binds ports of its own
    /// choosing and reports them (see [`ServiceProcess`]), so by the time a service starts,
    /// the URLs of the peers it calls are known.
    pub async fn start() -> Self {
        Self::start_with_env::<&str, &str>(&[]).await
    }

    /// [`Stack::start`] with `extra` variables set for every service (short timeouts, small
    /// retention, `AUTH_SECRET`, …).
    ///
    /// Some services call each other both ways: frontend-service replays from
    /// notification-service, which pushes to it; notification- and frontend-service ask
    /// user-service about tokens, and user-service subscribes at notification-service. Each is
    /// started once its callees' ports are known; the two started first are started again on
    /// their ports once the rest is (nothing has happened on them yet).
    pub async fn start_with_env<K: AsRef<str>, V: AsRef<str>>(extra: &[(K, V)]) -> Self {
        let redis = RedisServer::start().await;
        let grpc_url =
            |process: &ServiceProcess| format!("http://127.0.0.1:{}", process.grpc_port());
        let mut env: Vec<(String, String)> = extra
            .iter()
            .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_owned()))
            .collect();
        env.push(("REDIS_URL".to_owned(), redis.url()));
        let mut frontend = ServiceProcess::start("frontend-service", env.clone()).await;
        env.push(("FRONTEND_SERVICE_GRPC_URL".to_owned(), grpc_url(&frontend)));
        let mut notification = ServiceProcess::start("notification-service", env.clone()).await;
        env.push((
            "NOTIFICATION_SERVICE_GRPC_URL".to_owned(),
            grpc_url(&notification),
        ));
        let user = ServiceProcess::start("user-service", env.clone()).await;
        env.push(("USER_SERVICE_GRPC_URL".to_owned(), grpc_url(&user)));
        frontend.set_env("NOTIFICATION_SERVICE_GRPC_URL", &grpc_url(&notification));
        for peer in [&mut frontend, &mut notification] {
            peer.set_env("USER_SERVICE_GRPC_URL", &grpc_url(&user));
            peer.restart().await;
        }
        let message = ServiceProcess::start("message-service", env).await;
        Self {
            frontend_port: frontend.grpc_port(),
            frontend_metrics_port: frontend
                .ports()
                .http
                .expect("frontend-service serves its metrics over HTTP"),
            notification_ports: Ports::of(&notification),
            user_ports: Ports::of(&user),
            message_ports: Ports::of(&message),
            redis,
            frontend,
            notification,
            user,
            message,
            http: reqwest::Client::new(),
        }
    }

    /// The environment that wires a further replica of a service to this stack's Redis and to
    /// the first replica of each peer; push `(name, url)` pairs to point it elsewhere.
    pub fn replica_env(&self) -> Vec<(String, String)> {
        let grpc_url = |port: u16| format!("http://127.0.0.1:{port}");
        vec![
            ("REDIS_URL".to_owned(), self.redis.url()),
            (
                "FRONTEND_SERVICE_GRPC_URL".to_owned(),
                grpc_url(self.frontend_port),
            ),
            (
                "NOTIFICATION_SERVICE_GRPC_URL".to_owned(),
                grpc_url(self.notification_ports.grpc),
            ),
            (
                "USER_SERVICE_GRPC_URL".to_owned(),
                grpc_url(self.user_ports.grpc),
            ),
        ]
    }

    /// A plain HTTP client, for requests the helpers (`crate::helpers`) do not cover.
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

    /// `http://127.0.0.1:<frontend-service metrics port><path>`.
    pub fn frontend_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.frontend_metrics_port)
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
}
