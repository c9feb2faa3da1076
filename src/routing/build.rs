//! Compilation: resources → [`Snapshot`], in phases. Builds destinations
//! and endpoint sets (`discovery`), applies DestinationRules (`istio`),
//! builds the host/VIP/endpoint indexes, validates and compiles every
//! HTTPRoute and GRPCRoute (`compile`) and VirtualService (`istio`), then attaches rules to
//! Service ports and sorts each port's route table by precedence. This is the
//! only file that knows the order; the compilers never call back into it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::compile::{
    attach, compile_grpc_route, compile_route, compile_tcp_route, KeyIndex, ReferenceGrants,
    Resolver, RouteToAttach,
};
use super::discovery::{self, PodIndex};
use super::istio::{
    apply_destination_rules, attach_virtual_services, compile_virtual_services, HostIndex,
};
use super::options::CompileOptions;
use super::route_name::RouteKind;
use super::route_status::RouteStatus;
use super::service::ServiceKind;
use super::snapshot::{PortState, Snapshot, TargetState};
use super::table::rule::{CompiledRule, RouteTable};
use super::table::tcp::TcpRouteTable;
use crate::config::{self, ConfigErrors, NamespacedName, Resources};
use crate::upstream::{ClusterName, ClusterPolicy, EndpointSet, LoadRegistry};

impl Snapshot {
    /// Validates and compiles `resources`. Every invalid HTTPRoute field is
    /// reported (not just the first); references to missing Services are
    /// warnings, since Gateway API reports them in route status instead.
    pub fn compile(
        resources: Arc<config::Resources>,
        opts: &CompileOptions,
        load: &LoadRegistry,
    ) -> Result<Snapshot, config::ConfigErrors> {
        compile(resources, opts, load)
    }
}

fn compile(
    resources: Arc<Resources>,
    opts: &CompileOptions,
    load: &LoadRegistry,
) -> Result<Snapshot, ConfigErrors> {
    // Phase 1: destinations and their endpoints.
    let pods = PodIndex::new(&resources, &opts.trust_domain);
    let mut discovered = discovery::services(&resources, &pods, &opts.cluster_domain);
    discovered.extend(discovery::service_entries(&resources));
    let mut targets = Vec::with_capacity(discovered.len());
    for (index, d) in discovered.into_iter().enumerate() {
        let mut target = d.target;
        target.index = index;
        target.labels.cluster = opts.cluster_id.clone();
        let ports = d
            .endpoints
            .into_iter()
            .zip(&target.ports)
            .map(|(eps, port)| {
                let name = ClusterName::new(port.number, None, &target.hostname);
                let cluster = ClusterPolicy::plain(name, opts.lb);
                PortState {
                    endpoints: Arc::new(EndpointSet::with_cluster(eps, cluster, load)),
                    subsets: BTreeMap::new(),
                    producer: RouteTable::default(),
                    consumers: BTreeMap::new(),
                    tcp_producer: TcpRouteTable::default(),
                    tcp_consumers: BTreeMap::new(),
                }
            })
            .collect();
        targets.push(TargetState {
            target: Arc::new(target),
            ports,
        });
    }

    // Phase 1b: DestinationRules give ports their cluster policy and add
    // subsets (before anything resolves a backend to an endpoint set).
    let mut errors = ConfigErrors::default();
    let istio_hosts = HostIndex::new(&targets, &opts.cluster_domain);
    apply_destination_rules(
        &resources,
        &istio_hosts,
        &mut targets,
        opts,
        load,
        &mut errors,
    );
    load.prune();

    // Phase 2: lookup indexes.
    let mut by_key: KeyIndex = HashMap::new();
    let mut hosts = HashMap::new();
    let mut vips = HashMap::new();
    let mut endpoint_addrs = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let target = &t.target;
        by_key
            .entry((target.kind, target.key.clone()))
            .or_default()
            .push(i);
        for name in host_names(target.kind, &target.key, &target.hostname, opts) {
            hosts.entry(name).or_insert(i);
        }
        for ip in &target.addresses {
            vips.entry(*ip).or_insert(i);
        }
        for (port, state) in target.ports.iter().zip(&t.ports) {
            for ep in state.endpoints.endpoints() {
                endpoint_addrs.entry(ep.addr).or_insert((i, port.number));
            }
        }
    }

    // Phase 3: validate and compile every route; collect all errors. Every
    // route kind resolves its backendRefs through the one resolver, which
    // checks ReferenceGrants and keeps what did not resolve.
    let grants = ReferenceGrants::new(&resources.reference_grants);
    let resolver = Resolver {
        targets: &targets,
        by_key: &by_key,
        grants: &grants,
        unresolved: Default::default(),
    };
    let compiled: Vec<Vec<Arc<CompiledRule>>> = resources
        .http_routes
        .iter()
        .map(|route| compile_route(route, &resolver, &mut errors))
        .collect();
    let tcp_routes: Vec<_> = resources
        .tcp_routes
        .iter()
        .filter_map(|route| Some((route, compile_tcp_route(route, &resolver, &mut errors)?)))
        .collect();
    let compiled_grpc: Vec<Vec<Arc<CompiledRule>>> = resources
        .grpc_routes
        .iter()
        .map(|route| compile_grpc_route(route, &resolver, &mut errors))
        .collect();
    let virtual_services =
        compile_virtual_services(&resources, &targets, &istio_hosts, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let route_status = route_status(&resources, resolver.unresolved.into_inner());

    // Phase 4: attach to Service ports, sort by precedence, then append the
    // VirtualService rules in their own order.
    let http = resources
        .http_routes
        .iter()
        .zip(&compiled)
        .map(|(r, rules)| RouteToAttach {
            key: &r.key,
            parent_refs: &r.object.spec.parent_refs,
            kind: RouteKind::HttpRoute,
            rules,
        });
    let grpc = resources
        .grpc_routes
        .iter()
        .zip(&compiled_grpc)
        .map(|(r, rules)| RouteToAttach {
            key: &r.key,
            parent_refs: &r.object.spec.parent_refs,
            kind: RouteKind::GrpcRoute,
            rules,
        });
    let routes: Vec<RouteToAttach<'_>> = http.chain(grpc).collect();
    let mut attachments = attach(&routes, &tcp_routes, &by_key, &mut targets);
    attachments.extend(attach_virtual_services(&virtual_services, &mut targets));
    attach_live_counters(&targets, load);
    Ok(Snapshot {
        resources,
        opts: opts.clone(),
        targets,
        hosts,
        vips,
        endpoint_addrs,
        attachments,
        route_status,
    })
}

/// Gives every attached rule its route's live counters, reused by route name
/// from the registry so a reload keeps them, then forgets the counters of
/// routes and clusters that left the config.
fn attach_live_counters(targets: &[TargetState], load: &LoadRegistry) {
    let tables = targets
        .iter()
        .flat_map(|t| &t.ports)
        .flat_map(|p| std::iter::once(&p.producer).chain(p.consumers.values()));
    for table in tables {
        for candidate in &table.candidates {
            let rule = &candidate.rule;
            if rule.counters.get().is_none() {
                let key = format!("{} {}", rule.route.kind().as_str(), rule.route.as_str());
                rule.counters.set(load.live.route(&key));
            }
        }
    }
    load.live.prune();
}

/// Every HTTPRoute and TCPRoute with the references of it that did not
/// resolve; routes of other kinds appear when one of their references did
/// not. Sorted by kind, then `namespace/name`.
fn route_status(
    resources: &Resources,
    unresolved: Vec<(
        RouteKind,
        NamespacedName,
        super::route_status::UnresolvedRef,
    )>,
) -> Vec<RouteStatus> {
    let mut by_route: BTreeMap<(RouteKind, NamespacedName), Vec<_>> = BTreeMap::new();
    let known = resources
        .http_routes
        .iter()
        .map(|r| (RouteKind::HttpRoute, r.key.clone()))
        .chain(
            resources
                .tcp_routes
                .iter()
                .map(|r| (RouteKind::TcpRoute, r.key.clone())),
        )
        .chain(
            resources
                .grpc_routes
                .iter()
                .map(|r| (RouteKind::GrpcRoute, r.key.clone())),
        );
    for key in known {
        by_route.entry(key).or_default();
    }
    for (kind, key, u) in unresolved {
        by_route.entry((kind, key)).or_default().push(u);
    }
    by_route
        .into_iter()
        .map(|((kind, route), unresolved)| RouteStatus {
            kind,
            route,
            unresolved,
        })
        .collect()
}

/// Every name a Host header may use for a destination (lower case).
fn host_names(
    kind: ServiceKind,
    key: &NamespacedName,
    hostname: &str,
    opts: &CompileOptions,
) -> Vec<String> {
    match kind {
        ServiceKind::ServiceEntry => vec![hostname.to_ascii_lowercase()],
        ServiceKind::Service => {
            let (name, ns) = (&key.name, &key.namespace);
            let mut names = vec![
                hostname.to_ascii_lowercase(),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}"),
            ];
            if *ns == opts.namespace {
                names.push(name.clone());
            }
            names
        }
    }
}
