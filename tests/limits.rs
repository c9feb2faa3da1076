//! Request limits, as Envoy's defaults: past them the waypoint answers
//! itself, the backend never sees the request, and the answer is counted.
//!
//! Addresses: this file uses 127.0.144.0/24 only.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw request bytes on a fresh connection; the status line back.
async fn status_line(addr: std::net::SocketAddr, req: String) -> String {
    raw_status_line(addr, &req)
        .await
        .unwrap_or_else(|| "<closed>".to_string())
}

fn with_headers(n: usize, value_len: usize) -> String {
    let extra: String = (0..n)
        .map(|i| format!("x-h{i}: {}\r\n", "v".repeat(value_len)))
        .collect();
    format!("GET / HTTP/1.1\r\nhost: a.f:9080\r\n{extra}\r\n")
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431_from_the_waypoint() {
    let backend = echo("a", "127.0.144.1:9080").await;
    let config = ConfigDir::new(&service("f", "a", 9080, 9080, &["127.0.144.1"]));
    let wp = waypoint(&config, "f").await;
    let addr = wp.http_addr.unwrap();

    // Within both limits: forwarded (host + 90 = 91 headers).
    assert_eq!(
        status_line(addr, with_headers(90, 1)).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(backend.count(), 1);
    // 101 headers, each small: over the count (Envoy's max_headers_count, 100).
    assert_eq!(
        status_line(addr, with_headers(100, 1)).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // Few headers, 61 KiB in all: over the size (Envoy's 60 KiB).
    assert_eq!(
        status_line(addr, with_headers(2, 31 * 1024)).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        backend.count(),
        1,
        "refused requests never reach the backend"
    );
    requests_eventually(&wp, &["response_code=\"431\"", "response_flags=\"DPE\""], 2).await;
    wp.shutdown().await;
}

#[tokio::test]
async fn heads_the_parser_cannot_take_get_431_or_414_not_400() {
    let backend = echo("b", "127.0.144.11:9080").await;
    let config = ConfigDir::new(&service("f", "a", 9080, 9080, &["127.0.144.11"]));
    let wp = waypoint(&config, "f").await;
    let addr = wp.http_addr.unwrap();
    // More headers than Pingora's parser holds (256).
    assert_eq!(
        status_line(addr, with_headers(300, 1)).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // A target longer than a URI may be (64 KiB).
    let long = format!(
        "GET /{} HTTP/1.1\r\nhost: a.f:9080\r\n\r\n",
        "x".repeat(70_000)
    );
    assert_eq!(status_line(addr, long).await, "HTTP/1.1 414 URI Too Long");
    // Garbage is still a 400.
    assert_eq!(
        status_line(addr, "GARBAGE\r\n\r\n".to_string()).await,
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(backend.count(), 0);
    wp.shutdown().await;
}

/// A client that drips its request head (slowloris) is cut off at
/// `--request-headers-timeout`, counted, while others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_request_head_is_cut_at_the_request_headers_timeout() {
    let _c = echo("c", "127.0.144.21:9080").await;
    let config = ConfigDir::new(&service("f", "a", 9080, 9080, &["127.0.144.21"]));
    let mut s = settings(&config, "f");
    s.request_headers_timeout = std::time::Duration::from_millis(800);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();
    let addr = wp.http_addr.unwrap();

    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: a.f:9080\r\n")
        .await
        .unwrap();
    let drip = async {
        // One byte of a header every 100 ms, for far longer than the limit.
        for _ in 0..100 {
            if slow.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let served = async {
        let r = TestClient::new(addr).get("a.f:9080", "/").await;
        assert_eq!(r.status, 200, "others are served meanwhile");
    };
    bounded("drip and serve", async { tokio::join!(drip, served) }).await;
    let mut buf = [0u8; 64];
    let n = bounded("the dripping connection closes", slow.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_downstream_limits_total{limit=\"request_headers_timeout\"} 1"),
        "{metrics}"
    );
    wp.shutdown().await;
}

/// One raw HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// CVE-2024-27316 and friends: a HEADERS frame followed by CONTINUATION frames that never
/// end the header block. The h2c listener answers with GOAWAY ENHANCE_YOUR_CALM after a
/// few frames instead of buffering them, and keeps serving other clients.
#[tokio::test]
async fn a_continuation_flood_gets_goaway() {
    let _b = echo("a", "127.0.144.31:9080").await;
    let config = ConfigDir::new(&service("f", "a", 9080, 9080, &["127.0.144.31"]));
    let wp = waypoint(&config, "f").await;
    let addr = wp.http_addr.unwrap();

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
                                          // HEADERS on stream 1 with END_STREAM, without END_HEADERS: the block continues.
    out.extend(h2_frame(0x1, 0x1, 1, &[0x82]));
    tcp.write_all(&out).await.unwrap();
    let flood = h2_frame(0x9, 0, 1, &[0u8; 64]);
    // Far more than a 64 KiB header list needs; the server may close while we write.
    for _ in 0..200 {
        if tcp.write_all(&flood).await.is_err() {
            break;
        }
    }
    // Read frames until the GOAWAY; its error code is ENHANCE_YOUR_CALM (0xb).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let goaway = loop {
        let mut at = 0;
        let mut found = None;
        while got.len() >= at + 9 {
            let len = (got[at] as usize) << 16 | (got[at + 1] as usize) << 8 | got[at + 2] as usize;
            if got.len() < at + 9 + len {
                break;
            }
            if got[at + 3] == 0x7 {
                let p = &got[at + 9..at + 9 + len];
                found = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
            at += 9 + len;
        }
        if let Some(code) = found {
            break code;
        }
        match bounded("GOAWAY", tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => panic!("connection closed without GOAWAY after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    assert_eq!(goaway, 0xb, "GOAWAY error code");
    assert_eq!(
        status_line(addr, "GET / HTTP/1.1\r\nhost: a.f:9080\r\n\r\n".into()).await,
        "HTTP/1.1 200 OK"
    );
}
