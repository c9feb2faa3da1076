//! HTTPRoute routing through a real waypoint over loopback: matches,
//! precedence, weights and the Gateway API's error cases. Each test gives its
//! fake pods their own `127.0.N.x` addresses so tests run in parallel.

mod common;

use common::*;

fn route(ns: &str, name: &str, parent: &str, rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs:\n  - {{group: \"\", kind: Service, name: {parent}, port: 9080}}\n  rules:\n{rules}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_match_and_weighted_canary() {
    let _v1 = echo("reviews-v1", "127.0.1.11:9080").await;
    let _v2 = echo("reviews-v2", "127.0.1.12:9080").await;
    let _v3 = echo("reviews-v3", "127.0.1.13:9080").await;
    let mut yaml = String::new();
    yaml += &service(
        "shop",
        "reviews",
        9080,
        9080,
        &["127.0.1.11", "127.0.1.12", "127.0.1.13"],
    );
    yaml += &service("shop", "reviews-v1", 9080, 9080, &["127.0.1.11"]);
    yaml += &service("shop", "reviews-v2", 9080, 9080, &["127.0.1.12"]);
    yaml += &service("shop", "reviews-v3", 9080, 9080, &["127.0.1.13"]);
    yaml += &route(
        "shop",
        "reviews",
        "reviews",
        "  - matches:\n    - headers: [{name: End-User, value: jason}]\n    backendRefs: [{name: reviews-v2, port: 9080}]\n  - backendRefs:\n    - {name: reviews-v1, port: 9080, weight: 90}\n    - {name: reviews-v3, port: 9080, weight: 10}\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "shop").await;
    let client = TestClient::new(wp.http_addr.unwrap());

    // Header names match case-insensitively (the route says End-User).
    for _ in 0..20 {
        let r = client
            .send("GET", "reviews:9080", "/", &[("end-user", "jason")])
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), "reviews-v2");
    }
    let mut replies = Vec::new();
    for _ in 0..500 {
        replies.push(client.get("reviews:9080", "/reviews/1").await);
    }
    let t = tally(&replies);
    let v1 = *t.get("reviews-v1").unwrap_or(&0) as f64 / 500.0;
    let v3 = *t.get("reviews-v3").unwrap_or(&0) as f64 / 500.0;
    assert!((v1 - 0.9).abs() <= 0.05, "v1 share {v1} ({t:?})");
    assert!((v3 - 0.1).abs() <= 0.05, "v3 share {v3} ({t:?})");
    assert!(
        !t.contains_key("reviews-v2"),
        "unmatched traffic reached v2: {t:?}"
    );
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_follows_the_spec_order() {
    let names = [
        "exact",
        "long-prefix",
        "prefix",
        "method",
        "two-headers",
        "one-header",
        "query",
        "catch-all",
        "older",
        "newer",
    ];
    let mut backends = Vec::new();
    let mut yaml = service("p", "svc", 9080, 9080, &["127.0.2.1"]);
    for (i, n) in names.iter().enumerate() {
        let ip = format!("127.0.2.{}", 10 + i);
        backends.push(echo(n, &format!("{ip}:9080")).await);
        yaml += &service("p", n, 9080, 9080, &[&ip]);
    }
    let rule = |m: &str, b: &str| {
        format!("  - matches: [{m}]\n    backendRefs: [{{name: {b}, port: 9080}}]\n")
    };
    // Split across routes: precedence spans all rules of all routes.
    let mut rules_a = String::new();
    rules_a += &rule("{path: {type: PathPrefix, value: /}}", "catch-all");
    rules_a += &rule("{path: {type: PathPrefix, value: /foo}}", "prefix");
    rules_a += &rule("{path: {type: PathPrefix, value: /foo/bar}}", "long-prefix");
    rules_a += &rule("{path: {type: Exact, value: /foo/bar}}", "exact");
    let mut rules_b = String::new();
    rules_b += &rule(
        "{path: {type: PathPrefix, value: /api}, headers: [{name: a, value: '1'}]}",
        "one-header",
    );
    rules_b += &rule("{path: {type: PathPrefix, value: /api}, headers: [{name: a, value: '1'}, {name: b, value: '2'}]}", "two-headers");
    rules_b += &rule(
        "{path: {type: PathPrefix, value: /api}, method: POST}",
        "method",
    );
    rules_b += &rule(
        "{path: {type: PathPrefix, value: /api}, queryParams: [{name: q, value: x}]}",
        "query",
    );
    yaml += &route("p", "b-route", "svc", &rules_a);
    yaml += &route("p", "a-route", "svc", &rules_b);
    // Same match in two routes: the older route wins, whatever its name.
    let tie = rule("{path: {type: PathPrefix, value: /tie}}", "{B}");
    yaml += &route("p", "aaa-newer", "svc", &tie.replace("{B}", "newer")).replace(
        "namespace: p}",
        "namespace: p, creationTimestamp: '2024-02-01T00:00:00Z'}",
    );
    yaml += &route("p", "zzz-older", "svc", &tie.replace("{B}", "older")).replace(
        "namespace: p}",
        "namespace: p, creationTimestamp: '2023-01-01T00:00:00Z'}",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "p").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    // (method, path, headers, backend that must answer, the spec rule)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        ("GET", "/foo/bar", &[], "exact", "Exact beats every prefix"),
        (
            "GET",
            "/foo/bar/baz",
            &[],
            "long-prefix",
            "longest prefix wins",
        ),
        ("GET", "/foo/x", &[], "prefix", "prefix /foo matches /foo/x"),
        (
            "GET",
            "/foobar",
            &[],
            "catch-all",
            "prefix is element-wise: /foo does not match /foobar",
        ),
        (
            "POST",
            "/api",
            &[("a", "1"), ("b", "2")],
            "method",
            "method beats header count",
        ),
        (
            "GET",
            "/api?q=x",
            &[("a", "1"), ("b", "2")],
            "two-headers",
            "more headers beat fewer and query params",
        ),
        (
            "GET",
            "/api?q=x",
            &[("a", "1")],
            "one-header",
            "a header match beats a query match",
        ),
        (
            "GET",
            "/api?q=x",
            &[],
            "query",
            "query match beats the catch-all",
        ),
        ("GET", "/tie", &[], "older", "oldest route wins a tie"),
    ];
    for (method, path, headers, want, why) in cases {
        let r = c.send(method, "svc:9080", path, headers).await;
        assert_eq!(r.backend(), *want, "{method} {path} {headers:?}: {why}");
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_api_error_cases() {
    let _a = echo("a", "127.0.4.11:9080").await;
    let _own = echo("own", "127.0.4.12:9080").await;
    let mut yaml = String::new();
    yaml += &service("e", "a", 9080, 9080, &["127.0.4.11"]);
    yaml += &service("e", "plain", 9080, 9080, &["127.0.4.12"]);
    yaml += &service("e", "routed", 9080, 9080, &["127.0.4.11"]);
    yaml += &service("e", "empty", 9080, 9080, &[]);
    // 127.0.4.99 has no listener: connecting is refused.
    yaml += &service("e", "refused", 9080, 9080, &["127.0.4.99"]);
    yaml += &route(
        "e",
        "routed",
        "routed",
        "  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs:\n    - {name: a, port: 9080}\n    - {name: does-not-exist, port: 9080, weight: 0}\n\
         \x20 - matches: [{path: {type: PathPrefix, value: /missing}}]\n    backendRefs: [{name: does-not-exist, port: 9080}]\n\
         \x20 - matches: [{path: {type: PathPrefix, value: /zero}}]\n    backendRefs: [{name: a, port: 9080, weight: 0}]\n\
         \x20 - matches: [{path: {type: PathPrefix, value: /nobackends}}]\n\
         \x20 - matches: [{path: {type: PathPrefix, value: /empty}}]\n    backendRefs: [{name: empty, port: 9080}]\n\
         \x20 - matches: [{path: {type: PathPrefix, value: /refused}}]\n    backendRefs: [{name: refused, port: 9080}]\n",
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "e").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    // No route attached: the Service's own endpoints.
    assert_eq!(c.get("plain.e:9080", "/anything").await.backend(), "own");
    // A weight-0 missing backend never causes errors.
    for _ in 0..50 {
        assert_eq!(c.get("routed:9080", "/ok").await.backend(), "a");
    }
    let cases: &[(&str, &str, u16, &str)] = &[
        ("routed:9080", "/nomatch", 404, "NR"),
        ("routed:9080", "/missing", 500, "-"),
        ("routed:9080", "/zero", 500, "-"),
        ("routed:9080", "/nobackends", 500, "-"),
        ("routed:9080", "/empty", 503, "UH"),
        ("routed:9080", "/refused", 503, "UF,URX"),
        ("unknown-host:9080", "/", 404, "NR"),
    ];
    for (host, path, status, _) in cases {
        let r = c.get(host, path).await;
        assert_eq!(
            r.status,
            *status,
            "{host}{path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for (_, _, status, flag) in cases {
        let code = format!("response_code=\"{status}\"");
        let flag = format!("response_flags=\"{flag}\"");
        let want = cases
            .iter()
            .filter(|c| c.2 == *status && format!("response_flags=\"{}\"", c.3) == flag)
            .count();
        requests_eventually(&wp, &[&code, &flag], want as u64).await;
    }
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_from_every_host_form() {
    let _a = echo("ratings", "127.0.5.11:8080").await;
    let yaml = service("ns1", "ratings", 9080, 8080, &["127.0.5.11"])
        .replace("spec:\n  ports:", "spec:\n  clusterIP: 10.96.5.5\n  ports:");
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "ns1").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    for host in [
        "ratings",
        "ratings:9080",
        "ratings.ns1",
        "ratings.ns1:9080",
        "ratings.ns1.svc",
        "ratings.ns1.svc.cluster.local",
        "ratings.ns1.svc.cluster.local:9080",
        "10.96.5.5:9080",
    ] {
        let r = c.get(host, "/").await;
        assert_eq!(r.status, 200, "Host: {host}");
        assert_eq!(r.backend(), "ratings", "Host: {host}");
    }
    assert_eq!(c.get("ratings.other", "/").await.status, 404);
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_list_output_loads_and_routes() {
    let _a = echo("details", "127.0.6.11:9080").await;
    let yaml = r#"apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: details
    namespace: bookinfo
    uid: 6c1f
    resourceVersion: "991"
    creationTimestamp: "2024-05-01T10:00:00Z"
    managedFields:
    - {manager: kubectl-client-side-apply, operation: Update, apiVersion: v1}
  spec:
    clusterIP: 10.96.6.6
    clusterIPs: [10.96.6.6]
    internalTrafficPolicy: Cluster
    ipFamilies: [IPv4]
    ipFamilyPolicy: SingleStack
    ports:
    - {name: http, port: 9080, protocol: TCP, targetPort: 9080}
    selector: {app: details}
    sessionAffinity: None
    type: ClusterIP
  status: {loadBalancer: {}}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata:
    name: details-x7k2p
    namespace: bookinfo
    labels: {kubernetes.io/service-name: details, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}
    generateName: details-
    ownerReferences: [{apiVersion: v1, kind: Service, name: details, uid: 6c1f}]
  addressType: IPv4
  endpoints:
  - addresses: [127.0.6.11]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: kind-worker
    targetRef: {kind: Pod, name: details-v1-5f4d584748-abcde, namespace: bookinfo, uid: 1d2e}
  ports:
  - {name: http, port: 9080, protocol: TCP}
"#;
    let config = ConfigDir::new(yaml);
    let wp = waypoint(&config, "bookinfo").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    assert_eq!(c.get("details:9080", "/").await.backend(), "details");
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_request_id_metrics_and_config_dump() {
    let backend = echo("fwd", "127.0.7.11:9080").await;
    let config = ConfigDir::new(&service("m", "fwd", 9080, 9080, &["127.0.7.11"]));
    let wp = waypoint(&config, "m").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.get("fwd:9080", "/x?y=1").await;
    let seen = r.echo().expect("echo reply");
    assert_eq!(seen.path, "/x");
    assert_eq!(seen.query, "y=1");
    assert_eq!(
        seen.headers.get("x-forwarded-for").map(String::as_str),
        Some("127.0.0.1")
    );
    assert_eq!(
        seen.headers.get("x-forwarded-proto").map(String::as_str),
        Some("http")
    );
    assert_eq!(seen.headers["x-request-id"].len(), 36, "uuid request id");
    let r = c
        .send("GET", "fwd:9080", "/", &[("x-request-id", "given-id")])
        .await;
    assert_eq!(r.echo().unwrap().headers["x-request-id"], "given-id");
    assert_eq!(backend.count(), 2);

    let metrics = requests_eventually(
        &wp,
        &[
            "reporter=\"waypoint\"",
            "destination_service=\"fwd.m.svc.cluster.local\"",
            "destination_service_name=\"fwd\"",
            "destination_service_namespace=\"m\"",
            "response_code=\"200\"",
            "source_principal=\"unknown\"",
        ],
        2,
    )
    .await;
    assert!(metrics.contains("istio_request_duration_milliseconds_bucket"));
    assert!(metrics.contains("istio_response_bytes_bucket"));

    let (status, ready) = admin_get(&wp, "/healthz/ready").await;
    assert_eq!((status, ready.trim()), (200, "ready"));
    let (_, dump) = admin_get(&wp, "/config_dump").await;
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["generation"], 1);
    assert!(dump["last_error"].is_null());
    assert_eq!(dump["objects"]["Service"], 1);
    wp.shutdown().await;
}
