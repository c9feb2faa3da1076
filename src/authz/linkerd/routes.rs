//! Linkerd's `policy.linkerd.io` HTTPRoutes on a Server, as the request
//! matches an authorization is scoped to: path (`Exact`, `PathPrefix` by
//! whole segments), method and host as an operation, `Exact` headers as
//! conditions. What cannot be matched for authorization is refused.

use crate::authz::matcher::{HostMatch, PathMatch, StrMatch};
use crate::authz::rule::{Attr, ConditionMatch, Field, OperationMatch, Value};
use crate::config::{
    HttpRouteMatch, HttpRouteRule, HttpRouteSpec, NamespacedName, Resources, Server, Sourced,
};

/// One match of a route: what the request must be (path, method, host) and
/// its header conditions.
pub(super) type RouteMatch = (OperationMatch, Vec<ConditionMatch>);

/// The policy.linkerd.io HTTPRoutes attached to `server`, as matches.
pub(super) fn server_routes(
    resources: &Resources,
    server: &Sourced<Server>,
) -> Result<Vec<(NamespacedName, Vec<RouteMatch>)>, String> {
    resources
        .linkerd_http_routes
        .iter()
        .filter(|r| r.key.namespace == server.key.namespace)
        .filter(|r| {
            r.object.spec.parent_refs.iter().any(|p| {
                p.kind.as_deref() == Some("Server")
                    && p.name == server.key.name
                    && p.namespace
                        .as_deref()
                        .is_none_or(|ns| ns == server.key.namespace)
            })
        })
        .map(|r| {
            route_matches(&r.object.spec)
                .map(|m| (r.key.clone(), m))
                .map_err(|e| format!("HTTPRoute.policy.linkerd.io {}: {e}", r.key))
        })
        .collect()
}

fn route_matches(spec: &HttpRouteSpec) -> Result<Vec<RouteMatch>, String> {
    let hosts = spec
        .hostnames
        .iter()
        .map(|h| HostMatch::parse(h).map_err(|e| format!("spec.hostnames: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let default_rule = [HttpRouteRule::default()];
    let rules = if spec.rules.is_empty() {
        &default_rule[..]
    } else {
        &spec.rules[..]
    };
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if !rule.filters.is_empty() {
            return Err(format!(
                "spec.rules[{i}].filters: filters on inbound routes are not supported"
            ));
        }
        let default_match = [HttpRouteMatch::default()];
        let matches = if rule.matches.is_empty() {
            &default_match[..]
        } else {
            &rule.matches[..]
        };
        for (j, m) in matches.iter().enumerate() {
            let at = format!("spec.rules[{i}].matches[{j}]");
            let value = m
                .path
                .as_ref()
                .and_then(|p| p.value.clone())
                .unwrap_or_else(|| "/".to_string());
            let path = match m.path.as_ref().and_then(|p| p.type_.as_deref()) {
                Some("Exact") => PathMatch::Str(StrMatch::Exact(value)),
                None | Some("PathPrefix") => PathMatch::SegmentPrefix(value),
                Some(other) => return Err(format!("{at}.path.type: {other} is not supported")),
            };
            if !m.query_params.is_empty() {
                return Err(format!("{at}.queryParams: not supported for authorization"));
            }
            let when = m
                .headers
                .iter()
                .enumerate()
                .map(|(k, h)| {
                    if !matches!(h.type_.as_deref(), None | Some("Exact")) {
                        return Err(format!("{at}.headers[{k}].type: only Exact is supported"));
                    }
                    let name = http::HeaderName::from_bytes(h.name.as_bytes())
                        .map_err(|_| format!("{at}.headers[{k}].name: not a header name"))?;
                    Ok(ConditionMatch {
                        attr: Attr::Header(name),
                        values: Field::of(vec![Value::Str(StrMatch::Exact(h.value.clone()))]),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let op = OperationMatch {
                hosts: Field::of(hosts.clone()),
                paths: Field::of(vec![path]),
                methods: Field::of(
                    m.method
                        .iter()
                        .map(|x| StrMatch::Exact(x.clone()))
                        .collect(),
                ),
                ..OperationMatch::default()
            };
            out.push((op, when));
        }
    }
    Ok(out)
}
