//! The HTTP/1.1 fast path (`proxy::direct`) next to Pingora's full proxy: one
//! client connection whose requests alternate between the two, and upstream
//! connections that die while parked in the fast path's pool.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(method: &str, host: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri("/p")
        .header("host", host)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_alternates_between_fast_path_and_full_proxy() {
    let b = echo("b", "127.0.12.11:9080").await;
    let config = ConfigDir::new(&service("w", "b", 9080, 9080, &["127.0.12.11"]));
    let wp = waypoint(&config, "w").await;
    let mut one = OneConnection::open(wp.http_addr.unwrap()).await;

    // GET without a body: the fast path.
    let r = one.send(request("GET", "b:9080", "")).await;
    assert_eq!((r.status, r.backend()), (200, "b".to_string()));
    // A body takes Pingora's proxy, replayed from the bytes already read.
    let r = one.send(request("POST", "b:9080", "hello body")).await;
    let echoed = r.echo().expect("echo reply");
    assert_eq!(
        (r.status, echoed.method.as_str(), echoed.body_len),
        (200, "POST", 10)
    );
    // An unknown Host is answered by the full proxy (404), and the
    // connection still carries the next request.
    let r = one.send(request("GET", "nowhere:1", "")).await;
    assert_eq!(r.status, 404);
    let r = one.send(request("GET", "b:9080", "")).await;
    assert_eq!(r.status, 200);
    let seen = r.echo().unwrap().headers;
    assert!(
        seen.contains_key("x-request-id"),
        "fast path adds x-request-id: {seen:?}"
    );
    assert!(
        seen.contains_key("x-forwarded-for"),
        "and x-forwarded-for: {seen:?}"
    );
    assert!(
        !seen.contains_key("connection"),
        "hop-by-hop stays behind: {seen:?}"
    );
    assert_eq!(b.count(), 3, "three requests reached the backend");

    let metrics = requests_eventually(&wp, &["response_code=\"200\""], 3).await;
    assert_eq!(requests_total(&metrics, &["response_code=\"404\""]), 1);
    wp.shutdown().await;
}

/// Answers each request on a connection with `ok` and keep-alive, then closes
/// the connection without saying so: the waypoint's parked connection is dead.
async fn closing_upstream(addr: &str) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_the_upstream_closed_is_replaced_unseen() {
    let accepted = closing_upstream("127.0.12.21:9080").await;
    let config = ConfigDir::new(&service("w", "b", 9080, 9080, &["127.0.12.21"]));
    let wp = waypoint(&config, "w").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for i in 0..3 {
        let r = c.get("b:9080", "/").await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]), "request {i}");
        // Let the upstream's FIN reach the parked connection.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    let metrics = requests_eventually(&wp, &["response_code=\"200\""], 3).await;
    assert_eq!(
        requests_total(&metrics, &["response_flags=\"-\"", "response_code=\"200\""]),
        3,
        "no flag: the client never saw the dead connection\n{metrics}"
    );
    wp.shutdown().await;
}
