//! TCPRoute at the waypoint, as ztunnels use it: connections tunnelled over
//! HBONE to a TCP Service port are split over the route's weighted backends,
//! each counted in `istio_tcp_*` under the backend that served it; a share
//! whose backend is not permitted (no ReferenceGrant) or missing is closed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::authz::metric;
use common::mesh::*;
use common::*;
use futures::stream::{self, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::hbone::{HbonePool, PoolConfig};

/// A TCP workload on `addr` that greets every connection with its `name`
/// and a newline, then waits for the client to close. Counts connections.
async fn tcp_named(name: &'static str, addr: &str) -> Arc<AtomicUsize> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    accepted
}

/// A Service `name` in `ns` whose one port (5432) is TCP (`name: tcp`),
/// with endpoints `ips`, optionally with a cluster IP.
fn tcp_service(ns: &str, name: &str, vip: Option<&str>, ips: &[&str]) -> String {
    let yaml = service(ns, name, 5432, 5432, ips).replace("name: http", "name: tcp");
    match vip {
        Some(vip) => yaml.replace(
            "spec:\n  ports:",
            &format!("spec:\n  clusterIP: {vip}\n  ports:"),
        ),
        None => yaml,
    }
}

/// A TCPRoute `shop/db-split` on `db:5432` with `backends` (a YAML flow list).
fn tcp_route(backends: &str) -> String {
    format!("---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: db-split, namespace: shop}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: db, port: 5432}}]\n  rules:\n  - backendRefs: {backends}\n")
}

/// One short exchange through the waypoint to `vip:5432`: the greeting
/// line (which backend answered), or `""` when the waypoint closed it.
async fn greet(pool: &HbonePool, hbone: std::net::SocketAddr, target: &str) -> String {
    let mut s = bounded(
        "CONNECT",
        pool.connect(
            hbone,
            target.parse().unwrap(),
            &ztunnel_headers("10.1.2.3:40000"),
        ),
    )
    .await
    .expect("CONNECT accepted: the Service port exists");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match bounded("greeting or close", s.read(&mut byte)).await {
            Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
            _ => break,
        }
    }
    let _ = s.shutdown().await;
    String::from_utf8(line).expect("greeting is text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_splits_1000_connections_80_20_and_counts_each_backend() {
    let v1 = tcp_named("db-v1", "127.0.110.11:5432").await;
    let v2 = tcp_named("db-v2", "127.0.110.12:5432").await;
    let own = tcp_named("db", "127.0.110.10:5432").await;
    let yaml = tcp_service("shop", "db", Some("10.96.110.10"), &["127.0.110.10"])
        + &tcp_service("shop", "db-v1", None, &["127.0.110.11"])
        + &tcp_service("shop", "db-v2", None, &["127.0.110.12"])
        + &tcp_route(
            "[{name: db-v1, port: 5432, weight: 80}, {name: db-v2, port: 5432, weight: 20}]",
        );
    let mesh = Mesh::start(&yaml, |_| {}).await;
    let pool = HbonePool::new(mesh.client(), "cluster.local", PoolConfig::default());

    const N: usize = 1000;
    let replies: Vec<String> = stream::iter(0..N)
        .map(|_| greet(&pool, mesh.hbone(), "10.96.110.10:5432"))
        .buffer_unordered(32)
        .collect()
        .await;
    let count = |name: &str| replies.iter().filter(|r| r.as_str() == name).count();
    let (got_v1, got_v2) = (count("db-v1"), count("db-v2"));
    assert_eq!(
        got_v1 + got_v2,
        N,
        "every connection served by a route backend: {:?}",
        &replies[..5]
    );
    // Binomial(1000, 0.2): mean 200, sigma 12.6; 6 sigma cannot flake.
    assert!(
        (124..=276).contains(&got_v2),
        "db-v2 took {got_v2} of {N}, want about 200"
    );
    assert_eq!(
        own.load(Ordering::SeqCst),
        0,
        "the addressed Service's own endpoints are not used"
    );
    assert_eq!(
        v1.load(Ordering::SeqCst),
        got_v1,
        "db-v1 saw what the clients saw"
    );
    assert_eq!(
        v2.load(Ordering::SeqCst),
        got_v2,
        "db-v2 saw what the clients saw"
    );

    // Istio's TCP metrics per backend: opened when dialled, closed once the
    // tunnel has ended on the waypoint's side.
    let series = |name: &'static str, backend: &'static str| {
        let wp = &mesh.wp;
        async move {
            let (_, m) = admin_get(wp, "/stats/prometheus").await;
            metric(
                &m,
                name,
                &[
                    &format!("destination_service_name=\"{backend}\""),
                    "destination_service=\"",
                    "request_protocol=\"tcp\"",
                    "source_workload_namespace=\"client-ns\"",
                ],
            )
        }
    };
    for (backend, want) in [("db-v1", got_v1), ("db-v2", got_v2)] {
        eventually(&format!("{backend} opened and closed {want}"), async || {
            let opened = series("istio_tcp_connections_opened_total", backend).await;
            let closed = series("istio_tcp_connections_closed_total", backend).await;
            if opened == want as u64 && closed == want as u64 {
                Ok(())
            } else {
                Err(format!("opened {opened}, closed {closed}"))
            }
        })
        .await;
    }
    assert_eq!(series("istio_tcp_connections_opened_total", "db").await, 0);
    let (_, m) = admin_get(&mesh.wp, "/stats/prometheus").await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("istio_tcp_received_bytes_total")
                && l.contains("destination_service=\"db-v2.shop.svc.cluster.local\"")),
        "bytes counted under the backend's FQDN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_backend_in_another_namespace_needs_a_reference_grant() {
    let _db = tcp_named("db", "127.0.110.20:5432").await;
    let _other = tcp_named("vault", "127.0.110.21:5432").await;
    let base = tcp_service("shop", "db", Some("10.96.110.20"), &["127.0.110.20"])
        + &tcp_service("secure", "vault", None, &["127.0.110.21"])
        + &tcp_route("[{name: vault, namespace: secure, port: 5432}]");
    let mesh = Mesh::start(&base, |_| {}).await;
    let pool = HbonePool::new(mesh.client(), "cluster.local", PoolConfig::default());

    // No grant: the route's only backend is not permitted, so connections close.
    assert_eq!(greet(&pool, mesh.hbone(), "10.96.110.20:5432").await, "");
    let (_, dump) = admin_get(&mesh.wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let route = dump["snapshot"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "shop/db-split")
        .expect("the TCPRoute in /config_dump");
    assert_eq!(route["kind"], "TCPRoute");
    assert_eq!(route["conditions"][0]["status"], "False");
    assert_eq!(route["conditions"][0]["reason"], "RefNotPermitted");

    // The grant from secure opens vault to shop's TCPRoutes, on reload.
    mesh.config.replace(&(base + "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: shop-tcp, namespace: secure}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: shop}]\n  to: [{group: \"\", kind: Service, name: vault}]\n"));
    until_reloaded(&mesh.wp, "grant loaded", async || {
        (mesh.wp.store.load().generation == 2).then_some(())
    })
    .await;
    assert_eq!(
        greet(&pool, mesh.hbone(), "10.96.110.20:5432").await,
        "vault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_mesh_tcp_backend_is_reached_over_hbone_and_labelled_with_its_workload() {
    let _v2 = tcp_named("db-v2", "127.0.112.12:5432").await;
    let ztunnel = ZtunnelListener::bind("127.0.112.12").await;
    let yaml = ambient_namespace("shop")
        + &tcp_service("shop", "db", Some("10.96.112.10"), &["127.0.112.10"])
        + &tcp_service("shop", "db-v2", None, &["127.0.112.12"])
        + &pod("shop", "db-v2-7f9c8d-k2x4q", "127.0.112.12")
        + &tcp_route("[{name: db-v2, port: 5432}]");
    let mesh = Mesh::start(&yaml, |s| s.hbone_upstream_port = ztunnel.port()).await;
    let fake = mesh.serve_ztunnel(ztunnel);
    let pool = HbonePool::new(mesh.client(), "cluster.local", PoolConfig::default());

    assert_eq!(
        greet(&pool, mesh.hbone(), "10.96.112.10:5432").await,
        "db-v2"
    );
    assert_eq!(
        fake.seen(),
        vec![(WAYPOINT_ID.to_string(), "127.0.112.12:5432".to_string())],
        "CONNECT podIP:targetPort with the waypoint's identity"
    );
    eventually(
        "the connection counted under db-v2's workload",
        async || {
            let (_, m) = admin_get(&mesh.wp, "/stats/prometheus").await;
            let n = metric(
                &m,
                "istio_tcp_connections_closed_total",
                &[
                    "destination_service_name=\"db-v2\"",
                    "destination_workload=\"db-v2-7f9c8d-k2x4q\"",
                    "destination_workload_namespace=\"shop\"",
                ],
            );
            if n == 1 {
                Ok(())
            } else {
                Err(format!(
                    "{n} closed; metrics:\n{}",
                    m.lines()
                        .filter(|l| l.starts_with("istio_tcp_connections_closed"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        },
    )
    .await;
}

#[test]
fn check_lists_tcp_routes_and_says_which_do_not_apply() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tcp-route/config.yaml");
    let (ok, report) = waypoint::check::check(&path, "shop");
    assert!(ok, "{report}");
    for line in [
        "TCPRoute       3",
        "TCPRoute shop/db-split -> Service shop/db:5432",
        "TCPRoute analytics/analytics-db -> Service shop/db:5432 (consumer route)",
        "TCPRoute shop/db-all-v2 -> Service shop/db:5432\n    ignored: an older TCPRoute on this port applies",
        "HTTPRoute shop/db-http -> Service shop/db:5432\n    ignored: the port is TCP",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
}
