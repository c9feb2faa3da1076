//! Route identity: which API kind, object and rule produced a decision.
//! Used in decisions, metrics labels, logs and `/config_dump`.

use std::fmt;
use std::sync::Arc;

use crate::config::NamespacedName;

/// The API kind a route comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Gateway API `HTTPRoute` (rules sorted by precedence).
    HttpRoute,
    /// Gateway API `GRPCRoute` (rules sorted by its precedence; on a Service
    /// port it shares with HTTPRoutes, the HTTPRoutes are ignored).
    GrpcRoute,
    /// Istio `VirtualService` (`http[]` in order, after HTTPRoute rules).
    VirtualService,
    /// Gateway API `TCPRoute` (connections handled as TCP; one rule).
    TcpRoute,
}

impl RouteKind {
    /// The API kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::HttpRoute => "HTTPRoute",
            RouteKind::GrpcRoute => "GRPCRoute",
            RouteKind::VirtualService => "VirtualService",
            RouteKind::TcpRoute => "TCPRoute",
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

    pub(crate) fn grpc_route(key: &NamespacedName, rule: usize) -> Self {
        Self {
            kind: RouteKind::GrpcRoute,
            ..Self::new(key, rule)
        }
    }

    pub(crate) fn virtual_service(key: &NamespacedName, rule: usize) -> Self {
        Self {
            kind: RouteKind::VirtualService,
            ..Self::new(key, rule)
        }
    }

    pub(crate) fn tcp_route(key: &NamespacedName) -> Self {
        Self {
            kind: RouteKind::TcpRoute,
            ..Self::new(key, 0)
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

    /// HTTPRoute, GRPCRoute or VirtualService.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
