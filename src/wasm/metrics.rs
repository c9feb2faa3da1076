//! Metrics: the host's own (`waypoint_wasm_plugin_failures_total`) and the
//! ones plugins define with `proxy_define_metric`, exported to the
//! process's Prometheus registry. Plugin metrics are keyed by name and live as
//! long as the host, so a reloaded plugin keeps counting where it left off
//! (Envoy keeps stats across VM restarts too).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::abi::{MetricType, Status};

/// Why a plugin failed a request, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// A callback ran past its epoch deadline.
    Timeout,
    /// The instance hit its memory cap.
    MemoryLimit,
    /// Any other trap (unreachable, out-of-bounds, a guest panic).
    Trap,
    /// The instance was recreated while this request's context lived in it.
    InstanceLost,
    /// A fresh instance failed to start (vm_start/configure returned false or trapped).
    StartFailed,
}

impl FailureReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::MemoryLimit => "memory_limit",
            FailureReason::Trap => "trap",
            FailureReason::InstanceLost => "instance_lost",
            FailureReason::StartFailed => "start_failed",
        }
    }
}

enum PluginMetric {
    Counter(IntCounter),
    Gauge(IntGauge),
    Histogram(Histogram),
}

/// Host and plugin metrics registered in one registry.
pub struct WasmMetrics {
    registry: Registry,
    failures: IntCounterVec,
    by_name: Mutex<HashMap<String, u32>>,
    by_id: RwLock<Vec<(MetricType, PluginMetric)>>,
}

impl WasmMetrics {
    /// Registers the host's metrics in `registry`.
    pub fn new(registry: &Registry) -> WasmMetrics {
        let failures = IntCounterVec::new(
            Opts::new(
                "waypoint_wasm_plugin_failures_total",
                "Wasm plugin failures (trap, timeout, memory limit) by plugin and reason.",
            ),
            &["plugin", "reason"],
        )
        .expect("static metric definition is valid");
        if let Err(e) = registry.register(Box::new(failures.clone())) {
            tracing::warn!(error = %e, "wasm failure metric not registered");
        }
        WasmMetrics {
            registry: registry.clone(),
            failures,
            by_name: Mutex::new(HashMap::new()),
            by_id: RwLock::new(Vec::new()),
        }
    }

    /// Counts one failure of `plugin`.
    pub fn count_failure(&self, plugin: &str, reason: FailureReason) {
        self.failures
            .with_label_values(&[plugin, reason.as_str()])
            .inc();
    }

    /// Failures counted so far (for tests and `/config_dump`).
    pub fn failures(&self, plugin: &str, reason: FailureReason) -> u64 {
        self.failures
            .with_label_values(&[plugin, reason.as_str()])
            .get()
    }

    /// `proxy_define_metric`: the id of `name`, defining it on first use.
    /// Redefining a name with another type is `BadArgument`.
    pub(crate) fn define(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        let prom_name = sanitize(name);
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_id = self.by_id.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = by_name.get(&prom_name) {
            return match by_id.get(id as usize) {
                Some((k, _)) if *k == kind => Ok(id),
                _ => Err(Status::BadArgument),
            };
        }
        let help = format!("proxy-wasm plugin metric {name}");
        let metric = match kind {
            MetricType::Counter => IntCounter::new(&prom_name, &help).map(PluginMetric::Counter),
            MetricType::Gauge => IntGauge::new(&prom_name, &help).map(PluginMetric::Gauge),
            MetricType::Histogram => Histogram::with_opts(HistogramOpts::new(&prom_name, &help))
                .map(PluginMetric::Histogram),
        }
        .map_err(|_| Status::BadArgument)?;
        let collector: Box<dyn prometheus::core::Collector> = match &metric {
            PluginMetric::Counter(m) => Box::new(m.clone()),
            PluginMetric::Gauge(m) => Box::new(m.clone()),
            PluginMetric::Histogram(m) => Box::new(m.clone()),
        };
        if let Err(e) = self.registry.register(collector) {
            // Still usable by the plugin; only the export is missing.
            tracing::warn!(metric = %prom_name, error = %e, "plugin metric not exported");
        }
        let id = by_id.len() as u32;
        by_id.push((kind, metric));
        by_name.insert(prom_name, id);
        Ok(id)
    }

    /// `proxy_increment_metric`; counters cannot go down.
    pub(crate) fn increment(&self, id: u32, offset: i64) -> Result<(), Status> {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        match by_id.get(id as usize).map(|(_, m)| m) {
            Some(PluginMetric::Counter(c)) if offset >= 0 => c.inc_by(offset as u64),
            Some(PluginMetric::Counter(_)) => return Err(Status::BadArgument),
            Some(PluginMetric::Gauge(g)) => g.add(offset),
            Some(PluginMetric::Histogram(_)) => return Err(Status::BadArgument),
            None => return Err(Status::NotFound),
        }
        Ok(())
    }

    /// `proxy_record_metric`: sets a gauge or counter, observes a histogram.
    pub(crate) fn record(&self, id: u32, value: u64) -> Result<(), Status> {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        match by_id.get(id as usize).map(|(_, m)| m) {
            Some(PluginMetric::Counter(c)) => {
                let now = c.get();
                if value >= now {
                    c.inc_by(value - now);
                }
            }
            Some(PluginMetric::Gauge(g)) => g.set(value as i64),
            Some(PluginMetric::Histogram(h)) => h.observe(value as f64),
            None => return Err(Status::NotFound),
        }
        Ok(())
    }

    /// `proxy_get_metric`; histograms have no single value.
    pub(crate) fn get(&self, id: u32) -> Result<u64, Status> {
        let by_id = self.by_id.read().unwrap_or_else(|e| e.into_inner());
        match by_id.get(id as usize).map(|(_, m)| m) {
            Some(PluginMetric::Counter(c)) => Ok(c.get()),
            Some(PluginMetric::Gauge(g)) => Ok(g.get() as u64),
            Some(PluginMetric::Histogram(_)) => Err(Status::BadArgument),
            None => Err(Status::NotFound),
        }
    }
}

/// Prometheus names allow `[a-zA-Z_:][a-zA-Z0-9_:]*`; Envoy's stat names use
/// dots, which its Prometheus output turns into underscores too.
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}
