//! The admin port's operator endpoints over HTTP: `/stats` text, `/clusters`
//! with an endpoint outlier detection ejected, `/config_dump?resource=`,
//! `/logging` (POST changes the level, GET does not), `/stats/live` and the
//! page at `/`. Addresses: 127.0.170.0/24.

mod common;

use common::*;

const HTTPROUTE: &str = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: app-split, namespace: p}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: app, port: 9080}]\n  rules:\n  - backendRefs: [{name: app, port: 9080, weight: 100}]\n";

async fn admin_post(running: &waypoint::server::Running, path: &str) -> (u16, String) {
    let r = TestClient::new(running.admin_addr)
        .send("POST", "admin", path, &[])
        .await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_show_the_endpoint_outlier_detection_ejected() {
    let _good = echo("good", "127.0.170.11:9080").await;
    let bad = echo("bad", "127.0.170.12:9080").await;
    bad.fail_next(1_000_000, 500);
    let mut yaml = service("p", "app", 9080, 9080, &["127.0.170.11", "127.0.170.12"]);
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app, namespace: p}\nspec:\n  host: app\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 300s, maxEjectionPercent: 100}\n";
    yaml += HTTPROUTE;
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..6 {
        c.get("app:9080", "/").await;
    }
    assert_eq!(bad.count(), 2, "ejected after 2 consecutive 5xx");

    let cluster = "outbound|9080||app.p.svc.cluster.local";
    // A request leaves the active count in its logging phase, which may run
    // just after the client has its response: wait for that, not a timer.
    let text = eventually("no request active", async || {
        let (status, text) = admin_get(&wp, "/clusters").await;
        assert_eq!(status, 200);
        let idle = format!("{cluster}::127.0.170.11:9080::rq_active::0");
        if text.lines().any(|l| l == idle) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    for line in [
        format!("{cluster}::127.0.170.12:9080::health_flags::/failed_outlier_check"),
        format!("{cluster}::127.0.170.11:9080::health_flags::healthy"),
        format!("{cluster}::127.0.170.11:9080::weight::1"),
        format!("{cluster}::127.0.170.11:9080::rq_active::0"),
        format!("{cluster}::outlier_detection::enabled"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
    assert!(text.contains(&format!("{cluster}::127.0.170.12:9080::ejected_until::")));

    let (status, json) = admin_get(&wp, "/clusters?format=json").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c0 = &v["clusters"][0];
    assert_eq!(c0["name"], cluster);
    let ejected: Vec<&str> = c0["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ejected"] == true)
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(ejected, ["127.0.170.12:9080"]);
    // 6 requests reached the cluster: 2 answered 500 by the bad endpoint.
    assert_eq!(c0["stats"]["requests"], 6);
    assert_eq!(c0["stats"]["5xx"], 2);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_text_and_live_json_count_routes_and_clusters() {
    let _b = echo("app", "127.0.170.21:9080").await;
    let yaml = service("p", "app", 9080, 9080, &["127.0.170.21"]) + HTTPROUTE;
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..3 {
        assert_eq!(c.get("app:9080", "/").await.status, 200);
    }
    let stats = eventually("route counted", async || {
        let (_, text) = admin_get(&wp, "/stats").await;
        match text.contains("route.HTTPRoute.p/app-split.upstream_rq_total: 3\n") {
            true => Ok(text),
            false => Err(text),
        }
    })
    .await;
    for line in [
        "cluster.outbound|9080||app.p.svc.cluster.local.upstream_rq_2xx: 3",
        "cluster.outbound|9080||app.p.svc.cluster.local.membership_healthy: 1",
        "waypoint_config_reloads_total{result=\"success\"}: 1",
    ] {
        assert!(
            stats.lines().any(|l| l == line),
            "{line} missing in:\n{stats}"
        );
    }
    let (status, filtered) = admin_get(&wp, "/stats?filter=^cluster%5C.").await;
    assert_eq!(status, 200);
    assert!(
        filtered.lines().all(|l| l.starts_with("cluster.")),
        "{filtered}"
    );
    assert!(!filtered.is_empty());

    let (_, live) = admin_get(&wp, "/stats/live").await;
    let v: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(v["routes"]["HTTPRoute p/app-split"]["requests"], 3);
    assert_eq!(v["ports"][0]["routes"][0]["backends"][0]["weight"], 100);
    assert_eq!(v["reloads"][0]["result"], "ok");
    let (status, page) = admin_get(&wp, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("/stats/live"), "the page polls /stats/live");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_resource_filter_selects_one_section() {
    let yaml = service("p", "app", 9080, 9080, &["127.0.170.31"]) + HTTPROUTE;
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let (status, body) = admin_get(&wp, "/config_dump?resource=routes").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"], 1);
    assert_eq!(v["routes"]["routes"][0]["route"], "p/app-split", "{v}");
    assert!(v.get("services").is_none() && v.get("snapshot").is_none());

    let (_, body) = admin_get(&wp, "/config_dump?resource=clusters").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["clusters"][0]["endpoints"][0]["address"],
        "127.0.170.31:9080"
    );

    let (_, body) = admin_get(&wp, "/config_dump?resource=listeners").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "http"]);

    let (status, body) = admin_get(&wp, "/config_dump?resource=nope").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("valid resources: listeners, services, clusters, routes"),
        "{body}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_changes_level_on_post_only() {
    waypoint::telemetry::log_level::init("info");
    let config = ConfigDir::new(&service("p", "app", 9080, 9080, &["127.0.170.41"]));
    let wp = waypoint(&config, "p").await;
    let debug_on = || tracing::enabled!(target: "waypoint::proxy", tracing::Level::DEBUG);
    assert!(!debug_on());

    let (status, body) = admin_get(&wp, "/logging?level=debug").await;
    assert_eq!(status, 405, "{body}");
    assert!(!debug_on(), "a GET never changes the level");
    assert!(body.contains("active log filter: info"), "{body}");

    let (status, body) = admin_post(&wp, "/logging?paths=waypoint::proxy:debug").await;
    assert_eq!(status, 200, "{body}");
    assert!(debug_on());
    assert!(!tracing::enabled!(target: "waypoint::store", tracing::Level::DEBUG));
    let (_, body) = admin_get(&wp, "/logging").await;
    assert!(
        body.contains("active log filter: info,waypoint::proxy=debug"),
        "{body}"
    );

    let (status, _) = admin_post(&wp, "/logging?level=warning").await;
    assert_eq!(status, 200);
    assert!(!tracing::enabled!(target: "waypoint::store", tracing::Level::INFO));
    let (status, body) = admin_post(&wp, "/logging?level=loud").await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown log level"), "{body}");
    wp.shutdown().await;
}
