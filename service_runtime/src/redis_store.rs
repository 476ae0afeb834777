//! The Redis connection every service uses: one multiplexed connection that reconnects by
//! itself, on the service's own database index.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

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
