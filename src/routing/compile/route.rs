//! One HTTPRoute → its [`CompiledRule`]s: matches, filters, backends and
//! policy of every rule, with the rule-level checks that span them
//! (RequestRedirect vs URLRewrite and backendRefs, ReplacePrefixMatch only
//! with PathPrefix matches). Every error is reported, not just the first.

use std::sync::Arc;

use super::backends::compile_backends;
use super::filters::{compile_filters, FilterCtx};
use super::matches::compile_matches;
use super::resolve::{Resolve, RouteRef};
use super::route_policy::compile_http_route_policy;
use crate::config::{ConfigErrors, HttpRoute, HttpRouteFilter, HttpRouteRule, Sourced};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::route_name::{RouteKind, RouteName};
use crate::routing::table::backend::total_weight;
use crate::routing::table::rule::CompiledRule;

/// Compiles the rules of one route, pushing its errors. An empty `rules`
/// means, per the Gateway API, one rule matching `PathPrefix /` (with no
/// backends, so 500).
pub(crate) fn compile_route(
    route: &Sourced<HttpRoute>,
    resolver: &dyn Resolve,
    errors: &mut ConfigErrors,
) -> Vec<Arc<CompiledRule>> {
    let from = RouteRef {
        kind: RouteKind::HttpRoute,
        key: &route.key,
    };
    let mut sink = ErrorSink::new(&route.origin, from.object(), errors);
    let ctx = FilterCtx {
        route: from,
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
            counters: Default::default(),
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
