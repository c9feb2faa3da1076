//! The waypoint as ztunnels see it: HBONE in (mTLS + HTTP/2 CONNECT),
//! identity-aware routing and metrics, L4 passthrough, HBONE out to a fake
//! destination ztunnel, and the PROXY-protocol binding.

mod common;

use common::mesh::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::test_helpers::ca::TestCa;

fn mesh_yaml() -> String {
    let mut yaml = service("shop", "reviews", 9080, 9080, &["127.0.20.11"]).replace(
        "spec:\n  ports:",
        "spec:\n  clusterIP: 10.96.20.1\n  ports:",
    );
    yaml += &service("shop", "reviews-v2", 9080, 9080, &["127.0.20.12"]);
    // A consumer route: only callers from client-ns get v2.
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: client-view, namespace: client-ns}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: reviews, namespace: shop, port: 9080}]\n  rules:\n  - backendRefs: [{name: reviews-v2, namespace: shop, port: 9080}]\n";
    // The backend is in shop: shop lets client-ns's HTTPRoutes refer to it.
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: client-ns-routes, namespace: shop}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: client-ns}]\n  to: [{group: \"\", kind: Service}]\n";
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_by_vip_pod_ip_and_hostname_with_identity_and_baggage() {
    let _v1 = echo("reviews-v1", "127.0.20.11:9080").await;
    let _v2 = echo("reviews-v2", "127.0.20.12:9080").await;
    let mesh = Mesh::start(&mesh_yaml(), |_| {}).await;
    let client = mesh.client();
    let headers = ztunnel_headers("10.1.2.3:40000");

    // VIP authority: the consumer route for client-ns applies (→ v2).
    let stream = tunnel(&client, mesh.hbone(), "10.96.20.1:9080", &headers)
        .await
        .unwrap();
    let (status, _, body) = http1_over(stream, "reviews", "/r").await;
    assert_eq!(status, 200);
    let seen: waypoint::echo::EchoReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        seen.backend, "reviews-v2",
        "consumer route of the caller's namespace"
    );
    assert_eq!(
        seen.headers["x-forwarded-for"], "10.1.2.3",
        "client from `forwarded`"
    );
    // ztunnel's CONNECT `traceparent` is a per-connection correlation id:
    // never passed on as the request's trace parent.
    assert!(
        !seen.headers.contains_key("traceparent"),
        "tunnel traceparent not forwarded: {:?}",
        seen.headers.get("traceparent")
    );

    // Pod-IP authority routes to the Service owning that endpoint.
    let stream = tunnel(&client, mesh.hbone(), "127.0.20.11:9080", &headers)
        .await
        .unwrap();
    let (status, _, body) = http1_over(stream, "whatever", "/").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // A hostname authority (from other networks) names the Service too.
    let by_name: waypoint::hbone::ConnectTarget =
        "reviews.shop.svc.cluster.local:9080".parse().unwrap();
    let dest = waypoint::inbound::tunnel::resolve_target(&mesh.wp.store.load().snapshot, &by_name)
        .expect("hostname resolves");
    assert_eq!(dest.service.key.to_string(), "shop/reviews");

    // The plain listener has no identity: producer routes (→ v1).
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());
    assert_eq!(plain.get("reviews:9080", "/").await.backend(), "reviews-v1");

    let metrics = requests_eventually(
        &mesh.wp,
        &[
            "source_principal=\"spiffe://cluster.local/ns/client-ns/sa/sleep\"",
            "source_workload=\"sleep\"",
            "source_workload_namespace=\"client-ns\"",
            "source_canonical_service=\"sleep\"",
            "source_canonical_revision=\"v7\"",
            "source_cluster=\"Kubernetes\"",
            "connection_security_policy=\"mutual_tls\"",
            "response_code=\"200\"",
        ],
        2,
    )
    .await;
    requests_eventually(&mesh.wp, &["connection_security_policy=\"none\""], 1).await;
    let (_, dump) = admin_get(&mesh.wp, "/config_dump").await;
    assert!(dump.contains(WAYPOINT_ID), "own identity in config_dump");
    assert!(metrics.contains("waypoint_cert_expiry_seconds"));
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_destination_gets_503_and_untrusted_callers_are_refused() {
    let mesh = Mesh::start(&mesh_yaml(), |_| {}).await;
    let client = mesh.client();
    let err = tunnel(
        &client,
        mesh.hbone(),
        "10.99.99.99:80",
        &ztunnel_headers("10.0.0.1:1"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");

    // A caller whose certificate comes from another CA is refused at the handshake.
    let rogue_ca = TestCa::new("cluster.local");
    let rogue = identity(&rogue_ca, mesh.certs.path(), "rogue", CLIENT_ID);
    assert!(tunnel(
        &rogue,
        mesh.hbone(),
        "10.96.20.1:9080",
        &ztunnel_headers("10.0.0.1:1")
    )
    .await
    .is_err());
    // So is one from our CA but another trust domain.
    let other_td = TestCa::new("other.domain");
    let other = identity(
        &other_td,
        mesh.certs.path(),
        "other",
        "spiffe://other.domain/ns/a/sa/b",
    );
    assert!(tunnel(
        &other,
        mesh.hbone(),
        "10.96.20.1:9080",
        &ztunnel_headers("10.0.0.1:1")
    )
    .await
    .is_err());
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_inside_the_tunnel_and_forward_client_cert() {
    let _v1 = echo("reviews-v1", "127.0.21.11:9080").await;
    let yaml = service("shop", "reviews", 9080, 9080, &["127.0.21.11"]).replace(
        "spec:\n  ports:",
        "spec:\n  clusterIP: 10.96.21.1\n  ports:",
    );
    let mesh = Mesh::start(&yaml, |s| s.forward_client_cert = true).await;
    let stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        "10.96.21.1:9080",
        &ztunnel_headers("10.0.0.7:1"),
    )
    .await
    .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://reviews/h2")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = bounded("h2c in tunnel", send.send_request(req))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: waypoint::echo::EchoReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen.path, "/h2");
    assert_eq!(
        seen.headers["x-forwarded-client-cert"],
        format!("By={WAYPOINT_ID};URI={CLIENT_ID}")
    );
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_ports_are_passed_through_as_l4() {
    tcp_echo("127.0.22.11:7000").await;
    let yaml = service("shop", "db", 7000, 7000, &["127.0.22.11"])
        .replace("- name: http\n", "- name: tcp-db\n")
        .replace(
            "spec:\n  ports:",
            "spec:\n  clusterIP: 10.96.22.1\n  ports:",
        );
    let mesh = Mesh::start(&yaml, |_| {}).await;
    let mut stream = tunnel(
        &mesh.client(),
        mesh.hbone(),
        "10.96.22.1:7000",
        &ztunnel_headers("10.0.0.8:1"),
    )
    .await
    .unwrap();
    stream.write_all(b"\x00\x01binary, not HTTP").await.unwrap();
    let mut buf = vec![0u8; 18];
    bounded("echo back", stream.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"\x00\x01binary, not HTTP");
    drop(stream);
    // The connection's close is counted once the tunnel ends on the waypoint's side
    // (polled: see `eventually`).
    let (line, metrics) = eventually("tcp close recorded", async || {
        let (_, metrics) = admin_get(&mesh.wp, "/stats/prometheus").await;
        let closed = metrics.lines().find(|l| {
            l.starts_with("istio_tcp_connections_closed_total{")
                && l.contains("destination_service_name=\"db\"")
        });
        match closed {
            Some(line) => Ok((line.to_string(), metrics.clone())),
            None => Err(metrics),
        }
    })
    .await;
    assert!(
        line.contains("connection_security_policy=\"mutual_tls\""),
        "{line}"
    );
    assert!(metrics.contains("istio_tcp_sent_bytes_total{"));
    assert!(metrics.contains("istio_tcp_connections_opened_total{"));
    mesh.wp.shutdown().await;
}

/// Namespace `shop` in ambient with Service `ratings` (9080) on one pod at `ip` (plus
/// `extra` YAML), a waypoint whose HBONE upstream port is the pod's fake ztunnel's, and
/// that ztunnel.
async fn ambient_ratings(ip: &str, extra: &str) -> (Mesh, FakeZtunnelHandle) {
    let ztunnel = ZtunnelListener::bind(ip).await;
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "ratings", 9080, 9080, &[ip]);
    yaml += &pod("shop", "ratings-v1-5d8f9b7c6d-x1y2z", ip);
    yaml += extra;
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    (mesh, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mesh_endpoints_are_reached_over_hbone() {
    let _backend = echo("ambient-pod", "127.0.23.11:9080").await;
    let (mesh, fake) = ambient_ratings("127.0.23.11", "").await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());
    for _ in 0..3 {
        let r = plain.get("ratings:9080", "/x").await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.backend(), "ambient-pod");
    }
    let seen = fake.seen();
    assert!(!seen.is_empty());
    for (peer, target) in &seen {
        assert_eq!(peer, WAYPOINT_ID, "the waypoint's own identity");
        assert_eq!(target, "127.0.23.11:9080", "CONNECT podIP:targetPort");
    }
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_with_and_without_the_identity_tlv() {
    use waypoint::hbone::proxy_protocol::{encode_proxy_v2, ProxyHeader};
    let _v1 = echo("reviews-v1", "127.0.24.11:9080").await;
    let yaml = service("shop", "reviews", 9080, 9080, &["127.0.24.11"]).replace(
        "spec:\n  ports:",
        "spec:\n  clusterIP: 10.96.24.1\n  ports:",
    );
    let mesh = Mesh::start(&yaml, |s| {
        s.proxy_protocol_listen = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let pp = mesh.wp.proxy_protocol_addr.unwrap();
    for identity in [Some(CLIENT_ID), None] {
        let mut sock = tokio::net::TcpStream::connect(pp).await.unwrap();
        let header = ProxyHeader {
            source: "10.4.4.4:5555".parse().unwrap(),
            destination: "10.96.24.1:9080".parse().unwrap(),
            peer_identity: identity.map(|i| i.parse().unwrap()),
        };
        sock.write_all(&encode_proxy_v2(&header)).await.unwrap();
        sock.write_all(b"GET /pp HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        bounded("PROXY response", sock.read_to_string(&mut resp))
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("\"x-forwarded-for\":\"10.4.4.4\""), "{resp}");
    }
    requests_eventually(&mesh.wp, &[&format!("source_principal=\"{CLIENT_ID}\"")], 1).await;
    requests_eventually(&mesh.wp, &["source_principal=\"unknown\""], 1).await;
    // No PROXY header: the connection is closed without an answer.
    let mut sock = tokio::net::TcpStream::connect(pp).await.unwrap();
    sock.write_all(b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let _ = bounded("closed", sock.read_to_end(&mut resp)).await;
    assert!(resp.is_empty(), "{}", String::from_utf8_lossy(&resp));
    mesh.wp.shutdown().await;
}

// One dialer: mirrors and proxy-wasm calls take the same transport as routed
// requests, HBONE to in-mesh endpoints and plain TCP to the rest.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_copies_to_in_mesh_endpoints_go_over_hbone() {
    let main = echo("web", "127.0.76.11:9080").await;
    let shadow = echo("shadow-pod", "127.0.76.21:9080").await;
    let ztunnel = ZtunnelListener::bind("127.0.76.21").await;
    // `web` is outside the mesh (no Pod); the shadow's Pod is in an ambient namespace.
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "web", 9080, 9080, &["127.0.76.11"]);
    yaml += &service("shop", "shadow", 9080, 9080, &["127.0.76.21"]);
    yaml += &pod("shop", "shadow-0", "127.0.76.21");
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: web, port: 9080}]\n  rules:\n  - filters:\n    - type: RequestMirror\n      requestMirror:\n        backendRef: {name: shadow, port: 9080}\n    backendRefs: [{name: web, port: 9080}]\n";
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    let c = TestClient::new(mesh.wp.http_addr.unwrap());
    let r = c.get("web:9080", "/copy?me=1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.backend(), "web", "the main request went plain to web");
    bounded("mirror copy", shadow.wait_for(1)).await;
    let copy = &shadow.received()[0];
    assert_eq!(copy.path, "/copy");
    assert_eq!(copy.headers["host"], "web-shadow:9080");
    assert_eq!(
        fake.seen(),
        vec![(WAYPOINT_ID.to_string(), "127.0.76.21:9080".to_string())],
        "only the mirror copy was tunnelled, with the waypoint's identity"
    );
    assert_eq!(main.count(), 1);
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_http_calls_to_in_mesh_services_go_over_hbone() {
    let backend = echo("web", "127.0.77.11:9080").await;
    let auth = echo("auth-pod", "127.0.77.21:8080").await;
    let ztunnel = ZtunnelListener::bind("127.0.77.21").await;
    let mut yaml = ambient_namespace("shop");
    yaml += &service("shop", "web", 9080, 9080, &["127.0.77.11"]);
    yaml += &service("shop", "auth", 8080, 8080, &["127.0.77.21"]);
    yaml += &pod("shop", "auth-0", "127.0.77.21");
    yaml += &wasm_plugin(
        "shop",
        "authz",
        "ext_auth",
        "  phase: AUTHZ\n  pluginConfig: {cluster: \"outbound|8080||auth.shop.svc.cluster.local\", path: /check, timeout_ms: 2000, forward_headers: [x-user]}\n",
    );
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    let c = TestClient::new(mesh.wp.http_addr.unwrap());
    let r = c.send("GET", "web:9080", "/", &[("x-user", "alice")]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.backend(), "web");
    assert_eq!(auth.count(), 1, "the plugin's call reached the auth pod");
    assert_eq!(auth.received()[0].headers["x-user"], "alice");
    assert_eq!(
        fake.seen(),
        vec![(WAYPOINT_ID.to_string(), "127.0.77.21:8080".to_string())],
        "the call was tunnelled to the auth pod's ztunnel with the waypoint's identity"
    );
    assert_eq!(backend.count(), 1);
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_to_an_ambient_pod_share_one_tunnel_closed_with_end_stream() {
    use waypoint::test_helpers::ztunnel::StreamEnd;
    let backend = echo("ratings-v1", "127.0.78.11:9080").await;
    let (mesh, fake) = ambient_ratings("127.0.78.11", "").await;
    // One client connection: each request is read after the last one's tunnel
    // went back to be kept.
    let mut one = OneConnection::open(mesh.wp.http_addr.unwrap()).await;
    for i in 0..100 {
        let r = one.get("ratings:9080", &format!("/r{i}"), &[]).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.backend(), "ratings-v1");
    }
    assert_eq!(backend.count(), 100);
    assert_eq!(
        fake.seen().len(),
        1,
        "100 sequential requests ran over one kept CONNECT stream"
    );
    assert!(
        fake.ended(0).await.is_empty(),
        "the kept tunnel is still open"
    );

    // The pod answers `connection: close`: Pingora will not reuse that connection, and
    // its tunnel ends with END_STREAM from both sides, not a reset.
    let r = one
        .get("ratings:9080", "/last", &[("x-echo-close", "1")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.ended(1).await, vec![StreamEnd::Clean]);
    assert_eq!(
        fake.seen().len(),
        1,
        "the last request reused the tunnel too"
    );

    // The next request opens a new tunnel.
    let r = one.get("ratings:9080", "/again", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(fake.seen().len(), 2);
    mesh.wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_tunnel_past_its_idle_timeout_is_closed_with_end_stream_not_reset() {
    use waypoint::test_helpers::ztunnel::StreamEnd;
    let _backend = echo("ratings-v1", "127.0.79.11:9080").await;
    let short_idle = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: shop}\nspec:\n  host: ratings.shop.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      http: {idleTimeout: 50ms}\n";
    let (mesh, fake) = ambient_ratings("127.0.79.11", short_idle).await;
    let c = TestClient::new(mesh.wp.http_addr.unwrap());
    assert_eq!(c.get("ratings:9080", "/first").await.status, 200);
    // Longer than the idle timeout: only ever later than the deadline, never racing it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(c.get("ratings:9080", "/second").await.status, 200);
    assert_eq!(fake.seen().len(), 2, "the expired tunnel was not reused");
    assert_eq!(
        fake.ended(1).await,
        vec![StreamEnd::Clean],
        "closed with END_STREAM both ways, as ztunnel closes, not RST_STREAM(CANCEL)"
    );
    mesh.wp.shutdown().await;
}
