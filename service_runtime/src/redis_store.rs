//! The Redis handle every service uses: multiplexed connections on the service's own
//! database index that reconnect by themselves, and whose commands and scripts retry what a
//! moment's wait can cure.
//!
//! The primary is either fixed (`REDIS_URL`) or the one Sentinel names (`REDIS_SENTINELS`,
//! see [`sentinel`]): then a command that fails the way a lost or demoted primary makes it
//! fail (refused, dropped, timed out, `READONLY`) has the sentinels asked again, and the retry
//! runs on whichever primary they name — scripts are loaded there on first use (`NOSCRIPT` →
//! `SCRIPT LOAD`), the outbox worker re-creates its consumer group after any error, the live
//! feed subscribes again.
//!
//! With `REDIS_MIN_REPLICAS_ACK` ≥ 1 every write is confirmed by a `WAIT` (see [`replicated`]),
//! on connections of their own: a `WAIT` holds up everything behind it on its connection.
//!
//! Scripts are held one way everywhere: a `static NAME: LazyLock<redis::Script>` next to the
//! keys it touches in the service's `store.rs`, run with [`Redis::invoke`].

mod replicated;
mod sentinel;

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{
    Cmd, ConnectionInfo, FromRedisValue, RedisResult, ScriptInvocation,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::time::Instant;

pub use self::replicated::NOT_REPLICATED;
use self::{
    replicated::{Connection, Wait, WaitingConnection},
    sentinel::Sentinels,
};
use crate::retry::{self, Backoff};

/// How long [`Redis::query`] and [`Redis::invoke`] keep trying before they give up.
const TRANSIENT_RETRY_WINDOW: Duration = Duration::from_secs(3);
const TRANSIENT_RETRY_MIN: Duration = Duration::from_millis(25);
const TRANSIENT_RETRY_MAX: Duration = Duration::from_millis(400);
/// The sentinels are asked at most this often, however many commands fail meanwhile.
const REDISCOVERY_INTERVAL: Duration = Duration::from_millis(200);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// A service's Redis database; cheap to clone (shared connections).
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

struct Inner {
    /// Database, user and password; with Sentinel, the address is replaced by the primary's.
    node: ConnectionInfo,
    sentinels: Option<Sentinels>,
    wait: Option<Wait>,
    primary: RwLock<Option<Arc<Primary>>>,
    /// Set when a failure suggests the primary moved: the next command asks the sentinels.
    suspect: AtomicBool,
    /// When the sentinels were last asked; held while asking, so one caller asks at a time.
    asked: tokio::sync::Mutex<Option<Instant>>,
}

/// The connections to one primary.
struct Primary {
    info: ConnectionInfo,
    client: redis::Client,
    connection: ConnectionManager,
    /// The one connection for writes that wait for replicas (when they do). One rather than
    /// several: the bigger its groups, the fewer `WAIT`s, and each costs the primary and the
    /// replica a round of wake-ups (bench, N = 1, c=32, one sitting: 1,419 and 1,337 sends a
    /// second against 1,153 and 1,314 with 4 connections, p99 38–39 against 42–46 ms).
    waiting: Option<Arc<WaitingConnection>>,
}

impl Primary {
    fn open(info: ConnectionInfo, wait: Option<Wait>) -> RedisResult<Self> {
        let client = redis::Client::open(info.clone())?;
        let config = |response: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECTION_TIMEOUT))
                .set_response_timeout(Some(response))
                .set_number_of_retries(3)
                .set_max_delay(Duration::from_millis(500))
        };
        let normal = Duration::from_secs(2);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config(normal))?;
        let waiting = wait.map(|wait| {
            let response = normal.max(wait.timeout + Duration::from_secs(1));
            Arc::new(WaitingConnection::new(
                client.clone(),
                CONNECTION_TIMEOUT,
                response,
                wait,
            ))
        });
        Ok(Self {
            info,
            client,
            connection,
            waiting,
        })
    }

    fn connection(&self, wait: Option<Wait>) -> Connection {
        match (&self.waiting, wait) {
            (Some(waiting), Some(_)) => Connection::Waiting(Arc::clone(waiting)),
            _ => Connection::Direct(self.connection.clone()),
        }
    }
}

impl Redis {
    /// Connects lazily to database `db` of the Redis `config` names (or the primary its
    /// sentinels name), as the user it names (if any), so a service starts (and reports
    /// itself unhealthy) while Redis is down, and recovers on its own when Redis comes back.
    pub fn connect(config: &crate::config::RedisConfig, db: u8) -> anyhow::Result<Self> {
        let cannot =
            |err: redis::RedisError| anyhow::anyhow!("cannot use the Redis of {config:?}: {err}");
        let node = config.connection_info(db)?;
        let replication = config.replication;
        let wait = (replication.min_replicas_ack > 0).then_some(Wait {
            replicas: replication.min_replicas_ack,
            timeout: replication.wait_timeout,
        });
        let sentinels = config
            .sentinel_nodes()?
            .map(|nodes| Sentinels::new(nodes, config.sentinel.master.clone()));
        // A fixed primary is opened now; Sentinel's is opened once the sentinels name it.
        let primary = match sentinels {
            None => Some(Arc::new(Primary::open(node.clone(), wait).map_err(cannot)?)),
            Some(_) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                node,
                sentinels,
                wait,
                primary: RwLock::new(primary),
                suspect: AtomicBool::new(true),
                asked: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Whether the primary answers within a second (with Sentinel: answers that it is the
    /// primary, `ROLE`).
    pub async fn is_reachable(&self) -> bool {
        let check = async {
            let primary = self.primary().await?;
            let mut connection = primary.connection.clone();
            if self.inner.sentinels.is_none() {
                return redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .map(|_| true);
            }
            let is_primary = sentinel::role_is_primary(&mut connection).await?;
            if !is_primary {
                self.inner.suspect.store(true, Ordering::Relaxed);
            }
            Ok::<_, redis::RedisError>(is_primary)
        };
        match tokio::time::timeout(Duration::from_secs(1), check).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(err)) => {
                self.notice(&err);
                false
            }
            Err(_) => {
                self.recheck_primary();
                false
            }
        }
    }

    /// Runs `cmd`, retried across a reconnect (see [`Redis::invoke`] on idempotence); a write
    /// waits for replicas when asked to (`REDIS_MIN_REPLICAS_ACK`).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let wait = self.inner.wait.filter(|_| !is_read_only(cmd));
        self.run_command(cmd, wait).await
    }

    /// [`Redis::query`] for a write whose loss in a failover does no harm, so it never waits
    /// for replicas: outbox progress (a lost `XDEL` only delivers its entry again, and every
    /// receiver recognises a repeat), and a write that a later, waited write of the same
    /// request covers (`WAIT` confirms every write its server ran before the connection's last
    /// one, on any connection).
    pub async fn query_unconfirmed<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        self.run_command(cmd, None).await
    }

    async fn run_command<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        wait: Option<Wait>,
    ) -> RedisResult<T> {
        self.retry_transient(move || async move {
            let mut connection = self.connection_for(wait).await?;
            cmd.query_async(&mut connection).await
        })
        .await
    }

    /// Runs a script, retried while it fails for a reason a moment's wait can cure (the
    /// connection dropped and is being re-established, Redis is still loading its data, the
    /// primary moved), for at most [`TRANSIENT_RETRY_WINDOW`]. Without it, the first request
    /// after a Redis restart would fail: the connection manager only notices a dead connection
    /// by failing a command. Scripts count as writes: with `REDIS_MIN_REPLICAS_ACK` they wait
    /// for replicas (run one that only reads with [`Redis::invoke_read`]).
    ///
    /// A failed attempt may still have been executed by Redis (the reply was lost), so what is
    /// run this way must be idempotent: reads, writes of a whole value, or scripts that
    /// recognise their own repeat.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        self.run_script(invocation, self.inner.wait).await
    }

    /// [`Redis::invoke`] for a script that only reads: it never waits for replicas, so it
    /// answers while they lag or are gone.
    pub async fn invoke_read<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        self.run_script(invocation, None).await
    }

    async fn run_script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
        wait: Option<Wait>,
    ) -> RedisResult<T> {
        self.retry_transient(move || async move {
            let mut connection = self.connection_for(wait).await?;
            invocation.invoke_async(&mut connection).await
        })
        .await
    }

    /// Messages published on channels matching `pattern`, over a connection of their own to
    /// the current primary; the stream ends when that connection drops (the caller
    /// reconnects, and with Sentinel this finds the primary anew).
    pub async fn psubscribe(&self, pattern: &str) -> RedisResult<redis::aio::PubSubStream> {
        self.recheck_primary();
        let subscribed = async {
            let mut pubsub = self.primary().await?.client.get_async_pubsub().await?;
            pubsub.psubscribe(pattern).await?;
            Ok(pubsub.into_on_message())
        };
        let subscribed = subscribed.await;
        if let Err(err) = &subscribed {
            self.notice(err);
        }
        subscribed
    }

    /// A connection to the current primary, for loops that handle failures themselves (the
    /// outbox worker): after a failure they call [`Redis::recheck_primary`].
    pub async fn connection(&self) -> RedisResult<ConnectionManager> {
        Ok(self.primary().await?.connection.clone())
    }

    /// Has the sentinels asked again before the next command (nothing without Sentinel).
    pub fn recheck_primary(&self) {
        self.inner.suspect.store(true, Ordering::Relaxed);
    }

    async fn connection_for(&self, wait: Option<Wait>) -> RedisResult<Connection> {
        Ok(self.primary().await?.connection(wait))
    }

    /// The primary to send to: the fixed one, or the one the sentinels name (asked again when
    /// a failure made the current one suspect, at most every [`REDISCOVERY_INTERVAL`]).
    async fn primary(&self) -> RedisResult<Arc<Primary>> {
        let current = self.current();
        let Some(sentinels) = &self.inner.sentinels else {
            return current.ok_or_else(|| sentinel::no_primary("no Redis configured".to_owned()));
        };
        if let Some(primary) = &current
            && !self.inner.suspect.load(Ordering::Relaxed)
        {
            return Ok(Arc::clone(primary));
        }
        let mut asked = self.inner.asked.lock().await;
        let current = self.current();
        let recently = asked.is_some_and(|at| at.elapsed() < REDISCOVERY_INTERVAL);
        if let Some(primary) = &current
            && (recently || !self.inner.suspect.load(Ordering::Relaxed))
        {
            return Ok(Arc::clone(primary));
        }
        *asked = Some(Instant::now());
        self.inner.suspect.store(false, Ordering::Relaxed);
        let found = match sentinels.primary(&self.inner.node).await {
            Ok(found) => found,
            Err(err) => {
                self.inner.suspect.store(true, Ordering::Relaxed);
                return Err(err);
            }
        };
        if let Some(primary) = current
            && primary.info.addr() == found.addr()
        {
            return Ok(primary);
        }
        tracing::info!(primary = %found.addr(), "Redis primary named by Sentinel; following it");
        let primary = Arc::new(Primary::open(found, self.inner.wait)?);
        *self
            .inner
            .primary
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&primary));
        Ok(primary)
    }

    fn current(&self) -> Option<Arc<Primary>> {
        self.inner
            .primary
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes the primary suspect after a failure that a lost or demoted primary causes.
    fn notice(&self, err: &redis::RedisError) {
        if self.inner.sentinels.is_some() && is_transient(err) {
            self.recheck_primary();
        }
    }

    async fn retry_transient<T, F, Fut>(&self, mut op: F) -> RedisResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let backoff = Backoff::new(TRANSIENT_RETRY_MIN, TRANSIENT_RETRY_MAX);
        let attempt = || {
            let run = op();
            async move {
                let result = run.await;
                if let Err(err) = &result {
                    self.notice(err);
                }
                result
            }
        };
        let result = retry::within(TRANSIENT_RETRY_WINDOW, backoff, is_transient, attempt).await;
        if result.is_err() {
            crate::metrics::redis_error();
        }
        result
    }
}

/// Whether `err` says "not now" rather than "never" (a script error, a wrong type). A
/// `READONLY` write reached a primary that was demoted: it did not run, and the retry goes to
/// the new primary.
fn is_transient(err: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    err.is_timeout()
        || err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect | RetryMethod::RetryImmediately | RetryMethod::WaitAndRetry
        )
}

/// Whether `cmd` only reads (or, `PUBLISH`, writes nothing that lasts): no `WAIT` after it.
fn is_read_only(cmd: &Cmd) -> bool {
    const READS: &[&str] = &[
        "EXISTS",
        "GET",
        "HGET",
        "HGETALL",
        "HMGET",
        "LINDEX",
        "LLEN",
        "LRANGE",
        "MGET",
        "PING",
        "PTTL",
        "PUBLISH",
        "ROLE",
        "SCAN",
        "SISMEMBER",
        "SMEMBERS",
        "TTL",
        "XINFO",
        "XLEN",
        "XRANGE",
        "ZCARD",
        "ZCOUNT",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZREVRANGEBYSCORE",
        "ZSCORE",
    ];
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => READS
            .iter()
            .any(|read| read.as_bytes().eq_ignore_ascii_case(name)),
        _ => false,
    }
}
