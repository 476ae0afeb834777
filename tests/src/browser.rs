//! A real browser for the web inbox: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, with the `fantoccini` client), at a phone's width.
//!
//! Without the browser or its driver the browser test cannot run: under `CI=true` that is a
//! failure (CI installs both), elsewhere the test is skipped with a loud message saying what
//! to install.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// Where Debian's `chromium` and `chromium-driver` put them; `CHROMIUM` / `CHROMEDRIVER`
/// override.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A phone's viewport (the page must be readable there).
const WINDOW: (u32, u32) = (412, 915);

/// A headless Chromium session; the driver is killed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    screenshots: PathBuf,
}

fn setting(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, saving screenshots to
    /// `screenshots`. `None` (after saying so loudly) when either is missing outside CI;
    /// under `CI=true` a missing one panics.
    pub async fn start(screenshots: &Path) -> Option<Self> {
        let chromium = setting("CHROMIUM", CHROMIUM);
        let driver = setting("CHROMEDRIVER", CHROMEDRIVER);
        let missing: Vec<String> = [&chromium, &driver]
            .into_iter()
            .filter(|path| !path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "the browser test needs {} (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: {message}"
            );
            eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
            return None;
        }
        let port = free_port();
        let driver = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "no WebDriver session from chromedriver: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        std::fs::create_dir_all(screenshots).expect("create the screenshot directory");
        Some(Self {
            client,
            driver,
            screenshots: screenshots.to_owned(),
        })
    }

    /// Runs `script` (a function body; `arguments` as in WebDriver) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|err| panic!("run {script:?} in the page: {err}"))
    }

    /// Saves a PNG of the viewport as `<screenshots>/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("take a screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
    }

    /// Ends the session (the driver is killed on drop).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}
