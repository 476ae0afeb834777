//! The outbox's Redis stream operations: the consumer group, reading, claiming, and finishing
//! an entry (acknowledged and deleted, or moved to the dead letters) in one atomic step.

use std::sync::LazyLock;

use redis::{
    AsyncCommands, Script,
    aio::ConnectionManager,
    streams::{
        StreamAutoClaimOptions, StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use super::{BATCH, CLAIM_IDLE, Outbox};

/// Finishes one entry: acknowledges and deletes it; with a reason, first copies it to the
/// dead-letter stream (once: a repeat after a lost reply finds the entry gone and copies
/// nothing). Returns whether the entry was still there.
pub(super) static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: 1 stream, 2 dead-letter stream
-- ARGV: 1 group, 2 entry id, 3 reason ('' when delivered), 4 attempts, 5 payload field
local found = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if ARGV[3] ~= '' and #found > 0 then
  local fields, payload = found[1][2], ''
  for i = 1, #fields, 2 do
    if fields[i] == ARGV[5] then payload = fields[i + 1] end
  end
  redis.call('XADD', KEYS[2], '*', ARGV[5], payload, 'entry_id', ARGV[2],
    'reason', ARGV[3], 'attempts', ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #found
",
    )
});

impl<P> Outbox<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// Whether the entry is still in the stream (not yet deleted by its inline delivery).
    pub(super) async fn still_queued(&self, id: &str) -> redis::RedisResult<bool> {
        let found: StreamRangeReply = self
            .redis
            .query(redis::cmd("XRANGE").arg(self.key).arg(id).arg(id))
            .await?;
        Ok(!found.ids.is_empty())
    }

    pub(super) async fn ensure_group(&self, redis: &mut ConnectionManager) -> anyhow::Result<()> {
        let created: redis::RedisResult<()> = redis
            .xgroup_create_mkstream(self.key, self.group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn read(
        &self,
        redis: &mut ConnectionManager,
        from: &str,
        count: usize,
    ) -> anyhow::Result<Vec<StreamId>> {
        let options = StreamReadOptions::default()
            .group(self.group, &*self.consumer)
            .count(count);
        let reply: Option<StreamReadReply> =
            redis.xread_options(&[self.key], &[from], &options).await?;
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .collect())
    }

    /// Takes over up to [`BATCH`] entries idle for [`CLAIM_IDLE`], from `from` on in the
    /// pending list; returns them and where the next claim continues.
    pub(super) async fn claim_stale(
        &self,
        redis: &mut ConnectionManager,
        from: &str,
    ) -> anyhow::Result<(Vec<StreamId>, String)> {
        let reply: redis::streams::StreamAutoClaimReply = redis
            .xautoclaim_options(
                self.key,
                self.group,
                &*self.consumer,
                CLAIM_IDLE.as_millis() as u64,
                from,
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await?;
        let next = if reply.next_stream_id == "0-0" {
            "0".to_owned()
        } else {
            reply.next_stream_id
        };
        Ok((reply.claimed, next))
    }
}
