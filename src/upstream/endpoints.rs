//! Endpoint sets of one Service port and how one endpoint is picked from them
//! (least request with two random choices, round robin, random, consistent
//! hash; outlier ejection and locality preference first: `pick`). Where endpoints
//! come from (EndpointSlices, Pods, ServiceEntries) is `discovery`'s job.
//!
//! Active-request counts live in the process-wide [`LoadRegistry`], keyed by
//! endpoint address, so a config reload does not reset least-request state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::cluster::{ClusterPolicy, Locality, PickRequest};
use super::LbPolicy;
use crate::config::NamespacedName;
use crate::policy::{ClusterName, PolicyRegistry};

/// Who runs behind an endpoint, for telemetry labels (Istio's
/// `destination_workload`, `destination_canonical_service`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Deployment-style name: the pod name without the ReplicaSet hash and
    /// pod suffix, or `unknown`.
    pub name: String,
    /// The workload's namespace, or `unknown`.
    pub namespace: String,
    /// `service.istio.io/canonical-name` | `app.kubernetes.io/name` | `app` | name.
    pub canonical_service: String,
    /// `service.istio.io/canonical-revision` | `app.kubernetes.io/version` | `version` | `latest`.
    pub canonical_revision: String,
}

impl WorkloadInfo {
    /// The values used when no Pod is known for an endpoint.
    pub fn unknown() -> Self {
        let u = || "unknown".to_string();
        Self {
            name: u(),
            namespace: u(),
            canonical_service: u(),
            canonical_revision: u(),
        }
    }
}

/// One ready endpoint of a Service port.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `ip:targetPort`.
    pub addr: SocketAddr,
    /// The Pod behind it, when known.
    pub pod: Option<NamespacedName>,
    /// Telemetry identity of the workload.
    pub workload: WorkloadInfo,
    /// True when the Pod is captured by ambient (reach it over HBONE).
    pub in_mesh: bool,
    /// Pod (or WorkloadEntry) labels.
    pub labels: BTreeMap<String, String>,
    /// Topology zone from the EndpointSlice.
    pub zone: Option<String>,
    /// Region/zone for locality-aware LB: the EndpointSlice `zone` (region
    /// unknown) or a ServiceEntry endpoint's `locality`.
    pub locality: Option<Locality>,
}

/// Process-wide active-request counters by endpoint address, shared by every
/// snapshot so least-request state survives reloads; and the DestinationRule
/// runtime state (pool limiters, outlier detectors) for the same reason.
#[derive(Debug, Default)]
pub struct LoadRegistry {
    counters: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
    /// Limiters and outlier detectors by cluster name.
    pub policies: PolicyRegistry,
}

impl LoadRegistry {
    /// The counter for `addr`, created at zero on first use.
    pub(crate) fn counter(&self, addr: SocketAddr) -> Arc<AtomicU64> {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(addr).or_default().clone()
    }

    /// Requests currently in flight to `addr`.
    pub fn active(&self, addr: SocketAddr) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&addr).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Forgets counters no snapshot or request holds any more.
    pub(crate) fn prune(&self) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, c| Arc::strong_count(c) > 1);
    }
}

/// The ready endpoints of one Service port (or one DestinationRule subset of
/// it), immutable, with their LB state: Envoy's cluster.
pub struct EndpointSet {
    endpoints: Vec<Arc<Endpoint>>,
    /// Parallel to `endpoints`, from the [`LoadRegistry`].
    active: Vec<Arc<AtomicU64>>,
    cluster: ClusterPolicy,
    next: AtomicUsize,
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
        Self {
            endpoints,
            active,
            cluster,
            next: AtomicUsize::new(0),
        }
    }

    /// An empty set (a Service port with no ready endpoints).
    pub fn empty(policy: LbPolicy) -> Self {
        Self {
            endpoints: Vec::new(),
            active: Vec::new(),
            cluster: ClusterPolicy::plain(ClusterName(Arc::from("")), policy),
            next: AtomicUsize::new(0),
        }
    }

    /// The cluster's name and DestinationRule policy.
    pub fn cluster(&self) -> &ClusterPolicy {
        &self.cluster
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
}

mod pick;

#[cfg(test)]
mod tests;
