//! The subscription API the page calls: `GET`, `PUT` and `DELETE /api/subscription`
//! (`CheckUserSubscribed`, `SubscribeUser`, `UnsubscribeUser`), each with the browser's
//! token. In open mode anyone may change anyone's, as over gRPC; with protection on,
//! notification-service lets a user's token manage only that user's own subscription, and
//! answers 403 for another address.

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use proto::notification_service::{
    CheckUserSubscribedRequest, SubscribeUserRequest, UnsubscribeUserRequest,
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    http::{ApiJson, EmailQuery},
    openapi::{
        ErrorReply,
        describe::{OTHERS, PROTECTED},
    },
};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    Page,
    inbox::address,
    upstream::{BrowserToken, PageError},
};

const NOTIFICATION_SERVICE: &str = "notification-service";

/// `PUT` / `DELETE /api/subscription`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "bob@example.com"}))]
struct SubscriptionBody {
    email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SubscriptionReply {
    subscribed: bool,
    success: bool,
}

/// `GET /api/subscription?email=` (`CheckUserSubscribed`).
#[utoipa::path(
    get,
    path = "/api/subscription",
    tag = "web inbox",
    params(EmailQuery),
    responses(
        (status = 200, description = "Whether the user gets notifications", body = SubscriptionReply),
        (status = 400, description = "No or a malformed email", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn subscription(
    State(page): State<Page>,
    token: BrowserToken,
    query: Result<Query<EmailQuery>, QueryRejection>,
) -> Result<Json<SubscriptionReply>, PageError> {
    let Query(query) = query.map_err(|rejection| PageError::Invalid(rejection.body_text()))?;
    let email = address("email", query.email)?;
    let request = CheckUserSubscribedRequest {
        email: Some(email.into_string()),
    };
    let checked = page
        .notifications
        .clone()
        .check_user_subscribed(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    Ok(Json(SubscriptionReply {
        subscribed: checked.subscribed == Some(true),
        success: true,
    }))
}

/// `PUT /api/subscription` (`SubscribeUser`).
#[utoipa::path(
    put,
    path = "/api/subscription",
    tag = "web inbox",
    request_body = SubscriptionBody,
    responses(
        (status = 200, description = "Subscribed", body = SubscriptionReply),
        (status = 400, description = "No or a malformed email", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn subscribe(
    State(page): State<Page>,
    token: BrowserToken,
    ApiJson(body): ApiJson<SubscriptionBody>,
) -> Result<Json<SubscriptionReply>, PageError> {
    let email = address("email", body.email)?;
    let request = SubscribeUserRequest {
        email: Some(email.into_string()),
    };
    let done = page
        .notifications
        .clone()
        .subscribe_user(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    subscribed(done.success, true)
}

/// `DELETE /api/subscription` (`UnsubscribeUser`).
#[utoipa::path(
    delete,
    path = "/api/subscription",
    tag = "web inbox",
    request_body = SubscriptionBody,
    responses(
        (status = 200, description = "Unsubscribed: no notifications are stored for the user until they subscribe again", body = SubscriptionReply),
        (status = 400, description = "No or a malformed email", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
        (status = 503, description = "notification-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn unsubscribe(
    State(page): State<Page>,
    token: BrowserToken,
    ApiJson(body): ApiJson<SubscriptionBody>,
) -> Result<Json<SubscriptionReply>, PageError> {
    let email = address("email", body.email)?;
    let request = UnsubscribeUserRequest {
        email: Some(email.into_string()),
    };
    let done = page
        .notifications
        .clone()
        .unsubscribe_user(token.request(request))
        .await
        .map_err(PageError::of(NOTIFICATION_SERVICE))?
        .into_inner();
    subscribed(done.success, false)
}

fn subscribed(success: Option<bool>, now: bool) -> Result<Json<SubscriptionReply>, PageError> {
    if success != Some(true) {
        return Err(PageError::Invalid(
            "notification-service refused the change".into(),
        ));
    }
    Ok(Json(SubscriptionReply {
        subscribed: now,
        success: true,
    }))
}

/// The subscription routes, for [`super::router`].
pub fn routes() -> OpenApiRouter<Page> {
    OpenApiRouter::new().routes(routes!(subscription, subscribe, unsubscribe))
}
