//! Outlier detection (DestinationRule `outlierDetection`): an endpoint that
//! returns too many consecutive errors is ejected — gets no traffic — for
//! `baseEjectionTime × times ejected`, unless that would eject more than
//! `maxEjectionPercent` of the destination's endpoints.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tracing::info;

/// DestinationRule `outlierDetection`, compiled with Envoy's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (default 5; 0 disables). 5xx responses and
    /// local-origin failures (connect failure, reset, timeout) count.
    pub consecutive_5xx: u32,
    /// `consecutiveGatewayErrors` (502/503/504 and local-origin failures; 0 = off).
    pub consecutive_gateway: u32,
    /// `interval` between ejection sweeps (default 10 s). Ejections here
    /// happen at the failing response; `interval` bounds how late an
    /// endpoint returns after its ejection time.
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s).
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

/// The outcome of one attempt, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// Connect failure, reset or timeout (Envoy's local-origin errors).
    LocalFailure,
}

#[derive(Debug, Default)]
struct HostState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    times_ejected: u32,
    ejected_until: Option<Instant>,
}

/// Runtime outlier state of one destination.
#[derive(Debug)]
pub struct OutlierDetector {
    config: ArcSwap<OutlierDetection>,
    hosts: Mutex<HashMap<SocketAddr, HostState>>,
}

impl OutlierDetector {
    pub fn new(config: OutlierDetection) -> Self {
        Self {
            config: ArcSwap::from_pointee(config),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration currently applied.
    pub fn config(&self) -> OutlierDetection {
        OutlierDetection::clone(&self.config.load())
    }

    pub fn update(&self, config: OutlierDetection) {
        if **self.config.load() != config {
            self.config.store(std::sync::Arc::new(config));
        }
    }

    /// True when `addr` must get no traffic now.
    pub fn is_ejected(&self, addr: SocketAddr) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .get(&addr)
            .and_then(|h| h.ejected_until)
            .is_some_and(|until| Instant::now() < until)
    }

    /// How much longer `addr` stays ejected, when it is (for `/clusters`).
    pub fn ejected_for(&self, addr: SocketAddr) -> Option<Duration> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let until = hosts.get(&addr).and_then(|h| h.ejected_until)?;
        until.checked_duration_since(Instant::now())
    }

    /// Records an attempt's outcome against `addr`; `total` is the number of
    /// endpoints of the destination (for `maxEjectionPercent`).
    pub fn report(&self, addr: SocketAddr, outcome: Outcome, total: usize) {
        let config = self.config.load();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let ejected_now = hosts
            .values()
            .filter(|h| h.ejected_until.is_some_and(|u| now < u))
            .count();
        let host = hosts.entry(addr).or_default();
        if host.ejected_until.is_some_and(|u| now >= u) {
            host.ejected_until = None;
        }
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(code) => ((500..600).contains(&code), matches!(code, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if !is_5xx {
            host.consecutive_5xx = 0;
            host.consecutive_gateway = 0;
            return;
        }
        host.consecutive_5xx += 1;
        if is_gateway {
            host.consecutive_gateway += 1;
        } else {
            host.consecutive_gateway = 0;
        }
        let tripped = (config.consecutive_5xx > 0
            && host.consecutive_5xx >= config.consecutive_5xx)
            || (config.consecutive_gateway > 0
                && host.consecutive_gateway >= config.consecutive_gateway);
        if !tripped || host.ejected_until.is_some() {
            return;
        }
        // Envoy ejects while the ejected share stays below the maximum.
        let share = ejected_now as f64 * 100.0 / total.max(1) as f64;
        if share >= f64::from(config.max_ejection_percent) {
            return;
        }
        host.times_ejected += 1;
        host.consecutive_5xx = 0;
        host.consecutive_gateway = 0;
        let duration = config.base_ejection_time.saturating_mul(host.times_ejected);
        host.ejected_until = Some(now + duration);
        info!(%addr, ?duration, times = host.times_ejected, "endpoint ejected (outlier detection)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], 80))
    }

    fn detector(max_percent: u32) -> OutlierDetector {
        OutlierDetector::new(OutlierDetection {
            consecutive_5xx: 3,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: max_percent,
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_eject_for_base_times_count() {
        let d = detector(100);
        for _ in 0..2 {
            d.report(addr(1), Outcome::Status(500), 2);
        }
        assert!(!d.is_ejected(addr(1)));
        // A success resets the streak.
        d.report(addr(1), Outcome::Status(200), 2);
        for _ in 0..3 {
            d.report(addr(1), Outcome::LocalFailure, 2);
        }
        assert!(d.is_ejected(addr(1)));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(!d.is_ejected(addr(1)), "returns after the ejection time");
        // Second ejection lasts twice as long.
        for _ in 0..3 {
            d.report(addr(1), Outcome::Status(503), 2);
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(d.is_ejected(addr(1)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!d.is_ejected(addr(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_is_respected() {
        let d = detector(50);
        for i in 1..=2 {
            for _ in 0..3 {
                d.report(addr(i), Outcome::Status(500), 2);
            }
        }
        assert!(d.is_ejected(addr(1)));
        assert!(!d.is_ejected(addr(2)), "a second ejection would exceed 50%");
        // 4xx never counts.
        let d = detector(100);
        for _ in 0..10 {
            d.report(addr(3), Outcome::Status(404), 1);
        }
        assert!(!d.is_ejected(addr(3)));
    }
}
