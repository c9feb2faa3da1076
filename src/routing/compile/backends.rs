//! HTTPRoute `backendRefs[]` → [`CompiledBackend`]s: weights checked
//! against the Gateway API range, references resolved (a dangling one is a
//! per-request 500, not a config error), per-backend filters compiled.

use super::filters::{compile_filters, FilterCtx};
use crate::config::HttpBackendRef;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::backend::CompiledBackend;

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
        let target = ctx.resolver.resolve(&r.backend, ctx.route, &field, sink);
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
