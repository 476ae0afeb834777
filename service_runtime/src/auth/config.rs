//! What turns protection on: the `AUTH_SECRET` and `AUTH_TOKEN_TTL` settings.

use std::{fmt, sync::Arc, time::Duration};

use super::{MIN_SECRET_BYTES, SECRET_VAR};

/// What every service reads about protection: `AUTH_SECRET` and `AUTH_TOKEN_TTL`.
#[derive(Clone, clap::Args)]
pub struct AuthConfig {
    /// Turns protection on: at least 32 bytes, the same on all four services (generate one
    /// with `openssl rand -base64 48`). Unset or empty: open mode, as the original system.
    #[arg(long = "auth-secret", env = SECRET_VAR, hide_env_values = true, value_parser = parse_secret)]
    pub(super) secret: Option<Secret>,
    /// How long a login token is valid.
    #[arg(long = "auth-token-ttl", env = "AUTH_TOKEN_TTL", default_value = "1h", value_parser = crate::config::parse_duration)]
    pub token_ttl: Duration,
}

/// The secret's bytes; never printed.
#[derive(Clone)]
pub(super) struct Secret(pub(super) Arc<[u8]>);

fn parse_secret(raw: &str) -> Result<Secret, String> {
    if raw.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{SECRET_VAR} is {} bytes long; it must be at least {MIN_SECRET_BYTES} \
             (generate one with `openssl rand -base64 48`), or unset for open mode",
            raw.len()
        ));
    }
    Ok(Secret(Arc::from(raw.as_bytes())))
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
    /// Open mode: nothing is checked, as in the original system.
    pub fn open(token_ttl: Duration) -> Self {
        Self {
            secret: None,
            token_ttl,
        }
    }

    /// Protection on with `secret`; refused if it is shorter than [`MIN_SECRET_BYTES`].
    pub fn protected(secret: &[u8], token_ttl: Duration) -> anyhow::Result<Self> {
        let secret = std::str::from_utf8(secret)
            .map_err(|_| anyhow::anyhow!("{SECRET_VAR} must be text"))
            .and_then(|secret| parse_secret(secret).map_err(anyhow::Error::msg))?;
        Ok(Self {
            secret: Some(secret),
            token_ttl,
        })
    }

    /// Whether protection is on.
    pub fn is_on(&self) -> bool {
        self.secret.is_some()
    }
}
