//! Mesh fakes for HBONE tests: a test CA with SPIFFE certificates, an HBONE
//! client (our own outbound pool, so it speaks exactly what ztunnel speaks)
//! and a fake destination ztunnel that records who connected and where to.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use waypoint::hbone::{
    Baggage, ConnectDecision, ConnectHandler, Forwarded, HbonePool, OutboundHeaders, PoolConfig,
    TunnelRequest, TunnelStream,
};
use waypoint::identity::testing::TestCa;
use waypoint::identity::{CertDir, IdentityStore};

use super::bounded;

/// Writes a cert dir for `spiffe_id` under `parent/name` and loads it.
pub fn identity(ca: &TestCa, parent: &Path, name: &str, spiffe_id: &str) -> Arc<IdentityStore> {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    ca.write_cert_dir(&dir, spiffe_id);
    Arc::new(IdentityStore::load(CertDir::new(&dir)).expect("test certs load"))
}

/// ztunnel-shaped request headers.
pub fn ztunnel_headers(client: &str) -> OutboundHeaders {
    OutboundHeaders {
        baggage: Some(Baggage::parse(
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=client-ns,k8s.deployment.name=sleep,service.name=sleep,service.version=v7",
        )),
        forwarded: Some(Forwarded::new(client.parse().unwrap(), Some("reviews".into()))),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
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

/// A fake destination ztunnel: accepts HBONE from the waypoint, records the
/// caller's identity and the CONNECT authority, and forwards the bytes to the
/// authority (where a test backend listens).
#[derive(Default)]
pub struct FakeZtunnel {
    pub seen: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl ConnectHandler for FakeZtunnel {
    async fn decide(&self, req: &TunnelRequest) -> ConnectDecision {
        self.seen
            .lock()
            .unwrap()
            .push((req.peer.to_string(), req.target.to_string()));
        ConnectDecision::Accept
    }

    async fn serve(&self, req: TunnelRequest, mut stream: TunnelStream) {
        let Some(addr) = req.target.addr() else {
            return;
        };
        if let Ok(mut up) = tokio::net::TcpStream::connect(addr).await {
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut up).await;
        }
    }
}
