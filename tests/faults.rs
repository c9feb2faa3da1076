//! Faults around the waypoint: what the client sees, that nothing hangs, and
//! that the waypoint keeps serving other traffic.
//!
//! Addresses: this file uses 127.0.143.0/24 only.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that answers every request with a `Content-Length: 10000`
/// response, sends 100 bytes of it, and resets the connection.
async fn cut_short(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 10000\r\nx-backend: cut\r\n\r\n";
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&[b'x'; 100]).await;
                let _ = tcp.flush().await;
                // RST rather than FIN: the upstream resets mid-body.
                // A zero linger never blocks the drop: it sends RST at once.
                #[allow(deprecated)]
                let _ = tcp.set_linger(Some(Duration::ZERO));
                drop(tcp);
            });
        }
    });
}

/// Reads one HTTP/1.1 response from `tcp` until the peer closes or the
/// declared body is complete; returns the status line and the body bytes.
async fn raw_get(addr: std::net::SocketAddr, host: &str) -> (String, usize) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: {host}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        match bounded("response bytes", tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.len() >= 10_000 + 60 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text
        .find("\r\n\r\n")
        .map(|i| got.len() - i - 4)
        .unwrap_or(0);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_body_cuts_the_response_and_the_waypoint_keeps_serving() {
    cut_short("127.0.143.1:9080").await;
    let _ok = echo("ok", "127.0.143.2:9080").await;
    let mut yaml = service("f", "cut", 9080, 9080, &["127.0.143.1"]);
    yaml += &service("f", "ok", 9080, 9080, &["127.0.143.2"]);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let addr = wp.http_addr.unwrap();

    for _ in 0..3 {
        // The head was already sent: the client gets it and a body that
        // stops short of its Content-Length, then the connection closes.
        let (status, body) = raw_get(addr, "cut.f:9080").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body < 10_000, "a cut body is not passed off as whole");
        // Meanwhile other traffic is served.
        let r = TestClient::new(addr).get("ok.f:9080", "/").await;
        assert_eq!((r.status, r.backend().as_str()), (200, "ok"));
    }
    // Counted as an upstream failure, not a success.
    let metrics = requests_eventually(&wp, &["destination_service_name=\"cut\""], 3).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("istio_requests_total")
                && l.contains("destination_service_name=\"cut\"")
                && !l.contains("response_flags=\"-\"")),
        "{metrics}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_removed_mid_request_finishes_it_and_later_requests_get_503() {
    let _slow = echo("slow", "127.0.143.11:9080").await;
    let yaml = service("f", "slow", 9080, 9080, &["127.0.143.11"]);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    let in_flight = {
        let c = c.clone();
        tokio::spawn(async move {
            c.send("GET", "slow.f:9080", "/", &[("x-echo-delay-ms", "600")])
                .await
        })
    };
    // Wait until the backend has the request, then drop its endpoint.
    bounded("request reaches the backend", _slow.wait_for(1)).await;
    let before = *wp.store.subscribe().borrow();
    config.replace(&service("f", "slow", 9080, 9080, &[]));
    let mut rx = wp.store.subscribe();
    bounded("reload", rx.wait_for(|n| *n > before))
        .await
        .unwrap();

    let r = bounded("the in-flight request", in_flight).await.unwrap();
    assert_eq!((r.status, r.backend().as_str()), (200, "slow"));
    let r = c.get("slow.f:9080", "/").await;
    assert_eq!(r.status, 503, "no endpoint left");
    requests_eventually(&wp, &["response_code=\"503\"", "response_flags=\"UH\""], 1).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_or_deleted_config_file_leaves_the_old_config_serving() {
    let _a = echo("a", "127.0.143.21:9080").await;
    let yaml = service("f", "a", 9080, 9080, &["127.0.143.21"]);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("a.f:9080", "/").await.status, 200);

    // A writer that was cut off half way (no atomic rename).
    let file = config.path().join("mesh.yaml");
    std::fs::write(&file, &yaml[..yaml.len() / 2]).unwrap();
    let mut rx = wp.store.subscribe();
    bounded("reload attempt", rx.wait_for(|n| *n >= 1))
        .await
        .unwrap();
    assert_eq!(c.get("a.f:9080", "/").await.status, 200, "old config");

    // The file removed altogether.
    let seen = *rx.borrow();
    std::fs::remove_file(&file).unwrap();
    bounded("reload attempt", rx.wait_for(|n| *n > seen))
        .await
        .unwrap();
    assert_eq!(c.get("a.f:9080", "/").await.status, 200, "old config");
    let (_, dump) = admin_get(&wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1, "{dump}");

    // Written again whole: picked up.
    config.replace(&yaml.replace("name: a,", "name: a, labels: {v: \"2\"},"));
    bounded("reload", rx.wait_for(|n| *n > seen + 1))
        .await
        .unwrap();
    assert_eq!(c.get("a.f:9080", "/").await.status, 200);
    wp.shutdown().await;
}
