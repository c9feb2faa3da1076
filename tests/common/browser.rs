//! A headless Chromium driven over WebDriver, for tests that look at the admin
//! page the way an operator does: the DOM text the page's script renders, the
//! browser console, a screenshot.
//!
//! `chromedriver` runs in its own process group and starts Chromium inside it,
//! so [`Browser`]'s guard kills both (and Chromium's helpers) with one signal,
//! also when the test panics. WebDriver talks plain HTTP on loopback, so the
//! client is built on hyper's `HttpConnector` with no TLS stack at all.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::bounded;

/// The window the page is shown (and screenshotted) in.
pub const WINDOW: (u32, u32) = (1280, 900);

/// A browser console entry, as chromedriver's log endpoint returns it.
#[derive(Debug, serde::Deserialize)]
pub struct ConsoleEntry {
    pub level: String,
    pub message: String,
}

/// A WebDriver session on a headless Chromium we started; both processes
/// die with it.
pub struct Browser {
    pub client: Client,
    _driver: DriverGuard,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium recording its console.
    /// Panics, saying what to install, when either is missing.
    pub async fn start() -> Browser {
        let (chromedriver, chromium) = match (find_on_path("chromedriver"), find_chromium()) {
            (Some(d), Some(c)) => (d, c),
            _ => panic!(
                "the admin page test needs chromium and chromedriver on PATH: \
                 apt-get install -y chromium chromium-driver (CI's .ci/run installs them)"
            ),
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let mut child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group: one kill(-pgid) reaches chromedriver, Chromium and
            // Chromium's zygote and renderers, none of which we know the pid of.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let driver = DriverGuard {
            child,
            _profile: profile,
        };
        // chromedriver says when it listens; wait for that line, then keep
        // draining its stdout so it never blocks on a full pipe.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut started_tx = Some(started_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("started successfully") {
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        bounded("chromedriver listening", started_rx)
            .await
            .expect("chromedriver exited before it listened");

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    format!("--user-data-dir={}", driver._profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = bounded(
            "WebDriver session",
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}/")),
        )
        .await
        .expect("a WebDriver session on headless chromium");
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Navigates to `url` (bounded).
    pub async fn goto(&self, url: &str) {
        bounded("load the page", self.client.goto(url))
            .await
            .unwrap_or_else(|e| panic!("load {url}: {e}"));
    }

    /// The cells' text of every body row of the table `#id`, as rendered.
    pub async fn table(&self, id: &str) -> Vec<Vec<String>> {
        let script = "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))\
                      .map(tr => Array.from(tr.cells).map(td => td.textContent));";
        let rows = bounded("read a table", self.client.execute(script, vec![json!(id)]))
            .await
            .expect("run a script in the page");
        serde_json::from_value(rows).expect("rows of cell texts")
    }

    /// The text content of the element `#id`.
    pub async fn text(&self, id: &str) -> String {
        let script = "return document.getElementById(arguments[0]).textContent;";
        let text = bounded("read an element", self.client.execute(script, vec![json!(id)]))
            .await
            .expect("run a script in the page");
        text.as_str().unwrap_or_default().to_string()
    }

    /// The browser console since the last call (chromedriver's log endpoint;
    /// WebDriver itself has none).
    pub async fn console(&self) -> Vec<ConsoleEntry> {
        let log = bounded("browser log", self.client.issue_cmd(BrowserLog))
            .await
            .expect("chromedriver returns the browser log");
        serde_json::from_value(log).expect("log entries")
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = bounded("screenshot", self.client.screenshot())
            .await
            .expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session the polite way; the guard then kills what is left.
    pub async fn close(self) {
        let _ = bounded("end the WebDriver session", self.client.close()).await;
    }
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Kills chromedriver's process group (Chromium included) and removes the
/// profile directory, on every exit path.
struct DriverGuard {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)).
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only;
        // the group is the one we created for chromedriver.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Debian names it `chromium`, other distributions `chromium-browser`.
fn find_chromium() -> Option<PathBuf> {
    find_on_path("chromium").or_else(|| find_on_path("chromium-browser"))
}

/// A loopback port nothing listens on right now, for chromedriver.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The console entries at level SEVERE (errors: failed loads, exceptions).
pub fn severe(entries: &[ConsoleEntry]) -> Vec<&ConsoleEntry> {
    entries.iter().filter(|e| e.level == "SEVERE").collect()
}
