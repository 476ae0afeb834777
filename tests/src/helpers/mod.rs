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
//! |                      | `GET /live` (SSE)        | [`Stack::live`], [`Stack::live_at`], [`Stack::get_live_at`], read with [`SseStream`] |
//! | user-service (login) | `POST /login`            | [`Stack::login`], [`Stack::token`]            |
//! | every HTTP server    | `GET /metrics`           | [`Stack::metrics`], read with [`Metrics::value`] |
//! | every gRPC server    | any RPC over gRPC-Web    | [`Stack::grpc_web`], [`Stack::grpc_web_raw`]  |
//! | frontend-service     | `WatchNotifications` (gRPC-Web) | [`Stack::grpc_web_watch`]              |
//! | frontend-service (web inbox) | `/api/...` | [`Stack::page_call`], [`Stack::page_sign_up`], [`Stack::page_sign_in`] |
//! | message-service (with a token) | `SendMessage` | [`Stack::send_as`] |
//!
//! Requests with a token (`Authorization: Bearer`) or the internal credential are built with
//! [`with_bearer`], [`bearer_header`] and [`with_internal_credential`].
//! A test that checks how a call fails at the transport level (an error status, a connection
//! made before a restart) uses the generated client from [`Stack::user_client`] and friends.
//!
//! One module per area: `wait` ([`eventually`]), `users`, `messages`, `notifications`,
//! `outbox`, `inbox`, `auth`, `metrics`, `grpcweb`, `sse` and `page`; their public names are
//! re-exported here.
//!
//! [`Stack`]: crate::Stack
//! [`Stack::user_client`]: crate::Stack::user_client

mod auth;
mod grpcweb;
mod inbox;
mod messages;
mod metrics;
mod notifications;
mod outbox;
mod page;
mod sse;
mod users;
mod wait;

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub use auth::{
    AUTH_SECRET, bearer_header, keys_of, protected_env, with_bearer, with_internal_credential,
};
pub use grpcweb::{Finished, WebEncoding, WebFrame, WebReply, frame};
pub use inbox::next_notifications;
pub use messages::{EmailIn, assert_email_is_required, keyed_message, message, send_over};
pub use metrics::{Metrics, Sample};
pub use notifications::{ids_of, receive_ids};
pub use outbox::entries_ever_added_in;
pub use sse::{SseEvent, SseStream, ascending_cursors, distinct_ids};
pub use wait::{PATIENCE, eventually};

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
