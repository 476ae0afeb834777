//! Asking Sentinel which Redis is the primary (`SENTINEL get-master-addr-by-name`), and
//! checking that the one named says so itself (`ROLE`): right after a failover a sentinel
//! may still name the old primary, which is down or has become a replica.
//!
//! redis-rs' own `sentinel` module finds a primary the same way, but hands out a `Client`
//! for a fixed address: its `ConnectionManager` reconnects to that address for good, so it
//! cannot follow a failover, which is the point here. The few lines below do the asking;
//! `Redis` does the following.

use std::time::Duration;

use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisResult, Value};

/// How long one sentinel or one candidate primary may take to connect or answer.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// The sentinels of one primary, and how to log in to them.
pub(super) struct Sentinels {
    nodes: Vec<ConnectionInfo>,
    master: String,
}

impl Sentinels {
    pub(super) fn new(nodes: Vec<ConnectionInfo>, master: String) -> Self {
        Self { nodes, master }
    }

    /// The primary the first sentinel that answers names, as `node` (database, user,
    /// password) at that address, once it confirms it is a primary; the last failure when
    /// no sentinel names a confirmed primary.
    pub(super) async fn primary(&self, node: &ConnectionInfo) -> RedisResult<ConnectionInfo> {
        let mut last = None;
        for sentinel in &self.nodes {
            match self.ask(sentinel, node).await {
                Ok(primary) => return Ok(primary),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| no_primary("no sentinel configured".to_owned())))
    }

    async fn ask(
        &self,
        sentinel: &ConnectionInfo,
        node: &ConnectionInfo,
    ) -> RedisResult<ConnectionInfo> {
        let mut connection = connect(sentinel.clone()).await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(&mut connection)
            .await?;
        let (host, port) = named.ok_or_else(|| {
            no_primary(format!(
                "sentinel {} does not monitor {:?}",
                sentinel.addr(),
                self.master
            ))
        })?;
        let candidate =
            redis::IntoConnectionInfo::into_connection_info(ConnectionAddr::Tcp(host, port))?
                .set_redis_settings(node.redis_settings().clone());
        if is_primary(&candidate).await? {
            Ok(candidate)
        } else {
            Err(no_primary(format!(
                "{} is named the primary but is not one (yet)",
                candidate.addr()
            )))
        }
    }
}

/// Whether the Redis at `node` says it is a primary (`ROLE`).
pub(super) async fn is_primary(node: &ConnectionInfo) -> RedisResult<bool> {
    let mut connection = connect(node.clone()).await?;
    role_is_primary(&mut connection).await
}

/// Whether the Redis behind `connection` says it is a primary.
pub(super) async fn role_is_primary(
    connection: &mut impl redis::aio::ConnectionLike,
) -> RedisResult<bool> {
    let role: Vec<Value> = redis::cmd("ROLE").query_async(connection).await?;
    Ok(matches!(role.first(), Some(Value::BulkString(role)) if role == b"master"))
}

async fn connect(info: ConnectionInfo) -> RedisResult<redis::aio::MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    redis::Client::open(info)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// "No primary to be had": an I/O error to the rest of the system, so it is retried and
/// reported as `UNAVAILABLE` like a Redis that is down.
pub(super) fn no_primary(why: String) -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::NotConnected, why).into()
}
