//! message-service's REST API.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use service_runtime::http::EmailParam;

use crate::{error::Error, store::Store};

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/list_conversations", get(list_conversations))
        .with_state(store)
}

/// `GET /list_conversations?email=` (or `{"email"}` in the body): the user's counterparts.
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_conversations(
    State(store): State<Store>,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    let conversations = store.conversations_of(&email).await?;
    Ok(Json(
        json!({ "success": true, "conversations": conversations }),
    ))
}
