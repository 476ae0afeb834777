//! message-service's REST API.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use service_runtime::{
    auth::{Auth, Caller},
    http::EmailParam,
};

use crate::{error::Error, store::Store};

pub fn router(store: Store, auth: &Auth) -> Router {
    Router::new()
        .route("/list_conversations", get(list_conversations))
        .layer(auth.layer())
        .with_state(store)
}

/// `GET /list_conversations?email=` (or `{"email"}` in the body): the user's counterparts;
/// when protection is on, only the user's own.
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_conversations(
    State(store): State<Store>,
    caller: Caller,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    caller.authorize(&email)?;
    let conversations = store.conversations_of(&email).await?;
    Ok(Json(
        json!({ "success": true, "conversations": conversations }),
    ))
}
