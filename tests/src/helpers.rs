//! What the tests do with a [`Stack`]: one helper per endpoint and RPC (methods on `Stack`),
//! readers of what the services stored in Redis, and the one way to wait for something
//! eventual, [`eventually`]. Every wait is bounded by [`PATIENCE`]; nothing sleeps as an
//! assertion.
//!
//! | Service              | Endpoint or RPC          | Helper                                        |
//! |----------------------|--------------------------|-----------------------------------------------|
//! | user-service         | `POST /users`            | [`Stack::create_user`], [`Stack::post_users`] |
//! |                      | `PUT /users/email`       | [`Stack::put_user_by_body`]                   |
//! |                      | `PUT /users/{email}`     | [`Stack::put_user_by_path`]                   |
//! |                      | `DELETE /users/email`    | [`Stack::delete_user_by_body`]                |
//! |                      | `DELETE /users/{email}`  | [`Stack::delete_user_by_path`]                |
//! |                      | `CheckUserExists`        | [`Stack::user_exists`]                        |
//! |                      | `AuthenticateUser`       | [`Stack::authenticate`]                       |
//! |                      | `ListUsers`              | [`Stack::list_users`]                         |
//! | message-service      | `SendMessage`            | [`Stack::send`], [`Stack::send_ok`], [`send_over`] |
//! |                      | `GetMessages`            | [`Stack::messages_of`]                        |
//! |                      | `GET /list_conversations`| [`Stack::list_conversations`]                 |
//! | notification-service | `GET /list_notifications`| [`Stack::list_notifications`]                 |
//! |                      | `SubscribeUser`          | [`Stack::subscribe`]                          |
//! |                      | `UnsubscribeUser`        | [`Stack::unsubscribe`]                        |
//! |                      | `CheckUserSubscribed`    | [`Stack::is_subscribed`]                      |
//! |                      | `CreateNotification`     | [`Stack::create_notification`]                |
//! | frontend-service     | `WatchNotifications`     | [`Stack::watch`]                              |
//! | user-service (login) | `POST /login`            | [`Stack::login`], [`Stack::token`]            |
//! | every HTTP server    | `GET /metrics`           | [`Stack::metrics`], read with [`Metrics::value`] |
//!
//! Requests with a token (`Authorization: Bearer`) or the internal credential are built with
//! [`with_bearer`], [`bearer_header`] and [`with_internal_credential`].
//! A test that checks how a call fails at the transport level (an error status, a connection
//! made before a restart) uses the generated client from [`Stack::user_client`] and friends.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use proto::{
    frontend_service::{
        Notification, WatchNotificationsRequest, frontend_service_client::FrontendServiceClient,
    },
    message_service::{
        GetMessagesRequest, Message, SendMessageRequest, SendMessageResponse,
        message_service_client::MessageServiceClient,
    },
    notification_service::{
        CheckUserSubscribedRequest, CreateNotificationRequest, SubscribeUserRequest,
        UnsubscribeUserRequest,
    },
    user_service::{AuthenticateRequest, CheckUserExistsRequest, User},
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use tonic::{Streaming, transport::Channel};

use message_service::keys::NOTIFICATION_OUTBOX;
use notification_service::keys::{FRONTEND_OUTBOX, SUBSCRIPTIONS, notifications_key};
use user_service::keys::user_key;

use crate::Stack;

/// How long anything eventual may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `probe` until it returns `Some`, for at most [`PATIENCE`]; panics naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An email no other test uses: `<prefix>-<pid>-<n>@example.com`.
pub fn unique_email(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}@example.com", std::process::id())
}

/// The status and JSON body of a reply (`Value::Null` when the body is empty, e.g. 204).
pub async fn reply(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("read the reply body");
    let body = if bytes.is_empty() {
        Value::Null
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

/// An error reply: `expected_status`, `success: false` and a message saying what is wrong.
pub fn assert_error(status: u16, body: &Value, expected_status: u16) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error names what is wrong: {body}"
    );
}

// ---------------------------------------------------------------------------------------------
// user-service
// ---------------------------------------------------------------------------------------------

/// Path form of an address: `/users/{email}` with the address percent-encoded.
fn user_path(email: &str) -> String {
    format!("/users/{}", email.replace('+', "%2B").replace('@', "%40"))
}

impl Stack {
    /// `POST /users` with `{email, password, name}` as JSON; the status and JSON reply.
    pub async fn create_user(&self, email: &str, password: &str, name: &str) -> (u16, Value) {
        let body = json!({ "email": email, "password": password, "name": name });
        self.post_users("application/json", body.to_string()).await
    }

    /// `POST /users` with any body and content type, for incomplete or malformed input.
    pub async fn post_users(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let response = self
            .http()
            .post(self.user_url("/users"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /users");
        reply(response).await
    }

    /// `PUT /users/email` with `body` (`{"email": …, "data": {…}}`).
    pub async fn put_user_by_body(&self, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::PUT, "/users/email", Some(body))
            .await
    }

    /// `PUT /users/{email}` with `body` (the fields to change).
    pub async fn put_user_by_path(&self, email: &str, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::PUT, &user_path(email), Some(body))
            .await
    }

    /// `DELETE /users/email` with `body` (`{"email": …}`).
    pub async fn delete_user_by_body(&self, body: &Value) -> (u16, Value) {
        self.user_request(reqwest::Method::DELETE, "/users/email", Some(body))
            .await
    }

    /// `DELETE /users/{email}`, without a body.
    pub async fn delete_user_by_path(&self, email: &str) -> (u16, Value) {
        self.user_request(reqwest::Method::DELETE, &user_path(email), None)
            .await
    }

    async fn user_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.http().request(method, self.user_url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        reply(request.send().await.expect("HTTP request")).await
    }

    /// `CheckUserExists`, which must answer status OK.
    pub async fn user_exists(&self, email: Option<&str>) -> bool {
        self.user_client()
            .await
            .check_user_exists(CheckUserExistsRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("CheckUserExists answers OK")
            .into_inner()
            .exists
            .expect("exists is always set")
    }

    /// `AuthenticateUser`, which must answer status OK: the echoed email and `success`.
    pub async fn authenticate(
        &self,
        email: Option<&str>,
        password: Option<&str>,
    ) -> (Option<String>, bool) {
        let reply = self
            .user_client()
            .await
            .authenticate_user(AuthenticateRequest {
                email: email.map(str::to_owned),
                password: password.map(str::to_owned),
            })
            .await
            .expect("AuthenticateUser answers OK")
            .into_inner();
        (reply.email, reply.success.expect("success is always set"))
    }

    /// `ListUsers`, which must answer status OK.
    pub async fn list_users(&self) -> Vec<User> {
        self.user_client()
            .await
            .list_users(())
            .await
            .expect("ListUsers")
            .into_inner()
            .users
    }

    /// A user created through `POST /users`, once notification-service has them subscribed
    /// (user-service subscribes new users through its own outbox, so shortly after).
    pub async fn registered_user(&self, prefix: &str) -> String {
        let email = unique_email(prefix);
        let (status, body) = self.create_user(&email, "pw-123456", prefix).await;
        assert_eq!(status, 201, "POST /users: {body}");
        eventually(&format!("{email} to be subscribed"), || async {
            self.is_subscribed(&email).await.then_some(())
        })
        .await;
        email
    }

    /// The user record of `email` in DB 0 ([`user_key`]), parsed, or `None` when absent.
    pub async fn stored_user(&self, email: &str) -> Option<Value> {
        let raw: Option<String> = self
            .redis
            .db(0)
            .await
            .get(user_key(email))
            .await
            .expect("GET the user");
        raw.map(|raw| serde_json::from_str(&raw).expect("stored user is JSON"))
    }
}

// ---------------------------------------------------------------------------------------------
// message-service
// ---------------------------------------------------------------------------------------------

/// A `SendMessage` request; `None` leaves the field unset.
pub fn message(
    sender: Option<&str>,
    receiver: Option<&str>,
    content: Option<&str>,
) -> SendMessageRequest {
    SendMessageRequest {
        message: Some(Message {
            sender_email: sender.map(str::to_owned),
            receiver_email: receiver.map(str::to_owned),
            content: content.map(str::to_owned),
            ..Message::default()
        }),
    }
}

/// `SendMessage` of `content` from `sender` to `receiver` over `client`, which must answer
/// status OK; the reply. For tests that put many sends on one channel; [`Stack::send`] opens
/// its own.
pub async fn send_over(
    client: &mut MessageServiceClient<Channel>,
    sender: &str,
    receiver: &str,
    content: &str,
) -> SendMessageResponse {
    client
        .send_message(message(Some(sender), Some(receiver), Some(content)))
        .await
        .expect("SendMessage answers OK")
        .into_inner()
}

/// Where a list endpoint is given the email.
#[derive(Debug, Clone)]
pub enum EmailIn<'a> {
    /// `?email=<email>`.
    Query(&'a str),
    /// A JSON body, as the original's clients send it (even with GET).
    Body(Value),
    /// Neither.
    Nowhere,
}

impl Stack {
    /// `SendMessage` (see [`send_over`]) on a channel of its own.
    pub async fn send(&self, sender: &str, receiver: &str, content: &str) -> SendMessageResponse {
        send_over(&mut self.message_client().await, sender, receiver, content).await
    }

    /// `SendMessage`, asserting the contract's success reply.
    pub async fn send_ok(&self, sender: &str, receiver: &str, content: &str) {
        let reply = self.send(sender, receiver, content).await;
        assert_eq!(reply.success, Some(true), "{reply:?}");
        assert_eq!(reply.message.as_deref(), Some("Message sent"));
    }

    /// `GetMessages`, which must answer status OK.
    pub async fn messages_of(&self, email: &str) -> Vec<Message> {
        self.message_client()
            .await
            .get_messages(GetMessagesRequest {
                user_email: Some(email.to_owned()),
                ..GetMessagesRequest::default()
            })
            .await
            .expect("GetMessages answers OK")
            .into_inner()
            .messages
    }

    /// `GET /list_conversations` on message-service.
    pub async fn list_conversations(&self, email: EmailIn<'_>) -> (u16, Value) {
        self.get_list(self.message_url("/list_conversations"), email)
            .await
    }

    async fn get_list(&self, url: String, email: EmailIn<'_>) -> (u16, Value) {
        let request = self.http().get(url);
        let request = match email {
            EmailIn::Query(email) => request.query(&[("email", email)]),
            EmailIn::Body(body) => request.json(&body),
            EmailIn::Nowhere => request,
        };
        reply(request.send().await.expect("GET")).await
    }

    /// Waits until the notification outbox of message-service (DB 1) is empty: every stored
    /// message has had its `CreateNotification` answered.
    pub async fn wait_for_notification_outbox_drained(&self) {
        self.wait_for_empty_stream(1, NOTIFICATION_OUTBOX).await;
    }
}

/// A list endpoint asked without an email — `{}` or `{"email": ""}` as the body, `?email=`,
/// and nothing at all — answers 400 with a message about the email each time. `list` is
/// [`Stack::list_conversations`] or [`Stack::list_notifications`].
pub async fn assert_email_is_required<F, Fut>(list: F)
where
    F: Fn(EmailIn<'static>) -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    for (status, body) in [
        list(EmailIn::Body(json!({}))).await,
        list(EmailIn::Body(json!({ "email": "" }))).await,
        list(EmailIn::Query("")).await,
        list(EmailIn::Nowhere).await,
    ] {
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["success"], false);
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("email")),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// notification-service and frontend-service
// ---------------------------------------------------------------------------------------------

impl Stack {
    /// `SubscribeUser`, which must answer status OK; its `success`.
    pub async fn subscribe(&self, email: Option<&str>) -> bool {
        self.notification_client()
            .await
            .subscribe_user(SubscribeUserRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("SubscribeUser answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `UnsubscribeUser`, which must answer status OK; its `success`.
    pub async fn unsubscribe(&self, email: Option<&str>) -> bool {
        self.notification_client()
            .await
            .unsubscribe_user(UnsubscribeUserRequest {
                email: email.map(str::to_owned),
            })
            .await
            .expect("UnsubscribeUser answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `CheckUserSubscribed`, which must answer status OK.
    pub async fn is_subscribed(&self, email: &str) -> bool {
        self.notification_client()
            .await
            .check_user_subscribed(CheckUserSubscribedRequest {
                email: Some(email.to_owned()),
            })
            .await
            .expect("CheckUserSubscribed answers OK")
            .into_inner()
            .subscribed
            .expect("subscribed is always set")
    }

    /// `CreateNotification`, which must answer status OK; its `success`.
    pub async fn create_notification(
        &self,
        sender: Option<&str>,
        receiver: Option<&str>,
        id: Option<&str>,
    ) -> bool {
        self.notification_client()
            .await
            .create_notification(CreateNotificationRequest {
                sender_email: sender.map(str::to_owned),
                receiver_email: receiver.map(str::to_owned),
                notification_id: id.map(str::to_owned),
            })
            .await
            .expect("CreateNotification answers OK")
            .into_inner()
            .success
            .expect("success is always set")
    }

    /// `GET /list_notifications` on notification-service.
    pub async fn list_notifications(&self, email: EmailIn<'_>) -> (u16, Value) {
        self.get_list(self.notification_url("/list_notifications"), email)
            .await
    }

    /// `WatchNotifications` on frontend-service: the stream of `email`'s notifications, what it
    /// holds now, then live ones.
    pub async fn watch(&self, email: &str) -> Streaming<Notification> {
        self.frontend_client()
            .await
            .watch_notifications(WatchNotificationsRequest {
                email: Some(email.to_owned()),
                after: None,
            })
            .await
            .expect("WatchNotifications answers OK")
            .into_inner()
    }

    /// The field of `email` in the subscriptions hash of DB 2 ([`SUBSCRIPTIONS`]), parsed, or
    /// `None`.
    pub async fn stored_subscription(&self, email: &str) -> Option<Value> {
        let raw: Option<String> = self
            .redis
            .db(2)
            .await
            .hget(SUBSCRIPTIONS, email)
            .await
            .expect("HGET the subscriptions");
        raw.map(|raw| serde_json::from_str(&raw).expect("stored subscription is JSON"))
    }

    /// Waits until `email` has a stored subscription; returns it.
    pub async fn wait_for_subscription(&self, email: &str) -> Value {
        eventually(&format!("a subscription of {email}"), || {
            self.stored_subscription(email)
        })
        .await
    }

    /// The notifications of `email` in DB 2 ([`notifications_key`]), each parsed, head (newest)
    /// first.
    pub async fn stored_notifications(&self, email: &str) -> Vec<Value> {
        let raw: Vec<String> = self
            .redis
            .db(2)
            .await
            .lrange(notifications_key(email), 0, -1)
            .await
            .expect("LRANGE the notifications");
        raw.iter()
            .map(|json| serde_json::from_str(json).expect("a stored notification is JSON"))
            .collect()
    }

    /// Waits until `email` has exactly `count` stored notifications; returns them.
    pub async fn wait_for_notifications(&self, email: &str, count: usize) -> Vec<Value> {
        eventually(&format!("{count} notifications for {email}"), || async {
            let stored = self.stored_notifications(email).await;
            assert!(
                stored.len() <= count,
                "more notifications than expected: {}",
                stored.len()
            );
            (stored.len() == count).then_some(stored)
        })
        .await
    }

    /// The ids of `email`'s notifications once exactly `count` are stored, checked to be
    /// distinct: every message got its notification, none got two.
    pub async fn distinct_notification_ids(&self, email: &str, count: usize) -> HashSet<String> {
        let ids = ids_of(&self.wait_for_notifications(email, count).await);
        let distinct: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            distinct.len(),
            ids.len(),
            "a notification id stored twice: {ids:?}"
        );
        distinct
    }

    /// Waits until the frontend outbox of notification-service (DB 2) is empty: every stored
    /// notification has been taken by frontend-service.
    pub async fn wait_for_frontend_outbox_drained(&self) {
        self.wait_for_empty_stream(2, FRONTEND_OUTBOX).await;
    }
}

/// The notification ids among `notifications`.
pub fn ids_of(notifications: &[Value]) -> Vec<String> {
    notifications
        .iter()
        .map(|n| {
            n["notification_id"]
                .as_str()
                .expect("notification_id is a string")
                .to_owned()
        })
        .collect()
}

/// Reads `stream` until it has yielded every id in `wanted` (or [`PATIENCE`] runs out, or the
/// stream ends); returns every id seen. An id streamed twice fails the test.
pub async fn receive_ids(
    stream: &mut Streaming<Notification>,
    wanted: &HashSet<String>,
) -> HashSet<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = HashSet::new();
    while !wanted.is_subset(&seen) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(notification))) => {
                let id = notification.notification_id.unwrap_or_default();
                assert!(seen.insert(id.clone()), "{id} was streamed twice");
            }
            Ok(Ok(None) | Err(_)) | Err(_) => break,
        }
    }
    seen
}

// ---------------------------------------------------------------------------------------------
// Outbox streams
// ---------------------------------------------------------------------------------------------

impl Stack {
    /// `entries-added` of stream `stream` in DB `db`: every entry ever queued, whether or not it
    /// has since been delivered and deleted.
    pub async fn entries_ever_added(&self, db: u8, stream: &str) -> i64 {
        let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(&mut self.redis.db(db).await)
            .await
            .expect("XINFO STREAM");
        match info.get("entries-added") {
            Some(redis::Value::Int(added)) => *added,
            other => panic!("entries-added: {other:?}"),
        }
    }

    async fn wait_for_empty_stream(&self, db: u8, stream: &str) {
        eventually(&format!("{stream} in DB {db} to drain"), || async {
            let length: usize = self.redis.db(db).await.xlen(stream).await.expect("XLEN");
            (length == 0).then_some(())
        })
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The inbox (notification-service) and resuming watches (frontend-service)
// ---------------------------------------------------------------------------------------------

impl Stack {
    /// `GET /list_notifications?email=…&<query>` (e.g. `limit=20&before=…&unread=true`).
    pub async fn list_notifications_page(
        &self,
        email: &str,
        query: &[(&str, String)],
    ) -> (u16, Value) {
        let request = self
            .http()
            .get(self.notification_url("/list_notifications"))
            .query(&[("email", email)])
            .query(query);
        reply(request.send().await.expect("GET /list_notifications")).await
    }

    /// `POST /notifications/read` with `body`.
    pub async fn mark_read(&self, body: &Value) -> (u16, Value) {
        let request = self
            .http()
            .post(self.notification_url("/notifications/read"));
        reply(
            request
                .json(body)
                .send()
                .await
                .expect("POST /notifications/read"),
        )
        .await
    }

    /// `GET /notifications/unread_count?email=`; the count, asserting a 200.
    pub async fn unread_count(&self, email: &str) -> u64 {
        let request = self
            .http()
            .get(self.notification_url("/notifications/unread_count"))
            .query(&[("email", email)]);
        let (status, body) = reply(request.send().await.expect("GET unread_count")).await;
        assert_eq!(status, 200, "{body}");
        body["unread_count"]
            .as_u64()
            .expect("unread_count is a number")
    }

    /// `DELETE /notifications` with `body`.
    pub async fn delete_notifications(&self, body: &Value) -> (u16, Value) {
        let request = self.http().delete(self.notification_url("/notifications"));
        reply(
            request
                .json(body)
                .send()
                .await
                .expect("DELETE /notifications"),
        )
        .await
    }

    /// `WatchNotifications` resuming after `after` on the frontend at `port`.
    pub async fn watch_after(
        &self,
        port: u16,
        email: &str,
        after: Option<u64>,
    ) -> Streaming<Notification> {
        FrontendServiceClient::new(Self::channel(port).await)
            .watch_notifications(WatchNotificationsRequest {
                email: Some(email.to_owned()),
                after,
            })
            .await
            .expect("WatchNotifications answers OK")
            .into_inner()
    }
}

/// The next `count` notifications of `stream`, in the order streamed (fails after
/// [`PATIENCE`]).
pub async fn next_notifications(
    stream: &mut Streaming<Notification>,
    count: usize,
) -> Vec<Notification> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let next = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} notifications streamed", received.len()))
            .expect("the stream is healthy")
            .expect("the stream is open");
        received.push(next);
    }
    received
}

// ---------------------------------------------------------------------------------------------
// Security: login, tokens, the internal credential
// ---------------------------------------------------------------------------------------------

/// An `AUTH_SECRET` for protected stacks (48 bytes).
pub const AUTH_SECRET: &str = "integration-tests-secret-0123456789-abcdefghijkl";

/// The environment that turns protection on, plus `extra`.
pub fn protected_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    std::iter::once(("AUTH_SECRET", AUTH_SECRET))
        .chain(extra.iter().copied())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The keys the services derive from `secret` (for tokens the services did not issue).
pub fn keys_of(secret: &str) -> service_runtime::auth::TokenKeys {
    let config = service_runtime::auth::AuthConfig::protected(
        secret.as_bytes(),
        service_runtime::auth::DEFAULT_TOKEN_TTL,
    )
    .expect("a long enough secret");
    service_runtime::auth::TokenKeys::new(&config)
}

/// `message` as a gRPC request carrying `authorization: Bearer <token>` when there is a token.
pub fn with_bearer<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("an ASCII token"),
        );
    }
    request
}

/// `message` as a gRPC request carrying the internal credential derived from `secret`.
pub fn with_internal_credential<T>(message: T, secret: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    keys_of(secret).internal_credential().attach(&mut request);
    request
}

/// `request` with `Authorization: Bearer <token>` when there is a token.
pub fn bearer_header(
    request: reqwest::RequestBuilder,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

impl Stack {
    /// A client of user-service's additive `TokenService` (`ValidateToken`).
    pub async fn token_client(
        &self,
    ) -> proto::user_service::token_service_client::TokenServiceClient<Channel> {
        proto::user_service::token_service_client::TokenServiceClient::new(
            Self::channel(self.user_ports.grpc).await,
        )
    }

    /// `POST /login`: the status, the JSON reply and the `Retry-After` header, if any.
    pub async fn login(&self, email: &str, password: &str) -> (u16, Value, Option<u64>) {
        let response = self
            .http()
            .post(self.user_url("/login"))
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("POST /login");
        let retry_after = response.headers().get("retry-after").map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|seconds| seconds.parse().ok())
                .expect("Retry-After is a number of seconds")
        });
        let (status, body) = reply(response).await;
        (status, body, retry_after)
    }

    /// A token of `email`, from a `POST /login` that must succeed.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let (status, body, _) = self.login(email, password).await;
        assert_eq!(status, 200, "POST /login: {body}");
        body["token"].as_str().expect("a token").to_owned()
    }

    /// `GetMessages` of `email` with `token`, which must answer status OK.
    pub async fn messages_of_as(&self, email: &str, token: &str) -> Vec<Message> {
        let request = GetMessagesRequest {
            user_email: Some(email.to_owned()),
            ..GetMessagesRequest::default()
        };
        self.message_client()
            .await
            .get_messages(with_bearer(request, Some(token)))
            .await
            .expect("GetMessages answers OK")
            .into_inner()
            .messages
    }

    /// A user created through `POST /users` with `password`, once subscribed (protected stacks
    /// need a password the policy accepts; see [`Stack::registered_user`]).
    pub async fn registered_user_with(&self, prefix: &str, password: &str) -> String {
        let email = unique_email(prefix);
        let (status, body) = self.create_user(&email, password, prefix).await;
        assert_eq!(status, 201, "POST /users: {body}");
        self.wait_for_subscription(&email).await;
        email
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One scrape of a `/metrics` page: its samples, parsed from the Prometheus text format.
#[derive(Debug)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

/// One line of a scrape: `name{label="value",...} value`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Metrics {
    /// Parses `text`; panics on a line that is not a sample, a comment or empty.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line
                    .rsplit_once(' ')
                    .unwrap_or_else(|| panic!("not a sample: {line}"));
                let value = value
                    .parse()
                    .unwrap_or_else(|err| panic!("bad value in {line}: {err}"));
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                    None => (series, Vec::new()),
                };
                Sample {
                    name: name.to_owned(),
                    labels,
                    value,
                }
            })
            .collect();
        Self { samples }
    }

    /// The sum of the samples called `name` that carry all of `labels` (0 when none does).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                labels.iter().all(|(k, v)| {
                    sample
                        .labels
                        .iter()
                        .any(|(key, value)| key == k && value == v)
                })
            })
            .map(|sample| sample.value)
            .sum()
    }

    /// Every label value of every sample.
    pub fn label_values(&self) -> impl Iterator<Item = &str> {
        self.samples
            .iter()
            .flat_map(|sample| sample.labels.iter().map(|(_, value)| value.as_str()))
    }
}

/// `a="x",b="y\"z"` (the part between the braces) into pairs, unescaping `\"`, `\\`, `\n`.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => {}
                },
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    labels
}

impl Stack {
    /// Scrapes `url` (a `/metrics` page): 200, the Prometheus text format, parsed.
    pub async fn metrics(&self, url: String) -> Metrics {
        let response = self.http().get(&url).send().await.expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain"),
            "{url}: {content_type}"
        );
        Metrics::parse(&response.text().await.expect("read /metrics"))
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn a_scrape_is_parsed_into_samples_with_their_labels() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\n\
                    x_total{route=\"/users/{email}\",method=\"PUT\"} 3\n\
                    x_total{route=\"/users\",method=\"POST\"} 2\n\
                    up 1\n";
        let metrics = Metrics::parse(text);
        assert_eq!(
            metrics.value("x_total", &[("route", "/users/{email}")]),
            3.0
        );
        assert_eq!(metrics.value("x_total", &[]), 5.0);
        assert_eq!(metrics.value("up", &[]), 1.0);
        assert_eq!(metrics.value("x_total", &[("method", "GET")]), 0.0);
    }
}
