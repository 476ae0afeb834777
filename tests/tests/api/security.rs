//! Protection (`AUTH_SECRET`): `POST /login`, ownership on every user-scoped endpoint and RPC
//! (the full token matrix), the internal service credential, brute-force limits (both modes),
//! token invalidation, the password policy, start-up refusal of a short secret — and open
//! mode staying exactly as it was.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration_tests::{
    InProcessStack, ServiceProcess, Stack,
    helpers::{
        AUTH_SECRET, bearer_header, eventually, keys_of, message, protected_env, reply,
        unique_email, with_bearer,
    },
};
use proto::{
    frontend_service::{Notification, WatchNotificationsRequest},
    message_service::GetMessagesRequest,
    notification_service::{
        CheckUserSubscribedRequest, CreateNotificationRequest, SubscribeUserRequest,
        UnsubscribeUserRequest,
    },
    user_service::{AuthenticateRequest, CheckUserExistsRequest, ValidateTokenRequest},
};
use redis::AsyncCommands;
use serde_json::{Value, json};
use service_runtime::auth::Claims;
use tonic::Code;
use user_service::keys::{login_failures_key, token_generation_key};

/// A password the policy accepts.
const PASSWORD: &str = "Str0ng-pass!";
/// Another secret: what a forger signs with.
const OTHER_SECRET: &str = "a-forgers-secret-that-is-long-enough-0123456789";

/// What a call answered, as an HTTP status (gRPC: OK 200, `UNAUTHENTICATED` 401,
/// `PERMISSION_DENIED` 403, anything else 600 + its code) and the error message, if any.
type Outcome = (u16, String);

async fn http_outcome(request: reqwest::RequestBuilder) -> Outcome {
    let (status, body) = reply(request.send().await.expect("HTTP request")).await;
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn grpc_outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A protected stack with two users, "own" (the one each request is about) and "other", and
/// the own user's token.
struct Fixture {
    stack: InProcessStack,
    own: String,
    other: String,
    own_token: String,
}

impl Fixture {
    async fn start() -> Self {
        let stack = Stack::in_process_with_env(&protected_env(&[])).await;
        let own = stack.registered_user_with("own", PASSWORD).await;
        let other = stack.registered_user_with("other", PASSWORD).await;
        let own_token = stack.token(&own, PASSWORD).await;
        Self {
            stack,
            own,
            other,
            own_token,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix: every user-scoped endpoint and RPC × none / malformed / forged / expired /
// other user's / own token, on one stack
// ---------------------------------------------------------------------------------------------

/// Who presents the request, and what a refusal of them says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    Malformed,
    Forged,
    Expired,
    OtherUser,
    Own,
}

/// The columns of the matrix, in order.
const CALLERS: [Caller; 6] = [
    Caller::NoToken,
    Caller::Malformed,
    Caller::Forged,
    Caller::Expired,
    Caller::OtherUser,
    Caller::Own,
];

impl Caller {
    /// A fragment of the message a refusal of this caller carries.
    fn refusal(self) -> &'static str {
        match self {
            Self::NoToken => "authentication required",
            Self::Malformed => "invalid token",
            Self::Forged => "signature",
            Self::Expired => "expired",
            Self::OtherUser => "another user",
            Self::Own => "",
        }
    }
}

/// The user-scoped endpoints and RPCs; each row of the matrix calls one about its own subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    PutUsersEmail,
    PutUsersByPath,
    DeleteUsersEmail,
    DeleteUsersByPath,
    ListConversations,
    ListNotifications,
    GetMessages,
    SendMessage,
    WatchNotifications,
}

/// What each endpoint answers each caller of [`CALLERS`] (gRPC codes as in [`grpc_outcome`]).
const MATRIX: &[(Endpoint, [u16; 6])] = &[
    (Endpoint::PutUsersEmail, [401, 401, 401, 401, 403, 200]),
    (Endpoint::PutUsersByPath, [401, 401, 401, 401, 403, 200]),
    (Endpoint::DeleteUsersEmail, [401, 401, 401, 401, 403, 204]),
    (Endpoint::DeleteUsersByPath, [401, 401, 401, 401, 403, 204]),
    (Endpoint::ListConversations, [401, 401, 401, 401, 403, 200]),
    (Endpoint::ListNotifications, [401, 401, 401, 401, 403, 200]),
    (Endpoint::GetMessages, [401, 401, 401, 401, 403, 200]),
    (Endpoint::SendMessage, [401, 401, 401, 401, 403, 200]),
    (Endpoint::WatchNotifications, [401, 401, 401, 401, 403, 200]),
];

/// The user a row is about, and every kind of token a caller can present for them.
struct Subject {
    email: String,
    own: String,
    forged: String,
    expired: String,
}

impl Subject {
    async fn register(stack: &InProcessStack, prefix: &str) -> Self {
        let email = stack.registered_user_with(prefix, PASSWORD).await;
        let own = stack.token(&email, PASSWORD).await;
        let parsed = service_runtime::email::Email::parse(email.as_str()).expect("valid");
        let forged = keys_of(OTHER_SECRET)
            .issue(&parsed, "forged".into())
            .expect("signed")
            .token;
        let now = unix_now();
        let expired = keys_of(AUTH_SECRET)
            .sign(&Claims {
                sub: email.clone(),
                iat: now - 7200,
                exp: now - 3600,
                ver: "whatever".into(),
            })
            .expect("signed");
        Self {
            email,
            own,
            forged,
            expired,
        }
    }

    fn token<'a>(&'a self, caller: Caller, other_token: &'a str) -> Option<&'a str> {
        match caller {
            Caller::NoToken => None,
            Caller::Malformed => Some("not-a-token"),
            Caller::Forged => Some(&self.forged),
            Caller::Expired => Some(&self.expired),
            Caller::OtherUser => Some(other_token),
            Caller::Own => Some(&self.own),
        }
    }
}

/// An HTTP outcome; a 401 must also carry `WWW-Authenticate: Bearer`.
async fn http_outcome_with_challenge(request: reqwest::RequestBuilder) -> Outcome {
    let response = request.send().await.expect("HTTP request");
    let challenge = response.headers().get("www-authenticate").cloned();
    let (status, body) = reply(response).await;
    if status == 401 {
        assert_eq!(
            challenge.as_ref().map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "a 401 over HTTP carries WWW-Authenticate: Bearer: {body}"
        );
    }
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

impl Endpoint {
    /// Calls the endpoint about `subject` (sending to `other`) with `token`.
    async fn call(
        self,
        s: &InProcessStack,
        subject: &str,
        other: &str,
        token: Option<&str>,
    ) -> Outcome {
        let path = format!("/users/{}", subject.replace('@', "%40"));
        let http = |request: reqwest::RequestBuilder| {
            http_outcome_with_challenge(bearer_header(request, token))
        };
        match self {
            Self::PutUsersEmail => {
                let body = json!({ "email": subject, "data": { "name": "Renamed" } });
                http(s.http().put(s.user_url("/users/email")).json(&body)).await
            }
            Self::PutUsersByPath => {
                let body = json!({ "name": "Renamed" });
                http(s.http().put(s.user_url(&path)).json(&body)).await
            }
            Self::DeleteUsersEmail => {
                let body = json!({ "email": subject, "current_password": PASSWORD });
                http(s.http().delete(s.user_url("/users/email")).json(&body)).await
            }
            Self::DeleteUsersByPath => {
                let body = json!({ "current_password": PASSWORD });
                http(s.http().delete(s.user_url(&path)).json(&body)).await
            }
            Self::ListConversations => {
                let request = s.http().get(s.message_url("/list_conversations"));
                http(request.query(&[("email", subject)])).await
            }
            Self::ListNotifications => {
                // The original's clients send the email in a JSON body, even with GET.
                let request = s.http().get(s.notification_url("/list_notifications"));
                http(request.json(&json!({ "email": subject }))).await
            }
            Self::GetMessages => {
                let request = GetMessagesRequest {
                    user_email: Some(subject.to_owned()),
                    ..GetMessagesRequest::default()
                };
                let mut client = s.message_client().await;
                grpc_outcome(client.get_messages(with_bearer(request, token)).await)
            }
            Self::SendMessage => {
                let request = message(Some(subject), Some(other), Some("hello"));
                let mut client = s.message_client().await;
                let result = client.send_message(with_bearer(request, token)).await;
                if let Ok(reply) = &result {
                    assert_eq!(reply.get_ref().success, Some(true), "{reply:?}");
                }
                grpc_outcome(result)
            }
            Self::WatchNotifications => {
                let request = WatchNotificationsRequest {
                    email: Some(subject.to_owned()),
                    after: None,
                };
                let mut client = s.frontend_client().await;
                grpc_outcome(
                    client
                        .watch_notifications(with_bearer(request, token))
                        .await,
                )
            }
        }
    }

    /// What the endpoint can change about `subject`, read from the store: a refusal must
    /// leave it as it was, the own token's call must change it as asked.
    async fn state(self, s: &InProcessStack, subject: &Subject, other: &str) -> Value {
        let (token, subject) = (&subject.own, subject.email.as_str());
        match self {
            Self::PutUsersEmail | Self::PutUsersByPath => {
                s.stored_user(subject).await.expect("stored")["name"].clone()
            }
            Self::DeleteUsersEmail | Self::DeleteUsersByPath => {
                json!(s.stored_user(subject).await.is_some())
            }
            Self::SendMessage => json!([
                s.messages_of_as(subject, token).await.len(),
                s.stored_notifications(other).await.len()
            ]),
            Self::ListConversations
            | Self::ListNotifications
            | Self::GetMessages
            | Self::WatchNotifications => Value::Null,
        }
    }

    /// [`Endpoint::state`] once the own token's call went through.
    fn state_after_own_call(self) -> Value {
        match self {
            Self::PutUsersEmail | Self::PutUsersByPath => json!("Renamed"),
            Self::DeleteUsersEmail | Self::DeleteUsersByPath => json!(false),
            Self::SendMessage => json!([1, 1]),
            Self::ListConversations
            | Self::ListNotifications
            | Self::GetMessages
            | Self::WatchNotifications => Value::Null,
        }
    }
}

#[tokio::test]
async fn every_user_scoped_endpoint_and_rpc_answers_the_token_matrix() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let other = Subject::register(&stack, "other").await;

    for &(endpoint, expected) in MATRIX {
        // A subject of its own per row: a row may rename or delete it.
        let subject = Subject::register(&stack, &format!("{endpoint:?}").to_lowercase()).await;
        let before = endpoint.state(&stack, &subject, &other.email).await;
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            if caller == Caller::Own {
                // Every refusal, and only a refusal, came first: nothing changed yet.
                let now = endpoint.state(&stack, &subject, &other.email).await;
                assert_eq!(now, before, "{endpoint:?}: a refusal changed the store");
            }
            let token = subject.token(caller, &other.own);
            let (status, message) = endpoint
                .call(&stack, &subject.email, &other.email, token)
                .await;
            assert_eq!(status, expected, "{endpoint:?} as {caller:?}: {message}");
            assert!(
                message.contains(caller.refusal()),
                "{endpoint:?} as {caller:?}: the message should say {:?}: {message}",
                caller.refusal()
            );
        }
        let after = endpoint_state_eventually(&stack, endpoint, &subject, &other).await;
        assert_eq!(after, endpoint.state_after_own_call(), "{endpoint:?}");
    }
}

/// [`Endpoint::state`] after the own call, waiting for the one notification a send causes.
async fn endpoint_state_eventually(
    stack: &InProcessStack,
    endpoint: Endpoint,
    subject: &Subject,
    other: &Subject,
) -> Value {
    if endpoint == Endpoint::SendMessage {
        stack.wait_for_notifications(&other.email, 1).await;
    }
    endpoint.state(stack, subject, &other.email).await
}

// ---------------------------------------------------------------------------------------------
// The internal service credential
// ---------------------------------------------------------------------------------------------

/// How a request to a service-to-service RPC is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Bare,
    WithAUsersToken,
    WithTheCredentialOfAnotherSecret,
}

fn present<T>(message: T, how: Presented, token: &str) -> tonic::Request<T> {
    match how {
        Presented::Bare => tonic::Request::new(message),
        Presented::WithAUsersToken => with_bearer(message, Some(token)),
        // The credential each service calls with (crate::privilege tests who may call what).
        Presented::WithTheCredentialOfAnotherSecret => crate::privilege::with_credential_of(
            message,
            OTHER_SECRET,
            service_runtime::auth::ServiceName::Message,
        ),
    }
}

#[tokio::test]
async fn service_to_service_rpcs_refuse_outsiders_when_protected() {
    let fx = Fixture::start().await;
    let s = &fx.stack;
    let victim = fx.own.clone();
    let token = fx.own_token.as_str();

    for how in [
        Presented::Bare,
        Presented::WithAUsersToken,
        Presented::WithTheCredentialOfAnotherSecret,
    ] {
        let outcomes = [
            (
                "CheckUserExists",
                grpc_outcome(
                    s.user_client()
                        .await
                        .check_user_exists(present(
                            CheckUserExistsRequest {
                                email: Some(victim.clone()),
                            },
                            how,
                            token,
                        ))
                        .await,
                ),
            ),
            (
                "ListUsers",
                grpc_outcome(
                    s.user_client()
                        .await
                        .list_users(present((), how, token))
                        .await,
                ),
            ),
            (
                "ValidateToken",
                grpc_outcome(
                    s.token_client()
                        .await
                        .validate_token(present(
                            ValidateTokenRequest {
                                token: Some(token.to_owned()),
                            },
                            how,
                            token,
                        ))
                        .await,
                ),
            ),
            (
                "CreateNotification",
                grpc_outcome(
                    s.notification_client()
                        .await
                        .create_notification(present(
                            CreateNotificationRequest {
                                sender_email: Some(fx.other.clone()),
                                receiver_email: Some(victim.clone()),
                                notification_id: None,
                            },
                            how,
                            token,
                        ))
                        .await,
                ),
            ),
            (
                "ReceiveNotification",
                grpc_outcome(
                    s.frontend_client()
                        .await
                        .receive_notification(present(
                            Notification {
                                sender_email: Some(fx.other.clone()),
                                receiver_email: Some(victim.clone()),
                                timestamp: Some("2025-01-14T12:00:00Z".into()),
                                read: Some(false),
                                notification_id: Some(format!("planted-{how:?}")),
                                cursor: None,
                            },
                            how,
                            token,
                        ))
                        .await,
                ),
            ),
        ];
        for (rpc, (status, message)) in outcomes {
            assert_eq!(status, 401, "{rpc} {how:?}: {message}");
            assert!(message.contains("internal"), "{rpc} {how:?}: {message}");
        }
        // Nothing planted.
        assert!(s.stored_notifications(&victim).await.is_empty(), "{how:?}");
    }
}

/// The three subscription RPCs as `how` presents them, for `email`, one after another:
/// `CheckUserSubscribed`, `UnsubscribeUser`, `SubscribeUser`.
async fn subscription_outcomes(
    s: &InProcessStack,
    email: &str,
    how: Presented,
    token: &str,
) -> [Outcome; 3] {
    let mut client = s.notification_client().await;
    let email = Some(email.to_owned());
    [
        grpc_outcome(
            client
                .check_user_subscribed(present(
                    CheckUserSubscribedRequest {
                        email: email.clone(),
                    },
                    how,
                    token,
                ))
                .await,
        ),
        grpc_outcome(
            client
                .unsubscribe_user(present(
                    UnsubscribeUserRequest {
                        email: email.clone(),
                    },
                    how,
                    token,
                ))
                .await,
        ),
        grpc_outcome(
            client
                .subscribe_user(present(SubscribeUserRequest { email }, how, token))
                .await,
        ),
    ]
}

#[tokio::test]
async fn users_manage_only_their_own_subscription_when_protected() {
    let fx = Fixture::start().await;
    let s = &fx.stack;
    let token = fx.own_token.as_str();
    for how in [Presented::Bare, Presented::WithTheCredentialOfAnotherSecret] {
        for (status, message) in subscription_outcomes(s, &fx.own, how, token).await {
            assert_eq!(status, 401, "{how:?}: {message}");
        }
    }
    for (status, message) in
        subscription_outcomes(s, &fx.other, Presented::WithAUsersToken, token).await
    {
        assert_eq!(status, 403, "another user's subscription: {message}");
    }
    assert_eq!(
        s.stored_subscription(&fx.other).await.expect("subscribed")["subscribed"],
        true,
        "another user's subscription is untouched"
    );

    // The user's own token: checked, unsubscribed, subscribed again.
    let mut client = s.notification_client().await;
    let own = || Some(fx.own.clone());
    let unsubscribed = client
        .unsubscribe_user(with_bearer(
            UnsubscribeUserRequest { email: own() },
            Some(token),
        ))
        .await
        .expect("the own token may unsubscribe");
    assert_eq!(unsubscribed.into_inner().success, Some(true));
    assert_eq!(
        s.stored_subscription(&fx.own).await.expect("stored")["subscribed"],
        false
    );
    let checked = client
        .check_user_subscribed(with_bearer(
            CheckUserSubscribedRequest { email: own() },
            Some(token),
        ))
        .await
        .expect("the own token may check");
    assert_eq!(checked.into_inner().subscribed, Some(false));
    let subscribed = client
        .subscribe_user(with_bearer(
            SubscribeUserRequest { email: own() },
            Some(token),
        ))
        .await
        .expect("the own token may subscribe");
    assert_eq!(subscribed.into_inner().success, Some(true));
    assert_eq!(
        s.stored_subscription(&fx.own).await.expect("stored")["subscribed"],
        true
    );
}

#[tokio::test]
async fn with_protection_on_the_whole_system_still_works_end_to_end() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    // Sign-up stays open; the subscription reached notification-service with the credential.
    let ada = stack.registered_user_with("ada", PASSWORD).await;
    let grace = stack.registered_user_with("grace", PASSWORD).await;
    let ada_token = stack.token(&ada, PASSWORD).await;
    let grace_token = stack.token(&grace, PASSWORD).await;
    let mut watch = stack
        .frontend_client()
        .await
        .watch_notifications(with_bearer(
            WatchNotificationsRequest {
                email: Some(grace.clone()),
                after: None,
            },
            Some(&grace_token),
        ))
        .await
        .expect("Grace may watch her own notifications")
        .into_inner();

    // message-service checks both users over gRPC (credential) and notifies (credential).
    let reply = stack
        .message_client()
        .await
        .send_message(with_bearer(
            message(Some(&ada), Some(&grace), Some("Hello, Grace")),
            Some(&ada_token),
        ))
        .await
        .expect("SendMessage as Ada")
        .into_inner();
    assert_eq!(reply.success, Some(true), "{reply:?}");
    assert_eq!(reply.message.as_deref(), Some("Message sent"));

    // Stored for Grace in DB 2 and pushed to frontend-service (credential), then streamed.
    let stored = stack.wait_for_notifications(&grace, 1).await;
    assert_eq!(stored[0]["sender_email"], ada.as_str());
    let pushed = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a notification in time")
        .expect("the stream is healthy")
        .expect("one notification");
    assert_eq!(pushed.sender_email.as_deref(), Some(ada.as_str()));

    let (status, body) = reply_of(
        stack
            .http()
            .get(stack.notification_url("/list_notifications"))
            .query(&[("email", &grace)])
            .bearer_auth(&grace_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notifications"].as_array().map(Vec::len), Some(1));
    let (status, body) = reply_of(
        stack
            .http()
            .get(stack.message_url("/list_conversations"))
            .query(&[("email", &ada)])
            .bearer_auth(&ada_token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversations"], json!([grace]));
    assert_eq!(stack.messages_of_as(&grace, &grace_token).await.len(), 1);
}

async fn reply_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    reply(request.send().await.expect("HTTP request")).await
}

#[tokio::test]
async fn authenticate_user_stays_callable_by_clients_when_protected() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let email = stack.registered_user_with("auth-open", PASSWORD).await;

    assert_eq!(
        stack.authenticate(Some(&email), Some(PASSWORD)).await,
        (Some(email.clone()), true)
    );
    assert!(!stack.authenticate(Some(&email), Some("wrong")).await.1);
}

// ---------------------------------------------------------------------------------------------
// POST /login
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_answers_a_token_of_the_user_that_expires_after_the_configured_ttl() {
    let stack = Stack::in_process_with_env(&protected_env(&[("AUTH_TOKEN_TTL", "10m")])).await;
    let email = stack.registered_user_with("login", PASSWORD).await;

    let (status, body, _) = stack.login(&email, PASSWORD).await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    let token = body["token"].as_str().expect("a token");
    let claims = keys_of(AUTH_SECRET)
        .verify(token)
        .expect("signed with the secret");
    assert_eq!(claims.sub, email);
    assert_eq!(claims.exp - claims.iat, 600);
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    assert_eq!(u64::try_from(expires_at.timestamp()).ok(), Some(claims.exp));
    let from_now = claims.exp.abs_diff(unix_now() + 600);
    assert!(from_now < 60, "expires {from_now} s off");
}

#[tokio::test]
async fn login_refuses_an_unknown_email_and_a_wrong_password_with_the_same_401_and_the_same_work() {
    let stack = Stack::in_process().await;
    let email = unique_email("login-wrong");
    stack.create_user(&email, "right-pw", "N").await;

    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        replies.push(stack.login(&email, "wrong-pw").await);
        wrong_times.push(started.elapsed());
        let started = Instant::now();
        replies.push(stack.login(&unique_email("login-ghost"), "right-pw").await);
        unknown_times.push(started.elapsed());
    }

    for (status, body, _) in &replies {
        assert_eq!(*status, 401, "{body}");
        assert_eq!(
            body,
            &json!({ "success": false, "message": "Invalid credentials" })
        );
    }
    // Both verify an argon2id hash (a dummy one for the unknown user): without that, the
    // unknown user would answer many times faster. Compare the quickest of each, loosely.
    let (wrong, unknown) = (wrong_times.iter().min(), unknown_times.iter().min());
    let (wrong, unknown) = (wrong.expect("timed"), unknown.expect("timed"));
    assert!(
        *unknown * 3 > *wrong && *wrong * 3 > *unknown,
        "wrong password {wrong:?}, unknown user {unknown:?}"
    );
}

#[tokio::test]
async fn in_open_mode_login_works_and_no_token_or_credential_is_asked_for() {
    let stack = Stack::in_process().await;
    let email = unique_email("open");
    let other = unique_email("open-other");
    stack.create_user(&email, "pw", "N").await;
    stack.create_user(&other, "pw", "N").await;

    let (status, body, _) = stack.login(&email, "pw").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].is_string() && body["expires_at"].is_string());

    // Without a token, with garbage, with another user's: as before, everything is allowed.
    let (status, body) = stack
        .put_user_by_body(&json!({ "email": email, "data": { "name": "Still open" } }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = reply_of(
        stack
            .http()
            .get(stack.message_url("/list_conversations"))
            .query(&[("email", &other)])
            .bearer_auth("garbage"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(stack.user_exists(Some(&email)).await);
    assert_eq!(stack.list_users().await.len(), 2);
    assert!(
        stack
            .create_notification(Some(&other), Some(&email), None)
            .await
    );
    let first = stack.watch(&email).await.message().await;
    assert!(matches!(first, Ok(Some(_))), "{first:?}");
    let (status, _) = stack.delete_user_by_path(&other).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_service_with_a_short_auth_secret_refuses_to_start_and_says_why() {
    for binary in [
        "user-service",
        "message-service",
        "notification-service",
        "frontend-service",
    ] {
        let env = vec![
            ("AUTH_SECRET".to_owned(), "only-20-bytes-long!!".to_owned()),
            ("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned()),
        ];

        let output = ServiceProcess::run_to_exit(binary, env, Duration::from_secs(10));

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{binary} started: {stderr}");
        assert!(
            stderr.contains("AUTH_SECRET is 20 bytes long; it must be at least 32"),
            "{binary}: {stderr}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Brute force: per email (Redis, both modes) and per client address (governor)
// ---------------------------------------------------------------------------------------------

/// Five failures (four over `POST /login`, one over `AuthenticateUser`: one count) lock the
/// email: the right password then gets 429 + `Retry-After` / `RESOURCE_EXHAUSTED`.
async fn assert_five_failures_lock_the_email<S>(stack: &Stack<S>, email: &str, password: &str) {
    for _ in 0..4 {
        let (status, body, _) = stack.login(email, "wrong-password-1!").await;
        assert_eq!(status, 401, "{body}");
    }
    assert!(
        !stack
            .authenticate(Some(email), Some("wrong-password-1!"))
            .await
            .1
    );

    let (status, body, retry_after) = stack.login(email, password).await;

    assert_eq!(status, 429, "{body}");
    assert_eq!(body["success"], false);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many failed login attempts for this email")),
        "{body}"
    );
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let status = stack
        .user_client()
        .await
        .authenticate_user(AuthenticateRequest {
            email: Some(email.to_owned()),
            password: Some(password.to_owned()),
        })
        .await
        .expect_err("locked");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
    // The count lives in DB 0, shared by every replica, and expires with the window.
    let mut db0 = stack.redis.db(0).await;
    let count: String = db0.get(login_failures_key(email)).await.expect("GET");
    assert_eq!(count, "5");
    let ttl: i64 = db0.pttl(login_failures_key(email)).await.expect("PTTL");
    assert!(ttl > 0 && ttl <= 900_000, "{ttl}");
}

#[tokio::test]
async fn in_open_mode_five_failed_logins_lock_an_email_even_for_the_right_password() {
    let stack = Stack::in_process().await;
    let email = unique_email("locked-open");
    stack.create_user(&email, "pw", "N").await;

    assert_five_failures_lock_the_email(&stack, &email, "pw").await;

    // Another email is not affected.
    let other = unique_email("unlocked");
    stack.create_user(&other, "pw", "N").await;
    assert_eq!(stack.login(&other, "pw").await.0, 200);
}

#[tokio::test]
async fn with_protection_on_five_failed_logins_lock_an_email_too() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let email = stack.registered_user_with("locked", PASSWORD).await;

    assert_five_failures_lock_the_email(&stack, &email, PASSWORD).await;
}

#[tokio::test]
async fn a_successful_login_resets_the_failure_count_of_the_email() {
    let stack = Stack::in_process().await;
    let email = unique_email("reset");
    stack.create_user(&email, "pw", "N").await;

    for round in 0..2 {
        for _ in 0..4 {
            assert_eq!(stack.login(&email, "wrong").await.0, 401, "round {round}");
        }
        let (status, body, _) = stack.login(&email, "pw").await;
        assert_eq!(status, 200, "round {round}: {body}");
        let count: Option<String> = stack
            .redis
            .db(0)
            .await
            .get(login_failures_key(&email))
            .await
            .expect("GET");
        assert_eq!(count, None, "round {round}");
    }
}

#[tokio::test]
async fn a_locked_email_opens_again_once_the_failure_window_has_passed() {
    let stack = Stack::in_process_with_env(&[
        ("LOGIN_MAX_FAILURES".to_owned(), "2".to_owned()),
        ("LOGIN_FAILURE_WINDOW".to_owned(), "2s".to_owned()),
    ])
    .await;
    let email = unique_email("window");
    stack.create_user(&email, "pw", "N").await;
    for _ in 0..2 {
        assert_eq!(stack.login(&email, "wrong").await.0, 401);
    }
    let (status, _, retry_after) = stack.login(&email, "pw").await;
    assert_eq!(status, 429);
    assert!(
        retry_after.is_some_and(|seconds| seconds <= 2),
        "{retry_after:?}"
    );

    eventually("the lock to pass", || async {
        (stack.login(&email, "pw").await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn too_many_attempts_from_one_address_get_429_with_retry_after_over_http_and_grpc() {
    let stack =
        Stack::in_process_with_env(&[("LOGIN_ATTEMPTS_PER_ADDRESS".to_owned(), "3".to_owned())])
            .await;
    let email = unique_email("per-address");
    stack.create_user(&email, "pw", "N").await;
    // Three attempts for three different emails: the per-email limit is not what refuses.
    for n in 0..3 {
        let (status, body, _) = stack
            .login(&unique_email(&format!("guess-{n}")), "pw")
            .await;
        assert_eq!(status, 401, "{body}");
    }

    let (status, body, retry_after) = stack.login(&email, "pw").await;

    assert_eq!(status, 429, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many login attempts from this address")),
        "{body}"
    );
    // 3 a minute: the next attempt is allowed 20 s after the first.
    let retry_after = retry_after.expect("Retry-After");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let status = stack
        .user_client()
        .await
        .authenticate_user(AuthenticateRequest {
            email: Some(email.clone()),
            password: Some("pw".into()),
        })
        .await
        .expect_err("limited");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // The email itself was never counted as failing.
    let count: Option<String> = stack
        .redis
        .db(0)
        .await
        .get(login_failures_key(&email))
        .await
        .expect("GET");
    assert_eq!(count, None);
}

// ---------------------------------------------------------------------------------------------
// Tokens stop working when the account changes
// ---------------------------------------------------------------------------------------------

/// `PUT /users/{email}` renaming the user, with `token`: the status and message.
async fn rename<S>(stack: &Stack<S>, email: &str, token: &str) -> Outcome {
    let path = format!("/users/{}", email.replace('@', "%40"));
    http_outcome(
        stack
            .http()
            .put(stack.user_url(&path))
            .bearer_auth(token)
            .json(&json!({ "name": "Renamed" })),
    )
    .await
}

/// Waits until message-service (which caches a "still valid" for a moment) refuses `token`.
async fn wait_until_message_service_refuses<S>(stack: &Stack<S>, email: &str, token: &str) {
    eventually("message-service to refuse the token", || async {
        let (status, message) = http_outcome(
            stack
                .http()
                .get(stack.message_url("/list_conversations"))
                .query(&[("email", email)])
                .bearer_auth(token),
        )
        .await;
        (status == 401).then_some(message)
    })
    .await;
}

#[tokio::test]
async fn a_token_stops_working_everywhere_when_its_user_changes_password() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let email = stack.registered_user_with("pw-change", PASSWORD).await;
    let token = stack.token(&email, PASSWORD).await;
    assert_eq!(stack.messages_of_as(&email, &token).await.len(), 0);

    let (status, message) = http_outcome(
        stack
            .http()
            .put(stack.user_url("/users/email"))
            .bearer_auth(&token)
            .json(&json!({ "email": email, "current_password": PASSWORD, "data": { "password": "N3w-passw0rd!" } })),
    )
    .await;
    assert_eq!(status, 200, "{message}");

    let (status, message) = rename(&stack, &email, &token).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("revoked"), "{message}");
    wait_until_message_service_refuses(&stack, &email, &token).await;
    let new_token = stack.token(&email, "N3w-passw0rd!").await;
    assert_eq!(rename(&stack, &email, &new_token).await.0, 200);
}

#[tokio::test]
async fn a_token_stops_working_when_its_user_is_deleted_even_if_the_address_is_signed_up_again() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let email = stack.registered_user_with("deleted", PASSWORD).await;
    let token = stack.token(&email, PASSWORD).await;
    let (status, _) = http_outcome(
        stack
            .http()
            .delete(stack.user_url("/users/email"))
            .bearer_auth(&token)
            .json(&json!({ "email": email, "current_password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 204);

    // The same address and the same password again: a new account, not the old token's.
    let (status, body) = stack.create_user(&email, PASSWORD, "Again").await;
    assert_eq!(status, 201, "{body}");

    let (status, message) = rename(&stack, &email, &token).await;
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("revoked"), "{message}");
    wait_until_message_service_refuses(&stack, &email, &token).await;
    let new_token = stack.token(&email, PASSWORD).await;
    assert_eq!(rename(&stack, &email, &new_token).await.0, 200);
}

#[tokio::test]
async fn a_token_stops_working_when_its_user_changes_email_even_after_moving_back() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let first = stack.registered_user_with("mover", PASSWORD).await;
    let second = unique_email("moved");
    let first_token = stack.token(&first, PASSWORD).await;
    let move_to = |from: &str, to: &str, token: &str| {
        http_outcome(
            stack
                .http()
                .put(stack.user_url("/users/email"))
                .bearer_auth(token)
                .json(&json!({ "email": from, "current_password": PASSWORD, "data": { "email": to } })),
        )
    };

    assert_eq!(move_to(&first, &second, &first_token).await.0, 200);
    assert_eq!(rename(&stack, &first, &first_token).await.0, 401);
    let second_token = stack.token(&second, PASSWORD).await;
    assert_eq!(move_to(&second, &first, &second_token).await.0, 200);

    // Back at the first address with the same password hash, the old token is still dead.
    let (status, message) = rename(&stack, &first, &first_token).await;
    assert_eq!(status, 401, "{message}");
    assert_eq!(rename(&stack, &first, &second_token).await.0, 401);
    let generation: String = stack
        .redis
        .db(0)
        .await
        .get(token_generation_key(&first))
        .await
        .expect("GET");
    assert_eq!(generation, "1");
    let fresh = stack.token(&first, PASSWORD).await;
    assert_eq!(rename(&stack, &first, &fresh).await.0, 200);
}

#[tokio::test]
async fn a_watch_ends_when_its_token_expires() {
    let stack = Stack::in_process_with_env(&protected_env(&[("AUTH_TOKEN_TTL", "2s")])).await;
    let email = stack.registered_user_with("watch-expiry", PASSWORD).await;
    let token = stack.token(&email, PASSWORD).await;
    let mut watch = stack
        .frontend_client()
        .await
        .watch_notifications(with_bearer(
            WatchNotificationsRequest {
                email: Some(email.clone()),
                after: None,
            },
            Some(&token),
        ))
        .await
        .expect("watching")
        .into_inner();

    let ended = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("the watch ends by itself");

    assert!(matches!(ended, Ok(None)), "{ended:?}");
}

// ---------------------------------------------------------------------------------------------
// Password policy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn with_protection_on_a_weak_password_is_refused_naming_the_rule_it_breaks() {
    let stack = Stack::in_process_with_env(&protected_env(&[])).await;
    let email = unique_email("policy");

    for (weak, rule) in [
        ("Sh0rt!", "at least 10 characters"),
        ("1234567890-!", "a letter"),
        ("no-digits-here!", "a digit"),
        ("n0symbolsatall", "a symbol"),
    ] {
        let (status, body) = stack.create_user(&email, weak, "N").await;
        assert_eq!(status, 400, "{weak}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("password must") && m.contains(rule)),
            "{weak}: {body}"
        );
    }
    assert!(stack.stored_user(&email).await.is_none());

    let (status, body) = stack.create_user(&email, PASSWORD, "N").await;
    assert_eq!(status, 201, "{body}");
    let token = stack.token(&email, PASSWORD).await;
    let (status, message) = http_outcome(
        stack
            .http()
            .put(stack.user_url("/users/email"))
            .bearer_auth(&token)
            .json(&json!({ "email": email, "current_password": PASSWORD, "data": { "password": "weak" } })),
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("data.password must"), "{message}");
}

#[tokio::test]
async fn the_password_policy_can_be_turned_off_and_is_off_in_open_mode() {
    let relaxed = Stack::in_process_with_env(&protected_env(&[("PASSWORD_POLICY", "off")])).await;
    let open = Stack::in_process().await;

    for stack in [&relaxed, &open] {
        let (status, body) = stack.create_user(&unique_email("weak"), "pw", "N").await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test]
async fn list_endpoints_still_need_an_email_after_the_token_is_checked() {
    let fx = Fixture::start().await;
    let s = &fx.stack;

    let (status, body) = reply_of(
        s.http()
            .get(s.notification_url("/list_notifications"))
            .bearer_auth(&fx.own_token),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}
