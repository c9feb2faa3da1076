//! Discovery: EndpointSlice and ServiceEntry endpoints with their Pod facts.

use crate::routing::test_support::snapshot;
use crate::routing::{ServiceKind, TargetPort};
use crate::upstream::Endpoint;

fn endpoints(host: &str) -> Vec<Endpoint> {
    let snap = snapshot("");
    let dest = snap.find_destination_by_host(host).expect("destination");
    let plan = match snap.route(
        &dest,
        &crate::routing::test_support::Req::get("/").info(),
        None,
    ) {
        crate::routing::RouteDecision::Forward(p) => p,
        other => panic!("{other:?}"),
    };
    plan.endpoints
        .endpoints()
        .iter()
        .map(|e| (**e).clone())
        .collect()
}

#[test]
fn endpoint_slice_endpoints_with_pod_facts() {
    let eps = endpoints("reviews.bookinfo:9080");
    // (addr, pod, workload, canonical service, revision, in mesh, zone, rule)
    let got: Vec<_> = eps
        .iter()
        .map(|e| {
            (
                e.addr.to_string(),
                e.pod.as_ref().map(|p| p.to_string()),
                &*e.workload.name,
                &*e.workload.canonical_service,
                &*e.workload.canonical_revision,
                e.in_mesh,
                e.zone.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // targetRef Pod; namespace ambient; pod-template-hash stripped.
            (
                "10.1.0.11:9080".to_string(),
                Some("bookinfo/reviews-v1-5d8f7c-abcde".to_string()),
                "reviews-v1",
                "reviews",
                "v1",
                true,
                Some("zone-a")
            ),
            // No targetRef: Pod found by IP; its own label dataplane-mode: none opts out.
            (
                "10.1.0.12:9080".to_string(),
                Some("bookinfo/reviews-v2-6c9d-fghij".to_string()),
                "reviews-v2",
                "reviews",
                "v2",
                false,
                None
            ),
        ]
    );
}

#[test]
fn slice_port_is_matched_by_name_and_gives_the_target_port() {
    let eps = endpoints("productpage.bookinfo");
    let addrs: Vec<String> = eps.iter().map(|e| e.addr.to_string()).collect();
    // Service port web 80 → slice port web 8080.
    assert_eq!(addrs, ["10.1.0.21:8080"]);
    let metrics = endpoints("reviews.bookinfo:15090");
    assert_eq!(
        metrics.len(),
        2,
        "second named port uses its own slice port"
    );
    assert!(metrics.iter().all(|e| e.addr.port() == 15090));
}

#[test]
fn unknown_pod_gets_unknown_workload() {
    let snap = snapshot(
        "apiVersion: v1\nkind: Service\nmetadata: {name: bare, namespace: bookinfo}\nspec: {ports: [{port: 80}]}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: bare-1, namespace: bookinfo, labels: {kubernetes.io/service-name: bare}}\nports: [{port: 8080}]\nendpoints: [{addresses: [10.9.9.9, 10.9.9.10]}]\n",
    );
    let dest = snap
        .find_destination_by_host("bare")
        .expect("short name in waypoint namespace");
    let plan = match snap.route(
        &dest,
        &crate::routing::test_support::Req::get("/").info(),
        None,
    ) {
        crate::routing::RouteDecision::Forward(p) => p,
        other => panic!("{other:?}"),
    };
    let eps = plan.endpoints.endpoints();
    assert_eq!(
        eps.len(),
        2,
        "every address of an endpoint; unnamed ports match"
    );
    assert_eq!(&*eps[0].workload.name, "unknown");
    assert_eq!(&*eps[0].workload.canonical_revision, "unknown");
    assert!(!eps[0].in_mesh);
}

#[test]
fn service_entry_hosts_ports_and_static_endpoints() {
    let snap = snapshot("");
    let https = snap
        .find_destination_by_host("api.example.com:443")
        .expect("SE host");
    assert_eq!(https.service.kind, ServiceKind::ServiceEntry);
    assert_eq!(https.service.hostname, "api.example.com");
    assert_eq!(https.port.app_protocol.as_deref(), Some("https"));
    // (host, endpoint address): ports[portName] wins, else targetPort, else number.
    let https_eps = endpoints("api.example.com:443");
    assert_eq!(https_eps[0].addr.to_string(), "192.0.2.1:8443");
    assert!(
        !https_eps[0].in_mesh,
        "ServiceEntry endpoints are never in the mesh"
    );
    let http_eps = endpoints("api.example.com:80");
    assert_eq!(http_eps[0].addr.to_string(), "192.0.2.1:8080");
    let http = snap
        .find_destination_by_host("api.example.com")
        .expect("default port 80");
    assert_eq!(http.port.target_port, TargetPort::Number(8080));
}
