//! The overload manager and the downstream connection caps, seen from clients: requests
//! past the in-flight threshold and under memory pressure get `503` with flag `OM` and
//! `x-envoy-overloaded`, readiness turns 503 and comes back by itself; connections past
//! the global cap are closed, one identity cannot hold more HBONE connections than its
//! share, and an HBONE connection advertises its stream limit. Addresses 127.0.145.x.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::mesh::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// A backend that reads a request head and answers only once the test adds a permit to
/// `release`, so the test knows exactly how many requests are in flight.
async fn held_backend(addr: &str) -> Arc<Semaphore> {
    let release = Arc::new(Semaphore::new(0));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let gate = gate.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                gate.acquire().await.unwrap().forget();
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld",
                    )
                    .await;
            });
        }
    });
    release
}

/// One `GET /` on a fresh connection: the status line, or `None` when the waypoint
/// closed the connection without answering.
async fn raw_get(addr: std::net::SocketAddr) -> Option<String> {
    raw_status_line(addr, "GET / HTTP/1.1\r\nhost: conn:9080\r\n\r\n").await
}

fn limit_count(metrics: &str, limit: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("waypoint_downstream_limits_total")
                && l.contains(&format!("limit=\"{limit}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn ready_is(wp: &waypoint::server::Running, want: u16) {
    eventually(&format!("/healthz/ready = {want}"), async || {
        let (status, body) = admin_get(wp, "/healthz/ready").await;
        if status == want {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_in_flight_threshold_are_shed_with_om() {
    let release = held_backend("127.0.145.11:9080").await;
    let config = ConfigDir::new(&service("ov", "held", 9080, 9080, &["127.0.145.11"]));
    let mut s = settings(&config, "ov");
    s.overload.max_active_requests = Some(2);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();
    let c = TestClient::new(wp.http_addr.unwrap());
    ready_is(&wp, 200).await;

    let in_flight: Vec<_> = (0..2)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.get("held:9080", &format!("/{i}")).await })
        })
        .collect();
    // Both wait at the backend: the waypoint is at its threshold and says so.
    ready_is(&wp, 503).await;
    let shed = c.get("held:9080", "/third").await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("x-envoy-overloaded"), Some("true"));
    assert_eq!(String::from_utf8_lossy(&shed.body), "envoy overloaded");

    release.add_permits(2);
    for r in in_flight {
        assert_eq!(bounded("held request", r).await.unwrap().status, 200);
    }
    // Recovered by itself.
    ready_is(&wp, 200).await;
    release.add_permits(1);
    assert_eq!(c.get("held:9080", "/after").await.status, 200);
    let text = requests_eventually(&wp, &["response_flags=\"OM\""], 1).await;
    assert_eq!(
        requests_total(&text, &["response_code=\"503\"", "response_flags=\"OM\""]),
        1
    );
    assert_eq!(limit_count(&text, "overload_active_requests"), 1);
}

/// Resident memory above `--overload-max-rss`: the open connection's next request is
/// shed, a new connection waits in the backlog (not accepted), readiness is 503; when
/// the memory is released the waypoint recovers and serves the waiting connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_sheds_and_pauses_accepting_until_relieved() {
    use std::alloc::{GlobalAlloc, Layout, System};
    let _b = echo("mem", "127.0.145.21:9080").await;
    let config = ConfigDir::new(&service("ov", "mem", 9080, 9080, &["127.0.145.21"]));
    let mut s = settings(&config, "ov");
    let baseline = waypoint::overload::resident_bytes().unwrap();
    s.overload.max_rss_bytes = Some(baseline + (192 << 20));
    s.overload.rss_check_interval = Duration::from_millis(20);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();
    let addr = wp.http_addr.unwrap();
    let mut open = OneConnection::open(addr).await;
    assert_eq!(open.get("mem:9080", "/", &[]).await.status, 200);

    // The test runs in the waypoint's process: its allocation is the waypoint's RSS.
    // From the system allocator directly, so freeing it returns it to the kernel.
    let size = 384 << 20;
    let layout = Layout::from_size_align(size, 4096).unwrap();
    // SAFETY: non-zero size; the block is written within bounds and freed once below.
    let block = unsafe { System.alloc(layout) };
    assert!(!block.is_null());
    unsafe { std::ptr::write_bytes(block, 1, size) };

    ready_is(&wp, 503).await;
    let shed = open.get("mem:9080", "/pressed", &[]).await;
    assert_eq!(shed.status, 503);
    assert_eq!(shed.header("x-envoy-overloaded"), Some("true"));
    // A new connection: the kernel completes the handshake, the waypoint does not
    // accept it yet; its request is answered after relief.
    let waiting = tokio::spawn(async move {
        let c = TestClient::new(addr);
        c.get("mem:9080", "/waited").await
    });

    unsafe { System.dealloc(block, layout) };
    ready_is(&wp, 200).await;
    assert_eq!(
        bounded("waiting connection", waiting).await.unwrap().status,
        200
    );
    let (_, text) = admin_get(&wp, "/stats/prometheus").await;
    assert!(limit_count(&text, "overload_memory") >= 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_global_cap_are_closed() {
    let _b = echo("conn", "127.0.145.31:9080").await;
    let config = ConfigDir::new(&service("ov", "conn", 9080, 9080, &["127.0.145.31"]));
    let mut s = settings(&config, "ov");
    s.overload.max_connections = Some(2);
    let wp = bounded("start", waypoint::server::start(s)).await.unwrap();
    let addr = wp.http_addr.unwrap();
    let mut first = OneConnection::open(addr).await;
    let mut second = OneConnection::open(addr).await;
    assert_eq!(first.get("conn:9080", "/", &[]).await.status, 200);
    assert_eq!(second.get("conn:9080", "/", &[]).await.status, 200);

    assert_eq!(raw_get(addr).await, None, "a third connection was served");
    let (_, text) = admin_get(&wp, "/stats/prometheus").await;
    assert_eq!(limit_count(&text, "connections"), 1);

    drop(first);
    // The slot frees when the waypoint reads the closed connection's end.
    eventually("a slot freed", async || match raw_get(addr).await {
        Some(status) if status.starts_with("HTTP/1.1 200") => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_cannot_hold_every_hbone_connection() {
    let _b = echo("id", "127.0.145.41:9080").await;
    let mesh = Mesh::start(
        &service("shop", "reviews", 9080, 9080, &["127.0.145.41"]),
        |s| s.overload.max_connections_per_identity = Some(1),
    )
    .await;
    let sleep = mesh.client();
    let other = identity(
        &mesh.ca,
        mesh.certs.path(),
        "other",
        "spiffe://cluster.local/ns/client-ns/sa/other",
    );
    let headers = ztunnel_headers("127.0.145.42:40000");
    // Each `tunnel` call dials its own connection.
    let held = tunnel(&sleep, mesh.hbone(), "127.0.145.41:9080", &headers)
        .await
        .expect("first connection of this identity");
    let refused = tunnel(&sleep, mesh.hbone(), "127.0.145.41:9080", &headers).await;
    assert!(
        refused.is_err(),
        "a second connection of the same identity was served"
    );
    let theirs = tunnel(&other, mesh.hbone(), "127.0.145.41:9080", &headers)
        .await
        .expect("another identity has its own share");
    let (status, _, _) = http1_over(theirs, "reviews", "/").await;
    assert_eq!(status, 200);
    let (status, _, _) = http1_over(held, "reviews", "/").await;
    assert_eq!(status, 200);
    let (_, text) = admin_get(&mesh.wp, "/stats/prometheus").await;
    assert_eq!(limit_count(&text, "connections_per_identity"), 1);
}

/// The HBONE server's SETTINGS carry `--hbone-max-streams-per-connection`, so a
/// ztunnel never opens more tunnels on one connection than the waypoint serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbone_connections_advertise_their_stream_limit() {
    let _b = echo("streams", "127.0.145.51:9080").await;
    let mesh = Mesh::start(
        &service("shop", "reviews", 9080, 9080, &["127.0.145.51"]),
        |s| s.hbone_max_streams_per_connection = 7,
    )
    .await;
    let tls = tokio_rustls::TlsConnector::from(mesh.client().client_config("cluster.local"));
    let tcp = tokio::net::TcpStream::connect(mesh.hbone()).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(mesh.hbone().ip().into());
    let tls = bounded("TLS", tls.connect(name, tcp)).await.unwrap();
    let (send, conn) = bounded("h2", h2::client::handshake(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut send = bounded("ready", send.ready()).await.unwrap();
    let connect = http::Request::connect("127.0.145.51:9080")
        .body(())
        .unwrap();
    let (response, _body) = send.send_request(connect, false).unwrap();
    // The server's SETTINGS come before any response on the connection.
    let response = bounded("CONNECT answered", response).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(send.current_max_send_streams(), 7);
}
