//! Opt-in protection, one mechanism for every service: login tokens, who may act for which
//! user, and the credential the services present to each other.
//!
//! `AUTH_SECRET` (at least [`MIN_SECRET_BYTES`] bytes, the same on all four services) switches
//! it on. Unset, a service is in *open mode*: every request is allowed exactly as in the
//! original system; `POST /login` still issues tokens (signed with a random key of the process)
//! but nothing asks for them.
//!
//! When it is on:
//! - **Tokens** are JWTs signed with HS256 (`jsonwebtoken`) under a key derived from the
//!   secret, with claims `sub` (the email), `iat`, `exp` (`AUTH_TOKEN_TTL` after issue) and
//!   `ver`. `ver` binds the token to the user's current account: an HMAC of the stored password
//!   hash (a new password has a new random salt, so a new hash) and of the address's token
//!   generation (bumped when a user moves away from the address). A token therefore stops
//!   working when its user is deleted, changes password or changes email. Only user-service can
//!   compute `ver` (it owns Redis DB 0); the other services check signature and expiry
//!   themselves and ask user-service's `TokenService.ValidateToken` for the rest, remembering a "still
//!   valid" for [`TOKEN_CACHE_TTL`].
//! - **Handlers** ask [`Caller`] (an axum extractor) or [`Auth::authorize`] (gRPC) who is
//!   calling, and whether they may act for the user a request names: no, a malformed, forged or
//!   expired token is 401 / `UNAUTHENTICATED`; another user's valid token is 403 /
//!   `PERMISSION_DENIED`.
//! - **Service-to-service RPCs** call [`Auth::require_internal`]: only a request carrying the
//!   internal credential — HMAC-SHA256(secret, `"internal-service"`), hex, in the
//!   `x-internal-credential` metadata, which every channel from `grpc_client` attaches — gets in.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::Response,
};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use proto::user_service::{ValidateTokenRequest, token_service_client::TokenServiceClient};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tonic::metadata::AsciiMetadataValue;

use crate::{
    config,
    email::Email,
    error::{ApiError, Kind},
    grpc_client::{self, GrpcChannel},
    limits,
    retry::{self, Backoff},
};

/// The variable that switches protection on.
pub const SECRET_VAR: &str = "AUTH_SECRET";
/// Shortest `AUTH_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// How long a token is valid unless `AUTH_TOKEN_TTL` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The gRPC metadata key of the internal service credential.
pub const INTERNAL_CREDENTIAL_HEADER: &str = "x-internal-credential";
/// How long message-, notification- and frontend-service trust user-service's answer that a
/// token is still valid: a token revoked (password or email changed, user deleted) may still
/// be accepted there for this long; user-service itself never caches.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);
/// Most tokens remembered as valid at once.
const TOKEN_CACHE_MAX: usize = 10_000;
/// How long `ValidateToken` is retried while user-service is unavailable.
const VALIDATE_RETRY_WINDOW: Duration = Duration::from_secs(3);

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 under `key` of `parts` joined by NUL bytes (one part: exactly that part).
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for (n, part) in parts.iter().enumerate() {
        if n > 0 {
            mac.update(&[0]);
        }
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

// ---------------------------------------------------------------------------------------------
// Configuration and keys
// ---------------------------------------------------------------------------------------------

/// What every service reads about protection: `AUTH_SECRET` and `AUTH_TOKEN_TTL`.
#[derive(Clone)]
pub struct AuthConfig {
    /// `None`: open mode.
    secret: Option<Arc<[u8]>>,
    /// How long a token issued now is valid (`AUTH_TOKEN_TTL`, default 1 h).
    pub token_ttl: Duration,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret itself.
        f.debug_struct("AuthConfig")
            .field("protected", &self.is_on())
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

impl AuthConfig {
    /// `AUTH_SECRET` (unset or empty: open mode; shorter than 32 bytes: an error that stops the
    /// service) and `AUTH_TOKEN_TTL` (a duration, default 1 h).
    pub fn from_env() -> anyhow::Result<Self> {
        let token_ttl = config::duration_or("AUTH_TOKEN_TTL", DEFAULT_TOKEN_TTL)?;
        match config::var(SECRET_VAR) {
            None => Ok(Self::open(token_ttl)),
            Some(secret) => Self::protected(secret.as_bytes(), token_ttl),
        }
    }

    /// Open mode: nothing is checked, as in the original system.
    pub fn open(token_ttl: Duration) -> Self {
        Self {
            secret: None,
            token_ttl,
        }
    }

    /// Protection on with `secret`; refused if it is shorter than [`MIN_SECRET_BYTES`].
    pub fn protected(secret: &[u8], token_ttl: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "{SECRET_VAR} is {} bytes long; it must be at least {MIN_SECRET_BYTES} \
             (generate one with `openssl rand -base64 48`), or unset for open mode",
            secret.len()
        );
        Ok(Self {
            secret: Some(Arc::from(secret)),
            token_ttl,
        })
    }

    /// Whether protection is on.
    pub fn is_on(&self) -> bool {
        self.secret.is_some()
    }
}

/// The claims of a login token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's email.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch; the token is refused from then on.
    pub exp: u64,
    /// The account version the token was issued for (see the module documentation).
    pub ver: String,
}

/// A token issued by `POST /login`.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    /// When it expires, RFC 3339 UTC.
    pub expires_at: String,
}

/// The credential a service presents on its outbound gRPC calls (none in open mode).
#[derive(Clone, Default)]
pub struct InternalCredential(Option<AsciiMetadataValue>);

impl fmt::Debug for InternalCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "InternalCredential(..)"
        } else {
            "InternalCredential(none)"
        })
    }
}

impl InternalCredential {
    /// Adds the credential, if there is one, to an outbound request's metadata.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert(INTERNAL_CREDENTIAL_HEADER, value.clone());
        }
    }

    /// Whether `request` carries this credential (compared in constant time).
    fn is_carried_by<T>(&self, request: &tonic::Request<T>) -> bool {
        match (&self.0, request.metadata().get(INTERNAL_CREDENTIAL_HEADER)) {
            (Some(expected), Some(presented)) => {
                bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
            }
            _ => false,
        }
    }
}

/// Signs and checks tokens, derives account versions and the internal credential; cheap to
/// clone.
#[derive(Clone)]
pub struct TokenKeys(Arc<Keys>);

struct Keys {
    on: bool,
    /// The key of the `ver` HMAC; the signing key is derived apart from it.
    version_key: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    credential: InternalCredential,
}

impl TokenKeys {
    /// Keys derived from the configured secret, or from a random one in open mode (tokens are
    /// then good only on this process, which is all open mode needs: nothing checks them).
    pub fn new(config: &AuthConfig) -> Self {
        let secret: Vec<u8> = match &config.secret {
            Some(secret) => secret.to_vec(),
            None => (0..2)
                .flat_map(|_| uuid::Uuid::new_v4().into_bytes())
                .collect(),
        };
        // One secret, three unrelated keys.
        let signing_key = hmac(&secret, &[b"token-signing"]);
        let version_key = hmac(&secret, &[b"token-version"]);
        let credential = config.secret.as_ref().map(|_| {
            hex(&hmac(&secret, &[b"internal-service"]))
                .parse()
                .expect("hex is valid ASCII metadata")
        });
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self(Arc::new(Keys {
            on: config.is_on(),
            version_key,
            encoding: EncodingKey::from_secret(&signing_key),
            decoding: DecodingKey::from_secret(&signing_key),
            validation,
            ttl: config.token_ttl,
            credential: InternalCredential(credential),
        }))
    }

    /// Whether protection is on.
    pub fn is_on(&self) -> bool {
        self.0.on
    }

    /// The credential for outbound calls to the other services.
    pub fn internal_credential(&self) -> &InternalCredential {
        &self.0.credential
    }

    /// The account version of a user whose stored password hash is `password_hash` and whose
    /// address is at token generation `generation`.
    pub fn version(&self, password_hash: &str, generation: u64) -> String {
        let mac = hmac(
            &self.0.version_key,
            &[password_hash.as_bytes(), generation.to_string().as_bytes()],
        );
        hex(&mac[..16])
    }

    /// A token for `email` at account version `version`, valid for the configured TTL.
    pub fn issue(&self, email: &Email, version: String) -> anyhow::Result<IssuedToken> {
        let iat = unix_now();
        let exp = iat.saturating_add(self.0.ttl.as_secs().max(1));
        let claims = Claims {
            sub: email.as_str().to_owned(),
            iat,
            exp,
            ver: version,
        };
        let expires_at = i64::try_from(exp)
            .ok()
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .context("token expiry out of range")?
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expires_at,
        })
    }

    /// Signs any claims (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.0.encoding)
            .context("signing a token")
    }

    /// The claims of `token` if this system signed it and it has not expired. Whether it still
    /// matches the account is for [`CurrentTokens`] to say.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("its signature does not match (forged or from elsewhere)")
                }
                _ => AuthError::Invalid("it is not a well-formed token of this system"),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Errors and callers
// ---------------------------------------------------------------------------------------------

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401 / `UNAUTHENTICATED`: no `Authorization` header (or metadata).
    #[error(
        "authentication required: send `Authorization: Bearer <token>` (get a token from POST /login)"
    )]
    Missing,
    /// 401 / `UNAUTHENTICATED`: malformed or forged.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    /// 401 / `UNAUTHENTICATED`.
    #[error("token expired: log in again (POST /login)")]
    Expired,
    /// 401 / `UNAUTHENTICATED`: signed by us and unexpired, but the account changed since.
    #[error(
        "token revoked: its user was deleted or changed email or password; log in again (POST /login)"
    )]
    Revoked,
    /// 403 / `PERMISSION_DENIED`: a valid token of another user.
    #[error("forbidden: this token belongs to another user; it may act only for {0}")]
    OtherUser(String),
    /// 401 / `UNAUTHENTICATED`: a service-to-service RPC without the internal credential.
    #[error(
        "this RPC is for the services only: the internal service credential (x-internal-credential) is missing or wrong"
    )]
    NotInternal,
    /// 503 / `UNAVAILABLE`: user-service (or its Redis) could not say whether the token is
    /// still valid.
    #[error(
        "cannot check the token now: user-service or its store is unavailable; try again later"
    )]
    Unavailable(#[source] tonic::Status),
}

impl ApiError for AuthError {
    fn kind(&self) -> Kind {
        match self {
            Self::Missing
            | Self::Invalid(_)
            | Self::Expired
            | Self::Revoked
            | Self::NotInternal => Kind::Unauthenticated,
            Self::OtherUser(_) => Kind::Forbidden,
            Self::Unavailable(_) => Kind::Unavailable,
        }
    }
}

crate::api_error_edges!(AuthError);

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Open mode: nobody is asked who they are; everything is allowed.
    Anyone,
    /// The holder of a valid token of `email`, which expires at `expires_at` (Unix seconds).
    User { email: Email, expires_at: u64 },
}

impl Caller {
    /// Whether this caller may act for `email`: anyone in open mode, else only its own user.
    pub fn authorize(&self, email: &Email) -> Result<(), AuthError> {
        self.authorize_raw(Some(email.as_str()))
    }

    /// [`Caller::authorize`] for an address as a request gives it (perhaps missing or
    /// malformed, which is nobody's).
    pub fn authorize_raw(&self, email: Option<&str>) -> Result<(), AuthError> {
        match self {
            Self::Anyone => Ok(()),
            Self::User { email: own, .. } => {
                let requested = email.and_then(|raw| Email::parse(raw).ok());
                if requested.as_ref() == Some(own) {
                    Ok(())
                } else {
                    Err(AuthError::OtherUser(own.to_string()))
                }
            }
        }
    }

    /// How long the caller's token is still valid; `None` in open mode.
    pub fn expires_in(&self) -> Option<Duration> {
        match self {
            Self::Anyone => None,
            Self::User { expires_at, .. } => {
                Some(Duration::from_secs(expires_at.saturating_sub(unix_now())))
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: Option<&str>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid(
        "expected `Authorization: Bearer <token>`",
    ))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Invalid(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    if token.len() > limits::MAX_FIELD_BYTES * 4 {
        return Err(AuthError::Invalid("too long"));
    }
    Ok(token)
}

// ---------------------------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------------------------

/// Says whether a token signed by us and unexpired still matches its user's account.
pub trait CurrentTokens: Send + Sync + 'static {
    fn is_current<'a>(
        &'a self,
        token: &'a str,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, AuthError>>;
}

/// The one place a service asks who is calling and whether they may; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    keys: TokenKeys,
    current: Arc<dyn CurrentTokens>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("protected", &self.is_on())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// A gate whose revocation check is `current` (user-service checks its own store).
    pub fn new(keys: TokenKeys, current: impl CurrentTokens) -> Self {
        Self {
            keys,
            current: Arc::new(current),
        }
    }

    /// The gate of message-, notification- and frontend-service: revocation is asked of
    /// user-service's `TokenService.ValidateToken` at `user_service_url` (connected lazily, only when
    /// protection is on and a token must be checked), answers cached for [`TOKEN_CACHE_TTL`].
    pub fn via_user_service(keys: TokenKeys, user_service_url: &str) -> anyhow::Result<Self> {
        let users = TokenServiceClient::new(grpc_client::channel(
            "user-service",
            user_service_url,
            keys.internal_credential(),
        )?)
        .max_decoding_message_size(limits::GRPC_MAX_MESSAGE_BYTES);
        Ok(Self::new(
            keys,
            RemoteTokens {
                users,
                cache: Mutex::default(),
            },
        ))
    }

    /// Whether protection is on.
    pub fn is_on(&self) -> bool {
        self.keys.is_on()
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// Installs this gate on an axum router, for [`Caller`]: `router.layer(auth.layer())`.
    pub fn layer(&self) -> axum::Extension<Self> {
        axum::Extension(self.clone())
    }

    /// Who sends a request with this `Authorization` value: [`Caller::Anyone`] in open mode,
    /// else the user of a valid, current token.
    pub async fn caller(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        if !self.is_on() {
            return Ok(Caller::Anyone);
        }
        let token = bearer(authorization)?;
        let claims = self.keys.verify(token)?;
        let email = Email::parse(claims.sub.as_str())
            .map_err(|_| AuthError::Invalid("it names no valid user"))?;
        if !self.current.is_current(token, &claims).await? {
            return Err(AuthError::Revoked);
        }
        Ok(Caller::User {
            email,
            expires_at: claims.exp,
        })
    }

    /// gRPC: the caller of `request` (its `authorization: Bearer <token>` metadata), if it may
    /// act for `email` — the address the request names, as given. In open mode always allowed.
    ///
    /// ```ignore
    /// self.auth.authorize(&request, request.get_ref().user_email.as_deref()).await?;
    /// ```
    pub fn authorize<T>(
        &self,
        request: &tonic::Request<T>,
        email: Option<&str>,
    ) -> impl Future<Output = Result<Caller, tonic::Status>> + Send + 'static {
        let auth = self.clone();
        let authorization = request
            .metadata()
            .get(header::AUTHORIZATION.as_str())
            .map(|value| value.to_str().map(str::to_owned));
        let email = email.map(str::to_owned);
        async move {
            let authorization = match authorization {
                None => None,
                Some(Ok(value)) => Some(value),
                Some(Err(_)) => return Err(AuthError::Invalid("not ASCII").into()),
            };
            let caller = auth.caller(authorization.as_deref()).await?;
            caller.authorize_raw(email.as_deref())?;
            Ok(caller)
        }
    }

    /// gRPC: refuses a service-to-service RPC that does not carry the internal credential
    /// (allowed in open mode).
    pub fn require_internal<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        if !self.is_on() || self.keys.internal_credential().is_carried_by(request) {
            Ok(())
        } else {
            Err(AuthError::NotInternal.into())
        }
    }
}

/// Asks user-service whether tokens are still valid, remembering each "yes" for
/// [`TOKEN_CACHE_TTL`].
struct RemoteTokens {
    users: TokenServiceClient<GrpcChannel>,
    /// Token → when its "still valid" stops being trusted.
    cache: Mutex<HashMap<String, Instant>>,
}

impl RemoteTokens {
    fn cached(&self, token: &str) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(token)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn remember(&self, token: &str) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.retain(|_, until| now < *until);
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), now + TOKEN_CACHE_TTL);
    }
}

impl CurrentTokens for RemoteTokens {
    fn is_current<'a>(
        &'a self,
        token: &'a str,
        _claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, AuthError>> {
        Box::pin(async move {
            if self.cached(token) {
                return Ok(true);
            }
            let backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(400));
            let is_transient = |status: &tonic::Status| status.code() == tonic::Code::Unavailable;
            let reply = retry::within(VALIDATE_RETRY_WINDOW, backoff, is_transient, || {
                let mut users = self.users.clone();
                let request = ValidateTokenRequest {
                    token: Some(token.to_owned()),
                };
                async move { users.validate_token(request).await }
            })
            .await
            .map_err(|status| {
                tracing::error!(code = ?status.code(), message = status.message(), "ValidateToken failed");
                AuthError::Unavailable(status)
            })?;
            let valid = reply.into_inner().valid == Some(true);
            if valid {
                self.remember(token);
            }
            Ok(valid)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP extractors
// ---------------------------------------------------------------------------------------------

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    /// The caller of an HTTP request, from its `Authorization` header, checked by the [`Auth`]
    /// installed with [`Auth::layer`]. A refusal is the JSON 401 (with
    /// `WWW-Authenticate: Bearer`) or 503.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(auth) = parts.extensions.get::<Auth>().cloned() else {
            tracing::error!("a handler asks for the Caller on a router without Auth::layer");
            return Err(crate::http::error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        };
        let authorization = match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(value) => Some(value),
                Err(_) => return Err(refusal(&AuthError::Invalid("not ASCII"))),
            },
        };
        auth.caller(authorization)
            .await
            .map_err(|err| refusal(&err))
    }
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

/// The address an HTTP request comes from (the TCP peer: a proxy in front is one address for
/// all its clients), if the server recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(&AuthConfig::protected(secret, DEFAULT_TOKEN_TTL).expect("long enough"))
    }

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid")
    }

    #[test]
    fn a_short_secret_is_refused_with_its_length() {
        let err = AuthConfig::protected(b"too-short", DEFAULT_TOKEN_TTL).expect_err("short");
        assert!(err.to_string().contains("9 bytes"), "{err}");
        assert!(err.to_string().contains("32"), "{err}");
    }

    #[test]
    fn the_debug_form_never_shows_the_secret() {
        let config = AuthConfig::protected(&[b'x'; 40], DEFAULT_TOKEN_TTL).expect("long enough");
        assert!(!format!("{config:?}").contains("xxxx"));
    }

    #[test]
    fn a_token_verifies_with_its_keys_only() {
        let ours = keys(&[1; 32]);
        let issued = ours.issue(&email("a@b.io"), "v".into()).expect("signed");
        let claims = ours.verify(&issued.token).expect("valid");
        assert_eq!(claims.sub, "a@b.io");
        assert_eq!(claims.exp - claims.iat, 3600);
        assert!(matches!(
            keys(&[2; 32]).verify(&issued.token),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(ours.verify("a.b.c"), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let ours = keys(&[1; 32]);
        let now = unix_now();
        let claims = Claims {
            sub: "a@b.io".into(),
            iat: now - 100,
            exp: now - 1,
            ver: "v".into(),
        };
        let token = ours.sign(&claims).expect("signed");
        assert!(matches!(ours.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn the_version_changes_with_the_hash_and_the_generation() {
        let ours = keys(&[1; 32]);
        assert_eq!(ours.version("h", 0), ours.version("h", 0));
        assert_ne!(ours.version("h", 0), ours.version("h2", 0));
        assert_ne!(ours.version("h", 0), ours.version("h", 1));
        assert_ne!(ours.version("h", 0), keys(&[2; 32]).version("h", 0));
    }

    #[test]
    fn the_internal_credential_exists_only_when_protected() {
        let open = TokenKeys::new(&AuthConfig::open(DEFAULT_TOKEN_TTL));
        assert!(open.internal_credential().0.is_none());
        let on = keys(&[1; 32]);
        let mut request = tonic::Request::new(());
        assert!(!on.internal_credential().is_carried_by(&request));
        on.internal_credential().attach(&mut request);
        assert!(on.internal_credential().is_carried_by(&request));
        assert!(!keys(&[2; 32]).internal_credential().is_carried_by(&request));
    }

    #[test]
    fn the_internal_credential_is_the_documented_hmac_of_the_secret() {
        // printf internal-service | openssl dgst -sha256 -hmac '<secret>'
        let secret = b"an-auth-secret-of-at-least-32-bytes!!";
        let credential = keys(secret).internal_credential().0.clone();
        assert_eq!(
            credential.as_ref().and_then(|value| value.to_str().ok()),
            Some("0be1a809f4bffa80228d22e184e6e2c70016ddbe0ca0b949cdacf192cc9f00aa")
        );
    }

    #[test]
    fn bearer_values_are_parsed_strictly() {
        assert_eq!(bearer(Some("Bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")).ok(), Some("abc"));
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        for bad in ["abc", "Basic abc", "Bearer", "Bearer  "] {
            assert!(
                matches!(bearer(Some(bad)), Err(AuthError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_user_may_act_only_for_itself() {
        let caller = Caller::User {
            email: email("a@b.io"),
            expires_at: u64::MAX,
        };
        assert!(caller.authorize(&email("a@b.io")).is_ok());
        assert!(caller.authorize_raw(Some("a@B.IO")).is_ok());
        assert!(matches!(
            caller.authorize(&email("c@b.io")),
            Err(AuthError::OtherUser(_))
        ));
        assert!(caller.authorize_raw(None).is_err());
        assert!(caller.authorize_raw(Some("nonsense")).is_err());
        assert!(Caller::Anyone.authorize_raw(None).is_ok());
    }
}
