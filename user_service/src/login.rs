//! Checking passwords with brute-force limits, issuing login tokens and telling whether a token
//! still matches its account — for `POST /login`, `AuthenticateUser`, `ValidateToken` and this
//! service's own protected endpoints.
//!
//! Two limits, in both modes:
//! - **per email** (`LOGIN_MAX_FAILURES` failures within `LOGIN_FAILURE_WINDOW`): counted in
//!   Redis (`login_failures:{email}`), so every replica shares it. Once reached, every attempt
//!   for that email — even with the right password — is refused (429 / `RESOURCE_EXHAUSTED`)
//!   until the window that started with the first failure is over; a success resets the count.
//! - **per client address** (`LOGIN_ATTEMPTS_PER_ADDRESS` a minute, as a burst that refills
//!   evenly; 0 turns it off): a `governor` rate limiter in this process, checked before any
//!   password work. An IPv6 client is limited per /64, the block one subscriber usually has.
//!
//! Sign-ups and password changes (each hashes a new password) have a per-address limit of
//! their own, `NEW_PASSWORDS_PER_ADDRESS` a minute, of the same kind ([`AddressLimit`]).

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use service_runtime::{
    auth::{AuthError, Claims, CurrentTokens, IssuedToken, TokenKeys},
    config::{parse_duration, positive},
    email::Email,
    shutdown::Shutdown,
};

use crate::{error::Error, password::PasswordHasher, store::Store};

/// Default `LOGIN_MAX_FAILURES`.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default `LOGIN_FAILURE_WINDOW`.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Default `LOGIN_ATTEMPTS_PER_ADDRESS` (a minute).
pub const DEFAULT_ATTEMPTS_PER_ADDRESS: u32 = 30;
/// Default `NEW_PASSWORDS_PER_ADDRESS` (a minute).
pub const DEFAULT_NEW_PASSWORDS_PER_ADDRESS: u32 = 10;
/// How often addresses that have refilled their allowance are forgotten.
const FORGET_IDLE_ADDRESSES_EVERY: Duration = Duration::from_secs(60);

/// The brute-force limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct LoginLimits {
    /// Failed logins for one email before it is locked.
    #[arg(long = "login-max-failures", env = "LOGIN_MAX_FAILURES", default_value_t = DEFAULT_MAX_FAILURES, value_parser = positive::<u32>)]
    pub max_failures: u32,
    /// How long failures are counted, and an address locked, from the first failure.
    #[arg(long = "login-failure-window", env = "LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub failure_window: Duration,
    /// Login attempts a minute from one client address; 0 = off.
    #[arg(long = "login-attempts-per-address", env = "LOGIN_ATTEMPTS_PER_ADDRESS", default_value = "30", value_parser = per_address)]
    pub attempts_per_address: PerAddress,
    /// Sign-ups and password changes a minute from one client address; 0 = off.
    #[arg(long = "new-passwords-per-address", env = "NEW_PASSWORDS_PER_ADDRESS", default_value = "10", value_parser = per_address)]
    pub new_passwords_per_address: PerAddress,
}

/// Attempts a minute from one address; `None`: no such limit. (An alias, so that clap takes
/// the parsed value as it is rather than as an optional flag.)
pub type PerAddress = Option<NonZeroU32>;

fn per_address(raw: &str) -> Result<PerAddress, String> {
    let attempts: u32 = raw.trim().parse().map_err(|err| format!("{err}"))?;
    Ok(NonZeroU32::new(attempts))
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            failure_window: DEFAULT_FAILURE_WINDOW,
            attempts_per_address: NonZeroU32::new(DEFAULT_ATTEMPTS_PER_ADDRESS),
            new_passwords_per_address: NonZeroU32::new(DEFAULT_NEW_PASSWORDS_PER_ADDRESS),
        }
    }
}

/// A number of attempts a minute per client address (a burst that refills evenly), in this
/// process; cheap to clone. An IPv6 client is limited per /64.
#[derive(Clone)]
pub struct AddressLimit {
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// What is refused, for the reply: "too many {what} from this address".
    refusal: &'static str,
}

impl AddressLimit {
    /// `per_minute` attempts a minute (`None`: no limit); refused with `refusal`.
    pub fn new(per_minute: PerAddress, refusal: &'static str) -> Self {
        Self {
            limiter: per_minute
                .map(|per_minute| Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute)))),
            refusal,
        }
    }

    /// Takes one attempt from the client address's allowance; a request without a known
    /// address is not limited here.
    pub fn admit(&self, from: Option<IpAddr>) -> Result<(), Error> {
        let (Some(limiter), Some(addr)) = (&self.limiter, from) else {
            return Ok(());
        };
        let addr = client_key(addr);
        limiter.check_key(&addr).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            tracing::warn!(%addr, ?retry_after, refusal = self.refusal, "refused: too many attempts from this address");
            Error::TooManyAttempts {
                reason: self.refusal,
                retry_after,
            }
        })
    }

    /// Forgets, now and then, the addresses whose allowance is full again, so the limiter's
    /// memory follows the active clients; returns at shutdown.
    pub async fn forget_idle_addresses(self, shutdown: Shutdown) {
        let Some(limiter) = self.limiter else {
            return;
        };
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(FORGET_IDLE_ADDRESSES_EVERY) => {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        }
    }
}

/// Password checks and tokens; cheap to clone.
#[derive(Clone)]
pub struct Logins {
    store: Store,
    passwords: Arc<PasswordHasher>,
    keys: TokenKeys,
    limits: LoginLimits,
    per_address: AddressLimit,
}

impl Logins {
    pub fn new(
        store: Store,
        passwords: Arc<PasswordHasher>,
        keys: TokenKeys,
        limits: LoginLimits,
    ) -> Self {
        let per_address = AddressLimit::new(
            limits.attempts_per_address,
            "too many login attempts from this address",
        );
        Self {
            store,
            passwords,
            keys,
            limits,
            per_address,
        }
    }

    /// `POST /login`: a token if `password` is the user's; [`Error::InvalidCredentials`] for an
    /// unknown user or a wrong password alike (same reply, same work).
    pub async fn login(
        &self,
        email: &Email,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<IssuedToken, Error> {
        let version = self
            .check(email, password, from)
            .await?
            .ok_or(Error::InvalidCredentials)?;
        Ok(self.keys.issue(email, version)?)
    }

    /// `AuthenticateUser`, and the `current_password` of a sensitive change: whether
    /// `password` is the user's, under the same limits as login (a wrong one counts as a
    /// failed login).
    pub async fn authenticate(
        &self,
        email: &Email,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<bool, Error> {
        Ok(self.check(email, password, from).await?.is_some())
    }

    /// The account version a token issued now would carry, if `password` is the user's. An
    /// unknown user is verified against a dummy hash: same answer, same time as a wrong
    /// password.
    async fn check(
        &self,
        email: &Email,
        password: &str,
        from: Option<IpAddr>,
    ) -> Result<Option<String>, Error> {
        self.per_address.admit(from)?;
        if let Some(locked_for) = self
            .store
            .begin_login_attempt(email, self.limits.max_failures, self.limits.failure_window)
            .await?
        {
            tracing::warn!(%email, ?locked_for, "login refused: too many failures");
            return Err(Error::TooManyAttempts {
                reason: "too many failed login attempts for this email",
                retry_after: locked_for,
            });
        }
        let credentials = self.store.credentials(email).await?;
        let (stored, generation) = match credentials {
            Some(credentials) => (Some(credentials.password_hash), credentials.generation),
            None => (None, 0),
        };
        let version = stored
            .as_deref()
            .map(|hash| self.keys.version(hash, generation));
        if self.passwords.verify(password, stored).await? {
            self.store.clear_login_failures(email).await?;
            Ok(version)
        } else {
            Ok(None)
        }
    }

    /// Whether a token's claims (signature and expiry already checked) still match the
    /// account: the user exists at that address with the password hash and generation the
    /// token was issued for.
    pub async fn token_is_current(&self, claims: &Claims) -> Result<bool, Error> {
        let Ok(email) = Email::parse(claims.sub.as_str()) else {
            return Ok(false);
        };
        Ok(self
            .store
            .credentials(&email)
            .await?
            .is_some_and(|current| {
                self.keys
                    .version(&current.password_hash, current.generation)
                    == claims.ver
            }))
    }

    /// Whether protection is on (`AUTH_SECRET` set).
    pub fn protected(&self) -> bool {
        self.keys.is_on()
    }

    /// The per-address limit of login attempts, for its upkeep worker.
    pub fn address_limit(&self) -> AddressLimit {
        self.per_address.clone()
    }
}

impl CurrentTokens for Logins {
    fn is_current<'a>(
        &'a self,
        _token: &'a str,
        claims: &'a Claims,
    ) -> BoxFuture<'a, Result<bool, AuthError>> {
        Box::pin(async move {
            self.token_is_current(claims)
                .await
                .map_err(|err| AuthError::Unavailable(err.into()))
        })
    }
}

/// The key an address is limited under: IPv4 (also IPv4-mapped IPv6) as it is, IPv6 by its /64.
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::client_key;

    #[test]
    fn ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let key = |raw: &str| client_key(raw.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), key("2001:db8:1:2:ffff::1"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:127.0.0.1"), key("127.0.0.1"));
        assert_eq!(key("10.0.0.1").to_string(), "10.0.0.1");
    }
}
