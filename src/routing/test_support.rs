//! Shared fixtures for the routing unit tests: a small bookinfo mesh as YAML,
//! helpers to compile it with extra objects, to build requests and to
//! summarise decisions.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{CompileOptions, DestinationPort, RequestInfo, RouteDecision, Snapshot};
use crate::config::{self, ConfigErrors};
use crate::upstream::LoadRegistry;

/// Namespace `bookinfo` (ambient), Services `reviews` (VIP 10.96.0.20, ports
/// http 9080 and metrics 15090), `reviews-v1`, `reviews-v2`, `productpage`
/// (VIP 10.96.0.10, ports 9080 and web 80→8080), their EndpointSlices and
/// Pods, and ServiceEntry `external` for `api.example.com`.
pub(crate) const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 9080, targetPort: 9080}, {name: metrics, port: 15090}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.21
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews-v2, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.22
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: bookinfo}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080}, {name: web, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-abc, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{name: http, port: 9080}, {name: metrics, port: 15090}]
endpoints:
- addresses: [10.1.0.11]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1-5d8f7c-abcde, namespace: bookinfo}
  zone: zone-a
- addresses: [10.1.0.12]
- addresses: [10.1.0.13]
  conditions: {ready: false}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-v1-abc, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews-v1}}
ports: [{name: http, port: 9080}]
endpoints: [{addresses: [10.1.0.11]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-v2-abc, namespace: bookinfo, labels: {kubernetes.io/service-name: reviews-v2}}
ports: [{name: http, port: 9080}]
endpoints: [{addresses: [10.1.0.12]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: productpage-abc, namespace: bookinfo, labels: {kubernetes.io/service-name: productpage}}
ports: [{name: http, port: 9080}, {name: web, port: 8080}]
endpoints: [{addresses: [10.1.0.21]}]
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-5d8f7c-abcde
  namespace: bookinfo
  labels: {app: reviews, version: v1, pod-template-hash: 5d8f7c}
status: {podIP: 10.1.0.11}
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v2-6c9d-fghij
  namespace: bookinfo
  labels: {app: reviews, version: v2, pod-template-hash: 6c9d, istio.io/dataplane-mode: none}
status: {podIP: 10.1.0.12}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: bookinfo}
spec:
  hosts: [api.example.com]
  addresses: [240.0.0.1]
  ports: [{number: 443, name: https, protocol: HTTPS}, {number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  endpoints: [{address: 192.0.2.1, ports: {https: 8443}}]
"#;

/// Options used by every test: waypoint namespace `bookinfo`.
pub(crate) fn opts() -> CompileOptions {
    CompileOptions {
        namespace: "bookinfo".to_string(),
        ..CompileOptions::default()
    }
}

/// Loads `MESH` plus `extra` (more YAML documents).
pub(crate) fn resources(extra: &str) -> config::Resources {
    let text = format!("{MESH}\n---\n{extra}");
    config::load_str(&text, "mesh.yaml", "bookinfo").expect("test YAML loads")
}

/// Compiles `MESH` plus `extra`, which must be valid.
pub(crate) fn snapshot(extra: &str) -> Snapshot {
    Snapshot::compile(
        Arc::new(resources(extra)),
        &opts(),
        &LoadRegistry::default(),
    )
    .expect("compiles")
}

/// Compiles `MESH` plus `extra`, which must be invalid.
pub(crate) fn compile_errors(extra: &str) -> ConfigErrors {
    Snapshot::compile(
        Arc::new(resources(extra)),
        &opts(),
        &LoadRegistry::default(),
    )
    .expect_err("must be rejected")
}

/// `reviews.bookinfo:9080`.
pub(crate) fn reviews(snap: &Snapshot) -> DestinationPort {
    snap.find_destination_by_host("reviews.bookinfo:9080")
        .expect("reviews exists")
}

/// An owned request; `info()` borrows it as [`RequestInfo`].
pub(crate) struct Req {
    pub method: &'static str,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub host: &'static str,
    pub port: u16,
}

impl Req {
    pub(crate) fn get(path_and_query: &str) -> Self {
        Self {
            method: "GET",
            path_and_query: path_and_query.to_string(),
            headers: HeaderMap::new(),
            host: "reviews.bookinfo",
            port: 9080,
        }
    }

    pub(crate) fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
        self
    }

    pub(crate) fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: self.method,
            path_and_query: &self.path_and_query,
            headers: &self.headers,
            scheme: "http",
            host: self.host,
            port: self.port,
        }
    }
}

/// A producer route in `bookinfo` and a consumer route from `frontend`, both
/// on `reviews` (GAMMA), with the ReferenceGrant that lets the consumer
/// route send to `bookinfo`'s Services.
pub(crate) const CONSUMER_AND_PRODUCER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: frontend}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: producer, namespace: bookinfo}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews}]
  rules: [{backendRefs: [{name: reviews-v1, port: 9080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: frontend}
spec:
  parentRefs: [{group: core, kind: Service, name: reviews, namespace: bookinfo, port: 9080}]
  rules:
  - matches: [{path: {value: /v2}}]
    backendRefs: [{name: reviews-v2, namespace: bookinfo, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: frontend-routes, namespace: bookinfo}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: frontend}]
  to: [{group: "", kind: Service}]
"#;

/// `ns/name#rule` of the route behind a decision, or the decision kind.
pub(crate) fn summary(d: &RouteDecision) -> String {
    match d {
        RouteDecision::NoRoute => "NoRoute".to_string(),
        RouteDecision::Redirect { route, .. }
        | RouteDecision::InvalidBackend { route, .. }
        | RouteDecision::Respond { route, .. } => {
            format!("{route}#{}", route.rule_index())
        }
        RouteDecision::Forward(p) => match &p.route {
            Some(route) => format!("{route}#{}", route.rule_index()),
            None => format!("own:{}", p.backend.service.key),
        },
    }
}

/// An HTTPRoute `bookinfo/<name>` on `reviews:9080` with `rules` (YAML
/// lines), optionally with a creation timestamp.
pub(crate) fn route_yaml(name: &str, created: Option<&str>, rules: &str) -> String {
    let ts = created
        .map(|t| format!("\n  creationTimestamp: \"{t}\""))
        .unwrap_or_default();
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: bookinfo{ts}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]\n  rules:\n{rules}\n"
    )
}
