//! Shared fakes for the integration tests: echo backends on their own
//! loopback addresses, a config directory, an in-process waypoint and a small
//! HTTP client. Every await is bounded so a bug fails fast instead of hanging.
//!
//! Tests wait for events, never for time: [`bounded`] around the event
//! (`EchoServer::wait_for`, a oneshot from a fake, `FakeApiServer::wait_until`),
//! [`until_reloaded`] for what a config change causes, and [`eventually`], the
//! one poll, only where nothing can signal.

#![allow(dead_code)]

pub mod authz;
pub mod grpc;
pub mod mesh;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use waypoint::echo::{EchoReply, EchoServer};
use waypoint::server::Running;
use waypoint::settings::Settings;

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(10);

/// Pause between two checks of [`eventually`].
const POLL: Duration = Duration::from_millis(20);

/// Awaits `f` or panics after [`STEP`].
pub async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Checks `check` every 20 ms until it returns `Ok`, or panics after [`STEP`] with `what`
/// and the last `Err` (what was seen instead).
///
/// The one poll in the tests, for what gives no signal to wait on:
/// - the `waypoint` binary, another process, seen only over HTTP (readiness, drain);
/// - Prometheus samples the waypoint writes in its `logging` phase, just after the client
///   has its response, and the TCP close it counts once a tunnel has ended on its side;
/// - `/healthz/ready` of an in-process waypoint or controller: readiness is a set of flags
///   nothing notifies on;
/// - an outlier ejection expiring, which the waypoint checks on its own clock when it next
///   picks an endpoint.
///
/// Everything else waits for its event, bounded: see the module doc.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let mut last = String::from("nothing checked yet");
    let polled = tokio::time::timeout(STEP, async {
        loop {
            match check().await {
                Ok(found) => return found,
                Err(seen) => last = seen,
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    polled.unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}; last seen: {last}"))
}

/// Checks `check` now and again after every reload attempt `running`'s snapshot store
/// finishes (`SnapshotStore::subscribe`), until it returns `Some`; panics after [`STEP`].
/// The event for anything a config change causes: the store swaps the snapshot before it
/// counts the attempt, so a check after the wake sees the new config.
pub async fn until_reloaded<T>(
    running: &Running,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let mut attempts = running.store.subscribe();
    bounded(what, async {
        loop {
            // Marked seen before checking, so an attempt finishing during the check wakes us.
            attempts.mark_unchanged();
            if let Some(found) = check().await {
                return found;
            }
            attempts
                .changed()
                .await
                .expect("the snapshot store lives as long as the waypoint");
        }
    })
    .await
}

/// Starts an echo backend named `name` on `ip:port`.
pub async fn echo(name: &str, addr: &str) -> EchoServer {
    let addr: SocketAddr = addr.parse().expect("test address");
    bounded("echo start", EchoServer::start(name, addr))
        .await
        .unwrap_or_else(|e| panic!("echo {name} on {addr}: {e}"))
}

/// A Service with one port named `http` and an EndpointSlice listing `ips`
/// (all on `target_port`), in namespace `ns`.
pub fn service(ns: &str, name: &str, port: u16, target_port: u16, ips: &[&str]) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports:\n  - name: http\n    port: {port}\n    targetPort: {target_port}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-abc\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports:\n- name: http\n  port: {target_port}\nendpoints:\n{endpoints}"
    )
}

/// A temporary config directory holding `mesh.yaml`.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("mesh.yaml"), yaml).expect("write config");
        Self { dir }
    }
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    /// Replaces the config atomically (write + rename), as ConfigMap updates do.
    pub fn replace(&self, yaml: &str) {
        let tmp = self.dir.path().join(".mesh.yaml.tmp");
        std::fs::write(&tmp, yaml).expect("write config");
        std::fs::rename(&tmp, self.dir.path().join("mesh.yaml")).expect("rename config");
    }
}

/// Settings for an in-process waypoint on ephemeral loopback ports.
pub fn settings(config: &ConfigDir, namespace: &str) -> Settings {
    let mut s = Settings::new(config.path());
    s.namespace = namespace.to_string();
    s.http_listen = Some("127.0.0.1:0".parse().unwrap());
    s.admin_listen = "127.0.0.1:0".parse().unwrap();
    s.drain_timeout = Duration::from_secs(2);
    s
}

/// Starts a waypoint on `config` with short names resolving in `namespace`.
pub async fn waypoint(config: &ConfigDir, namespace: &str) -> Running {
    bounded(
        "waypoint start",
        waypoint::server::start(settings(config, namespace)),
    )
    .await
    .expect("waypoint starts")
}

/// A response as a test looks at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Reads a response whole (bounded).
    pub async fn read(resp: http::Response<hyper::body::Incoming>) -> Reply {
        let (parts, body) = resp.into_parts();
        let body = bounded("body", body.collect())
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// What the echo backend reported, if an echo backend answered.
    pub fn echo(&self) -> Option<EchoReply> {
        serde_json::from_slice(&self.body).ok()
    }
    /// Name of the backend that answered (panics if the waypoint answered).
    pub fn backend(&self) -> String {
        self.echo()
            .unwrap_or_else(|| {
                panic!(
                    "not an echo reply: {} {:?}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                )
            })
            .backend
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// HTTP/1.1 client with keep-alive.
#[derive(Clone)]
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
    pub target: SocketAddr,
}

impl TestClient {
    pub fn new(target: SocketAddr) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            target,
        }
    }

    /// Sends `method path` with `Host: host` and extra headers.
    pub async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.target, path))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let resp = bounded("request", self.client.request(req))
            .await
            .expect("request succeeds at the transport level");
        Reply::read(resp).await
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send("GET", host, path, &[]).await
    }
}

/// One HTTP/1.1 connection, requests strictly one after another on it: unlike
/// [`TestClient`]'s pool, which may open a second connection while the first
/// is still being handed back, the waypoint sees one downstream connection.
pub struct OneConnection {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl OneConnection {
    pub async fn open(target: SocketAddr) -> Self {
        let tcp = bounded("connect", tokio::net::TcpStream::connect(target))
            .await
            .expect("connect to the waypoint");
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        Self { send }
    }

    /// Sends `GET path` with `Host: host` and extra headers.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = http::Request::get(path).header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(Bytes::new())).expect("request"))
            .await
    }

    /// Sends `req` (origin-form URI) once the previous exchange is over.
    pub async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Reply {
        bounded("connection ready", self.send.ready())
            .await
            .expect("the connection is open");
        let resp = bounded("request", self.send.send_request(req))
            .await
            .expect("request succeeds at the transport level");
        Reply::read(resp).await
    }
}

/// Waits until a `waypoint` process's admin port answers `/healthz/ready` with 200
/// (polled: the binary is another process, seen only over HTTP).
pub async fn binary_ready(admin: SocketAddr) {
    eventually("ready", async || {
        if let Err(e) = tokio::net::TcpStream::connect(admin).await {
            return Err(format!("admin port: {e}"));
        }
        match TestClient::new(admin)
            .get("admin", "/healthz/ready")
            .await
            .status
        {
            200 => Ok(()),
            other => Err(format!("/healthz/ready {other}")),
        }
    })
    .await;
}

/// Sends raw request bytes on a fresh connection: the response's status line, or
/// `None` when the waypoint closed the connection without answering.
pub async fn raw_status_line(addr: SocketAddr, req: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(req.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.contains(&b'\n') {
        match bounded("an answer or a close", conn.read(&mut buf)).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    Some(text.lines().next().unwrap_or_default().to_string())
}

/// Fetches the admin endpoint `path` (body as text).
pub async fn admin_get(running: &Running, path: &str) -> (u16, String) {
    let c = TestClient::new(running.admin_addr);
    let r = c.get("admin", path).await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// Sum of `istio_requests_total` samples whose labels contain every `needle`.
pub fn requests_total(metrics: &str, needles: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Counts answers per backend name.
pub fn tally(replies: &[Reply]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        *m.entry(r.backend()).or_insert(0) += 1;
    }
    m
}

/// Waits until `istio_requests_total` samples matching `needles` sum to
/// `want`: the logging phase records a request just after its response is
/// sent, so a test can read metrics a moment too early (polled: see
/// [`eventually`]). Returns the metrics page that matched.
pub async fn requests_eventually(running: &Running, needles: &[&str], want: u64) -> String {
    let what = format!("istio_requests_total{needles:?} = {want}");
    eventually(&what, async || {
        let (_, metrics) = admin_get(running, "/stats/prometheus").await;
        match requests_total(&metrics, needles) {
            got if got == want => Ok(metrics),
            got => Err(format!("{got}\n{metrics}")),
        }
    })
    .await
}

/// A WasmPlugin in `ns` bound to the waypoint, running one of our
/// `wasm-filters/` (built on first use), with `extra` spec lines.
pub fn wasm_plugin(ns: &str, name: &str, wasm: &str, extra: &str) -> String {
    let url = waypoint::test_helpers::wasm_filters::filter_wasm(wasm);
    format!(
        "---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}}]\n  url: file://{}\n{extra}",
        url.display()
    )
}
