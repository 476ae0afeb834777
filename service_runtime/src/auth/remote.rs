//! Revocation asked of user-service, for the services that do not own the accounts.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::Instant,
};

use futures::future::BoxFuture;
use proto::user_service::{ValidateTokenRequest, token_service_client::TokenServiceClient};

use super::{AuthError, Claims, CurrentTokens, TOKEN_CACHE_TTL};
use crate::{grpc_client::GrpcChannel, retry};

/// Most tokens remembered as valid at once.
const TOKEN_CACHE_MAX: usize = 10_000;

/// Asks user-service whether tokens are still valid, remembering each "yes" for
/// [`TOKEN_CACHE_TTL`].
pub(super) struct RemoteTokens {
    users: TokenServiceClient<GrpcChannel>,
    /// Token → when its "still valid" stops being trusted.
    cache: Mutex<HashMap<String, Instant>>,
}

impl RemoteTokens {
    pub(super) fn new(users: GrpcChannel) -> Self {
        Self {
            users: TokenServiceClient::new(users)
                .max_decoding_message_size(crate::limits::GRPC_MAX_MESSAGE_BYTES),
            cache: Mutex::default(),
        }
    }

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
            let reply = retry::retry_unavailable(|| {
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
