//! Mesh helpers for HBONE tests: cert dirs from the test CA, an HBONE client
//! (our own outbound pool, so it speaks exactly what ztunnel speaks). The fake
//! destination ztunnel is `waypoint::hbone::testing::FakeZtunnel`, shared
//! with the benches.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use waypoint::hbone::{HbonePool, OutboundHeaders, PoolConfig, TunnelStream};
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

/// ztunnel-shaped request headers for the application connection from `client`.
pub fn ztunnel_headers(client: &str) -> OutboundHeaders {
    waypoint::hbone::testing::ztunnel_headers(client.parse().expect("test client address"))
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
