//! Compiled backends (`backendRefs[]`, VirtualService `route[]`): each
//! one's resolved destination port and endpoints, its weight and filters, and
//! the weighted choice among a rule's backends per request. Resolving and
//! compiling references is `compile::backends` and `compile::resolve`.
//!
//! Per the Gateway API, a reference that cannot be resolved is not a config
//! error: "requests that would have been sent to that backend MUST receive a
//! 500 status code". So an unresolved backend compiles to an error reason that
//! surfaces only when its share is chosen.

use std::sync::Arc;

use rand::Rng;

use super::filters::RuleFilters;
use crate::routing::service::DestinationPort;
use crate::upstream::EndpointSet;

/// A resolved backend: the destination port and its endpoints; or why not.
pub(crate) type BackendTarget = Result<(DestinationPort, Arc<EndpointSet>), String>;

/// One compiled `backendRefs[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CompiledBackend {
    /// Proportion of requests; 0 is never chosen.
    pub weight: u32,
    pub target: BackendTarget,
    /// Filters applied only when this backend is chosen.
    pub filters: RuleFilters,
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
