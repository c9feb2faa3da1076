//! Helpers of the authorization tests (`tests/authz*.rs`): a bookinfo-like
//! namespace with a lane of loopback pod addresses per test, policy YAML,
//! a request over HBONE, metric sums, and a one-purpose HTTP server.

#![allow(dead_code)]

use waypoint::echo::EchoServer;

use super::mesh::{http1_over, tunnel, ztunnel_headers, Mesh};
use super::{echo, service};

pub const NS: &str = "shop";

pub fn svc(name: &str, vip: &str, pod: &str) -> String {
    service(NS, name, 9080, 9080, &[pod]).replace(
        "spec:\n  ports:",
        &format!("spec:\n  clusterIP: {vip}\n  ports:"),
    )
}

/// productpage, details and reviews, each with a VIP and one echo pod on
/// `127.0.<lane>.x` (a lane per test: they run in parallel).
pub fn bookinfo(lane: u8) -> String {
    svc("productpage", "10.96.30.1", &format!("127.0.{lane}.11"))
        + &svc("details", "10.96.30.2", &format!("127.0.{lane}.12"))
        + &svc("reviews", "10.96.30.3", &format!("127.0.{lane}.13"))
}

pub fn policy(name: &str, spec: &str) -> String {
    format!("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{spec}\n")
}

pub const ALLOW_NOTHING: &str =
    "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]";

pub fn to(service: &str) -> String {
    format!("  targetRefs: [{{group: \"\", kind: Service, name: {service}}}]")
}

pub async fn backends(lane: u8) -> [EchoServer; 3] {
    [
        echo("productpage", &format!("127.0.{lane}.11:9080")).await,
        echo("details", &format!("127.0.{lane}.12:9080")).await,
        echo("reviews", &format!("127.0.{lane}.13:9080")).await,
    ]
}

/// `GET path` over a fresh HBONE tunnel to `vip` as the mesh's client identity.
pub async fn mesh_get(mesh: &Mesh, vip: &str, path: &str) -> (u16, String) {
    let stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        &format!("{vip}:9080"),
        &ztunnel_headers("10.1.2.3:40000"),
    )
    .await
    .expect("CONNECT accepted: authorization is per request");
    let (status, _, body) = http1_over(stream, "svc", path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub fn metric(metrics: &str, name: &str, needles: &[&str]) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && needles.iter().all(|n| l.contains(n)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A one-purpose HTTP/1.1 server on `addr`: `answer` turns each request head
/// into a whole response; the connection closes after it. Counts requests.
pub async fn tiny_http(
    addr: &str,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let count = served.clone();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (count, answer) = (count.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let resp = answer(&String::from_utf8_lossy(&seen));
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    served
}

pub fn response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// `method path` with `headers` over a fresh HBONE tunnel to `vip` as the
/// mesh's client identity; the status.
pub async fn mesh_send(
    mesh: &Mesh,
    vip: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    let stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        &format!("{vip}:9080"),
        &ztunnel_headers("10.1.2.3:40000"),
    )
    .await
    .expect("CONNECT accepted: authorization is per request");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "svc");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = super::bounded(
        "request over tunnel",
        send.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    resp.status().as_u16()
}

/// A [`Mesh`] whose MeshConfig (`--mesh-config`) is `mesh_config`.
pub async fn mesh_with_providers(config: &str, mesh_config: &str) -> Mesh {
    let mesh = waypoint::config::MeshConfig::parse(mesh_config).expect("mesh config parses");
    Mesh::start(config, |s| s.mesh = std::sync::Arc::new(mesh)).await
}
