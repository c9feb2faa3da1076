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

/// A kill switch in front of a fake destination ztunnel: relays each connection to it
/// until [`Relay::kill`] resets every one (a ztunnel crash, seen from the waypoint) and
/// refuses new ones until [`Relay::restart`].
struct Relay {
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(listen: tokio::net::TcpListener, to: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listen.accept().await {
                let _ = down.set_nodelay(true);
                #[allow(deprecated)]
                let _ = down.set_linger(Some(Duration::ZERO));
                if !up2.load(Ordering::SeqCst) {
                    drop(down); // RST: nobody home
                    continue;
                }
                let task = tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                conns2.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { up, conns }
    }

    /// Resets every relayed connection and refuses new ones.
    fn kill(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restart(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The destination's ztunnel dies with many requests in flight on the waypoint's HBONE
/// connection to it: each gets 503 at once (none hangs until its deadline), new requests
/// get 503 while it is down, and once it is back the waypoint dials it again and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_ztunnel_killed_mid_stream_fails_fast_and_is_redialled() {
    use common::mesh::*;
    let backend = echo("ratings", "127.0.143.31:9080").await;
    let ztunnel = ZtunnelListener::bind("127.0.143.31").await;
    let relay_listener = tokio::net::TcpListener::bind("127.0.143.31:0")
        .await
        .unwrap();
    let relay_port = relay_listener.local_addr().unwrap().port();
    let relay = Relay::start(
        relay_listener,
        format!("127.0.143.31:{}", ztunnel.port()).parse().unwrap(),
    )
    .await;
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "ratings", 9080, 9080, &["127.0.143.31"]);
    yaml += &pod("shop", "ratings-0", "127.0.143.31");
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = relay_port).await;
    let _fake = mesh.serve_ztunnel(ztunnel);
    let c = TestClient::new(mesh.wp.http_addr.unwrap());
    assert_eq!(c.get("ratings:9080", "/").await.status, 200);

    // Eight requests the pod holds far longer than any test step.
    let in_flight: Vec<_> = (0..8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.send(
                    "GET",
                    "ratings:9080",
                    &format!("/{i}"),
                    &[("x-echo-delay-ms", "60000")],
                )
                .await
            })
        })
        .collect();
    bounded("all eight reach the pod", backend.wait_for(9)).await;
    relay.kill();
    for r in in_flight {
        let r = bounded("an in-flight request answered", r).await.unwrap();
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    }
    let down = c.get("ratings:9080", "/while-down").await;
    assert_eq!(down.status, 503);

    relay.restart();
    eventually("served again after the ztunnel is back", async || {
        let r = c.get("ratings:9080", "/back").await;
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{}", r.status))
        }
    })
    .await;
    // Nothing is left counted in flight against the endpoint.
    let (_, clusters) = admin_get(&mesh.wp, "/clusters").await;
    assert!(
        clusters
            .lines()
            .filter(|l| l.contains("127.0.143.31:9080") && l.contains("rq_active"))
            .all(|l| l.ends_with("::0")),
        "{clusters}"
    );
    mesh.wp.shutdown().await;
}

/// The waypoint's certificate rotated three times while callers keep opening HBONE
/// connections: no caller fails, and each rotation is the one served. A rotation to a
/// leaf that has already expired is refused (the current one stays, `/config_dump`
/// says why) instead of failing every handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_and_an_expired_leaf_refused() {
    use common::mesh::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let _b = echo("reviews", "127.0.143.41:9080").await;
    let mesh = Mesh::start(
        &service("shop", "reviews", 9080, 9080, &["127.0.143.41"]),
        |_| {},
    )
    .await;
    let client = mesh.client();
    let (ok, failed, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = tokio::spawn({
        let (ok, failed, stop, hbone) = (ok.clone(), failed.clone(), stop.clone(), mesh.hbone());
        async move {
            let headers = ztunnel_headers("127.0.143.42:40000");
            while !stop.load(Ordering::SeqCst) {
                // A fresh connection each time: a handshake with the certificate of now.
                let status = match tunnel(&client, hbone, "127.0.143.41:9080", &headers).await {
                    Ok(t) => http1_over(t, "reviews", "/").await.0,
                    Err(_) => 0,
                };
                let counter = if status == 200 { &ok } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let expiry = async || -> i64 {
        let (_, dump) = admin_get(&mesh.wp, "/config_dump?resource=identity").await;
        let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
        dump["identity"]["seconds_to_expiry"].as_i64().unwrap()
    };
    let wp_dir = mesh.certs.path().join("waypoint");
    for hours in [2i64, 3, 4] {
        let served_before = ok.load(Ordering::SeqCst);
        mesh.ca
            .issue_valid_for(WAYPOINT_ID, time::Duration::hours(hours))
            .write_cert_dir(&wp_dir, &mesh.ca.root_pem());
        let want = hours * 3600;
        eventually(&format!("the {hours} h leaf is served"), async || {
            let left = expiry().await;
            if (want - 60..=want).contains(&left) && ok.load(Ordering::SeqCst) > served_before + 2 {
                Ok(())
            } else {
                Err(format!("{left} s left"))
            }
        })
        .await;
    }
    mesh.ca
        .issue_valid_for(WAYPOINT_ID, time::Duration::minutes(-30))
        .write_cert_dir(&wp_dir, &mesh.ca.root_pem());
    let served_before = ok.load(Ordering::SeqCst);
    eventually("the expired leaf refused", async || {
        let (_, dump) = admin_get(&mesh.wp, "/config_dump?resource=identity").await;
        let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
        match dump["identity"]["last_reload_error"].as_str() {
            Some(e) if e.contains("expired") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eventually("still served after the refusal", async || {
        (ok.load(Ordering::SeqCst) > served_before + 2)
            .then_some(())
            .ok_or_else(|| "no new request yet".to_string())
    })
    .await;
    assert!(expiry().await > 3 * 3600, "the 4 h leaf stays");
    stop.store(true, Ordering::SeqCst);
    bounded("load loop ends", load).await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "callers failed during rotation"
    );
    assert!(ok.load(Ordering::SeqCst) >= 10);
    mesh.wp.shutdown().await;
}

/// As Envoy, a local answer to an upstream failure (504 from a route timeout, 503 with
/// no endpoint) keeps the client's HTTP/1.1 connection: the next request on the same
/// connection is served. Only a request whose body was not read to its end closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_5xx_keeps_the_client_connection() {
    let _b = echo("slow", "127.0.143.51:9080").await;
    let mut yaml = service("f", "slow", 9080, 9080, &["127.0.143.51"]);
    yaml += &service("f", "empty", 9080, 9080, &[]);
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: slow, namespace: f}\nspec:\n  hosts: [slow]\n  http:\n  - timeout: 200ms\n    route: [{destination: {host: slow}}]\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "f").await;
    let mut one = OneConnection::open(wp.http_addr.unwrap()).await;
    let r = one
        .get("slow:9080", "/", &[("x-echo-delay-ms", "2000")])
        .await;
    assert_eq!(r.status, 504);
    let r = one.get("empty:9080", "/", &[]).await;
    assert_eq!(r.status, 503);
    // A request with a body takes Pingora's proxy: the same there.
    let ok_post = http::Request::post("/upload")
        .header("host", "slow:9080")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    assert_eq!(one.send(ok_post).await.status, 200);
    let post = http::Request::post("/upload")
        .header("host", "slow:9080")
        .header("x-echo-delay-ms", "2000")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"payload",
        )))
        .unwrap();
    assert_eq!(one.send(post).await.status, 504);
    // Still the same connection (OneConnection panics if it was closed).
    let r = one.get("slow:9080", "/", &[]).await;
    assert_eq!(r.status, 200);
    wp.shutdown().await;
}
