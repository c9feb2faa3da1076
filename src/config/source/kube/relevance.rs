//! Which watched objects belong in this waypoint's config.
//!
//! Per Istio ambient: a Service is served by the waypoint named in its
//! `istio.io/use-waypoint` label, or, when the Service has no such label, in
//! its Namespace's; `none` opts out. The waypoint lives in the Service's
//! namespace unless `istio.io/use-waypoint-namespace` (read from the same
//! object as `use-waypoint`) names another. Routes and policies are loaded
//! only when they target a bound Service (or this Gateway), so an invalid
//! HTTPRoute or TCPRoute of another waypoint never rejects this one's
//! config; ReferenceGrants are loaded whole. Services,
//! EndpointSlices, Pods, Namespaces and ServiceEntries are loaded whole:
//! backends may live anywhere, and pods' and namespaces'
//! `istio.io/dataplane-mode` labels decide whether to reach them over HBONE.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::kinds::WatchedKind;
use super::objects::ObjectMap;

pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";
pub const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Who this waypoint is.
#[derive(Debug, Clone)]
pub struct WaypointId<'a> {
    pub gateway_name: &'a str,
    pub namespace: &'a str,
    pub cluster_domain: &'a str,
    /// Istio's root namespace, where GatewayClass-wide policies live.
    pub root_namespace: &'a str,
    /// This waypoint's GatewayClass.
    pub gateway_class: &'a str,
}

/// The objects to hand to the loader, each with the name errors use for it
/// (`kube:HTTPRoute/shop/reviews`).
pub fn select(
    id: &WaypointId<'_>,
    maps: &BTreeMap<WatchedKind, ObjectMap>,
) -> Vec<(String, Value)> {
    let empty = ObjectMap::new(WatchedKind::Namespace);
    let map = |k: WatchedKind| maps.get(&k).unwrap_or(&empty);
    let namespaces = map(WatchedKind::Namespace);

    // Phase 1: bound Services (and ServiceEntries, which Istio binds the same way).
    let bound = |kind: WatchedKind| -> BTreeSet<(String, String)> {
        map(kind)
            .iter()
            .filter(|((ns, _), object)| {
                let ns_labels = namespaces.get("", ns).map(labels).unwrap_or_default();
                is_bound(id, ns, &labels(object), &ns_labels)
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    let bound_services = bound(WatchedKind::Service);
    let bound_entries = bound(WatchedKind::ServiceEntry);

    // Phase 2: routes (HTTPRoutes, GRPCRoutes) attached to a bound Service or to this Gateway; their
    // backends are hosts policies may be about.
    let mut hosts = Hosts::new(id.cluster_domain);
    for (ns, name) in &bound_services {
        hosts.add_service(ns, name);
    }
    for (ns, name) in &bound_entries {
        if let Some(entry) = map(WatchedKind::ServiceEntry).get(ns, name) {
            for host in strings(&entry["spec"]["hosts"]) {
                hosts.add_fqdn(&host);
            }
        }
    }
    let attached = |kind: WatchedKind| -> Vec<_> {
        map(kind)
            .iter()
            .filter(|((ns, _), route)| {
                array(&route["spec"]["parentRefs"])
                    .any(|parent| attaches_to(id, ns, parent, &bound_services, &bound_entries))
            })
            .collect()
    };
    let routes = attached(WatchedKind::HttpRoute);
    let tcp_routes = attached(WatchedKind::TcpRoute);
    let grpc_routes = attached(WatchedKind::GrpcRoute);
    for ((ns, _), route) in routes.iter().chain(&tcp_routes).chain(&grpc_routes) {
        for rule in array(&route["spec"]["rules"]) {
            for backend in array(&rule["backendRefs"]) {
                let group = backend["group"].as_str().unwrap_or("");
                let kind = backend["kind"].as_str().unwrap_or("Service");
                if (group.is_empty() || group == "core") && kind == "Service" {
                    if let Some(name) = backend["name"].as_str() {
                        let ns = backend["namespace"].as_str().unwrap_or(ns);
                        hosts.add_service(ns, name);
                    }
                }
            }
        }
    }

    // Phase 3: VirtualServices for bound Services or backends; their destinations join the
    // backends; then DestinationRules for any of them.
    let virtual_services: Vec<_> = map(WatchedKind::VirtualService)
        .iter()
        .filter(|((ns, _), vs)| strings(&vs["spec"]["hosts"]).any(|h| hosts.matches(ns, &h)))
        .collect();
    for ((ns, _), vs) in &virtual_services {
        for route in array(&vs["spec"]["http"]) {
            for destination in array(&route["route"]) {
                if let Some(host) = destination["destination"]["host"].as_str() {
                    hosts.add_host(ns, host);
                }
            }
        }
    }
    let destination_rules = map(WatchedKind::DestinationRule)
        .iter()
        .filter(|((ns, _), dr)| {
            dr["spec"]["host"]
                .as_str()
                .is_some_and(|h| hosts.matches(ns, h))
        });

    // Phase 4: WasmPlugins targeting this Gateway or a bound Service.
    let plugins = map(WatchedKind::WasmPlugin)
        .iter()
        .filter(|((ns, _), plugin)| {
            let spec = &plugin["spec"];
            let refs: Vec<&Value> = array(&spec["targetRefs"])
                .chain(spec.get("targetRef").filter(|r| r.is_object()))
                .collect();
            if refs.is_empty() {
                // No target: all of this waypoint's traffic, when in its namespace
                // (the file source's meaning of an untargeted plugin).
                return ns == id.namespace && spec["selector"].is_null();
            }
            refs.iter().any(|r| {
                let name = r["name"].as_str().unwrap_or("");
                match (
                    r["group"].as_str().unwrap_or(""),
                    r["kind"].as_str().unwrap_or(""),
                ) {
                    (GATEWAY_GROUP, "Gateway") => ns == id.namespace && name == id.gateway_name,
                    ("" | "core", "Service") => {
                        bound_services.contains(&(ns.clone(), name.to_string()))
                    }
                    _ => false,
                }
            })
        });

    // Phase 5: AuthorizationPolicies and RequestAuthentications that target this waypoint: its Gateway, a
    // bound Service or ServiceEntry, or (from the root namespace) its GatewayClass.
    // Selector and namespace-wide ones in this namespace come too, so
    // `/config_dump` can say why they are ignored.
    let targets_us = |ns: &String, policy: &Value| {
        let spec = &policy["spec"];
        let refs: Vec<&Value> = array(&spec["targetRefs"])
            .chain(spec.get("targetRef").filter(|r| r.is_object()))
            .collect();
        if refs.is_empty() {
            return ns == id.namespace;
        }
        refs.iter().any(|r| {
            let name = r["name"].as_str().unwrap_or("");
            let key = (ns.clone(), name.to_string());
            match (
                r["group"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or(""),
            ) {
                (GATEWAY_GROUP, "Gateway") => ns == id.namespace && name == id.gateway_name,
                (GATEWAY_GROUP, "GatewayClass") => {
                    ns == id.root_namespace && name == id.gateway_class
                }
                ("" | "core", "Service") => bound_services.contains(&key),
                ("networking.istio.io", "ServiceEntry") => bound_entries.contains(&key),
                _ => false,
            }
        })
    };
    let policies = map(WatchedKind::AuthorizationPolicy)
        .iter()
        .filter(|((ns, _), p)| targets_us(ns, p));
    let authentications = map(WatchedKind::RequestAuthentication)
        .iter()
        .filter(|((ns, _), p)| targets_us(ns, p));
    // Telemetry: the same targets, plus the root namespace's mesh-wide defaults.
    let telemetries = map(WatchedKind::Telemetry)
        .iter()
        .filter(|((ns, _), t)| targets_us(ns, t) || (ns == id.root_namespace && no_target_refs(t)));

    // Phase 6: Linkerd's policy objects in the namespaces of bound Services
    // (Servers select those Services' pods; the rest name Servers).
    let bound_namespaces: BTreeSet<&String> = bound_services.iter().map(|(ns, _)| ns).collect();
    let linkerd: Vec<(WatchedKind, _, _)> = WatchedKind::LINKERD
        .iter()
        .flat_map(|kind| {
            map(*kind)
                .iter()
                .filter(|((ns, _), _)| bound_namespaces.contains(ns))
                .map(move |(key, value)| (*kind, key, value))
        })
        .collect();

    let mut out = Vec::new();
    let mut push = |kind: WatchedKind, (ns, name): &(String, String), value: &Value| {
        let origin = if kind.namespaced() {
            format!("kube:{}/{ns}/{name}", kind.kind())
        } else {
            format!("kube:{}/{name}", kind.kind())
        };
        out.push((origin, value.clone()));
    };
    for kind in [
        WatchedKind::Namespace,
        WatchedKind::Service,
        WatchedKind::EndpointSlice,
        WatchedKind::Pod,
        WatchedKind::ServiceEntry,
    ] {
        for (key, value) in map(kind).iter() {
            push(kind, key, value);
        }
    }
    for (key, value) in routes {
        push(WatchedKind::HttpRoute, key, value);
    }
    for (key, value) in grpc_routes {
        push(WatchedKind::GrpcRoute, key, value);
    }
    for (key, value) in tcp_routes {
        push(WatchedKind::TcpRoute, key, value);
    }
    // Grants are few and may open any backend namespace: all of them.
    for (key, value) in map(WatchedKind::ReferenceGrant).iter() {
        push(WatchedKind::ReferenceGrant, key, value);
    }
    for (key, value) in virtual_services {
        push(WatchedKind::VirtualService, key, value);
    }
    for (key, value) in destination_rules {
        push(WatchedKind::DestinationRule, key, value);
    }
    for (key, value) in plugins {
        push(WatchedKind::WasmPlugin, key, value);
    }
    for (key, value) in policies {
        push(WatchedKind::AuthorizationPolicy, key, value);
    }
    for (key, value) in authentications {
        push(WatchedKind::RequestAuthentication, key, value);
    }
    for (key, value) in telemetries {
        push(WatchedKind::Telemetry, key, value);
    }
    for (kind, key, value) in linkerd {
        push(kind, key, value);
    }
    // Watched in the root namespace by name already.
    for (key, value) in map(WatchedKind::MeshConfigMap).iter() {
        push(WatchedKind::MeshConfigMap, key, value);
    }
    out
}

/// Whether a policy-like object applies namespace-wide (no `targetRef(s)`).
fn no_target_refs(object: &Value) -> bool {
    let spec = &object["spec"];
    array(&spec["targetRefs"]).next().is_none()
        && !spec.get("targetRef").is_some_and(|r| r.is_object())
}

/// Whether an object in namespace `ns` with `own` labels, in a namespace with
/// `ns_labels`, is served by this waypoint.
fn is_bound(
    id: &WaypointId<'_>,
    ns: &str,
    own: &BTreeMap<String, String>,
    ns_labels: &BTreeMap<String, String>,
) -> bool {
    let from = if own.contains_key(USE_WAYPOINT) {
        own
    } else {
        ns_labels
    };
    let Some(waypoint) = from.get(USE_WAYPOINT) else {
        return false;
    };
    let waypoint_ns = from
        .get(USE_WAYPOINT_NAMESPACE)
        .map(String::as_str)
        .unwrap_or(ns);
    waypoint != "none" && waypoint == id.gateway_name && waypoint_ns == id.namespace
}

/// Per GEP-1426 a `group: ""`, `kind: Service` parent attaches to a Service;
/// Istio also accepts ServiceEntry parents; a Gateway parent (the default
/// group and kind) naming this waypoint's Gateway attaches to all of it.
fn attaches_to(
    id: &WaypointId<'_>,
    route_ns: &str,
    parent: &Value,
    services: &BTreeSet<(String, String)>,
    entries: &BTreeSet<(String, String)>,
) -> bool {
    let Some(name) = parent["name"].as_str() else {
        return false;
    };
    let ns = parent["namespace"].as_str().unwrap_or(route_ns).to_string();
    let group = parent["group"].as_str().unwrap_or(GATEWAY_GROUP);
    let kind = parent["kind"].as_str().unwrap_or("Gateway");
    match (group, kind) {
        ("" | "core", "Service") => services.contains(&(ns, name.to_string())),
        ("networking.istio.io", "ServiceEntry") => entries.contains(&(ns, name.to_string())),
        (GATEWAY_GROUP, "Gateway") => ns == id.namespace && name == id.gateway_name,
        _ => false,
    }
}

/// Host names (FQDNs, possibly `*.` wildcards) policies may be about.
#[derive(Debug)]
struct Hosts<'a> {
    cluster_domain: &'a str,
    fqdns: BTreeSet<String>,
}

impl<'a> Hosts<'a> {
    fn new(cluster_domain: &'a str) -> Self {
        Self {
            cluster_domain,
            fqdns: BTreeSet::new(),
        }
    }

    fn add_service(&mut self, ns: &str, name: &str) {
        self.fqdns
            .insert(format!("{name}.{ns}.svc.{}", self.cluster_domain));
    }

    fn add_fqdn(&mut self, host: &str) {
        self.fqdns.insert(host.to_ascii_lowercase());
    }

    fn add_host(&mut self, ns: &str, host: &str) {
        let fqdn = self.expand(ns, host);
        self.fqdns.insert(fqdn);
    }

    /// Istio's short-name rule: `reviews` is `reviews.<ns>.svc.<domain>`,
    /// `reviews.shop` and `reviews.shop.svc` are completed likewise.
    fn expand(&self, ns: &str, host: &str) -> String {
        let host = host.to_ascii_lowercase();
        if host.starts_with('*') {
            return host;
        }
        match host.matches('.').count() {
            0 => format!("{host}.{ns}.svc.{}", self.cluster_domain),
            1 => format!("{host}.svc.{}", self.cluster_domain),
            2 if host.ends_with(".svc") => format!("{host}.{}", self.cluster_domain),
            _ => host,
        }
    }

    /// Whether `host` (as written in an object of namespace `ns`, maybe a
    /// wildcard) names one of the hosts.
    fn matches(&self, ns: &str, host: &str) -> bool {
        let host = self.expand(ns, host);
        if host == "*" {
            return !self.fqdns.is_empty();
        }
        match host.strip_prefix('*') {
            Some(suffix) => self.fqdns.iter().any(|f| f.ends_with(suffix)),
            None => self.fqdns.contains(&host),
        }
    }
}

fn labels(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn array(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

fn strings(value: &Value) -> impl Iterator<Item = String> + '_ {
    array(value).filter_map(|v| v.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests;
