//! Load-balancing policies: how a cluster chooses among its endpoints —
//! a simple policy or a consistent hash on part of the request. The choice
//! itself is made in `pick`.

use super::hash::HashKey;

/// Endpoint-picking policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LbPolicy {
    /// Least request with the power of two random choices (Envoy's default
    /// `LEAST_REQUEST` with `choice_count: 2`).
    #[default]
    LeastRequest,
    /// Plain round robin over the ready endpoints.
    RoundRobin,
    /// Uniformly random (Istio `RANDOM`).
    Random,
}

/// How endpoints of a cluster are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbChoice {
    /// `loadBalancer.simple` (or the waypoint's default).
    Simple(LbPolicy),
    /// `loadBalancer.consistentHash`: the proxy hashes this part of the
    /// request ([`crate::upstream::request_hash`]) and passes the hash in
    /// [`crate::upstream::PickRequest::hash`].
    ConsistentHash(HashKey),
}

impl Default for LbChoice {
    fn default() -> Self {
        LbChoice::Simple(LbPolicy::default())
    }
}
