//! message-service's REST API.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use service_runtime::{
    auth::{Auth, Caller},
    http::{EmailParam, PageParams},
};

use crate::{error::Error, store::Store};

pub fn router(store: Store, auth: &Auth) -> Router {
    Router::new()
        .route("/list_conversations", get(list_conversations))
        .layer(auth.layer())
        .with_state(store)
}

/// `GET /list_conversations?email=` (or `{"email"}` in the body): the user's counterparts,
/// sorted. With `limit`, one page: the counterparts after `before` (the previous page's
/// `next_cursor`, the last address it listed), plus `next_cursor`. When protection is on,
/// only the user's own.
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_conversations(
    State(store): State<Store>,
    caller: Caller,
    page: PageParams,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    caller.authorize(&email)?;
    let mut conversations = store.conversations_of(&email).await?;
    let Some(limit) = page.limit else {
        return Ok(Json(
            json!({ "success": true, "conversations": conversations }),
        ));
    };
    if let Some(before) = &page.before {
        conversations.retain(|counterpart| counterpart > before);
    }
    let next_cursor = (conversations.len() > limit).then(|| conversations[limit - 1].clone());
    conversations.truncate(limit);
    Ok(Json(json!({
        "success": true,
        "conversations": conversations,
        "next_cursor": next_cursor,
    })))
}
