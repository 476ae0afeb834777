//! The REST API: `POST /users`, `PUT` and `DELETE` on `/users/email` (address in the body) and
//! `/users/{email}` (address in the path), `POST /login`. When protection is on, `PUT` and
//! `DELETE` are for the user themself only (`Caller`).

use axum::{
    Json, Router,
    extract::{FromRef, Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    auth::{Auth, Caller},
    email::Email,
    http::{ApiJson, ClientAddr, error_response},
    openapi::ErrorReply,
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

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

/// user-service's routes and their OpenAPI document; `/health`, `/metrics`, `/openapi.json`
/// and the JSON 404 are added by the service runtime.
pub fn router(api: Api, auth: &Auth) -> (Router, OpenApi) {
    // `/users/email` is a static segment, so it wins over `/users/{email}`; no valid address
    // is literally "email", so no user is shadowed.
    let (router, openapi) = OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(login))
        .routes(routes!(update_user_by_body, delete_user_by_body))
        .routes(routes!(update_user_by_path, delete_user_by_path))
        .split_for_parts();
    let router = router
        .method_not_allowed_fallback(|| async {
            error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .layer(auth.layer())
        .with_state(api);
    (router, openapi)
}

/// `POST /login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

/// A login token and when it stops working.
#[derive(Debug, Serialize, ToSchema)]
struct LoginReply {
    /// RFC 3339.
    expires_at: String,
    success: bool,
    /// Send as `Authorization: Bearer <token>` (HTTP) or `authorization` metadata (gRPC).
    token: String,
}

/// 200 with a token and its expiry; 401 `Invalid credentials` for an unknown email or a wrong
/// password alike; 429 with `Retry-After` past a brute-force limit.
#[utoipa::path(
    post,
    path = "/login",
    tag = "users",
    request_body = LoginBody,
    responses(
        (status = 200, description = "A token for the user", body = LoginReply),
        (status = 400, description = "Malformed JSON, a missing field or a malformed email", body = ErrorReply),
        (status = 401, description = "`Invalid credentials`: an unknown email or a wrong password, alike", body = ErrorReply),
        (status = 429, description = "Too many failed attempts for the email or from the address; see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn login(
    State(logins): State<Logins>,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<LoginReply>, Error> {
    let email = parse_email("email", body.email)?;
    let issued = logins.login(&email, &body.password, from).await;
    tracing::info!(success = issued.is_ok(), "login attempt");
    let issued = issued?;
    Ok(Json(LoginReply {
        expires_at: issued.expires_at.to_string(),
        success: true,
        token: issued.token,
    }))
}

/// The reply to a create or an update: the user's name and (possibly new) email, never the
/// password. Fields in alphabetical order, as `json!` wrote them before this was typed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"message": "User created", "success": true, "user": {"email": "ada@example.com", "name": "Ada Lovelace"}}))]
struct UserReply {
    /// `User created` or `User updated`.
    message: &'static str,
    /// Always `true`.
    success: bool,
    user: PublicUser,
}

/// What a reply shows of a user.
#[derive(Debug, Serialize, ToSchema)]
struct PublicUser {
    email: String,
    name: String,
}

impl UserReply {
    fn new(message: &'static str, name: String, email: String) -> Json<Self> {
        Json(Self {
            message,
            success: true,
            user: PublicUser { email, name },
        })
    }
}

/// Creates a user: 201 with the created user's name and email (never the password).
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created; the user is subscribed to notifications", body = UserReply),
        (status = 400, description = "Malformed JSON, a missing, empty or non-string field, a malformed email, or `User already exists`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn create_user(
    State(accounts): State<Accounts>,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, Error> {
    let record = accounts.create(NewUser::try_from(body)?).await?;
    tracing::info!(email = record.email, "user created");
    let reply = UserReply::new("User created", record.name, record.email);
    Ok((StatusCode::CREATED, reply).into_response())
}

/// Updates the user named in the body with the changes in `data`.
#[utoipa::path(
    put,
    path = "/users/email",
    tag = "users",
    request_body = UpdateRequestBody,
    responses(
        (status = 200, description = "Updated", body = UserReply),
        (status = 400, description = "Malformed JSON, an unknown key, a non-string value, empty `data`, a malformed email, or `Email already in use`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 409, description = "The user changed concurrently; retrying may work", body = ErrorReply),
    )
)]
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

/// Updates the user named in the path with the changes in the body (the `data` object of
/// `PUT /users/email`).
#[utoipa::path(
    put,
    path = "/users/{email}",
    tag = "users",
    params(("email" = Email, Path, description = "The user's address, percent-encoded")),
    request_body = UserUpdateBody,
    responses(
        (status = 200, description = "Updated", body = UserReply),
        (status = 400, description = "Malformed JSON, an unknown key, a non-string value, no change, a malformed email, or `Email already in use`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 409, description = "The user changed concurrently; retrying may work", body = ErrorReply),
    )
)]
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
    let reply = UserReply::new("User updated", updated.name, updated.email);
    Ok((StatusCode::OK, reply).into_response())
}

/// Deletes the user named in the body.
#[utoipa::path(
    delete,
    path = "/users/email",
    tag = "users",
    request_body = EmailBody,
    responses(
        (status = 204, description = "Deleted; the reply has no body"),
        (status = 400, description = "Malformed JSON, an unknown key or a malformed email", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
    )
)]
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

/// Deletes the user named in the path.
#[utoipa::path(
    delete,
    path = "/users/{email}",
    tag = "users",
    params(("email" = Email, Path, description = "The user's address, percent-encoded")),
    responses(
        (status = 204, description = "Deleted; the reply has no body"),
        (status = 400, description = "A malformed email", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
    )
)]
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
