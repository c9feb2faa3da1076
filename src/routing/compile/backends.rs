//! HTTPRoute `backendRefs[]` → [`CompiledBackend`]s: weights checked
//! against the Gateway API range, references resolved (a dangling one is a
//! per-request 500, not a config error), per-backend filters compiled.

use super::filters::{compile_filters, FilterCtx};
use crate::config::HttpBackendRef;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::backend::CompiledBackend;

/// Maximum weight per the Gateway API (`maximum: 1000000`).
const MAX_WEIGHT: i64 = 1_000_000;

/// A backendRef's `weight` (default 1) at `field`, checked against the
/// Gateway API range; `None` (and an error in `sink`) when out of it.
pub(crate) fn checked_weight(
    weight: Option<i64>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<u32> {
    let weight = weight.unwrap_or(1);
    match u32::try_from(weight) {
        Ok(w) if i64::from(w) <= MAX_WEIGHT => Some(w),
        _ => {
            sink.push(
                format!("{field}.weight"),
                RouteConfigError::InvalidWeight(weight),
            );
            None
        }
    }
}

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
        let Some(weight) = checked_weight(r.weight, &field, sink) else {
            continue;
        };
        let target = ctx.resolver.resolve(&r.backend, ctx.route, &field, sink);
        let backend_ctx = FilterCtx {
            backend_level: true,
            ..*ctx
        };
        let filters = compile_filters(&r.filters, &field, &backend_ctx, sink);
        out.push(CompiledBackend {
            weight,
            target,
            filters,
        });
    }
    out
}
