//! Who the page is for: `GET /api/config`, sign-up (`POST /api/signup`) and the session
//! (`POST` / `DELETE /api/session`). Sign-up and sign-in are user-service's `AccountService`
//! over gRPC (the same code paths and limits as `POST /users` and `POST /login`), called with
//! frontend-service's credential and the browser's address, so each browser has its own
//! per-address allowance when protection is on (in open mode there is no credential, and the
//! page's users share frontend-service's address there).
//!
//! The session is the login token in the cookie `inbox_token`: `HttpOnly` (no script reads
//! it), `SameSite=Strict` (no other site's page sends it), `Path=/`, `Max-Age` = what is left
//! of the token's lifetime, and `Secure` when the request came over https — frontend-service
//! serves plain HTTP, so that is known only from a TLS proxy's `X-Forwarded-Proto: https`
//! (a client that lies about it only makes its own cookie stricter).

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use service_runtime::{
    auth::{Caller, TOKEN_COOKIE},
    email::Email,
    http::{ApiJson, ClientAddr},
    openapi::ErrorReply,
    time::unix_now,
};
use utoipa::ToSchema;

use proto::user_service::{LogInRequest, RegisterUserRequest};

use super::{
    Page,
    upstream::{BrowserToken, PageError, from_browser},
};

const USER_SERVICE: &str = "user-service";

/// What the page needs to know before it shows anything.
#[derive(Debug, Serialize, ToSchema)]
struct ConfigReply {
    /// Whose inbox the session is for: the signed-in user (protection on, a valid token in the
    /// cookie or `Authorization`), else `null`.
    email: Option<String>,
    /// Whether protection (`AUTH_SECRET`) is on: then the page signs in with a password; in
    /// open mode it just picks an address.
    protected: bool,
    success: bool,
}

/// `GET /api/config`: whether sign-in is needed and who is signed in.
#[utoipa::path(
    get,
    path = "/api/config",
    tag = "web inbox",
    responses((status = 200, description = "Whether protection is on, and the signed-in user if any", body = ConfigReply))
)]
#[tracing::instrument(skip_all)]
async fn config(State(page): State<Page>, token: BrowserToken) -> Json<ConfigReply> {
    let email = match token.authorization() {
        Some(authorization) if page.auth.is_on() => {
            match page.auth.caller(Some(authorization)).await {
                Ok(Caller::User { email, .. }) => Some(email.into_string()),
                _ => None,
            }
        }
        _ => None,
    };
    Json(ConfigReply {
        email,
        protected: page.auth.is_on(),
        success: true,
    })
}

/// `POST /api/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "name": "Ada Lovelace", "password": "correct horse battery staple"}))]
struct SignUpBody {
    email: String,
    name: String,
    password: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct SignedUpUser {
    email: String,
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct SignUpReply {
    success: bool,
    user: SignedUpUser,
}

/// `POST /api/signup`: creates the account as `POST /users` does (and subscribes it).
#[utoipa::path(
    post,
    path = "/api/signup",
    tag = "web inbox",
    request_body = SignUpBody,
    responses(
        (status = 201, description = "Created and subscribed; sign in next (protection on) or open the inbox", body = SignUpReply),
        (status = 400, description = "Malformed JSON, a missing or empty field, a malformed address, a password the policy refuses, or `User already exists`", body = ErrorReply),
        (status = 429, description = "Too many sign-ups from the browser's address; see `Retry-After`", body = ErrorReply),
        (status = 503, description = "user-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn sign_up(
    State(page): State<Page>,
    ClientAddr(from): ClientAddr,
    ApiJson(body): ApiJson<SignUpBody>,
) -> Result<Response, PageError> {
    let request = RegisterUserRequest {
        email: Some(body.email),
        password: Some(body.password),
        name: Some(body.name),
    };
    let created = page
        .accounts
        .clone()
        .register_user(from_browser(request, from))
        .await
        .map_err(PageError::of(USER_SERVICE))?
        .into_inner();
    let reply = SignUpReply {
        success: true,
        user: SignedUpUser {
            email: created.email.unwrap_or_default(),
            name: created.name.unwrap_or_default(),
        },
    };
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

/// `POST /api/session`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
struct SignInBody {
    email: String,
    password: String,
}

/// The token is in the cookie only: the page's scripts never see it.
#[derive(Debug, Serialize, ToSchema)]
struct SessionReply {
    email: String,
    /// When the session (the token) expires, RFC 3339.
    expires_at: String,
    success: bool,
}

/// `POST /api/session`: signs in as `POST /login` does and sets the `inbox_token` cookie.
#[utoipa::path(
    post,
    path = "/api/session",
    tag = "web inbox",
    request_body = SignInBody,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie: inbox_token=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=…` (and `Secure` behind https)", body = SessionReply),
        (status = 400, description = "Malformed JSON, a missing field or a malformed address", body = ErrorReply),
        (status = 401, description = "`Invalid credentials`: an unknown address or a wrong password, alike", body = ErrorReply),
        (status = 429, description = "Too many failed attempts for the address, or attempts from the browser's address; see `Retry-After`", body = ErrorReply),
        (status = 503, description = "user-service is unavailable", body = ErrorReply),
    )
)]
#[tracing::instrument(skip_all)]
async fn sign_in(
    State(page): State<Page>,
    ClientAddr(from): ClientAddr,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignInBody>,
) -> Result<Response, PageError> {
    let email = Email::parse(body.email.as_str())
        .map_err(|err| PageError::Invalid(format!("email: {err}")))?;
    let request = LogInRequest {
        email: Some(email.into_string()),
        password: Some(body.password),
    };
    let issued = page
        .accounts
        .clone()
        .log_in(from_browser(request, from))
        .await
        .map_err(PageError::of(USER_SERVICE))?
        .into_inner();
    let expires_at = issued.expires_at.unwrap_or_default();
    let max_age = chrono::DateTime::parse_from_rfc3339(&expires_at)
        .ok()
        .and_then(|at| u64::try_from(at.timestamp()).ok())
        .map_or(0, |at| at.saturating_sub(unix_now()));
    let token = issued.token.unwrap_or_default();
    let cookie = session_cookie(&token, max_age, is_https(&headers));
    let reply = SessionReply {
        email: issued.email.unwrap_or_default(),
        expires_at,
        success: true,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(reply)).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
struct SignedOutReply {
    success: bool,
}

/// `DELETE /api/session`: forgets the cookie in this browser (the token itself stays valid
/// until it expires or the password changes: tokens are not stored server-side).
#[utoipa::path(
    delete,
    path = "/api/session",
    tag = "web inbox",
    responses((status = 200, description = "Signed out: `Set-Cookie: inbox_token=; Max-Age=0`", body = SignedOutReply))
)]
async fn sign_out(headers: HeaderMap) -> Response {
    let cookie = session_cookie("", 0, is_https(&headers));
    (
        [(header::SET_COOKIE, cookie)],
        Json(SignedOutReply { success: true }),
    )
        .into_response()
}

/// Whether the browser reached us over https (through a TLS proxy that says so).
fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie(token: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // A token is ASCII (a JWT); anything else would have been refused by user-service.
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("inbox_token=; Max-Age=0"))
}

/// The session routes, for [`super::router`].
pub fn routes() -> utoipa_axum::router::OpenApiRouter<Page> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(sign_up))
        .routes(routes!(sign_in, sign_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_http_only_strict_and_secure_only_over_https() {
        let plain = session_cookie("a.b.c", 60, false);
        assert_eq!(
            plain.to_str().expect("ascii"),
            "inbox_token=a.b.c; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        assert!(is_https(&headers));
        assert!(
            session_cookie("a", 1, true)
                .to_str()
                .expect("ascii")
                .ends_with("; Secure")
        );
    }
}
