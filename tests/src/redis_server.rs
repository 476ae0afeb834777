//! A throwaway `redis-server` on a free port, with append-only persistence in its own
//! directory so a restart keeps the data (as a production Redis would); also as a replica of
//! another, and killed outright (SIGKILL) as a crash would.
//!
//! Unlike the services, Redis cannot be asked to pick its own port and report it: `--port 0`
//! does not mean "any port" to redis-server, it turns TCP off. So this is the one place the
//! harness chooses a port itself (`free_port` below).

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use redis::aio::MultiplexedConnection;

/// A running `redis-server`; killed and its directory removed on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Further `redis-server` arguments (`--replicaof …`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a fresh server and waits until it answers.
    pub async fn start() -> Self {
        Self::start_on(free_port(), Vec::new()).await
    }

    /// A fresh server on a port from [`restartable_port`]: for one that is killed and must
    /// come back on its port (a primary under Sentinel).
    pub async fn start_restartable() -> Self {
        Self::start_on(restartable_port(), Vec::new()).await
    }

    /// Starts a fresh server as a replica of `primary` and waits until it holds a copy of
    /// the primary's data (its link to the primary is up).
    pub async fn start_replica_of(primary: &RedisServer) -> Self {
        let replica = Self::start_on(
            restartable_port(),
            vec![
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                primary.port.to_string(),
            ],
        )
        .await;
        replica.wait_for_link_up().await;
        replica
    }

    async fn start_on(port: u16, extra: Vec<String>) -> Self {
        let dir = std::env::temp_dir().join(format!("it-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        let mut server = Self {
            port,
            dir,
            child: None,
            extra,
        };
        server.spawn().await;
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first word of `ROLE` (`master` or `slave`), or `None` while it cannot be asked
    /// (Sentinel drops a server's clients when it reconfigures it).
    pub async fn role(&self) -> Option<String> {
        let mut connection = self.try_db(0).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut connection).await.ok()?;
        match role.first() {
            Some(redis::Value::BulkString(word)) => {
                Some(String::from_utf8_lossy(word).into_owned())
            }
            _ => None,
        }
    }

    /// Waits until this replica's link to its primary is up (it has the primary's data).
    pub async fn wait_for_link_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut info = String::new();
        while !info.contains("master_link_status:up") {
            assert!(
                Instant::now() < deadline,
                "replica {} never linked up: {info}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(mut connection) = self.try_db(0).await {
                let mut asked = redis::cmd("INFO");
                asked.arg("replication");
                info = asked.query_async(&mut connection).await.unwrap_or_default();
            }
        }
    }

    async fn try_db(&self, db: u8) -> Option<MultiplexedConnection> {
        let client = redis::Client::open(format!("{}/{db}", self.url())).ok()?;
        client.get_multiplexed_async_connection().await.ok()
    }

    /// Kills the server outright (SIGKILL): what the append-only file has not got is lost,
    /// as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again (after [`RedisServer::kill`]) on its port with its data, as it
    /// was started (a replica stays one).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    /// `redis://127.0.0.1:<port>`, without a database index.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection to database `db`, for arranging and asserting on stored data.
    pub async fn db(&self, db: u8) -> MultiplexedConnection {
        redis::Client::open(format!("{}/{db}", self.url()))
            .expect("valid Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test Redis")
    }

    /// Stops the server cleanly (its data is flushed to the append-only file).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut connection = self.db(0).await;
            // The server closes the connection instead of replying; that is the success case.
            let _: redis::RedisResult<()> =
                redis::cmd("SHUTDOWN").query_async(&mut connection).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? apt-get install redis-server)");
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = redis::Client::open(self.url()).expect("valid Redis URL");
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
                && let Ok(info) = redis::cmd("INFO")
                    .arg("server")
                    .query_async::<String>(&mut connection)
                    .await
            {
                // Whoever answers must be the server just started, not another test
                // process's that took the port meanwhile.
                assert!(
                    info.contains(&format!("process_id:{pid}\r")),
                    "port {} is taken by another redis-server",
                    self.port
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on right now, for redis-server only (see the module's note: it cannot
/// report a port of its own choosing). Ports come from below the kernel's ephemeral range
/// (32768+), where nothing else gets a port without asking for that exact number: neither an
/// outgoing connection nor a service started on port 0 can take it between this check and
/// redis-server binding it. Each test process starts at its own offset so parallel runs rarely
/// meet.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    port_between(20_000, 12_000, &NEXT)
}

/// A port like [`free_port`]'s, for a server that is killed and started again on it, from a
/// range [`free_port`] never draws from (the rest of the span below the kernel's ephemeral
/// range): while it is down, no server another test process starts can take its port.
pub(crate) fn restartable_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    port_between(32_000, 768, &NEXT)
}

fn port_between(first: u16, span: u16, next: &AtomicU32) -> u16 {
    let offset = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let n = next.fetch_add(1, Ordering::Relaxed) as u16;
        let port = first + (offset + n % span) % span;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {first} and {}", first + span);
}
