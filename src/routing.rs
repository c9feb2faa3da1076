//! Routing: compiles loaded [`config::Resources`] into an immutable
//! [`Snapshot`] and answers, per request, "which Service, which route, which
//! backend, which endpoints".
//!
//! The snapshot owns destination lookup (Host header or HBONE authority →
//! [`Destination`]), GAMMA route attachment (HTTPRoutes whose `parentRefs`
//! name a Service), Gateway API match precedence, filters and weighted backend
//! choice, and the endpoint sets with their load-balancing state. It holds no
//! Pingora types: the proxy adapts a [`RouteDecision`] into its own vocabulary,
//! and authorization, retries and connection pools live elsewhere.

mod backend;
mod cluster;
mod compile;
mod decision;
mod discovery;
mod dump;
mod duration;
mod endpoints;
mod error;
mod filters;
mod istio;
mod matching;
mod regex_rewrite;
mod route_policy;
mod service;
#[cfg(test)]
mod test_support;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::config::{self, NamespacedName};

pub use crate::policy::HashKey;
pub use cluster::{ClusterPolicy, LbChoice, Locality, PickRequest};
pub use decision::{ForwardPlan, Mirror, RequestInfo, Rewrite, RouteDecision};
pub use duration::parse_duration;
pub use endpoints::{
    ActiveRequestGuard, Endpoint, EndpointSet, LoadRegistry, Picked, WorkloadInfo,
};
pub use error::RouteConfigError;
pub use filters::{HeaderEdit, HeaderModifier};
pub use istio::IstioConfigError;
pub use matching::{CompiledMatch, HeaderMatch, PathMatch, Pattern, QueryParamMatch, ValueMatch};
pub use route_policy::RoutePolicy;
pub use service::{Destination, ServiceKind, ServicePortTarget, ServiceTarget, TargetPort};

use matching::RouteTable;

/// How a snapshot is compiled; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The waypoint's own namespace: short host names (`reviews`) resolve here.
    pub namespace: String,
    /// Kubernetes cluster domain, default `cluster.local`.
    pub cluster_domain: String,
    /// Load-balancing policy for every endpoint set.
    pub lb: LbPolicy,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            namespace: "default".to_string(),
            cluster_domain: "cluster.local".to_string(),
            lb: LbPolicy::default(),
        }
    }
}

/// Endpoint-picking policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LbPolicy {
    /// Least request with the power of two random choices (Envoy's default
    /// `LEAST_REQUEST` with `choice_count: 2`).
    #[default]
    LeastRequest,
    /// Plain round robin over the ready endpoints.
    RoundRobin,
    /// Uniformly random (Istio `RANDOM`).
    Random,
}

/// The API kind a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Gateway API `HTTPRoute` (rules sorted by precedence).
    HttpRoute,
    /// Istio `VirtualService` (`http[]` in order, after HTTPRoute rules).
    VirtualService,
}

impl RouteKind {
    /// The API kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::HttpRoute => "HTTPRoute",
            RouteKind::VirtualService => "VirtualService",
        }
    }
}

/// Which HTTPRoute or VirtualService (and which of its rules) produced a
/// decision. Displays as `namespace/name`; the rule index
/// ([`RouteName::rule_index`]) and kind ([`RouteName::kind`]) are separate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteName {
    name: Arc<str>,
    rule: usize,
    kind: RouteKind,
}

impl RouteName {
    pub(crate) fn new(key: &NamespacedName, rule: usize) -> Self {
        Self {
            name: Arc::from(key.to_string()),
            rule,
            kind: RouteKind::HttpRoute,
        }
    }

    pub(crate) fn virtual_service(key: &NamespacedName, rule: usize) -> Self {
        Self {
            kind: RouteKind::VirtualService,
            ..Self::new(key, rule)
        }
    }

    /// `namespace/name` of the HTTPRoute or VirtualService.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// 0-based index of the rule in `spec.rules` (HTTPRoute) or `spec.http`
    /// (VirtualService).
    pub fn rule_index(&self) -> usize {
        self.rule
    }

    /// HTTPRoute or VirtualService.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// One HTTPRoute or VirtualService attached to one Service port (for
/// `waypoint check`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// HTTPRoute or VirtualService.
    pub kind: RouteKind,
    /// The route object.
    pub route: NamespacedName,
    /// The parent Service (or ServiceEntry).
    pub service: NamespacedName,
    /// The Service port the route applies to.
    pub port: u16,
    /// True for a consumer route (route namespace ≠ Service namespace).
    pub consumer: bool,
}

/// The compiled, immutable routing state the request path reads. Built once
/// per config load by [`Snapshot::compile`]; compare two snapshots with `==`
/// to detect a reload that changed nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    resources: Arc<config::Resources>,
    opts: CompileOptions,
    targets: Vec<TargetState>,
    /// Lower-case host name (every accepted form) → index into `targets`.
    hosts: HashMap<String, usize>,
    /// Service VIP / ServiceEntry address → index into `targets`.
    vips: HashMap<IpAddr, usize>,
    /// Endpoint `ip:targetPort` → (target index, Service port number).
    endpoint_addrs: HashMap<SocketAddr, (usize, u16)>,
    attachments: Vec<Attachment>,
}

/// A destination and everything compiled for each of its ports.
#[derive(Debug, PartialEq)]
struct TargetState {
    target: Arc<ServiceTarget>,
    /// Parallel to `target.ports`.
    ports: Vec<PortState>,
}

/// Endpoints and attached routes of one Service port.
#[derive(Debug, PartialEq)]
struct PortState {
    endpoints: Arc<EndpointSet>,
    /// DestinationRule subsets by name, each its own cluster.
    subsets: BTreeMap<String, Arc<EndpointSet>>,
    /// Routes in the Service's own namespace, in precedence order.
    producer: RouteTable,
    /// Consumer routes by the route's namespace, in precedence order.
    consumers: BTreeMap<String, RouteTable>,
}

impl Snapshot {
    /// Validates and compiles `resources`. Every invalid HTTPRoute field is
    /// reported (not just the first); references to missing Services are
    /// warnings, since Gateway API reports them in route status instead.
    pub fn compile(
        resources: Arc<config::Resources>,
        opts: &CompileOptions,
        load: &LoadRegistry,
    ) -> Result<Snapshot, config::ConfigErrors> {
        compile::compile(resources, opts, load)
    }

    /// The resources this snapshot was compiled from.
    pub fn resources(&self) -> &config::Resources {
        &self.resources
    }

    /// The options this snapshot was compiled with.
    pub fn options(&self) -> &CompileOptions {
        &self.opts
    }

    /// Which HTTPRoute attaches to which Service port, sorted; then which
    /// VirtualService, in merge order.
    pub fn attachments(&self) -> Vec<Attachment> {
        self.attachments.clone()
    }

    /// The ready endpoints of `dest`'s Service port (L4 passthrough uses the
    /// Service's own endpoints: HTTPRoutes do not apply to TCP).
    pub fn endpoints(&self, dest: &Destination) -> Option<Arc<EndpointSet>> {
        self.port_state(dest).map(|s| s.endpoints.clone())
    }

    /// The state of `dest`'s port in this snapshot. A destination resolved
    /// from an older snapshot is looked up by identity.
    fn port_state(&self, dest: &Destination) -> Option<&PortState> {
        let svc = &dest.service;
        let state = match self.targets.get(svc.index) {
            Some(t) if Arc::ptr_eq(&t.target, svc) || t.target.same_identity(svc) => t,
            _ => self.targets.iter().find(|t| t.target.same_identity(svc))?,
        };
        let i = state
            .target
            .ports
            .iter()
            .position(|p| p.number == dest.port.number)?;
        state.ports.get(i)
    }
}

#[cfg(test)]
mod tests;
