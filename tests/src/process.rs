//! One service binary running as a real process.
//!
//! The harness does not pick ports: it starts the binary with `HTTP_PORT=0` (frontend-service:
//! `METRICS_PORT=0`) and `GRPC_PORT=0`,
//! the service binds whatever the kernel gives it and writes the real ports to the file
//! `READY_FILE` names (see `service_runtime::server`), and the harness reads them from there.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How long a service may take to bind its ports and report SERVING.
const START_UP: Duration = Duration::from_secs(15);

/// The ports a service announced in its `READY_FILE`; `None` where it has no such server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundPorts {
    pub http: Option<u16>,
    pub grpc: Option<u16>,
}

/// A running service binary; killed on drop. Its output goes to the test's stderr when
/// `TEST_LOG` is set, and nowhere otherwise — or to a file the test reads
/// ([`ServiceProcess::start_logged`]).
pub struct ServiceProcess {
    binary: &'static str,
    env: Vec<(String, String)>,
    /// This process's own directory, for its `READY_FILE`; removed on drop.
    dir: PathBuf,
    ports: BoundPorts,
    child: Option<Child>,
    /// Where its output goes when the test reads it.
    log: Option<PathBuf>,
}

impl ServiceProcess {
    /// Starts `binary` with `env` on ports of its own choosing, reads them from its
    /// `READY_FILE`, and waits until its gRPC health service answers SERVING.
    pub async fn start(binary: &'static str, env: Vec<(String, String)>) -> Self {
        Self::start_with(binary, env, false).await
    }

    /// [`ServiceProcess::start`] with the process's output (stdout and stderr) kept for
    /// [`ServiceProcess::output`]; `RUST_LOG` in `env` sets what it logs.
    pub async fn start_logged(binary: &'static str, env: Vec<(String, String)>) -> Self {
        Self::start_with(binary, env, true).await
    }

    /// Everything the process wrote so far (only with [`ServiceProcess::start_logged`]).
    pub fn output(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }

    async fn start_with(binary: &'static str, env: Vec<(String, String)>, logged: bool) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("it-{binary}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the service's directory");
        let mut process = Self {
            binary,
            env,
            dir,
            ports: BoundPorts {
                http: None,
                grpc: None,
            },
            child: None,
            log: None,
        };
        if logged {
            process.log = Some(process.dir.join("output.log"));
        }
        process.ports = process
            .spawn(BoundPorts {
                http: Some(0),
                grpc: Some(0),
            })
            .await;
        process.wait_until_ready().await;
        process
    }

    /// The ports the service bound when it was first started (kept across restarts).
    pub fn ports(&self) -> BoundPorts {
        self.ports
    }

    /// The gRPC port; every service has one.
    pub fn grpc_port(&self) -> u16 {
        self.ports.grpc.expect("every service serves gRPC")
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

    /// Sets `name` to `value` in the environment of the next (re)start.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Runs `binary` with `env` on free ports until it exits by itself (within `limit`, else it
    /// is killed): for a service that must refuse to start. Its output is captured.
    pub fn run_to_exit(
        binary: &'static str,
        env: Vec<(String, String)>,
        limit: Duration,
    ) -> std::process::Output {
        let mut child = Command::new(binary_path(binary))
            .env_clear()
            .envs(env)
            .env("HTTP_PORT", "0")
            .env("GRPC_PORT", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {binary}: {err}"));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().expect("collect the output")
    }

    /// Starts the process again with the same environment on the same ports: its peers hold
    /// URLs with those ports, so they are asked for explicitly this time.
    pub async fn restart(&mut self) {
        self.kill();
        let announced = self.spawn(self.ports).await;
        assert_eq!(
            announced, self.ports,
            "{} came back on other ports",
            self.binary
        );
        self.wait_until_ready().await;
    }

    /// Spawns the binary asking for `ports` (0: any free port; `None`: leave the variable
    /// unset) and returns the ports it announces once it has bound them.
    async fn spawn(&mut self, ports: BoundPorts) -> BoundPorts {
        let ready_file = self.dir.join("ready.json");
        // A file left by the previous run would announce ports before this one has bound any.
        let _ = std::fs::remove_file(&ready_file);
        let log = || match &self.log {
            Some(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Stdio::from)
                .expect("open the process's log file"),
            None if std::env::var_os("TEST_LOG").is_some() => Stdio::inherit(),
            None => Stdio::null(),
        };
        let mut command = Command::new(binary_path(self.binary));
        command
            .env_clear()
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("READY_FILE", &ready_file)
            .stdout(log())
            .stderr(log());
        if let Some(port) = ports.http {
            command.env(http_port_variable(self.binary), port.to_string());
        }
        if let Some(port) = ports.grpc {
            command.env("GRPC_PORT", port.to_string());
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.binary));
        self.child = Some(child);
        self.wait_for_ready_file(&ready_file).await
    }

    /// Waits for the service to write `path` (it renames a complete file into place, so a file
    /// that exists is whole) and parses it; panics at once if the process exits first.
    async fn wait_for_ready_file(&mut self, path: &Path) -> BoundPorts {
        let deadline = Instant::now() + START_UP;
        loop {
            self.assert_running();
            match std::fs::read(path) {
                Ok(bytes) => return parse_ready_file(self.binary, &bytes),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => panic!("read {}: {err}", path.display()),
            }
            assert!(
                Instant::now() < deadline,
                "{} did not write its READY_FILE",
                self.binary
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the gRPC health service answers SERVING.
    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_UP;
        let url = format!("http://127.0.0.1:{}", self.grpc_port());
        loop {
            self.assert_running();
            if is_serving(&url).await {
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

    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited during start-up: {status} (TEST_LOG=info shows why)",
                self.binary
            );
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The variable that sets the binary's HTTP port: frontend-service's HTTP server is its
/// metrics port.
fn http_port_variable(binary: &str) -> &'static str {
    if binary == "frontend-service" {
        "METRICS_PORT"
    } else {
        "HTTP_PORT"
    }
}

/// `{"http": <port or null>, "grpc": <port or null>}`.
fn parse_ready_file(binary: &str, bytes: &[u8]) -> BoundPorts {
    let ports: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_else(|err| {
        panic!(
            "{binary}'s READY_FILE is not JSON ({err}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    let port = |name: &str| -> Option<u16> {
        match &ports[name] {
            serde_json::Value::Null => None,
            value => Some(
                value
                    .as_u64()
                    .and_then(|port| u16::try_from(port).ok())
                    .unwrap_or_else(|| panic!("{binary}'s READY_FILE: bad {name} port: {ports}")),
            ),
        }
    };
    BoundPorts {
        http: port("http"),
        grpc: port("grpc"),
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

/// Whether the gRPC server at `url` answers its health check (the server as a whole, `""`)
/// with SERVING; the one readiness probe of the harness, for processes and in-process services.
pub(crate) async fn is_serving(url: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let request = HealthCheckRequest {
        service: String::new(),
    };
    HealthClient::new(channel)
        .check(request)
        .await
        .is_ok_and(|reply| reply.into_inner().status == ServingStatus::Serving as i32)
}
