//! Hot reload: the config is rewritten while a client keeps sending; no
//! request fails, and an invalid config is rejected whole while the old one
//! keeps serving.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

fn mesh(backend: &str) -> String {
    let mut yaml = service("r", "app", 9080, 9080, &["127.0.8.1"]);
    yaml += &service("r", "blue", 9080, 9080, &["127.0.8.11"]);
    yaml += &service("r", "green", 9080, 9080, &["127.0.8.12"]);
    yaml += &format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: r}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: app}}]\n  rules:\n  - backendRefs: [{{name: {backend}, port: 9080}}]\n"
    );
    yaml
}

/// Waits until the store has finished `n` reload attempts in total.
async fn reloads(wp: &waypoint::server::Running, n: u64) {
    let mut rx = wp.store.subscribe();
    bounded("reload", rx.wait_for(|a| *a >= n))
        .await
        .expect("store alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    let _blue = echo("blue", "127.0.8.11:9080").await;
    let _green = echo("green", "127.0.8.12:9080").await;
    let config = ConfigDir::new(&mesh("blue"));
    let wp = waypoint(&config, "r").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (c, stop, failures, sent) = (c.clone(), stop.clone(), failures.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: at most 5,000 requests per client.
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = c.get("app:9080", "/").await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut expected_attempts = 0;
    for i in 0..20 {
        let backend = if i % 2 == 0 { "green" } else { "blue" };
        let before = *wp.store.subscribe().borrow();
        config.replace(&mesh(backend));
        expected_attempts = before + 1;
        reloads(&wp, expected_attempts).await;
    }
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        bounded("client loop", h).await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "of {} requests",
        sent.load(Ordering::Relaxed)
    );
    assert!(sent.load(Ordering::Relaxed) > 20);
    assert!(expected_attempts >= 20);
    // The last config (i = 19 → blue) is the one served.
    assert_eq!(c.get("app:9080", "/").await.backend(), "blue");
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 0"));
    assert!(!metrics.contains("waypoint_config_reloads_total{result=\"success\"} 0"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_rejected_and_the_old_one_keeps_serving() {
    let _blue = echo("blue", "127.0.8.21:9080").await;
    let _green = echo("green", "127.0.8.22:9080").await;
    let mesh = |b: &str| {
        mesh(b)
            .replace("127.0.8.11", "127.0.8.21")
            .replace("127.0.8.12", "127.0.8.22")
    };
    let config = ConfigDir::new(&mesh("blue"));
    let wp = waypoint(&config, "r").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("app:9080", "/").await.backend(), "blue");

    // Valid YAML, valid first half, one bad field: the whole config is rejected.
    let bad = mesh("green").replace("port: 9080}]\n", "port: 9080, weight: -3}]\n");
    config.replace(&bad);
    reloads(&wp, 1).await;
    assert_eq!(
        c.get("app:9080", "/").await.backend(),
        "blue",
        "old routes keep serving"
    );
    let (_, dump) = admin_get(&wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    let err = dump["last_error"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("mesh.yaml") && err.contains("HTTPRoute r/app") && err.contains("weight"),
        "{err}"
    );
    let (_, metrics) = admin_get(&wp, "/stats/prometheus").await;
    assert!(
        metrics.contains("waypoint_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );

    // Broken YAML too.
    config.replace("apiVersion: v1\nkind: [");
    reloads(&wp, 2).await;
    assert_eq!(c.get("app:9080", "/").await.backend(), "blue");

    // A fixed config is picked up.
    config.replace(&mesh("green"));
    reloads(&wp, 3).await;
    assert_eq!(c.get("app:9080", "/").await.backend(), "green");
    let (_, dump) = admin_get(&wp, "/config_dump").await;
    assert!(dump.contains("\"generation\": 2"), "{dump}");
    wp.shutdown().await;
}
