//! The whole system: Redis plus the four services, each on ports it chose itself, wired to
//! each other. The services run as processes ([`Stack::start`]: they can be killed and
//! restarted, and each has its own `/metrics`) or in this test process
//! ([`Stack::in_process`]: much cheaper to start); both have the same accessors and helpers,
//! so a test switches by its constructor.

use proto::{
    frontend_service::frontend_service_client::FrontendServiceClient,
    message_service::message_service_client::MessageServiceClient,
    notification_service::notification_service_client::NotificationServiceClient,
    user_service::user_service_client::UserServiceClient,
};
use tonic::transport::Channel;

use crate::{
    in_process::{Bound, InProcess, ServiceName, wait_until_serving},
    process::ServiceProcess,
    redis_server::RedisServer,
};

/// Ports of one service that serves both HTTP and gRPC.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

impl Ports {
    fn of(ports: crate::BoundPorts) -> Self {
        Self {
            http: ports.http.expect("the service serves HTTP"),
            grpc: ports.grpc.expect("every service serves gRPC"),
        }
    }
}

/// Redis and the four services; everything stops on drop. `S` is how a service runs:
/// [`ServiceProcess`] (the default) or [`InProcess`].
pub struct Stack<S = ServiceProcess> {
    pub redis: RedisServer,
    pub frontend: S,
    pub notification: S,
    pub user: S,
    pub message: S,
    pub frontend_port: u16,
    /// frontend-service's HTTP port: the web inbox, `/metrics`, `/health` and `/openapi.json`.
    pub frontend_metrics_port: u16,
    pub notification_ports: Ports,
    pub user_ports: Ports,
    pub message_ports: Ports,
    http: reqwest::Client,
}

/// A [`Stack`] whose services run in this test process.
pub type InProcessStack = Stack<InProcess>;

impl Stack<ServiceProcess> {
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
        Self::start_with_env_of(extra, |_| Vec::new()).await
    }

    /// [`Stack::start_with_env`] with further variables for each service by its binary's
    /// name (`"user-service"`, …): `own` may point one at a Redis of its own.
    pub async fn start_with_env_of<K: AsRef<str>, V: AsRef<str>>(
        extra: &[(K, V)],
        own: impl Fn(&str) -> Vec<(String, String)>,
    ) -> Self {
        let redis = RedisServer::start().await;
        let grpc_url =
            |process: &ServiceProcess| format!("http://127.0.0.1:{}", process.grpc_port());
        let mut env: Vec<(String, String)> = extra
            .iter()
            .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_owned()))
            .collect();
        env.push(("REDIS_URL".to_owned(), redis.url()));
        // A later variable of the same name wins (`Command::env`).
        let with = |env: &Vec<(String, String)>, service: &str| {
            let mut env = env.clone();
            env.extend(own(service));
            env
        };
        let mut frontend =
            ServiceProcess::start("frontend-service", with(&env, "frontend-service")).await;
        env.push(("FRONTEND_SERVICE_GRPC_URL".to_owned(), grpc_url(&frontend)));
        let mut notification =
            ServiceProcess::start("notification-service", with(&env, "notification-service")).await;
        env.push((
            "NOTIFICATION_SERVICE_GRPC_URL".to_owned(),
            grpc_url(&notification),
        ));
        let mut user = ServiceProcess::start("user-service", with(&env, "user-service")).await;
        env.push(("USER_SERVICE_GRPC_URL".to_owned(), grpc_url(&user)));
        frontend.set_env("NOTIFICATION_SERVICE_GRPC_URL", &grpc_url(&notification));
        frontend.set_env("USER_SERVICE_GRPC_URL", &grpc_url(&user));
        notification.set_env("USER_SERVICE_GRPC_URL", &grpc_url(&user));
        notification.restart().await;
        let message = ServiceProcess::start("message-service", with(&env, "message-service")).await;
        // user-service calls message-service too (an account's data follows it), and so does
        // frontend-service's web inbox (sending); frontend-service restarts once with all three.
        for peer in [&mut user, &mut frontend] {
            peer.set_env("MESSAGE_SERVICE_GRPC_URL", &grpc_url(&message));
            peer.restart().await;
        }
        Self {
            frontend_port: frontend.grpc_port(),
            frontend_metrics_port: frontend
                .ports()
                .http
                .expect("frontend-service serves its metrics over HTTP"),
            notification_ports: Ports::of(notification.ports()),
            user_ports: Ports::of(user.ports()),
            message_ports: Ports::of(message.ports()),
            redis,
            frontend,
            notification,
            user,
            message,
            http: reqwest::Client::new(),
        }
    }
}

impl Stack<ServiceProcess> {
    /// A gRPC channel to `port` on this machine (written `Stack::channel`, whichever kind of
    /// stack the port is of; see [`channel`]).
    pub async fn channel(port: u16) -> Channel {
        channel(port).await
    }
}

/// A gRPC channel to `port` on this machine.
pub async fn channel(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("valid URL")
        .connect()
        .await
        .expect("connect over gRPC")
}

impl Stack<InProcess> {
    /// Redis (a real `redis-server`) and the four services in this process, on ports 0.
    pub async fn in_process() -> Self {
        Self::in_process_with_env::<&str, &str>(&[]).await
    }

    /// [`Stack::in_process`] with `extra` variables for every service, as
    /// [`Stack::start_with_env`] would set them (read by [`crate::in_process::config_of`]).
    ///
    /// The peers that call each other both ways are bound first, then bound again on the same
    /// ports once every URL is known (nothing has run on them yet), as with processes.
    pub async fn in_process_with_env<K: AsRef<str>, V: AsRef<str>>(extra: &[(K, V)]) -> Self {
        let redis = RedisServer::start().await;
        let pair = |name: &str, value: String| (name.to_owned(), value);
        let mut env: Vec<(String, String)> = extra
            .iter()
            .map(|(name, value)| (name.as_ref().to_owned(), value.as_ref().to_owned()))
            .collect();
        env.push(pair("REDIS_URL", redis.url()));
        for port in ["HTTP_PORT", "GRPC_PORT", "METRICS_PORT"] {
            env.push(pair(port, "0".to_owned()));
        }
        // Another test may take a port in the moment between the two binds; then start over.
        let mut attempts = 0;
        let (frontend, notification, user, message) = loop {
            attempts += 1;
            match wire_in_process(env.clone()).await {
                Ok(services) => break services,
                Err(err) if attempts < 3 => eprintln!("in-process stack, again: {err:#}"),
                Err(err) => panic!("in-process stack: {err:#}"),
            }
        };
        tokio::join!(
            wait_until_serving(&frontend),
            wait_until_serving(&notification),
            wait_until_serving(&user),
            wait_until_serving(&message),
        );
        Self {
            frontend_port: frontend.grpc_port(),
            frontend_metrics_port: frontend
                .ports()
                .http
                .expect("frontend-service serves its metrics over HTTP"),
            notification_ports: Ports::of(notification.ports()),
            user_ports: Ports::of(user.ports()),
            message_ports: Ports::of(message.ports()),
            redis,
            frontend,
            notification,
            user,
            message,
            http: reqwest::Client::new(),
        }
    }
}

/// Binds and runs the four services wired to each other (see [`Stack::in_process_with_env`]):
/// frontend-service, notification-service, user-service, message-service.
async fn wire_in_process(
    mut env: Vec<(String, String)>,
) -> anyhow::Result<(InProcess, InProcess, InProcess, InProcess)> {
    let grpc_url = |ports: crate::BoundPorts| {
        format!(
            "http://127.0.0.1:{}",
            ports.grpc.expect("every service serves gRPC")
        )
    };
    let pair = |name: &str, value: String| (name.to_owned(), value);
    // Bound first to learn their ports, then (unserved) let go of and bound again with every
    // URL. Each is held until just before its second bind, so no other bind on port 0 (user-
    // service's, here) can be given its ports in between.
    let first_frontend = Bound::try_bind(ServiceName::Frontend, &env).await?;
    env.push(pair(
        "FRONTEND_SERVICE_GRPC_URL",
        grpc_url(first_frontend.ports()),
    ));
    let first_notification = Bound::try_bind(ServiceName::Notification, &env).await?;
    env.push(pair(
        "NOTIFICATION_SERVICE_GRPC_URL",
        grpc_url(first_notification.ports()),
    ));
    let first_user = Bound::try_bind(ServiceName::User, &env).await?;
    env.push(pair("USER_SERVICE_GRPC_URL", grpc_url(first_user.ports())));
    let again = |first: Bound, http: &str, env: &[(String, String)]| {
        let ports = first.ports();
        drop(first);
        let mut env = env.to_vec();
        env.push(pair(http, ports.http.unwrap_or(0).to_string()));
        env.push(pair("GRPC_PORT", ports.grpc.unwrap_or(0).to_string()));
        env
    };
    let env_of_frontend = again(first_frontend, "METRICS_PORT", &env);
    let frontend = Bound::try_bind(ServiceName::Frontend, &env_of_frontend)
        .await?
        .run();
    let env_of_notification = again(first_notification, "HTTP_PORT", &env);
    let notification = Bound::try_bind(ServiceName::Notification, &env_of_notification)
        .await?
        .run();
    let message = Bound::try_bind(ServiceName::Message, &env).await?.run();
    // user-service calls message-service too (an account's data follows it), so it is bound
    // again once message-service's port is known.
    env.push(pair("MESSAGE_SERVICE_GRPC_URL", grpc_url(message.ports())));
    let env_of_user = again(first_user, "HTTP_PORT", &env);
    let user = Bound::try_bind(ServiceName::User, &env_of_user)
        .await?
        .run();
    Ok((frontend, notification, user, message))
}

impl<S> Stack<S> {
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
            (
                "MESSAGE_SERVICE_GRPC_URL".to_owned(),
                grpc_url(self.message_ports.grpc),
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

    pub async fn user_client(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(channel(self.user_ports.grpc).await)
    }

    pub async fn message_client(&self) -> MessageServiceClient<Channel> {
        MessageServiceClient::new(channel(self.message_ports.grpc).await)
    }

    pub async fn notification_client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(channel(self.notification_ports.grpc).await)
    }

    pub async fn frontend_client(&self) -> FrontendServiceClient<Channel> {
        FrontendServiceClient::new(channel(self.frontend_port).await)
    }
}
