//! Password hashing: argon2id with OWASP's minimum parameters, off the async workers, in
//! reused memory.
//!
//! m = 7168 KiB, t = 5, p = 1 is one of OWASP's equivalent minimum settings; of those it uses
//! the least memory, which matters with a 25 MB RSS target per process. Each hash runs on the
//! blocking pool and a semaphore bounds how many run at once: one CPU is always left to the
//! async workers, so sign-ups never stall lookups.
//!
//! Verifications (`POST /login`, `AuthenticateUser`, a `current_password`) go first: new
//! passwords (sign-ups, password changes) pass one more gate, which lets at most
//! `permits - 1` of them (at least one) hold or wait for a permit at a time, so a verification
//! waits behind at most one hash however many sign-ups arrive (tokio's semaphore is FIFO).
//! Past [`MAX_WAITING_HASHES`] new passwords waiting at that gate, a further one is refused at
//! once (429, `Retry-After: 1`) rather than queued. Each permit owns one preallocated argon2
//! working area that is reused: allocating and freeing 7 MiB per hash made glibc keep
//! freed areas in its per-thread arenas (measured: 255 MB peak RSS after a few dozen hashes,
//! against 9 MB for the other services).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordVerifier, Version};
use password_hash::{Output, ParamsString, SaltString, rand_core::OsRng};
use tokio::sync::Semaphore;

use crate::{domain::Password, error::Error};

const MEMORY_KIB: u32 = 7168;
const ITERATIONS: u32 = 5;
const PARALLELISM: u32 = 1;
/// Most hashes at once, whatever the CPU count: each holds 7 MiB for good.
const MAX_CONCURRENT_HASHES: usize = 2;
/// Most new passwords waiting for their turn; a further one is refused at once.
pub const MAX_WAITING_HASHES: usize = 32;
/// What a refused new password is told to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The hash of a random password nobody knows, with the current parameters. Verifying an
/// unknown user's password against it costs what a real verification costs, so the answer's
/// timing does not tell whether the user exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=7168,t=5,p=1$eNelxRPexEGaxMLaVZmjtg$wDpKFeFxL8Q7sqxh/PqwaQKICVNkjbwS2fvL2jQ7tj0";

/// argon2 of `password` with `salt` (as written in a PHC string), `len` bytes long, computed in
/// `memory`.
fn compute(
    argon2: &Argon2<'_>,
    password: &str,
    salt: password_hash::Salt<'_>,
    len: usize,
    memory: &mut [Block],
) -> Result<Output, password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    Output::init_with(len, |out| {
        Ok(argon2.hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, memory)?)
    })
}

/// Whether a hash made with `stored` needs exactly the working area of `ours`.
fn same_costs(stored: &Params, ours: &Params) -> bool {
    (stored.m_cost(), stored.t_cost(), stored.p_cost())
        == (ours.m_cost(), ours.t_cost(), ours.p_cost())
}

/// Hashes and verifies passwords with a bounded number running at once.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Taken by a new password before it asks for a permit: fewer than the permits (but one),
    /// so verifications are never queued behind more than one hash.
    new_passwords: Semaphore,
    /// New passwords waiting at `new_passwords`.
    waiting: AtomicUsize,
    /// Working areas not in use; never more than there are permits.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// Counts a new password as waiting while it is alive.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PasswordHasher {
    /// One permit per CPU but one (at least one, at most [`MAX_CONCURRENT_HASHES`]).
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
            .map_err(|err| anyhow::anyhow!("argon2 parameters: {err}"))?;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let permits = cpus.saturating_sub(1).clamp(1, MAX_CONCURRENT_HASHES);
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(permits)),
            new_passwords: Semaphore::new(permits.saturating_sub(1).max(1)),
            waiting: AtomicUsize::new(0),
            memory: Arc::default(),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>`) of `password` with a
    /// fresh random salt; after the verifications waiting, or refused
    /// ([`Error::TooManyAttempts`]) when [`MAX_WAITING_HASHES`] are waiting already.
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING_HASHES {
            tracing::warn!("new password refused: too many waiting to be hashed");
            return Err(Error::TooManyAttempts {
                reason: "too many sign-ups and password changes in progress",
                retry_after: BUSY_RETRY_AFTER,
            });
        }
        let _turn = self
            .new_passwords
            .acquire()
            .await
            .context("the new-password semaphore is closed")?;
        drop(waiting);
        let argon2 = self.argon2.clone();
        let password = password.expose().to_owned();
        self.run(move |memory| {
            let salt = SaltString::generate(&mut OsRng);
            let output = compute(
                &argon2,
                &password,
                salt.as_salt(),
                Params::DEFAULT_OUTPUT_LEN,
                memory,
            )?;
            let hash = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(argon2.params())?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(hash.to_string())
        })
        .await
    }

    /// Whether `password` matches the PHC string `stored`; `None` (no such user) verifies
    /// against a dummy hash and answers false, taking as long as a real check.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, Error> {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        self.run(move |memory| {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let hash = PasswordHash::new(&stored)?;
            let matches = match (hash.salt, &hash.hash) {
                // Our own parameters: recompute in the reused memory.
                (Some(salt), Some(expected))
                    if hash.algorithm == Algorithm::Argon2id.ident()
                        && hash.version == Some(Version::V0x13.into())
                        && Params::try_from(&hash)
                            .is_ok_and(|params| same_costs(&params, argon2.params())) =>
                {
                    let computed = compute(&argon2, &password, salt, expected.len(), memory)?;
                    // `Output`'s equality is constant-time.
                    computed == *expected
                }
                // A hash made with other parameters (or another algorithm): argon2's own
                // verifier, which allocates what those parameters need.
                _ => Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok(),
            };
            Ok(known && matches)
        })
        .await
    }

    /// Runs `work` on the blocking pool with a permit and a working area of its own.
    async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce(&mut [Block]) -> Result<T, password_hash::Error> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the password semaphore is closed")?;
        let pool = Arc::clone(&self.memory);
        let blocks = self.argon2.params().block_count();
        let result = tokio::task::spawn_blocking(move || {
            let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let mut memory = taken.unwrap_or_else(|| vec![Block::default(); blocks]);
            let result = work(&mut memory);
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
            result
        })
        .await
        .context("password hashing task panicked")?;
        Ok(result.map_err(|err| anyhow::anyhow!("password hashing: {err}"))?)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn a_hash_is_an_argon2id_phc_string_that_verifies_only_its_password() {
        let hasher = PasswordHasher::new().expect("valid parameters");
        let hash = hasher
            .hash(&Password::for_test("s3cret"))
            .await
            .expect("hashed");
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert!(
            hasher
                .verify("s3cret", Some(hash.clone()))
                .await
                .expect("verified")
        );
        assert!(!hasher.verify("wrong", Some(hash)).await.expect("verified"));
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_full_verification() {
        let hasher = PasswordHasher::new().expect("valid parameters");
        let areas = || hasher.memory.lock().map_or(0, |pool| pool.len());
        assert_eq!(areas(), 0);

        assert!(!hasher.verify("anything", None).await.expect("verified"));

        // A working area only enters the pool after an argon2 computation ran in it: the
        // unknown user was verified against the dummy hash, not answered early.
        assert_eq!(areas(), 1);
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_still_verifies() {
        use argon2::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let legacy = Argon2::default()
            .hash_password(b"old-s3cret", &salt)
            .expect("hashed")
            .to_string();
        let hasher = PasswordHasher::new().expect("valid parameters");
        assert!(
            hasher
                .verify("old-s3cret", Some(legacy.clone()))
                .await
                .expect("verified")
        );
        assert!(
            !hasher
                .verify("wrong", Some(legacy))
                .await
                .expect("verified")
        );
    }

    #[tokio::test]
    async fn new_passwords_past_the_waiting_limit_are_refused_at_once() {
        let hasher = PasswordHasher::new().expect("valid parameters");
        // Every turn taken: whatever arrives now has to wait.
        let turns = u32::try_from(hasher.new_passwords.available_permits()).expect("few");
        let _all_turns = hasher
            .new_passwords
            .acquire_many(turns)
            .await
            .expect("open");
        let password = Password::for_test("s3cret");
        let mut waiting: Vec<_> = (0..MAX_WAITING_HASHES)
            .map(|_| Box::pin(hasher.hash(&password)))
            .collect();
        for future in &mut waiting {
            assert!(future.as_mut().now_or_never().is_none(), "it waits");
        }
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), MAX_WAITING_HASHES);

        let refused = hasher.hash(&password).await;
        assert!(
            matches!(refused, Err(Error::TooManyAttempts { .. })),
            "{refused:?}"
        );
        drop(waiting);
        assert_eq!(hasher.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_dummy_hash_uses_the_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        let params = Params::try_from(&parsed).expect("argon2 parameters");
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (MEMORY_KIB, ITERATIONS, PARALLELISM)
        );
    }
}
