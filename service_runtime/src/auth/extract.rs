//! The axum side: a handler takes a [`Caller`] as an argument (or [`Authorization`], to keep
//! the token a long request is re-checked with).
//!
//! Where an HTTP request's token is taken from, the one place: the `Authorization: Bearer`
//! header; else the [`TOKEN_COOKIE`] cookie (a browser page's sign-in sets it, HttpOnly and
//! SameSite=Strict); else the [`TOKEN_PARAM`] query parameter (a browser's `EventSource`
//! can set neither headers nor, across origins, cookies). The request log never shows that
//! parameter's value ([`redact_query`]).

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header, request::Parts},
    response::Response,
};

use super::{Auth, AuthError, Caller};
use crate::error::{ApiError, Kind};

/// The cookie that carries a browser's token.
pub const TOKEN_COOKIE: &str = "inbox_token";
/// The query parameter that carries a token where nothing else can.
pub const TOKEN_PARAM: &str = "access_token";

/// The `Authorization` value a request's token amounts to (`Bearer <token>`, whichever of the
/// three places it came from), `None` without one.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization(pub Option<String>);

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Authorization(..)"
        } else {
            "Authorization(None)"
        })
    }
}

impl Authorization {
    /// The request's token: header, else cookie, else query parameter.
    pub fn of(headers: &HeaderMap, uri: &Uri) -> Result<Self, AuthError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| AuthError::Invalid("not ASCII"))?;
            return Ok(Self(Some(value.to_owned())));
        }
        let token = cookie(headers, TOKEN_COOKIE).or_else(|| query_param(uri, TOKEN_PARAM));
        Ok(Self(token.map(|token| format!("Bearer {token}"))))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::of(&parts.headers, &parts.uri).map_err(|err| refusal(&err))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    /// The caller of an HTTP request, from its token (see the module's documentation),
    /// checked by the [`Auth`] installed with [`Auth::layer`]. A refusal is the JSON 401 (with
    /// `WWW-Authenticate: Bearer`) or 503.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(auth) = parts.extensions.get::<Auth>().cloned() else {
            tracing::error!("a handler asks for the Caller on a router without Auth::layer");
            return Err(crate::http::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        };
        let Authorization(authorization) = Authorization::from_request_parts(parts, state).await?;
        auth.caller(authorization.as_deref())
            .await
            .map_err(|err| refusal(&err))
    }
}

/// The value of cookie `name` (the first one; blank counts as absent).
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.trim().is_empty())
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
}

/// The raw value of query parameter `name` (the first one; blank counts as absent). Only the
/// name as written counts, so what [`redact_query`] hides is exactly what is accepted.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// `uri`'s path and query with the value of every [`TOKEN_PARAM`] replaced by `[redacted]`:
/// what a log line may show.
pub fn redact_query(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key == TOKEN_PARAM => format!("{key}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", uri.path(), pairs.join("&"))
}

fn refusal(err: &AuthError) -> Response {
    let mut response = crate::error::http_reply(err);
    if err.kind() == Kind::Unauthenticated {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).expect("ASCII")))
            .collect()
    }

    #[test]
    fn the_header_wins_then_the_cookie_then_the_query() {
        let uri: Uri = "/live?email=a@b.io&access_token=q".parse().expect("uri");
        let cookie = (header::COOKIE, "theme=dark; inbox_token=c");
        let both = headers(&[(header::AUTHORIZATION, "Bearer h"), cookie.clone()]);
        let of = |headers: &HeaderMap| Authorization::of(headers, &uri).expect("ASCII").0;
        assert_eq!(of(&both).as_deref(), Some("Bearer h"));
        assert_eq!(of(&headers(&[cookie])).as_deref(), Some("Bearer c"));
        assert_eq!(of(&HeaderMap::new()).as_deref(), Some("Bearer q"));
        let bare: Uri = "/live?email=a@b.io&access_token=".parse().expect("uri");
        assert_eq!(
            Authorization::of(&HeaderMap::new(), &bare).expect("ok").0,
            None
        );
    }

    #[test]
    fn the_query_token_never_reaches_a_log_line() {
        let uri: Uri = "/live?access_token=secret&email=a@b.io&access_token=again"
            .parse()
            .expect("uri");
        let shown = redact_query(&uri);
        assert_eq!(
            shown,
            "/live?access_token=[redacted]&email=a@b.io&access_token=[redacted]"
        );
        assert_eq!(redact_query(&"/health".parse().expect("uri")), "/health");
    }
}
