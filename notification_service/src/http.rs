//! notification-service's REST API: the contract's `/list_notifications` (with optional
//! pages) and the inbox endpoints (read state, unread count, deletion).

use axum::{
    Json, Router,
    extract::State,
    routing::{delete, get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use service_runtime::{
    auth::{Auth, Caller},
    email::Email,
    http::{ApiJson, EmailParam, PageParams},
    limits,
};

use crate::{
    error::Error,
    store::{PageOf, Store},
};

pub fn router(store: Store, auth: &Auth) -> Router {
    Router::new()
        .route("/list_notifications", get(list_notifications))
        .route("/notifications/read", post(mark_read))
        .route("/notifications/unread_count", get(unread_count))
        .route("/notifications", delete(delete_notifications))
        .layer(auth.layer())
        .with_state(store)
}

/// `GET /list_notifications?email=` (or `{"email"}` in the body): newest first. With
/// `limit`, one page (`before`, `unread=true`) plus `next_cursor` and `unread_count`. When
/// protection is on, only the user's own (as for every inbox endpoint).
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn list_notifications(
    State(store): State<Store>,
    caller: Caller,
    page: PageParams,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    caller.authorize(&email)?;
    let Some(limit) = page.limit else {
        let notifications = store.notifications_of(&email).await?;
        return Ok(Json(
            json!({ "success": true, "notifications": notifications }),
        ));
    };
    let before = match page.before.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(cursor)) => Some(cursor),
        Some(Err(_)) => return Err(Error::Invalid("before must be a cursor (a number)".into())),
    };
    let of = PageOf::Before {
        before,
        unread_only: page.unread,
    };
    let page = store.page(&email, of, limit).await?;
    Ok(Json(json!({
        "success": true,
        "notifications": page.notifications,
        "next_cursor": page.next_cursor,
        "unread_count": page.unread_count,
    })))
}

/// Which of a receiver's notifications: `notification_ids` omitted or empty means all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    email: String,
    #[serde(default)]
    notification_ids: Vec<String>,
}

impl Selection {
    fn parse(self) -> Result<(Email, Vec<String>), Error> {
        let email = Email::parse(self.email).map_err(|err| Error::Invalid(err.to_string()))?;
        if self.notification_ids.len() > service_runtime::http::MAX_PAGE {
            return Err(Error::Invalid(format!(
                "at most {} notification_ids at once",
                service_runtime::http::MAX_PAGE
            )));
        }
        if self
            .notification_ids
            .iter()
            .any(|id| id.len() > limits::MAX_ID_BYTES)
        {
            return Err(Error::Invalid(format!(
                "a notification id is longer than {} bytes",
                limits::MAX_ID_BYTES
            )));
        }
        Ok((email, self.notification_ids))
    }
}

/// `POST /notifications/read`: `{"success", "marked", "unread_count"}`.
#[tracing::instrument(skip_all)]
async fn mark_read(
    State(store): State<Store>,
    caller: Caller,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<Json<Value>, Error> {
    let (email, ids) = selection.parse()?;
    caller.authorize(&email)?;
    let (marked, unread_count) = store.mark_read(&email, &ids).await?;
    Ok(Json(
        json!({ "success": true, "marked": marked, "unread_count": unread_count }),
    ))
}

/// `GET /notifications/unread_count?email=` (or `{"email"}` in the body).
#[tracing::instrument(skip_all, fields(user_email = %email))]
async fn unread_count(
    State(store): State<Store>,
    caller: Caller,
    EmailParam(email): EmailParam,
) -> Result<Json<Value>, Error> {
    caller.authorize(&email)?;
    let unread_count = store.unread_count(&email).await?;
    Ok(Json(
        json!({ "success": true, "unread_count": unread_count }),
    ))
}

/// `DELETE /notifications`: `{"success", "deleted"}`.
#[tracing::instrument(skip_all)]
async fn delete_notifications(
    State(store): State<Store>,
    caller: Caller,
    ApiJson(selection): ApiJson<Selection>,
) -> Result<Json<Value>, Error> {
    let (email, ids) = selection.parse()?;
    caller.authorize(&email)?;
    let deleted = store.delete(&email, &ids).await?;
    Ok(Json(json!({ "success": true, "deleted": deleted })))
}
