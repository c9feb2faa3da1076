//! VirtualService → route candidates. Per the Istio docs, `hosts` name the
//! Services the rules apply to (short names resolve in the VirtualService's
//! own namespace) and `http[]` routes "are evaluated in order; the first
//! matching rule wins" — so unlike HTTPRoute rules they are not sorted by
//! precedence. When an HTTPRoute also targets the Service, its rules come
//! first (sorted as Gateway API says), then every VirtualService's, ordered
//! by creation time then `namespace/name` (Istio's order when it merges).
//!
//! A destination's port may depend on the port the request was sent to
//! ("if a service exposes only a single port it is not required to
//! explicitly select the port"; otherwise we take the request's Service
//! port), so rules are compiled per request port.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tracing::{debug, warn};

use super::error::IstioConfigError;
use super::hosts::HostIndex;
use super::vs_local::{compile_cors_policy, compile_direct_response};
use super::vs_match::compile_vs_matches;
use super::vs_policy::{compile_vs_policy, percentage};
use crate::config::{
    ConfigErrors, Destination as VsDestination, HeaderOperations, Headers, NamespacedName,
    ObjectRef, Resources, Sourced, VirtualService, VsHttpRoute,
};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::route_name::{RouteKind, RouteName};
use crate::routing::service::DestinationPort;
use crate::routing::snapshot::{Attachment, TargetState};
use crate::routing::table::backend::{total_weight, BackendTarget, CompiledBackend};
use crate::routing::table::filters::{
    DerivePort, MirrorFilter, PathModifier, RedirectFilter, RuleFilters, UrlRewriteFilter,
};
use crate::routing::table::headers::HeaderModifier;
use crate::routing::table::regex_rewrite::CompiledRegexRewrite;
use crate::routing::table::rule::{Candidate, CompiledRule};

/// One VirtualService, compiled for every request port of its hosts.
pub(crate) struct CompiledVs {
    key: NamespacedName,
    /// Target indexes of the resolved `hosts`.
    hosts: Vec<usize>,
    /// Request (Service) port → the rules as compiled for it.
    rules: BTreeMap<u16, Vec<Arc<CompiledRule>>>,
}

/// Compiles every VirtualService bound to the mesh, in merge order.
pub(crate) fn compile_virtual_services(
    resources: &Resources,
    targets: &[TargetState],
    hosts: &HostIndex<'_>,
    errors: &mut ConfigErrors,
) -> Vec<CompiledVs> {
    let mut order: Vec<&Sourced<VirtualService>> = resources.virtual_services.iter().collect();
    order.sort_by(|a, b| {
        let created = |v: &Sourced<VirtualService>| v.object.metadata.creation_timestamp.clone();
        match (created(a), created(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
        .then_with(|| a.key.cmp(&b.key))
    });
    order
        .into_iter()
        .filter_map(|vs| compile_one(vs, targets, hosts, errors))
        .collect()
}

fn compile_one(
    vs: &Sourced<VirtualService>,
    targets: &[TargetState],
    hosts: &HostIndex<'_>,
    errors: &mut ConfigErrors,
) -> Option<CompiledVs> {
    let spec = &vs.object.spec;
    // Istio: "The reserved word mesh is used to imply all the sidecars in
    // the mesh. When this field is omitted, the default gateway (mesh) will
    // be used".
    if !spec.gateways.is_empty() && !spec.gateways.iter().any(|g| g == "mesh") {
        debug!(virtual_service = %vs.key, "bound to gateways only; not for the waypoint");
        return None;
    }
    let object = ObjectRef {
        kind: "VirtualService".to_string(),
        namespace: Some(vs.key.namespace.clone()),
        name: vs.key.name.clone(),
    };
    let mut sink = ErrorSink::new(&vs.origin, object.clone(), errors);
    if spec.hosts.is_empty() {
        sink.push_err("spec.hosts", IstioConfigError::Missing { what: "hosts" });
    }
    for (what, present) in [("tcp", spec.tcp.is_some()), ("tls", spec.tls.is_some())] {
        if present {
            warn!(virtual_service = %vs.key, section = what, "not supported by the waypoint; ignored");
        }
    }
    let mut resolved = Vec::new();
    for host in &spec.hosts {
        match hosts.resolve(host, &vs.key.namespace) {
            Some(i) if !resolved.contains(&i) => resolved.push(i),
            Some(_) => {}
            None => {
                warn!(virtual_service = %vs.key, %host, "host names no known Service; ignored")
            }
        }
    }
    let mut ports: Vec<u16> = resolved
        .iter()
        .flat_map(|&i| targets[i].target.ports.iter().map(|p| p.number))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let ctx = RuleCtx { vs, targets, hosts };
    // Validate once with the real sink (port 0 when no host resolved), then
    // compile for the other ports with errors discarded: they repeat.
    let first = ports.first().copied().unwrap_or(0);
    let mut rules = BTreeMap::new();
    rules.insert(first, ctx.compile_rules(first, &mut sink));
    for &port in ports.iter().skip(1) {
        let mut scratch = ConfigErrors::default();
        let mut quiet = ErrorSink::new(&vs.origin, object.clone(), &mut scratch);
        rules.insert(port, ctx.compile_rules(port, &mut quiet));
    }
    Some(CompiledVs {
        key: vs.key.clone(),
        hosts: resolved,
        rules,
    })
}

struct RuleCtx<'a> {
    vs: &'a Sourced<VirtualService>,
    targets: &'a [TargetState],
    hosts: &'a HostIndex<'a>,
}

impl RuleCtx<'_> {
    fn compile_rules(&self, port: u16, sink: &mut ErrorSink<'_>) -> Vec<Arc<CompiledRule>> {
        let created = self.vs.object.metadata.creation_timestamp.clone();
        let mut out = Vec::new();
        for (i, http) in self.vs.object.spec.http.iter().enumerate() {
            let field = format!("spec.http[{i}]");
            if let Some(rule) = self.compile_rule(http, &field, port, sink) {
                out.push(Arc::new(CompiledRule {
                    route: RouteName::virtual_service(&self.vs.key, i),
                    created: created.clone(),
                    ..rule
                }));
            }
        }
        out
    }

    fn compile_rule(
        &self,
        http: &VsHttpRoute,
        field: &str,
        port: u16,
        sink: &mut ErrorSink<'_>,
    ) -> Option<CompiledRule> {
        // delegate changes where a request goes; serving such a route
        // differently from Istio would be worse than refusing.
        if http.delegate.is_some() {
            sink.push_err(
                format!("{field}.delegate"),
                IstioConfigError::Unsupported { what: "delegate" },
            );
        }
        let matches = compile_vs_matches(&http.matches, field, sink);
        let has_action = http.direct_response.is_some() || http.delegate.is_some();
        // Istio: exactly one of route, redirect, directResponse.
        let actions = [
            !http.route.is_empty(),
            http.redirect.is_some(),
            http.direct_response.is_some(),
        ];
        match actions.iter().filter(|a| **a).count() {
            0 if !has_action => sink.push_err(field, IstioConfigError::NoAction),
            0 | 1 => {}
            _ => sink.push_err(field, IstioConfigError::RouteAndRedirect),
        }
        let filters = RuleFilters {
            request_headers: header_ops(http.headers.as_ref(), true, field, sink),
            response_headers: header_ops(http.headers.as_ref(), false, field, sink),
            redirect: self.redirect(http, field, sink),
            rewrite: self.rewrite(http, field, sink),
            mirrors: self.mirrors(http, field, port, sink),
            cors: http
                .cors_policy
                .as_ref()
                .and_then(|c| compile_cors_policy(c, field, sink)),
            direct_response: http
                .direct_response
                .as_ref()
                .and_then(|d| compile_direct_response(d, field, sink)),
        };
        let backends = self.backends(http, field, port, sink);
        let policy = compile_vs_policy(http, field, sink);
        Some(CompiledRule {
            route: RouteName::virtual_service(&self.vs.key, 0),
            created: None,
            matches: matches?,
            filters,
            total_weight: total_weight(&backends),
            backends,
            policy: Arc::new(policy),
            counters: Default::default(),
        })
    }

    /// `route[]`: weights 0–100; with several destinations they must sum
    /// to 100 (Istio's validation), a single one takes all traffic.
    fn backends(
        &self,
        http: &VsHttpRoute,
        field: &str,
        port: u16,
        sink: &mut ErrorSink<'_>,
    ) -> Vec<CompiledBackend> {
        let several = http.route.len() > 1;
        let mut sum = 0;
        let mut any_weight = false;
        let mut out = Vec::new();
        for (j, d) in http.route.iter().enumerate() {
            let field = format!("{field}.route[{j}]");
            let weight = match d.weight {
                Some(w) if !(0..=100).contains(&w) => {
                    sink.push_err(
                        format!("{field}.weight"),
                        IstioConfigError::InvalidWeight(w),
                    );
                    0
                }
                Some(w) => {
                    any_weight = true;
                    w
                }
                None => 0,
            };
            sum += weight;
            let target = self.resolve(&d.destination, &format!("{field}.destination"), port, sink);
            let own = d.headers.as_ref();
            out.push(CompiledBackend {
                weight: u32::try_from(weight).unwrap_or(0),
                target,
                filters: RuleFilters {
                    request_headers: header_ops(own, true, &field, sink),
                    response_headers: header_ops(own, false, &field, sink),
                    ..RuleFilters::default()
                },
            });
        }
        if several && any_weight && sum != 100 {
            sink.push_err(format!("{field}.route"), IstioConfigError::WeightSum(sum));
        }
        if !several || !any_weight {
            // One destination takes everything; several without weights
            // share equally.
            out.iter_mut().for_each(|b| b.weight = 1);
        }
        out
    }

    /// A destination → its port's (or subset's) endpoints. An unknown host
    /// or port answers 500 (like a missing backendRef); an unknown subset is
    /// a config error (Istio would answer 503 NR at run time).
    fn resolve(
        &self,
        d: &VsDestination,
        field: &str,
        port: u16,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget {
        if d.host.trim().is_empty() {
            sink.push_err(
                format!("{field}.host"),
                IstioConfigError::Missing { what: "host" },
            );
            return Err("destination has no host".to_string());
        }
        let Some(state) = self
            .hosts
            .resolve(&d.host, &self.vs.key.namespace)
            .and_then(|i| self.targets.get(i))
        else {
            warn!(virtual_service = %self.vs.key, host = %d.host, "destination host not found; requests to it get 500");
            return Err(format!("destination host {} not found", d.host));
        };
        let target = &state.target;
        let pi = match d.port.as_ref().map(|p| p.number) {
            Some(n) => target.ports.iter().position(|p| p.number == n),
            None if target.ports.len() == 1 => Some(0),
            None => target.ports.iter().position(|p| p.number == port),
        };
        let Some(pi) = pi else {
            return Err(format!(
                "destination {} has no port {}",
                target.hostname,
                d.port.as_ref().map_or(port, |p| p.number)
            ));
        };
        let port_state = &state.ports[pi];
        let endpoints = match d.subset.as_deref() {
            None => port_state.endpoints.clone(),
            Some(subset) => match port_state.subsets.get(subset) {
                Some(set) => set.clone(),
                None => {
                    sink.push_err(
                        format!("{field}.subset"),
                        IstioConfigError::UnknownSubset {
                            subset: subset.to_string(),
                            host: target.hostname.clone(),
                        },
                    );
                    return Err(format!(
                        "subset {subset} of {} not defined",
                        target.hostname
                    ));
                }
            },
        };
        Ok((
            DestinationPort {
                service: target.clone(),
                port: target.ports[pi].clone(),
            },
            endpoints,
        ))
    }

    /// `redirect`: `uri` replaces the whole path, `redirectCode` defaults
    /// to 301.
    fn redirect(
        &self,
        http: &VsHttpRoute,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> Option<RedirectFilter> {
        let r = http.redirect.as_ref()?;
        let field = format!("{field}.redirect");
        let status = r.redirect_code.unwrap_or(301);
        if ![301, 302, 303, 307, 308].contains(&status) {
            sink.push_err(
                format!("{field}.redirectCode"),
                IstioConfigError::InvalidRedirectCode(status),
            );
        }
        let derive_port = match r.derive_port.as_deref() {
            None => None,
            Some("FROM_PROTOCOL_DEFAULT") => Some(DerivePort::ProtocolDefault),
            Some("FROM_REQUEST_PORT") => Some(DerivePort::RequestPort),
            Some(other) => {
                sink.push_err(
                    format!("{field}.derivePort"),
                    IstioConfigError::InvalidDerivePort(other.to_string()),
                );
                None
            }
        };
        if r.port.is_some() && derive_port.is_some() {
            sink.push_err(field.clone(), IstioConfigError::PortAndDerivePort);
        }
        Some(RedirectFilter {
            scheme: r.scheme.clone(),
            hostname: r.authority.clone(),
            port: r.port,
            path: r.uri.clone().map(PathModifier::ReplaceFullPath),
            status,
            derive_port,
        })
    }

    /// `rewrite`: `uri` replaces the matched prefix (raw, Envoy's
    /// `prefix_rewrite`) or, for other matches, the whole path;
    /// `uriRegexRewrite` substitutes; `authority` replaces the Host.
    fn rewrite(
        &self,
        http: &VsHttpRoute,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> Option<UrlRewriteFilter> {
        let r = http.rewrite.as_ref()?;
        let field = format!("{field}.rewrite");
        let path = match (&r.uri, &r.uri_regex_rewrite) {
            (Some(_), Some(_)) => {
                sink.push_err(field.clone(), IstioConfigError::UriAndRegexRewrite);
                None
            }
            (Some(uri), None) => Some(PathModifier::ReplaceRawPrefix(uri.clone())),
            (None, Some(rr)) => match CompiledRegexRewrite::new(&rr.match_, &rr.rewrite) {
                Ok(rr) => Some(PathModifier::RegexReplace(rr)),
                Err(e) => {
                    sink.push(format!("{field}.uriRegexRewrite.match"), e);
                    None
                }
            },
            (None, None) => None,
        };
        Some(UrlRewriteFilter {
            hostname: r.authority.clone(),
            path,
        })
    }

    /// `mirror` + `mirrorPercentage` (or the deprecated `mirrorPercent`) and
    /// `mirrors[]`; 100% unless given.
    fn mirrors(
        &self,
        http: &VsHttpRoute,
        field: &str,
        port: u16,
        sink: &mut ErrorSink<'_>,
    ) -> Vec<MirrorFilter> {
        let mut out = Vec::new();
        let mut push = |d: &VsDestination,
                        pct: Option<crate::policy::SamplePercent>,
                        at: &str,
                        sink: &mut ErrorSink<'_>| {
            let target = self.resolve(d, at, port, sink);
            if let Some(pct) = pct {
                // Millionths keep Istio's fractional percentages.
                let numerator = (pct.0 * 10_000.0).round().clamp(0.0, 1e6) as u32;
                out.push(MirrorFilter {
                    target,
                    numerator,
                    denominator: 1_000_000,
                });
            }
        };
        if let Some(m) = &http.mirror {
            let pct = percentage(
                http.mirror_percentage.as_ref(),
                http.mirror_percent.map(i64::from),
                (
                    &format!("{field}.mirrorPercentage"),
                    &format!("{field}.mirrorPercent"),
                ),
                sink,
            );
            push(m, pct, &format!("{field}.mirror"), sink);
        }
        for (k, m) in http.mirrors.iter().enumerate() {
            let at = format!("{field}.mirrors[{k}]");
            let pct_at = format!("{at}.percentage");
            let pct = percentage(m.percentage.as_ref(), None, (&pct_at, &pct_at), sink);
            push(&m.destination, pct, &format!("{at}.destination"), sink);
        }
        out
    }
}

/// `headers.request` (or `.response`) → one HeaderModifier.
fn header_ops(
    headers: Option<&Headers>,
    request: bool,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<Arc<HeaderModifier>> {
    let side = if request { "request" } else { "response" };
    let Some(ops): Option<&HeaderOperations> = headers.and_then(|h| {
        if request {
            h.request.as_ref()
        } else {
            h.response.as_ref()
        }
    }) else {
        return Vec::new();
    };
    let field = format!("{field}.headers.{side}");
    let mut m = HeaderModifier::default();
    let pairs = |map: &BTreeMap<String, String>, list: &str, sink: &mut ErrorSink<'_>| {
        let mut out = Vec::new();
        for (name, value) in map {
            let at = format!("{field}.{list}.{name}");
            let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                sink.push(at, RouteConfigError::InvalidHeaderName(name.clone()));
                continue;
            };
            let Ok(v) = HeaderValue::from_str(value) else {
                sink.push(at, RouteConfigError::InvalidHeaderValue(value.clone()));
                continue;
            };
            out.push((n, v));
        }
        out
    };
    m.set = pairs(&ops.set, "set", sink);
    m.add = pairs(&ops.add, "add", sink);
    for (i, name) in ops.remove.iter().enumerate() {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(n) => m.remove.push(n),
            Err(_) => sink.push(
                format!("{field}.remove[{i}]"),
                RouteConfigError::InvalidHeaderName(name.clone()),
            ),
        }
    }
    vec![Arc::new(m)]
}

/// Appends every VirtualService's candidates after the (already sorted)
/// HTTPRoute candidates of each port of its hosts — to the producer table
/// and to every consumer table, since a VirtualService applies to every
/// caller. A match restricted to another `port` is not attached.
pub(crate) fn attach_virtual_services(
    compiled: &[CompiledVs],
    targets: &mut [TargetState],
) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    for vs in compiled {
        for &ti in &vs.hosts {
            let state = &mut targets[ti];
            let target = state.target.clone();
            for (pi, port) in target.ports.iter().enumerate() {
                let Some(rules) = vs.rules.get(&port.number) else {
                    continue;
                };
                let mut candidates = Vec::new();
                for rule in rules {
                    for (match_index, m) in rule.matches.iter().enumerate() {
                        if m.port.is_none_or(|p| p == port.number) {
                            candidates.push(Candidate {
                                rule: rule.clone(),
                                match_index,
                            });
                        }
                    }
                }
                if candidates.is_empty() {
                    continue;
                }
                let port_state = &mut state.ports[pi];
                port_state
                    .producer
                    .candidates
                    .extend(candidates.iter().cloned());
                for table in port_state.consumers.values_mut() {
                    table.candidates.extend(candidates.iter().cloned());
                }
                attachments.push(Attachment {
                    kind: RouteKind::VirtualService,
                    route: vs.key.clone(),
                    service: target.key.clone(),
                    port: port.number,
                    consumer: false,
                    note: None,
                    conflicted: false,
                });
            }
        }
    }
    attachments
}

#[cfg(test)]
mod tests;
