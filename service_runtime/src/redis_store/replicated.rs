//! A write acknowledged only once replicas have it, confirmed in groups.
//!
//! `WAIT` counts the writes of the connection it is sent on, up to the moment it is sent.
//! So writes that wait go out on connections of their own ([`WaitingConnection`]), and once a
//! write has been answered it joins the next `WAIT` on its connection: one `WAIT` covers every
//! write answered before it went out (group commit: one replica round trip per burst, not one
//! per write; a lone write sends its `WAIT` at once).
//!
//! While the replicas may be missing — until the first `WAIT` succeeds, and again after one
//! that they did not confirm — a write first waits for them
//! (`WAIT` before it, not only after), so a write refused while they are gone is refused
//! before it is written: a send retried after such a refusal is not stored twice.
//!
//! The connection is held here rather than in a `ConnectionManager`, because which connection
//! a write went out on matters: a `WAIT` on a re-established connection counts none of the old
//! one's writes and still answers at once. Each connection gets a new generation, and a write
//! made on one that has since been replaced fails as a dropped connection (retried, as every
//! script here may be) instead of being confirmed by the wrong `WAIT`.

use std::{
    io,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
};
use tokio::sync::{Mutex, mpsc, oneshot};

/// The code of the error a write gets when its replicas did not confirm it in time.
pub const NOT_REPLICATED: &str = "NOTREPLICATED";

/// How many replicas must confirm a write, and for how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
}

/// A connection to the primary: direct, or one whose writes answer only once the replicas
/// confirm them (or fail with [`NOT_REPLICATED`]).
pub(super) enum Connection {
    Direct(ConnectionManager),
    Waiting(Arc<WaitingConnection>),
}

/// One connection for writes that wait for replicas, and the queue of the writes answered on
/// it that the next `WAIT` is to confirm.
pub(super) struct WaitingConnection {
    link: Arc<Link>,
    /// Started on first use (by then a Tokio runtime runs); it ends when this is dropped.
    confirmer: OnceLock<mpsc::UnboundedSender<Unconfirmed>>,
}

struct Link {
    /// The replicas did not confirm the last `WAIT` (or none has run yet).
    replicas_missing: AtomicBool,
    client: redis::Client,
    config: AsyncConnectionConfig,
    db: i64,
    wait: Wait,
    /// `None` until first use and after the connection failed; connecting holds the lock.
    session: Mutex<Option<Session>>,
    generations: AtomicU64,
}

#[derive(Clone)]
struct Session {
    generation: u64,
    connection: MultiplexedConnection,
}

/// A write answered on the connection of `generation`, waiting for its `WAIT`.
struct Unconfirmed {
    generation: u64,
    confirmed: oneshot::Sender<RedisResult<()>>,
}

impl Wait {
    fn command(self) -> Cmd {
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas)
            .arg(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        wait
    }

    /// Whether `acknowledged` (`WAIT`'s answer) says enough replicas have the writes.
    fn check(self, acknowledged: Value) -> RedisResult<()> {
        match acknowledged.extract_error()? {
            Value::Int(count) if count >= i64::from(self.replicas) => Ok(()),
            Value::Int(count) => Err(redis::make_extension_error(
                NOT_REPLICATED.to_owned(),
                Some(format!(
                    "the write is not yet replicated: {count} of {} replicas confirmed it within {:?}",
                    self.replicas, self.timeout
                )),
            )),
            other => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "WAIT answered something other than a count",
                format!("{other:?}"),
            ))),
        }
    }
}

impl WaitingConnection {
    /// A connection of `client`'s, opened on first use; its replies take at most
    /// `response_timeout` (which must exceed the wait's timeout).
    pub(super) fn new(
        client: redis::Client,
        connection_timeout: Duration,
        response_timeout: Duration,
        wait: Wait,
    ) -> Self {
        let db = client.get_connection_info().redis_settings().db();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connection_timeout))
            .set_response_timeout(Some(response_timeout));
        Self {
            link: Arc::new(Link {
                replicas_missing: AtomicBool::new(true),
                client,
                config,
                db,
                wait,
                session: Mutex::new(None),
                generations: AtomicU64::new(0),
            }),
            confirmer: OnceLock::new(),
        }
    }

    /// Runs `cmd`, then waits until a `WAIT` sent after its answer confirms it. A command
    /// that failed has nothing to wait for.
    async fn write(&self, cmd: &Cmd) -> RedisResult<Value> {
        let session = self.link.session().await?;
        if self.link.replicas_missing.load(Ordering::Relaxed) {
            self.link.wait_on(&session).await?;
        }
        let mut connection = session.connection.clone();
        let reply = match connection.req_packed_command(cmd).await {
            Ok(reply) => reply.extract_error()?,
            Err(err) => {
                self.link.discard_after(&err, session.generation).await;
                return Err(err);
            }
        };
        self.confirmed(session.generation).await?;
        Ok(reply)
    }

    async fn confirmed(&self, generation: u64) -> RedisResult<()> {
        let confirmer = self.confirmer.get_or_init(|| {
            let (queue, unconfirmed) = mpsc::unbounded_channel();
            tokio::spawn(confirm_in_groups(Arc::clone(&self.link), unconfirmed));
            queue
        });
        let (confirmed, answer) = oneshot::channel();
        let gone = || replaced("the replica confirmations stopped");
        confirmer
            .send(Unconfirmed {
                generation,
                confirmed,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Sends one `WAIT` for all the writes queued since the last one went out, and answers each
/// of them with its outcome; those made on a connection since replaced get a dropped-connection
/// error.
async fn confirm_in_groups(link: Arc<Link>, mut queue: mpsc::UnboundedReceiver<Unconfirmed>) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        let session = link.session.lock().await.clone();
        let outcome = match &session {
            Some(session) if group.iter().any(|w| w.generation == session.generation) => {
                Some(link.wait_on(session).await)
            }
            _ => None,
        };
        for write in group {
            let result = match (&session, &outcome) {
                (Some(session), Some(outcome)) if write.generation == session.generation => {
                    outcome.clone()
                }
                _ => Err(replaced(
                    "the connection was re-established before the replicas confirmed the write",
                )),
            };
            // The writer may have given up (its request was cancelled): nothing to tell.
            let _ = write.confirmed.send(result);
        }
    }
}

impl Link {
    async fn session(&self) -> RedisResult<Session> {
        let mut current = self.session.lock().await;
        if let Some(session) = current.as_ref() {
            return Ok(session.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let session = Session {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            connection,
        };
        *current = Some(session.clone());
        Ok(session)
    }

    /// Forgets the connection of `generation` when `err` says it is no longer usable.
    async fn discard_after(&self, err: &redis::RedisError, generation: u64) {
        if !(err.is_unrecoverable_error() || err.is_timeout() || err.is_connection_dropped()) {
            return;
        }
        let mut current = self.session.lock().await;
        if current.as_ref().is_some_and(|s| s.generation == generation) {
            *current = None;
        }
    }

    /// One `WAIT` on `session`'s connection; it also tells whether the replicas are there.
    async fn wait_on(&self, session: &Session) -> RedisResult<()> {
        let mut connection = session.connection.clone();
        match self.wait.command().query_async(&mut connection).await {
            Ok(acknowledged) => {
                let confirmed = self.wait.check(acknowledged);
                self.replicas_missing
                    .store(confirmed.is_err(), Ordering::Relaxed);
                confirmed
            }
            Err(err) => {
                self.discard_after(&err, session.generation).await;
                Err(err)
            }
        }
    }
}

/// A transient error (a dropped connection): the write is retried from the start.
fn replaced(why: &'static str) -> redis::RedisError {
    io::Error::new(io::ErrorKind::ConnectionReset, why).into()
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Direct(connection) => connection.req_packed_command(cmd),
            Self::Waiting(connection) => Box::pin(connection.write(cmd)),
        }
    }

    /// Pipelines go out only on a direct connection: `Redis` sends none that wait, and a
    /// transaction's writes would have to be confirmed as one.
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Direct(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Waiting(_) => Box::pin(async {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "pipelines are not sent on a connection that waits for replicas",
                )))
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Direct(connection) => connection.get_db(),
            Self::Waiting(connection) => connection.link.db,
        }
    }
}
