//! Route matching cost: one Service with 1,000 HTTPRoute rules (10 routes ×
//! 100 rules of varied prefixes, exact paths and header matches). Benches a
//! request that matches a candidate near the end of the precedence order and
//! one that matches nothing (the whole table is scanned).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use waypoint::config;
use waypoint::routing::{CompileOptions, RequestInfo, RouteDecision, Snapshot};
use waypoint::upstream::LoadRegistry;

const ROUTES: usize = 10;
const RULES_PER_ROUTE: usize = 100;

fn mesh_yaml() -> String {
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: bench}\nspec: {clusterIP: 10.96.0.1, ports: [{name: http, port: 8080}]}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: backend, namespace: bench}\nspec: {ports: [{name: http, port: 8080}]}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}\n\
         ports: [{name: http, port: 8080}]\nendpoints: [{addresses: [10.1.0.1]}, {addresses: [10.1.0.2]}]\n",
    );
    for r in 0..ROUTES {
        yaml.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: route-{r}, namespace: bench}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: svc, port: 8080}}]\n  rules:\n"
        ));
        for k in 0..RULES_PER_ROUTE {
            let i = r * RULES_PER_ROUTE + k;
            let matches = match i % 3 {
                0 => format!("[{{path: {{type: PathPrefix, value: /api/v{i}/items}}}}]"),
                1 => format!("[{{path: {{type: Exact, value: /exact/{i}}}}}]"),
                _ => format!("[{{path: {{type: PathPrefix, value: /svc/{i}}}, headers: [{{name: x-tenant, value: t{i}}}]}}]"),
            };
            yaml.push_str(&format!(
                "  - matches: {matches}\n    backendRefs: [{{name: backend, port: 8080}}]\n"
            ));
        }
    }
    yaml
}

fn bench_route(c: &mut Criterion) {
    let resources =
        config::load_str(&mesh_yaml(), "bench.yaml", "bench").expect("bench YAML loads");
    let opts = CompileOptions {
        namespace: "bench".to_string(),
        ..CompileOptions::default()
    };
    let snap = Snapshot::compile(Arc::new(resources), &opts, &LoadRegistry::default())
        .expect("bench config compiles");
    let dest = snap
        .find_destination_by_host("svc.bench:8080")
        .expect("svc exists");

    // `/svc/5` is among the shortest prefixes, so it sorts near the end.
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("t5"));
    let late = RequestInfo {
        method: "GET",
        path_and_query: "/svc/5/orders?page=2",
        headers: &headers,
        scheme: "http",
        host: "svc.bench",
        port: 8080,
    };
    assert!(matches!(
        snap.route(&dest, &late, None),
        RouteDecision::Forward(_)
    ));
    let empty = HeaderMap::new();
    let none = RequestInfo {
        method: "GET",
        path_and_query: "/nothing/here",
        headers: &empty,
        ..late
    };
    assert_eq!(snap.route(&dest, &none, None), RouteDecision::NoRoute);

    let mut group = c.benchmark_group("route_1000_rules");
    group.bench_function("match_near_end", |b| {
        b.iter(|| snap.route(black_box(&dest), black_box(&late), None))
    });
    group.bench_function("no_match", |b| {
        b.iter(|| snap.route(black_box(&dest), black_box(&none), None))
    });
    group.finish();
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
