//! A write acknowledged only once replicas have it: every command sent through
//! [`Connection`] with a [`Wait`] goes out in one pipeline with `WAIT <replicas> <timeout>`
//! right behind it, on the same connection, because `WAIT` counts the writes of the
//! connection it is sent on — had the connection been re-established in between, a lone
//! `WAIT` would confirm nothing and still answer at once.

use std::time::Duration;

use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value, aio::ConnectionManager};

/// The code of the error a write gets when its replicas did not confirm it in time.
pub const NOT_REPLICATED: &str = "NOTREPLICATED";

/// How many replicas must confirm a write, and for how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wait {
    pub(super) replicas: u32,
    pub(super) timeout: Duration,
}

/// A connection to the primary; with a [`Wait`], each command's reply is held back until
/// the replicas confirm it (or becomes a [`NOT_REPLICATED`] error).
pub(super) struct Connection {
    pub(super) inner: ConnectionManager,
    pub(super) wait: Option<Wait>,
}

impl Wait {
    fn command(self) -> Cmd {
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replicas)
            .arg(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
        wait
    }

    /// `reply` when `acknowledged` says enough replicas have the write.
    fn check<T>(self, reply: T, acknowledged: Option<Value>) -> RedisResult<T> {
        match acknowledged.map(Value::extract_error).transpose()? {
            Some(Value::Int(count)) if count >= i64::from(self.replicas) => Ok(reply),
            Some(Value::Int(count)) => Err(redis::make_extension_error(
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

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let Some(wait) = self.wait else {
                return self.inner.req_packed_command(cmd).await;
            };
            let mut pipeline = redis::pipe();
            pipeline
                .add_command(cmd.clone())
                .add_command(wait.command());
            let mut replies = self.inner.req_packed_commands(&pipeline, 0, 2).await?;
            let acknowledged = replies.pop();
            // The command's own failure comes first: a write that failed has nothing to wait for.
            let reply = replies.pop().unwrap_or(Value::Nil).extract_error()?;
            wait.check(reply, acknowledged)
        })
    }

    /// Pipelines are passed on only without a [`Wait`]: `Redis` sends none, and a `WAIT`
    /// appended to a transaction would land inside its `MULTI`.
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        if self.wait.is_some() {
            return Box::pin(async {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "pipelines are not sent on a connection that waits for replicas",
                )))
            });
        }
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
