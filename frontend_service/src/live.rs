//! The live feed across replicas: a pushed notification is published on the Redis channel
//! `frontend:live:{receiver}`; every frontend-service process listens on `frontend:live:*` and
//! hands each message to the watchers of that receiver it has, through a channel per receiver
//! (created with the first watcher, dropped with the last). So a watcher on any replica sees
//! every push, whichever replica notification-service reached. Redis is used for this and
//! nothing else: what a watcher missed is read from notification-service's store.
//!
//! The channel carries two kinds of payload: a pushed notification, encoded as the protobuf
//! `Notification` exactly as before (replicas of an older version keep understanding it), and
//! a read-state change, a zero byte followed by the protobuf `InboxChange`. No protobuf
//! message starts with a zero byte (field number 0 does not exist), so the two cannot be
//! mistaken for each other, and an older replica reads a change as unreadable and resyncs.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use prost::Message;
use proto::frontend_service::{InboxChange, Notification};
use service_runtime::{redis_store::Redis, retry::Backoff, shutdown::Shutdown};
use tokio::sync::broadcast;

const CHANNEL_PREFIX: &str = "frontend:live:";
/// The first byte of a change's payload (see the module's documentation).
const CHANGE_MARK: u8 = 0;
/// Live items a watcher may fall behind before it is caught up from the store instead. The
/// channel's slots are allocated with the receiver's first watcher, so this (and the `Arc`s
/// in [`Live`]) is what every open stream costs before anything arrives: 64 slots of 24 bytes.
const PER_RECEIVER_BUFFER: usize = 64;

/// What a watcher is told.
#[derive(Debug, Clone)]
pub enum Live {
    /// A notification was pushed.
    Pushed(Arc<Notification>),
    /// The receiver's read state changed.
    Changed(Arc<InboxChange>),
    /// The feed may have missed messages (the Redis subscription was re-established): read
    /// what is new from the store.
    Resync,
}

/// This process's watchers, by receiver; cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    redis: Redis,
    receivers: Arc<Mutex<HashMap<String, broadcast::Sender<Live>>>>,
}

impl LiveFeed {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            receivers: Arc::default(),
        }
    }

    /// Tells every replica's watchers of the notification's receiver about it.
    pub async fn publish(
        &self,
        receiver: &str,
        notification: &Notification,
    ) -> redis::RedisResult<()> {
        self.redis
            .query(
                redis::cmd("PUBLISH")
                    .arg(format!("{CHANNEL_PREFIX}{receiver}"))
                    .arg(notification.encode_to_vec()),
            )
            .await
    }

    /// Tells every replica's watchers of `receiver` about a change of their read state.
    pub async fn publish_change(
        &self,
        receiver: &str,
        change: &InboxChange,
    ) -> redis::RedisResult<()> {
        self.redis
            .query(
                redis::cmd("PUBLISH")
                    .arg(format!("{CHANNEL_PREFIX}{receiver}"))
                    .arg(encode_change(change)),
            )
            .await
    }

    /// A subscription to `receiver`'s live items; subscribe **before** reading the store, so
    /// nothing falls between the two.
    pub fn subscribe(&self, receiver: &str) -> Subscription {
        let updates = self
            .lock()
            .entry(receiver.to_owned())
            .or_insert_with(|| broadcast::channel(PER_RECEIVER_BUFFER).0)
            .subscribe();
        Subscription {
            feed: self.clone(),
            receiver: receiver.to_owned(),
            updates,
        }
    }

    /// Listens on every receiver's channel until `shutdown`, re-subscribing (and telling every
    /// watcher to resync) whenever the connection to Redis was lost.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        while !shutdown.is_triggered() {
            let mut messages = match self.redis.psubscribe(&format!("{CHANNEL_PREFIX}*")).await {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(error = %err, "live feed cannot subscribe to Redis; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = shutdown.clone().wait() => {}
                    }
                    continue;
                }
            };
            backoff.reset();
            // Whatever was published while we were not subscribed is only in the store.
            self.broadcast_to_all(&Live::Resync);
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = shutdown.clone().wait() => return,
                };
                let Some(message) = message else {
                    tracing::warn!("live feed lost its Redis subscription; re-subscribing");
                    break;
                };
                let receiver = message
                    .get_channel_name()
                    .strip_prefix(CHANNEL_PREFIX)
                    .unwrap_or_default();
                match decode(message.get_payload_bytes()) {
                    Ok(live) => self.send(receiver, &live),
                    Err(err) => {
                        // Whatever it was, the store has it: the receiver's watchers catch up.
                        tracing::warn!(receiver, error = %err, "unreadable live message; the watchers resync");
                        self.send(receiver, &Live::Resync);
                    }
                }
            }
        }
    }

    fn send(&self, receiver: &str, live: &Live) {
        if let Some(sender) = self.lock().get(receiver) {
            // No receiver left is not an error: its subscription is being dropped.
            let _ = sender.send(live.clone());
        }
    }

    fn broadcast_to_all(&self, live: &Live) {
        for sender in self.lock().values() {
            let _ = sender.send(live.clone());
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<Live>>> {
        self.receivers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A change as the channel carries it (see the module's documentation).
fn encode_change(change: &InboxChange) -> Vec<u8> {
    let mut payload = vec![CHANGE_MARK];
    payload.extend(change.encode_to_vec());
    payload
}

/// A payload of the channel (see the module's documentation).
fn decode(payload: &[u8]) -> Result<Live, prost::DecodeError> {
    match payload.split_first() {
        Some((&CHANGE_MARK, change)) => {
            InboxChange::decode(change).map(|c| Live::Changed(c.into()))
        }
        _ => Notification::decode(payload).map(|n| Live::Pushed(n.into())),
    }
}

/// One watcher's live items; unregisters the receiver's channel with its last subscription.
pub struct Subscription {
    feed: LiveFeed,
    receiver: String,
    pub updates: broadcast::Receiver<Live>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut receivers = self.feed.lock();
        // Our own receiver is still counted while we are being dropped.
        if receivers
            .get(&self.receiver)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            receivers.remove(&self.receiver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_and_a_notification_are_told_apart_on_the_channel() {
        let notification = Notification {
            receiver_email: Some("a@b.io".into()),
            cursor: Some(7),
            ..Notification::default()
        };
        let change = InboxChange {
            receiver_email: Some("a@b.io".into()),
            all: Some(true),
            ..InboxChange::default()
        };
        let payload = encode_change(&change);
        assert!(
            matches!(decode(&notification.encode_to_vec()), Ok(Live::Pushed(n)) if *n == notification)
        );
        assert!(matches!(decode(&payload), Ok(Live::Changed(c)) if *c == change));
        // What an older replica does with a change: it cannot read it as a notification.
        assert!(Notification::decode(payload.as_slice()).is_err());
    }
}
