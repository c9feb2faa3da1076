//! GAMMA attachment: which compiled rules apply to which Service port, and
//! for whom (producer vs consumer routes).

use std::collections::HashSet;
use std::sync::Arc;

use tracing::warn;

use super::resolve::KeyIndex;
use crate::config::{HttpRoute, Sourced};
use crate::routing::discovery::key_in;
use crate::routing::route_name::RouteKind;
use crate::routing::service::ServiceKind;
use crate::routing::snapshot::{Attachment, TargetState};
use crate::routing::table::rule::{Candidate, CompiledRule, RouteTable};

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
    routes: &[Sourced<HttpRoute>],
    compiled: &[Vec<Arc<CompiledRule>>],
    by_key: &KeyIndex,
    targets: &mut [TargetState],
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for (route, rules) in routes.iter().zip(compiled) {
        let route_ns = route.key.namespace.as_str();
        let mut done = HashSet::new();
        for parent in &route.object.spec.parent_refs {
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
                        kind: RouteKind::HttpRoute,
                        route: route.key.clone(),
                        service: target.key.clone(),
                        port: port.number,
                        consumer,
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
    for state in targets.iter_mut() {
        for port in &mut state.ports {
            port.producer.sort();
            port.consumers.values_mut().for_each(RouteTable::sort);
        }
    }
    attachments.sort();
    attachments.dedup();
    attachments
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
