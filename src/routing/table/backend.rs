//! backendRefs: resolving a reference to a destination port and its
//! endpoints, and the weighted choice among a rule's backends.
//!
//! Per the Gateway API, a reference that cannot be resolved is not a config
//! error: "requests that would have been sent to that backend MUST receive a
//! 500 status code". So an unresolved backend compiles to an error reason that
//! surfaces only when its share is chosen.

use std::sync::Arc;

use rand::Rng;

use super::endpoints::EndpointSet;
use super::error::{ErrorSink, RouteConfigError};
use super::filters::{compile_filters, FilterCtx, RuleFilters};
use super::service::Destination;
use crate::config::{BackendObjectReference, HttpBackendRef};

/// A resolved backend: the destination port and its endpoints; or why not.
pub(crate) type BackendTarget = Result<(Destination, Arc<EndpointSet>), String>;

/// Resolves backend references against the destinations being compiled.
pub(crate) trait Resolve {
    /// Resolves `r` (found at `field`) for a route in `route_ns`. Invalid
    /// config (a Service backend without `port`) goes to `sink`; a dangling
    /// reference comes back as `Err(reason)`.
    fn resolve(
        &self,
        r: &BackendObjectReference,
        route_ns: &str,
        field: &str,
        sink: &mut ErrorSink<'_>,
    ) -> BackendTarget;
}

/// One compiled `backendRefs[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledBackend {
    /// Proportion of requests; 0 is never chosen.
    pub weight: u32,
    pub target: BackendTarget,
    /// Filters applied only when this backend is chosen.
    pub filters: RuleFilters,
}

/// Maximum weight per the Gateway API (`maximum: 1000000`).
const MAX_WEIGHT: i64 = 1_000_000;

/// Compiles a rule's `backendRefs` (at `field`, e.g. `spec.rules[0]`).
pub(crate) fn compile_backends(
    refs: &[HttpBackendRef],
    field: &str,
    ctx: &FilterCtx<'_>,
    sink: &mut ErrorSink<'_>,
) -> Vec<CompiledBackend> {
    let mut out = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let field = format!("{field}.backendRefs[{i}]");
        let weight = r.weight.unwrap_or(1);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            sink.push(
                format!("{field}.weight"),
                RouteConfigError::InvalidWeight(weight),
            );
            continue;
        }
        let target = ctx.resolver.resolve(&r.backend, ctx.route_ns, &field, sink);
        let backend_ctx = FilterCtx {
            backend_level: true,
            ..*ctx
        };
        let filters = compile_filters(&r.filters, &field, &backend_ctx, sink);
        out.push(CompiledBackend {
            // In range by the check above.
            weight: u32::try_from(weight).unwrap_or(0),
            target,
            filters,
        });
    }
    out
}

/// Total weight of `backends`.
pub(crate) fn total_weight(backends: &[CompiledBackend]) -> u64 {
    backends.iter().map(|b| u64::from(b.weight)).sum()
}

/// The backend owning `point` in `0..total` when the weights are laid end to
/// end; weight-0 backends own nothing.
pub(crate) fn choose_at(backends: &[CompiledBackend], point: u64) -> Option<&CompiledBackend> {
    let mut acc = 0u64;
    backends.iter().find(|b| {
        acc += u64::from(b.weight);
        point < acc
    })
}

/// A backend drawn in proportion to the weights; `None` when all are zero.
pub(crate) fn choose(backends: &[CompiledBackend], total: u64) -> Option<&CompiledBackend> {
    if total == 0 {
        return None;
    }
    if backends.len() == 1 {
        return backends.first();
    }
    choose_at(backends, rand::rng().random_range(0..total))
}

#[cfg(test)]
mod tests;
