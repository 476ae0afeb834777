//! The REST API: `POST /users`, `PUT` and `DELETE` on `/users/email` (address in the body) and
//! `/users/{email}` (address in the path), `POST /login`. When protection is on, `PUT` and
//! `DELETE` are for the user themself only (`Caller`), and a change of password or email or a
//! deletion also needs the account's `current_password` in the body, checked before anything
//! else is done (a stolen token alone cannot take the account over). A `current_password`
//! given in open mode, or with a change that does not need it, is checked too.

use std::net::IpAddr;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{FromRef, FromRequest, Path, Request, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    auth::{Auth, Caller},
    email::Email,
    http::{ApiJson, ClientAddr, JsonObject, error_response},
    openapi::ErrorReply,
};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    accounts::Accounts,
    domain::{
        CurrentPasswordBody, EmailBody, NewUser, NewUserBody, PathUpdateBody, UpdateRequestBody,
        UserUpdate, UserUpdateBody, parse_email,
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
        (status = 400, description = "Malformed JSON, a missing, empty or non-string field, a malformed email, an email whose local part or a domain label mixes scripts with look-alike characters, or `User already exists`", body = ErrorReply),
        (status = 429, description = "Too many sign-ups and password changes from the address, or in progress on this server; see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn create_user(
    State(accounts): State<Accounts>,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<Response, Error> {
    let record = accounts.create(NewUser::try_from(body)?, from).await?;
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
        (status = 401, description = "With protection on: no valid token, or a password or email change without the right `current_password`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 409, description = "The user changed concurrently; retrying may work", body = ErrorReply),
        (status = 429, description = "Too many failed logins for the email, or attempts from the address (`current_password` is checked as a login is); too many password changes from the address; see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn update_user_by_body(
    State(api): State<Api>,
    caller: Caller,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<UpdateRequestBody>,
) -> Result<Response, Error> {
    let email = parse_email("email", body.email)?;
    caller.authorize(&email)?;
    update_user(&api, email, body.data, body.current_password, from).await
}

/// Updates the user named in the path with the changes in the body (the `data` object of
/// `PUT /users/email`).
#[utoipa::path(
    put,
    path = "/users/{email}",
    tag = "users",
    params(("email" = Email, Path, description = "The user's address, percent-encoded")),
    request_body = PathUpdateBody,
    responses(
        (status = 200, description = "Updated", body = UserReply),
        (status = 400, description = "Malformed JSON, an unknown key, a non-string value, no change, a malformed email, or `Email already in use`", body = ErrorReply),
        (status = 401, description = "With protection on: no valid token, or a password or email change without the right `current_password`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 409, description = "The user changed concurrently; retrying may work", body = ErrorReply),
        (status = 429, description = "Too many failed logins for the email, or attempts from the address (`current_password` is checked as a login is); too many password changes from the address; see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn update_user_by_path(
    State(api): State<Api>,
    caller: Caller,
    ClientAddr(from): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<PathUpdateBody>,
) -> Result<Response, Error> {
    let email = email_from_path(path)?;
    caller.authorize(&email)?;
    let (data, current_password) = body.split();
    update_user(&api, email, data, current_password, from).await
}

/// 200 with the user's name and (possibly new) email.
async fn update_user(
    api: &Api,
    email: Email,
    data: UserUpdateBody,
    current_password: Option<String>,
    from: Option<IpAddr>,
) -> Result<Response, Error> {
    let update = UserUpdate::try_from(data)?;
    confirm(api, &email, update.is_sensitive(), current_password, from).await?;
    let updated = api.accounts.update(&email, update, from).await?;
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
        (status = 401, description = "With protection on: no valid token, or no right `current_password`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 429, description = "Too many failed logins for the email, or attempts from the address (`current_password` is checked as a login is); see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all, fields(email = %body.email))]
async fn delete_user_by_body(
    State(api): State<Api>,
    caller: Caller,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<StatusCode, Error> {
    let email = parse_email("email", body.email)?;
    caller.authorize(&email)?;
    confirm(&api, &email, true, body.current_password, from).await?;
    delete_user(&api.accounts, &email).await
}

/// Deletes the user named in the path.
#[utoipa::path(
    delete,
    path = "/users/{email}",
    tag = "users",
    params(("email" = Email, Path, description = "The user's address, percent-encoded")),
    request_body(content = CurrentPasswordBody, description = "Optional (required when protection is on): the account's current password"),
    responses(
        (status = 204, description = "Deleted; the reply has no body"),
        (status = 400, description = "A malformed email, or a body that is not the JSON object `{\"current_password\": \"...\"}`", body = ErrorReply),
        (status = 401, description = "With protection on: no valid token, or no right `current_password`", body = ErrorReply),
        (status = 404, description = "`User not found`", body = ErrorReply),
        (status = 429, description = "Too many failed logins for the email, or attempts from the address (`current_password` is checked as a login is); see `Retry-After`", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn delete_user_by_path(
    State(api): State<Api>,
    caller: Caller,
    ClientAddr(from): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    OptionalJson(body): OptionalJson<CurrentPasswordBody>,
) -> Result<StatusCode, Error> {
    let email = email_from_path(path)?;
    caller.authorize(&email)?;
    let current_password = body.and_then(|body| body.current_password);
    confirm(&api, &email, true, current_password, from).await?;
    delete_user(&api.accounts, &email).await
}

/// The check of a `current_password`, before a change is made: when protection is on a
/// `sensitive` change needs one; one given is always checked, as a login is (under the same
/// limits: a wrong one counts as a failed login for the email).
async fn confirm(
    api: &Api,
    email: &Email,
    sensitive: bool,
    current_password: Option<String>,
    from: Option<IpAddr>,
) -> Result<(), Error> {
    match current_password {
        Some(password) => {
            if api.logins.authenticate(email, &password, from).await? {
                Ok(())
            } else {
                tracing::warn!(%email, "sensitive change refused: wrong current_password");
                Err(Error::WrongCurrentPassword)
            }
        }
        None if sensitive && api.logins.protected() => Err(Error::CurrentPasswordRequired),
        None => Ok(()),
    }
}

/// An optional JSON object body: none (empty) is `None`; anything else must be the object.
struct OptionalJson<T>(Option<T>);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        serde_json::from_slice::<JsonObject<T>>(&bytes)
            .map(|JsonObject(value)| Self(Some(value)))
            .map_err(|err| {
                error_response(
                    StatusCode::BAD_REQUEST,
                    format!("Failed to deserialize the JSON body into the target type: {err}"),
                )
            })
    }
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
