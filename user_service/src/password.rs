//! Password hashing: argon2id with OWASP's minimum parameters, off the async workers.
//!
//! m = 7168 KiB, t = 5, p = 1 is one of OWASP's equivalent minimum settings; of those it uses
//! the least memory, which matters with a 25 MB RSS target per process. Each hash runs on the
//! blocking pool, and a semaphore (one permit per CPU) bounds how many run at once, so a burst
//! of sign-ups costs at most `CPUs × 7 MiB` and never stalls the async workers.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
};
use password_hash::{SaltString, rand_core::OsRng};
use tokio::sync::Semaphore;

use crate::{domain::Password, error::Error};

const MEMORY_KIB: u32 = 7168;
const ITERATIONS: u32 = 5;
const PARALLELISM: u32 = 1;

/// The hash of a random password nobody knows, with the current parameters. Verifying an
/// unknown user's password against it costs what a real verification costs, so the answer's
/// timing does not tell whether the user exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=7168,t=5,p=1$eNelxRPexEGaxMLaVZmjtg$wDpKFeFxL8Q7sqxh/PqwaQKICVNkjbwS2fvL2jQ7tj0";

/// Hashes and verifies passwords with a bounded number running at once.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    /// One permit per available CPU.
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
            .map_err(|err| anyhow::anyhow!("argon2 parameters: {err}"))?;
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(cpus)),
        })
    }

    /// The PHC string (`$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>`) of `password` with a
    /// fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, Error> {
        let argon2 = self.argon2.clone();
        let password = password.expose().to_owned();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
        })
        .await
    }

    /// Whether `password` matches the PHC string `stored`; `None` (no such user) verifies
    /// against a dummy hash and answers false, taking as long as a real check.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Result<bool, Error> {
        let argon2 = self.argon2.clone();
        let password = password.to_owned();
        self.run(move || {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
            let hash = PasswordHash::new(&stored)
                .map_err(|err| anyhow::anyhow!("stored password hash does not parse: {err}"))?;
            let matches = argon2.verify_password(password.as_bytes(), &hash).is_ok();
            Ok(known && matches)
        })
        .await
    }

    async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("the password semaphore is closed")?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task panicked")?;
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
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
    async fn an_unknown_user_never_authenticates() {
        let hasher = PasswordHasher::new().expect("valid parameters");
        assert!(!hasher.verify("anything", None).await.expect("verified"));
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
