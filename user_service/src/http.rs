//! The REST API: `POST /users`, `PUT` and `DELETE` on `/users/email` (address in the body) and
//! `/users/{email}` (address in the path).

use axum::{
    Json, Router,
    extract::{Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{post, put},
};
use serde_json::json;
use service_runtime::{
    email::Email,
    http::{ApiJson, error_response},
};

use crate::{
    AppState,
    domain::{
        EmailBody, NewUser, NewUserBody, UpdateRequestBody, UserRecord, UserUpdate, UserUpdateBody,
        parse_email,
    },
    error::Error,
    store::{Store, UpdateOutcome},
};

/// user-service's routes; `/health` and the JSON 404 are added by the service runtime.
pub fn router(state: AppState) -> Router {
    // `/users/email` is a static segment, so it wins over `/users/{email}`; no valid address
    // is literally "email", so no user is shadowed.
    Router::new()
        .route("/users", post(create_user))
        .route(
            "/users/email",
            put(update_user_by_body).delete(delete_user_by_body),
        )
        .route(
            "/users/{email}",
            put(update_user_by_path).delete(delete_user_by_path),
        )
        .method_not_allowed_fallback(|| async {
            error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(state)
}

/// 201 with the created user's name and email (never the password).
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, Error> {
    let user = NewUser::try_from(body)?;
    // Hashing is the expensive part; a cheap look first spares it for obvious duplicates.
    // The SET NX below is what decides a race.
    if state.store.exists(&user.email).await? {
        return Err(Error::AlreadyExists);
    }
    let record = UserRecord {
        name: user.name,
        email: user.email.into_string(),
        password: state.passwords.hash(&user.password).await?,
    };
    state.store.create(&record).await?;
    tracing::info!(email = record.email, "user created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "success": true,
            "message": "User created",
            "user": { "name": record.name, "email": record.email },
        })),
    )
        .into_response())
}

#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn update_user_by_body(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UpdateRequestBody>,
) -> Result<Response, Error> {
    let email = parse_email("email", body.email)?;
    update_user(&state, email, body.data).await
}

#[tracing::instrument(skip_all)]
async fn update_user_by_path(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(data): ApiJson<UserUpdateBody>,
) -> Result<Response, Error> {
    let email = email_from_path(path)?;
    update_user(&state, email, data).await
}

/// 200 with the user's name and (possibly new) email.
async fn update_user(
    state: &AppState,
    email: Email,
    data: UserUpdateBody,
) -> Result<Response, Error> {
    let update = UserUpdate::try_from(data)?;
    let updated = apply_update(state, &email, update).await?;
    tracing::info!(%email, new_email = updated.email, "user updated");
    Ok((
        StatusCode::OK,
        Json(json!({
            "success": true,
            "message": "User updated",
            "user": { "name": updated.name, "email": updated.email },
        })),
    )
        .into_response())
}

/// Read, change, compare-and-swap; read again when someone else wrote in between, so no
/// concurrent update is lost. The password is hashed once, outside the loop.
async fn apply_update(
    state: &AppState,
    email: &Email,
    update: UserUpdate,
) -> Result<UserRecord, Error> {
    let Some(mut current) = state.store.get(email).await? else {
        return Err(Error::NotFound);
    };
    let new_hash = match &update.password {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };
    for _ in 0..Store::update_attempts() {
        let (record, raw) = current;
        let updated = UserRecord {
            name: update.name.clone().unwrap_or(record.name),
            email: update
                .email
                .as_ref()
                .map_or(record.email, |new| new.as_str().to_owned()),
            password: new_hash.clone().unwrap_or(record.password),
        };
        match state.store.replace(email, &raw, &updated).await? {
            UpdateOutcome::Updated => return Ok(updated),
            UpdateOutcome::Changed => {
                current = state.store.get(email).await?.ok_or(Error::NotFound)?;
            }
        }
    }
    Err(Error::Conflict)
}

#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn delete_user_by_body(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<StatusCode, Error> {
    let email = parse_email("email", body.email)?;
    delete_user(&state.store, &email).await
}

#[tracing::instrument(skip_all)]
async fn delete_user_by_path(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Error> {
    let email = email_from_path(path)?;
    delete_user(&state.store, &email).await
}

/// 204 with an empty body.
async fn delete_user(store: &Store, email: &Email) -> Result<StatusCode, Error> {
    store.delete(email).await?;
    tracing::info!(%email, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn email_from_path(path: Result<Path<String>, PathRejection>) -> Result<Email, Error> {
    let Path(raw) = path.map_err(|rejection| Error::Invalid(rejection.body_text()))?;
    parse_email("email in the path", raw)
}
