//! GAMMA attachment: which compiled rules apply to which Service port, and
//! for whom (producer vs consumer routes); and GEP-1426's rule for route
//! kinds sharing a Service port (a GRPCRoute wins over an HTTPRoute).

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use super::resolve::KeyIndex;
use crate::config::{NamespacedName, ParentRef};
use crate::routing::discovery::key_in;
use crate::routing::route_name::RouteKind;
use crate::routing::service::ServiceKind;
use crate::routing::snapshot::{Attachment, TargetState};
use crate::routing::table::rule::{Candidate, CompiledRule, RouteTable};

/// One route to attach: its identity, `parentRefs`, kind and compiled rules.
pub(crate) struct RouteToAttach<'a> {
    pub key: &'a NamespacedName,
    pub parent_refs: &'a [ParentRef],
    pub kind: RouteKind,
    pub rules: &'a [Arc<CompiledRule>],
}

/// Attaches every route's rules to the Service ports its `parentRefs` name
/// and sorts each table by precedence. Returns the sorted attachments.
///
/// Per GEP-1426: a parentRef of `group: ""` (or `core`) and `kind: Service`
/// attaches to that Service (namespace defaults to the route's); `port`
/// restricts it to that Service port, `sectionName` to the port of that name,
/// neither means every port. Istio also accepts `networking.istio.io`
/// ServiceEntry parents. Other parents (Gateways) are not ours. A parent that
/// does not exist is a warning, not an error: Gateway API reports it in status.
pub(crate) fn attach(
    routes: &[RouteToAttach<'_>],
    by_key: &KeyIndex,
    targets: &mut [TargetState],
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for route in routes {
        let rules = route.rules;
        let route_ns = route.key.namespace.as_str();
        let mut done = HashSet::new();
        for parent in route.parent_refs {
            let kind = match (parent.group.as_deref(), parent.kind.as_deref()) {
                (Some("" | "core"), Some("Service")) => ServiceKind::Service,
                (Some("networking.istio.io"), Some("ServiceEntry")) => ServiceKind::ServiceEntry,
                _ => continue,
            };
            let key = key_in(route_ns, parent.namespace.as_deref(), &parent.name);
            let Some(indexes) = by_key.get(&(kind, key.clone())) else {
                warn!(route = %route.key, parent = %key, kind = kind.as_str(), "parent not found; route ignored for it");
                continue;
            };
            for &ti in indexes {
                let state = &mut targets[ti];
                let target = state.target.clone();
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
                    if !done.insert((ti, pi)) {
                        continue;
                    }
                    attachments.push(Attachment {
                        kind: route.kind,
                        route: route.key.clone(),
                        service: target.key.clone(),
                        port: port.number,
                        consumer,
                        conflicted: false,
                    });
                    let port_state = &mut state.ports[pi];
                    let table = if consumer {
                        port_state
                            .consumers
                            .entry(route_ns.to_string())
                            .or_default()
                    } else {
                        &mut port_state.producer
                    };
                    push_rules(table, rules);
                }
                if !attached {
                    warn!(
                        route = %route.key, parent = %key, port = ?parent.port, section = ?parent.section_name,
                        "parentRef names no port of the Service; route ignored for it"
                    );
                }
            }
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
        }
    }
    for a in &mut attachments {
        a.conflicted = conflicted.contains(&(a.route.clone(), a.service.clone(), a.port));
    }
    attachments.sort();
    attachments.dedup();
    attachments
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
