//! Redis as Sentinel runs it: a primary, a replica and three `redis-sentinel`s watching them,
//! with the short timeouts a test needs (a primary is down after 1 s of silence), so a killed
//! primary is replaced within seconds.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use redis::aio::MultiplexedConnection;

use crate::{
    helpers::eventually,
    redis_server::{RedisServer, restartable_port},
};

/// The name the sentinels monitor the primary under (the services' default).
pub const MASTER: &str = "mymaster";
/// Sentinels that must agree the primary is down before one fails it over.
const QUORUM: usize = 2;
const SENTINELS: usize = 3;

/// One running `redis-sentinel`; killed and its directory removed on drop.
pub struct SentinelServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl SentinelServer {
    /// Starts a sentinel monitoring the primary on `primary_port` and waits until it answers.
    pub async fn start(primary_port: u16) -> Self {
        let port = restartable_port();
        let dir = std::env::temp_dir().join(format!("it-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the sentinel's directory");
        // Sentinel rewrites its configuration as it learns; it must be a file of its own.
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel resolve-hostnames no\n\
                 sentinel monitor {MASTER} 127.0.0.1 {primary_port} {QUORUM}\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 3000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir.display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-sentinel")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-sentinel (apt-get install redis-sentinel)");
        let sentinel = Self {
            port,
            dir,
            child: Some(child),
        };
        eventually(&format!("sentinel {port} to answer"), || async {
            let mut connection = sentinel.try_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        })
        .await;
        sentinel
    }

    /// `127.0.0.1:<port>`, as `REDIS_SENTINELS` lists it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the sentinel outright (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The port of the primary this sentinel names now.
    pub async fn primary_port(&self) -> Option<u16> {
        let mut connection = self.try_connection().await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER)
            .query_async(&mut connection)
            .await
            .ok()?;
        named.map(|(_, port)| port)
    }

    /// The replicas and other sentinels this sentinel knows of.
    async fn peers(&self) -> Option<(usize, usize)> {
        let mut connection = self.try_connection().await?;
        let master: HashMap<String, String> = redis::cmd("SENTINEL")
            .arg("master")
            .arg(MASTER)
            .query_async(&mut connection)
            .await
            .ok()?;
        let count = |field: &str| master.get(field)?.parse().ok();
        Some((count("num-slaves")?, count("num-other-sentinels")?))
    }

    async fn try_connection(&self) -> Option<MultiplexedConnection> {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary, its replica and three sentinels that know both and each other.
pub struct HaRedis {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<SentinelServer>,
}

impl HaRedis {
    /// Starts everything and waits until every sentinel knows the replica and the two other
    /// sentinels (before that, a failover could not be agreed on).
    pub async fn start() -> Self {
        let primary = RedisServer::start_restartable().await;
        let replica = RedisServer::start_replica_of(&primary).await;
        let mut sentinels = Vec::with_capacity(SENTINELS);
        for _ in 0..SENTINELS {
            sentinels.push(SentinelServer::start(primary.port()).await);
        }
        let ha = Self {
            primary,
            replica,
            sentinels,
        };
        for sentinel in &ha.sentinels {
            eventually("every sentinel to know its peers", || async {
                let (known_replicas, other_sentinels) = sentinel.peers().await?;
                (known_replicas >= 1 && other_sentinels == SENTINELS - 1).then_some(())
            })
            .await;
        }
        ha
    }

    /// `REDIS_SENTINELS` for the services.
    pub fn sentinels_env(&self) -> String {
        let addresses: Vec<String> = self.sentinels.iter().map(SentinelServer::address).collect();
        addresses.join(",")
    }

    /// Starts the killed old primary again and waits until the sentinels have made it a
    /// replica of the new one and it holds the new one's data. Sentinel looks at a returning
    /// server only every 10 s and converts it once it has seen it claim the wrong role for a
    /// while, so this waits longer than [`PATIENCE`](crate::helpers::PATIENCE) — and on a
    /// loaded machine a sentinel whose timer ran late goes into TILT mode for 30 s, during
    /// which it reconfigures nothing (seen once in CI, all tests running at once).
    pub async fn rejoin_old_primary(&mut self) {
        self.primary.start_again().await;
        let deadline = std::time::Instant::now() + 6 * crate::helpers::PATIENCE;
        while self.primary.role().await.as_deref() != Some("slave") {
            assert!(
                std::time::Instant::now() < deadline,
                "the old primary never rejoined as a replica"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.primary.wait_for_link_up().await;
    }

    /// Waits until every running sentinel names the server on `port` as the primary.
    pub async fn wait_for_primary(&self, port: u16) {
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            eventually(
                &format!("the sentinels to name {port} the primary"),
                || async { (sentinel.primary_port().await == Some(port)).then_some(()) },
            )
            .await;
        }
    }
}
