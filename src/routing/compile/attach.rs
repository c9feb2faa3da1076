//! GAMMA attachment: which compiled rules (HTTPRoute, GRPCRoute) and
//! TCPRoutes apply to which Service port, and for whom (producer vs consumer
//! routes); and GEP-1426's rule for route kinds sharing a Service port (a
//! GRPCRoute wins over an HTTPRoute).

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use super::resolve::KeyIndex;
use crate::config::{NamespacedName, ParentRef, Sourced, TcpRoute};
use crate::routing::discovery::key_in;
use crate::routing::route_name::RouteKind;
use crate::routing::service::ServiceKind;
use crate::routing::snapshot::{Attachment, TargetState};
use crate::routing::table::rule::{Candidate, CompiledRule, RouteTable};
use crate::routing::table::tcp::{CompiledTcpRoute, TcpRouteTable};

/// Why an HTTPRoute on a TCP port does nothing: the waypoint never parses
/// those connections as HTTP (Istio builds only its TCP chain for them).
const HTTP_ON_TCP_PORT: &str =
    "ignored: the port is TCP (appProtocol tcp or name tcp-*), so its connections are not parsed as HTTP; use a TCPRoute";
/// A TCPRoute on a port that is not declared TCP applies only to what the
/// waypoint cannot parse as HTTP there (Istio's waypoint: HTTP goes to the
/// HTTP chain and its HTTPRoutes, everything else to the TCP chain).
const TCP_ON_HTTP_PORT: &str =
    "partial: the port is not declared TCP, so only connections that are not HTTP use this TCPRoute";
/// Another TCPRoute on the same port and audience applies instead.
const TCP_SHADOWED: &str =
    "ignored: an older TCPRoute on this port applies (Gateway API conflict rule: oldest, then namespace/name)";

/// One HTTP route to attach: its identity, `parentRefs`, kind (HTTPRoute or
/// GRPCRoute) and compiled rules.
pub(crate) struct RouteToAttach<'a> {
    pub key: &'a NamespacedName,
    pub parent_refs: &'a [ParentRef],
    pub kind: RouteKind,
    pub rules: &'a [Arc<CompiledRule>],
}

/// One Service port a route's parentRef names: target index, port index,
/// and whether the route is a consumer route there.
struct ParentPort {
    target: usize,
    port: usize,
    consumer: bool,
}

/// The Service ports the `parents` of a route in `route` name, each once.
///
/// Per GEP-1426: a parentRef of `group: ""` (or `core`) and `kind: Service`
/// attaches to that Service (namespace defaults to the route's); `port`
/// restricts it to that Service port, `sectionName` to the port of that name,
/// neither means every port. Istio also accepts `networking.istio.io`
/// ServiceEntry parents. Other parents (Gateways) are not ours. A parent that
/// does not exist is a warning, not an error: Gateway API reports it in status.
fn parent_ports(
    route: &NamespacedName,
    parents: &[ParentRef],
    by_key: &KeyIndex,
    targets: &[TargetState],
) -> Vec<ParentPort> {
    let route_ns = route.namespace.as_str();
    let mut done = HashSet::new();
    let mut out = Vec::new();
    for parent in parents {
        let kind = match (parent.group.as_deref(), parent.kind.as_deref()) {
            (Some("" | "core"), Some("Service")) => ServiceKind::Service,
            (Some("networking.istio.io"), Some("ServiceEntry")) => ServiceKind::ServiceEntry,
            _ => continue,
        };
        let key = key_in(route_ns, parent.namespace.as_deref(), &parent.name);
        let Some(indexes) = by_key.get(&(kind, key.clone())) else {
            warn!(%route, parent = %key, kind = kind.as_str(), "parent not found; route ignored for it");
            continue;
        };
        for &ti in indexes {
            let target = &targets[ti].target;
            let consumer = route_ns != target.key.namespace;
            let mut attached = false;
            for (pi, port) in target.ports.iter().enumerate() {
                if parent.port.is_some_and(|p| p != port.number) {
                    continue;
                }
                if let Some(section) = parent.section_name.as_deref() {
                    if port.name.as_deref() != Some(section) {
                        continue;
                    }
                }
                attached = true;
                if done.insert((ti, pi)) {
                    out.push(ParentPort {
                        target: ti,
                        port: pi,
                        consumer,
                    });
                }
            }
            if !attached {
                warn!(
                    %route, parent = %key, port = ?parent.port, section = ?parent.section_name,
                    "parentRef names no port of the Service; route ignored for it"
                );
            }
        }
    }
    out
}

/// Attaches every HTTPRoute's and GRPCRoute's rules and every TCPRoute to
/// the Service ports their `parentRefs` name and sorts each table. Returns
/// the sorted attachments.
pub(crate) fn attach(
    routes: &[RouteToAttach<'_>],
    tcp_routes: &[(&Sourced<TcpRoute>, Arc<CompiledTcpRoute>)],
    by_key: &KeyIndex,
    targets: &mut [TargetState],
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for route in routes {
        let rules = route.rules;
        let route_ns = route.key.namespace.as_str();
        for pp in parent_ports(route.key, route.parent_refs, by_key, targets) {
            let state = &mut targets[pp.target];
            let port = &state.target.ports[pp.port];
            attachments.push(Attachment {
                kind: route.kind,
                route: route.key.clone(),
                service: state.target.key.clone(),
                port: port.number,
                consumer: pp.consumer,
                note: port.is_tcp().then_some(HTTP_ON_TCP_PORT),
                conflicted: false,
            });
            let port_state = &mut state.ports[pp.port];
            let table = if pp.consumer {
                port_state
                    .consumers
                    .entry(route_ns.to_string())
                    .or_default()
            } else {
                &mut port_state.producer
            };
            push_rules(table, rules);
        }
    }
    for (route, compiled) in tcp_routes {
        let route_ns = route.key.namespace.as_str();
        for pp in parent_ports(&route.key, &route.object.spec.parent_refs, by_key, targets) {
            let state = &mut targets[pp.target];
            let port = &state.target.ports[pp.port];
            attachments.push(Attachment {
                kind: RouteKind::TcpRoute,
                route: route.key.clone(),
                service: state.target.key.clone(),
                port: port.number,
                consumer: pp.consumer,
                note: (!port.is_tcp()).then_some(TCP_ON_HTTP_PORT),
                conflicted: false,
            });
            let port_state = &mut state.ports[pp.port];
            let table = if pp.consumer {
                port_state
                    .tcp_consumers
                    .entry(route_ns.to_string())
                    .or_default()
            } else {
                &mut port_state.tcp_producer
            };
            table.routes.push(compiled.clone());
        }
    }
    let mut conflicted = HashSet::new();
    for state in targets.iter_mut() {
        let service = state.target.key.clone();
        for (port, port_state) in state.target.ports.iter().zip(&mut state.ports) {
            let mut tables: Vec<&mut RouteTable> = vec![&mut port_state.producer];
            tables.extend(port_state.consumers.values_mut());
            for table in tables {
                for route in drop_conflicting_kinds(table) {
                    conflicted.insert((route, service.clone(), port.number));
                }
                table.sort();
            }
            port_state.tcp_producer.sort();
            port_state
                .tcp_consumers
                .values_mut()
                .for_each(TcpRouteTable::sort);
        }
    }
    for a in &mut attachments {
        a.conflicted = conflicted.contains(&(a.route.clone(), a.service.clone(), a.port));
    }
    mark_shadowed(&mut attachments, targets);
    attachments.sort();
    attachments.dedup();
    attachments
}

/// Notes TCPRoutes that lose the conflict on a port to an older one.
fn mark_shadowed(attachments: &mut [Attachment], targets: &[TargetState]) {
    for a in attachments
        .iter_mut()
        .filter(|a| a.kind == RouteKind::TcpRoute)
    {
        let Some(state) = targets.iter().find(|t| t.target.key == a.service) else {
            continue;
        };
        let Some(pi) = state.target.ports.iter().position(|p| p.number == a.port) else {
            continue;
        };
        let port = &state.ports[pi];
        let table = if a.consumer {
            port.tcp_consumers.get(a.route.namespace.as_str())
        } else {
            Some(&port.tcp_producer)
        };
        let active = table.and_then(TcpRouteTable::active);
        if active.is_some_and(|r| r.route.as_str() != a.route.to_string()) {
            a.note = Some(TCP_SHADOWED);
        }
    }
}

/// Per GEP-1426: "If multiple routes with different types both bind to the
/// same Service and Port pair, only a single route type should be applied",
/// GRPCRoute before HTTPRoute; the other routes are Conflicted. Applied to
/// each audience's table (producer, and each consumer namespace). Returns
/// the HTTPRoutes dropped from `table`.
fn drop_conflicting_kinds(table: &mut RouteTable) -> Vec<NamespacedName> {
    let kind_of = |c: &Candidate| c.rule.route.kind();
    if !table
        .candidates
        .iter()
        .any(|c| kind_of(c) == RouteKind::GrpcRoute)
    {
        return Vec::new();
    }
    let mut dropped = Vec::new();
    table.candidates.retain(|c| {
        let keep = kind_of(c) != RouteKind::HttpRoute;
        if !keep {
            // A route name is `namespace/name`, as both are written.
            if let Some((ns, name)) = c.rule.route.as_str().split_once('/') {
                let key = NamespacedName::new(ns, name);
                // Reported as route status would be: in /config_dump and `check`.
                info!(route = %key, "HTTPRoute conflicts with a GRPCRoute on the same Service port; ignored there (GEP-1426)");
                dropped.push(key);
            }
        }
        keep
    });
    dropped.sort();
    dropped.dedup();
    dropped
}

fn push_rules(table: &mut RouteTable, rules: &[Arc<CompiledRule>]) {
    for rule in rules {
        for match_index in 0..rule.matches.len() {
            table.candidates.push(Candidate {
                rule: rule.clone(),
                match_index,
            });
        }
    }
}
