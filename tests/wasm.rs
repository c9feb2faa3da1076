//! proxy-wasm filters through the waypoint with real backends: our three
//! filters (headers, rate limit, external auth), phase/priority ordering,
//! and a plugin hot reload under load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

fn plugin(name: &str, wasm: &str, extra: &str) -> String {
    wasm_plugin("w", name, wasm, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_filter_edits_requests_and_responses_in_phase_order() {
    let _b = echo("web", "127.0.40.11:9080").await;
    let mut yaml = service("w", "web", 9080, 9080, &["127.0.40.11"]);
    // STATS runs after AUTHN whatever the file order: the AUTHN plugin sets
    // x-order first, the STATS one appends to it.
    yaml += &plugin(
        "late",
        "header_filter",
        "  phase: STATS\n  pluginConfig:\n    request: {add: {x-order: stats}}\n",
    );
    yaml += &plugin(
        "early",
        "header_filter",
        "  phase: AUTHN\n  pluginConfig:\n    request: {set: {x-order: authn, x-team: payments}, remove: [x-debug]}\n    response: {set: {x-served-by: waypoint}}\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "w").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.send("GET", "web:9080", "/", &[("x-debug", "1")]).await;
    assert_eq!(r.status, 200);
    let seen = r.echo().unwrap();
    assert_eq!(seen.headers["x-team"], "payments");
    assert_eq!(seen.headers["x-order"], "authn,stats");
    assert!(!seen.headers.contains_key("x-debug"));
    assert_eq!(r.header("x-served-by"), Some("waypoint"));
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_per_header_value() {
    let _b = echo("web", "127.0.41.11:9080").await;
    let mut yaml = service("w", "web", 9080, 9080, &["127.0.41.11"]);
    yaml += &plugin(
        "ratelimit",
        "rate_limit",
        "  pluginConfig: {header: x-user, tokens_per_fill: 1, fill_interval_ms: 60000, max_tokens: 3}\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "w").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            c.send("GET", "web:9080", "/", &[("x-user", "alice")])
                .await
                .status,
        );
    }
    assert_eq!(codes, vec![200, 200, 200, 429, 429]);
    assert_eq!(
        c.send("GET", "web:9080", "/", &[("x-user", "bob")])
            .await
            .status,
        200,
        "own bucket"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_auth_calls_the_auth_service() {
    let backend = echo("web", "127.0.42.11:9080").await;
    let auth = echo("auth", "127.0.42.21:8080").await;
    let mut yaml = service("w", "web", 9080, 9080, &["127.0.42.11"]);
    yaml += &service("w", "auth", 8080, 8080, &["127.0.42.21"]);
    yaml += &plugin(
        "authz",
        "ext_auth",
        "  phase: AUTHZ\n  pluginConfig: {cluster: \"outbound|8080||auth.w.svc.cluster.local\", path: /check, timeout_ms: 2000, forward_headers: [x-user]}\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "w").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.send("GET", "web:9080", "/", &[("x-user", "alice")]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(auth.count(), 1);
    assert_eq!(auth.received()[0].path, "/check");
    assert_eq!(auth.received()[0].headers["x-user"], "alice");
    auth.fail_next(1, 401);
    let r = c
        .send("GET", "web:9080", "/", &[("x-user", "mallory")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        backend.count(),
        1,
        "denied requests never reach the backend"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_reload_under_load_fails_no_request() {
    let _b = echo("web", "127.0.43.11:9080").await;
    let mesh = |v: &str| {
        let mut yaml = service("w", "web", 9080, 9080, &["127.0.43.11"]);
        yaml += &plugin(
            "tag",
            "header_filter",
            &format!("  pluginConfig:\n    response: {{set: {{x-version: \"{v}\"}}}}\n"),
        );
        yaml
    };
    let config = ConfigDir::new(&mesh("0"));
    let wp = waypoint(&config, "w").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (c, stop, failures) = (c.clone(), stop.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..3_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if c.get("web:9080", "/").await.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for v in 1..=5 {
        let before = *wp.store.subscribe().borrow();
        config.replace(&mesh(&v.to_string()));
        let mut rx = wp.store.subscribe();
        bounded("reload", rx.wait_for(|n| *n > before))
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        bounded("clients", h).await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert_eq!(c.get("web:9080", "/").await.header("x-version"), Some("5"));
    wp.shutdown().await;
}
