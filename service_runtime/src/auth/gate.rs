//! The gate: who sends a request, checked against the keys and the account's current state.

use std::{fmt, sync::Arc};

use futures::future::BoxFuture;

use super::{AuthError, Caller, Claims, TokenKeys, caller::bearer, remote::RemoteTokens};
use crate::{email::Email, grpc_client::UserServicePeer};

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
    /// user-service's `TokenService.ValidateToken` at `user_service` (connected lazily, only when
    /// protection is on and a token must be checked), answers cached for [`TOKEN_CACHE_TTL`].
    pub fn via_user_service(
        keys: TokenKeys,
        user_service: &UserServicePeer,
    ) -> anyhow::Result<Self> {
        let users = user_service.channel(keys.internal_credential())?;
        Ok(Self::new(keys, RemoteTokens::new(users)))
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
}
