//! DestinationRule compilation and cluster picking: YAML in, clusters and
//! picked endpoints out.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::routing::test_support::{compile_errors, reviews, snapshot};
use crate::routing::Snapshot;
use crate::upstream::outlier::Outcome;
use crate::upstream::{
    request_hash, EndpointSet, HashKey, LbChoice, LbPolicy, Locality, PickRequest,
};

fn dr(name: &str, body: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: bookinfo}}\nspec:\n{body}\n"
    )
}

/// ServiceEntry `zones.example.com` with endpoints in three localities.
const ZONED: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: zoned, namespace: bookinfo}
spec:
  hosts: [zones.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 192.0.2.11, locality: r1/z1/s1, labels: {tier: a}}
  - {address: 192.0.2.12, locality: r1/z2, labels: {tier: a}}
  - {address: 192.0.2.13, locality: r2/z3, labels: {tier: b}}
"#;

fn zoned(snap: &Snapshot) -> std::sync::Arc<EndpointSet> {
    let dest = snap
        .find_destination_by_host("zones.example.com")
        .expect("zoned");
    snap.port_state(&dest).expect("port").endpoints.clone()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

#[test]
fn cluster_policies_merge_top_port_and_subset_levels() {
    let body = r#"  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 2s}}
    portLevelSettings:
    - port: {number: 15090}
      loadBalancer: {simple: RANDOM}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {http2MaxRequests: 7}}
      outlierDetection: {consecutive5xxErrors: 3, baseEjectionTime: 1m, maxEjectionPercent: 50}
  - name: v2
    labels: {version: v2}"#;
    let snap = snapshot(&dr("reviews", body));
    let dest = reviews(&snap);
    let port = snap.port_state(&dest).expect("port");
    let plain = port.endpoints.cluster();
    assert_eq!(
        plain.name.to_string(),
        "outbound|9080||reviews.bookinfo.svc.cluster.local"
    );
    assert_eq!(plain.lb, LbChoice::Simple(LbPolicy::RoundRobin));
    assert_eq!(plain.connect_timeout, Some(Duration::from_secs(2)));
    let limits = plain.limiter.as_ref().expect("limiter").limits();
    assert_eq!(limits.max_connections, Some(10));
    assert!(plain.outlier.is_none() && !plain.locality_aware);

    let v1 = port.subsets.get("v1").expect("v1");
    let c = v1.cluster();
    assert_eq!(c.lb, LbChoice::Simple(LbPolicy::RoundRobin), "inherited");
    let limits = c.limiter.as_ref().expect("limiter").limits();
    assert_eq!(
        (limits.max_connections, limits.http2_max_requests),
        (None, Some(7)),
        "connectionPool replaced whole by the subset's"
    );
    let o = c.outlier.as_ref().expect("outlier").config();
    assert_eq!(
        (
            o.consecutive_5xx,
            o.base_ejection_time,
            o.max_ejection_percent
        ),
        (3, Duration::from_secs(60), 50)
    );
    assert!(c.locality_aware, "outlier detection enables locality LB");
    let eps: Vec<String> = v1.endpoints().iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(eps, ["10.1.0.11:9080"]);

    // Port-level settings override the top level for that port only.
    let metrics = snap
        .find_destination_by_host("reviews.bookinfo:15090")
        .expect("metrics");
    let m = snap.port_state(&metrics).expect("port");
    assert_eq!(m.endpoints.cluster().lb, LbChoice::Simple(LbPolicy::Random));
    assert_eq!(
        m.subsets["v2"].cluster().name.to_string(),
        "outbound|15090|v2|reviews.bookinfo.svc.cluster.local"
    );
}

#[test]
fn validation_errors_name_their_field() {
    let body = r#"  host: reviews
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
    connectionPool:
      tcp: {maxConnections: -1, connectTimeout: 0s}
      http: {http1MaxPendingRequests: -5}
    outlierDetection: {maxEjectionPercent: 120, interval: 5x}
    portLevelSettings:
    - loadBalancer: {simple: PASSTHROUGH}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    labels: {version: v2}
  - name: v9
    labels: {version: v9}
    trafficPolicy:
      loadBalancer: {consistentHash: {httpHeaderName: x-u, useSourceIp: true}}"#;
    let errors = compile_errors(&format!(
        "{}{}",
        dr("bad", body),
        dr("nohost", "  host: \"\"")
    ));
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
        "bad spec.trafficPolicy.loadBalancer.simple",
        "bad spec.trafficPolicy.connectionPool.tcp.maxConnections",
        "bad spec.trafficPolicy.connectionPool.tcp.connectTimeout",
        "bad spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
        "bad spec.trafficPolicy.outlierDetection.maxEjectionPercent",
        "bad spec.trafficPolicy.outlierDetection.interval",
        "bad spec.trafficPolicy.portLevelSettings[0].loadBalancer.simple",
        "bad spec.trafficPolicy.portLevelSettings[0].port",
        "bad spec.subsets[1].name",
        "bad spec.subsets[2].labels",
        "bad spec.subsets[2].trafficPolicy.loadBalancer.consistentHash",
        "nohost spec.host",
    ]
    .iter()
    .map(|f| format!("DestinationRule bookinfo/{f}"))
    .collect();
    want.sort();
    assert_eq!(got, want, "{errors:?}");
}

#[test]
fn consistent_hash_is_stable_per_key_and_spreads_keys() {
    let body = r#"  host: zones.example.com
  trafficPolicy:
    loadBalancer: {consistentHash: {httpHeaderName: x-user}}"#;
    let snap = snapshot(&format!("{ZONED}{}", dr("hash", body)));
    let set = zoned(&snap);
    let LbChoice::ConsistentHash(key) = &set.cluster().lb else {
        panic!("consistent hash expected");
    };
    assert_eq!(
        key,
        &HashKey::Header(http::HeaderName::from_static("x-user"))
    );
    let pick = |user: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-user", user.parse().expect("value"));
        let hash = request_hash(key, &h, "/", None);
        set.pick_with(&PickRequest {
            hash,
            ..PickRequest::default()
        })
        .expect("endpoint")
        .endpoint
        .addr
    };
    let first = pick("jason");
    for _ in 0..100 {
        assert_eq!(pick("jason"), first, "same key, same endpoint");
    }
    let spread: BTreeSet<SocketAddr> = (0..200).map(|i| pick(&format!("user-{i}"))).collect();
    assert_eq!(spread.len(), 3, "different keys reach every endpoint");
    // A retry avoiding the hashed endpoint moves elsewhere.
    let mut h = http::HeaderMap::new();
    h.insert("x-user", "jason".parse().expect("value"));
    let again = set
        .pick_with(&PickRequest {
            avoid: &[first],
            hash: request_hash(key, &h, "/", None),
            locality: None,
        })
        .expect("endpoint");
    assert_ne!(again.endpoint.addr, first);
}

#[test]
fn ejected_endpoints_are_skipped_until_all_are_ejected() {
    let body = r#"  host: zones.example.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 2, maxEjectionPercent: 100}"#;
    let snap = snapshot(&format!("{ZONED}{}", dr("od", body)));
    let set = zoned(&snap);
    let detector = set.cluster().outlier.clone().expect("detector");
    let eject = |a: &str| {
        for _ in 0..2 {
            detector.report(addr(a), Outcome::Status(503), set.len());
        }
        assert!(detector.is_ejected(addr(a)), "{a}");
    };
    let picked = |n: usize| -> BTreeSet<String> {
        (0..n)
            .map(|_| set.pick(&[]).expect("endpoint").endpoint.addr.to_string())
            .collect()
    };
    eject("192.0.2.11:80");
    assert_eq!(
        picked(20),
        ["192.0.2.12:80", "192.0.2.13:80"].map(String::from).into(),
        "ejected endpoint gets no traffic"
    );
    eject("192.0.2.12:80");
    eject("192.0.2.13:80");
    assert_eq!(picked(30).len(), 3, "all ejected: panic mode uses them all");
}

#[test]
fn locality_tiers_fail_over_zone_then_region_then_any() {
    let body = r#"  host: zones.example.com
  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 1, consecutive5xxErrors: 0, maxEjectionPercent: 100}"#;
    let snap = snapshot(&format!("{ZONED}{}", dr("loc", body)));
    let set = zoned(&snap);
    assert!(set.cluster().locality_aware);
    let own: Locality = "r1/z1".parse().expect("locality");
    let pick = || -> BTreeSet<String> {
        (0..20)
            .map(|_| {
                set.pick_with(&PickRequest {
                    locality: Some(&own),
                    ..PickRequest::default()
                })
                .expect("endpoint")
                .endpoint
                .addr
                .to_string()
            })
            .collect()
    };
    let detector = set.cluster().outlier.clone().expect("detector");
    assert_eq!(pick(), ["192.0.2.11:80".to_string()].into(), "same zone");
    detector.report(addr("192.0.2.11:80"), Outcome::Status(502), 3);
    assert_eq!(pick(), ["192.0.2.12:80".to_string()].into(), "same region");
    detector.report(addr("192.0.2.12:80"), Outcome::Status(502), 3);
    assert_eq!(pick(), ["192.0.2.13:80".to_string()].into(), "any region");
    // Without a locality of our own, every endpoint is eligible.
    let z: Locality = "us-east1/us-east1-b".parse().expect("locality");
    let zone_only = Locality {
        region: String::new(),
        zone: "us-east1-b".to_string(),
    };
    assert_eq!(z.tier(&zone_only), 0, "unknown region, same zone");
    assert_eq!(z.to_string(), "us-east1/us-east1-b");
}

#[test]
fn random_lb_reaches_every_endpoint_and_subsets_use_labels() {
    let body = r#"  host: zones.example.com
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: a, labels: {tier: a}}"#;
    let snap = snapshot(&format!("{ZONED}{}", dr("rnd", body)));
    let set = zoned(&snap);
    let seen: BTreeSet<SocketAddr> = (0..300)
        .map(|_| set.pick(&[]).expect("endpoint").endpoint.addr)
        .collect();
    assert_eq!(seen.len(), 3);
    let dest = snap
        .find_destination_by_host("zones.example.com")
        .expect("zoned");
    let a = &snap.port_state(&dest).expect("port").subsets["a"];
    assert_eq!(a.len(), 2, "ServiceEntry endpoint labels select the subset");
    assert_eq!(a.cluster().lb, LbChoice::Simple(LbPolicy::Random));
}
