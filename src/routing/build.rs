//! Compilation: resources → [`Snapshot`]. Builds destinations and endpoint
//! sets (via `discovery`), the host/VIP/endpoint indexes, validates and
//! compiles every HTTPRoute rule, attaches rules to Service ports (`attach`)
//! and sorts each port's route table by precedence.

mod attach;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tracing::warn;

use super::backend::{compile_backends, total_weight, BackendTarget, CompiledBackend, Resolve};
use super::cluster::ClusterPolicy;
use super::discovery::{self, key_in, PodIndex};
use super::endpoints::{EndpointSet, LoadRegistry};
use super::error::{ErrorSink, RouteConfigError};
use super::filters::{compile_filters, FilterCtx, RuleFilters};
use super::istio::{
    apply_destination_rules, attach_virtual_services, compile_virtual_services, HostIndex,
};
use super::matching::{compile_matches, CompiledMatch, RouteTable};
use super::route_policy::{compile_http_route_policy, RoutePolicy};
use super::service::{Destination, ServiceKind};
use super::{CompileOptions, PortState, RouteName, Snapshot, TargetState};
use crate::config::{
    BackendObjectReference, ConfigErrors, HttpRoute, HttpRouteFilter, HttpRouteRule,
    NamespacedName, ObjectRef, Resources, Sourced,
};
use crate::policy::ClusterName;

/// One HTTPRoute rule, compiled; shared by every Service port the route
/// attaches to.
#[derive(Debug, PartialEq)]
pub(crate) struct CompiledRule {
    /// Route `namespace/name` and rule index.
    pub route: RouteName,
    /// `metadata.creationTimestamp`, for precedence.
    pub created: Option<String>,
    pub matches: Vec<CompiledMatch>,
    pub filters: RuleFilters,
    pub backends: Vec<CompiledBackend>,
    pub total_weight: u64,
    /// Deadline, retries and faults of the rule.
    pub policy: Arc<RoutePolicy>,
}

/// Destinations by API identity; a ServiceEntry has one per host.
pub(crate) type KeyIndex = HashMap<(ServiceKind, NamespacedName), Vec<usize>>;

pub(super) fn compile(
    resources: Arc<Resources>,
    opts: &CompileOptions,
    load: &LoadRegistry,
) -> Result<Snapshot, ConfigErrors> {
    // Phase 1: destinations and their endpoints.
    let pods = PodIndex::new(&resources);
    let mut discovered = discovery::services(&resources, &pods, &opts.cluster_domain);
    discovered.extend(discovery::service_entries(&resources));
    let mut targets = Vec::with_capacity(discovered.len());
    for (index, d) in discovered.into_iter().enumerate() {
        let mut target = d.target;
        target.index = index;
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

    // Phase 3: validate and compile every route; collect all errors.
    let resolver = Resolver {
        targets: &targets,
        by_key: &by_key,
    };
    let compiled: Vec<Vec<Arc<CompiledRule>>> = resources
        .http_routes
        .iter()
        .map(|route| compile_route(route, &resolver, &mut errors))
        .collect();
    let virtual_services =
        compile_virtual_services(&resources, &targets, &istio_hosts, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }

    // Phase 4: attach to Service ports, sort by precedence, then append the
    // VirtualService rules in their own order.
    let mut attachments = attach::attach(&resources.http_routes, &compiled, &by_key, &mut targets);
    attachments.extend(attach_virtual_services(&virtual_services, &mut targets));
    Ok(Snapshot {
        resources,
        opts: opts.clone(),
        targets,
        hosts,
        vips,
        endpoint_addrs,
        attachments,
    })
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

struct Resolver<'a> {
    targets: &'a [TargetState],
    by_key: &'a KeyIndex,
}

impl Resolve for Resolver<'_> {
    fn resolve(
        &self,
        r: &BackendObjectReference,
        route_ns: &str,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget {
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        let (candidates, what): (Vec<usize>, String) = match (group, kind) {
            ("" | "core", "Service") => {
                let key = key_in(route_ns, r.namespace.as_deref(), &r.name);
                let found = self.by_key.get(&(ServiceKind::Service, key.clone()));
                (found.cloned().unwrap_or_default(), format!("Service {key}"))
            }
            // Istio's extension: a ServiceEntry host as a backend.
            ("networking.istio.io", "Hostname") => {
                let host = r.name.to_ascii_lowercase();
                let found = (0..self.targets.len())
                    .filter(|&i| {
                        let t = &self.targets[i].target;
                        t.kind == ServiceKind::ServiceEntry && t.hostname == host
                    })
                    .take(1)
                    .collect();
                (found, format!("Hostname {host}"))
            }
            _ => {
                warn!(%group, %kind, name = %r.name, "unsupported backend kind");
                return Err(format!("unsupported backend kind {group}/{kind}"));
            }
        };
        let Some(port) = r.port else {
            sink.push(
                format!("{field}.port"),
                RouteConfigError::MissingBackendPort {
                    kind: kind.to_string(),
                },
            );
            return Err(format!("backend {what} has no port"));
        };
        let Some(state) = candidates.first().and_then(|&i| self.targets.get(i)) else {
            warn!(backend = %what, "backend not found; requests to it get 500");
            return Err(format!("backend {what} not found"));
        };
        let target = &state.target;
        let Some(i) = target.ports.iter().position(|p| p.number == port) else {
            warn!(backend = %what, port, "backend port not found; requests to it get 500");
            return Err(format!("backend {what} has no port {port}"));
        };
        Ok((
            Destination {
                service: target.clone(),
                port: target.ports[i].clone(),
            },
            state.ports[i].endpoints.clone(),
        ))
    }
}

/// Compiles the rules of one route, pushing its errors. An empty `rules`
/// means, per the Gateway API, one rule matching `PathPrefix /` (with no
/// backends, so 500).
fn compile_route(
    route: &Sourced<HttpRoute>,
    resolver: &dyn Resolve,
    errors: &mut ConfigErrors,
) -> Vec<Arc<CompiledRule>> {
    let object = ObjectRef {
        kind: "HTTPRoute".to_string(),
        namespace: Some(route.key.namespace.clone()),
        name: route.key.name.clone(),
    };
    let mut sink = ErrorSink::new(&route.origin, object, errors);
    let ctx = FilterCtx {
        route_ns: &route.key.namespace,
        resolver,
        backend_level: false,
    };
    let default_rules = [HttpRouteRule::default()];
    let rules = match route.object.spec.rules.as_slice() {
        [] => &default_rules[..],
        rules => rules,
    };
    let created = route.object.metadata.creation_timestamp.clone();
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        let matches = compile_matches(&rule.matches, &field, &mut sink);
        let filters = compile_filters(&rule.filters, &field, &ctx, &mut sink);
        if filters.redirect.is_some() && filters.rewrite.is_some() {
            sink.push(
                format!("{field}.filters"),
                RouteConfigError::RedirectWithRewrite,
            );
        }
        if filters.redirect.is_some() && !rule.backend_refs.is_empty() {
            sink.push(
                format!("{field}.backendRefs"),
                RouteConfigError::RedirectWithBackends,
            );
        }
        let backends = compile_backends(&rule.backend_refs, &field, &ctx, &mut sink);
        check_prefix_replacement(rule, &field, &mut sink);
        out.push(Arc::new(CompiledRule {
            route: RouteName::new(&route.key, i),
            created: created.clone(),
            matches,
            filters,
            total_weight: total_weight(&backends),
            backends,
            policy: Arc::new(compile_http_route_policy(
                rule.timeouts.as_ref(),
                rule.retry.as_ref(),
                &field,
                &mut sink,
            )),
        }));
    }
    out
}

/// Per the Gateway API: "ReplacePrefixMatch is only compatible with a
/// PathPrefix HTTPRouteMatch". Reported at each offending path modifier.
fn check_prefix_replacement(rule: &HttpRouteRule, field: &str, sink: &mut ErrorSink<'_>) {
    let non_prefix = |rule: &HttpRouteRule| {
        rule.matches.iter().find_map(|m| {
            match m
                .path
                .as_ref()
                .and_then(|p| p.type_.as_deref())
                .unwrap_or("PathPrefix")
            {
                "PathPrefix" => None,
                "Exact" => Some("Exact"),
                "RegularExpression" => Some("RegularExpression"),
                _ => Some("an unknown path match type"),
            }
        })
    };
    let Some(found) = non_prefix(rule) else {
        return;
    };
    let mut check = |filters: &[HttpRouteFilter], at: String| {
        for (j, f) in filters.iter().enumerate() {
            let uses = |p: Option<&crate::config::HttpPathModifier>| {
                p.is_some_and(|p| p.type_ == "ReplacePrefixMatch")
            };
            if uses(f.request_redirect.as_ref().and_then(|r| r.path.as_ref())) {
                sink.push(
                    format!("{at}.filters[{j}].requestRedirect.path"),
                    RouteConfigError::PrefixRewriteWithoutPrefixMatch { found },
                );
            }
            if uses(f.url_rewrite.as_ref().and_then(|r| r.path.as_ref())) {
                sink.push(
                    format!("{at}.filters[{j}].urlRewrite.path"),
                    RouteConfigError::PrefixRewriteWithoutPrefixMatch { found },
                );
            }
        }
    };
    check(&rule.filters, field.to_string());
    for (k, b) in rule.backend_refs.iter().enumerate() {
        check(&b.filters, format!("{field}.backendRefs[{k}]"));
    }
}
