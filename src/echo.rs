//! A small echo workload: answers every request with its own name and what it
//! received (method, path, query, headers) as JSON, plus an `x-backend`
//! header. The demo runs it as its fake pods and the tests use it as their
//! backends, so it can also delay or fail on request and records every request
//! it saw.
//!
//! Request controls (headers): `x-echo-delay-ms: N` waits N ms before
//! answering; `x-echo-status: CODE` answers with that status;
//! `x-echo-close: 1` answers with `connection: close` and closes. Server
//! controls: [`EchoServer::fail_next`] answers the next N requests with a
//! status, [`EchoServer::reset_next`] drops the next N connections without
//! an answer.
//!
//! Not behind the `testing` feature, unlike the fakes in `test_helpers`:
//! `waypoint demo` (`crate::demo`) runs these as its pods, so the release
//! binary needs them. Owns the workload only; the demo's traffic and table
//! are `demo.rs`'s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// What an echo backend received, as it reports it in its JSON body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EchoReply {
    pub backend: String,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case header names; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    pub protocol: String,
    /// Which connection the request came on: accepted connections are numbered
    /// from 1, so tests can see when a proxy opened a new one.
    #[serde(default)]
    pub connection: u64,
}

/// A running echo backend.
pub struct EchoServer {
    pub name: String,
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<EchoReply>>>,
    arrived: Arc<Notify>,
    stop: watch::Sender<bool>,
    faults: Arc<Faults>,
}

/// Scripted failures, consumed one per request.
#[derive(Default)]
struct Faults {
    /// (requests left to fail, status to fail with)
    fail: Mutex<(usize, u16)>,
    reset: std::sync::atomic::AtomicUsize,
}

impl Faults {
    fn take_status(&self) -> Option<StatusCode> {
        let mut f = self.fail.lock().expect("faults lock");
        if f.0 == 0 {
            return None;
        }
        f.0 -= 1;
        StatusCode::from_u16(f.1).ok()
    }

    fn take_reset(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.reset
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl EchoServer {
    /// Starts an echo backend called `name` on `addr` (port 0 picks one).
    /// Serves HTTP/1.1 and h2c (prior knowledge).
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let faults = Arc::new(Faults::default());
        let (stop, mut stopped) = watch::channel(false);
        let name_owned: Arc<str> = Arc::from(name);
        let accepted = std::sync::atomic::AtomicU64::new(0);
        {
            let received = received.clone();
            let arrived = arrived.clone();
            let faults = faults.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
                        _ = stopped.changed() => return,
                    };
                    let _ = stream.set_nodelay(true);
                    let connection =
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let name = name_owned.clone();
                    let received = received.clone();
                    let arrived = arrived.clone();
                    let faults = faults.clone();
                    let mut stopped = stopped.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let name = name.clone();
                            let received = received.clone();
                            let arrived = arrived.clone();
                            let faults = faults.clone();
                            async move {
                                let reset = faults.take_reset();
                                let forced = if reset { None } else { faults.take_status() };
                                let resp =
                                    answer(&name, connection, req, &received, &arrived, forced)
                                        .await;
                                if reset {
                                    // An error makes hyper drop the connection unanswered.
                                    return Err(std::io::Error::other("scripted reset"));
                                }
                                Ok::<_, std::io::Error>(resp)
                            }
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
            });
        }
        Ok(EchoServer {
            name: name.to_string(),
            addr,
            received,
            arrived,
            stop,
            faults,
        })
    }

    /// Answers the next `n` requests with `status` (they are still recorded).
    pub fn fail_next(&self, n: usize, status: u16) {
        *self.faults.fail.lock().expect("faults lock") = (n, status);
    }

    /// Drops the connection of the next `n` requests without answering
    /// (recorded as received).
    pub fn reset_next(&self, n: usize) {
        self.faults
            .reset
            .store(n, std::sync::atomic::Ordering::Release);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<EchoReply> {
        self.received.lock().expect("echo log lock").clone()
    }

    /// Number of requests received so far.
    pub fn count(&self) -> usize {
        self.received.lock().expect("echo log lock").len()
    }

    /// Forgets the requests recorded so far; returns how many there were. A long run (the
    /// soak bench) calls it now and then, since the log otherwise grows with every request.
    pub fn clear_received(&self) -> usize {
        let mut log = self.received.lock().expect("echo log lock");
        let n = log.len();
        log.clear();
        n
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Stops accepting and closes open connections.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    name: &str,
    connection: u64,
    req: Request<Incoming>,
    received: &Mutex<Vec<EchoReply>>,
    arrived: &Notify,
    forced: Option<StatusCode>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert(v);
    }
    if let Some(authority) = parts.uri.authority() {
        // h2 carries Host as :authority.
        headers
            .entry("host".to_string())
            .or_insert_with(|| authority.to_string());
    }
    let reply = EchoReply {
        backend: name.to_string(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body_len: body.len(),
        protocol: format!("{:?}", parts.version),
        connection,
    };
    let delay = header_num(&parts.headers, "x-echo-delay-ms");
    let status = forced
        .or_else(|| {
            header_num(&parts.headers, "x-echo-status")
                .and_then(|c| StatusCode::from_u16(c as u16).ok())
        })
        .unwrap_or(StatusCode::OK);
    received.lock().expect("echo log lock").push(reply.clone());
    arrived.notify_waiters();
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let close = header_num(&parts.headers, "x-echo-close") == Some(1);
    let body = serde_json::to_vec(&reply).expect("echo reply serializes");
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-backend", name);
    if close {
        // hyper closes the connection after a response that says so.
        response = response.header("connection", "close");
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn header_num(headers: &http::HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}
