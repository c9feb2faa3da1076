//! Choosing one endpoint of a cluster for one attempt, in Envoy's order:
//! drop ejected endpoints (outlier detection; if every endpoint is ejected,
//! Envoy's "panic mode" uses them all), keep the closest locality tier that
//! still has one (when the cluster is locality-aware), avoid endpoints
//! earlier attempts used (when another exists), then apply the LB policy.
//! Tested through `endpoints` and DestinationRule clusters in
//! `routing::istio::destination_rule`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::cluster::ClusterPolicy;
use super::endpoint::Endpoint;
use super::hash::{fnv1a, mix};
use super::lb::{LbChoice, LbPolicy};
use super::locality::Locality;

/// What the proxy knows when it picks an endpoint for one attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickRequest<'a> {
    /// Endpoints earlier attempts used; avoided when another is available.
    pub avoid: &'a [SocketAddr],
    /// The request's hash for a consistent-hash cluster
    /// ([`crate::upstream::request_hash`]); `None` picks as a simple LB would.
    pub hash: Option<u64>,
    /// The waypoint's own locality (`--locality`), for locality-aware LB.
    pub locality: Option<&'a Locality>,
}

/// An endpoint set's endpoints and LB state, borrowed for one pick.
pub(super) struct Candidates<'a> {
    /// The set's endpoints, in discovery order.
    pub endpoints: &'a [Arc<Endpoint>],
    /// Active requests, parallel to `endpoints`.
    pub active: &'a [Arc<AtomicU64>],
    /// LB choice, outlier detector and locality awareness.
    pub cluster: &'a ClusterPolicy,
    /// Round-robin position.
    pub next: &'a AtomicUsize,
}

impl Candidates<'_> {
    /// The index of the endpoint to use; `None` when there is none.
    pub(super) fn choose(&self, req: &PickRequest<'_>) -> Option<usize> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let mut candidates: Vec<usize> = (0..n).collect();

        // Outlier detection; all ejected = panic mode (keep them all).
        if let Some(detector) = &self.cluster.outlier {
            let healthy: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| !detector.is_ejected(self.endpoints[i].addr))
                .collect();
            if !healthy.is_empty() {
                candidates = healthy;
            }
        }

        // Locality: the closest tier with an available endpoint.
        if let (true, Some(own)) = (self.cluster.locality_aware, req.locality) {
            let tier = |i: usize| {
                self.endpoints[i]
                    .locality
                    .as_ref()
                    .map_or(2, |l| own.tier(l))
            };
            if let Some(best) = candidates.iter().map(|&i| tier(i)).min() {
                candidates.retain(|&i| tier(i) == best);
            }
        }

        // Retries prefer endpoints not tried yet.
        if !req.avoid.is_empty() {
            let fresh: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| !req.avoid.contains(&self.endpoints[i].addr))
                .collect();
            if !fresh.is_empty() {
                candidates = fresh;
            }
        }

        let index = match (&self.cluster.lb, req.hash) {
            (LbChoice::ConsistentHash(_), Some(hash)) => self.rendezvous(&candidates, hash),
            (LbChoice::ConsistentHash(_), None) => self.p2c(&candidates),
            (LbChoice::Simple(policy), _) => match policy {
                LbPolicy::LeastRequest => self.p2c(&candidates),
                LbPolicy::RoundRobin => {
                    let k = self.next.fetch_add(1, Ordering::Relaxed);
                    candidates[k % candidates.len()]
                }
                LbPolicy::Random => candidates[rand::rng().random_range(0..candidates.len())],
            },
        };
        Some(index)
    }

    /// Rendezvous (highest random weight) hashing: the candidate whose
    /// address scores highest for `hash`. Stable as endpoints come and go:
    /// only requests whose winner left move.
    fn rendezvous(&self, candidates: &[usize], hash: u64) -> usize {
        let score = |i: usize| mix(hash, addr_hash(self.endpoints[i].addr));
        candidates
            .iter()
            .copied()
            .max_by_key(|&i| score(i))
            .unwrap_or(candidates[0])
    }

    /// Power of two choices over `candidates` (non-empty): two distinct
    /// random ones, the one with fewer active requests wins (the first on a
    /// tie).
    fn p2c(&self, candidates: &[usize]) -> usize {
        let m = candidates.len();
        if m == 1 {
            return candidates[0];
        }
        let mut rng = rand::rng();
        let a = rng.random_range(0..m);
        let mut b = rng.random_range(0..m - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (candidates[a], candidates[b]);
        let load = |i: usize| self.active[i].load(Ordering::Relaxed);
        if load(b) < load(a) {
            b
        } else {
            a
        }
    }
}

fn addr_hash(addr: SocketAddr) -> u64 {
    fnv1a(addr.to_string().as_bytes())
}
