//! `/config_dump`: routes listed in precedence order.

use serde_json::json;

use crate::routing::test_support::snapshot;

#[test]
fn dump_lists_routes_in_precedence_order() {
    let snap = snapshot(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: bookinfo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {value: /a}}]
    backendRefs: [{name: reviews-v1, port: 9080, weight: 3}]
  - matches: [{path: {type: Exact, value: /a/b}, headers: [{name: X-U, value: u}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: "1"}]}}]
    backendRefs: [{name: missing, port: 9080}]
    timeouts: {request: 1s}
"#,
    );
    let dump = snap.dump();
    let reviews = dump["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "bookinfo/reviews"))
        .expect("reviews in dump");
    assert_eq!(reviews["hostname"], "reviews.bookinfo.svc.cluster.local");
    assert_eq!(reviews["addresses"], json!(["10.96.0.20"]));
    let port = &reviews["ports"][0];
    assert_eq!(port["port"], 9080);
    assert_eq!(port["endpoints"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        port["producerRoutes"],
        json!([
            {
                "route": "bookinfo/r", "rule": 1, "match": 0,
                "matcher": {
                    "path": {"type": "Exact", "value": "/a/b"},
                    "method": null,
                    "headers": [{"name": "x-u", "match": {"type": "Exact", "value": "u"}}],
                    "queryParams": [],
                },
                "filters": [{"type": "RequestHeaderModifier", "set": [["x", "1"]], "add": [], "remove": []}],
                "backends": [{"weight": 1, "invalid": "backend Service bookinfo/missing not found"}],
        "kind": "HTTPRoute",
                "policy": {"fault": null, "timeout": "1s", "retry": {"attempts": 2, "backoffBase": "25ms", "perTryTimeout": null, "retriableStatusCodes": [503], "retryOn": "connect-failure,refused-stream,retriable-status-codes,unavailable,cancelled"}},
            },
            {
                "route": "bookinfo/r", "rule": 0, "match": 0,
                "matcher": {"path": {"type": "PathPrefix", "value": "/a"}, "method": null, "headers": [], "queryParams": []},
                "filters": [],
                "backends": [{"weight": 3, "backend": "reviews-v1.bookinfo.svc.cluster.local:9080", "cluster": "outbound|9080||reviews-v1.bookinfo.svc.cluster.local", "endpoints": 1, "filters": []}],
        "kind": "HTTPRoute",
                "policy": {"fault": null, "timeout": null, "retry": {"attempts": 2, "backoffBase": "25ms", "perTryTimeout": null, "retriableStatusCodes": [503], "retryOn": "connect-failure,refused-stream,retriable-status-codes,unavailable,cancelled"}},
            },
        ])
    );
    assert_eq!(
        reviews["ports"][1]["producerRoutes"],
        json!([]),
        "route attached to 9080 only"
    );
}
