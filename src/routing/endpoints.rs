//! Endpoint sets of one Service port and how one endpoint is picked from them
//! (least request with two random choices, or round robin). Where endpoints
//! come from (EndpointSlices, Pods, ServiceEntries) is `discovery`'s job.
//!
//! Active-request counts live in the process-wide [`LoadRegistry`], keyed by
//! endpoint address, so a config reload does not reset least-request state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;

use super::LbPolicy;
use crate::config::NamespacedName;

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
}

/// Process-wide active-request counters by endpoint address, shared by every
/// snapshot so least-request state survives reloads.
#[derive(Debug, Default)]
pub struct LoadRegistry {
    counters: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
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

/// The ready endpoints of one Service port, immutable, with their LB state.
pub struct EndpointSet {
    endpoints: Vec<Arc<Endpoint>>,
    /// Parallel to `endpoints`, from the [`LoadRegistry`].
    active: Vec<Arc<AtomicU64>>,
    policy: LbPolicy,
    next: AtomicUsize,
}

impl fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSet")
            .field("policy", &self.policy)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Equal when the endpoints and policy are; LB counters are runtime state.
impl PartialEq for EndpointSet {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy && self.endpoints == other.endpoints
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
    /// Builds a set; duplicate addresses keep their first occurrence.
    pub(crate) fn new(endpoints: Vec<Endpoint>, policy: LbPolicy, load: &LoadRegistry) -> Self {
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
            policy,
            next: AtomicUsize::new(0),
        }
    }

    /// An empty set (a Service port with no ready endpoints).
    pub fn empty(policy: LbPolicy) -> Self {
        Self {
            endpoints: Vec::new(),
            active: Vec::new(),
            policy,
            next: AtomicUsize::new(0),
        }
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
    /// retry already tried) are skipped if any other endpoint exists.
    pub fn pick(&self, avoid: &[SocketAddr]) -> Option<Picked> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let skip = |i: usize| avoid.contains(&self.endpoints[i].addr);
        // Only when an alternative exists do we honour `avoid`.
        let honour_avoid = !avoid.is_empty() && (0..n).any(|i| !skip(i));
        let index = match self.policy {
            LbPolicy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| start.wrapping_add(k) % n)
                    .find(|&i| !honour_avoid || !skip(i))?
            }
            LbPolicy::LeastRequest => {
                if honour_avoid {
                    let allowed: Vec<usize> = (0..n).filter(|&i| !skip(i)).collect();
                    self.p2c(allowed.len(), |k| allowed[k])
                } else {
                    self.p2c(n, |k| k)
                }
            }
        };
        Some(Picked {
            endpoint: self.endpoints[index].clone(),
            guard: ActiveRequestGuard::acquire(&self.active[index]),
        })
    }

    /// Power of two choices over `m` candidates mapped to set indices by
    /// `at`: two distinct random candidates, the one with fewer active
    /// requests wins (the first on a tie).
    fn p2c(&self, m: usize, at: impl Fn(usize) -> usize) -> usize {
        if m == 1 {
            return at(0);
        }
        let mut rng = rand::rng();
        let a = rng.random_range(0..m);
        let mut b = rng.random_range(0..m - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (at(a), at(b));
        let load = |i: usize| self.active[i].load(Ordering::Relaxed);
        if load(b) < load(a) {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests;
