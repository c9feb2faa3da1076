//! One GRPCRoute → its [`CompiledRule`]s, in the same runtime form as
//! HTTPRoute's: a method match is a match on the call's path
//! `/package.Service/Method` (exact or regular expression), headers compile
//! as HTTPRoute's, backendRefs go through the same resolver (and so the
//! same cross-namespace checks), filters through the same compiler, limited
//! to the three the GRPCRoute spec defines. GRPCRoute has no `timeouts` or
//! `retry`: its rules keep Istio's default policy.

use std::sync::Arc;

use regex::escape;

use super::backends::compile_backends;
use super::filters::{compile_filters, FilterCtx};
use super::matches::{compile_headers, compile_pattern};
use super::resolve::{Resolve, RouteRef};
use crate::config::{
    ConfigErrors, GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, GrpcRouteRule, HttpRouteFilter,
    Sourced,
};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::route_name::{RouteKind, RouteName};
use crate::routing::table::backend::total_weight;
use crate::routing::table::matcher::{CompiledMatch, GrpcMethodRank, PathMatch};
use crate::routing::table::route_policy::RoutePolicy;
use crate::routing::table::rule::CompiledRule;

/// Filters a GRPCRoute may use (`GRPCRouteFilterType`, ExtensionRef aside,
/// which HTTPRoute's compiler rejects too).
const GRPC_FILTERS: [&str; 4] = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "ExtensionRef",
];

/// Compiles the rules of one GRPCRoute, pushing its errors. An empty
/// `rules` is one rule matching every call, with no backends (500), as for
/// HTTPRoute.
pub(crate) fn compile_grpc_route(
    route: &Sourced<GrpcRoute>,
    resolver: &dyn Resolve,
    errors: &mut ConfigErrors,
) -> Vec<Arc<CompiledRule>> {
    let from = RouteRef {
        kind: RouteKind::GrpcRoute,
        key: &route.key,
    };
    let mut sink = ErrorSink::new(&route.origin, from.object(), errors);
    let ctx = FilterCtx {
        route: from,
        resolver,
        backend_level: false,
    };
    let default_rules = [GrpcRouteRule::default()];
    let rules = match route.object.spec.rules.as_slice() {
        [] => &default_rules[..],
        rules => rules,
    };
    let created = route.object.metadata.creation_timestamp.clone();
    let mut out = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let field = format!("spec.rules[{i}]");
        if rule.session_persistence.is_some() {
            sink.push(
                format!("{field}.sessionPersistence"),
                RouteConfigError::UnsupportedField("sessionPersistence"),
            );
        }
        check_filter_types(&rule.filters, &field, &mut sink);
        for (k, b) in rule.backend_refs.iter().enumerate() {
            check_filter_types(&b.filters, &format!("{field}.backendRefs[{k}]"), &mut sink);
        }
        let matches = compile_grpc_matches(&rule.matches, &field, &mut sink);
        let filters = compile_filters(&rule.filters, &field, &ctx, &mut sink);
        let backends = compile_backends(&rule.backend_refs, &field, &ctx, &mut sink);
        out.push(Arc::new(CompiledRule {
            route: RouteName::grpc_route(&route.key, i),
            created: created.clone(),
            matches,
            filters,
            total_weight: total_weight(&backends),
            backends,
            policy: Arc::new(RoutePolicy::default()),
            counters: Default::default(),
        }));
    }
    out
}

/// GRPCRoute allows only header modifiers and mirrors: a RequestRedirect or
/// URLRewrite (valid in HTTPRoute) is an error here, at its `type`.
fn check_filter_types(filters: &[HttpRouteFilter], field: &str, sink: &mut ErrorSink<'_>) {
    for (j, f) in filters.iter().enumerate() {
        if !GRPC_FILTERS.contains(&f.type_.as_str()) {
            sink.push(
                format!("{field}.filters[{j}].type"),
                RouteConfigError::NotAGrpcRouteFilter(f.type_.clone()),
            );
        }
    }
}

/// Compiles a rule's `matches`; an empty list matches every call.
pub(crate) fn compile_grpc_matches(
    matches: &[GrpcRouteMatch],
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<CompiledMatch> {
    if matches.is_empty() {
        return vec![any_call()];
    }
    let mut out = Vec::with_capacity(matches.len());
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{field}.matches[{i}]");
        let headers = compile_headers(&m.headers, &field, sink);
        let method = match &m.method {
            None => Some(any_call()),
            Some(method) => compile_method(method, &format!("{field}.method"), sink),
        };
        if let Some(method) = method {
            out.push(CompiledMatch { headers, ..method });
        }
    }
    out
}

/// A match of every call: any path, ranked below any method match.
fn any_call() -> CompiledMatch {
    CompiledMatch {
        grpc_method: Some(GrpcMethodRank {
            service_chars: 0,
            method_chars: 0,
        }),
        ..CompiledMatch::path_only(PathMatch::Prefix("/".to_string()))
    }
}

/// Per the GRPCRoute spec: `Exact` (default) compares the service and the
/// method as written, an absent one matching any; `RegularExpression`
/// matches each part in full. One path element each: `[^/]+` for "any".
fn compile_method(
    m: &GrpcMethodMatch,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<CompiledMatch> {
    let service = m.service.as_deref().filter(|s| !s.is_empty());
    let method = m.method.as_deref().filter(|s| !s.is_empty());
    let rank = GrpcMethodRank {
        service_chars: service.map_or(0, str::len),
        method_chars: method.map_or(0, str::len),
    };
    let path = match m.type_.as_deref().unwrap_or("Exact") {
        "Exact" => {
            let mut ok = true;
            if service.is_none() && method.is_none() {
                sink.push(field, RouteConfigError::EmptyGrpcMethodMatch);
                ok = false;
            }
            if let Some(s) = service.filter(|s| !valid_service(s)) {
                sink.push(
                    format!("{field}.service"),
                    RouteConfigError::InvalidGrpcName {
                        what: "service",
                        value: s.to_string(),
                    },
                );
                ok = false;
            }
            if let Some(s) = method.filter(|s| !valid_method(s)) {
                sink.push(
                    format!("{field}.method"),
                    RouteConfigError::InvalidGrpcName {
                        what: "method",
                        value: s.to_string(),
                    },
                );
                ok = false;
            }
            if !ok {
                return None;
            }
            match (service, method) {
                (Some(s), Some(m)) => PathMatch::Exact(format!("/{s}/{m}")),
                (s, m) => {
                    let part = |p: Option<&str>| p.map_or_else(|| "[^/]+".to_string(), escape);
                    let source = format!("/{}/{}", part(s), part(m));
                    PathMatch::Regex(compile_pattern(&source, field, sink)?)
                }
            }
        }
        "RegularExpression" => {
            let mut part = |p: Option<&str>, name: &str| match p {
                None => Some("[^/]+".to_string()),
                Some(p) => {
                    compile_pattern(p, &format!("{field}.{name}"), sink).map(|_| format!("(?:{p})"))
                }
            };
            let (s, m) = (part(service, "service"), part(method, "method"));
            let source = format!("/{}/{}", s?, m?);
            PathMatch::Regex(compile_pattern(&source, field, sink)?)
        }
        other => {
            sink.push(
                format!("{field}.type"),
                RouteConfigError::UnknownType {
                    what: "gRPC method match",
                    value: other.to_string(),
                    supported: "Exact, RegularExpression",
                },
            );
            return None;
        }
    };
    Some(CompiledMatch {
        grpc_method: Some(rank),
        ..CompiledMatch::path_only(path)
    })
}

/// The spec's pattern for an Exact service: dot-separated identifiers
/// (`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`).
fn valid_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty() && s.split('.').all(valid_ident)
}

/// The spec's pattern for an Exact method: `^[A-Za-z_][A-Za-z_0-9]*$`.
fn valid_method(s: &str) -> bool {
    valid_ident(s)
}

fn valid_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests;
