//! The in-memory inbox: each receiver's most recent notifications, deduplicated by id, plus a
//! broadcast of every new one for live watchers. Bounded in receivers and per receiver, so a
//! flood of notifications cannot grow the process without limit.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use prost::Message;
use proto::frontend_service::Notification;
use tokio::sync::broadcast;

/// How much the inbox keeps.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    /// Notifications kept per receiver (oldest dropped first).
    pub per_receiver: usize,
    /// Receivers kept (the one that has waited longest since its first notification is dropped first).
    pub receivers: usize,
    /// Notifications a slow watcher may fall behind before it misses some.
    pub watch_buffer: usize,
    /// Encoded bytes kept over all receivers (receivers seen first are dropped first).
    pub bytes: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        Self {
            per_receiver: 100,
            receivers: 10_000,
            watch_buffer: 1024,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// Shared handle to the inbox.
#[derive(Clone)]
pub struct Inbox {
    state: Arc<Mutex<State>>,
    live: broadcast::Sender<Notification>,
    limits: InboxLimits,
}

#[derive(Default)]
struct State {
    by_receiver: HashMap<String, VecDeque<Notification>>,
    /// Receivers in the order they were first seen, for eviction.
    arrival: VecDeque<String>,
    /// Encoded size of everything kept.
    bytes: usize,
}

impl State {
    fn evict_oldest_receiver(&mut self) {
        if let Some(evicted) = self.arrival.pop_front()
            && let Some(kept) = self.by_receiver.remove(&evicted)
        {
            self.bytes -= kept.iter().map(Message::encoded_len).sum::<usize>();
        }
    }
}

impl Inbox {
    /// An empty inbox with `limits`.
    pub fn new(limits: InboxLimits) -> Self {
        let (live, _) = broadcast::channel(limits.watch_buffer.max(1));
        Self {
            state: Arc::default(),
            live,
            limits,
        }
    }

    /// Stores `notification` unless one with its id is already kept; returns whether it was
    /// new. New notifications are broadcast to watchers.
    pub fn deliver(&self, notification: Notification) -> bool {
        let receiver = notification.receiver_email.clone().unwrap_or_default();
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let is_new_receiver = !state.by_receiver.contains_key(&receiver);
            if is_new_receiver {
                if state.arrival.len() >= self.limits.receivers {
                    state.evict_oldest_receiver();
                }
                state.arrival.push_back(receiver.clone());
            }
            let size = notification.encoded_len();
            let kept = state.by_receiver.entry(receiver.clone()).or_default();
            let repeated = notification.notification_id.is_some()
                && kept
                    .iter()
                    .any(|seen| seen.notification_id == notification.notification_id);
            if repeated {
                return false;
            }
            let mut freed = 0;
            if kept.len() >= self.limits.per_receiver {
                freed = kept.pop_front().map_or(0, |old| old.encoded_len());
            }
            kept.push_back(notification.clone());
            state.bytes = state.bytes + size - freed;
            while state.bytes > self.limits.bytes && state.arrival.front() != Some(&receiver) {
                state.evict_oldest_receiver();
            }
        }
        // No watcher is not an error: the notification is kept for later watchers anyway.
        let _ = self.live.send(notification);
        true
    }

    /// The receiver's kept notifications, oldest first, and a subscription to every later one.
    /// Subscribing under the lock means nothing falls between the snapshot and the live feed.
    pub fn watch(&self, receiver: &str) -> (Vec<Notification>, broadcast::Receiver<Notification>) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let live = self.live.subscribe();
        let recent = state
            .by_receiver
            .get(receiver)
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default();
        (recent, live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(receiver: &str, id: &str) -> Notification {
        Notification {
            sender_email: Some("a@example.com".into()),
            receiver_email: Some(receiver.into()),
            timestamp: Some("2025-01-14T12:00:00Z".into()),
            read: Some(false),
            notification_id: Some(id.into()),
        }
    }

    #[test]
    fn a_repeated_notification_id_is_kept_once() {
        let inbox = Inbox::new(InboxLimits::default());
        assert!(inbox.deliver(notification("b@example.com", "1")));
        assert!(!inbox.deliver(notification("b@example.com", "1")));
        assert_eq!(inbox.watch("b@example.com").0.len(), 1);
    }

    #[test]
    fn each_receiver_keeps_at_most_its_limit_and_drops_the_oldest() {
        let limits = InboxLimits {
            per_receiver: 2,
            receivers: 2,
            watch_buffer: 4,
            ..InboxLimits::default()
        };
        let inbox = Inbox::new(limits);
        for id in ["1", "2", "3"] {
            inbox.deliver(notification("b@example.com", id));
        }
        let kept: Vec<_> = inbox
            .watch("b@example.com")
            .0
            .into_iter()
            .filter_map(|n| n.notification_id)
            .collect();
        assert_eq!(kept, ["2", "3"]);
    }

    #[test]
    fn the_receiver_seen_first_is_evicted_when_too_many_are_kept() {
        let limits = InboxLimits {
            per_receiver: 2,
            receivers: 2,
            watch_buffer: 4,
            ..InboxLimits::default()
        };
        let inbox = Inbox::new(limits);
        for receiver in ["a@x.io", "b@x.io", "c@x.io"] {
            inbox.deliver(notification(receiver, "1"));
        }
        assert!(inbox.watch("a@x.io").0.is_empty());
        assert_eq!(inbox.watch("c@x.io").0.len(), 1);
    }

    #[test]
    fn receivers_seen_first_are_evicted_when_the_inbox_outgrows_its_bytes() {
        let one = notification("a@x.io", "1").encoded_len();
        let limits = InboxLimits {
            bytes: one * 2,
            ..InboxLimits::default()
        };
        let inbox = Inbox::new(limits);
        for receiver in ["a@x.io", "b@x.io", "c@x.io"] {
            inbox.deliver(notification(receiver, "1"));
        }
        assert!(inbox.watch("a@x.io").0.is_empty());
        assert_eq!(inbox.watch("b@x.io").0.len(), 1);
        assert_eq!(inbox.watch("c@x.io").0.len(), 1);
    }
}
