//! Gateway API `TCPRoute` (`gateway.networking.k8s.io/v1alpha2`, and `v1`
//! since the Gateway API promoted it): weighted backends for TCP
//! connections. Field names mirror the API; defaults are applied when the
//! route is compiled (`routing::compile::tcp_route`).

use serde::Deserialize;

use super::gateway::{BackendObjectReference, ParentRef};
use super::meta::ObjectMeta;

/// `TCPRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: TcpRouteSpec,
    /// Written by controllers; ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouteSpec {
    /// For mesh routes: `group: ""` (or `core`), `kind: Service`, `port` /
    /// `sectionName`, as HTTPRoute's.
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Exactly one rule (Gateway API v1: `minItems: 1`, `maxItems: 1`; a
    /// connection carries nothing a second rule could match on).
    #[serde(default)]
    pub rules: Vec<TcpRouteRule>,
}

/// `rules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// Per the API: "If unspecified or invalid ... the underlying
    /// implementation MUST actively reject connection attempts to this
    /// backend", in proportion to its weight.
    #[serde(default)]
    pub backend_refs: Vec<TcpBackendRef>,
}

/// `backendRefs[]` of a TCPRoute: a reference and a weight (no filters).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(from = "TcpBackendRefFields")]
pub struct TcpBackendRef {
    /// The reference fields (`group`, `kind`, `name`, `namespace`, `port`).
    pub backend: BackendObjectReference,
    /// Default 1; 0 means "never chosen".
    pub weight: Option<i64>,
}

/// Decoded flat, not with `#[serde(flatten)]`, so a misspelled field still
/// reaches the unknown-field warning (as `HttpBackendRef`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TcpBackendRefFields {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    weight: Option<i64>,
}

impl From<TcpBackendRefFields> for TcpBackendRef {
    fn from(f: TcpBackendRefFields) -> Self {
        TcpBackendRef {
            backend: BackendObjectReference {
                group: f.group,
                kind: f.kind,
                name: f.name,
                namespace: f.namespace,
                port: f.port,
            },
            weight: f.weight,
        }
    }
}
