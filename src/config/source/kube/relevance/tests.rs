use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::{json, Value};

use super::*;

const ID: WaypointId<'static> = WaypointId {
    gateway_name: "waypoint",
    namespace: "shop",
    cluster_domain: "cluster.local",
    root_namespace: "istio-system",
    gateway_class: "pingora-waypoint",
};

fn maps(objects: &[(WatchedKind, Value)]) -> BTreeMap<WatchedKind, ObjectMap> {
    let mut maps: BTreeMap<_, _> = WatchedKind::ALL
        .iter()
        .map(|k| (*k, ObjectMap::new(*k)))
        .collect();
    for (kind, value) in objects {
        let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        maps.get_mut(kind).unwrap().apply(Event::Apply(object));
    }
    maps
}

fn ns(name: &str, labels: Value) -> (WatchedKind, Value) {
    (
        WatchedKind::Namespace,
        json!({"metadata": {"name": name, "labels": labels}}),
    )
}

fn svc(ns: &str, name: &str, labels: Value) -> (WatchedKind, Value) {
    (
        WatchedKind::Service,
        json!({"metadata": {"name": name, "namespace": ns, "labels": labels}}),
    )
}

fn route(ns: &str, name: &str, parent: Value, backend: &str) -> (WatchedKind, Value) {
    (
        WatchedKind::HttpRoute,
        json!({"metadata": {"name": name, "namespace": ns},
               "spec": {"parentRefs": [parent], "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}}),
    )
}

fn dr(ns: &str, name: &str, host: &str) -> (WatchedKind, Value) {
    (
        WatchedKind::DestinationRule,
        json!({"metadata": {"name": name, "namespace": ns}, "spec": {"host": host}}),
    )
}

fn selected(objects: &[(WatchedKind, Value)]) -> Vec<String> {
    select(&ID, &maps(objects))
        .into_iter()
        .map(|(origin, _)| origin)
        .filter(|o| !o.starts_with("kube:Namespace") && !o.starts_with("kube:Service/"))
        .collect()
}

#[test]
fn binding_by_namespace_service_and_opt_out() {
    let objects = [
        ns("shop", json!({USE_WAYPOINT: "waypoint"})),
        ns("other", json!({USE_WAYPOINT: "waypoint"})),
        ns(
            "remote",
            json!({USE_WAYPOINT: "waypoint", USE_WAYPOINT_NAMESPACE: "shop"}),
        ),
        svc("shop", "via-namespace", json!({})),
        svc("shop", "opted-out", json!({USE_WAYPOINT: "none"})),
        svc("shop", "elsewhere", json!({USE_WAYPOINT: "other-waypoint"})),
        // A waypoint of the same name in its own namespace is not us.
        svc("other", "same-name-other-ns", json!({})),
        svc("remote", "cross-namespace", json!({})),
        svc(
            "plain",
            "own-label",
            json!({USE_WAYPOINT: "waypoint", USE_WAYPOINT_NAMESPACE: "shop"}),
        ),
    ];
    let maps = maps(&objects);
    let bound: Vec<String> = maps[&WatchedKind::Service]
        .iter()
        .filter(|((ns, _), o)| {
            let nsl = maps[&WatchedKind::Namespace]
                .get("", ns)
                .map(labels)
                .unwrap_or_default();
            is_bound(&ID, ns, &labels(o), &nsl)
        })
        .map(|((ns, n), _)| format!("{ns}/{n}"))
        .collect();
    assert_eq!(
        bound,
        [
            "plain/own-label",
            "remote/cross-namespace",
            "shop/via-namespace"
        ]
    );
}

#[test]
fn routes_and_policies_follow_bound_services() {
    let service_parent = |name: &str| json!({"group": "", "kind": "Service", "name": name});
    let objects = [
        ns("shop", json!({USE_WAYPOINT: "waypoint"})),
        svc("shop", "reviews", json!({})),
        svc("shop", "ratings", json!({USE_WAYPOINT: "other"})),
        route(
            "shop",
            "to-reviews",
            service_parent("reviews"),
            "reviews-v2",
        ),
        route(
            "shop",
            "to-ratings",
            service_parent("ratings"),
            "ratings-v2",
        ),
        route("shop", "to-gateway", json!({"name": "waypoint"}), "x"),
        route("shop", "to-other-gateway", json!({"name": "other"}), "y"),
        // Rules for a bound Service, its backend, a wildcard, and an unrelated one.
        dr("shop", "dr-reviews", "reviews"),
        dr("shop", "dr-backend", "reviews-v2.shop.svc.cluster.local"),
        dr("shop", "dr-wildcard", "*.shop.svc.cluster.local"),
        dr("shop", "dr-ratings-backend", "ratings-v2"),
        (
            WatchedKind::WasmPlugin,
            json!({"metadata": {"name": "gw", "namespace": "shop"},
                   "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"}]}}),
        ),
        (
            WatchedKind::WasmPlugin,
            json!({"metadata": {"name": "ratings", "namespace": "shop"},
                   "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "ratings"}]}}),
        ),
    ];
    assert_eq!(
        selected(&objects),
        [
            "kube:HTTPRoute/shop/to-gateway",
            "kube:HTTPRoute/shop/to-reviews",
            "kube:DestinationRule/shop/dr-backend",
            "kube:DestinationRule/shop/dr-reviews",
            "kube:DestinationRule/shop/dr-wildcard",
            "kube:WasmPlugin/shop/gw",
        ]
    );
}

fn authz(ns: &str, name: &str, spec: Value) -> (WatchedKind, Value) {
    (
        WatchedKind::AuthorizationPolicy,
        json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": {"name": name, "namespace": ns}, "spec": spec}),
    )
}

#[test]
fn authorization_policies_that_target_this_waypoint() {
    let gw = |kind: &str, name: &str| json!({"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": kind, "name": name}]});
    let objects = [
        svc("shop", "cart", json!({"istio.io/use-waypoint": "waypoint"})),
        svc("shop", "other", json!({})),
        authz("shop", "to-gateway", gw("Gateway", "waypoint")),
        authz("shop", "to-other-gateway", gw("Gateway", "east")),
        authz(
            "istio-system",
            "to-class",
            gw("GatewayClass", "pingora-waypoint"),
        ),
        authz(
            "istio-system",
            "to-istio-class",
            gw("GatewayClass", "istio-waypoint"),
        ),
        authz(
            "shop",
            "to-cart",
            json!({"targetRefs": [{"kind": "Service", "name": "cart"}]}),
        ),
        authz(
            "shop",
            "to-unbound",
            json!({"targetRefs": [{"kind": "Service", "name": "other"}]}),
        ),
        authz(
            "shop",
            "selector",
            json!({"selector": {"matchLabels": {"app": "cart"}}}),
        ),
        authz(
            "elsewhere",
            "selector",
            json!({"selector": {"matchLabels": {"app": "x"}}}),
        ),
        (
            WatchedKind::RequestAuthentication,
            json!({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
                   "metadata": {"name": "jwt", "namespace": "shop"},
                   "spec": {"targetRefs": [{"kind": "Service", "name": "cart"}]}}),
        ),
        (
            WatchedKind::RequestAuthentication,
            json!({"apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
                   "metadata": {"name": "jwt-other", "namespace": "shop"},
                   "spec": {"targetRefs": [{"kind": "Service", "name": "other"}]}}),
        ),
    ];
    let got: Vec<String> = selected(&objects)
        .into_iter()
        .filter(|o| o.contains("AuthorizationPolicy") || o.contains("RequestAuthentication"))
        .collect();
    assert_eq!(
        got,
        [
            "kube:AuthorizationPolicy/istio-system/to-class",
            "kube:AuthorizationPolicy/shop/selector",
            "kube:AuthorizationPolicy/shop/to-cart",
            "kube:AuthorizationPolicy/shop/to-gateway",
            "kube:RequestAuthentication/shop/jwt",
        ]
    );
}

#[test]
fn tcp_routes_follow_bound_services_and_every_grant_is_loaded() {
    let tcp = |name: &str, parent: &str, backend: &str| {
        (
            WatchedKind::TcpRoute,
            json!({"metadata": {"name": name, "namespace": "shop"},
                   "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": parent}],
                            "rules": [{"backendRefs": [{"name": backend, "port": 5432}]}]}}),
        )
    };
    let grant = |ns: &str| {
        (
            WatchedKind::ReferenceGrant,
            json!({"metadata": {"name": "g", "namespace": ns}, "spec": {"from": [], "to": []}}),
        )
    };
    let objects = [
        ns("shop", json!({USE_WAYPOINT: "waypoint"})),
        svc("shop", "db", json!({})),
        svc("shop", "cache", json!({USE_WAYPOINT: "other"})),
        tcp("to-db", "db", "db-v2"),
        tcp("to-cache", "cache", "cache-v2"),
        grant("payments"),
        grant("unrelated"),
        // The TCPRoute's backend is a host its DestinationRule may be about.
        dr("shop", "dr-db-v2", "db-v2"),
    ];
    assert_eq!(
        selected(&objects),
        [
            "kube:TCPRoute/shop/to-db",
            "kube:ReferenceGrant/payments/g",
            "kube:ReferenceGrant/unrelated/g",
            "kube:DestinationRule/shop/dr-db-v2",
        ]
    );
}

#[test]
fn grpc_routes_follow_bound_services_and_bring_their_backends() {
    let grpc_route = |name: &str, parent: &str, backend: &str| {
        let (_, value) = route(
            "shop",
            name,
            json!({"group": "", "kind": "Service", "name": parent}),
            backend,
        );
        (WatchedKind::GrpcRoute, value)
    };
    let objects = [
        ns("shop", json!({USE_WAYPOINT: "waypoint"})),
        svc("shop", "reviews", json!({})),
        svc("shop", "ratings", json!({USE_WAYPOINT: "other"})),
        grpc_route("rpc-reviews", "reviews", "reviews-grpc"),
        grpc_route("rpc-ratings", "ratings", "ratings-grpc"),
        // A DestinationRule for the GRPCRoute's backend is relevant too.
        dr("shop", "dr-grpc-backend", "reviews-grpc"),
        dr("shop", "dr-other", "ratings-grpc"),
    ];
    assert_eq!(
        selected(&objects),
        [
            "kube:GRPCRoute/shop/rpc-reviews",
            "kube:DestinationRule/shop/dr-grpc-backend",
        ]
    );
}
