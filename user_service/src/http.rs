//! The REST API: `POST /users`, `PUT` and `DELETE` on `/users/email` (address in the body) and
//! `/users/{email}` (address in the path), `POST /login`. When protection is on, `PUT` and
//! `DELETE` are for the user themself only (`Caller`).

use axum::{
    Json, Router,
    extract::{FromRef, Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{post, put},
};
use serde::Deserialize;
use serde_json::json;
use service_runtime::{
    auth::{Auth, Caller, ClientAddr},
    email::Email,
    http::{ApiJson, error_response},
};

use crate::{
    accounts::Accounts,
    domain::{
        EmailBody, NewUser, NewUserBody, UpdateRequestBody, UserUpdate, UserUpdateBody, parse_email,
    },
    error::Error,
    login::Logins,
};

/// What the handlers share.
#[derive(Clone, FromRef)]
pub struct Api {
    pub accounts: Accounts,
    pub logins: Logins,
}

/// user-service's routes; `/health` and the JSON 404 are added by the service runtime.
pub fn router(api: Api, auth: &Auth) -> Router {
    // `/users/email` is a static segment, so it wins over `/users/{email}`; no valid address
    // is literally "email", so no user is shadowed.
    Router::new()
        .route("/users", post(create_user))
        .route("/login", post(login))
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
        .layer(auth.layer())
        .with_state(api)
}

/// `POST /login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

/// 200 with a token and its expiry; 401 `Invalid credentials` for an unknown email or a wrong
/// password alike; 429 with `Retry-After` past a brute-force limit.
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn login(
    State(logins): State<Logins>,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<serde_json::Value>, Error> {
    let email = parse_email("email", body.email)?;
    let issued = logins.login(&email, &body.password, from).await;
    tracing::info!(success = issued.is_ok(), "login attempt");
    let issued = issued?;
    Ok(Json(json!({
        "success": true,
        "token": issued.token,
        "expires_at": issued.expires_at,
    })))
}

/// 201 with the created user's name and email (never the password).
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn create_user(
    State(accounts): State<Accounts>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, Error> {
    let record = accounts.create(NewUser::try_from(body)?).await?;
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
    State(accounts): State<Accounts>,
    caller: Caller,
    ApiJson(body): ApiJson<UpdateRequestBody>,
) -> Result<Response, Error> {
    let email = parse_email("email", body.email)?;
    caller.authorize(&email)?;
    update_user(&accounts, email, body.data).await
}

#[tracing::instrument(skip_all)]
async fn update_user_by_path(
    State(accounts): State<Accounts>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    ApiJson(data): ApiJson<UserUpdateBody>,
) -> Result<Response, Error> {
    let email = email_from_path(path)?;
    caller.authorize(&email)?;
    update_user(&accounts, email, data).await
}

/// 200 with the user's name and (possibly new) email.
async fn update_user(
    accounts: &Accounts,
    email: Email,
    data: UserUpdateBody,
) -> Result<Response, Error> {
    let updated = accounts.update(&email, UserUpdate::try_from(data)?).await?;
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

#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn delete_user_by_body(
    State(accounts): State<Accounts>,
    caller: Caller,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<StatusCode, Error> {
    let email = parse_email("email", body.email)?;
    caller.authorize(&email)?;
    delete_user(&accounts, &email).await
}

#[tracing::instrument(skip_all)]
async fn delete_user_by_path(
    State(accounts): State<Accounts>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, Error> {
    let email = email_from_path(path)?;
    caller.authorize(&email)?;
    delete_user(&accounts, &email).await
}

/// 204 with an empty body.
async fn delete_user(accounts: &Accounts, email: &Email) -> Result<StatusCode, Error> {
    accounts.delete(email).await?;
    tracing::info!(%email, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn email_from_path(path: Result<Path<String>, PathRejection>) -> Result<Email, Error> {
    let Path(raw) = path.map_err(|rejection| Error::Invalid(rejection.body_text()))?;
    parse_email("email in the path", raw)
}
