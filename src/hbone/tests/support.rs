//! Fixtures: a mesh (CA + waypoint and client identities), an in-process HBONE server with a
//! scriptable handler, and a raw HTTP/2 HBONE client.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use pingora_core::protocols::GetSocketDigest;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;

use crate::hbone::{
    serve_inbound, ConnectHandler, InboundConfig, Sniffed, TunnelRequest, TunnelStream,
};
use crate::identity::{CertDir, IdentityStore};
use crate::test_helpers::ca::TestCa;

pub const TD: &str = "cluster.local";
pub const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/app/sa/waypoint";
pub const ZTUNNEL_ID: &str = "spiffe://cluster.local/ns/app/sa/client";
pub const T: Duration = Duration::from_secs(20);

/// Fails the test after [`T`] instead of hanging.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// A CA and two identities with their cert dirs.
pub struct Mesh {
    pub ca: TestCa,
    pub waypoint: Arc<IdentityStore>,
    pub client: Arc<IdentityStore>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Mesh {
    pub fn new() -> Self {
        let ca = TestCa::new(TD);
        let (wd, waypoint) = store(&ca, WAYPOINT_ID);
        let (cd, client) = store(&ca, ZTUNNEL_ID);
        Mesh {
            ca,
            waypoint,
            client,
            _dirs: vec![wd, cd],
        }
    }
}

fn store(ca: &TestCa, id: &str) -> (tempfile::TempDir, Arc<IdentityStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    ca.write_cert_dir(dir.path(), id);
    let store = IdentityStore::load(CertDir::new(dir.path())).expect("load");
    (dir, Arc::new(store))
}

/// What the test handler does with a CONNECT.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Accept and echo until EOF, then half-close.
    Echo,
    /// Accept, sniff, report, then echo.
    SniffThenEcho,
    /// Reject with this status.
    Reject(StatusCode),
}

/// What the handler saw for one accepted or rejected stream.
#[derive(Debug)]
pub struct Seen {
    pub req: TunnelRequest,
    /// `get_socket_digest().peer_addr()` of the handed-over stream.
    pub digest_peer: Option<SocketAddr>,
    pub sniffed: Option<Sniffed>,
}

pub struct TestHandler {
    mode: Mode,
    seen: mpsc::UnboundedSender<Seen>,
}

#[async_trait]
impl ConnectHandler for TestHandler {
    type Accepted = ();

    async fn decide(&self, req: &TunnelRequest) -> Result<(), http::StatusCode> {
        match self.mode {
            Mode::Reject(status) => {
                let _ = self.seen.send(Seen {
                    req: req.clone(),
                    digest_peer: None,
                    sniffed: None,
                });
                Err(status)
            }
            _ => Ok(()),
        }
    }

    async fn serve(&self, req: TunnelRequest, _: (), mut stream: TunnelStream) {
        let digest_peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet().copied()));
        let sniffed = match self.mode {
            Mode::SniffThenEcho => stream.sniff().await.ok(),
            _ => None,
        };
        let _ = self.seen.send(Seen {
            req,
            digest_peer,
            sniffed,
        });
        echo(&mut stream).await;
    }
}

async fn echo(stream: &mut TunnelStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// A running inbound server.
pub struct Server {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(store: &IdentityStore, mode: Mode) -> Self {
        Self::start_with(store, mode, InboundConfig::default()).await
    }

    /// Starts on a given address (to simulate a restart on the same address).
    pub async fn start_on(store: &IdentityStore, mode: Mode, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        Self::serve(store, mode, InboundConfig::default(), listener)
    }

    pub async fn start_with(store: &IdentityStore, mode: Mode, cfg: InboundConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(store, mode, cfg, listener)
    }

    fn serve(store: &IdentityStore, mode: Mode, cfg: InboundConfig, listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let (tx, seen) = mpsc::unbounded_channel();
        let (shutdown, rx) = watch::channel(false);
        let handler = Arc::new(TestHandler { mode, seen: tx });
        let task = tokio::spawn(serve_inbound(
            listener,
            store.server_config(TD),
            cfg,
            handler,
            rx,
        ));
        Server {
            addr,
            seen,
            shutdown,
            task,
        }
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        within(self.task).await.expect("server task");
    }
}

/// A raw HBONE client connection (what a ztunnel would open).
pub async fn h2_client(addr: SocketAddr, store: &IdentityStore) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let tls = TlsConnector::from(store.client_config(TD))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("tls");
    // ztunnel's client windows; h2's defaults (64 KiB connection window) also shrink its
    // small-DATA-frame budget, which 1000 streams of tiny echoes exhaust.
    let h2 = crate::hbone::H2Settings::default();
    let (sender, conn) = h2::client::Builder::new()
        .initial_window_size(h2.stream_window)
        .initial_connection_window_size(h2.connection_window)
        .max_frame_size(h2.max_frame_size)
        .handshake(tls)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Sends a request with `method` and `authority` and returns the status and, on 200, the
/// tunnel as a stream.
pub async fn open(
    sender: &SendRequest<Bytes>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<TunnelStream>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).expect("request");
    let mut ready = sender.clone().ready().await.expect("ready");
    let (resp, send) = ready.send_request(req, false).expect("send_request");
    let resp = resp.await.expect("response");
    let status = resp.status();
    if status == StatusCode::OK {
        (status, Some(TunnelStream::new(send, resp.into_body())))
    } else {
        (status, None)
    }
}

/// Writes `data`, half-closes, reads to EOF.
pub async fn round_trip(stream: &mut TunnelStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.expect("read");
    back
}
