//! The services' outbox streams in Redis.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::eventually;
use crate::{RedisServer, Stack};

impl<S> Stack<S> {
    /// `entries-added` of stream `stream` in DB `db`: every entry ever queued, whether or not it
    /// has since been delivered and deleted.
    pub async fn entries_ever_added(&self, db: u8, stream: &str) -> i64 {
        entries_ever_added_in(&self.redis, db, stream).await
    }

    pub(super) async fn wait_for_empty_stream(&self, db: u8, stream: &str) {
        eventually(&format!("{stream} in DB {db} to drain"), || async {
            let length: usize = self.redis.db(db).await.xlen(stream).await.expect("XLEN");
            (length == 0).then_some(())
        })
        .await;
    }
}

/// [`Stack::entries_ever_added`] on any Redis server (a Sentinel-managed primary, say).
pub async fn entries_ever_added_in(redis: &RedisServer, db: u8, stream: &str) -> i64 {
    let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query_async(&mut redis.db(db).await)
        .await
        .expect("XINFO STREAM");
    match info.get("entries-added") {
        Some(redis::Value::Int(added)) => *added,
        other => panic!("entries-added: {other:?}"),
    }
}
