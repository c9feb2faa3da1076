//! Mesh helpers for HBONE tests: cert dirs from the test CA, an HBONE client
//! (our own outbound pool, so it speaks exactly what ztunnel speaks). The fake
//! destination ztunnel is `waypoint::test_helpers::ztunnel::FakeZtunnel`, shared
//! with the benches.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use waypoint::hbone::{HbonePool, OutboundHeaders, PoolConfig, TunnelStream};
use waypoint::identity::{CertDir, IdentityStore};
use waypoint::test_helpers::ca::TestCa;

use waypoint::test_helpers::ztunnel::FakeZtunnel;

use super::{bounded, settings, ConfigDir};

/// Writes a cert dir for `spiffe_id` under `parent/name` and loads it.
pub fn identity(ca: &TestCa, parent: &Path, name: &str, spiffe_id: &str) -> Arc<IdentityStore> {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    ca.write_cert_dir(&dir, spiffe_id);
    Arc::new(IdentityStore::load(CertDir::new(&dir)).expect("test certs load"))
}

/// ztunnel-shaped request headers for the application connection from `client`.
pub fn ztunnel_headers(client: &str) -> OutboundHeaders {
    waypoint::test_helpers::ztunnel::ztunnel_headers(client.parse().expect("test client address"))
}

/// Opens a CONNECT stream to `target` through the waypoint at `waypoint`.
pub async fn tunnel(
    client: &Arc<IdentityStore>,
    waypoint: SocketAddr,
    target: &str,
    headers: &OutboundHeaders,
) -> Result<TunnelStream, waypoint::hbone::HboneError> {
    let pool = HbonePool::new(client.clone(), "cluster.local", PoolConfig::default());
    bounded(
        "CONNECT",
        pool.connect(waypoint, target.parse().unwrap(), headers),
    )
    .await
}

/// Sends `GET path` over HTTP/1.1 inside `stream`; returns status, headers, body.
pub async fn http1_over(
    stream: TunnelStream,
    host: &str,
    path: &str,
) -> (u16, http::HeaderMap, Bytes) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = bounded("request over tunnel", send.send_request(req))
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = bounded("body", body.collect()).await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

/// A raw TCP echo workload on `addr`, for L4 passthrough checks.
pub async fn tcp_echo(addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// The waypoint's SPIFFE id in [`Mesh`] (namespace `shop`).
pub const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";
/// The caller ztunnels present in [`Mesh`] tests.
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/client-ns/sa/sleep";

/// A waypoint with an identity from a test CA, serving HBONE on loopback.
pub struct Mesh {
    pub ca: TestCa,
    pub certs: tempfile::TempDir,
    pub config: ConfigDir,
    pub wp: waypoint::server::Running,
}

impl Mesh {
    pub async fn start(yaml: &str, tweak: impl FnOnce(&mut waypoint::settings::Settings)) -> Mesh {
        let ca = TestCa::new("cluster.local");
        let certs = tempfile::tempdir().unwrap();
        let wp_dir = certs.path().join("waypoint");
        std::fs::create_dir_all(&wp_dir).unwrap();
        ca.write_cert_dir(&wp_dir, WAYPOINT_ID);
        let config = ConfigDir::new(yaml);
        let mut s = settings(&config, "shop");
        s.cert_dir = Some(wp_dir);
        s.hbone_listen = "127.0.0.1:0".parse().unwrap();
        tweak(&mut s);
        let wp = bounded("start", waypoint::server::start(s))
            .await
            .expect("waypoint starts");
        Mesh {
            ca,
            certs,
            config,
            wp,
        }
    }

    pub fn client(&self) -> Arc<waypoint::identity::IdentityStore> {
        identity(&self.ca, self.certs.path(), "client", CLIENT_ID)
    }

    pub fn hbone(&self) -> std::net::SocketAddr {
        self.wp.hbone_addr.expect("HBONE listener")
    }

    /// Serves a fake destination ztunnel (trusting this mesh's CA) on `listener`
    /// until the returned handle is dropped.
    pub fn serve_ztunnel(&self, listener: ZtunnelListener) -> FakeZtunnelHandle {
        let id = identity(
            &self.ca,
            self.certs.path(),
            &format!("ztunnel-{}", listener.port()),
            "spiffe://cluster.local/ns/istio-system/sa/ztunnel",
        );
        let fake = Arc::new(FakeZtunnel::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(fake.serve(listener.0, &id, "cluster.local", stop_rx));
        FakeZtunnelHandle { fake, _stop: stop }
    }
}

/// A destination ztunnel's listener on a pod IP, bound before the waypoint
/// starts so its port can go into `--hbone-upstream-port`.
pub struct ZtunnelListener(tokio::net::TcpListener);

impl ZtunnelListener {
    pub async fn bind(pod_ip: &str) -> Self {
        let l = tokio::net::TcpListener::bind((pod_ip, 0))
            .await
            .expect("bind the fake ztunnel");
        ZtunnelListener(l)
    }

    pub fn port(&self) -> u16 {
        self.0.local_addr().expect("bound").port()
    }
}

/// A running fake ztunnel; stops when dropped.
pub struct FakeZtunnelHandle {
    fake: Arc<FakeZtunnel>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl FakeZtunnelHandle {
    /// Every CONNECT so far: (caller's SPIFFE id, `:authority`).
    pub fn seen(&self) -> Vec<(String, String)> {
        self.fake.seen()
    }

    /// Waits (bounded) until `n` forwarded streams have ended; how each ended.
    pub async fn ended(&self, n: usize) -> Vec<waypoint::test_helpers::ztunnel::StreamEnd> {
        super::bounded("tunnelled streams ending", self.fake.wait_ended(n)).await
    }
}

/// A Namespace enrolled in ambient.
pub fn ambient_namespace(ns: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{istio.io/dataplane-mode: ambient}}}}\n")
}

/// A Pod with `ip` (in the mesh when its namespace is ambient).
pub fn pod(ns: &str, name: &str, ip: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nstatus: {{podIP: {ip}}}\n")
}
