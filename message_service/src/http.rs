//! message-service's REST API.

use axum::{Json, Router, extract::State};
use serde::Serialize;
use service_runtime::{
    auth::{Auth, Caller},
    http::{ConversationPageParams, EmailOnly, EmailParam},
    openapi::{
        ErrorReply,
        describe::{EMAIL_BODY, OTHERS, PROTECTED},
    },
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{error::Error, store::Store};

/// message-service's routes and their OpenAPI document.
pub fn router(store: Store, auth: &Auth) -> (Router, OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .split_for_parts();
    (router.layer(auth.layer()).with_state(store), api)
}

/// Fields in alphabetical order, as `json!` wrote them before this reply was typed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"conversations": ["bob@example.com"], "success": true}))]
struct ConversationsReply {
    /// The emails of the user's counterparts, sorted; empty for an unknown user.
    conversations: Vec<String>,
    /// With `limit` only: the `after` of the next page (the last address listed), `null` on
    /// the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
    /// Always `true`.
    success: bool,
}

/// `GET /list_conversations?email=` (or `{"email"}` in the body): the user's counterparts,
/// sorted. With `limit`, one page: the counterparts after `after` (the previous page's
/// `next_cursor`, the last address it listed), plus `next_cursor`. Unknown query parameters
/// (`before`, `unread`) are a 400. When protection is on, only the user's own.
#[utoipa::path(
    get,
    path = "/list_conversations",
    tag = "messages",
    params(ConversationPageParams),
    request_body(content = Option<EmailOnly>, content_type = "application/json", description = EMAIL_BODY),
    responses(
        (status = 200, description = "The user's counterparts", body = ConversationsReply),
        (status = 400, description = "No email in the query string or the body, a malformed one, a bad `limit`, an unknown query parameter, or a body that is not a JSON object", body = ErrorReply),
        (status = 401, description = PROTECTED, body = ErrorReply),
        (status = 403, description = OTHERS, body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_conversations(
    State(store): State<Store>,
    caller: Caller,
    page: ConversationPageParams,
    EmailParam(email): EmailParam,
) -> Result<Json<ConversationsReply>, Error> {
    caller.authorize(&email)?;
    let mut conversations = store.conversations_of(&email).await?;
    let Some(limit) = page.limit else {
        return Ok(Json(ConversationsReply {
            conversations,
            next_cursor: None,
            success: true,
        }));
    };
    if let Some(after) = &page.after {
        conversations.retain(|counterpart| counterpart > after);
    }
    let next_cursor = (conversations.len() > limit).then(|| conversations[limit - 1].clone());
    conversations.truncate(limit);
    Ok(Json(ConversationsReply {
        conversations,
        next_cursor: Some(next_cursor),
        success: true,
    }))
}
