//! Compiled TCPRoutes: a route's weighted backends, and the TCPRoutes
//! attached to one Service port in the order they apply. Choosing a backend
//! per connection is `routing::tcp`.

use std::cmp::Ordering;
use std::sync::Arc;

use super::backend::CompiledBackend;
use crate::routing::route_name::RouteName;

/// One TCPRoute's rule, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledTcpRoute {
    pub route: RouteName,
    /// `metadata.creationTimestamp` (RFC 3339), for conflict resolution.
    pub created: Option<String>,
    /// Its `backendRefs`; empty when the rule has none (connections refused).
    pub backends: Vec<CompiledBackend>,
    pub total_weight: u64,
}

/// The TCPRoutes attached to one Service port for one audience (producer,
/// or one consumer namespace).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TcpRouteTable {
    /// Sorted: the first one applies.
    pub routes: Vec<Arc<CompiledTcpRoute>>,
}

impl TcpRouteTable {
    /// Per the Gateway API's conflict rule for routes of one kind on one
    /// parent: the oldest route (`creationTimestamp`) wins, then the first
    /// by `namespace/name`. A TCPRoute has no matches to merge on, so the
    /// winner takes every connection and the others are shadowed.
    pub(crate) fn sort(&mut self) {
        self.routes.sort_by(|a, b| order(a, b));
    }

    /// The route that applies, if any.
    pub(crate) fn active(&self) -> Option<&Arc<CompiledTcpRoute>> {
        self.routes.first()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn order(a: &CompiledTcpRoute, b: &CompiledTcpRoute) -> Ordering {
    // A missing timestamp sorts last: it is not known to be older.
    let created = match (&a.created, &b.created) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    created.then_with(|| a.route.as_str().cmp(b.route.as_str()))
}
