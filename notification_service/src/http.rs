//! notification-service's REST API.

use axum::{Json, Router, extract::State};
use serde::Serialize;
use serde_json::Value;
use service_runtime::{
    http::{EmailOnly, EmailParam},
    openapi::ErrorReply,
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::Error,
    store::{Store, StoredNotification},
};

/// notification-service's routes and their OpenAPI document.
pub fn router(store: Store) -> (Router, OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .split_for_parts();
    (router.with_state(store), api)
}

/// Fields in alphabetical order, as `json!` wrote them before this reply was typed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"notifications": [{"notification_id": "message-1", "read": false, "receiver_email": "bob@example.com", "sender_email": "alice@example.com", "timestamp": "2026-11-22T08:50:18.731521Z"}], "success": true}))]
struct NotificationsReply {
    /// The user's notifications as stored, newest first; empty for an unknown user.
    #[schema(value_type = Vec<StoredNotification>)]
    notifications: Vec<Value>,
    /// Always `true`.
    success: bool,
}

/// `GET /list_notifications?email=` (or `{"email"}` in the body): newest first.
#[utoipa::path(
    get,
    path = "/list_notifications",
    tag = "notifications",
    params(("email" = Option<String>, Query, description = "The user's address; without it, the JSON body's `email` is used")),
    request_body(
        content = Option<EmailOnly>,
        content_type = "application/json",
        description = "Read only when the query string has no `email` (clients of the original system send a body with GET)",
    ),
    responses(
        (status = 200, description = "The user's notifications", body = NotificationsReply),
        (status = 400, description = "No email in the query string or the body, or a body that is not JSON", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(user_email = email))]
async fn list_notifications(
    State(store): State<Store>,
    EmailParam(email): EmailParam,
) -> Result<Json<NotificationsReply>, Error> {
    let notifications = store.notifications_of(&email).await?;
    Ok(Json(NotificationsReply {
        notifications,
        success: true,
    }))
}
