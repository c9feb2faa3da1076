//! One TCPRoute → its [`CompiledTcpRoute`]: the rule's weighted
//! `backendRefs`, resolved through the same step as HTTPRoute's (so
//! ReferenceGrant applies alike). Attaching it to Service ports is `attach`.

use std::sync::Arc;

use super::backends::checked_weight;
use super::resolve::{Resolve, RouteRef};
use crate::config::{ConfigErrors, Sourced, TcpRoute};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::route_name::{RouteKind, RouteName};
use crate::routing::table::backend::{total_weight, CompiledBackend};
use crate::routing::table::filters::RuleFilters;
use crate::routing::table::tcp::CompiledTcpRoute;

/// `backendRefs` `maxItems` per the Gateway API.
const MAX_BACKENDS: usize = 16;

/// Compiles `route`, pushing its errors. `None` when it has none to compile
/// (its errors reject the config).
pub(crate) fn compile_tcp_route(
    route: &Sourced<TcpRoute>,
    resolver: &dyn Resolve,
    errors: &mut ConfigErrors,
) -> Option<Arc<CompiledTcpRoute>> {
    let from = RouteRef {
        kind: RouteKind::TcpRoute,
        key: &route.key,
    };
    let mut sink = ErrorSink::new(&route.origin, from.object(), errors);
    let rule = match route.object.spec.rules.as_slice() {
        [rule] => rule,
        [] => {
            sink.push("spec.rules", RouteConfigError::TcpRouteRuleCount(0));
            return None;
        }
        rules => {
            sink.push(
                "spec.rules",
                RouteConfigError::TcpRouteRuleCount(rules.len()),
            );
            return None;
        }
    };
    if rule.backend_refs.len() > MAX_BACKENDS {
        sink.push(
            "spec.rules[0].backendRefs",
            RouteConfigError::TooManyBackends(rule.backend_refs.len()),
        );
    }
    let mut backends = Vec::with_capacity(rule.backend_refs.len());
    for (i, r) in rule.backend_refs.iter().enumerate() {
        let field = format!("spec.rules[0].backendRefs[{i}]");
        let Some(weight) = checked_weight(r.weight, &field, &mut sink) else {
            continue;
        };
        let target = resolver.resolve(&r.backend, from, &field, &mut sink);
        backends.push(CompiledBackend {
            weight,
            target,
            filters: RuleFilters::default(),
        });
    }
    Some(Arc::new(CompiledTcpRoute {
        route: RouteName::tcp_route(&route.key),
        created: route.object.metadata.creation_timestamp.clone(),
        total_weight: total_weight(&backends),
        backends,
    }))
}
