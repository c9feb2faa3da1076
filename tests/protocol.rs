//! The plain listener as a client sees it on the wire: malformed requests,
//! oversized headers, HTTP/2 cleartext.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut sock = bounded("connect", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = bounded("read response", sock.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_400() {
    let _b = echo("b", "127.0.9.11:9080").await;
    let config = ConfigDir::new(&service("w", "b", 9080, 9080, &["127.0.9.11"]));
    let wp = waypoint(&config, "w").await;
    let resp = raw_exchange(wp.http_addr.unwrap(), b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let resp = raw_exchange(
        wp.http_addr.unwrap(),
        b"GET / HTTP/1.1\r\nHost: b\r\nbad header line\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // Shorter than the h2 preface, and still answered (not mistaken for h2c).
    let resp = raw_exchange(wp.http_addr.unwrap(), b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let b = echo("b", "127.0.9.21:9080").await;
    let config = ConfigDir::new(&service("w", "b", 9080, 9080, &["127.0.9.21"]));
    let wp = waypoint(&config, "w").await;
    let big = "x".repeat(70 * 1024);
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.send("GET", "b:9080", "/", &[("x-big", &big)]).await;
    assert_eq!(r.status, 431);
    assert_eq!(b.count(), 0, "the backend never saw it");
    // Just under the limit is fine.
    let ok = "x".repeat(50 * 1024);
    assert_eq!(
        c.send("GET", "b:9080", "/", &[("x-big", &ok)]).await.status,
        200
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let _b = echo("b", "127.0.9.31:9080").await;
    let config = ConfigDir::new(&service("w", "b", 9080, 9080, &["127.0.9.31"]));
    let wp = waypoint(&config, "w").await;
    // Prior-knowledge h2c to the waypoint, naming the Service in :authority.
    let tcp = tokio::net::TcpStream::connect(wp.http_addr.unwrap())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://b.w:9080/h2?x=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = bounded("h2c request", send.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: waypoint::echo::EchoReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen.backend, "b");
    assert_eq!(seen.path, "/h2");
    assert_eq!(seen.query, "x=1");
    wp.shutdown().await;
}
