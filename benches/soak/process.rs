//! The waypoint under test as a child process (the release binary, as it ships), and the
//! few admin reads the soak makes: readiness, the config generation, the certificate's
//! remaining lifetime.
//!
//! [`WaypointProcess`] is a guard: dropping it (a panic, an early return) kills the child,
//! so a failed soak never leaves a waypoint holding the ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

/// Longest wait for one admin answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the waypoint listens and what it loads.
pub struct WaypointArgs {
    pub bin: PathBuf,
    pub config_dir: PathBuf,
    pub cert_dir: PathBuf,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub hbone: SocketAddr,
    pub namespace: String,
    /// stdout and stderr go here.
    pub log: PathBuf,
}

/// The running waypoint; killed on drop unless [`WaypointProcess::stop`] ended it.
pub struct WaypointProcess {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl WaypointProcess {
    /// Starts the waypoint and waits until `/healthz/ready` answers 200.
    pub async fn start(args: &WaypointArgs) -> anyhow::Result<WaypointProcess> {
        let log = std::fs::File::create(&args.log)
            .with_context(|| format!("creating {}", args.log.display()))?;
        let child = Command::new(&args.bin)
            .arg("run")
            .arg("--config")
            .arg(&args.config_dir)
            .arg("--cert-dir")
            .arg(&args.cert_dir)
            .args(["--namespace", &args.namespace])
            .args(["--http-listen", &args.http.to_string()])
            .args(["--admin-listen", &args.admin.to_string()])
            .args(["--hbone-listen", &args.hbone.to_string()])
            .args(["--drain-timeout", "2"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", args.bin.display()))?;
        let mut wp = WaypointProcess {
            child,
            admin: args.admin,
            log: args.log.clone(),
        };
        wp.wait_ready().await?;
        Ok(wp)
    }

    /// The child's pid, for /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls readiness: a child process gives no other signal that it is serving.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "waypoint exited at startup ({status}); see {}",
                    self.log.display()
                );
            }
            if let Ok((200, _)) = admin_get(self.admin, "/healthz/ready").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("waypoint not ready after 30 s; see {}", self.log.display());
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the child has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then up to 10 s for the drain (`--drain-timeout 2`); returns the exit status.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // std can only SIGKILL; the graceful path is what a pod gets, so use kill(1).
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            sleep(Duration::from_millis(50)).await;
        }
        bail!("waypoint still running 10 s after SIGTERM")
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for WaypointProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on the admin listener (a fresh connection each time); status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let exchange = async {
        let tcp = TcpStream::connect(admin).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, admin.to_string())
            .body(Empty::<Bytes>::new())?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    timeout(ADMIN_TIMEOUT, exchange)
        .await
        .with_context(|| format!("admin {path} timed out"))?
}

/// What `/config_dump` says about the config and the certificate.
pub struct DumpFacts {
    pub generation: u64,
    pub seconds_to_expiry: Option<i64>,
    pub last_error: Option<String>,
}

/// Reads `/config_dump`: `generation`, `identity.seconds_to_expiry`, `last_error`.
pub async fn config_facts(admin: SocketAddr) -> anyhow::Result<DumpFacts> {
    let (status, body) = admin_get(admin, "/config_dump").await?;
    if status != 200 {
        bail!("/config_dump answered {status}");
    }
    let dump: Value = serde_json::from_slice(&body).context("/config_dump is JSON")?;
    Ok(DumpFacts {
        generation: dump["generation"]
            .as_u64()
            .context("/config_dump has no generation")?,
        seconds_to_expiry: dump["identity"]["seconds_to_expiry"].as_i64(),
        last_error: (!dump["last_error"].is_null()).then(|| dump["last_error"].to_string()),
    })
}
