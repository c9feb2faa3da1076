//! Live counters for the admin page: per route and per cluster, requests by
//! status class and a fixed-bucket latency histogram, all plain atomics.
//!
//! The counters are created when a config is compiled and hung off the
//! compiled route rule / endpoint set, so the `logging` phase bumps them with
//! a few relaxed atomic adds: no lookup, no lock, no allocation per request.
//! They only ever grow; the admin page derives rates and p50/p99 over its own
//! polling interval from the difference of two reads. A [`LiveRegistry`],
//! kept across reloads, hands the same counters to the recompiled route or
//! cluster of the same name so a reload does not reset the page.
//!
//! This module owns the counters and their registry; who holds them is
//! `routing`'s and `upstream`'s business, who reads them the admin's.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;

/// Upper bounds (inclusive, in microseconds) of the latency buckets; one more
/// bucket counts everything slower. Finer than Envoy's default buckets at the
/// low end, where a proxy's p50 lives, so a p50 read from them is useful.
pub const LATENCY_BOUNDS_US: [u64; 20] = [
    250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 75_000, 100_000,
    250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Monotonic counters of one route or cluster.
#[derive(Default)]
pub struct LiveCounters {
    requests: AtomicU64,
    /// By status class: index 0 is "no response written", 1..=5 the class.
    by_class: [AtomicU64; 6],
    latency: [AtomicU64; BUCKETS],
}

impl fmt::Debug for LiveCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveCounters")
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish()
    }
}

/// Counters are runtime state, not config: a decision or plan that carries
/// them compares equal whatever they counted.
impl PartialEq for LiveCounters {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl LiveCounters {
    /// Counts one finished request: `status` 0 when no response was written.
    pub fn record(&self, status: u16, duration: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = usize::from(status / 100).min(5);
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy for the admin endpoints (each counter is read
    /// once; they may be a request apart, which a rate never notices).
    pub fn read(&self) -> CountersView {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersView {
            requests: load(&self.requests),
            no_response: load(&self.by_class[0]),
            status_1xx: load(&self.by_class[1]),
            status_2xx: load(&self.by_class[2]),
            status_3xx: load(&self.by_class[3]),
            status_4xx: load(&self.by_class[4]),
            status_5xx: load(&self.by_class[5]),
            latency_buckets: self.latency.iter().map(load).collect(),
        }
    }
}

/// What [`LiveCounters::read`] returns, as `/stats/live` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountersView {
    pub requests: u64,
    /// Requests that ended before any response head was written.
    pub no_response: u64,
    #[serde(rename = "1xx")]
    pub status_1xx: u64,
    #[serde(rename = "2xx")]
    pub status_2xx: u64,
    #[serde(rename = "3xx")]
    pub status_3xx: u64,
    #[serde(rename = "4xx")]
    pub status_4xx: u64,
    #[serde(rename = "5xx")]
    pub status_5xx: u64,
    /// Counts per bucket of [`LATENCY_BOUNDS_US`], plus the overflow bucket.
    pub latency_buckets: Vec<u64>,
}

/// A compiled object's counters, set once at compile time. Compiled types
/// compare by config, so two slots are always equal: counters are runtime
/// state, not config.
#[derive(Default)]
pub struct CountersSlot(OnceLock<Arc<LiveCounters>>);

impl CountersSlot {
    /// A slot holding `counters`.
    pub fn with(counters: Arc<LiveCounters>) -> Self {
        let slot = Self::default();
        slot.set(counters);
        slot
    }

    /// Fills the slot; a slot already filled keeps its counters (a rule
    /// shared by several Service ports is visited once per port).
    pub fn set(&self, counters: Arc<LiveCounters>) {
        let _ = self.0.set(counters);
    }

    /// The counters, once the compiler has set them.
    pub fn get(&self) -> Option<&Arc<LiveCounters>> {
        self.0.get()
    }
}

impl PartialEq for CountersSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for CountersSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountersSlot")
    }
}

/// The counters by route and by cluster name, kept across reloads.
#[derive(Debug, Default)]
pub struct LiveRegistry {
    routes: Mutex<HashMap<String, Arc<LiveCounters>>>,
    clusters: Mutex<HashMap<String, Arc<LiveCounters>>>,
}

impl LiveRegistry {
    /// The counters of the route `key` (`Kind namespace/name`), created at
    /// zero the first time a config has it.
    pub fn route(&self, key: &str) -> Arc<LiveCounters> {
        Self::entry(&self.routes, key)
    }

    /// The counters of the cluster `name` (`outbound|port|subset|host`).
    pub fn cluster(&self, name: &str) -> Arc<LiveCounters> {
        Self::entry(&self.clusters, name)
    }

    fn entry(map: &Mutex<HashMap<String, Arc<LiveCounters>>>, key: &str) -> Arc<LiveCounters> {
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = map.get(key) {
            return found.clone();
        }
        let fresh = Arc::new(LiveCounters::default());
        map.insert(key.to_string(), fresh.clone());
        fresh
    }

    /// Forgets the counters of routes and clusters no snapshot holds any
    /// more (removed from the config), so the registry does not grow forever.
    pub fn prune(&self) {
        for map in [&self.routes, &self.clusters] {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, c| Arc::strong_count(c) > 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_class_and_bucket() {
        let c = LiveCounters::default();
        c.record(200, Duration::from_micros(250));
        c.record(503, Duration::from_micros(251));
        c.record(0, Duration::from_secs(60));
        let v = c.read();
        assert_eq!(v.requests, 3);
        assert_eq!((v.status_2xx, v.status_5xx, v.no_response), (1, 1, 1));
        // 250 µs is inside the first bucket (inclusive bound), 251 µs the second.
        assert_eq!(v.latency_buckets[0], 1);
        assert_eq!(v.latency_buckets[1], 1);
        assert_eq!(v.latency_buckets[BUCKETS - 1], 1, "overflow bucket");
    }

    #[test]
    fn registry_reuses_counters_by_name_and_prunes_unheld_ones() {
        let reg = LiveRegistry::default();
        let a = reg.route("HTTPRoute default/reviews");
        a.record(200, Duration::ZERO);
        let again = reg.route("HTTPRoute default/reviews");
        assert_eq!(again.read().requests, 1, "same counters after a reload");
        drop((a, again));
        reg.prune();
        assert_eq!(reg.route("HTTPRoute default/reviews").read().requests, 0);
    }

    #[test]
    fn slots_compare_equal_so_reload_detection_ignores_counters() {
        let a = CountersSlot::with(Arc::default());
        let b = CountersSlot::default();
        assert_eq!(a, b);
    }
}
