//! The Redis connection every service uses: one multiplexed connection that reconnects by
//! itself, on the service's own database index.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::retry::{self, Backoff};

/// Connects lazily to database `db` of the Redis at `base_url`, so a service starts (and reports
/// itself unhealthy) while Redis is down, and recovers on its own when Redis comes back.
pub fn connect(base_url: &str, db: u8) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(format!("{base_url}/{db}"))
        .map_err(|err| anyhow::anyhow!("invalid Redis URL {base_url:?}: {err}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_millis(500));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// Whether Redis answers a PING within a second.
pub async fn is_reachable(connection: &ConnectionManager) -> bool {
    let mut connection = connection.clone();
    let ping = redis::cmd("PING");
    let reply = ping.query_async::<String>(&mut connection);
    matches!(
        tokio::time::timeout(Duration::from_secs(1), reply).await,
        Ok(Ok(_))
    )
}

/// How long [`retry_transient`] keeps trying before it gives up.
pub const TRANSIENT_RETRY_WINDOW: Duration = Duration::from_secs(3);
const TRANSIENT_RETRY_MIN: Duration = Duration::from_millis(25);
const TRANSIENT_RETRY_MAX: Duration = Duration::from_millis(400);

/// Runs `op` again while it fails for a reason a moment's wait can cure (the connection dropped
/// and is being re-established, Redis is still loading its data), for at most
/// [`TRANSIENT_RETRY_WINDOW`]. Without it, the first request after a Redis restart would fail:
/// the [`ConnectionManager`] only notices the dead connection by failing a command.
///
/// A failed attempt may still have been executed by Redis (the reply was lost), so `op` must be
/// idempotent: reads, `HSET`s of a whole value, or scripts that recognise a repeat.
pub async fn retry_transient<T, F, Fut>(op: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    let backoff = Backoff::new(TRANSIENT_RETRY_MIN, TRANSIENT_RETRY_MAX);
    retry::within(TRANSIENT_RETRY_WINDOW, backoff, is_transient, op).await
}

/// Whether `err` says "not now" rather than "never" (a script error, a wrong type).
fn is_transient(err: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    err.is_timeout()
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect | RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry
        )
}
