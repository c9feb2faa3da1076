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

use crate::common::bounded;

/// The window the page is shown (and screenshotted) in.
const WINDOW: (u32, u32) = (1280, 900);

/// A WebDriver session on a headless Chromium we started; both processes
/// die with it.
pub struct Browser {
    client: Client,
    _driver: DriverGuard,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium recording its console, or
    /// returns `None` (after printing a note) when either is not installed.
    /// Any other failure to start panics: only a missing binary is a skip.
    pub async fn start() -> Option<Browser> {
        let (Some(chromedriver), Some(chromium)) = (find_on_path("chromedriver"), find_chromium())
        else {
            eprintln!(
                "note: skipped, chromium or chromedriver is not on PATH \
                 (Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
            );
            return None;
        };
        let profile = tempfile::tempdir().expect("a temporary profile directory");
        let mut child = Command::new(&chromedriver)
            // Port 0: chromedriver picks a free port and prints it, so no
            // other test can take it between our choice and its bind.
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group: one kill(-pgid) reaches chromedriver, Chromium and
            // Chromium's zygote and renderers, none of which we know the pid of.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let driver = DriverGuard { child, profile };

        // chromedriver prints "... started successfully on port N." once it
        // listens: wait for that line, then keep draining its stdout so it
        // never blocks on a full pipe.
        let (port_tx, port_rx) = tokio::sync::oneshot::channel::<u16>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut port_tx = Some(port_tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .split_once("started successfully on port ")
                    .and_then(|(_, rest)| rest.trim_end_matches('.').parse().ok());
                if let Some(port) = port {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let port = bounded("chromedriver listening", port_rx)
            .await
            .expect("chromedriver exited before it listened");

        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Test containers often run as root, where Chromium's
                    // sandbox refuses to start.
                    "--no-sandbox",
                    "--disable-gpu",
                    // /dev/shm is 64 MiB in many containers, too small for Chromium.
                    "--disable-dev-shm-usage",
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                    // A fresh profile: no state from, or lock shared with, another run.
                    format!("--user-data-dir={}", driver.profile.path().display()),
                ],
            }),
        );
        // Keep every console entry for `console_errors` (WebDriver has no log API).
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = bounded(
            "WebDriver session",
            ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}/")),
        )
        .await
        .expect("a WebDriver session on headless Chromium");
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    /// Navigates to `url` and waits for its load event.
    pub async fn goto(&self, url: &str) {
        bounded("load the page", self.client.goto(url))
            .await
            .unwrap_or_else(|e| panic!("load {url}: {e}"));
    }

    /// The cells' text of every body row of the table `#id`, as rendered.
    pub async fn table(&self, id: &str) -> Vec<Vec<String>> {
        let script =
            "return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr'))\
                      .map(tr => Array.from(tr.cells).map(td => td.textContent));";
        let rows = bounded("read a table", self.client.execute(script, vec![json!(id)]))
            .await
            .expect("run a script in the page");
        serde_json::from_value(rows).expect("rows of cell texts")
    }

    /// The text content of the element `#id`.
    pub async fn text(&self, id: &str) -> String {
        let script = "return document.getElementById(arguments[0]).textContent;";
        let text = bounded(
            "read an element",
            self.client.execute(script, vec![json!(id)]),
        )
        .await
        .expect("run a script in the page");
        text.as_str().unwrap_or_default().to_string()
    }

    /// The browser console's errors (`SEVERE`: exceptions, failed loads)
    /// since the session started or the last call, one `source: message`
    /// string each.
    pub async fn console_errors(&self) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Entry {
            level: String,
            source: Option<String>,
            message: String,
        }
        let log = bounded("browser log", self.client.issue_cmd(BrowserLog))
            .await
            .expect("chromedriver returns the browser log");
        let entries: Vec<Entry> = serde_json::from_value(log).expect("log entries");
        entries
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| format!("{}: {}", e.source.unwrap_or_default(), e.message))
            .collect()
    }

    /// Saves a PNG of the whole page to `path`. WebDriver screenshots only
    /// the viewport, so the window is first made tall enough for the page
    /// (the window size includes a frame the viewport does not).
    pub async fn screenshot(&self, path: &Path) {
        let script = "return document.documentElement.scrollHeight \
                      + window.outerHeight - window.innerHeight;";
        let height = bounded("page height", self.client.execute(script, vec![]))
            .await
            .expect("run a script in the page")
            .as_u64()
            .and_then(|h| u32::try_from(h).ok())
            .expect("a height in pixels");
        bounded("resize", self.client.set_window_size(WINDOW.0, height))
            .await
            .expect("resize the window");
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

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's console
/// log, which it keeps when the session asked for `goog:loggingPrefs`.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
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
    profile: tempfile::TempDir,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)).
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only,
        // the one we created for chromedriver.
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
