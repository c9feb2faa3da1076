//! Process-wide load-balancing and admission state that must survive config
//! reloads: active-request counters by endpoint (least request), and per
//! cluster the pool limiters (circuit breaking) and outlier detectors. Every
//! snapshot's endpoint sets share it, so a reload resets nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::cluster_name::ClusterName;
use super::outlier::{OutlierDetection, OutlierDetector};
use super::pool::{ConnectionPool, PoolLimiter};
use crate::telemetry::live::LiveRegistry;

/// Process-wide active-request counters by endpoint address, shared by every
/// snapshot so least-request state survives reloads; and the DestinationRule
/// runtime state (pool limiters, outlier detectors) for the same reason.
#[derive(Debug, Default)]
pub struct LoadRegistry {
    counters: Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>,
    /// Limiters and outlier detectors by cluster name.
    pub policies: PolicyRegistry,
    /// The admin page's counters by route and cluster name.
    pub live: LiveRegistry,
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

    /// How many endpoints have a counter (for tests of `prune`).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.len()
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
