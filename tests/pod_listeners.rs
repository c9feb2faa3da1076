//! `waypoint run --metrics-listen / --health-listen`: the ports a
//! controller-made pod exposes serve one endpoint each, beside the admin
//! listener.

mod common;

use common::{bounded, settings, ConfigDir, TestClient};

#[tokio::test]
async fn metrics_and_health_listeners_serve_only_their_endpoint() {
    let config = ConfigDir::new(&common::service("default", "svc", 80, 8080, &["127.0.0.1"]));
    let mut s = settings(&config, "default");
    s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    s.health_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = bounded("start", waypoint::server::start(s))
        .await
        .expect("waypoint starts");
    let metrics = TestClient::new(running.metrics_addr.expect("metrics listener bound"));
    let health = TestClient::new(running.health_addr.expect("health listener bound"));
    assert_ne!(running.metrics_addr, Some(running.admin_addr));

    let r = metrics.get("pod", "/stats/prometheus").await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("# TYPE"), "{body}");
    assert_eq!(metrics.get("pod", "/healthz/ready").await.status, 404);
    assert_eq!(metrics.get("pod", "/config_dump").await.status, 404);

    let r = health.get("pod", "/healthz/ready").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(health.get("pod", "/stats/prometheus").await.status, 404);
    assert_eq!(health.get("pod", "/config_dump").await.status, 404);

    // The admin listener still serves everything.
    let (status, _) = common::admin_get(&running, "/config_dump").await;
    assert_eq!(status, 200);
    bounded("shutdown", running.shutdown()).await;
}
