//! frontend-service's own metrics, beside the shared ones of `service_runtime::metrics`.

use metrics::{counter, describe_counter, describe_gauge, gauge};

const WATCHERS: &str = "frontend_watchers";
const RECEIVED: &str = "frontend_notifications_received_total";
const PUSHED: &str = "frontend_notifications_pushed_total";
const SSE_STREAMS: &str = "frontend_sse_streams";
const SLOW_DROPPED: &str = "frontend_slow_watchers_dropped_total";

/// Describes the families; call once the recorder is installed (after `ServiceBuilder::new`).
pub fn describe() {
    describe_gauge!(WATCHERS, "Open WatchNotifications streams.");
    describe_counter!(
        RECEIVED,
        "ReceiveNotification calls, by outcome: published (handed to every replica's watchers) or refused (no or a bad receiver, oversized fields)."
    );
    describe_counter!(
        PUSHED,
        "Notifications written to WatchNotifications and GET /live streams (replayed ones included)."
    );
    describe_gauge!(SSE_STREAMS, "Open GET /live (Server-Sent Events) streams.");
    describe_counter!(
        SLOW_DROPPED,
        "GET /live streams ended because the reader left its buffer full for too long (it resumes from the store)."
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

pub fn dropped_slow() {
    counter!(SLOW_DROPPED).increment(1);
}

/// Counts one open watch stream for as long as it lives: dropped with the stream, whether it
/// ended, the client went away or the service is stopping.
pub struct Watcher(&'static str);

impl Watcher {
    /// A `WatchNotifications` stream.
    pub fn attached() -> Self {
        Self::counted(WATCHERS)
    }

    /// A `GET /live` stream.
    pub fn sse() -> Self {
        Self::counted(SSE_STREAMS)
    }

    fn counted(gauge: &'static str) -> Self {
        gauge!(gauge).increment(1.0);
        Self(gauge)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}
