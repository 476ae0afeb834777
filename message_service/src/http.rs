//! message-service's REST API.

use axum::{Json, Router, extract::State};
use serde::Serialize;
use service_runtime::{
    http::{EmailOnly, EmailParam},
    openapi::ErrorReply,
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::Error, store::Store};

/// message-service's routes and their OpenAPI document.
pub fn router(store: Store) -> (Router, OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .split_for_parts();
    (router.with_state(store), api)
}

/// Fields in alphabetical order, as `json!` wrote them before this reply was typed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"conversations": ["bob@example.com"], "success": true}))]
struct ConversationsReply {
    /// The emails of the user's counterparts, sorted; empty for an unknown user.
    conversations: Vec<String>,
    /// Always `true`.
    success: bool,
}

/// `GET /list_conversations?email=` (or `{"email"}` in the body): the user's counterparts.
#[utoipa::path(
    get,
    path = "/list_conversations",
    tag = "messages",
    params(("email" = Option<String>, Query, description = "The user's address; without it, the JSON body's `email` is used")),
    request_body(
        content = Option<EmailOnly>,
        content_type = "application/json",
        description = "Read only when the query string has no `email` (clients of the original system send a body with GET)",
    ),
    responses(
        (status = 200, description = "The user's counterparts", body = ConversationsReply),
        (status = 400, description = "No email in the query string or the body, or a body that is not JSON", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(user_email = email))]
async fn list_conversations(
    State(store): State<Store>,
    EmailParam(email): EmailParam,
) -> Result<Json<ConversationsReply>, Error> {
    let conversations = store.conversations_of(&email).await?;
    Ok(Json(ConversationsReply {
        conversations,
        success: true,
    }))
}
