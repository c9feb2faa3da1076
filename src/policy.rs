//! Traffic policy: what happens to a request between "route matched" and
//! "response sent" — retries, timeouts, fault injection, connection-pool
//! limits (circuit breaking) and outlier detection — with Envoy's semantics,
//! since users alert on Envoy's status codes and response flags.
//!
//! The types here are compiled from VirtualService / DestinationRule (and
//! Gateway API `timeouts` / `retry`) by `routing`, and applied by the proxy
//! phases. Runtime state that must survive config reloads (breaker counters,
//! ejections) lives in [`PolicyRegistry`], keyed by destination.

pub mod fault;
pub mod hash;
pub mod outlier;
pub mod pool;
pub mod retry;

// Per-request decisions that `proxy/attempts` and `proxy/admission` apply.
pub mod admission;
pub mod deadline;

pub use fault::{Abort, FaultAction, FaultPolicy, Percentage};
pub use hash::{request_hash, HashKey};
pub use outlier::{OutlierDetection, OutlierDetector};
pub use pool::{ConnectionPool, Overflow, PoolGuard, PoolLimiter};
pub use retry::{RetryOn, RetryPolicy};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Identifies a destination's policy state: `host|port|subset` as Envoy
/// names clusters (`outbound|9080|v1|reviews.default.svc.cluster.local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(pub Arc<str>);

impl ClusterName {
    pub fn new(port: u16, subset: Option<&str>, host: &str) -> Self {
        Self(Arc::from(format!(
            "outbound|{port}|{}|{host}",
            subset.unwrap_or("")
        )))
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Process-wide runtime state of every destination's policies, shared by all
/// snapshots so counters and ejections survive a reload.
#[derive(Debug, Default)]
pub struct PolicyRegistry {
    limiters: Mutex<HashMap<ClusterName, Arc<PoolLimiter>>>,
    detectors: Mutex<HashMap<ClusterName, Arc<OutlierDetector>>>,
}

impl PolicyRegistry {
    /// The limiter for `cluster`, with `limits` applied (updated in place on reload).
    pub fn limiter(&self, cluster: &ClusterName, limits: &ConnectionPool) -> Arc<PoolLimiter> {
        let mut map = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        let l = map
            .entry(cluster.clone())
            .or_insert_with(|| Arc::new(PoolLimiter::new(cluster.clone(), limits.clone())));
        l.update(limits.clone());
        l.clone()
    }

    /// The outlier detector for `cluster`, with `config` applied.
    pub fn detector(
        &self,
        cluster: &ClusterName,
        config: &OutlierDetection,
    ) -> Arc<OutlierDetector> {
        let mut map = self.detectors.lock().unwrap_or_else(|e| e.into_inner());
        let d = map
            .entry(cluster.clone())
            .or_insert_with(|| Arc::new(OutlierDetector::new(config.clone())));
        d.update(config.clone());
        d.clone()
    }
}
