//! Retrying with exponential backoff: one policy for every retry loop in the system.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

/// Delays that start at `min` and double up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the following one is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts again from the minimum (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Runs `op` until it succeeds, fails for a reason `is_transient` says waiting cannot cure, or
/// `window` would be exceeded by the next wait; returns the last result.
///
/// A failed attempt may have taken effect (its reply was lost), so `op` must be idempotent.
pub async fn within<T, E, F, Fut>(
    window: Duration,
    mut backoff: Backoff,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + window;
    loop {
        match op().await {
            Err(err) if is_transient(&err) => {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(err);
                }
                tokio::time::sleep(delay).await;
            }
            done => return done,
        }
    }
}

/// How long a read from a peer is retried while the peer is `UNAVAILABLE`.
pub const UNAVAILABLE_RETRY_WINDOW: Duration = Duration::from_secs(3);

/// The one policy for idempotent calls to a peer: retried while it answers `UNAVAILABLE`
/// (restarting, a connection broken by that restart, its own Redis reconnecting — all pass
/// quickly), 25 ms doubling to 400 ms, for at most [`UNAVAILABLE_RETRY_WINDOW`].
pub async fn retry_unavailable<T, F, Fut>(op: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let backoff = Backoff::new(Duration::from_millis(25), Duration::from_millis(400));
    let is_transient = |status: &tonic::Status| status.code() == tonic::Code::Unavailable;
    within(UNAVAILABLE_RETRY_WINDOW, backoff, is_transient, op).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Backoff, within};

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(35));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 35, 35]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_until_success() {
        let mut calls = 0;
        let result = within(
            Duration::from_secs(1),
            Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
            |err: &&str| *err == "transient",
            || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err("transient")
                } else {
                    Ok(calls)
                };
                async move { outcome }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_or_an_exhausted_window_ends_the_retries() {
        let mut calls = 0;
        let permanent = within(
            Duration::from_secs(1),
            Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
            |err: &&str| *err == "transient",
            || {
                calls += 1;
                async { Err::<(), _>("permanent") }
            },
        )
        .await;
        assert_eq!((permanent, calls), (Err("permanent"), 1));

        let mut calls = 0;
        let exhausted = within(
            Duration::from_millis(100),
            Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
            |_: &&str| true,
            || {
                calls += 1;
                async { Err::<(), _>("transient") }
            },
        )
        .await;
        // Waits 10 + 20 + 40 ms, then the next 80 ms wait would pass the 100 ms window.
        assert_eq!((exhausted, calls), (Err("transient"), 4));
    }
}
