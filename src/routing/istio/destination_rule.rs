//! DestinationRule → clusters. The rule for a host (resolved relative to
//! the DestinationRule's namespace) gives every port of that Service a
//! [`ClusterPolicy`] — so HTTPRoute backends and the no-route path get its
//! limits, LB and outlier detection too, as in Istio — and compiles one
//! endpoint set per (port, subset), named `outbound|port|subset|host`.
//!
//! Levels merge as Istio merges them: `trafficPolicy`, then its
//! `portLevelSettings` for the port, then the subset's `trafficPolicy` and
//! its `portLevelSettings`; each of `loadBalancer`, `connectionPool`,
//! `outlierDetection` is replaced whole by the most specific level that sets
//! it. Subsets select endpoints by labels (the Pod's, or a ServiceEntry
//! endpoint's). When several DestinationRules name one host, the oldest
//! (then `namespace/name`) applies and the others are ignored with a
//! warning.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tracing::warn;

use super::error::IstioConfigError;
use super::hosts::HostIndex;
use super::traffic_policy::{compile_traffic_policy, CompiledTrafficPolicy};
use crate::config::{
    ConfigErrors, DestinationRule, ObjectRef, PortTrafficPolicy, Resources, Sourced, TrafficPolicy,
};
use crate::routing::error::ErrorSink;
use crate::routing::options::CompileOptions;
use crate::routing::snapshot::TargetState;
use crate::upstream::{
    ClusterName, ClusterPolicy, Endpoint, EndpointSet, LoadRegistry, PolicyRegistry,
};

/// One level (top or subset): its own traffic policy and per-port overrides.
struct Level {
    own: CompiledTrafficPolicy,
    ports: HashMap<u16, CompiledTrafficPolicy>,
}

impl Level {
    fn compile(tp: Option<&TrafficPolicy>, field: &str, sink: &mut ErrorSink<'_>) -> Level {
        let Some(tp) = tp else {
            return Level {
                own: CompiledTrafficPolicy::default(),
                ports: HashMap::new(),
            };
        };
        let own = compile_traffic_policy(
            tp.load_balancer.as_ref(),
            tp.connection_pool.as_ref(),
            tp.outlier_detection.as_ref(),
            field,
            sink,
        );
        let mut ports = HashMap::new();
        for (k, p) in tp.port_level_settings.iter().enumerate() {
            let at = format!("{field}.portLevelSettings[{k}]");
            let PortTrafficPolicy {
                port,
                load_balancer,
                connection_pool,
                outlier_detection,
                ..
            } = p;
            let policy = compile_traffic_policy(
                load_balancer.as_ref(),
                connection_pool.as_ref(),
                outlier_detection.as_ref(),
                &at,
                sink,
            );
            match port.as_ref().map(|p| p.number).filter(|n| *n != 0) {
                Some(n) => {
                    ports.insert(n, policy);
                }
                None => sink.push_err(
                    format!("{at}.port"),
                    IstioConfigError::Missing { what: "port" },
                ),
            }
        }
        Level { own, ports }
    }

    /// This level for `port`, on top of `base`.
    fn for_port(&self, base: &CompiledTrafficPolicy, port: u16) -> CompiledTrafficPolicy {
        let s = base.merged(&self.own);
        match self.ports.get(&port) {
            Some(p) => s.merged(p),
            None => s,
        }
    }
}

/// Applies every DestinationRule: replaces the endpoint sets of the ports
/// of its host with ones carrying the rule's policy, and adds the subsets.
pub(crate) fn apply_destination_rules(
    resources: &Resources,
    hosts: &HostIndex<'_>,
    targets: &mut [TargetState],
    opts: &CompileOptions,
    load: &LoadRegistry,
    errors: &mut ConfigErrors,
) {
    let mut order: Vec<&Sourced<DestinationRule>> = resources.destination_rules.iter().collect();
    order.sort_by(|a, b| {
        let created = |d: &Sourced<DestinationRule>| d.object.metadata.creation_timestamp.clone();
        match (created(a), created(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.key.cmp(&b.key))
    });
    let mut applied: HashSet<usize> = HashSet::new();
    for dr in order {
        let object = ObjectRef {
            kind: "DestinationRule".to_string(),
            namespace: Some(dr.key.namespace.clone()),
            name: dr.key.name.clone(),
        };
        let mut sink = ErrorSink::new(&dr.origin, object, errors);
        let spec = &dr.object.spec;
        if spec.host.trim().is_empty() {
            sink.push_err("spec.host", IstioConfigError::Missing { what: "host" });
        }
        let top = Level::compile(
            spec.traffic_policy.as_ref(),
            "spec.trafficPolicy",
            &mut sink,
        );
        let mut subsets = Vec::new();
        let mut names = HashSet::new();
        for (i, s) in spec.subsets.iter().enumerate() {
            let field = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                sink.push_err(
                    format!("{field}.name"),
                    IstioConfigError::Missing { what: "name" },
                );
            } else if !names.insert(s.name.as_str()) {
                sink.push_err(
                    format!("{field}.name"),
                    IstioConfigError::DuplicateSubset(s.name.clone()),
                );
            }
            let level = Level::compile(
                s.traffic_policy.as_ref(),
                &format!("{field}.trafficPolicy"),
                &mut sink,
            );
            subsets.push((i, s, level));
        }
        let Some(ti) = hosts.resolve(&spec.host, &dr.key.namespace) else {
            if !spec.host.trim().is_empty() {
                warn!(destination_rule = %dr.key, host = %spec.host, "host names no known Service; ignored");
            }
            continue;
        };
        if !applied.insert(ti) {
            warn!(destination_rule = %dr.key, host = %spec.host, "an older DestinationRule already applies to this host; ignored");
            continue;
        }
        let state = &mut targets[ti];
        let target = state.target.clone();
        let total: usize = state.ports.iter().map(|p| p.endpoints.len()).sum();
        let mut selected = vec![0usize; subsets.len()];
        for (pi, port) in target.ports.iter().enumerate() {
            let port_state = &mut state.ports[pi];
            let endpoints: Vec<Endpoint> = port_state
                .endpoints
                .endpoints()
                .iter()
                .map(|e| Endpoint::clone(e))
                .collect();
            let base = top.for_port(&CompiledTrafficPolicy::default(), port.number);
            let name = ClusterName::new(port.number, None, &target.hostname);
            let cluster = cluster_policy(name, &base, opts, &load.policies);
            port_state.endpoints =
                Arc::new(EndpointSet::with_cluster(endpoints.clone(), cluster, load));
            let mut sets = BTreeMap::new();
            for (k, (_, subset, level)) in subsets.iter().enumerate() {
                let eps: Vec<Endpoint> = endpoints
                    .iter()
                    .filter(|e| {
                        subset
                            .labels
                            .iter()
                            .all(|(k, v)| e.labels.get(k) == Some(v))
                    })
                    .cloned()
                    .collect();
                selected[k] += eps.len();
                let policy = level.for_port(&base, port.number);
                let name = ClusterName::new(port.number, Some(&subset.name), &target.hostname);
                let cluster = cluster_policy(name, &policy, opts, &load.policies);
                sets.insert(
                    subset.name.clone(),
                    Arc::new(EndpointSet::with_cluster(eps, cluster, load)),
                );
            }
            port_state.subsets = sets;
        }
        // Per the issue, a subset that selects nothing is a contradiction —
        // unless the Service has no endpoints at all (scaled to zero), which
        // is a state, not a config mistake.
        for (k, (i, subset, _)) in subsets.iter().enumerate() {
            if selected[k] > 0 {
                continue;
            }
            if total == 0 {
                warn!(destination_rule = %dr.key, subset = %subset.name, "host has no endpoints; subset is empty");
                continue;
            }
            sink.push_err(
                format!("spec.subsets[{i}].labels"),
                IstioConfigError::EmptySubset {
                    name: subset.name.clone(),
                    host: target.hostname.clone(),
                    endpoints: total,
                },
            );
        }
    }
}

/// The cluster for `policy`: runtime state comes from the process-wide
/// registry so pool counters and ejections survive reloads.
fn cluster_policy(
    name: ClusterName,
    policy: &CompiledTrafficPolicy,
    opts: &CompileOptions,
    registry: &PolicyRegistry,
) -> ClusterPolicy {
    let mut c = ClusterPolicy::plain(name, opts.lb);
    if let Some(lb) = &policy.lb {
        if let Some(choice) = &lb.choice {
            c.lb = choice.clone();
        }
    }
    if let Some(pool) = &policy.pool {
        let limited = pool.max_connections.is_some()
            || pool.http1_max_pending_requests.is_some()
            || pool.http2_max_requests.is_some()
            || pool.max_retries.is_some();
        if limited {
            c.limiter = Some(registry.limiter(&c.name, pool));
        }
        c.connect_timeout = pool.connect_timeout;
        c.idle_timeout = pool.idle_timeout;
        c.max_requests_per_connection = pool.max_requests_per_connection;
        c.max_connection_duration = pool.max_connection_duration;
    }
    if let Some(o) = &policy.outlier {
        c.outlier = Some(registry.detector(&c.name, o));
    }
    // Istio applies locality LB only with outlier detection (it needs
    // health to fail over), unless `localityLbSetting.enabled` says so.
    let enabled = policy.lb.as_ref().and_then(|l| l.locality_enabled);
    c.locality_aware = match enabled {
        Some(false) => false,
        Some(true) => true,
        None => c.outlier.is_some(),
    };
    c
}

#[cfg(test)]
mod tests;
