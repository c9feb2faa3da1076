//! TCPRoute: YAML in, per-connection `TcpDecision` and route status out.

use super::*;
use crate::routing::test_support::{compile_errors, snapshot};
use crate::routing::RouteKind;

/// A TCP port on `db` (name `tcp-db`) and two versions to split over.
const DB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: tcp-db, port: 5432}, {name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db-v1, namespace: bookinfo}
spec: {ports: [{name: tcp-db, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-v2, namespace: bookinfo}
spec: {ports: [{name: tcp-db, port: 5432}]}
"#;

fn tcp_route(name: &str, ns: &str, created: &str, backends: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: db, namespace: bookinfo, port: 5432}}]\n  rules:\n  - backendRefs: {backends}\n"
    )
}

fn db(snap: &Snapshot) -> DestinationPort {
    snap.find_destination_by_host("db.bookinfo:5432")
        .expect("db exists")
}

/// The backend Service name a decision forwards to, or `reject`.
fn backend(d: TcpDecision) -> String {
    match d {
        TcpDecision::Forward { backend, .. } => backend.service.key.name.clone(),
        TcpDecision::Reject { .. } => "reject".to_string(),
        TcpDecision::Gone => "gone".to_string(),
    }
}

#[test]
fn connections_follow_the_tcp_route_backends() {
    // Rows: (backendRefs, every connection goes to, rule).
    let rows = [
        (
            "[]",
            "reject",
            "no backendRefs: the Gateway API says reject connections",
        ),
        (
            "[{name: db-v2, port: 5432}]",
            "db-v2",
            "one backend takes everything",
        ),
        (
            "[{name: db-v1, port: 5432, weight: 0}, {name: db-v2, port: 5432}]",
            "db-v2",
            "weight 0 is never chosen",
        ),
        (
            "[{name: db-v1, port: 5432, weight: 0}]",
            "reject",
            "all weights 0: rejected",
        ),
        (
            "[{name: ghost, port: 5432}]",
            "reject",
            "a missing Service: rejected",
        ),
        (
            "[{name: db-v1, port: 9999}]",
            "reject",
            "a missing port: rejected",
        ),
    ];
    for (backends, want, rule) in rows {
        let snap = snapshot(&format!(
            "{DB}{}",
            tcp_route("split", "bookinfo", "2024-01-01T00:00:00Z", backends)
        ));
        for _ in 0..20 {
            assert_eq!(backend(snap.route_tcp(&db(&snap), None)), want, "{rule}");
        }
    }
}

#[test]
fn without_a_tcp_route_the_service_serves_itself() {
    let snap = snapshot(DB);
    assert_eq!(backend(snap.route_tcp(&db(&snap), None)), "db");
}

#[test]
fn a_consumer_tcp_route_applies_to_its_namespace_only() {
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: bookinfo}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: frontend}]\n  to: [{group: \"\", kind: Service}]\n";
    let snap = snapshot(&format!(
        "{DB}{}{}{grant}",
        tcp_route(
            "producer",
            "bookinfo",
            "2024-01-01T00:00:00Z",
            "[{name: db-v1, port: 5432}]"
        ),
        tcp_route(
            "consumer",
            "frontend",
            "2024-01-01T00:00:00Z",
            "[{name: db-v2, namespace: bookinfo, port: 5432}]"
        ),
    ));
    assert_eq!(
        backend(snap.route_tcp(&db(&snap), Some("frontend"))),
        "db-v2"
    );
    assert_eq!(backend(snap.route_tcp(&db(&snap), Some("other"))), "db-v1");
    assert_eq!(backend(snap.route_tcp(&db(&snap), None)), "db-v1");
}

#[test]
fn a_cross_namespace_tcp_backend_without_a_grant_is_refused() {
    let snap = snapshot(&format!(
        "{DB}{}",
        tcp_route(
            "consumer",
            "frontend",
            "2024-01-01T00:00:00Z",
            "[{name: db-v2, namespace: bookinfo, port: 5432}]"
        ),
    ));
    match snap.route_tcp(&db(&snap), Some("frontend")) {
        TcpDecision::Reject { route, reason } => {
            assert_eq!(route.to_string(), "frontend/consumer");
            assert!(reason.contains("no ReferenceGrant in namespace bookinfo allows TCPRoute from namespace frontend"), "{reason}");
        }
        other => panic!("want Reject, got {other:?}"),
    }
    let status = &snap.route_status()[0];
    assert_eq!(status.kind, RouteKind::TcpRoute);
    assert_eq!(status.resolved_refs().1, "RefNotPermitted");
}

#[test]
fn the_oldest_tcp_route_on_a_port_wins_and_the_other_is_marked() {
    let snap = snapshot(&format!(
        "{DB}{}{}",
        tcp_route(
            "newer",
            "bookinfo",
            "2024-06-01T00:00:00Z",
            "[{name: db-v2, port: 5432}]"
        ),
        tcp_route(
            "older",
            "bookinfo",
            "2024-01-01T00:00:00Z",
            "[{name: db-v1, port: 5432}]"
        ),
    ));
    assert_eq!(backend(snap.route_tcp(&db(&snap), None)), "db-v1");
    let notes: Vec<(String, Option<&str>)> = snap
        .attachments()
        .into_iter()
        .map(|a| (a.route.to_string(), a.note))
        .collect();
    assert_eq!(notes[0].0, "bookinfo/newer");
    assert!(
        notes[0].1.is_some_and(|n| n.contains("an older TCPRoute")),
        "{notes:?}"
    );
    assert_eq!(notes[1], ("bookinfo/older".to_string(), None));
}

#[test]
fn routes_on_the_other_protocols_port_say_what_they_do() {
    let http_route = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: bookinfo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: db, port: 5432}]\n  rules: [{backendRefs: [{name: db-v1, port: 5432}]}]\n";
    let on_http = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: raw, namespace: bookinfo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: db, sectionName: http}]\n  rules: [{backendRefs: [{name: db-v1, port: 5432}]}]\n";
    let snap = snapshot(&format!("{DB}{http_route}{on_http}"));
    let note = |kind: RouteKind| {
        snap.attachments()
            .into_iter()
            .find(|a| a.kind == kind)
            .and_then(|a| a.note)
            .unwrap_or("")
    };
    assert!(note(RouteKind::HttpRoute).starts_with("ignored: the port is TCP"));
    assert!(note(RouteKind::TcpRoute).starts_with("partial: the port is not declared TCP"));
}

#[test]
fn a_tcp_route_needs_exactly_one_rule() {
    let two = "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: two, namespace: bookinfo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: db}]\n  rules: [{backendRefs: [{name: db-v1, port: 5432}]}, {backendRefs: [{name: db-v2, port: 5432}]}]\n";
    let errors = compile_errors(&format!("{DB}{two}"));
    let text = errors.to_string();
    assert!(text.contains("TCPRoute bookinfo/two"), "{text}");
    assert!(text.contains("spec.rules"), "{text}");
    assert!(text.contains("exactly one rule, found 2"), "{text}");
}

#[test]
fn which_ports_are_tcp() {
    use crate::routing::{ServicePortTarget, TargetPort};
    let port = |name: Option<&str>, app: Option<&str>| ServicePortTarget {
        number: 5432,
        name: name.map(Into::into),
        app_protocol: app.map(Into::into),
        target_port: TargetPort::Number(5432),
    };
    // Rows: (name, appProtocol, TCP?, Istio's rule).
    let rows = [
        (Some("tcp"), None, true, "port name tcp"),
        (Some("tcp-db"), None, true, "port name prefix tcp-"),
        (Some("TCP-db"), None, true, "names are case-insensitive"),
        (
            Some("tcpx"),
            None,
            false,
            "tcp without the dash is another name",
        ),
        (
            Some("http"),
            Some("tcp"),
            true,
            "appProtocol wins over the name",
        ),
        (
            Some("tcp"),
            Some("http"),
            false,
            "appProtocol wins over the name",
        ),
        (
            None,
            None,
            false,
            "unnamed: sniffed, HTTP when it looks like HTTP",
        ),
    ];
    for (name, app, want, rule) in rows {
        assert_eq!(port(name, app).is_tcp(), want, "{rule}");
    }
}
