//! One service binary running as a real process.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A running service binary; killed on drop. Its output goes to the test's stderr when
/// `TEST_LOG` is set, and nowhere otherwise.
pub struct ServiceProcess {
    binary: &'static str,
    env: Vec<(String, String)>,
    grpc_port: u16,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` and waits until its gRPC health service answers SERVING.
    pub async fn start(binary: &'static str, env: Vec<(String, String)>, grpc_port: u16) -> Self {
        let mut process = Self {
            binary,
            env,
            grpc_port,
            child: None,
        };
        process.spawn().await;
        process
    }

    /// Kills the process at once (SIGKILL): a crash, with no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits for it to exit; returns its exit status.
    /// Waits asynchronously, so this test's own connections keep being served and can act on
    /// the server's GOAWAY (a blocked runtime would hold the server's drain open).
    pub async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts the process again with the same ports and environment.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit
        } else {
            Stdio::null
        };
        let child = Command::new(binary_path(self.binary))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log())
            .stderr(log())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.binary));
        self.child = Some(child);
        self.wait_until_serving().await;
    }

    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("http://127.0.0.1:{}", self.grpc_port);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited during start-up: {status}", self.binary);
            }
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())
                .expect("valid URL")
                .connect()
                .await
                && let Ok(reply) = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                && reply.into_inner().status == ServingStatus::Serving as i32
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become healthy",
                self.binary
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary of service `name`, built by cargo as `test-<name>`, a binary of this package
/// (see tests/Cargo.toml), next to this test executable: `target/<profile>/test-<name>`.
fn binary_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test-exe> → target/<profile>/test-<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(format!("test-{name}")))
        .expect("test executable inside a cargo target directory");
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test` (it builds the services first)",
        path.display()
    );
    path
}
