//! The Redis handle every service uses: one multiplexed connection on the service's own
//! database index that reconnects by itself, and whose commands and scripts retry what a
//! moment's wait can cure.
//!
//! Scripts are held one way everywhere: a `static NAME: LazyLock<redis::Script>` next to the
//! keys it touches in the service's `store.rs`, run with [`Redis::invoke`].

use std::time::Duration;

use redis::{
    Cmd, FromRedisValue, RedisResult, ScriptInvocation,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::retry::{self, Backoff};

/// How long [`Redis::query`] and [`Redis::invoke`] keep trying before they give up.
const TRANSIENT_RETRY_WINDOW: Duration = Duration::from_secs(3);
const TRANSIENT_RETRY_MIN: Duration = Duration::from_millis(25);
const TRANSIENT_RETRY_MAX: Duration = Duration::from_millis(400);

/// A service's Redis database; cheap to clone (one shared connection).
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    connection: ConnectionManager,
}

impl Redis {
    /// Connects lazily to database `db` of the Redis `config` names, as the user it names
    /// (if any), so a service starts (and reports itself unhealthy) while Redis is down, and
    /// recovers on its own when Redis comes back.
    pub fn connect(config: &crate::config::RedisConfig, db: u8) -> anyhow::Result<Self> {
        let client = redis::Client::open(config.connection_info(db)?)
            .map_err(|err| anyhow::anyhow!("cannot use the Redis of {config:?}: {err}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_millis(500));
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client.clone(), config)?,
            client,
        })
    }

    /// Whether Redis answers a PING within a second.
    pub async fn is_reachable(&self) -> bool {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        let reply = ping.query_async::<String>(&mut connection);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), reply).await,
            Ok(Ok(_))
        )
    }

    /// Runs `cmd`, retried across a reconnect (see [`Redis::invoke`] on idempotence).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        retry_transient(|| {
            let mut connection = self.connection.clone();
            async move { cmd.query_async(&mut connection).await }
        })
        .await
    }

    /// Runs a script, retried while it fails for a reason a moment's wait can cure (the
    /// connection dropped and is being re-established, Redis is still loading its data), for
    /// at most [`TRANSIENT_RETRY_WINDOW`]. Without it, the first request after a Redis restart
    /// would fail: the connection manager only notices a dead connection by failing a command.
    ///
    /// A failed attempt may still have been executed by Redis (the reply was lost), so what is
    /// run this way must be idempotent: reads, writes of a whole value, or scripts that
    /// recognise their own repeat.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        retry_transient(|| {
            let mut connection = self.connection.clone();
            async move { invocation.invoke_async(&mut connection).await }
        })
        .await
    }

    /// Messages published on channels matching `pattern`, over a connection of their own;
    /// the stream ends when that connection drops (the caller reconnects).
    pub async fn psubscribe(&self, pattern: &str) -> RedisResult<redis::aio::PubSubStream> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.psubscribe(pattern).await?;
        Ok(pubsub.into_on_message())
    }

    /// The raw connection, for loops that handle failures themselves (the outbox worker).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

async fn retry_transient<T, F, Fut>(op: F) -> RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RedisResult<T>>,
{
    let backoff = Backoff::new(TRANSIENT_RETRY_MIN, TRANSIENT_RETRY_MAX);
    let result = retry::within(TRANSIENT_RETRY_WINDOW, backoff, is_transient, op).await;
    if result.is_err() {
        crate::metrics::redis_error();
    }
    result
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
