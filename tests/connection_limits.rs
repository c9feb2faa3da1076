//! DestinationRule `connectionPool.http.maxRequestsPerConnection` and
//! `connectionPool.tcp.maxConnectionDuration`, seen from the backend: the echo
//! backend numbers the connections it accepts, so a new upstream connection
//! shows as a new number. Every upstream path is covered: the HTTP/1.1 fast
//! path's pool, Pingora's pool behind the full proxy (HTTP/1.1 and h2c
//! upstreams), and kept HBONE tunnels to an in-mesh pod; and an L4
//! passthrough connection closed at `maxConnectionDuration`.

mod common;

use std::collections::BTreeSet;

use common::mesh::*;
use common::*;

fn dr(host: &str, pool: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {host}, namespace: p}}\nspec:\n  host: {host}\n  trafficPolicy:\n    connectionPool:\n{pool}")
}

const TWO_PER_CONNECTION: &str = "      http: {maxRequestsPerConnection: 2}\n";

/// The connection number each of `n` sequential requests arrived on.
async fn connections(c: &TestClient, host: &str, headers: &[(&str, &str)], n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for i in 0..n {
        let r = c.send("GET", host, &format!("/r{i}"), headers).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        seen.push(r.echo().expect("echo reply").connection);
    }
    seen
}

fn distinct(v: &[u64]) -> usize {
    v.iter().collect::<BTreeSet<_>>().len()
}

/// No connection carried more than 2 of `seen`, and 6 requests needed at least
/// 3. (Pingora's pool may open an extra connection when a request starts before
/// the previous one is back in the pool, so the count of connections is a
/// lower bound.)
fn at_most_two_per_connection(seen: &[u64]) {
    for n in seen.iter().collect::<BTreeSet<_>>() {
        let carried = seen.iter().filter(|m| *m == n).count();
        assert!(carried <= 2, "connection {n} carried {carried}: {seen:?}");
    }
    assert!(distinct(seen) >= 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_per_connection_on_the_fast_path_and_the_full_proxy() {
    let _b = echo("reviews", "127.0.120.11:9080").await;
    let mut yaml = service("p", "reviews", 9080, 9080, &["127.0.120.11"]);
    yaml += &dr("reviews", TWO_PER_CONNECTION);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    // A plain GET is served by the fast path.
    let fast = connections(&c, "reviews:9080", &[], 6).await;
    assert_eq!(
        fast,
        vec![1, 1, 2, 2, 3, 3],
        "fast path: a new connection every 2 requests"
    );

    // `te: trailers` is a hop-by-hop header the fast path declines: Pingora's proxy
    // serves these, through its own connection pool.
    let full = connections(&c, "reviews:9080", &[("te", "trailers")], 6).await;
    at_most_two_per_connection(&full);
    let r = c
        .send("GET", "reviews:9080", "/h", &[("te", "trailers")])
        .await;
    let headers = r.echo().expect("echo").headers;
    assert!(
        !headers.contains_key("connection"),
        "the first request on a connection does not say close: {headers:?}"
    );
    let r = c
        .send("GET", "reviews:9080", "/h", &[("te", "trailers")])
        .await;
    assert_eq!(
        r.echo()
            .expect("echo")
            .headers
            .get("connection")
            .map(String::as_str),
        Some("close"),
        "the connection's last request tells the backend"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_one_connection_serves_every_request() {
    let _b = echo("reviews", "127.0.120.21:9080").await;
    let yaml = service("p", "reviews", 9080, 9080, &["127.0.120.21"]);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let fast = connections(&c, "reviews:9080", &[], 6).await;
    assert_eq!(distinct(&fast), 1, "{fast:?}");
    let full = connections(&c, "reviews:9080", &[("te", "trailers")], 6).await;
    assert_eq!(distinct(&full), 1, "{full:?}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_per_connection_to_an_h2c_backend() {
    let _b = echo("grpcish", "127.0.120.31:9080").await;
    let yaml = service("p", "grpcish", 9080, 9080, &["127.0.120.31"]).replace(
        "    targetPort: 9080\n",
        "    targetPort: 9080\n    appProtocol: kubernetes.io/h2c\n",
    ) + &dr("grpcish", TWO_PER_CONNECTION);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let mut seen = Vec::new();
    for i in 0..6 {
        let r = c.get("grpcish:9080", &format!("/r{i}")).await;
        let echo = r.echo().expect("echo reply");
        assert_eq!(echo.protocol, "HTTP/2.0");
        seen.push(echo.connection);
    }
    at_most_two_per_connection(&seen);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_per_tunnel_to_an_in_mesh_pod() {
    let backend = echo("ratings-v1", "127.0.121.11:9080").await;
    let pool = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: shop}\nspec:\n  host: ratings.shop.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      http: {maxRequestsPerConnection: 2}\n";
    let ztunnel = ZtunnelListener::bind("127.0.121.11").await;
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "ratings", 9080, 9080, &["127.0.121.11"]);
    yaml += &pod("shop", "ratings-v1-5d8f9b7c6d-x1y2z", "127.0.121.11");
    yaml += pool;
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    let c = TestClient::new(mesh.wp.http_addr.unwrap());

    let fast = connections(&c, "ratings:9080", &[], 6).await;
    assert_eq!(fast, vec![1, 1, 2, 2, 3, 3], "{fast:?}");
    assert_eq!(fake.seen().len(), 3, "one CONNECT per two requests");
    let full = connections(&c, "ratings:9080", &[("te", "trailers")], 6).await;
    at_most_two_per_connection(&full);
    assert_eq!(
        fake.seen().len() - 3,
        distinct(&full),
        "one CONNECT per connection the pod saw"
    );
    assert_eq!(backend.count(), 12);
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_max_connection_duration_takes_no_new_request() {
    let _b = echo("reviews", "127.0.120.41:9080").await;
    let mut yaml = service("p", "reviews", 9080, 9080, &["127.0.120.41"]);
    yaml += &dr("reviews", "      tcp: {maxConnectionDuration: 300ms}\n");
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for headers in [&[][..], &[("te", "trailers")][..]] {
        let first = connections(&c, "reviews:9080", headers, 1).await[0];
        // Without the limit the connection would serve every request: a new one
        // shows only once the first one reached its age.
        let next = eventually("a request on a new upstream connection", async || {
            let now = connections(&c, "reviews:9080", headers, 1).await[0];
            if now != first {
                Ok(now)
            } else {
                Err(format!("still connection {now}"))
            }
        })
        .await;
        assert!(next > first, "{headers:?}");
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tunnel_past_max_connection_duration_is_not_reused() {
    let _backend = echo("ratings-v1", "127.0.121.21:9080").await;
    let ztunnel = ZtunnelListener::bind("127.0.121.21").await;
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "ratings", 9080, 9080, &["127.0.121.21"]);
    yaml += &pod("shop", "ratings-v1-5d8f9b7c6d-x1y2z", "127.0.121.21");
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: shop}\nspec:\n  host: ratings.shop.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnectionDuration: 300ms}\n";
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    let c = TestClient::new(mesh.wp.http_addr.unwrap());
    let first = connections(&c, "ratings:9080", &[], 1).await[0];
    eventually("a request over a new tunnel", async || {
        match connections(&c, "ratings:9080", &[], 1).await[0] {
            now if now != first => Ok(()),
            now => Err(format!("still connection {now}")),
        }
    })
    .await;
    assert!(
        fake.seen().len() >= 2,
        "a new CONNECT once the first aged out"
    );
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l4_passthrough_connection_is_closed_at_max_connection_duration() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tcp_echo("127.0.121.31:7000").await;
    let mut yaml = service("shop", "db", 7000, 7000, &["127.0.121.31"])
        .replace("- name: http\n", "- name: tcp-db\n")
        .replace(
            "spec:\n  ports:",
            "spec:\n  clusterIP: 10.96.121.1\n  ports:",
        );
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: shop}\nspec:\n  host: db\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnectionDuration: 300ms}\n";
    let mesh = Mesh::start(&yaml, |_| {}).await;
    let mut stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        "10.96.121.1:7000",
        &ztunnel_headers("10.0.0.8:1"),
    )
    .await
    .unwrap();
    stream.write_all(b"\x00\x01ping").await.unwrap();
    let mut buf = [0u8; 6];
    bounded("echo back", stream.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"\x00\x01ping");
    // Without the limit the connection stays open and this read waits for ever
    // (`bounded` fails the test); with it the waypoint ends the connection.
    let mut rest = Vec::new();
    let read = bounded(
        "the waypoint closes the connection",
        stream.read_to_end(&mut rest),
    )
    .await;
    assert!(
        read.is_err() || rest.is_empty(),
        "nothing but the close arrives: {read:?} {rest:?}"
    );
    // The bytes moved before the cut are still counted (polled: see `eventually`).
    eventually("received bytes of the cut connection", async || {
        let (_, metrics) = admin_get(&mesh.wp, "/stats/prometheus").await;
        let line = metrics.lines().find(|l| {
            l.starts_with("istio_tcp_received_bytes_total{")
                && l.contains("destination_service_name=\"db\"")
        });
        match line {
            Some(l) if l.ends_with(" 6") => Ok(()),
            _ => Err(metrics),
        }
    })
    .await;
    mesh.wp.shutdown().await;
}
