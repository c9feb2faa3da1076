//! The compiled, immutable routing state the request path reads: every
//! destination with, per port, its endpoint sets and attached route tables,
//! plus the indexes that find a destination from a Host header or an HBONE
//! authority. Built by `build` (`Snapshot::compile`); routed by `decision`
//! (`Snapshot::route`); rendered by `dump`. This file holds only the data and
//! its lookups.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::options::CompileOptions;
use super::route_name::RouteKind;
use super::route_status::RouteStatus;
use super::service::{split_host_port, DestinationPort, ServiceTarget};
use super::table::rule::RouteTable;
use super::table::tcp::TcpRouteTable;
use crate::config::{self, NamespacedName};
use crate::upstream::EndpointSet;

/// One HTTPRoute or VirtualService attached to one Service port (for
/// `waypoint check`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// HTTPRoute, GRPCRoute or VirtualService.
    pub kind: RouteKind,
    /// The route object.
    pub route: NamespacedName,
    /// The parent Service (or ServiceEntry).
    pub service: NamespacedName,
    /// The Service port the route applies to.
    pub port: u16,
    /// True for a consumer route (route namespace ≠ Service namespace).
    pub consumer: bool,
    /// Why the route does not act on this port's traffic, or only on part
    /// of it (an HTTPRoute on a TCP port; a TCPRoute on a port that is not
    /// declared TCP, or shadowed by an older TCPRoute).
    pub note: Option<&'static str>,
    /// True for an HTTPRoute ignored on this port because a GRPCRoute is
    /// attached there too (GEP-1426: `Accepted: False`, `Conflicted`).
    pub conflicted: bool,
}

/// The compiled, immutable routing state the request path reads. Built once
/// per config load by [`Snapshot::compile`]; compare two snapshots with `==`
/// to detect a reload that changed nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub(super) resources: Arc<config::Resources>,
    pub(super) opts: CompileOptions,
    pub(super) targets: Vec<TargetState>,
    /// Lower-case host name (every accepted form) → index into `targets`.
    pub(super) hosts: HashMap<String, usize>,
    /// Service VIP / ServiceEntry address → index into `targets`.
    pub(super) vips: HashMap<IpAddr, usize>,
    /// Endpoint `ip:targetPort` → (target index, Service port number).
    pub(super) endpoint_addrs: HashMap<SocketAddr, (usize, u16)>,
    pub(super) attachments: Vec<Attachment>,
    /// Every Gateway API route with its `ResolvedRefs` verdict.
    pub(super) route_status: Vec<RouteStatus>,
}

/// A destination and everything compiled for each of its ports.
#[derive(Debug, PartialEq)]
pub(crate) struct TargetState {
    pub target: Arc<ServiceTarget>,
    /// Parallel to `target.ports`.
    pub ports: Vec<PortState>,
}

/// Endpoints and attached routes of one Service port.
#[derive(Debug, PartialEq)]
pub(crate) struct PortState {
    pub endpoints: Arc<EndpointSet>,
    /// DestinationRule subsets by name, each its own cluster.
    pub subsets: BTreeMap<String, Arc<EndpointSet>>,
    /// Routes in the Service's own namespace, in precedence order.
    pub producer: RouteTable,
    /// Consumer routes by the route's namespace, in precedence order.
    pub consumers: BTreeMap<String, RouteTable>,
    /// TCPRoutes in the Service's own namespace, the applying one first.
    pub tcp_producer: TcpRouteTable,
    /// Consumer TCPRoutes by the route's namespace.
    pub tcp_consumers: BTreeMap<String, TcpRouteTable>,
}

impl Snapshot {
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

    /// Every Gateway API route (HTTPRoute, TCPRoute, …) with its
    /// `ResolvedRefs` verdict, sorted by kind and `namespace/name`.
    pub fn route_status(&self) -> &[RouteStatus] {
        &self.route_status
    }

    /// The ready endpoints of `dest`'s Service port (its own endpoints,
    /// whatever routes say).
    pub fn endpoints(&self, dest: &DestinationPort) -> Option<Arc<EndpointSet>> {
        self.port_state(dest).map(|s| s.endpoints.clone())
    }

    /// The state of `dest`'s port in this snapshot. A request resolves its
    /// destination in the one snapshot it is served with, so `dest` is this
    /// snapshot's own: a destination from another snapshot finds nothing
    /// rather than being matched by name against config it was not
    /// resolved in.
    pub(crate) fn port_state(&self, dest: &DestinationPort) -> Option<&PortState> {
        let svc = &dest.service;
        let state = self
            .targets
            .get(svc.index)
            .filter(|t| Arc::ptr_eq(&t.target, svc))?;
        let i = state
            .target
            .ports
            .iter()
            .position(|p| p.number == dest.port.number)?;
        state.ports.get(i)
    }

    /// Plain listener: the destination named by a Host header. Accepted forms,
    /// each with or without `:port`: `name` (resolved in the waypoint's
    /// namespace), `name.ns`, `name.ns.svc`, `name.ns.svc.<cluster domain>`,
    /// `clusterIP`, and ServiceEntry hosts. Without a port, the destination's
    /// port 80 if it has one, else its first port. Case-insensitive; a
    /// trailing dot is ignored.
    pub fn find_destination_by_host(&self, host: &str) -> Option<DestinationPort> {
        let (name, port) = split_host_port(host.trim())?;
        let index = match name.parse::<IpAddr>() {
            Ok(ip) => *self.vips.get(&ip)?,
            Err(_) => {
                let name = name.strip_suffix('.').unwrap_or(name);
                match self.hosts.get(name) {
                    Some(i) => *i,
                    None => *self.hosts.get(&name.to_ascii_lowercase())?,
                }
            }
        };
        let target = &self.targets.get(index)?.target;
        let port = match port {
            Some(p) => target.port(p)?,
            None => target.default_port()?,
        };
        Some(DestinationPort {
            service: target.clone(),
            port: port.clone(),
        })
    }

    /// HBONE: the destination named by a CONNECT authority `VIP:port` (Service
    /// clusterIP or ServiceEntry address) or `podIP:targetPort` (the Service
    /// whose ready endpoint that is; the first loaded wins if several are).
    pub fn find_destination_by_addr(&self, addr: SocketAddr) -> Option<DestinationPort> {
        if let Some(&index) = self.vips.get(&addr.ip()) {
            let target = &self.targets.get(index)?.target;
            return Some(DestinationPort {
                service: target.clone(),
                port: target.port(addr.port())?.clone(),
            });
        }
        let &(index, number) = self.endpoint_addrs.get(&addr)?;
        let target = &self.targets.get(index)?.target;
        Some(DestinationPort {
            service: target.clone(),
            port: target.port(number)?.clone(),
        })
    }

    /// Every destination, in load order (Services, then ServiceEntry hosts).
    pub fn services(&self) -> impl Iterator<Item = &Arc<ServiceTarget>> {
        self.targets.iter().map(|t| &t.target)
    }
}

#[cfg(test)]
mod tests;
