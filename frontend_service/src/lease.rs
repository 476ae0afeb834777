//! How long an open watch (gRPC or SSE) may last with protection on: until its token expires,
//! or until a re-check refuses it. Every [`TOKEN_CACHE_TTL`] the gate is asked again
//! (signature, expiry, and user-service's `ValidateToken`, whose "yes" is trusted for that
//! long), so a token revoked by a password or email change or the account's deletion ends
//! every watch opened with it within 2 × [`TOKEN_CACHE_TTL`].

use std::time::Duration;

use service_runtime::auth::{Auth, AuthError, Caller, TOKEN_CACHE_TTL};

/// What ends a watch besides its watcher and shutdown.
pub struct Lease {
    expires_in: Option<Duration>,
    /// The gate and the `Authorization` value to ask it about again.
    recheck: Option<(Auth, String)>,
}

impl Lease {
    /// The lease of a watch opened by `caller` with `authorization`: in open mode (or without
    /// a token) nothing to check, and no end.
    pub fn of(caller: &Caller, auth: &Auth, authorization: Option<String>) -> Self {
        let recheck = match (caller, authorization) {
            (Caller::User { .. }, Some(authorization)) => Some((auth.clone(), authorization)),
            _ => None,
        };
        Self {
            expires_in: caller.expires_in(),
            recheck,
        }
    }

    /// Resolves when the watch must end: `None` when its token merely expired (the watch ends
    /// quietly; the watcher renews by logging in again and resuming with its last cursor),
    /// else why its token no longer admits it.
    pub async fn ended(self) -> Option<AuthError> {
        if self.expires_in.is_none() && self.recheck.is_none() {
            return std::future::pending().await;
        }
        // Boxed: its timers and re-check are hundreds of bytes, which a watch's task holds
        // only where there is something to wait for (not in open mode).
        Box::pin(self.until_ended()).await
    }

    async fn until_ended(self) -> Option<AuthError> {
        let expiry = async {
            match self.expires_in {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        let refused = async {
            match self.recheck {
                Some((auth, authorization)) => until_refused(auth, authorization).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = expiry => None,
            refused = refused => refused,
        }
    }
}

/// Asks the gate about the watch's token every [`TOKEN_CACHE_TTL`] until it is refused; why,
/// or `None` when it merely expired.
async fn until_refused(auth: Auth, authorization: String) -> Option<AuthError> {
    loop {
        tokio::time::sleep(TOKEN_CACHE_TTL).await;
        // Boxed: the re-check's call is kilobytes, held only while it is under way.
        match Box::pin(auth.caller(Some(&authorization))).await {
            Ok(_) => {}
            Err(AuthError::Expired) => return None,
            Err(err) => {
                tracing::info!(error = %err, "watch ended: its token no longer admits it");
                return Some(err);
            }
        }
    }
}
