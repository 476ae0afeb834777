//! notification-service's REST API.

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};
use service_runtime::http::EmailParam;

use crate::{error::Error, store::Store};

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/list_notifications", get(list_notifications))
        .with_state(store)
}

/// `GET /list_notifications?email=` (or `{"email"}` in the body): newest first.
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_notifications(
    State(store): State<Store>,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    let notifications = store.notifications_of(&email).await?;
    Ok(Json(
        json!({ "success": true, "notifications": notifications }),
    ))
}
