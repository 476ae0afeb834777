//! Opt-in protection, one mechanism for every service: login tokens, who may act for which
//! user, and the credential the services present to each other.
//!
//! `AUTH_SECRET` (at least [`MIN_SECRET_BYTES`] bytes, the same on all four services) switches
//! it on. Unset, a service is in *open mode*: every request is allowed exactly as in the
//! original system; `POST /login` still issues tokens (signed with a random key of the process)
//! but nothing asks for them.
//!
//! When it is on:
//! - **Tokens** ([`keys`]) are JWTs signed with HS256 (`jsonwebtoken`) under a key derived
//!   from the secret, with claims `sub` (the email), `iat`, `exp` (`AUTH_TOKEN_TTL` after
//!   issue) and `ver`. `ver` binds the token to the user's current account: an HMAC of the
//!   stored password hash (a new password has a new random salt, so a new hash) and of the
//!   address's token generation (bumped when a user moves away from the address). A token
//!   therefore stops working when its user is deleted, changes password or changes email. Only
//!   user-service can compute `ver` (it owns Redis DB 0); the other services check signature
//!   and expiry themselves and ask user-service's `TokenService.ValidateToken` for the rest
//!   ([`remote`]), remembering a "still valid" for [`TOKEN_CACHE_TTL`].
//! - **HTTP handlers** take a [`Caller`] (an axum extractor, [`extract`]) and ask whether it
//!   may act for the user a request names: a missing, malformed, forged or expired token is
//!   401; another user's valid token is 403. The token is the `Authorization: Bearer` header,
//!   else the [`TOKEN_COOKIE`] cookie, else the [`TOKEN_PARAM`] query parameter (browsers).
//! - **gRPC** is guarded by one declared table per service ([`access`]): each RPC is public,
//!   for the services it lists only, for the user a request field names, or either. Each
//!   service has its own internal credential — HMAC-SHA256(secret, `"internal-service:" +
//!   name`), hex, in the `x-internal-credential` metadata beside its name in
//!   `x-internal-caller`, which every channel from `grpc_client` attaches — and it opens only
//!   the RPCs whose list names that service (a valid credential of another service is
//!   `PERMISSION_DENIED`). A server whose table misses one of its RPCs does not start, so a
//!   new RPC cannot forget its check.

pub mod access;
mod caller;
mod config;
mod extract;
mod gate;
mod keys;
mod remote;

use std::time::Duration;

pub use access::{Access, AccessTable};
pub use caller::{AuthError, Caller};
pub use config::AuthConfig;
pub use extract::{Authorization, TOKEN_COOKIE, TOKEN_PARAM, redact_query};
pub use gate::{Auth, CurrentTokens};
pub use keys::{Claims, IssuedToken, TokenKeys};

pub use crate::grpc_client::ServiceName;

/// The variable that switches protection on.
pub const SECRET_VAR: &str = "AUTH_SECRET";
/// Shortest `AUTH_SECRET` accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// How long a token is valid unless `AUTH_TOKEN_TTL` says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How long message-, notification- and frontend-service trust user-service's answer that a
/// token is still valid: a token revoked (password or email changed, user deleted) may still
/// be accepted there for this long; user-service itself never caches.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);
