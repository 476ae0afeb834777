//! The rules of user accounts, between the handlers (which only translate requests and
//! replies) and the store (which only knows keys and scripts): a new or moved address is
//! subscribed to notifications before the request answers, updates are compare-and-swap
//! retried, passwords are checked against the policy and hashed (`login.rs` verifies them);
//! a deleted or moved account's data is forgotten or carried through the account outbox. A
//! new password (sign-up, password change) is taken only within its client address's
//! allowance (`NEW_PASSWORDS_PER_ADDRESS`).

use std::{net::IpAddr, sync::Arc};

use service_runtime::{email::Email, outbox::Outbox};

use crate::{
    domain::{NewUser, PasswordPolicy, UserRecord, UserUpdate},
    error::Error,
    login::AddressLimit,
    password::PasswordHasher,
    store::{AccountChange, Created, Moved, Replaced, Store, SubscriptionRequest},
};

/// Compare-and-swap attempts of an update before giving up with [`Error::Conflict`].
const UPDATE_ATTEMPTS: usize = 10;

/// The subscription outbox of user-service.
pub type SubscriptionOutbox = Outbox<SubscriptionRequest>;

/// The account outbox of user-service (deleted and moved accounts, see `lifecycle.rs`).
pub type AccountOutbox = Outbox<AccountChange>;

/// user-service's operations; cheap to clone, shared by the HTTP and gRPC handlers.
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    passwords: Arc<PasswordHasher>,
    subscriptions: SubscriptionOutbox,
    changes: AccountOutbox,
    policy: PasswordPolicy,
    new_passwords: AddressLimit,
}

impl Accounts {
    pub fn new(
        store: Store,
        passwords: Arc<PasswordHasher>,
        subscriptions: SubscriptionOutbox,
        changes: AccountOutbox,
        policy: PasswordPolicy,
        new_passwords: AddressLimit,
    ) -> Self {
        Self {
            store,
            passwords,
            subscriptions,
            changes,
            policy,
            new_passwords,
        }
    }

    /// The per-address limit of new passwords, for its upkeep worker.
    pub fn address_limit(&self) -> AddressLimit {
        self.new_passwords.clone()
    }

    /// Stores a new user and subscribes it; [`Error::AlreadyExists`] if the address is taken.
    ///
    /// The subscription is written with the user (a durable outbox entry) and delivered
    /// inline, so when notification-service is reachable the answer means "subscribed"; when
    /// it is not, the answer comes anyway and the outbox worker subscribes the user later.
    pub async fn create(&self, user: NewUser, from: Option<IpAddr>) -> Result<UserRecord, Error> {
        self.policy.check("password", &user.password)?;
        self.new_passwords.admit(from)?;
        // Hashing is the expensive part; a cheap look first spares it for obvious duplicates.
        // The SET NX in the store is what decides a race.
        if self.store.exists(&user.email).await? {
            return Err(Error::AlreadyExists);
        }
        let record = UserRecord {
            name: user.name,
            email: user.email.into_string(),
            password: self.passwords.hash(&user.password).await?,
        };
        match self.store.create(&record).await? {
            Created::New { subscription_entry } => {
                self.subscribe_now(&subscription_entry, &record.email).await;
            }
            Created::Repeated => {}
            Created::Exists => return Err(Error::AlreadyExists),
        }
        Ok(record)
    }

    /// Applies `update`: read, change, compare-and-swap; read again when someone else wrote
    /// in between, so no concurrent update is lost. The password is hashed once, outside the
    /// loop. A moved user is subscribed at the new address as [`Accounts::create`] does.
    pub async fn update(
        &self,
        email: &Email,
        update: UserUpdate,
        from: Option<IpAddr>,
    ) -> Result<UserRecord, Error> {
        let Some(mut current) = self.store.get(email).await? else {
            return Err(Error::NotFound);
        };
        let new_hash = match &update.password {
            Some(password) => {
                self.policy.check("data.password", password)?;
                self.new_passwords.admit(from)?;
                Some(self.passwords.hash(password).await?)
            }
            None => None,
        };
        for _ in 0..UPDATE_ATTEMPTS {
            let (record, raw) = current;
            let updated = UserRecord {
                name: update.name.clone().unwrap_or(record.name),
                email: update
                    .email
                    .as_ref()
                    .map_or(record.email, |new| new.as_str().to_owned()),
                password: new_hash.clone().unwrap_or(record.password),
            };
            match self.store.replace(email, &raw, &updated).await? {
                Replaced::Updated { moved } => {
                    if let Some(Moved {
                        subscription_entry,
                        change_entry,
                        change,
                    }) = moved
                    {
                        self.change_now(&change_entry, change).await;
                        self.subscribe_now(&subscription_entry, &updated.email)
                            .await;
                    }
                    return Ok(updated);
                }
                Replaced::Changed => {
                    current = self.store.get(email).await?.ok_or(Error::NotFound)?;
                }
            }
        }
        Err(Error::Conflict)
    }

    /// Deletes the user; [`Error::NotFound`] if there is none. Its notifications,
    /// subscription, message index and conversations go with it through the account outbox
    /// (delivered inline when the peers are reachable, later by the worker otherwise).
    pub async fn delete(&self, email: &Email) -> Result<(), Error> {
        let (entry, change) = self.store.delete(email).await?;
        self.change_now(&entry, change).await;
        Ok(())
    }

    /// Whether a user has this address.
    pub async fn exists(&self, email: &Email) -> Result<bool, Error> {
        self.store.exists(email).await
    }

    /// Every user, ordered by email.
    pub async fn list(&self) -> Result<Vec<UserRecord>, Error> {
        self.store.list().await
    }

    async fn change_now(&self, entry: &str, change: AccountChange) {
        let email = change.email.clone();
        if !self.changes.deliver_now(entry, change).await {
            tracing::warn!(
                email,
                "account change not confirmed yet; answering now, the outbox delivers it later"
            );
        }
    }

    async fn subscribe_now(&self, entry: &str, email: &str) {
        let request = SubscriptionRequest {
            email: email.to_owned(),
        };
        if !self.subscriptions.deliver_now(entry, request).await {
            tracing::warn!(
                email,
                "subscription not confirmed yet; answering now, the outbox delivers it later"
            );
        }
    }
}
