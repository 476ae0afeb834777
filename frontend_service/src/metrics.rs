//! frontend-service's own metrics, beside the shared ones of `service_runtime::metrics`.

use metrics::{counter, describe_counter, describe_gauge, gauge};

const WATCHERS: &str = "frontend_watchers";
const RECEIVED: &str = "frontend_notifications_received_total";
const PUSHED: &str = "frontend_notifications_pushed_total";

/// Describes the families; call once the recorder is installed (after `ServiceBuilder::new`).
pub fn describe() {
    describe_gauge!(WATCHERS, "Open WatchNotifications streams.");
    describe_counter!(
        RECEIVED,
        "ReceiveNotification calls, by outcome: published (handed to every replica's watchers) or refused (no or a bad receiver, oversized fields)."
    );
    describe_counter!(
        PUSHED,
        "Notifications written to WatchNotifications streams (replayed ones included)."
    );
}

/// What a `ReceiveNotification` call came to.
#[derive(Debug, Clone, Copy)]
pub enum Received {
    Published,
    Refused,
}

pub fn received(outcome: Received) {
    let outcome = match outcome {
        Received::Published => "published",
        Received::Refused => "refused",
    };
    counter!(RECEIVED, "outcome" => outcome).increment(1);
}

pub fn pushed() {
    counter!(PUSHED).increment(1);
}

/// Counts one open watch stream for as long as it lives: dropped with the stream, whether it
/// ended, the client went away or the service is stopping.
pub struct Watcher(());

impl Watcher {
    pub fn attached() -> Self {
        gauge!(WATCHERS).increment(1.0);
        Self(())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        gauge!(WATCHERS).decrement(1.0);
    }
}
