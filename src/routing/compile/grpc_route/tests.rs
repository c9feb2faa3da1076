//! GRPCRoute: method matches as paths, GRPCRoute precedence, filters it
//! allows, and GEP-1426's rule against an HTTPRoute on the same port.

use crate::routing::test_support::{compile_errors, reviews, snapshot, summary, Req};

/// A GRPCRoute `bookinfo/<name>` on `reviews:9080` with `rules` (YAML lines).
fn grpc_route(name: &str, created: Option<&str>, rules: &str) -> String {
    let ts = created
        .map(|t| format!("\n  creationTimestamp: \"{t}\""))
        .unwrap_or_default();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata:\n  name: {name}\n  namespace: bookinfo{ts}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]\n  rules:\n{rules}\n"
    )
}

const BACKEND: &str = "    backendRefs: [{name: reviews-v1, port: 9080}]\n";

fn rule(matches: &str) -> String {
    format!("  - matches: {matches}\n{BACKEND}")
}

/// Per the GRPCRoute spec, one row per kind of method match.
#[test]
fn method_matches_are_matches_on_the_call_path() {
    let rows: &[(&str, &str, bool, &str)] = &[
        (
            "[{method: {service: pkg.Svc, method: Get}}]",
            "/pkg.Svc/Get",
            true,
            "Exact service and method",
        ),
        (
            "[{method: {service: pkg.Svc, method: Get}}]",
            "/pkg.Svc/GetAll",
            false,
            "Exact is whole",
        ),
        (
            "[{method: {service: pkg.Svc, method: Get}}]",
            "/pkg.Svc/Get/x",
            false,
            "Exact is whole",
        ),
        (
            "[{method: {service: pkg.Svc}}]",
            "/pkg.Svc/Any",
            true,
            "service only: any method",
        ),
        (
            "[{method: {service: pkg.Svc}}]",
            "/pkg.SvcX/Any",
            false,
            "service compared whole",
        ),
        (
            "[{method: {service: pkg.Svc}}]",
            "/pkgxSvc/Any",
            false,
            "the dot is literal",
        ),
        (
            "[{method: {method: Get}}]",
            "/any.Svc/Get",
            true,
            "method only: any service",
        ),
        (
            "[{method: {method: Get}}]",
            "/any.Svc/Put",
            false,
            "method only: other method",
        ),
        (
            "[{method: {type: RegularExpression, service: 'pkg\\..*', method: 'Get.*'}}]",
            "/pkg.Svc/GetAll",
            true,
            "regex both",
        ),
        (
            "[{method: {type: RegularExpression, service: 'pkg\\..*', method: 'Get.*'}}]",
            "/other.Svc/GetAll",
            false,
            "regex service full match",
        ),
        (
            "[{method: {type: RegularExpression, method: 'Get|Put'}}]",
            "/a.B/Put",
            true,
            "regex method, any service",
        ),
        (
            "[{method: {type: RegularExpression, method: 'Get|Put'}}]",
            "/a.B/Putx",
            false,
            "regex alternation anchored",
        ),
        (
            "[{headers: [{name: x-tenant, value: a}]}]",
            "/a.B/C",
            false,
            "no method: every call, header required",
        ),
    ];
    for (matches, path, want, why) in rows {
        let snap = snapshot(&grpc_route("g", None, &rule(matches)));
        let got =
            summary(&snap.route(&reviews(&snap), &Req::get(path).method("POST").info(), None));
        let want = if *want { "bookinfo/g#0" } else { "NoRoute" };
        assert_eq!(got, want, "{matches} {path}: {why}");
    }
    let snap = snapshot(&grpc_route(
        "g",
        None,
        &rule("[{headers: [{name: x-tenant, value: a}]}]"),
    ));
    let req = Req::get("/a.B/C").header("x-tenant", "a");
    assert_eq!(
        summary(&snap.route(&reviews(&snap), &req.info(), None)),
        "bookinfo/g#0"
    );
}

/// GRPCRoute precedence: the most characters in the matching service, then
/// in the method, then the most header matches; then the older route.
#[test]
fn grpc_route_precedence() {
    let rules = [
        rule("[{method: {method: Get}}]"),
        rule("[{method: {service: pkg.Svc}}]"),
        rule("[{method: {service: pkg.Svc, method: Get}}]"),
        rule("[{method: {service: pkg.Svc, method: Get}, headers: [{name: x-v, value: '2'}]}]"),
        rule("[{method: {service: pkg.LongerSvc}}]"),
    ]
    .concat();
    let snap = snapshot(&grpc_route("g", None, &rules));
    let dest = reviews(&snap);
    let rows = [
        (
            "/pkg.Svc/Get",
            Some("2"),
            "bookinfo/g#3",
            "same service and method, one more header",
        ),
        (
            "/pkg.Svc/Get",
            None,
            "bookinfo/g#2",
            "service and method beat service only",
        ),
        (
            "/pkg.Svc/Put",
            None,
            "bookinfo/g#1",
            "service beats nothing",
        ),
        ("/other.Svc/Get", None, "bookinfo/g#0", "method only"),
        (
            "/pkg.LongerSvc/Get",
            None,
            "bookinfo/g#4",
            "longer service beats a method-only match",
        ),
    ];
    for (path, v, want, why) in rows {
        let mut req = Req::get(path).method("POST");
        if let Some(v) = v {
            req = req.header("x-v", v);
        }
        assert_eq!(
            summary(&snap.route(&dest, &req.info(), None)),
            want,
            "{path}: {why}"
        );
    }
    // Equal matches: the older route wins whatever its name.
    let older = grpc_route(
        "zz-old",
        Some("2024-01-01T00:00:00Z"),
        &rule("[{method: {service: pkg.Svc}}]"),
    );
    let newer = grpc_route(
        "aa-new",
        Some("2025-01-01T00:00:00Z"),
        &rule("[{method: {service: pkg.Svc}}]"),
    );
    let snap = snapshot(&(newer + &older));
    let got = summary(&snap.route(&reviews(&snap), &Req::get("/pkg.Svc/X").info(), None));
    assert_eq!(got, "bookinfo/zz-old#0");
}

/// GEP-1426: a GRPCRoute and an HTTPRoute on one Service port: the
/// GRPCRoute applies, the HTTPRoute is Conflicted and ignored there.
#[test]
fn an_httproute_on_a_grpcroute_port_is_conflicted() {
    let http = crate::routing::test_support::route_yaml(
        "web",
        None,
        "  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: reviews-v2, port: 9080}]",
    );
    let grpc = grpc_route("rpc", None, &rule("[{method: {service: pkg.Svc}}]"));
    let snap = snapshot(&(http + &grpc));
    let dest = reviews(&snap);
    let route = |path: &str| summary(&snap.route(&dest, &Req::get(path).info(), None));
    assert_eq!(route("/pkg.Svc/Get"), "bookinfo/rpc#0");
    assert_eq!(
        route("/index.html"),
        "NoRoute",
        "the HTTPRoute no longer applies"
    );
    let flags: Vec<(String, &str, bool)> = snap
        .attachments()
        .into_iter()
        .map(|a| (a.route.to_string(), a.kind.as_str(), a.conflicted))
        .collect();
    assert_eq!(
        flags,
        [
            ("bookinfo/web".to_string(), "HTTPRoute", true),
            ("bookinfo/rpc".to_string(), "GRPCRoute", false),
        ]
    );
    let dump = snap.dump();
    assert_eq!(dump["conflictedRoutes"][0]["route"], "bookinfo/web");
    // Without the GRPCRoute the HTTPRoute applies and nothing is conflicted.
    let alone = snapshot(&crate::routing::test_support::route_yaml(
        "web",
        None,
        "  - backendRefs: [{name: reviews-v2, port: 9080}]",
    ));
    assert!(alone.dump().get("conflictedRoutes").is_none());
}

#[test]
fn invalid_grpc_routes_are_rejected_at_their_field() {
    let rows = [
        (
            rule("[{method: {}}]"),
            "spec.rules[0].matches[0].method",
            "needs service or method",
        ),
        (
            rule("[{method: {service: 'a/b'}}]"),
            "spec.rules[0].matches[0].method.service",
            "invalid gRPC service name",
        ),
        (
            rule("[{method: {method: '1x'}}]"),
            "spec.rules[0].matches[0].method.method",
            "invalid gRPC method name",
        ),
        (
            rule("[{method: {type: RegularExpression, method: '('}}]"),
            "spec.rules[0].matches[0].method.method",
            "invalid regular expression",
        ),
        (
            rule("[{method: {type: Prefix, method: Get}}]"),
            "spec.rules[0].matches[0].method.type",
            "unsupported gRPC method match type",
        ),
        (
            format!("  - filters: [{{type: URLRewrite, urlRewrite: {{hostname: x}}}}]\n{BACKEND}"),
            "spec.rules[0].filters[0].type",
            "not a GRPCRoute filter",
        ),
        (
            format!("  - sessionPersistence: {{sessionName: s}}\n{BACKEND}"),
            "spec.rules[0].sessionPersistence",
            "sessionPersistence is not supported",
        ),
    ];
    for (rules, field, message) in rows {
        let errors = compile_errors(&grpc_route("bad", None, &rules)).to_string();
        assert!(errors.contains(field), "{rules}: want {field} in {errors}");
        assert!(
            errors.contains(message),
            "{rules}: want {message:?} in {errors}"
        );
        assert!(errors.contains("GRPCRoute bookinfo/bad"), "{errors}");
    }
}

#[test]
fn filters_and_weights_compile_as_httproutes_do() {
    let rules = "  - matches: [{method: {service: pkg.Svc}}]\n    filters:\n    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: '1'}]}}\n    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-b, value: '2'}]}}\n    - {type: RequestMirror, requestMirror: {backendRef: {name: productpage, port: 9080}}}\n    backendRefs: [{name: reviews-v1, port: 9080, weight: 90}, {name: reviews-v2, port: 9080, weight: 10}]\n";
    let snap = snapshot(&grpc_route("g", None, rules));
    let table = &snap.dump()["services"];
    let reviews = table
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bookinfo/reviews")
        .unwrap();
    let candidate = &reviews["ports"][0]["producerRoutes"][0];
    assert_eq!(candidate["kind"], "GRPCRoute");
    assert_eq!(candidate["backends"][0]["weight"], 90);
    assert_eq!(candidate["backends"][1]["weight"], 10);
    let filters = candidate["filters"].to_string();
    for want in [
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
    ] {
        assert!(filters.contains(want), "{want} in {filters}");
    }
}
