//! The outbox's upkeep: consumer names of replicas that are gone are removed from the
//! stream's consumer group.
//!
//! Every replica reads as its own consumer (`<host>-<pid>`), so each restart, rollout or
//! crash leaves a name behind in the group for good. A consumer that holds no pending entries
//! and has not read for [`OutboxUpkeep::idle_consumer_expiry`] belongs to no running replica
//! (a live one reads every poll interval); deleting it (`XGROUP DELCONSUMER`) loses nothing,
//! and should it be alive after all, its next read recreates it. A consumer that still holds
//! entries is left to the claim of a live one, which moves them off it first.

use std::{sync::LazyLock, time::Duration};

use redis::Script;
use serde::{Serialize, de::DeserializeOwned};

use super::Outbox;
use crate::{config::OutboxUpkeep, shutdown::Shutdown};

/// How often the group's consumers are looked at.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(30);

impl<P> Outbox<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// Removes the group's gone consumers every [`UPKEEP_INTERVAL`] (the first time soon
    /// after start) until `shutdown`.
    pub async fn upkeep(self, settings: OutboxUpkeep, shutdown: Shutdown) {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.clone().wait() => return,
            }
            wait = UPKEEP_INTERVAL.min(settings.idle_consumer_expiry.max(Duration::from_secs(1)));
            match self
                .remove_gone_consumers(settings.idle_consumer_expiry)
                .await
            {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(
                        stream = self.key,
                        ?removed,
                        "removed consumers of gone replicas"
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(stream = self.key, error = %err, "outbox upkeep failed; trying again later");
                }
            }
        }
    }

    /// Deletes every consumer of the group, other than this one, with no pending entries and
    /// idle longer than `expiry` (see [`REMOVE_GONE`]); returns their names.
    async fn remove_gone_consumers(&self, expiry: Duration) -> redis::RedisResult<Vec<String>> {
        let mut invocation = REMOVE_GONE.prepare_invoke();
        invocation
            .key(self.key)
            .arg(self.group)
            .arg(&*self.consumer)
            .arg(u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX));
        match self.redis.invoke(&invocation).await {
            Ok(removed) => Ok(removed),
            // No stream or no group yet: nobody to remove.
            Err(err) if err.code() == Some("NOGROUP") => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }
}

/// Deletes the consumers of group `ARGV[1]` of stream `KEYS[1]` other than `ARGV[2]` that
/// hold no pending entries and were idle at least `ARGV[3]` ms; returns their names. Checked
/// and deleted in one step: `DELCONSUMER` would drop the pending entries of a consumer that
/// claimed one in between.
static REMOVE_GONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  local name = fields['name']
  if name ~= ARGV[2] and fields['pending'] == 0 and fields['idle'] >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed[#removed + 1] = name
  end
end
return removed
",
    )
});
