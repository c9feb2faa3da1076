//! Traffic policy end to end, observed from the client and the backends:
//! VirtualService/DestinationRule routing (the Istio docs' reviews example),
//! timeouts, retries, fault injection, connection-pool overflow, outlier
//! ejection and consistent hashing. Timing checks are order-based only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::time::Instant;

fn pod(ns: &str, name: &str, ip: &str, labels: &str) -> String {
    format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\nstatus: {{podIP: {ip}}}\n")
}

/// `reviews` with three versioned pods on 127.0.30.1x, as in Istio's bookinfo.
fn bookinfo(extra: &str) -> String {
    let mut yaml = service(
        "bookinfo",
        "reviews",
        9080,
        9080,
        &["127.0.30.11", "127.0.30.12", "127.0.30.13"],
    );
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        yaml += &pod(
            "bookinfo",
            &format!("reviews-{v}-abc-{i}"),
            &format!("127.0.30.1{}", i + 1),
            &format!("app: reviews, version: {v}"),
        );
    }
    yaml += extra;
    yaml
}

const REVIEWS_VS_DR: &str = r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 100, maxRequestsPerConnection: 10}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_docs_reviews_example_routes_by_subset() {
    let _v1 = echo("reviews-v1", "127.0.30.11:9080").await;
    let _v2 = echo("reviews-v2", "127.0.30.12:9080").await;
    let _v3 = echo("reviews-v3", "127.0.30.13:9080").await;
    let config = ConfigDir::new(&bookinfo(REVIEWS_VS_DR));
    let wp = waypoint(&config, "bookinfo").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..20 {
        assert_eq!(
            c.send("GET", "reviews:9080", "/", &[("end-user", "jason")])
                .await
                .backend(),
            "reviews-v2"
        );
        assert_eq!(c.get("reviews:9080", "/").await.backend(), "reviews-v1");
    }
    wp.shutdown().await;
}

fn vs(host: &str, http: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {host}, namespace: p}}\nspec:\n  hosts: [{host}]\n  http:\n{http}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_before_a_slow_backend() {
    let _b = echo("slow", "127.0.31.11:9080").await;
    let mut yaml = service("p", "slow", 9080, 9080, &["127.0.31.11"]);
    yaml += &vs(
        "slow",
        "  - timeout: 500ms\n    route: [{destination: {host: slow}}]\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let started = Instant::now();
    let r = c
        .send("GET", "slow:9080", "/", &[("x-echo-delay-ms", "2000")])
        .await;
    assert_eq!(r.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered before the backend would have"
    );
    requests_eventually(&wp, &["response_code=\"504\"", "response_flags=\"UT\""], 1).await;
    // Fast requests are unaffected.
    assert_eq!(c.get("slow:9080", "/").await.status, 200);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_policy_and_exhaust_with_urx() {
    let flaky = echo("flaky", "127.0.32.11:9080").await;
    let mut yaml = service("p", "flaky", 9080, 9080, &["127.0.32.11"]);
    yaml += &vs("flaky", "  - retries: {attempts: 3, retryOn: 5xx, perTryTimeout: 2s}\n    route: [{destination: {host: flaky}}]\n");
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    flaky.fail_next(2, 500);
    let r = c.get("flaky:9080", "/").await;
    assert_eq!(r.status, 200, "third attempt succeeds");
    assert_eq!(flaky.count(), 3);

    flaky.fail_next(4, 502);
    let r = c.get("flaky:9080", "/").await;
    assert_eq!(r.status, 502, "the last response once retries are spent");
    assert_eq!(flaky.count(), 3 + 4, "1 try + 3 retries");

    // A reset before the response is retried too (5xx covers resets).
    flaky.reset_next(1);
    assert_eq!(c.get("flaky:9080", "/").await.status, 200);
    requests_eventually(&wp, &["response_code=\"502\"", "response_flags=\"URX\""], 1).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_default_retries_503_and_connect_failures_but_not_500() {
    let only = echo("only", "127.0.33.11:9080").await;
    // Two endpoints: one refuses connections.
    let mut yaml = service("p", "app", 9080, 9080, &["127.0.33.11", "127.0.33.99"]);
    yaml += &service("p", "solo", 9080, 9080, &["127.0.33.11"]);
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for _ in 0..10 {
        assert_eq!(
            c.get("app:9080", "/").await.status,
            200,
            "connect failures retried elsewhere"
        );
    }
    only.fail_next(1, 503);
    assert_eq!(
        c.get("solo:9080", "/").await.status,
        200,
        "503 retried by default"
    );
    only.fail_next(1, 500);
    assert_eq!(c.get("solo:9080", "/").await.status, 500, "500 is not");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_percentages_and_flags() {
    let b = echo("faulty", "127.0.34.11:9080").await;
    let mut yaml = service("p", "faulty", 9080, 9080, &["127.0.34.11"]);
    yaml += &vs(
        "faulty",
        "  - fault:\n      abort: {httpStatus: 418, percentage: {value: 30}}\n      delay: {fixedDelay: 1ms, percentage: {value: 100}}\n    route: [{destination: {host: faulty}}]\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let n = 1000;
    let mut aborted = 0;
    for _ in 0..n {
        match c.get("faulty:9080", "/").await.status {
            418 => aborted += 1,
            200 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let share = aborted as f64 / n as f64;
    assert!((share - 0.30).abs() <= 0.05, "abort share {share}");
    assert_eq!(
        b.count(),
        n - aborted,
        "aborted requests never reach the backend"
    );
    requests_eventually(
        &wp,
        &["response_code=\"418\"", "response_flags=\"DI,FI\""],
        aborted as u64,
    )
    .await;
    requests_eventually(
        &wp,
        &["response_code=\"200\"", "response_flags=\"DI\""],
        (n - aborted) as u64,
    )
    .await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_overflow_answers_503_uo() {
    let b = echo("pooled", "127.0.35.11:9080").await;
    let mut yaml = service("p", "pooled", 9080, 9080, &["127.0.35.11"]);
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pooled, namespace: p}\nspec:\n  host: pooled\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.send("GET", "pooled:9080", "/", &[("x-echo-delay-ms", "300")])
                .await
        }));
    }
    let mut ok = 0;
    let mut overflowed = 0;
    for t in tasks {
        let r = bounded("pooled request", t).await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
                overflowed += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(ok >= 2, "one active + one pending succeed: {ok}");
    assert!(overflowed >= 1, "the rest overflow: {overflowed}");
    assert_eq!(b.count(), ok);
    let metrics = requests_eventually(&wp, &["response_flags=\"UO\""], overflowed as u64).await;
    assert!(metrics.contains("waypoint_upstream_overflow_total{cluster=\"outbound|9080||pooled.p.svc.cluster.local\",reason=\"pending\"}"), "{metrics}");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_is_ejected_then_returns() {
    let good = echo("good", "127.0.36.11:9080").await;
    let bad = echo("bad", "127.0.36.12:9080").await;
    bad.fail_next(1_000_000, 500);
    let mut yaml = service("p", "app", 9080, 9080, &["127.0.36.11", "127.0.36.12"]);
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app, namespace: p}\nspec:\n  host: app\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 2, interval: 100ms, baseEjectionTime: 500ms, maxEjectionPercent: 100}\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    // Round robin reaches the bad endpoint until it has failed twice.
    for _ in 0..6 {
        c.get("app:9080", "/").await;
    }
    let bad_hits = bad.count();
    assert_eq!(bad_hits, 2, "ejected after 2 consecutive 5xx");
    let good_before = good.count();
    for _ in 0..20 {
        assert_eq!(
            c.get("app:9080", "/").await.status,
            200,
            "ejected endpoint gets no traffic"
        );
    }
    assert_eq!(bad.count(), bad_hits);
    assert_eq!(good.count(), good_before + 20);
    // After the ejection time it gets traffic again (polled: the waypoint checks the
    // ejection's end on its own clock when it next picks an endpoint).
    eventually("ejected endpoint returns", async || {
        c.get("app:9080", "/").await;
        match bad.count() {
            n if n == bad_hits => Err(format!("bad still at {n} requests")),
            _ => Ok(()),
        }
    })
    .await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_header_value_on_one_endpoint() {
    let backends = Arc::new(vec![
        echo("h1", "127.0.37.11:9080").await,
        echo("h2", "127.0.37.12:9080").await,
        echo("h3", "127.0.37.13:9080").await,
    ]);
    let mut yaml = service(
        "p",
        "app",
        9080,
        9080,
        &["127.0.37.11", "127.0.37.12", "127.0.37.13"],
    );
    yaml += "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app, namespace: p}\nspec:\n  host: app\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let mut seen_any = std::collections::BTreeSet::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let first = c
            .send("GET", "app:9080", "/", &[("x-user", user)])
            .await
            .backend();
        for _ in 0..20 {
            assert_eq!(
                c.send("GET", "app:9080", "/", &[("x-user", user)])
                    .await
                    .backend(),
                first,
                "user {user}"
            );
        }
        seen_any.insert(first);
    }
    assert!(seen_any.len() >= 2, "different keys spread: {seen_any:?}");
    drop(backends);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_request_timeout_and_retry() {
    let b = echo("hr", "127.0.38.11:9080").await;
    let mut yaml = service("p", "hr", 9080, 9080, &["127.0.38.11"]);
    yaml += "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: hr, namespace: p}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: hr}]\n  rules:\n  - timeouts: {request: 300ms}\n    retry: {codes: [500], attempts: 2, backoff: 1ms}\n    backendRefs: [{name: hr, port: 9080}]\n";
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let started = Instant::now();
    assert_eq!(
        c.send("GET", "hr:9080", "/", &[("x-echo-delay-ms", "1500")])
            .await
            .status,
        504
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    let before = b.count();
    b.fail_next(2, 500);
    assert_eq!(c.get("hr:9080", "/").await.status, 200);
    assert_eq!(b.count(), before + 3);
    wp.shutdown().await;
}
