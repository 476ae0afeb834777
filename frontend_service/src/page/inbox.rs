//! The inbox API the page calls: notifications (a page, mark read, delete) and sending a
//! message. Each is one gRPC call to notification- or message-service carrying
//! the browser's token ([`BrowserToken`]); addresses are checked here first, so malformed
//! input is a 400 that reaches no service.

use axum::{Json, extract::State};
use proto::{
    message_service::{Message, SendMessageRequest},
    notification_service::{
        DeleteNotificationsRequest, ListNotificationsRequest, MarkNotificationsReadRequest,
        Notification,
    },
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    email::Email,
    http::{ApiJson, NotificationPageParams},
    openapi::{
        ErrorReply,
        describe::{OTHERS, PROTECTED},
    },
};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    Page,
    upstream::{BrowserToken, PageError},
};

const NOTIFICATION_SERVICE: &str = "notification-service";
const MESSAGE_SERVICE: &str = "message-service";

/// A required address of the request, parsed.
pub(super) fn address(field: &str, raw: Option<String>) -> Result<Email, PageError> {
    let raw = raw
        .filter(|raw| !raw.trim().is_empty())
        .ok_or_else(|| PageError::Invalid(format!("{field} is required")))?;
    Email::parse(raw).map_err(|err| PageError::Invalid(format!("{field}: {err}")))
}

/// One notification as `ListNotifications` returns it (the fields of the live feed's
/// `event: notification`).
#[derive(Debug, Serialize, ToSchema)]
struct NotificationJson {
    cursor: Option<u64>,
    notification_id: Option<String>,
    read: bool,
    receiver_email: Option<String>,
    sender_email: Option<String>,
    timestamp: Option<String>,
}

impl From<Notification> for NotificationJson {
    fn from(n: Notification) -> Self {
        Self {
            cursor: n.cursor,
            notification_id: n.notification_id,
            read: n.read.unwrap_or(false),
            receiver_email: n.receiver_email,
            sender_email: n.sender_email,
            timestamp: n.timestamp,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"next_cursor": 41, "notifications": [{"cursor": 42, "notification_id": "5ac89980-2a94-48ba-862a-3e0d759d85d1", "read": false, "receiver_email": "bob@example.com", "sender_email": "alice@example.com", "timestamp": "2026-11-22T08:50:18.731521Z"}], "success": true, "unread_count": 1}))]
struct NotificationsReply {
    /// Pass as `before` for the next (older) page; `null` on the last page.
    next_cursor: Option<u64>,
    /// Newest first.
    notifications: Vec<NotificationJson>,
    success: bool,
    unread_count: u64,
}

/// `GET /api/notifications?email=&limit=&before=&unread=`: one page, newest first.
#[utoipa::path(
    get,
    path = "/api/notifications",
    tag = "web inbox",
    params(NotificationPageParams),
    responses(
        (status = 200, description = "A page of the user's notifications (at most `limit`, default 20), its `next_cursor` and the unread count", body = NotificationsReply),
        (status = 400, description = "No or a malformed email, a bad `limit` (1 to 1000), `before` or `unread`, or an unknown parameter", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn list(
    State(page): State<Page>,
    token: BrowserToken,
    params: NotificationPageParams,
) -> Result<Json<NotificationsReply>, PageError> {
    let email = address("email", params.email)?;
    let before = params
        .before
        .map(|raw| raw.parse::<u64>())
        .transpose()
        .map_err(|_| PageError::Invalid("before must be a cursor (a number)".into()))?;
    let request = ListNotificationsRequest {
        email: Some(email.into_string()),
        limit: Some(params.limit.map_or(20, |limit| limit as u32)),
        before,
        after: None,
        unread_only: params.unread,
    };
    let listed = page
        .notifications
        .clone()
        .list_notifications(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    Ok(Json(NotificationsReply {
        next_cursor: listed.next_cursor,
        notifications: listed.notifications.into_iter().map(Into::into).collect(),
        success: true,
        unread_count: listed.unread_count.unwrap_or(0),
    }))
}

/// Which notifications to mark read: the ids named, or all of them without ids.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com", "notification_ids": ["5ac89980-2a94-48ba-862a-3e0d759d85d1"]}))]
struct MarkBody {
    email: Option<String>,
    /// At most 1000 ids of at most 128 bytes each; omitted or empty: all.
    #[serde(default)]
    notification_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct MarkedReply {
    marked: u64,
    success: bool,
    unread_count: u64,
}

/// `POST /api/notifications/read` (`MarkNotificationsRead`).
#[utoipa::path(
    post,
    path = "/api/notifications/read",
    tag = "web inbox",
    request_body = MarkBody,
    responses(
        (status = 200, description = "How many were marked read and how many are still unread", body = MarkedReply),
        (status = 400, description = "No or a malformed email, too many or too long ids, or a body that is not the object described", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn mark_read(
    State(page): State<Page>,
    token: BrowserToken,
    ApiJson(body): ApiJson<MarkBody>,
) -> Result<Json<MarkedReply>, PageError> {
    let email = address("email", body.email)?;
    let request = MarkNotificationsReadRequest {
        email: Some(email.into_string()),
        notification_ids: body.notification_ids,
    };
    let marked = page
        .notifications
        .clone()
        .mark_notifications_read(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    Ok(Json(MarkedReply {
        marked: marked.marked.unwrap_or(0),
        success: true,
        unread_count: marked.unread_count.unwrap_or(0),
    }))
}

/// Which notifications to delete: the ids named, or every one with `"all": true`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com", "notification_ids": ["5ac89980-2a94-48ba-862a-3e0d759d85d1"]}))]
struct DeleteBody {
    email: Option<String>,
    /// At most 1000 ids of at most 128 bytes each; required unless `all` is `true`.
    #[serde(default)]
    notification_ids: Vec<String>,
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct DeletedReply {
    deleted: u64,
    success: bool,
}

/// `DELETE /api/notifications` (`DeleteNotifications`).
#[utoipa::path(
    delete,
    path = "/api/notifications",
    tag = "web inbox",
    request_body = DeleteBody,
    responses(
        (status = 200, description = "How many were deleted", body = DeletedReply),
        (status = 400, description = "No or a malformed email; no ids without `\"all\": true`, or ids with it; too many or too long ids", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete(
    State(page): State<Page>,
    token: BrowserToken,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<Json<DeletedReply>, PageError> {
    let email = address("email", body.email)?;
    let request = DeleteNotificationsRequest {
        email: Some(email.into_string()),
        notification_ids: body.notification_ids,
        all: Some(body.all),
    };
    let deleted = page
        .notifications
        .clone()
        .delete_notifications(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    Ok(Json(DeletedReply {
        deleted: deleted.deleted.unwrap_or(0),
        success: true,
    }))
}

/// `POST /api/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"content": "Hello Bob", "idempotency_key": "3f1c9a2e7b6d4e0f8a5b1c2d3e4f5a6b", "receiver_email": "bob@example.com", "sender_email": "alice@example.com"}))]
struct SendBody {
    content: Option<String>,
    /// Optional: names this send (1 to 128 printable ASCII characters, no spaces). Repeating
    /// the request with the same key (after a 503 or a lost reply) within 24 h stores nothing
    /// new and answers as the first did; the page makes one per message it sends.
    idempotency_key: Option<String>,
    receiver_email: Option<String>,
    /// The signed-in user (protection on: the token's user, else 403).
    sender_email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SentReply {
    /// `Message sent`.
    message: String,
    success: bool,
}

/// `POST /api/messages` (`SendMessage`): the receiver's notification is stored before this
/// answers (a repeat by `idempotency_key` stores nothing; the first's notification stands).
#[utoipa::path(
    post,
    path = "/api/messages",
    tag = "web inbox",
    request_body = SendBody,
    responses(
        (status = 200, description = "`Message sent`", body = SentReply),
        (status = 400, description = "A missing or malformed address, empty or oversized content, a malformed `idempotency_key`, or `Sender does not exist` / `Receiver does not exist` (nothing is stored)", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = "Protection is on and the sender is not the token's user", body = ErrorReply),
        (status = 503, description = "message-service is unavailable, or the message is not yet replicated: repeat with the same `idempotency_key`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn send(
    State(page): State<Page>,
    token: BrowserToken,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Json<SentReply>, PageError> {
    let sender = address("sender_email", body.sender_email)?;
    let receiver = address("receiver_email", body.receiver_email)?;
    let content = body
        .content
        .filter(|content| !content.trim().is_empty())
        .ok_or_else(|| PageError::Invalid("content is required".into()))?;
    let request = SendMessageRequest {
        message: Some(Message {
            sender_email: Some(sender.into_string()),
            receiver_email: Some(receiver.into_string()),
            content: Some(content),
            ..Message::default()
        }),
        idempotency_key: body.idempotency_key,
    };
    let sent = page
        .messages
        .clone()
        .send_message(token.request(request))
        .await
        .map_err(PageError::of(MESSAGE_SERVICE))?
        .into_inner();
    let message = sent.message.unwrap_or_default();
    if sent.success != Some(true) {
        return Err(PageError::Invalid(message));
    }
    Ok(Json(SentReply {
        message,
        success: true,
    }))
}

/// The inbox routes, for [`super::router`].
pub fn routes() -> OpenApiRouter<Page> {
    OpenApiRouter::new()
        .routes(routes!(list, delete))
        .routes(routes!(mark_read))
        .routes(routes!(send))
}
