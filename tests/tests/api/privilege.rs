//! Least privilege between the services: each service's internal credential opens only the
//! internal RPCs it calls (every RPC × every service's credential), and each service's Redis
//! ACL user (docker/redis/users.acl, started by docker/redis/start-redis) reaches only its own
//! keys and commands — with the whole system working end to end under those users.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use integration_tests::{
    ServiceProcess, Stack,
    helpers::{AUTH_SECRET, eventually, protected_env, reply, unique_email, with_bearer},
};
use proto::{
    frontend_service::{
        InboxChange, Notification, WatchNotificationsRequest,
        frontend_service_client::FrontendServiceClient, inbox_change,
    },
    message_service::{GetMessagesRequest, message_service_client::MessageServiceClient},
    notification_service::{
        CheckUserSubscribedRequest, CreateNotificationRequest, DeleteNotificationsRequest,
        ListNotificationsRequest, MarkNotificationsReadRequest, SubscribeUserRequest,
        UnreadCountRequest, UnsubscribeUserRequest,
    },
    user_service::{CheckUserExistsRequest, ValidateTokenRequest},
};
use serde_json::{Value, json};
use service_runtime::auth::{AuthConfig, DEFAULT_TOKEN_TTL, ServiceName, TokenKeys};
use tonic::Code;

/// A password the policy accepts.
const PASSWORD: &str = "Str0ng-pass!";

/// `message` as a gRPC request carrying `service`'s internal credential derived from `secret`.
pub fn with_credential_of<T>(message: T, secret: &str, service: ServiceName) -> tonic::Request<T> {
    let config = AuthConfig::protected(secret.as_bytes(), DEFAULT_TOKEN_TTL).expect("long enough");
    let mut request = tonic::Request::new(message);
    TokenKeys::of_service(&config, service)
        .internal_credential()
        .attach(&mut request);
    request
}

// ---------------------------------------------------------------------------------------------
// Internal RPCs: one allow-list of callers each
// ---------------------------------------------------------------------------------------------

/// Every internal or user-scoped RPC and the services whose credential opens it (public RPCs,
/// `AuthenticateUser`, are not here). What the code calls: message-service checks users and
/// creates notifications, user-service subscribes, notification-service pushes,
/// frontend-service replays, and the three services that check tokens validate them.
const ALLOWED: &[(&str, &[ServiceName])] = &[
    ("CheckUserExists", &[ServiceName::Message]),
    ("ListUsers", &[]),
    (
        "ValidateToken",
        &[
            ServiceName::Message,
            ServiceName::Notification,
            ServiceName::Frontend,
        ],
    ),
    ("SendMessage", &[]),
    ("GetMessages", &[]),
    ("CreateNotification", &[ServiceName::Message]),
    ("CheckUserSubscribed", &[]),
    ("SubscribeUser", &[ServiceName::User]),
    ("UnsubscribeUser", &[]),
    ("ListNotifications", &[ServiceName::Frontend]),
    ("MarkNotificationsRead", &[]),
    ("GetUnreadCount", &[ServiceName::Frontend]),
    ("DeleteNotifications", &[]),
    ("ReceiveNotification", &[ServiceName::Notification]),
    ("ReceiveInboxChange", &[ServiceName::Notification]),
    ("MessageService.ForgetUser", &[ServiceName::User]),
    ("NotificationService.ForgetUser", &[ServiceName::User]),
    ("WatchNotifications", &[]),
];

/// gRPC OK as 200, `UNAUTHENTICATED` 401, `PERMISSION_DENIED` 403, anything else 600 + code;
/// and the message.
fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> (u16, String) {
    match result {
        Ok(_) => (200, String::new()),
        Err(status) => {
            let code = match status.code() {
                Code::Unauthenticated => 401,
                Code::PermissionDenied => 403,
                other => 600 + other as u16,
            };
            (code, status.message().to_owned())
        }
    }
}

/// How a call presents itself: with the credential of `service`, optionally under another
/// service's name in `x-internal-caller`.
#[derive(Debug, Clone, Copy)]
struct Presented {
    service: ServiceName,
    named: Option<&'static str>,
}

fn present<T>(message: T, how: Presented) -> tonic::Request<T> {
    let mut request = with_credential_of(message, AUTH_SECRET, how.service);
    if let Some(name) = how.named {
        request
            .metadata_mut()
            .insert("x-internal-caller", name.parse().expect("ASCII"));
    }
    request
}

/// Calls `rpc` about `victim` (whose token is `token`), presented `how`.
async fn call(s: &Stack, rpc: &str, victim: &str, token: &str, how: Presented) -> (u16, String) {
    let email = Some(victim.to_owned());
    let users = || async { s.user_client().await };
    let notifications = || async { s.notification_client().await };
    match rpc {
        "CheckUserExists" => outcome(
            users()
                .await
                .check_user_exists(present(
                    CheckUserExistsRequest {
                        email: email.clone(),
                    },
                    how,
                ))
                .await,
        ),
        "ListUsers" => outcome(users().await.list_users(present((), how)).await),
        "ValidateToken" => outcome(
            s.token_client()
                .await
                .validate_token(present(
                    ValidateTokenRequest {
                        token: Some(token.to_owned()),
                    },
                    how,
                ))
                .await,
        ),
        "SendMessage" => outcome(
            s.message_client()
                .await
                .send_message(present(
                    integration_tests::helpers::message(Some(victim), Some(victim), Some("hi")),
                    how,
                ))
                .await,
        ),
        "GetMessages" => outcome(
            s.message_client()
                .await
                .get_messages(present(
                    GetMessagesRequest {
                        user_email: email.clone(),
                        ..GetMessagesRequest::default()
                    },
                    how,
                ))
                .await,
        ),
        "CreateNotification" => outcome(
            notifications()
                .await
                .create_notification(present(
                    CreateNotificationRequest {
                        sender_email: email.clone(),
                        receiver_email: email.clone(),
                        ..CreateNotificationRequest::default()
                    },
                    how,
                ))
                .await,
        ),
        "CheckUserSubscribed" => outcome(
            notifications()
                .await
                .check_user_subscribed(present(
                    CheckUserSubscribedRequest {
                        email: email.clone(),
                    },
                    how,
                ))
                .await,
        ),
        "SubscribeUser" => outcome(
            notifications()
                .await
                .subscribe_user(present(
                    SubscribeUserRequest {
                        email: email.clone(),
                    },
                    how,
                ))
                .await,
        ),
        "UnsubscribeUser" => outcome(
            notifications()
                .await
                .unsubscribe_user(present(
                    UnsubscribeUserRequest {
                        email: email.clone(),
                    },
                    how,
                ))
                .await,
        ),
        "ListNotifications" => outcome(
            notifications()
                .await
                .list_notifications(present(
                    ListNotificationsRequest {
                        email: email.clone(),
                        ..ListNotificationsRequest::default()
                    },
                    how,
                ))
                .await,
        ),
        "MarkNotificationsRead" => outcome(
            notifications()
                .await
                .mark_notifications_read(present(
                    MarkNotificationsReadRequest {
                        email: email.clone(),
                        ..MarkNotificationsReadRequest::default()
                    },
                    how,
                ))
                .await,
        ),
        "GetUnreadCount" => outcome(
            notifications()
                .await
                .get_unread_count(present(
                    UnreadCountRequest {
                        email: email.clone(),
                        up_to: None,
                    },
                    how,
                ))
                .await,
        ),
        "DeleteNotifications" => outcome(
            notifications()
                .await
                .delete_notifications(present(
                    DeleteNotificationsRequest {
                        email: email.clone(),
                        notification_ids: vec!["nothing-to-delete".to_owned()],
                        all: None,
                    },
                    how,
                ))
                .await,
        ),
        // Of an address nobody holds: forgetting it changes nothing the other calls read.
        "MessageService.ForgetUser" => outcome(
            s.message_client()
                .await
                .forget_user(present(
                    proto::message_service::ForgetUserRequest {
                        email: Some("nobody-here@privilege.test".to_owned()),
                        moved_to: None,
                    },
                    how,
                ))
                .await,
        ),
        "NotificationService.ForgetUser" => outcome(
            notifications()
                .await
                .forget_user(present(
                    proto::notification_service::ForgetUserRequest {
                        email: Some("nobody-here@privilege.test".to_owned()),
                        moved_to: None,
                    },
                    how,
                ))
                .await,
        ),
        "ReceiveNotification" => outcome(
            s.frontend_client()
                .await
                .receive_notification(present(
                    Notification {
                        sender_email: email.clone(),
                        receiver_email: email.clone(),
                        timestamp: Some("2025-01-14T12:00:00Z".into()),
                        read: Some(false),
                        notification_id: Some(format!("pushed-by-{}", how.service)),
                        cursor: None,
                    },
                    how,
                ))
                .await,
        ),
        "ReceiveInboxChange" => outcome(
            s.frontend_client()
                .await
                .receive_inbox_change(present(
                    InboxChange {
                        receiver_email: email.clone(),
                        kind: Some(inbox_change::Kind::Read.into()),
                        notification_ids: vec![],
                        all: Some(true),
                    },
                    how,
                ))
                .await,
        ),
        "WatchNotifications" => outcome(
            s.frontend_client()
                .await
                .watch_notifications(present(
                    WatchNotificationsRequest {
                        email: email.clone(),
                        after: None,
                    },
                    how,
                ))
                .await,
        ),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test]
async fn each_internal_rpc_opens_to_the_credential_of_the_services_that_call_it_only() {
    let s = Stack::start_with_env(&protected_env(&[])).await;
    let victim = s.registered_user_with("victim", PASSWORD).await;
    let token = s.token(&victim, PASSWORD).await;

    for (rpc, allowed) in ALLOWED {
        for service in ServiceName::ALL {
            let how = Presented {
                service,
                named: None,
            };
            let (status, message) = call(&s, rpc, &victim, &token, how).await;
            if allowed.contains(&service) {
                assert_eq!(status, 200, "{rpc} by {service}: {message}");
            } else {
                assert_eq!(status, 403, "{rpc} by {service}: {message}");
                assert!(
                    message.contains(service.as_str()),
                    "{rpc} by {service}: {message}"
                );
            }
        }
    }
    // What the refusals would have changed did not happen: the subscription stands, and the one
    // notification stored is message-service's CreateNotification.
    assert_eq!(
        s.stored_subscription(&victim).await.expect("subscribed")["subscribed"],
        true
    );
    assert_eq!(s.stored_notifications(&victim).await.len(), 1);
}

#[tokio::test]
async fn a_credential_under_another_services_name_opens_nothing() {
    let s = Stack::start_with_env(&protected_env(&[])).await;
    let victim = s.registered_user_with("victim", PASSWORD).await;
    let token = s.token(&victim, PASSWORD).await;
    // frontend-service's credential presented as message-service's, and as nobody's.
    for named in ["message-service", "someone-else"] {
        let how = Presented {
            service: ServiceName::Frontend,
            named: Some(named),
        };
        for rpc in ["CreateNotification", "CheckUserExists"] {
            let (status, message) = call(&s, rpc, &victim, &token, how).await;
            assert_eq!(status, 401, "{rpc} as {named}: {message}");
            assert!(message.contains("internal"), "{rpc} as {named}: {message}");
        }
    }
    assert!(s.stored_notifications(&victim).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Redis: one ACL user per service
// ---------------------------------------------------------------------------------------------

/// The password each ACL user gets in these tests.
fn password_of(user: &str) -> String {
    format!("test-password-of-{user}")
}

const ADMIN: &str = "admin";

/// A `redis-server` started by docker/redis/start-redis with the repository's ACL file and a
/// password for every user; killed and its directory removed on drop.
struct AclRedis {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl AclRedis {
    async fn start() -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("bound").port()
        };
        let dir = std::env::temp_dir().join(format!("it-acl-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Redis directory");
        let child = Self::spawn(port, &dir);
        let server = Self { port, dir, child };
        server.wait_until_it_answers().await;
        server
    }

    /// docker/redis/start-redis on `port`, its append-only file in `dir` (as compose runs it).
    fn spawn(port: u16, dir: &Path) -> Child {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut command = Command::new(repo.join("docker/redis/start-redis"));
        command
            .env("REDIS_ACL_FILE", dir.join("users.acl"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for user in ServiceName::ALL
            .iter()
            .map(|service| service.as_str())
            .chain([ADMIN])
        {
            let var = format!("REDIS_PASSWORD_{}", user.to_uppercase().replace('-', "_"));
            command.env(var, password_of(user));
        }
        command.spawn().expect("run docker/redis/start-redis")
    }

    /// Kills redis-server and starts it again on its port and directory: it reloads the
    /// append-only file.
    async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, &self.dir);
        self.wait_until_it_answers().await;
    }

    /// Until PING answers, logged in as frontend-service, as the health checks do (a
    /// connection that does not log in can run nothing).
    async fn wait_until_it_answers(&self) {
        eventually("the ACL Redis to answer PING", || async {
            let client = redis::Client::open(self.url_of("frontend-service")).ok()?;
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            let pong: redis::RedisResult<String> =
                redis::cmd("PING").query_async(&mut connection).await;
            pong.ok()
        })
        .await;
    }

    /// `redis://user:password@127.0.0.1:<port>` for `user`.
    fn url_of(&self, user: &str) -> String {
        format!(
            "redis://{user}:{}@127.0.0.1:{}",
            password_of(user),
            self.port
        )
    }

    async fn anonymous(&self, db: u8) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/{db}", self.port))?
            .get_multiplexed_async_connection()
            .await
    }

    async fn as_user(&self, user: &str, db: u8) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("{}/{db}", self.url_of(user)))
            .expect("valid URL")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("log in as {user}: {err}"))
    }
}

impl Drop for AclRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The error code of what `cmd` answered on `connection` (`None`: it succeeded).
async fn refusal(
    connection: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Option<String> {
    let answered: redis::RedisResult<redis::Value> = cmd.query_async(connection).await;
    answered
        .err()
        .map(|err| err.code().unwrap_or("?").to_owned())
}

fn cmd(parts: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(parts[0]);
    for part in &parts[1..] {
        cmd.arg(*part);
    }
    cmd
}

#[tokio::test]
async fn each_redis_user_reaches_only_its_own_keys_and_commands() {
    let redis = AclRedis::start().await;
    let nope = Some("NOPERM".to_owned());

    // Cases: (user, database, command, refused?)
    let cases: &[(&str, u8, &[&str], bool)] = &[
        // A compromised frontend-service cannot read or rewrite password hashes, or anything.
        ("frontend-service", 0, &["GET", "users:a@b.io"], true),
        ("frontend-service", 0, &["SET", "users:a@b.io", "{}"], true),
        ("frontend-service", 1, &["GET", "message:1"], true),
        (
            "frontend-service",
            2,
            &["LRANGE", "notifications:a@b.io", "0", "-1"],
            true,
        ),
        (
            "frontend-service",
            0,
            &["PUBLISH", "frontend:live:a@b.io", "{}"],
            false,
        ),
        ("frontend-service", 0, &["PUBLISH", "elsewhere", "{}"], true),
        // The others have SET, but not on another service's keys.
        ("message-service", 0, &["SET", "users:a@b.io", "{}"], true),
        ("message-service", 1, &["SET", "message:1", "{}"], false),
        (
            "notification-service",
            0,
            &["SET", "users:a@b.io", "{}"],
            true,
        ),
        ("notification-service", 1, &["SET", "message:1", "{}"], true),
        (
            "notification-service",
            2,
            &["SET", "notification_cursor:a@b.io", "1"],
            false,
        ),
        ("user-service", 0, &["SET", "users:a@b.io", "{}"], false),
        ("user-service", 1, &["SET", "message:1", "{}"], true),
        (
            "user-service",
            2,
            &["HSET", "subscriptions", "a@b.io", "{}"],
            true,
        ),
        // Nothing wholesale.
        ("user-service", 0, &["FLUSHALL"], true),
        ("user-service", 0, &["KEYS", "*"], true),
        ("message-service", 0, &["CONFIG", "GET", "*"], true),
        ("notification-service", 0, &["ACL", "LIST"], true),
        ("admin", 0, &["GET", "users:a@b.io"], false),
    ];
    for (user, db, parts, refused) in cases {
        let mut connection = redis.as_user(user, *db).await;
        let answer = refusal(&mut connection, &cmd(parts)).await;
        let expected = if *refused { nope.clone() } else { None };
        assert_eq!(answer, expected, "{user} on DB {db}: {parts:?}");
    }

    // Without logging in: nothing at all, not even PING.
    let mut anonymous = redis.anonymous(0).await.expect("connect");
    let noauth = Some("NOAUTH".to_owned());
    assert_eq!(refusal(&mut anonymous, &cmd(&["PING"])).await, noauth);
    assert_eq!(
        refusal(&mut anonymous, &cmd(&["GET", "users:a@b.io"])).await,
        noauth
    );
    // A wrong password is no login at all.
    let wrong = redis::Client::open(format!(
        "redis://user-service:wrong@127.0.0.1:{}",
        redis.port
    ))
    .expect("valid URL")
    .get_multiplexed_async_connection()
    .await;
    assert!(wrong.is_err(), "logged in with a wrong password");
}

/// Redis 7.0 replays the append-only file's transactions (a script's effects with more than one
/// write are one, and so is a MULTI of several commands) as the `default` user: a restart must
/// keep what each service wrote in them.
#[tokio::test]
async fn writes_made_in_transactions_under_the_acl_users_survive_a_redis_restart() {
    let mut redis = AclRedis::start().await;
    let mut users = redis.as_user("user-service", 0).await;
    let _: () = redis::pipe()
        .atomic()
        .set("users:aof@b.io", "kept")
        .ignore()
        .set("login_failures:aof@b.io", "1")
        .ignore()
        .query_async(&mut users)
        .await
        .expect("MULTI/EXEC as user-service");
    let mut messages = redis.as_user("message-service", 1).await;
    let _: () = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("message_id_counter")
        .ignore()
        .set("message:1", "kept")
        .ignore()
        .query_async(&mut messages)
        .await
        .expect("MULTI/EXEC as message-service");

    redis.restart().await;

    let mut users = redis.as_user("user-service", 0).await;
    let kept: Option<String> = redis::cmd("GET")
        .arg("users:aof@b.io")
        .query_async(&mut users)
        .await
        .expect("GET");
    assert_eq!(kept.as_deref(), Some("kept"));
    let mut messages = redis.as_user("message-service", 1).await;
    let counter: Option<u64> = redis::cmd("GET")
        .arg("message_id_counter")
        .query_async(&mut messages)
        .await
        .expect("GET");
    assert_eq!(counter, Some(1));
}

#[tokio::test]
async fn the_whole_system_works_with_each_service_logged_in_as_its_own_redis_user() {
    let redis = AclRedis::start().await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let grpc_url = |process: &ServiceProcess| format!("http://127.0.0.1:{}", process.grpc_port());
    // Protection on, the same wiring for all, and each service its own REDIS_USERNAME/PASSWORD.
    let mut shared = protected_env(&[]);
    shared.push(("REDIS_URL".to_owned(), url));
    let env_of = |service: ServiceName, shared: &[(String, String)]| {
        let mut env = shared.to_vec();
        env.push(("REDIS_USERNAME".to_owned(), service.as_str().to_owned()));
        env.push(("REDIS_PASSWORD".to_owned(), password_of(service.as_str())));
        env
    };
    // Started as Stack does: callees first, the two that call back restarted once the rest is up.
    let mut frontend =
        ServiceProcess::start("frontend-service", env_of(ServiceName::Frontend, &shared)).await;
    shared.push(("FRONTEND_SERVICE_GRPC_URL".to_owned(), grpc_url(&frontend)));
    let mut notification = ServiceProcess::start(
        "notification-service",
        env_of(ServiceName::Notification, &shared),
    )
    .await;
    shared.push((
        "NOTIFICATION_SERVICE_GRPC_URL".to_owned(),
        grpc_url(&notification),
    ));
    let user = ServiceProcess::start("user-service", env_of(ServiceName::User, &shared)).await;
    shared.push(("USER_SERVICE_GRPC_URL".to_owned(), grpc_url(&user)));
    frontend.set_env("NOTIFICATION_SERVICE_GRPC_URL", &grpc_url(&notification));
    for peer in [&mut frontend, &mut notification] {
        peer.set_env("USER_SERVICE_GRPC_URL", &grpc_url(&user));
        peer.restart().await;
    }
    let message =
        ServiceProcess::start("message-service", env_of(ServiceName::Message, &shared)).await;

    let http = reqwest::Client::new();
    let http_url = |process: &ServiceProcess, path: &str| {
        format!(
            "http://127.0.0.1:{}{path}",
            process.ports().http.expect("an HTTP port")
        )
    };
    let channel = |process: &ServiceProcess| Stack::channel(process.grpc_port());

    // Every service reaches Redis as its user (GET /health is 200 only then).
    for process in [&user, &message, &notification, &frontend] {
        let (status, body) = reply(
            http.get(http_url(process, "/health"))
                .send()
                .await
                .expect("GET /health"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    // Sign-up (user-service's keys and outbox, notification-service's subscription).
    let ada = unique_email("ada");
    let grace = unique_email("grace");
    for email in [&ada, &grace] {
        let (status, body) = reply(
            http.post(http_url(&user, "/users"))
                .json(&json!({ "email": email, "password": PASSWORD, "name": "n" }))
                .send()
                .await
                .expect("POST /users"),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut admin = redis.as_user(ADMIN, 2).await;
    for email in [&ada, &grace] {
        eventually("the subscription", || {
            let mut admin = admin.clone();
            async move {
                let stored: Option<String> = redis::cmd("HGET")
                    .arg("subscriptions")
                    .arg(email)
                    .query_async(&mut admin)
                    .await
                    .expect("HGET");
                stored
            }
        })
        .await;
    }
    // A failed login (login_failures), then real ones.
    let login = |email: String, password: &'static str| {
        let request = http
            .post(http_url(&user, "/login"))
            .json(&json!({ "email": email, "password": password }));
        async move { reply(request.send().await.expect("POST /login")).await }
    };
    let (status, body) = login(ada.clone(), "Wr0ng-pass!").await;
    assert_eq!(status, 401, "{body}");
    let mut tokens = Vec::new();
    for email in [&ada, &grace] {
        let (status, body) = login(email.clone(), PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["token"].as_str().expect("a token").to_owned());
    }
    let (ada_token, grace_token) = (&tokens[0], &tokens[1]);

    // Grace watches (frontend-service: ValidateToken, replay, pub/sub) while Ada writes to her
    // (message-service's keys and outbox, notification-service's store and outbox).
    let mut watch = FrontendServiceClient::new(channel(&frontend).await)
        .watch_notifications(with_bearer(
            WatchNotificationsRequest {
                email: Some(grace.clone()),
                after: None,
            },
            Some(grace_token),
        ))
        .await
        .expect("Grace watches")
        .into_inner();
    let reply_of_send = MessageServiceClient::new(channel(&message).await)
        .send_message(with_bearer(
            integration_tests::helpers::message(Some(&ada), Some(&grace), Some("Hello")),
            Some(ada_token),
        ))
        .await
        .expect("SendMessage")
        .into_inner();
    assert_eq!(reply_of_send.success, Some(true), "{reply_of_send:?}");
    let pushed = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a notification in time")
        .expect("the stream is healthy")
        .expect("one notification");
    assert_eq!(pushed.sender_email.as_deref(), Some(ada.as_str()));

    // Reading back, marking read, deleting.
    let messages = MessageServiceClient::new(channel(&message).await)
        .get_messages(with_bearer(
            GetMessagesRequest {
                user_email: Some(grace.clone()),
                ..GetMessagesRequest::default()
            },
            Some(grace_token),
        ))
        .await
        .expect("GetMessages")
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 1);
    let get = |process: &ServiceProcess, path: &str, email: &str, token: &str| {
        let request = http
            .get(http_url(process, path))
            .query(&[("email", email)])
            .bearer_auth(token);
        async move { reply(request.send().await.expect("GET")).await }
    };
    let (status, body) = get(&message, "/list_conversations", &ada, ada_token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains(grace.as_str()), "{body}");
    let (status, body) = get(&notification, "/list_notifications", &grace, grace_token).await;
    assert_eq!(status, 200, "{body}");
    let id = body["notifications"][0]["notification_id"]
        .as_str()
        .expect("a notification id")
        .to_owned();
    let (status, body) = reply(
        http.post(http_url(&notification, "/notifications/read"))
            .bearer_auth(grace_token)
            .json(&json!({ "email": grace, "notification_ids": [id] }))
            .send()
            .await
            .expect("POST /notifications/read"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &notification,
        "/notifications/unread_count",
        &grace,
        grace_token,
    )
    .await;
    assert_eq!(
        (status, &body["unread_count"]),
        (200, &Value::from(0)),
        "{body}"
    );
    let (status, body) = reply(
        http.delete(http_url(&notification, "/notifications"))
            .bearer_auth(grace_token)
            .json(&json!({ "email": grace, "notification_ids": [id] }))
            .send()
            .await
            .expect("DELETE /notifications"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Redis refused nothing any service sent (ACL LOG records every refusal), and each service
    // is connected as its own user.
    let log: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .expect("ACL LOG");
    assert!(log.is_empty(), "Redis refused commands: {log:?}");
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    for service in ServiceName::ALL {
        assert!(
            clients.contains(&format!(" user={} ", service.as_str())),
            "{service} is not connected as its own user: {clients}"
        );
    }
    assert!(!clients.contains(" user=default "), "{clients}");
}
