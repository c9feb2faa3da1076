//! VirtualService compilation: YAML in, decisions out.

use std::time::Duration;

use crate::policy::{Abort, RetryOn, SamplePercent};
use crate::routing::test_support::{compile_errors, reviews, snapshot, Req};
use crate::routing::{ForwardPlan, RouteDecision, RouteKind, Snapshot};

/// A third reviews Pod (v3) behind the `reviews` Service, so the docs'
/// DestinationRule with subsets v1/v2/v3 selects something for each.
const REVIEWS_V3: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-v3-slice, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
ports: [{name: http, port: 9080}]
endpoints: [{addresses: [10.1.0.14]}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v3-7f-xyz, namespace: bookinfo, labels: {app: reviews, version: v3, pod-template-hash: 7f}}
status: {podIP: 10.1.0.14}
"#;

/// The shape of Istio's bookinfo "reviews" rules (our own YAML).
const BOOKINFO_RULES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 5}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
  - name: v3
    labels: {version: v3}
"#;

pub(crate) fn forward(d: RouteDecision) -> ForwardPlan {
    match d {
        RouteDecision::Forward(p) => p,
        other => panic!("expected Forward, got {other:?}"),
    }
}

fn addrs(plan: &ForwardPlan) -> Vec<String> {
    plan.endpoints
        .endpoints()
        .iter()
        .map(|e| e.addr.to_string())
        .collect()
}

fn vs(name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{body}\n"
    )
}

/// The route (`ns/name#rule`) and backend Service of a decision.
fn summary(snap: &Snapshot, req: &Req) -> String {
    match snap.route(&reviews(snap), &req.info(), None) {
        RouteDecision::NoRoute => "NoRoute".to_string(),
        RouteDecision::Redirect { location, .. } => format!("redirect {location}"),
        RouteDecision::InvalidBackend { reason, .. } => format!("500 {reason}"),
        RouteDecision::Respond { reply, .. } => format!("respond {}", reply.status),
        RouteDecision::Forward(p) => match &p.route {
            Some(r) => format!(
                "{} {r}#{} -> {}",
                r.kind().as_str(),
                r.rule_index(),
                p.backend.service.key.name
            ),
            None => format!("own -> {}", p.backend.service.key.name),
        },
    }
}

#[test]
fn istio_docs_bookinfo_reviews_example() {
    let snap = snapshot(&format!("{REVIEWS_V3}\n---\n{BOOKINFO_RULES}"));
    let dest = reviews(&snap);
    let jason = Req::get("/reviews/0").header("end-user", "jason");
    let plan = forward(snap.route(&dest, &jason.info(), None));
    assert_eq!(addrs(&plan), ["10.1.0.12:9080"], "jason gets v2");
    assert_eq!(
        plan.endpoints.cluster().name.to_string(),
        "outbound|9080|v2|reviews.bookinfo.svc.cluster.local"
    );
    let route = plan.route.as_ref().expect("a route matched");
    assert_eq!(
        (route.kind(), route.as_str(), route.rule_index()),
        (RouteKind::VirtualService, "bookinfo/reviews", 0)
    );
    for req in [
        Req::get("/reviews/0"),
        Req::get("/").header("end-user", "mary"),
    ] {
        let plan = forward(snap.route(&dest, &req.info(), None));
        assert_eq!(addrs(&plan), ["10.1.0.11:9080"], "everyone else gets v1");
        assert_eq!(plan.route.as_ref().map(|r| r.rule_index()), Some(1));
    }
    // The connectionPool applies to every subset (and the Service port).
    let limits = plan
        .endpoints
        .cluster()
        .limiter
        .as_ref()
        .expect("pool limits set")
        .limits();
    assert_eq!(limits.max_connections, Some(100));
    assert_eq!(limits.http1_max_pending_requests, Some(10));
    assert_eq!(
        plan.endpoints.cluster().max_requests_per_connection,
        Some(5)
    );
    // Istio's default retry policy when the VirtualService sets none.
    assert_eq!(plan.policy.retry, crate::policy::RetryPolicy::default());
    assert_eq!(plan.policy.timeout, None);
    // `waypoint check` lists it.
    let attached: Vec<String> = snap
        .attachments()
        .iter()
        .map(|a| {
            format!(
                "{} {} -> {}:{}",
                a.kind.as_str(),
                a.route,
                a.service,
                a.port
            )
        })
        .collect();
    assert!(
        attached.contains(&"VirtualService bookinfo/reviews -> bookinfo/reviews:9080".to_string()),
        "{attached:?}"
    );
}

#[test]
fn httproute_rules_first_then_virtual_services_in_their_own_order() {
    let httproute = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: bookinfo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: reviews-v1, port: 9080}]
"#;
    // The exact match would win under Gateway API precedence; in a
    // VirtualService the first matching rule wins.
    let a = vs(
        "a",
        r#"  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{uri: {exact: /a/b}}]
    route: [{destination: {host: reviews-v1}}]"#,
    );
    // An older VirtualService for the same host goes first.
    let b = vs(
        "b",
        r#"  hosts: [reviews.bookinfo.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /api/v2}}, {uri: {prefix: /b}}]
    route: [{destination: {host: reviews-v2.bookinfo}}]"#,
    )
    .replace(
        "namespace: bookinfo}",
        "namespace: bookinfo, creationTimestamp: \"2020-01-01T00:00:00Z\"}",
    );
    let snap = snapshot(&format!("{httproute}{a}{b}"));
    let rows = [
        ("/api/v2/x", "HTTPRoute bookinfo/gw#0 -> reviews-v1"),
        ("/a/b", "VirtualService bookinfo/a#0 -> reviews-v2"),
        ("/b", "VirtualService bookinfo/b#0 -> reviews-v2"),
        ("/zzz", "NoRoute"),
    ];
    for (path, want) in rows {
        assert_eq!(summary(&snap, &Req::get(path)), want, "{path}");
    }
}

#[test]
fn istio_match_conditions() {
    let body = r#"  hosts: [reviews]
  http:
  - name: raw-prefix
    match: [{uri: {prefix: /api}}]
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {exact: /CaSe}, ignoreUriCase: true}]
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /without}, withoutHeaders: {x-canary: {}, x-env: {exact: prod}}}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{uri: {prefix: /port}, port: 15090}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{headers: {x-p: {prefix: ab}}, queryParams: {q: {regex: "[0-9]+"}}, method: {exact: POST}}]
    route: [{destination: {host: reviews-v2}}]
  - match: [{authority: {prefix: reviews.}}]
    route: [{destination: {host: reviews-v1}}]"#;
    let snap = snapshot(&vs("m", body));
    let rows = [
        (
            "raw prefix",
            Req::get("/apis"),
            "VirtualService bookinfo/m#0 -> reviews-v1",
        ),
        (
            "ignoreUriCase",
            Req::get("/case"),
            "VirtualService bookinfo/m#1 -> reviews-v1",
        ),
        (
            "withoutHeaders: none present",
            Req::get("/without"),
            "VirtualService bookinfo/m#2 -> reviews-v2",
        ),
        (
            "withoutHeaders: value differs",
            Req::get("/without").header("x-env", "dev"),
            "VirtualService bookinfo/m#2 -> reviews-v2",
        ),
        (
            "withoutHeaders: presence excluded",
            Req::get("/without").header("x-canary", "1"),
            "VirtualService bookinfo/m#5 -> reviews-v1",
        ),
        (
            "withoutHeaders: value excluded",
            Req::get("/without").header("x-env", "prod"),
            "VirtualService bookinfo/m#5 -> reviews-v1",
        ),
        (
            "port 15090 not this port",
            Req::get("/port"),
            "VirtualService bookinfo/m#5 -> reviews-v1",
        ),
        (
            "AND within a match",
            Req::get("/x?q=12").method("POST").header("x-p", "abc"),
            "VirtualService bookinfo/m#4 -> reviews-v2",
        ),
        (
            "AND: method fails",
            Req::get("/x?q=12").header("x-p", "abc"),
            "VirtualService bookinfo/m#5 -> reviews-v1",
        ),
    ];
    for (name, req, want) in rows {
        assert_eq!(summary(&snap, &req), want, "{name}");
    }
    // The port match applies on the metrics port.
    let metrics = snap
        .find_destination_by_host("reviews.bookinfo:15090")
        .expect("port");
    let mut req = Req::get("/port");
    req.port = 15090;
    let plan = forward(snap.route(&metrics, &req.info(), None));
    assert_eq!(plan.route.map(|r| r.rule_index()), Some(3));
}

#[test]
fn rewrites_and_redirects() {
    let body = r#"  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: internal}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {exact: /exact}}]
    rewrite: {uri: /full}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /svc}}]
    rewrite: {uriRegexRewrite: {match: "^/svc/([^/]+)", rewrite: "/\\1/v1"}}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /go}}]
    redirect: {uri: /gone, authority: example.com}
  - match: [{uri: {prefix: /tls}}]
    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT, redirectCode: 308}"#;
    let snap = snapshot(&vs("rw", body));
    let dest = reviews(&snap);
    let rewritten = |path: &str| {
        let plan = forward(snap.route(&dest, &Req::get(path).info(), None));
        let rw = plan.rewrite.expect("rewrite");
        (rw.path_and_query, rw.authority)
    };
    assert_eq!(
        rewritten("/oldies/x?a=1"),
        (
            Some("/newies/x?a=1".to_string()),
            Some("internal".to_string())
        ),
        "raw prefix replaced, query kept"
    );
    assert_eq!(
        rewritten("/exact").0.as_deref(),
        Some("/full"),
        "non-prefix match: whole path"
    );
    assert_eq!(rewritten("/svc/foo/bar").0.as_deref(), Some("/foo/v1/bar"));
    let redirect = |path: &str| match snap.route(&dest, &Req::get(path).info(), None) {
        RouteDecision::Redirect {
            status, location, ..
        } => (status, location),
        other => panic!("expected redirect, got {other:?}"),
    };
    assert_eq!(
        redirect("/go/x?q=1"),
        (301, "http://example.com:9080/gone?q=1".to_string()),
        "uri replaces the whole path; default code 301"
    );
    assert_eq!(
        redirect("/tls"),
        (308, "https://reviews.bookinfo/tls".to_string())
    );
}

#[test]
fn weights_headers_mirrors_and_policy() {
    let body = r#"  hosts: [reviews]
  http:
  - headers:
      request: {set: {x-rule: r}, remove: [x-drop]}
      response: {add: {x-resp: r}}
    route:
    - destination: {host: reviews-v1}
      weight: 100
      headers: {request: {set: {x-dest: d}}}
    - destination: {host: reviews-v2}
      weight: 0
    - destination: {host: nowhere}
      weight: 0
    mirror: {host: reviews-v2}
    mirrorPercentage: {value: 100.0}
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "gateway-error,409"}
    fault:
      delay: {fixedDelay: 2s, percent: 10}
      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 12.5}}"#;
    let snap = snapshot(&vs("w", body));
    for _ in 0..50 {
        let plan = forward(snap.route(&reviews(&snap), &Req::get("/").info(), None));
        assert_eq!(
            plan.backend.service.key.name, "reviews-v1",
            "weight 0 never chosen"
        );
        let set: Vec<String> = plan
            .request_headers
            .iter()
            .flat_map(|m| m.set.iter().map(|(n, _)| n.to_string()))
            .collect();
        assert_eq!(
            set,
            ["x-rule", "x-dest"],
            "route level, then destination level"
        );
        assert_eq!(plan.request_headers[0].remove.len(), 1);
        assert_eq!(plan.response_headers.len(), 1);
        assert_eq!(plan.mirrors.len(), 1);
        assert_eq!(plan.mirrors[0].backend.service.key.name, "reviews-v2");
        let p = &plan.policy;
        assert_eq!(p.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(p.retry.attempts, 3);
        assert_eq!(p.retry.per_try_timeout, Some(Duration::from_millis(500)));
        assert!(p.retry.retry_on.contains(RetryOn::GATEWAY_ERROR));
        assert!(!p.retry.retry_on.contains(RetryOn::CONNECT_FAILURE));
        assert_eq!(p.retry.retriable_status_codes, vec![409]);
        let fault = p.fault.as_ref().expect("fault");
        assert_eq!(
            fault.delay,
            Some((Duration::from_secs(2), SamplePercent(10.0)))
        );
        assert_eq!(fault.abort, Some((Abort::Grpc(14), SamplePercent(12.5))));
    }
}

#[test]
fn retries_follow_istio_defaults() {
    let body = r#"  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /off}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews-v1}}]
  - match: [{uri: {prefix: /default-on}}]
    retries: {attempts: 5}
    route: [{destination: {host: reviews-v1}}]
  - route: [{destination: {host: nowhere}}]"#;
    let snap = snapshot(&vs("r", body));
    let plan = |path: &str| snap.route(&reviews(&snap), &Req::get(path).info(), None);
    assert_eq!(forward(plan("/off")).policy.retry.attempts, 0);
    let on = forward(plan("/default-on")).policy.retry.clone();
    assert_eq!(on.attempts, 5);
    assert_eq!(on.retriable_status_codes, vec![503]);
    assert!(on.retry_on.contains(RetryOn::CONNECT_FAILURE));
    assert!(
        matches!(plan("/x"), RouteDecision::InvalidBackend { .. }),
        "unknown destination host answers 500"
    );
}

#[test]
fn validation_errors_name_their_field() {
    let body = r#"  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews-v1}, weight: -1}
    - {destination: {host: reviews-v2}, weight: 101}
  - route:
    - {destination: {host: reviews-v1}, weight: 50}
    - {destination: {host: reviews-v2}, weight: 40}
  - retries: {attempts: 2, retryOn: "5xx,bogus", perTryTimeout: 1q}
    timeout: soon
    route: [{destination: {host: ""}}]
  - fault:
      delay: {fixedDelay: 1s, percentage: {value: 101}}
      abort: {httpStatus: 700}
    mirror: {host: reviews-v2}
    mirrorPercentage: {value: -5}
    route: [{destination: {host: reviews, subset: nope}}]
  - match: [{uri: {regex: "("}}, {headers: {x: {exact: a, prefix: b}}}]
    directResponse: {status: 700}
  - delegate: {name: other}
  - match: [{uri: {prefix: /x}}]"#;
    let errors = compile_errors(&vs("bad", body));
    let mut got: Vec<String> = errors
        .0
        .iter()
        .map(|e| {
            let obj = e
                .location
                .object
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_default();
            format!("{obj} {}", e.location.field.clone().unwrap_or_default())
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = [
        "spec.http[0].route[0].weight",
        "spec.http[0].route[1].weight",
        "spec.http[1].route",
        "spec.http[2].retries.retryOn",
        "spec.http[2].retries.perTryTimeout",
        "spec.http[2].timeout",
        "spec.http[2].route[0].destination.host",
        "spec.http[3].fault.delay.percentage",
        "spec.http[3].fault.abort.httpStatus",
        "spec.http[3].mirrorPercentage",
        "spec.http[3].route[0].destination.subset",
        "spec.http[4].match[0].uri.regex",
        "spec.http[4].match[1].headers.x",
        "spec.http[4].directResponse.status",
        "spec.http[5].delegate",
        "spec.http[6]",
    ]
    .iter()
    .map(|f| format!("VirtualService bookinfo/bad {f}"))
    .collect();
    want.sort();
    assert_eq!(got, want, "{errors:?}");
    let file = errors.0[0].location.file.as_deref();
    assert_eq!(file, Some("mesh.yaml"));
}
