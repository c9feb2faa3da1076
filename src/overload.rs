//! Shedding work before the waypoint falls over, as Envoy's overload manager does for
//! its proxies: a cap on downstream connections (global and per caller identity), and,
//! past the configured in-flight request or memory thresholds, new requests answered
//! `503` with flag `OM` and `x-envoy-overloaded: true` (`UO` stays the circuit breaker's
//! flag). Under memory pressure the listeners also stop accepting, so the kernel's
//! backlog holds new connections instead of the waypoint's heap; readiness turns 503.
//! Everything recovers by itself once the pressure is gone.
//!
//! Owns the counts and the memory sampler; the listeners, the HBONE server and the
//! request phases call in. The request path pays one atomic add and one compare when a
//! threshold is configured, nothing otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::identity::Identity;
use crate::telemetry::Metrics;

/// The thresholds (`waypoint run` flags `--max-downstream-connections`,
/// `--max-connections-per-identity`, `--overload-max-active-requests`,
/// `--overload-max-rss`).
#[derive(Debug, Clone, PartialEq)]
pub struct OverloadConfig {
    /// Open downstream connections (all listeners; an HBONE connection counts once,
    /// whatever its streams). Past it a new connection is closed at once.
    pub max_connections: Option<usize>,
    /// Open HBONE connections of one caller identity (a hostile pod cannot take every
    /// connection slot). Past it the connection is closed after the handshake.
    pub max_connections_per_identity: Option<usize>,
    /// Requests in flight; past it new requests are shed.
    pub max_active_requests: Option<usize>,
    /// Resident memory, bytes; above it new requests are shed and no connection is
    /// accepted until it falls below 95 % of it.
    pub max_rss_bytes: Option<u64>,
    /// How often resident memory is read (`/proc/self/status`).
    pub rss_check_interval: Duration,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_connections_per_identity: None,
            max_active_requests: None,
            max_rss_bytes: None,
            rss_check_interval: Duration::from_millis(250),
        }
    }
}

/// Default of `--max-downstream-connections`: far above what a waypoint Deployment's
/// file-descriptor limit lets it serve well, so it only bounds a flood.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Why a connection or request was refused, as `waypoint_downstream_limits_total`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Connections,
    ConnectionsPerIdentity,
    ActiveRequests,
    Memory,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Connections => "connections",
            Refused::ConnectionsPerIdentity => "connections_per_identity",
            Refused::ActiveRequests => "overload_active_requests",
            Refused::Memory => "overload_memory",
        }
    }
}

/// The overload state of one waypoint.
pub struct Overload {
    cfg: OverloadConfig,
    /// Where refusals are counted; `None` for [`Overload::unlimited`].
    metrics: Option<Arc<Metrics>>,
    connections: AtomicUsize,
    per_identity: Mutex<HashMap<Identity, usize>>,
    active_requests: AtomicUsize,
    memory_pressure: AtomicBool,
    relieved: Notify,
}

impl std::fmt::Debug for Overload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overload")
            .field("cfg", &self.cfg)
            .field("connections", &self.connections)
            .field("active_requests", &self.active_requests)
            .field("memory_pressure", &self.memory_pressure)
            .finish()
    }
}

impl Overload {
    pub fn new(cfg: OverloadConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::build(cfg, Some(metrics))
    }

    fn build(cfg: OverloadConfig, metrics: Option<Arc<Metrics>>) -> Arc<Self> {
        Arc::new(Overload {
            cfg,
            metrics,
            connections: AtomicUsize::new(0),
            per_identity: Mutex::new(HashMap::new()),
            active_requests: AtomicUsize::new(0),
            memory_pressure: AtomicBool::new(false),
            relieved: Notify::new(),
        })
    }

    /// No limit at all (tests and tools that build a server piece by piece).
    pub fn unlimited() -> Arc<Self> {
        let cfg = OverloadConfig {
            max_connections: None,
            ..OverloadConfig::default()
        };
        Self::build(cfg, None)
    }

    fn refuse(&self, why: Refused) -> Refused {
        if let Some(m) = &self.metrics {
            m.record_downstream_limit(why.label());
        }
        why
    }

    /// Takes a connection slot; the connection closes at once on `Err`.
    pub fn admit_connection(self: &Arc<Self>) -> Result<ConnectionPermit, Refused> {
        let open = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = ConnectionPermit {
            overload: self.clone(),
            identity: None,
        };
        match self.cfg.max_connections {
            Some(max) if open > max => {
                drop(permit);
                Err(self.refuse(Refused::Connections))
            }
            _ => Ok(permit),
        }
    }

    /// Counts the connection against its caller's identity (after the handshake).
    pub fn admit_identity(
        &self,
        permit: &mut ConnectionPermit,
        identity: &Identity,
    ) -> Result<(), Refused> {
        let Some(max) = self.cfg.max_connections_per_identity else {
            return Ok(());
        };
        let mut counts = self.per_identity.lock().expect("not poisoned");
        let open = counts.entry(identity.clone()).or_insert(0);
        if *open >= max {
            drop(counts);
            return Err(self.refuse(Refused::ConnectionsPerIdentity));
        }
        *open += 1;
        permit.identity = Some(identity.clone());
        Ok(())
    }

    /// Admits a new request, or says (and counts) why it is shed. The guard counts it
    /// in flight.
    pub fn admit_request(self: &Arc<Self>) -> Result<Option<ActiveRequest>, Refused> {
        self.try_admit_request().map_err(|why| self.refuse(why))
    }

    /// [`Overload::admit_request`] without counting a refusal, for a caller that hands
    /// a refused request to one that answers it.
    pub fn try_admit_request(self: &Arc<Self>) -> Result<Option<ActiveRequest>, Refused> {
        if self.memory_pressure.load(Ordering::Relaxed) {
            return Err(Refused::Memory);
        }
        let Some(max) = self.cfg.max_active_requests else {
            return Ok(None);
        };
        let active = self.active_requests.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = ActiveRequest(self.clone());
        if active > max {
            return Err(Refused::ActiveRequests);
        }
        Ok(Some(guard))
    }

    /// Whether new work is being shed now (readiness reports it).
    pub fn is_overloaded(&self) -> bool {
        self.memory_pressure.load(Ordering::Relaxed)
            || self
                .cfg
                .max_active_requests
                .is_some_and(|max| self.active_requests.load(Ordering::Relaxed) >= max)
    }

    /// What an accept loop does with a connection it just accepted: waits out memory
    /// pressure that began while it waited in `accept` (this one connection is held
    /// unserved, the rest wait in the backlog), then takes a connection slot.
    pub async fn admit_accepted(
        self: &Arc<Self>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Accepted {
        tokio::select! {
            _ = self.accepting() => {}
            _ = shutdown.changed() => return Accepted::ShuttingDown,
        }
        match self.admit_connection() {
            Ok(permit) => Accepted::Serve(permit),
            Err(_) => Accepted::Refused,
        }
    }

    /// Returns once the listeners may accept: at once, or when memory pressure ends.
    pub async fn accepting(&self) {
        loop {
            let relieved = self.relieved.notified();
            if !self.memory_pressure.load(Ordering::Acquire) {
                return;
            }
            relieved.await;
        }
    }

    /// Reads resident memory every `rss_check_interval` until `shutdown`; a no-op
    /// without `max_rss_bytes`.
    pub async fn watch_memory(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(max) = self.cfg.max_rss_bytes else {
            return;
        };
        let mut tick = tokio::time::interval(self.cfg.rss_check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(rss) = resident_bytes() else {
                warn!("cannot read /proc/self/status: --overload-max-rss is not enforced");
                return;
            };
            self.observe_rss(rss, max);
        }
    }

    fn observe_rss(&self, rss: u64, max: u64) {
        let pressed = self.memory_pressure.load(Ordering::Acquire);
        // Hysteresis: resume below 95 %, so the state does not flap at the line.
        if !pressed && rss > max {
            warn!(rss, max, "overloaded: resident memory above --overload-max-rss; shedding new requests and not accepting connections");
            self.memory_pressure.store(true, Ordering::Release);
        } else if pressed && rss < max / 100 * 95 {
            info!(rss, max, "memory pressure relieved; accepting again");
            self.memory_pressure.store(false, Ordering::Release);
            self.relieved.notify_waiters();
        }
    }
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`, in kB there).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A memory size as users write it in a Pod's `resources.limits.memory`: bytes, or a
/// number with `Ki`/`Mi`/`Gi` (×1024ⁿ, also spelt `KiB`…) or `K`/`M`/`G` (×1000ⁿ).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512Mi or 2Gi"))?;
    let scale: u64 = match unit.trim_end_matches('B') {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: Ki, Mi, Gi, K, M or G"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// [`Overload::admit_accepted`]'s verdict.
pub enum Accepted {
    /// Serve it, holding the permit until it closes.
    Serve(ConnectionPermit),
    /// Past `--max-downstream-connections`: close it (counted).
    Refused,
    /// The listener is stopping.
    ShuttingDown,
}

/// A connection's slot; released when the connection ends.
pub struct ConnectionPermit {
    overload: Arc<Overload>,
    identity: Option<Identity>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.overload.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(id) = self.identity.take() {
            let mut counts = self.overload.per_identity.lock().expect("not poisoned");
            if let Some(n) = counts.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&id);
                }
            }
        }
    }
}

/// A request in flight; counted until dropped with the request's context.
pub struct ActiveRequest(Arc<Overload>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overload(cfg: OverloadConfig) -> (Arc<Overload>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        (Overload::new(cfg, metrics.clone()), metrics)
    }

    fn refused(metrics: &Metrics, limit: &str) -> bool {
        metrics.encode().lines().any(|l| {
            l.starts_with("waypoint_downstream_limits_total")
                && l.contains(&format!("limit=\"{limit}\""))
                && l.ends_with(" 1")
        })
    }

    #[test]
    fn connections_are_capped_and_released() {
        let (o, metrics) = overload(OverloadConfig {
            max_connections: Some(2),
            ..OverloadConfig::default()
        });
        let a = o.admit_connection().unwrap();
        let _b = o.admit_connection().unwrap();
        assert_eq!(o.admit_connection().err(), Some(Refused::Connections));
        assert!(refused(&metrics, "connections"));
        drop(a);
        assert!(o.admit_connection().is_ok());
    }

    #[test]
    fn one_identity_cannot_take_every_slot() {
        let (o, metrics) = overload(OverloadConfig {
            max_connections_per_identity: Some(1),
            ..OverloadConfig::default()
        });
        let hostile: Identity = "spiffe://cluster.local/ns/a/sa/hostile".parse().unwrap();
        let other: Identity = "spiffe://cluster.local/ns/b/sa/other".parse().unwrap();
        let mut first = o.admit_connection().unwrap();
        o.admit_identity(&mut first, &hostile).unwrap();
        let mut second = o.admit_connection().unwrap();
        assert_eq!(
            o.admit_identity(&mut second, &hostile),
            Err(Refused::ConnectionsPerIdentity)
        );
        assert!(refused(&metrics, "connections_per_identity"));
        let mut third = o.admit_connection().unwrap();
        o.admit_identity(&mut third, &other).unwrap();
        drop(first);
        let mut again = o.admit_connection().unwrap();
        o.admit_identity(&mut again, &hostile).unwrap();
    }

    #[test]
    fn requests_are_shed_past_the_in_flight_threshold() {
        let (o, metrics) = overload(OverloadConfig {
            max_active_requests: Some(1),
            ..OverloadConfig::default()
        });
        let first = o.admit_request().unwrap();
        assert!(o.is_overloaded());
        assert_eq!(o.admit_request().err(), Some(Refused::ActiveRequests));
        assert!(refused(&metrics, "overload_active_requests"));
        drop(first);
        assert!(!o.is_overloaded());
        assert!(o.admit_request().is_ok());
    }

    #[test]
    fn memory_pressure_sheds_until_below_95_percent() {
        let (o, _) = overload(OverloadConfig::default());
        assert!(
            o.admit_request().unwrap().is_none(),
            "nothing counted without a threshold"
        );
        o.observe_rss(1_001, 1_000);
        assert!(o.is_overloaded());
        assert_eq!(o.admit_request().err(), Some(Refused::Memory));
        o.observe_rss(960, 1_000);
        assert!(o.is_overloaded(), "hysteresis: still above 95 %");
        o.observe_rss(940, 1_000);
        assert!(!o.is_overloaded());
    }

    #[tokio::test]
    async fn accepting_waits_for_relief() {
        let (o, _) = overload(OverloadConfig::default());
        o.observe_rss(2_000, 1_000);
        let waiting = tokio::spawn({
            let o = o.clone();
            async move { o.accepting().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        o.observe_rss(10, 1_000);
        waiting.await.unwrap();
    }

    #[test]
    fn sizes_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("300M"), Ok(300_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12Ti").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn resident_memory_is_readable() {
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
    }
}
