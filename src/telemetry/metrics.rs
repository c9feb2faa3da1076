//! The Prometheus registry: Istio's request metrics plus the waypoint's own
//! (`waypoint_*`). Rendered by the admin server on `/stats/prometheus`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use std::borrow::Cow;

use super::cel::Attributes;
use super::labels::{tcp_label_names, HTTP_ONLY_LABELS, REQUEST_LABEL_NAMES};
use super::overrides::{MetricKind, MetricOverrides};
use super::RequestLabels;

/// Envoy's default histogram buckets (milliseconds), which Istio keeps for
/// `istio_request_duration_milliseconds`.
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's size buckets for `istio_request_bytes` / `istio_response_bytes`.
pub const BYTES_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
    1000000000.0,
];

/// Resolved series for one request label set.
#[derive(Clone)]
struct RequestHandles {
    total: prometheus::IntCounter,
    duration: prometheus::Histogram,
    request_bytes: prometheus::Histogram,
    response_bytes: prometheus::Histogram,
}

const MAX_CACHED_LABEL_SETS: usize = 4096;

/// One series of a metric whose labels a Telemetry override rewrote.
#[derive(Clone)]
enum Series {
    Counter(prometheus::IntCounter),
    Histogram(prometheus::Histogram),
}

impl Series {
    fn record(&self, amount: f64) {
        match self {
            Series::Counter(c) => c.inc_by(amount as u64),
            Series::Histogram(h) => h.observe(amount),
        }
    }
}

thread_local! {
    /// Series of overridden label sets, by one hash of (registry, metric, values): only
    /// destinations with `metrics[].overrides` come here.
    static OVERRIDDEN_SERIES: std::cell::RefCell<std::collections::HashMap<u64, Series>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
    static REQUEST_HANDLES: std::cell::RefCell<std::collections::HashMap<u64, RequestHandles>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// All metrics of one waypoint process.
pub struct Metrics {
    registry: Registry,
    requests_total: IntCounterVec,
    request_duration: HistogramVec,
    request_bytes: HistogramVec,
    response_bytes: HistogramVec,
    config_reloads: IntCounterVec,
    config_generation: IntGauge,
    tcp_opened: IntCounterVec,
    tcp_closed: IntCounterVec,
    tcp_sent: IntCounterVec,
    tcp_received: IntCounterVec,
    mirrors: IntCounterVec,
    cert_expiry: IntGauge,
    overflow: IntCounterVec,
    authz: IntCounterVec,
    downstream_limits: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("istio_requests_total", "Requests handled by the waypoint."),
            REQUEST_LABEL_NAMES,
        )
        .expect("static metric definition is valid");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "istio_request_duration_milliseconds",
                "Request duration in milliseconds.",
            )
            .buckets(DURATION_BUCKETS_MS.to_vec()),
            REQUEST_LABEL_NAMES,
        )
        .expect("static metric definition is valid");
        let request_bytes = HistogramVec::new(
            HistogramOpts::new(
                "istio_request_bytes",
                "Request sizes (headers and body) in bytes.",
            )
            .buckets(BYTES_BUCKETS.to_vec()),
            REQUEST_LABEL_NAMES,
        )
        .expect("static metric definition is valid");
        let response_bytes = HistogramVec::new(
            HistogramOpts::new(
                "istio_response_bytes",
                "Response sizes (headers and body) in bytes.",
            )
            .buckets(BYTES_BUCKETS.to_vec()),
            REQUEST_LABEL_NAMES,
        )
        .expect("static metric definition is valid");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "waypoint_config_reloads_total",
                "Config reload attempts by result (success or failure).",
            ),
            &["result"],
        )
        .expect("static metric definition is valid");
        let config_generation = IntGauge::new(
            "waypoint_config_generation",
            "Generation of the config snapshot being served.",
        )
        .expect("static metric definition is valid");
        let tcp = |name: &str, help: &str| {
            IntCounterVec::new(Opts::new(name, help), &tcp_label_names())
                .expect("static metric definition is valid")
        };
        let tcp_opened = tcp(
            "istio_tcp_connections_opened_total",
            "TCP connections opened.",
        );
        let tcp_closed = tcp(
            "istio_tcp_connections_closed_total",
            "TCP connections closed.",
        );
        let tcp_sent = tcp(
            "istio_tcp_sent_bytes_total",
            "Bytes sent to the client on TCP connections.",
        );
        let tcp_received = tcp(
            "istio_tcp_received_bytes_total",
            "Bytes received from the client on TCP connections.",
        );
        let cert_expiry = IntGauge::new(
            "waypoint_cert_expiry_seconds",
            "Seconds until the waypoint's own certificate expires.",
        )
        .expect("static metric definition is valid");
        let overflow = IntCounterVec::new(
            Opts::new(
                "waypoint_upstream_overflow_total",
                "Requests refused by a DestinationRule connection-pool limit (503 UO), by cluster and reason (pending, retry).",
            ),
            &["cluster", "reason"],
        )
        .expect("static metric definition is valid");
        let authz = IntCounterVec::new(
            Opts::new(
                "waypoint_authz_decisions_total",
                "AuthorizationPolicy decisions, by deciding policy (namespace/name, or none), action and result (allowed, denied, audited, dry_run_allowed, dry_run_denied).",
            ),
            &["policy", "action", "result"],
        )
        .expect("static metric definition is valid");
        let downstream_limits = IntCounterVec::new(
            Opts::new(
                "waypoint_downstream_limits_total",
                "Downstream connections closed at a limit, by limit (request_headers_timeout).",
            ),
            &["limit"],
        )
        .expect("static metric definition is valid");
        let mirrors = IntCounterVec::new(
            Opts::new(
                "waypoint_mirror_requests_total",
                "RequestMirror copies sent, by mirror Service and what they carried of the request body (none, copied, too_large: headers only).",
            ),
            &["destination_service", "body"],
        )
        .expect("static metric definition is valid");
        for c in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(downstream_limits.clone()),
            Box::new(mirrors.clone()),
            Box::new(request_duration.clone()),
            Box::new(request_bytes.clone()),
            Box::new(response_bytes.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_generation.clone()),
            Box::new(tcp_opened.clone()),
            Box::new(tcp_closed.clone()),
            Box::new(tcp_sent.clone()),
            Box::new(tcp_received.clone()),
            Box::new(cert_expiry.clone()),
            Box::new(overflow.clone()),
            Box::new(authz.clone()),
            Box::new(super::access_log::sink::dropped_counter().clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Export both results from the start so `rate()` works before the first failure.
        config_reloads.with_label_values(&["success"]);
        config_reloads.with_label_values(&["failure"]);
        Self {
            registry,
            requests_total,
            request_duration,
            request_bytes,
            response_bytes,
            config_reloads,
            config_generation,
            tcp_opened,
            tcp_closed,
            tcp_sent,
            tcp_received,
            mirrors,
            cert_expiry,
            overflow,
            authz,
            downstream_limits,
        }
    }

    /// Counts a downstream connection closed at `limit`.
    pub fn record_downstream_limit(&self, limit: &str) {
        self.downstream_limits.with_label_values(&[limit]).inc();
    }

    /// Counts one AuthorizationPolicy decision.
    pub fn record_authz(&self, policy: &str, action: &str, result: &str) {
        self.authz
            .with_label_values(&[policy, action, result])
            .inc();
    }

    /// Counts one RequestMirror copy sent to `service` and what it carried of
    /// the request body (`none`, `copied`, `too_large`).
    pub fn record_mirror(&self, service: &str, body: &str) {
        self.mirrors.with_label_values(&[service, body]).inc();
    }

    /// Counts a request refused by a connection-pool limit.
    pub fn record_overflow(&self, cluster: &str, reason: &str) {
        self.overflow.with_label_values(&[cluster, reason]).inc();
    }

    /// Sets the certificate-expiry gauge (refreshed on every scrape).
    pub fn set_cert_expiry(&self, seconds: i64) {
        self.cert_expiry.set(seconds);
    }

    /// Counts a TCP (L4 passthrough) connection opened.
    pub fn record_tcp_open(&self, labels: &RequestLabels) {
        let values = labels.tcp_values();
        self.tcp_opened.with_label_values(&values).inc();
    }

    /// Counts a TCP connection closed with the bytes it carried (`sent` to
    /// the client, `received` from it).
    pub fn record_tcp_close(&self, labels: &RequestLabels, sent: u64, received: u64) {
        let values = labels.tcp_values();
        self.tcp_closed.with_label_values(&values).inc();
        self.tcp_sent.with_label_values(&values).inc_by(sent);
        self.tcp_received
            .with_label_values(&values)
            .inc_by(received);
    }

    /// The registry, for components that define metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records one finished request.
    pub fn record_request(
        &self,
        labels: &RequestLabels,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let handles = self.request_handles(labels);
        handles.total.inc();
        handles.duration.observe(duration_ms);
        handles.request_bytes.observe(request_bytes as f64);
        handles.response_bytes.observe(response_bytes as f64);
    }

    /// Records one finished request for a destination with Telemetry metric overrides:
    /// disabled metrics are skipped, overridden labels take their value from `attrs`.
    pub fn record_request_overridden(
        &self,
        labels: &RequestLabels,
        overrides: &MetricOverrides,
        attrs: &dyn Attributes,
        duration_ms: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let amounts = [
            (MetricKind::RequestCount, 1.0),
            (MetricKind::RequestDuration, duration_ms),
            (MetricKind::RequestSize, request_bytes as f64),
            (MetricKind::ResponseSize, response_bytes as f64),
        ];
        self.record_overridden(&amounts, labels, overrides, attrs);
    }

    /// [`Metrics::record_tcp_open`] for a destination with metric overrides.
    pub fn record_tcp_open_overridden(
        &self,
        labels: &RequestLabels,
        overrides: &MetricOverrides,
        attrs: &dyn Attributes,
    ) {
        let amounts = [(MetricKind::TcpOpenedConnections, 1.0)];
        self.record_overridden(&amounts, labels, overrides, attrs);
    }

    /// [`Metrics::record_tcp_close`] for a destination with metric overrides.
    pub fn record_tcp_close_overridden(
        &self,
        labels: &RequestLabels,
        overrides: &MetricOverrides,
        attrs: &dyn Attributes,
        sent: u64,
        received: u64,
    ) {
        let amounts = [
            (MetricKind::TcpClosedConnections, 1.0),
            (MetricKind::TcpSentBytes, sent as f64),
            (MetricKind::TcpReceivedBytes, received as f64),
        ];
        self.record_overridden(&amounts, labels, overrides, attrs);
    }

    /// Records `amounts` (metric, value) for one request or connection: the label
    /// values are formatted once, then each metric's override rewrites its own copy.
    fn record_overridden(
        &self,
        amounts: &[(MetricKind, f64)],
        labels: &RequestLabels,
        overrides: &MetricOverrides,
        attrs: &dyn Attributes,
    ) {
        let code = labels.response_code.to_string();
        let flags = labels.response_flags.to_string();
        let base = labels.values(&code, &flags);
        for &(kind, amount) in amounts {
            let rule = overrides.get(kind);
            if rule.disabled {
                continue;
            }
            let mut values: Vec<Cow<str>> = base.iter().map(|v| Cow::Borrowed(*v)).collect();
            rule.apply(&mut values, attrs);
            if kind.is_tcp() {
                values = values
                    .into_iter()
                    .zip(REQUEST_LABEL_NAMES)
                    .filter(|(_, name)| !HTTP_ONLY_LABELS.contains(name))
                    .map(|(v, _)| v)
                    .collect();
            }
            self.overridden_series(kind, &values).record(amount);
        }
    }

    fn overridden_series(&self, kind: MetricKind, values: &[Cow<str>]) -> Series {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self as *const Self as usize).hash(&mut h);
        (kind as usize).hash(&mut h);
        values.hash(&mut h);
        let key = h.finish();
        OVERRIDDEN_SERIES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(found) = cache.get(&key) {
                return found.clone();
            }
            let values: Vec<&str> = values.iter().map(|v| v.as_ref()).collect();
            let series = match kind {
                MetricKind::RequestCount => {
                    Series::Counter(self.requests_total.with_label_values(&values))
                }
                MetricKind::RequestDuration => {
                    Series::Histogram(self.request_duration.with_label_values(&values))
                }
                MetricKind::RequestSize => {
                    Series::Histogram(self.request_bytes.with_label_values(&values))
                }
                MetricKind::ResponseSize => {
                    Series::Histogram(self.response_bytes.with_label_values(&values))
                }
                MetricKind::TcpOpenedConnections => {
                    Series::Counter(self.tcp_opened.with_label_values(&values))
                }
                MetricKind::TcpClosedConnections => {
                    Series::Counter(self.tcp_closed.with_label_values(&values))
                }
                MetricKind::TcpSentBytes => {
                    Series::Counter(self.tcp_sent.with_label_values(&values))
                }
                MetricKind::TcpReceivedBytes => {
                    Series::Counter(self.tcp_received.with_label_values(&values))
                }
            };
            if cache.len() >= MAX_CACHED_LABEL_SETS {
                cache.clear();
            }
            cache.insert(key, series.clone());
            series
        })
    }

    /// The four series of one label set. Resolving 25 labels costs four
    /// SipHash passes and four locked lookups in the prometheus crate; a
    /// per-thread cache keyed by one hash of the labels does it once.
    fn request_handles(&self, labels: &RequestLabels) -> RequestHandles {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        labels.hash(&mut h);
        (self as *const Self as usize).hash(&mut h);
        let key = h.finish();
        REQUEST_HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(found) = cache.get(&key) {
                return found.clone();
            }
            let code = labels.response_code.to_string();
            let flags = labels.response_flags.to_string();
            let values = labels.values(&code, &flags);
            let handles = RequestHandles {
                total: self.requests_total.with_label_values(&values),
                duration: self.request_duration.with_label_values(&values),
                request_bytes: self.request_bytes.with_label_values(&values),
                response_bytes: self.response_bytes.with_label_values(&values),
            };
            // Bounded: label sets are few in practice; start over if not.
            if cache.len() >= MAX_CACHED_LABEL_SETS {
                cache.clear();
            }
            cache.insert(key, handles.clone());
            handles
        })
    }

    /// Counts a config reload attempt.
    pub fn record_reload(&self, success: bool, generation: u64) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads.with_label_values(&[result]).inc();
        if success {
            self.config_generation.set(generation as i64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ResponseFlags;
    use std::sync::Arc;

    #[test]
    fn request_metrics_carry_istio_labels() {
        let m = Metrics::new();
        let labels = RequestLabels {
            destination_service: Arc::from("reviews.default.svc.cluster.local"),
            response_code: 404,
            response_flags: ResponseFlags::NR,
            ..Default::default()
        };
        m.record_request(&labels, 3.0, 100, 20);
        let text = m.encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .expect("counter exported");
        for needle in [
            "reporter=\"waypoint\"",
            "response_code=\"404\"",
            "response_flags=\"NR\"",
            "source_workload=\"unknown\"",
            "destination_service=\"reviews.default.svc.cluster.local\"",
            "connection_security_policy=\"none\"",
        ] {
            assert!(line.contains(needle), "{needle} missing in {line}");
        }
        assert!(line.ends_with(" 1"));
        assert!(text.contains("istio_request_duration_milliseconds_bucket"));
        assert!(text.contains("le=\"0.5\""));
        assert!(text.contains("waypoint_config_reloads_total{result=\"failure\"} 0"));
    }

    /// TCP metrics take the same overrides with the HTTP-only labels left out; a
    /// disabled metric records nothing while the others still count.
    #[test]
    fn tcp_overrides_rewrite_labels_and_skip_disabled_metrics() {
        use crate::telemetry::cel::{Attr, Attributes, Expr, Value};
        use crate::telemetry::overrides::{MetricKind, MetricOverrides, TagOp};
        struct Principal;
        impl Attributes for Principal {
            fn attr(&self, attr: &Attr) -> Value<'_> {
                match attr {
                    Attr::SourcePrincipal => Value::Str("spiffe://td/ns/a/sa/b".into()),
                    _ => Value::Absent,
                }
            }
        }
        let mut o = MetricOverrides::default();
        o.get_mut(MetricKind::TcpOpenedConnections)
            .set_tag(
                "source_canonical_service",
                TagOp::Upsert(Expr::parse_value("source.principal").unwrap()),
            )
            .unwrap();
        o.get_mut(MetricKind::TcpOpenedConnections)
            .set_tag("destination_cluster", TagOp::Remove)
            .unwrap();
        o.get_mut(MetricKind::TcpSentBytes).disabled = true;
        let m = Metrics::new();
        let labels = RequestLabels {
            destination_service: Arc::from("db.default.svc.cluster.local"),
            ..Default::default()
        };
        m.record_tcp_open_overridden(&labels, &o, &Principal);
        m.record_tcp_close_overridden(&labels, &o, &Principal, 10, 20);
        let text = m.encode();
        let opened = text
            .lines()
            .find(|l| l.starts_with("istio_tcp_connections_opened_total{"))
            .expect("opened counted");
        assert!(
            opened.contains("source_canonical_service=\"spiffe://td/ns/a/sa/b\"")
                && opened.contains("destination_cluster=\"\"")
                && !opened.contains("response_code"),
            "{opened}"
        );
        assert!(text.contains("istio_tcp_received_bytes_total{"), "{text}");
        assert!(!text.contains("istio_tcp_sent_bytes_total{"), "{text}");
    }
}
