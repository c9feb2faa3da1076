//! End-to-end routing tests: YAML in, `RouteDecision` out.

use std::sync::Arc;
use std::time::Duration;

use super::test_support::{
    opts, resources, reviews, route_yaml, snapshot, summary, Req, CONSUMER_AND_PRODUCER,
};
use super::*;
use crate::upstream::LoadRegistry;

mod fuzz;
mod gamma;
mod validation;

fn forward(d: RouteDecision) -> ForwardPlan {
    match d {
        RouteDecision::Forward(p) => p,
        other => panic!("expected Forward, got {other:?}"),
    }
}

#[test]
fn no_route_attached_forwards_to_the_services_own_ready_endpoints() {
    let snap = snapshot("");
    let plan = forward(snap.route(&reviews(&snap), &Req::get("/").info(), None));
    assert_eq!(plan.route, None);
    assert_eq!(plan.backend.service.key.to_string(), "bookinfo/reviews");
    let addrs: Vec<String> = plan
        .endpoints
        .endpoints()
        .iter()
        .map(|e| e.addr.to_string())
        .collect();
    // 10.1.0.13 has conditions.ready: false.
    assert_eq!(addrs, ["10.1.0.11:9080", "10.1.0.12:9080"]);
}

#[test]
fn precedence_across_rules_and_routes() {
    let a = route_yaml(
        "a",
        Some("2024-01-02T00:00:00Z"),
        r#"
  - matches: [{path: {type: PathPrefix, value: /api}}]
  - matches: [{path: {type: PathPrefix, value: /api/v1}}]
  - matches: [{path: {type: Exact, value: /api/v1/items}}]
  - matches: [{path: {type: RegularExpression, value: "/api/v[0-9]+/items"}}]
  - matches: [{path: {value: /api}, method: POST}]
  - matches: [{path: {value: /api/v1}, headers: [{name: x-a, value: "1"}]}]
  - matches: [{path: {value: /api/v1}, headers: [{name: x-a, value: "1"}, {name: X-B, value: "2"}]}]
  - matches: [{path: {value: /api/v1}, queryParams: [{name: q, value: "1"}]}]
  - matches: [{path: {value: /shared}}]
  - matches: [{path: {type: Exact, value: /dup}}]
  - matches: [{path: {type: Exact, value: /dup}}]
  - matches: [{path: {value: /old}}]"#,
    );
    let b = route_yaml(
        "b",
        Some("2024-01-01T00:00:00Z"),
        "  - matches: [{path: {value: /shared}}]",
    );
    let c = route_yaml("c", None, "  - matches: [{path: {value: /tie}}]");
    let d = route_yaml(
        "d",
        None,
        "  - matches: [{path: {value: /tie}}]\n  - matches: [{path: {value: /old}}]",
    );
    let z = route_yaml("z", Some("2023-01-01T00:00:00Z"), "  - {}");
    let snap = snapshot(&format!("{d}{z}{a}{c}{b}"));
    let dest = reviews(&snap);
    // (request, expected route#rule, spec rule)
    let rows: Vec<(Req, &str, &str)> = vec![
        (
            Req::get("/api/v1/items"),
            "bookinfo/a#2",
            "Exact path match first",
        ),
        (
            Req::get("/api/v2/items"),
            "bookinfo/a#3",
            "RegularExpression before PathPrefix (Istio's choice)",
        ),
        (
            Req::get("/api/v1/x").header("x-a", "1").header("x-b", "2"),
            "bookinfo/a#6",
            "largest number of header matches",
        ),
        (
            Req::get("/api/v1/x").header("X-A", "1"),
            "bookinfo/a#5",
            "header names are case-insensitive",
        ),
        (
            Req::get("/api/v1/x?q=1"),
            "bookinfo/a#7",
            "query param match beats none",
        ),
        (
            Req::get("/api/v1/x?q=2"),
            "bookinfo/a#1",
            "query param value must match",
        ),
        (
            Req::get("/api/v1/x").method("POST"),
            "bookinfo/a#1",
            "longest prefix before method match",
        ),
        (
            Req::get("/api/x").method("POST"),
            "bookinfo/a#4",
            "method match before none",
        ),
        (
            Req::get("/api/x"),
            "bookinfo/a#0",
            "prefix /api matches /api/x",
        ),
        (Req::get("/api"), "bookinfo/a#0", "prefix /api matches /api"),
        (
            Req::get("/apix"),
            "bookinfo/z#0",
            "prefix matches whole path elements only",
        ),
        (
            Req::get("/shared"),
            "bookinfo/b#0",
            "oldest route by creationTimestamp",
        ),
        (
            Req::get("/tie"),
            "bookinfo/c#0",
            "then namespace/name alphabetical",
        ),
        (
            Req::get("/old"),
            "bookinfo/a#11",
            "a missing creationTimestamp counts as newest",
        ),
        (
            Req::get("/dup"),
            "bookinfo/a#9",
            "first matching rule in list order",
        ),
        (
            Req::get("/anything?x=1"),
            "bookinfo/z#0",
            "a rule without matches is PathPrefix /",
        ),
    ];
    for (req, want, rule) in rows {
        let got = summary(&snap.route(&dest, &req.info(), None));
        assert_eq!(got, want, "{} {}: {rule}", req.method, req.path_and_query);
    }
}

#[test]
fn routes_apply_but_none_matches_is_no_route() {
    let snap = snapshot(&route_yaml(
        "a",
        None,
        "  - matches: [{path: {type: Exact, value: /only}}]",
    ));
    assert_eq!(
        snap.route(&reviews(&snap), &Req::get("/other").info(), None),
        RouteDecision::NoRoute
    );
}

fn weighted(backends: &str) -> Snapshot {
    snapshot(&route_yaml(
        "w",
        None,
        &format!("  - backendRefs: {backends}"),
    ))
}

#[test]
fn weighted_backends_follow_their_weights() {
    let snap = weighted(
        "[{name: reviews-v1, port: 9080, weight: 90}, {name: reviews-v2, port: 9080, weight: 10}]",
    );
    let dest = reviews(&snap);
    let req = Req::get("/");
    let n = 10_000;
    let v1 = (0..n)
        .filter(|_| {
            forward(snap.route(&dest, &req.info(), None))
                .backend
                .service
                .key
                .name
                == "reviews-v1"
        })
        .count();
    let share = v1 as f64 / n as f64;
    assert!((share - 0.9).abs() < 0.02, "reviews-v1 share {share}");
}

#[test]
fn backend_weight_edge_cases() {
    let req = Req::get("/");
    // (backendRefs, expected outcome, spec rule)
    let rows = [
        (
            "[{name: reviews-v1, port: 9080, weight: 0}, {name: reviews-v2, port: 9080}]",
            "reviews-v2",
            "weight 0 is never chosen; default weight 1",
        ),
        (
            "[{name: missing, port: 9080, weight: 0}, {name: reviews-v1, port: 9080}]",
            "reviews-v1",
            "an unresolved weight-0 backend is never an error",
        ),
        (
            "[{name: reviews-v1, port: 9080, weight: 0}]",
            "500: all backendRefs have weight 0",
            "all weights zero: 500",
        ),
        (
            "[{name: missing, port: 9080}]",
            "500: backend Service bookinfo/missing not found",
            "missing backend Service: 500",
        ),
        (
            "[{name: reviews-v1, port: 1234}]",
            "500: backend Service bookinfo/reviews-v1 has no port 1234",
            "port not on the Service: 500",
        ),
        (
            "[{name: reviews-v1, port: 9080, kind: Pod}]",
            "500: unsupported backend kind /Pod",
            "unsupported kind: 500",
        ),
        (
            "[]",
            "500: rule has no backendRefs and no RequestRedirect",
            "no backendRefs and no redirect: 500",
        ),
        (
            "[{name: api.example.com, group: networking.istio.io, kind: Hostname, port: 443}]",
            "external",
            "Istio Hostname backend names a ServiceEntry host",
        ),
    ];
    for (backends, want, rule) in rows {
        let snap = weighted(backends);
        let got = match snap.route(&reviews(&snap), &req.info(), None) {
            RouteDecision::Forward(p) => p.backend.service.key.name.clone(),
            RouteDecision::InvalidBackend { reason, .. } => format!("500: {reason}"),
            other => format!("{other:?}"),
        };
        assert_eq!(got, want, "{backends}: {rule}");
    }
}

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    // Per the Gateway API, a backendRef into another namespace needs a
    // ReferenceGrant there; without one the share gets 500.
    let echo = "apiVersion: v1\nkind: Service\nmetadata: {name: echo, namespace: other}\nspec: {ports: [{port: 8080}]}\n";
    let route = route_yaml(
        "x",
        None,
        "  - backendRefs: [{name: echo, namespace: other, port: 8080}]",
    );
    let snap = snapshot(&format!("{echo}{route}"));
    match snap.route(&reviews(&snap), &Req::get("/").info(), None) {
        RouteDecision::InvalidBackend { reason, .. } => {
            assert!(
                reason.contains(
                    "no ReferenceGrant in namespace other allows HTTPRoute from namespace bookinfo"
                ),
                "{reason}"
            )
        }
        other => panic!("want InvalidBackend, got {other:?}"),
    }
    let status = snap
        .route_status()
        .iter()
        .find(|s| s.route.to_string() == "bookinfo/x")
        .expect("status of bookinfo/x");
    let (ok, reason, message) = status.resolved_refs();
    assert!(!ok);
    assert_eq!(reason, "RefNotPermitted");
    assert!(
        message.starts_with("spec.rules[0].backendRefs[0]: "),
        "{message}"
    );

    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: other}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: bookinfo}]\n  to: [{group: \"\", kind: Service, name: echo}]\n";
    let snap = snapshot(&format!("{echo}{route}{grant}"));
    let plan = forward(snap.route(&reviews(&snap), &Req::get("/").info(), None));
    assert_eq!(
        plan.backend.authority(),
        "echo.other.svc.cluster.local:8080"
    );
    assert!(
        plan.endpoints.is_empty(),
        "no slices: still Forward, the proxy answers 503 UH"
    );
}

#[test]
fn forward_plan_carries_filters_timeouts_and_retry() {
    let rules = r#"
  - matches: [{path: {value: /api}}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-rule, value: r}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-resp, value: r}]}}
    - {type: URLRewrite, urlRewrite: {hostname: internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 0}}
    backendRefs:
    - name: reviews-v1
      port: 9080
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-backend, value: b}]}}]
    timeouts: {request: 10s, backendRequest: "0s"}
    retry: {codes: [503], attempts: 2, backoff: 100ms}"#;
    let snap = snapshot(&route_yaml("f", None, rules));
    let plan = forward(snap.route(&reviews(&snap), &Req::get("/api/items?x=1").info(), None));
    let names: Vec<String> = plan
        .request_headers
        .iter()
        .flat_map(|m| m.set.iter().map(|(n, _)| n.to_string()))
        .collect();
    assert_eq!(
        names,
        ["x-rule", "x-backend"],
        "rule-level before backendRef-level"
    );
    assert_eq!(plan.response_headers.len(), 1);
    assert_eq!(
        plan.rewrite,
        Some(Rewrite {
            path_and_query: Some("/v2/items?x=1".to_string()),
            authority: Some("internal".to_string()),
        })
    );
    assert_eq!(
        plan.mirrors.len(),
        1,
        "percent 0 is never sampled, default 100% always"
    );
    assert_eq!(plan.mirrors[0].backend.service.key.name, "reviews-v2");
    assert_eq!(plan.policy.timeout, Some(Duration::from_secs(10)));
    let retry = &plan.policy.retry;
    assert_eq!(retry.per_try_timeout, None, "backendRequest 0s disables");
    assert_eq!(retry.retriable_status_codes, vec![503]);
    assert_eq!(retry.attempts, 2);
    assert_eq!(retry.backoff_base, Duration::from_millis(100));
}

#[test]
fn redirect_decision() {
    let rules = r#"
  - matches: [{path: {value: /old}}]
    filters:
    - {type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, statusCode: 301}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-r, value: "1"}]}}"#;
    let snap = snapshot(&route_yaml("r", None, rules));
    match snap.route(&reviews(&snap), &Req::get("/old/page?a=b").info(), None) {
        RouteDecision::Redirect {
            route,
            status,
            location,
            response_headers,
            ..
        } => {
            assert_eq!(route.to_string(), "bookinfo/r");
            assert_eq!(status, 301);
            assert_eq!(location, "https://example.com/new/page?a=b");
            assert_eq!(response_headers.len(), 1);
        }
        other => panic!("expected redirect, got {other:?}"),
    }
}

#[test]
fn unchanged_reload_compiles_to_an_equal_snapshot() {
    let load = LoadRegistry::default();
    let a = Snapshot::compile(Arc::new(resources(CONSUMER_AND_PRODUCER)), &opts(), &load)
        .expect("compiles");
    let b = Snapshot::compile(Arc::new(resources(CONSUMER_AND_PRODUCER)), &opts(), &load)
        .expect("compiles");
    assert_eq!(a, b);
    let c = Snapshot::compile(Arc::new(resources("")), &opts(), &load).expect("compiles");
    assert_ne!(a, c);
}

#[test]
fn a_destination_is_routed_only_by_the_snapshot_it_was_resolved_in() {
    // One snapshot per request: the proxy resolves the destination in the
    // snapshot it routes with. A destination from another snapshot is not
    // matched by name against config it was not resolved in.
    let old = snapshot("");
    let new = snapshot(CONSUMER_AND_PRODUCER);
    let stale = reviews(&old);
    match new.route(&stale, &Req::get("/").info(), None) {
        RouteDecision::Forward(plan) => assert!(plan.endpoints.is_empty(), "{plan:?}"),
        other => panic!("expected a plan with no endpoints, got {other:?}"),
    }
    let fresh = reviews(&new);
    assert_eq!(
        summary(&new.route(&fresh, &Req::get("/").info(), None)),
        "bookinfo/producer#0"
    );
}

#[test]
fn a_mirror_into_another_namespace_needs_a_grant_too() {
    // The mirror's backendRef is a BackendObjectReference like backendRefs:
    // the same ReferenceGrant rule applies; the primary backend still serves.
    let shadow = "apiVersion: v1\nkind: Service\nmetadata: {name: shadow, namespace: other}\nspec: {ports: [{port: 8080}]}\n";
    let rules = "  - filters:\n    - {type: RequestMirror, requestMirror: {backendRef: {name: shadow, namespace: other, port: 8080}}}\n    backendRefs: [{name: reviews-v1, port: 9080}]";
    let snap = snapshot(&format!("{shadow}{}", route_yaml("m", None, rules)));
    let plan = forward(snap.route(&reviews(&snap), &Req::get("/").info(), None));
    assert_eq!(plan.backend.service.key.name, "reviews-v1");
    assert!(plan.mirrors.is_empty(), "a refused mirror sends nothing");
    let status = snap
        .route_status()
        .iter()
        .find(|s| s.route.to_string() == "bookinfo/m")
        .expect("status of bookinfo/m");
    assert_eq!(
        status.unresolved[0].field,
        "spec.rules[0].filters[0].requestMirror.backendRef"
    );
    assert_eq!(status.resolved_refs().1, "RefNotPermitted");
}
