//! `/config_dump`: the compiled snapshot as JSON — destinations, ports,
//! endpoints and each port's route candidates in precedence order. Stable
//! ordering (load order, precedence order, sorted maps) so it can be diffed
//! and used as a golden file.

use serde_json::{json, Value};

use super::service::{ServicePortTarget, TargetPort};
use super::snapshot::Snapshot;
use super::table::cors::OriginMatch;
use super::table::filters::{PathModifier, RuleFilters};
use super::table::headers::HeaderModifier;
use super::table::matcher::{CompiledMatch, HeaderMatch, PathMatch, ValueMatch};
use super::table::rule::RouteTable;
use crate::upstream::Endpoint;
use policy::{dump_cluster, dump_route_policy};
use routes::{dump_routes, dump_tcp_routes};

mod live;
mod policy;
mod routes;

impl Snapshot {
    /// JSON for `/config_dump`: services, ports, endpoints, the compiled
    /// routes of every Service port in precedence order (TCPRoutes under
    /// `tcpRoutes` where a port has any), every Gateway API route's parents
    /// and `ResolvedRefs` condition; `conflictedRoutes`, when HTTPRoutes lost
    /// a Service port to a GRPCRoute.
    pub fn dump(&self) -> Value {
        let services: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let target = &t.target;
                let ports: Vec<Value> = target
                    .ports
                    .iter()
                    .zip(&t.ports)
                    .map(|(port, state)| {
                        let consumers: serde_json::Map<String, Value> = state
                            .consumers
                            .iter()
                            .map(|(ns, table)| (ns.clone(), dump_table(table)))
                            .collect();
                        let mut out = json!({
                            "port": port.number,
                            "name": port.name.as_deref(),
                            "appProtocol": port.app_protocol.as_deref(),
                            "targetPort": target_port(port),
                            "endpoints": state.endpoints.endpoints().iter().map(|e| dump_endpoint(e)).collect::<Vec<_>>(),
                            "cluster": dump_cluster(state.endpoints.cluster()),
                            "subsets": state.subsets.iter().map(|(name, set)| json!({
                                "name": name,
                                "cluster": dump_cluster(set.cluster()),
                                "endpoints": set.endpoints().iter().map(|e| e.addr.to_string()).collect::<Vec<_>>(),
                            })).collect::<Vec<_>>(),
                            "producerRoutes": dump_table(&state.producer),
                            "consumerRoutes": consumers,
                        });
                        if let (Some(tcp), Some(obj)) = (dump_tcp_routes(state), out.as_object_mut()) {
                            obj.insert("tcpRoutes".into(), tcp);
                        }
                        out
                    })
                    .collect();
                json!({
                    "kind": target.kind.as_str(),
                    "name": target.key.to_string(),
                    "hostname": target.hostname,
                    "addresses": target.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "ports": ports,
                })
            })
            .collect();
        let mut dump = json!({
            "namespace": self.opts.namespace,
            "clusterDomain": self.opts.cluster_domain,
            "lb": format!("{:?}", self.opts.lb),
            "services": services,
            "routes": dump_routes(self),
        });
        // Only when there are any, so configs without GRPCRoutes dump as before.
        let conflicted: Vec<Value> = self
            .attachments
            .iter()
            .filter(|a| a.conflicted)
            .map(|a| {
                json!({
                    "kind": a.kind.as_str(),
                    "route": a.route.to_string(),
                    "service": a.service.to_string(),
                    "port": a.port,
                    "reason": "Conflicted: a GRPCRoute is attached to the same Service port (GEP-1426)",
                })
            })
            .collect();
        if !conflicted.is_empty() {
            dump["conflictedRoutes"] = Value::Array(conflicted);
        }
        dump
    }
}

fn target_port(port: &ServicePortTarget) -> Value {
    match &port.target_port {
        TargetPort::Number(n) => json!(n),
        TargetPort::Named(s) => json!(s.as_ref()),
    }
}

fn dump_endpoint(e: &Endpoint) -> Value {
    json!({
        "address": e.addr.to_string(),
        "pod": e.pod.as_ref().map(|p| p.to_string()),
        "workload": &*e.workload.name,
        "canonicalService": &*e.workload.canonical_service,
        "canonicalRevision": &*e.workload.canonical_revision,
        "inMesh": e.in_mesh,
        "zone": e.zone,
        "locality": e.locality.as_ref().map(|l| l.to_string()),
    })
}

fn dump_table(table: &RouteTable) -> Value {
    table
        .candidates
        .iter()
        .map(|c| {
            let rule = &c.rule;
            let backends: Vec<Value> = rule
                .backends
                .iter()
                .map(|b| match &b.target {
                    Ok((dest, eps)) => json!({
                        "weight": b.weight,
                        "backend": dest.authority(),
                        "cluster": eps.cluster().name.to_string(),
                        "endpoints": eps.len(),
                        "filters": dump_filters(&b.filters),
                    }),
                    Err(reason) => json!({ "weight": b.weight, "invalid": reason }),
                })
                .collect();
            json!({
                "kind": rule.route.kind().as_str(),
                "route": rule.route.as_str(),
                "rule": rule.route.rule_index(),
                "match": c.match_index,
                "matcher": dump_match(c.matcher()),
                "filters": dump_filters(&rule.filters),
                "backends": backends,
                "policy": dump_route_policy(&rule.policy),
            })
        })
        .collect()
}

fn dump_value(v: &ValueMatch) -> Value {
    match v {
        ValueMatch::Exact(s) => json!({ "type": "Exact", "value": s }),
        ValueMatch::Regex(p) => json!({ "type": "RegularExpression", "value": p.as_str() }),
        ValueMatch::Prefix(s) => json!({ "type": "Prefix", "value": s }),
        ValueMatch::Present => json!({ "type": "Present" }),
    }
}

fn dump_match(m: &CompiledMatch) -> Value {
    let path = match &m.path {
        PathMatch::Exact(v) => json!({ "type": "Exact", "value": v }),
        PathMatch::Prefix(v) => json!({ "type": "PathPrefix", "value": v }),
        PathMatch::Regex(p) => json!({ "type": "RegularExpression", "value": p.as_str() }),
        PathMatch::RawPrefix(v) => json!({ "type": "RawPrefix", "value": v }),
        PathMatch::Any => json!({ "type": "Any" }),
    };
    let header =
        |h: &HeaderMatch| json!({ "name": h.name.as_str(), "match": dump_value(&h.value) });
    let mut out = json!({
        "path": path,
        "method": m.method.as_ref().map(dump_value),
        "headers": m.headers.iter().map(header).collect::<Vec<_>>(),
        "queryParams": m.query_params.iter().map(|q| json!({ "name": q.name, "match": dump_value(&q.value) })).collect::<Vec<_>>(),
    });
    // VirtualService-only conditions, shown only when used.
    if let Some(obj) = out.as_object_mut() {
        if m.ignore_uri_case {
            obj.insert("ignoreUriCase".into(), json!(true));
        }
        if !m.without_headers.is_empty() {
            obj.insert(
                "withoutHeaders".into(),
                json!(m.without_headers.iter().map(header).collect::<Vec<_>>()),
            );
        }
        if let Some(a) = &m.authority {
            obj.insert("authority".into(), dump_value(a));
        }
        if let Some(s) = &m.scheme {
            obj.insert("scheme".into(), dump_value(s));
        }
        if let Some(p) = m.port {
            obj.insert("port".into(), json!(p));
        }
    }
    out
}

/// Each filter with what it does, so a golden diff shows a changed header
/// value, redirect target or mirror share, not just the filter's name.
fn dump_filters(f: &RuleFilters) -> Vec<Value> {
    let mut out = Vec::new();
    for m in &f.request_headers {
        out.push(dump_header_modifier("RequestHeaderModifier", m));
    }
    for m in &f.response_headers {
        out.push(dump_header_modifier("ResponseHeaderModifier", m));
    }
    if let Some(r) = &f.redirect {
        out.push(json!({
            "type": "RequestRedirect",
            "scheme": r.scheme,
            "hostname": r.hostname,
            "port": r.port,
            "path": r.path.as_ref().map(dump_path_modifier),
            "statusCode": r.status,
        }));
    }
    if let Some(r) = &f.rewrite {
        out.push(json!({
            "type": "URLRewrite",
            "hostname": r.hostname,
            "path": r.path.as_ref().map(dump_path_modifier),
        }));
    }
    for m in &f.mirrors {
        let backend = match &m.target {
            Ok((dest, _)) => json!(dest.authority()),
            Err(reason) => json!({ "invalid": reason }),
        };
        out.push(json!({
            "type": "RequestMirror",
            "backend": backend,
            "fraction": format!("{}/{}", m.numerator, m.denominator),
        }));
    }
    if let Some(c) = &f.cors {
        let text = |v: &Option<http::HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let origins: Vec<Value> = c
            .allow_origins
            .iter()
            .map(|o| match o {
                OriginMatch::Exact(v) => json!({ "exact": v }),
                OriginMatch::Prefix(v) => json!({ "prefix": v }),
                OriginMatch::Regex(p) => json!({ "regex": p.as_str() }),
            })
            .collect();
        out.push(json!({
            "type": "CORS",
            "allowOrigins": origins,
            "allowMethods": text(&c.allow_methods),
            "allowHeaders": text(&c.allow_headers),
            "exposeHeaders": text(&c.expose_headers),
            "maxAge": text(&c.max_age),
            "allowCredentials": c.allow_credentials,
            "forwardUnmatchedPreflights": c.forward_unmatched_preflights,
        }));
    }
    if let Some(d) = &f.direct_response {
        out.push(json!({
            "type": "DirectResponse",
            "status": d.status,
            "body": String::from_utf8_lossy(&d.body),
        }));
    }
    out
}

fn dump_header_modifier(kind: &str, m: &HeaderModifier) -> Value {
    let pairs = |v: &[(http::HeaderName, http::HeaderValue)]| -> Vec<Value> {
        v.iter()
            .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
            .collect()
    };
    json!({
        "type": kind,
        "set": pairs(&m.set),
        "add": pairs(&m.add),
        "remove": m.remove.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
    })
}

fn dump_path_modifier(p: &PathModifier) -> Value {
    match p {
        PathModifier::ReplaceFullPath(v) => json!({ "replaceFullPath": v }),
        PathModifier::ReplacePrefixMatch(v) => json!({ "replacePrefixMatch": v }),
        PathModifier::ReplaceRawPrefix(v) => json!({ "replaceRawPrefix": v }),
        PathModifier::RegexReplace(r) => json!({ "regexRewrite": format!("{r:?}") }),
    }
}

#[cfg(test)]
mod tests;
