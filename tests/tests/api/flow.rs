//! Helpers for the message → notification → frontend flow, shared by `messaging`,
//! `notifications` and `faults`: users that can message, sends, what landed in Redis, and the
//! frontend's live stream. Every wait is bounded by [`PATIENCE`]; nothing sleeps as an assertion.

use std::{
    collections::HashSet,
    future::Future,
    time::{Duration, Instant},
};

use integration_tests::{Stack, reply, unique_email};
use proto::{
    frontend_service::{Notification, WatchNotificationsRequest},
    message_service::{
        GetMessagesRequest, Message, SendMessageRequest, SendMessageResponse,
        message_service_client::MessageServiceClient,
    },
    notification_service::CheckUserSubscribedRequest,
};
use redis::AsyncCommands;
use serde_json::Value;
use tonic::{Streaming, transport::Channel};

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

/// A user created through `POST /users` on user-service, once notification-service has them
/// subscribed (user-service subscribes new users through its own outbox, so shortly after).
pub async fn registered_user(stack: &Stack, prefix: &str) -> String {
    let email = unique_email(prefix);
    let (status, body) = stack.create_user(&email, "pw-123456", prefix).await;
    assert_eq!(status, 201, "POST /users: {body}");
    eventually(&format!("{email} to be subscribed"), || async {
        is_subscribed(stack, &email).await.then_some(())
    })
    .await;
    email
}

/// `CheckUserSubscribed` over gRPC.
pub async fn is_subscribed(stack: &Stack, email: &str) -> bool {
    stack
        .notification_client()
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

/// Sends `content` from `sender` to `receiver`; the reply, which must be status OK.
pub async fn send(
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

/// Sends and asserts the contract's success reply.
pub async fn send_ok(stack: &Stack, sender: &str, receiver: &str, content: &str) {
    let reply = send(&mut stack.message_client().await, sender, receiver, content).await;
    assert_eq!(reply.success, Some(true), "{reply:?}");
    assert_eq!(reply.message.as_deref(), Some("Message sent"));
}

/// `GetMessages` over gRPC.
pub async fn messages_of(stack: &Stack, email: &str) -> Vec<Message> {
    stack
        .message_client()
        .await
        .get_messages(GetMessagesRequest {
            user_email: Some(email.to_owned()),
        })
        .await
        .expect("GetMessages answers OK")
        .into_inner()
        .messages
}

/// `notifications:{email}` in DB 2, each parsed, head (newest) first.
pub async fn stored_notifications(stack: &Stack, email: &str) -> Vec<Value> {
    let raw: Vec<String> = stack
        .redis
        .db(2)
        .await
        .lrange(format!("notifications:{email}"), 0, -1)
        .await
        .expect("LRANGE notifications:{email}");
    raw.iter()
        .map(|json| serde_json::from_str(json).expect("a stored notification is JSON"))
        .collect()
}

/// Waits until `email` has exactly `count` stored notifications; returns them.
pub async fn wait_for_notifications(stack: &Stack, email: &str, count: usize) -> Vec<Value> {
    eventually(&format!("{count} notifications for {email}"), || async {
        let stored = stored_notifications(stack, email).await;
        assert!(
            stored.len() <= count,
            "more notifications than expected: {}",
            stored.len()
        );
        (stored.len() == count).then_some(stored)
    })
    .await
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

/// Waits until the notification outbox of message-service (DB 1) is empty: every stored
/// message has had its `CreateNotification` answered.
pub async fn wait_for_notification_outbox_drained(stack: &Stack) {
    wait_for_empty_stream(stack, 1, "outbox:notifications").await;
}

/// Waits until the frontend outbox of notification-service (DB 2) is empty: every stored
/// notification has been taken by frontend-service.
pub async fn wait_for_frontend_outbox_drained(stack: &Stack) {
    wait_for_empty_stream(stack, 2, "outbox:frontend").await;
}

async fn wait_for_empty_stream(stack: &Stack, db: u8, stream: &str) {
    eventually(&format!("{stream} in DB {db} to drain"), || async {
        let length: usize = stack.redis.db(db).await.xlen(stream).await.expect("XLEN");
        (length == 0).then_some(())
    })
    .await;
}

/// `GET <url>` with `?email=`, the status and JSON reply.
pub async fn get_with_query(stack: &Stack, url: &str, email: &str) -> (u16, Value) {
    let response = stack
        .http()
        .get(url)
        .query(&[("email", email)])
        .send()
        .await
        .expect("GET");
    reply(response).await
}

/// `GET <url>` with a JSON body, as the original's clients do.
pub async fn get_with_body(stack: &Stack, url: &str, body: &Value) -> (u16, Value) {
    let response = stack.http().get(url).json(body).send().await.expect("GET");
    reply(response).await
}

/// The frontend's stream of `email`'s notifications: what it holds now, then live ones.
pub async fn watch(stack: &Stack, email: &str) -> Streaming<Notification> {
    stack
        .frontend_client()
        .await
        .watch_notifications(WatchNotificationsRequest {
            email: Some(email.to_owned()),
        })
        .await
        .expect("WatchNotifications answers OK")
        .into_inner()
}

/// Reads `stream` until it has yielded every id in `wanted` (or [`PATIENCE`] runs out, or the
/// stream ends); returns every id seen, each counted once.
pub async fn receive_ids(
    stream: &mut Streaming<Notification>,
    wanted: &HashSet<String>,
) -> HashSet<String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut seen = HashSet::new();
    while !wanted.is_subset(&seen) {
        match tokio::time::timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(notification))) => {
                seen.insert(notification.notification_id.unwrap_or_default());
            }
            Ok(Ok(None) | Err(_)) | Err(_) => break,
        }
    }
    seen
}

/// The ids message-service gives the notifications of messages `first..=last`.
pub fn message_notification_ids(first: u64, last: u64) -> HashSet<String> {
    (first..=last).map(|id| format!("message-{id}")).collect()
}

/// A list endpoint asked without an email — `{}` or `{"email": ""}` as the body, `?email=`,
/// and nothing at all — answers 400 with a message about the email each time.
pub async fn assert_email_is_required(stack: &Stack, url: &str) {
    for (status, body) in [
        get_with_body(stack, url, &serde_json::json!({})).await,
        get_with_body(stack, url, &serde_json::json!({ "email": "" })).await,
        get_with_query(stack, url, "").await,
        reply(stack.http().get(url).send().await.expect("GET")).await,
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
