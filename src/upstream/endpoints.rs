//! Endpoint sets of one Service port (Envoy's cluster): the ready endpoints,
//! their cluster policy and LB state, and the guard that counts a picked
//! endpoint's active request. How one endpoint is chosen is `pick`; where
//! endpoints come from (EndpointSlices, Pods, ServiceEntries) is
//! `routing::discovery`'s job.
//!
//! Active-request counts live in the process-wide [`LoadRegistry`], keyed by
//! endpoint address, so a config reload does not reset least-request state.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::cluster::ClusterPolicy;
use super::cluster_name::ClusterName;
use super::endpoint::Endpoint;
use super::lb::LbPolicy;
use super::load_registry::LoadRegistry;
use super::pick::{Candidates, PickRequest};
use crate::telemetry::live::LiveCounters;

/// The ready endpoints of one Service port (or one DestinationRule subset of
/// it), immutable, with their LB state: Envoy's cluster.
pub struct EndpointSet {
    endpoints: Vec<Arc<Endpoint>>,
    /// Parallel to `endpoints`, from the [`LoadRegistry`].
    active: Vec<Arc<AtomicU64>>,
    cluster: ClusterPolicy,
    next: AtomicUsize,
    /// The cluster's live counters (from the [`LoadRegistry`], by cluster
    /// name); `None` for an empty placeholder set, which serves no request.
    counters: Option<Arc<LiveCounters>>,
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSet")
            .field("cluster", &self.cluster)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Equal when the endpoints and policy are; LB counters are runtime state.
impl PartialEq for EndpointSet {
    fn eq(&self, other: &Self) -> bool {
        self.cluster == other.cluster && self.endpoints == other.endpoints
    }
}

/// A picked endpoint; holding it counts as one active request.
#[derive(Debug)]
pub struct Picked {
    /// The endpoint to send the request to.
    pub endpoint: Arc<Endpoint>,
    /// Keeps the endpoint's active-request count raised until dropped.
    pub guard: ActiveRequestGuard,
}

/// Decrements an endpoint's active-request count when dropped.
#[derive(Debug)]
pub struct ActiveRequestGuard(Arc<AtomicU64>);

impl ActiveRequestGuard {
    fn acquire(counter: &Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for ActiveRequestGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EndpointSet {
    /// Builds a set for `cluster`; duplicate addresses keep their first
    /// occurrence.
    pub(crate) fn with_cluster(
        endpoints: Vec<Endpoint>,
        cluster: ClusterPolicy,
        load: &LoadRegistry,
    ) -> Self {
        let mut seen = std::collections::HashSet::new();
        let endpoints: Vec<Arc<Endpoint>> = endpoints
            .into_iter()
            .filter(|e| seen.insert(e.addr))
            .map(Arc::new)
            .collect();
        let active = endpoints.iter().map(|e| load.counter(e.addr)).collect();
        let counters = Some(load.live.cluster(&cluster.name.0));
        Self {
            endpoints,
            active,
            cluster,
            next: AtomicUsize::new(0),
            counters,
        }
    }

    /// An empty set (a Service port with no ready endpoints).
    pub fn empty(policy: LbPolicy) -> Self {
        Self {
            endpoints: Vec::new(),
            active: Vec::new(),
            cluster: ClusterPolicy::plain(ClusterName(Arc::from("")), policy),
            next: AtomicUsize::new(0),
            counters: None,
        }
    }

    /// The cluster's name and DestinationRule policy.
    pub fn cluster(&self) -> &ClusterPolicy {
        &self.cluster
    }

    /// The cluster's live counters (requests, status classes, latency), bumped
    /// once per finished request routed here.
    pub fn counters(&self) -> Option<&Arc<LiveCounters>> {
        self.counters.as_ref()
    }

    /// Requests in flight to each endpoint, parallel to [`EndpointSet::endpoints`].
    pub fn active_requests(&self) -> impl Iterator<Item = u64> + '_ {
        self.active.iter().map(|a| a.load(Ordering::Relaxed))
    }

    /// True when no endpoint is ready (the proxy answers 503 UH).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Number of ready endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// The endpoints in discovery order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Picks one endpoint by the set's policy. Endpoints in `avoid` (those a
    /// retry already tried) are skipped if any other endpoint exists. Same as
    /// [`EndpointSet::pick_with`] with no hash and no locality.
    pub fn pick(&self, avoid: &[SocketAddr]) -> Option<Picked> {
        self.pick_with(&PickRequest {
            avoid,
            ..PickRequest::default()
        })
    }

    /// Picks one endpoint for an attempt; `None` when the set is empty.
    pub fn pick_with(&self, req: &PickRequest<'_>) -> Option<Picked> {
        let candidates = Candidates {
            endpoints: &self.endpoints,
            active: &self.active,
            cluster: &self.cluster,
            next: &self.next,
        };
        let index = candidates.choose(req)?;
        Some(Picked {
            endpoint: self.endpoints[index].clone(),
            guard: ActiveRequestGuard::acquire(&self.active[index]),
        })
    }
}

#[cfg(test)]
mod tests;
