//! The per-connection TCP routing decision (`Snapshot::route_tcp`): which
//! TCPRoute applies to a connection handled as TCP (GAMMA producer vs
//! consumer, as for HTTP), and which of its weighted backends takes it.

use std::sync::Arc;

use super::route_name::RouteName;
use super::service::DestinationPort;
use super::snapshot::Snapshot;
use super::table::backend::choose;
use crate::upstream::EndpointSet;

/// Where one TCP connection goes.
#[derive(Debug, Clone, PartialEq)]
pub enum TcpDecision {
    /// Forward to `backend`'s endpoints. `route` is `None` when no TCPRoute
    /// applies (the addressed Service's own endpoints).
    Forward {
        route: Option<RouteName>,
        backend: DestinationPort,
        endpoints: Arc<EndpointSet>,
    },
    /// Close the connection: the TCPRoute's chosen share is invalid, or it
    /// has no usable backend. Per the Gateway API: "the underlying
    /// implementation MUST actively reject connection attempts to this
    /// backend. Connection rejections must respect weight". `reason` is for
    /// logs.
    Reject { route: RouteName, reason: String },
    /// The destination is not in this snapshot (a reload removed it).
    Gone,
}

impl Snapshot {
    /// Routes one TCP connection to `dest`. `caller_namespace` is the
    /// client's namespace from its mTLS identity. Per GEP-1294 the caller
    /// namespace's consumer TCPRoutes apply when it has any, else the
    /// producer's; the oldest attached TCPRoute applies.
    pub fn route_tcp(&self, dest: &DestinationPort, caller_namespace: Option<&str>) -> TcpDecision {
        let Some(state) = self.port_state(dest) else {
            return TcpDecision::Gone;
        };
        let table = caller_namespace
            .and_then(|ns| state.tcp_consumers.get(ns))
            .unwrap_or(&state.tcp_producer);
        let Some(route) = table.active() else {
            return TcpDecision::Forward {
                route: None,
                backend: dest.clone(),
                endpoints: state.endpoints.clone(),
            };
        };
        let reject = |reason: &str| TcpDecision::Reject {
            route: route.route.clone(),
            reason: reason.to_string(),
        };
        if route.backends.is_empty() {
            return reject("TCPRoute rule has no backendRefs");
        }
        let Some(backend) = choose(&route.backends, route.total_weight) else {
            return reject("all backendRefs have weight 0");
        };
        match &backend.target {
            Ok((backend, endpoints)) => TcpDecision::Forward {
                route: Some(route.route.clone()),
                backend: backend.clone(),
                endpoints: endpoints.clone(),
            },
            Err(reason) => reject(reason),
        }
    }
}

#[cfg(test)]
mod tests;
