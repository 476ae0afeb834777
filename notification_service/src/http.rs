//! notification-service's REST API: the contract's `/list_notifications` (with optional
//! pages) and the inbox endpoints (read state, unread count, deletion). When protection is
//! on, each answers only about the caller's own notifications.

use axum::{Json, Router, extract::State};
use serde::{Deserialize, Serialize};
use service_runtime::{
    auth::{Auth, Caller},
    email::Email,
    http::{ApiJson, EmailOnly, EmailParam, NotificationPageParams},
    openapi::{
        ErrorReply,
        describe::{EMAIL_BODY, OTHERS, PROTECTED},
    },
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{changes::Inbox, error::Error, record::StoredNotification, selection, store::PageOf};

/// notification-service's routes and their OpenAPI document.
pub fn router(inbox: Inbox, auth: &Auth) -> (Router, OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(mark_read))
        .routes(routes!(unread_count))
        .routes(routes!(delete_notifications))
        .split_for_parts();
    (router.layer(auth.layer()).with_state(inbox), api)
}

/// Fields in alphabetical order, as `json!` wrote them before this reply was typed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"notifications": [{"cursor": 1795441246954_u64, "notification_id": "5ac89980-2a94-48ba-862a-3e0d759d85d1", "read": false, "receiver_email": "bob@example.com", "sender_email": "alice@example.com", "timestamp": "2026-11-22T08:50:18.731521Z"}], "success": true}))]
struct NotificationsReply {
    /// With `limit` only: the `before` of the next page, `null` on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<u64>>,
    /// The user's notifications as stored, newest first; empty for an unknown user.
    #[serde(serialize_with = "StoredNotification::serialize_listed")]
    notifications: Vec<StoredNotification>,
    /// Always `true`.
    success: bool,
    /// With `limit` only: how many of the user's notifications are unread.
    #[serde(skip_serializing_if = "Option::is_none")]
    unread_count: Option<u64>,
}

/// `GET /list_notifications?email=` (or `{"email"}` in the body): newest first; with
/// `unread=true` only the unread ones. With `limit`, one page (older than `before`) plus
/// `next_cursor` and `unread_count`. Unknown query parameters are a 400.
#[utoipa::path(
    get,
    path = "/list_notifications",
    tag = "notifications",
    params(NotificationPageParams),
    request_body(content = Option<EmailOnly>, content_type = "application/json", description = EMAIL_BODY),
    responses(
        (status = 200, description = "The user's notifications (one page with `limit`)", body = NotificationsReply),
        (status = 400, description = "No email in the query string or the body, a malformed one, a bad `limit`, `before` or `unread`, an unknown query parameter, or a body that is not a JSON object", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_notifications(
    State(inbox): State<Inbox>,
    caller: Caller,
    page: NotificationPageParams,
    EmailParam(email): EmailParam,
) -> Result<Json<NotificationsReply>, Error> {
    caller.authorize(&email)?;
    let unread_only = page.unread.unwrap_or(false);
    let Some(limit) = page.limit else {
        if page.before.is_some() {
            return Err(Error::Invalid("before pages a list: it needs limit".into()));
        }
        let mut notifications = inbox.store.notifications_of(&email).await?;
        if unread_only {
            notifications.retain(|notification| notification.read != Some(true));
        }
        return Ok(Json(NotificationsReply {
            next_cursor: None,
            notifications,
            success: true,
            unread_count: None,
        }));
    };
    let before = match page.before.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(_)) => return Err(Error::Invalid("before must be a cursor (a number)".into())),
    };
    let of = PageOf::Before {
        before,
        unread_only,
    };
    let page = inbox.store.page(&email, of, limit).await?;
    Ok(Json(NotificationsReply {
        next_cursor: Some(page.next_cursor),
        notifications: page.notifications,
        success: true,
        unread_count: Some(page.unread_count),
    }))
}

/// Which of a receiver's notifications to mark read: `notification_ids` omitted or empty
/// means all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com", "notification_ids": ["5ac89980-2a94-48ba-862a-3e0d759d85d1"]}))]
struct MarkSelection {
    email: String,
    /// At most 1000 ids of at most 128 bytes each; omitted or empty: all.
    #[serde(default)]
    notification_ids: Vec<String>,
}

/// Which of a receiver's notifications to delete: the ids named, or every one with
/// `"all": true` (an empty or missing list without it is a 400).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com", "notification_ids": ["5ac89980-2a94-48ba-862a-3e0d759d85d1"]}))]
struct DeleteSelection {
    email: String,
    /// At most 1000 ids of at most 128 bytes each; required unless `all` is `true`.
    #[serde(default)]
    notification_ids: Vec<String>,
    /// `true` to delete every notification of the user (then without `notification_ids`).
    #[serde(default)]
    all: bool,
}

fn parse_email(raw: String) -> Result<Email, Error> {
    Email::parse(raw).map_err(|err| Error::Invalid(err.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
struct MarkedReply {
    marked: u64,
    success: bool,
    unread_count: u64,
}

/// `POST /notifications/read`: `{"success", "marked", "unread_count"}`.
#[utoipa::path(
    post,
    path = "/notifications/read",
    tag = "notifications",
    request_body = MarkSelection,
    responses(
        (status = 200, description = "How many were marked read (ids that are not the user's count 0; no ids: all) and how many are still unread", body = MarkedReply),
        (status = 400, description = "No or a malformed email, more than 1000 ids or one longer than 128 bytes, or a body that is not the JSON object described", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn mark_read(
    State(inbox): State<Inbox>,
    caller: Caller,
    ApiJson(selection): ApiJson<MarkSelection>,
) -> Result<Json<MarkedReply>, Error> {
    let email = parse_email(selection.email)?;
    let which = selection::to_mark_read(selection.notification_ids)?;
    caller.authorize(&email)?;
    let (marked, unread_count) = inbox.mark_read(&email, &which).await?;
    Ok(Json(MarkedReply {
        marked,
        success: true,
        unread_count,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct UnreadReply {
    success: bool,
    unread_count: u64,
}

/// `GET /notifications/unread_count?email=` (or `{"email"}` in the body).
#[utoipa::path(
    get,
    path = "/notifications/unread_count",
    tag = "notifications",
    params(("email" = Option<String>, Query, description = "The user's address; without it, the JSON body's `email` is used")),
    request_body(content = Option<EmailOnly>, content_type = "application/json"),
    responses(
        (status = 200, description = "How many of the user's notifications are unread", body = UnreadReply),
        (status = 400, description = "No email, a malformed one, or a body that is not a JSON object", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn unread_count(
    State(inbox): State<Inbox>,
    caller: Caller,
    EmailParam(email): EmailParam,
) -> Result<Json<UnreadReply>, Error> {
    caller.authorize(&email)?;
    let unread_count = inbox.store.unread_count(&email, None).await?;
    Ok(Json(UnreadReply {
        success: true,
        unread_count,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct DeletedReply {
    deleted: u64,
    success: bool,
}

/// `DELETE /notifications`: `{"success", "deleted"}`.
#[utoipa::path(
    delete,
    path = "/notifications",
    tag = "notifications",
    request_body = DeleteSelection,
    responses(
        (status = 200, description = "How many were deleted (ids that are not the user's count 0; `\"all\": true`: every one)", body = DeletedReply),
        (status = 400, description = "No or a malformed email; no ids without `\"all\": true`, or ids with it; more than 1000 ids or one longer than 128 bytes; or a body that is not the JSON object described", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete_notifications(
    State(inbox): State<Inbox>,
    caller: Caller,
    ApiJson(selection): ApiJson<DeleteSelection>,
) -> Result<Json<DeletedReply>, Error> {
    let email = parse_email(selection.email)?;
    let which = selection::to_delete(selection.notification_ids, selection.all)?;
    caller.authorize(&email)?;
    let deleted = inbox.delete(&email, &which).await?;
    Ok(Json(DeletedReply {
        deleted,
        success: true,
    }))
}
