//! What the admin page and `/clusters` read from a snapshot: every cluster
//! (endpoint set) once, and per Service port the routes with their rules'
//! backends and weights, each with the live counters the compiler hung on it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::super::snapshot::Snapshot;
use super::super::table::rule::RouteTable;
use crate::telemetry::live::LiveCounters;
use crate::upstream::EndpointSet;

impl Snapshot {
    /// Every cluster of the snapshot (each Service port's own endpoints and
    /// its DestinationRule subsets) once, sorted by cluster name.
    pub fn clusters(&self) -> Vec<Arc<EndpointSet>> {
        let mut by_name: BTreeMap<String, Arc<EndpointSet>> = BTreeMap::new();
        for port in self.targets.iter().flat_map(|t| &t.ports) {
            for set in std::iter::once(&port.endpoints).chain(port.subsets.values()) {
                by_name
                    .entry(set.cluster().name.to_string())
                    .or_insert_with(|| set.clone());
            }
        }
        by_name.into_values().collect()
    }

    /// The live counters of every attached route, by `Kind namespace/name`.
    pub fn route_counters(&self) -> BTreeMap<String, Arc<LiveCounters>> {
        let mut out = BTreeMap::new();
        let tables = self
            .targets
            .iter()
            .flat_map(|t| &t.ports)
            .flat_map(|p| std::iter::once(&p.producer).chain(p.consumers.values()));
        for c in tables.flat_map(|t| &t.candidates) {
            if let Some(counters) = c.rule.counters.get() {
                let key = format!("{} {}", c.rule.route.kind().as_str(), c.rule.route.as_str());
                out.entry(key).or_insert_with(|| counters.clone());
            }
        }
        out
    }

    /// Per Service port, its routes (producer, then consumer ones by
    /// namespace) with each rule's backends: cluster and weight. Route keys
    /// (`Kind namespace/name`) are those of the live counters.
    pub fn live_ports(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for t in &self.targets {
            for (port, state) in t.target.ports.iter().zip(&t.ports) {
                let mut routes = live_table(&state.producer, None);
                for (ns, table) in &state.consumers {
                    routes.extend(live_table(table, Some(ns)));
                }
                out.push(json!({
                    "service": t.target.hostname,
                    "port": port.number,
                    "cluster": state.endpoints.cluster().name.to_string(),
                    "routes": routes,
                }));
            }
        }
        out
    }
}

/// The routes of one table in precedence order, one entry per route, its
/// rules' backends once per rule.
fn live_table(table: &RouteTable, consumer: Option<&str>) -> Vec<Value> {
    let mut routes: Vec<(String, Vec<usize>, Vec<Value>)> = Vec::new();
    for c in &table.candidates {
        let rule = &c.rule;
        let key = format!("{} {}", rule.route.kind().as_str(), rule.route.as_str());
        let at = match routes.iter().position(|(k, _, _)| *k == key) {
            Some(i) => i,
            None => {
                routes.push((key, Vec::new(), Vec::new()));
                routes.len() - 1
            }
        };
        let (_, seen, backends) = &mut routes[at];
        if seen.contains(&rule.route.rule_index()) {
            continue;
        }
        seen.push(rule.route.rule_index());
        for b in &rule.backends {
            backends.push(match &b.target {
                Ok((dest, eps)) => json!({
                    "rule": rule.route.rule_index(),
                    "backend": dest.authority(),
                    "cluster": eps.cluster().name.to_string(),
                    "weight": b.weight,
                }),
                Err(reason) => json!({
                    "rule": rule.route.rule_index(),
                    "weight": b.weight,
                    "invalid": reason,
                }),
            });
        }
    }
    routes
        .into_iter()
        .map(|(key, _, backends)| json!({"route": key, "consumerNamespace": consumer, "backends": backends}))
        .collect()
}
