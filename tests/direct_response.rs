//! VirtualService `directResponse` end to end: the waypoint answers with the
//! route's status and body, `headers.response` applied, no backend contacted,
//! and the answer counted like any response (no response flag, as Envoy).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_response_is_answered_by_the_waypoint_and_counted() {
    let backend = echo("web", "127.0.123.11:9080").await;
    let mut yaml = service("d", "web", 9080, 9080, &["127.0.123.11"]);
    yaml += r#"---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: d}
spec:
  hosts: [web]
  http:
  - match: [{uri: {prefix: /maintenance}}]
    directResponse:
      status: 503
      body: {string: "down for maintenance"}
    headers:
      response:
        set: {retry-after: "120"}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {bytes: "SSdtIGEgdGVhcG90"}}
  - route: [{destination: {host: web}}]
"#;
    let config = ConfigDir::new(&yaml);
    let wp = waypoint(&config, "d").await;
    let c = TestClient::new(wp.http_addr.unwrap());

    // Twice on one connection: a plain GET the fast path declines to the full proxy.
    for _ in 0..2 {
        let r = c.get("web:9080", "/maintenance/now").await;
        assert_eq!(r.status, 503);
        assert_eq!(&r.body[..], b"down for maintenance");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(
            r.header("retry-after"),
            Some("120"),
            "headers.response applies"
        );
    }
    let r = c.get("web:9080", "/teapot").await;
    assert_eq!(r.status, 418);
    assert_eq!(&r.body[..], b"I'm a teapot", "body.bytes decoded");
    assert_eq!(backend.count(), 0, "no backend was contacted");

    assert_eq!(c.get("web:9080", "/other").await.backend(), "web");
    requests_eventually(&wp, &["response_code=\"503\"", "response_flags=\"-\""], 2).await;
    requests_eventually(&wp, &["response_code=\"418\"", "response_flags=\"-\""], 1).await;
    wp.shutdown().await;
}
