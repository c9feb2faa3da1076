//! AuthorizationPolicy cost per request: one Service with a 10-rule ALLOW
//! policy (principals, methods, path prefixes and templates, a header
//! condition) and a 2-rule DENY policy. Benches a request the last ALLOW rule
//! matches and one no rule matches (every rule is tried, then denied), each
//! with the path normalisation check a request pays.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderMap;
use waypoint::authz::{path, Attributes, AuthzOptions, AuthzTable, HttpAttributes, JwksRegistry};
use waypoint::config::{self, NamespacedName};
use waypoint::routing::ServiceKind;

const RULES: usize = 10;

fn policies_yaml() -> String {
    let mut yaml = String::from(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: bench}\nspec:\n  targetRefs: [{kind: Service, name: svc}]\n  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin/*\"]}}]\n  - when: [{key: \"request.headers[x-block]\", values: [\"*\"]}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: bench}\nspec:\n  targetRefs: [{kind: Service, name: svc}]\n  rules:\n",
    );
    for i in 0..RULES {
        yaml.push_str(&format!(
            "  - from: [{{source: {{principals: [\"cluster.local/ns/team-{i}/sa/*\"], notIpBlocks: [\"192.168.{i}.0/24\"]}}}}]\n    to: [{{operation: {{methods: [GET, HEAD], paths: [\"/api/v{i}/*\", \"/items/{{*}}/v{i}\"]}}}}]\n    when: [{{key: \"request.headers[x-tenant]\", values: [\"t{i}\"]}}]\n"
        ));
    }
    yaml
}

fn bench_authz(c: &mut Criterion) {
    let resources =
        config::load_str(&policies_yaml(), "bench.yaml", "bench").expect("bench YAML loads");
    let opts = AuthzOptions {
        gateway: NamespacedName::new("bench", "waypoint"),
        ..AuthzOptions::default()
    };
    let table = AuthzTable::compile(&resources, &opts, &JwksRegistry::default())
        .expect("bench policies compile");
    let key = NamespacedName::new("bench", "svc");
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("t9"));
    headers.insert("user-agent", http::HeaderValue::from_static("bench"));
    let (table, key) = (&table, &key);
    let request = |principal: &'static str, path: &'static str| {
        move |headers: &HeaderMap| {
            let policies = table
                .for_destination(ServiceKind::Service, key)
                .expect("policies apply");
            let path = path::normalize(path);
            let a = Attributes {
                principal: Some(principal),
                namespace: principal.split('/').nth(2),
                source_ip: Some("10.0.0.7".parse().unwrap()),
                remote_ip: Some("10.0.0.7".parse().unwrap()),
                destination_ip: None,
                destination_port: 8080,
                sni: None,
                http: Some(HttpAttributes {
                    method: "GET",
                    path: &path,
                    host: "svc.bench.svc.cluster.local:8080",
                    headers,
                }),
                auth: None,
            };
            policies.evaluate(&a).allowed
        }
    };
    let last_rule = request("cluster.local/ns/team-9/sa/web", "/items/42/v9?x=1");
    assert!(last_rule(&headers), "the last ALLOW rule matches");
    let nothing = request("cluster.local/ns/other/sa/web", "/nothing/here");
    assert!(!nothing(&headers), "no rule matches: denied");

    c.bench_function("authz 10-rule ALLOW: last rule matches", |b| {
        b.iter(|| black_box(last_rule(black_box(&headers))))
    });
    c.bench_function("authz 10-rule ALLOW: nothing matches (denied)", |b| {
        b.iter(|| black_box(nothing(black_box(&headers))))
    });
}

criterion_group!(benches, bench_authz);
criterion_main!(benches);
