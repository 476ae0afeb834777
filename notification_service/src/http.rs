//! notification-service's REST API.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use service_runtime::{
    auth::{Auth, Caller},
    http::EmailParam,
};

use crate::{error::Error, store::Store};

pub fn router(store: Store, auth: &Auth) -> Router {
    Router::new()
        .route("/list_notifications", get(list_notifications))
        .layer(auth.layer())
        .with_state(store)
}

/// `GET /list_notifications?email=` (or `{"email"}` in the body): newest first; when
/// protection is on, only the user's own.
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_notifications(
    State(store): State<Store>,
    caller: Caller,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    caller.authorize(&email)?;
    let notifications = store.notifications_of(&email).await?;
    Ok(Json(
        json!({ "success": true, "notifications": notifications }),
    ))
}
