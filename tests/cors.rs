//! CORS end to end, from the browser's side: the HTTPRoute `CORS` filter and
//! VirtualService `corsPolicy`. A preflight from an allowed origin is answered
//! by the waypoint (the backend never sees it); an actual request is forwarded
//! and its response carries the `access-control-*` headers, on the fast path
//! and on the full proxy alike.

mod common;

use common::*;

fn route(rules: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: c}}\nspec:\n  parentRefs:\n  - {{group: \"\", kind: Service, name: web, port: 9080}}\n  rules:\n{rules}"
    )
}

const PREFLIGHT: [(&str, &str); 2] = [
    ("origin", "https://app.example.com"),
    ("access-control-request-method", "PUT"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn httproute_cors_filter_answers_preflights_and_decorates_responses() {
    let backend = echo("web", "127.0.122.11:9080").await;
    let mut yaml = service("c", "web", 9080, 9080, &["127.0.122.11"]);
    yaml += &route(
        r#"  - filters:
    - type: CORS
      cors:
        allowOrigins: ["https://*.example.com", "https://exact.test"]
        allowMethods: [GET, PUT]
        allowHeaders: [x-token]
        exposeHeaders: [x-backend]
        allowCredentials: true
    backendRefs: [{name: web, port: 9080}]
"#,
    );
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "c").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    let r = c.send("OPTIONS", "web:9080", "/api", &PREFLIGHT).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,PUT"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-token"));
    assert_eq!(
        r.header("access-control-max-age"),
        Some("5"),
        "the API's default"
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(backend.count(), 0, "the waypoint answered the preflight");

    // The actual request: the fast path (plain GET), then the full proxy.
    for extra in [None, Some(("te", "trailers"))] {
        let mut headers = vec![("origin", "https://app.example.com")];
        headers.extend(extra);
        let r = c.send("GET", "web:9080", "/api", &headers).await;
        assert_eq!(r.backend(), "web");
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://app.example.com"),
            "{extra:?}"
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("access-control-expose-headers"), Some("x-backend"));
    }

    // Another origin: not a CORS request for this route; its preflight is forwarded.
    let r = c
        .send("GET", "web:9080", "/", &[("origin", "https://example.org")])
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = c
        .send(
            "OPTIONS",
            "web:9080",
            "/",
            &[
                ("origin", "http://app.example.com"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(
        r.backend(),
        "web",
        "an unmatched preflight reaches the backend"
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    requests_eventually(&wp, &["response_code=\"200\"", "response_flags=\"-\""], 5).await;
    wp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_service_cors_policy_with_unmatched_preflights_ignored() {
    let backend = echo("web", "127.0.122.21:9080").await;
    let mut yaml = service("c", "web", 9080, 9080, &["127.0.122.21"]);
    yaml += r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: c}
spec:
  hosts: [web]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://app.example.com"}]
      allowMethods: [PUT]
      maxAge: 1h
      unmatchedPreflights: IGNORE
    route: [{destination: {host: web}}]
"#;
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "c").await;
    let c = TestClient::new(wp.http_addr.unwrap());
    let r = c.send("OPTIONS", "web:9080", "/", &PREFLIGHT).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    assert_eq!(r.header("access-control-allow-credentials"), None);

    let r = c
        .send(
            "OPTIONS",
            "web:9080",
            "/",
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "IGNORE: answered by the waypoint");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(backend.count(), 0);

    let r = c
        .send(
            "GET",
            "web:9080",
            "/",
            &[("origin", "https://app.example.com")],
        )
        .await;
    assert_eq!(r.backend(), "web");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    wp.shutdown().await;
}
