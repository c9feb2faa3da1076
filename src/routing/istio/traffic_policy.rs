//! DestinationRule `trafficPolicy` pieces → policy types, validated with
//! Istio's rules: `loadBalancer`, `connectionPool`, `outlierDetection`. A
//! zero pool limit is proto3's "unset" (Envoy's default, unlimited);
//! negatives are errors. Merging levels (top, port, subset) is
//! `destination_rule`'s job.

use std::time::Duration;

use http::HeaderName;
use tracing::warn;

use super::duration::{parse_istio_duration, parse_positive};
use super::error::IstioConfigError;
use crate::config::{ConnectionPoolSettings, LoadBalancerSettings, OutlierDetectionSettings};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::upstream::{ConnectionPool, HashKey, LbChoice, LbPolicy, OutlierDetection};

/// A compiled `loadBalancer`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LbSettings {
    /// `None` = `UNSPECIFIED` (the waypoint's default).
    pub choice: Option<LbChoice>,
    /// `localityLbSetting.enabled`.
    pub locality_enabled: Option<bool>,
}

/// One level's compiled `trafficPolicy` (top, port, subset); `None` = not set at this
/// level.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct CompiledTrafficPolicy {
    pub lb: Option<LbSettings>,
    pub pool: Option<ConnectionPool>,
    pub outlier: Option<OutlierDetection>,
}

impl CompiledTrafficPolicy {
    /// `self` overridden field by field by the more specific `other`.
    pub(super) fn merged(&self, other: &CompiledTrafficPolicy) -> CompiledTrafficPolicy {
        CompiledTrafficPolicy {
            lb: other.lb.clone().or_else(|| self.lb.clone()),
            pool: other.pool.clone().or_else(|| self.pool.clone()),
            outlier: other.outlier.clone().or_else(|| self.outlier.clone()),
        }
    }
}

/// Compiles one level at `field` (e.g. `spec.trafficPolicy`).
pub(super) fn compile_traffic_policy(
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetectionSettings>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> CompiledTrafficPolicy {
    CompiledTrafficPolicy {
        lb: lb.map(|l| compile_lb(l, &format!("{field}.loadBalancer"), sink)),
        pool: pool.map(|p| compile_pool(p, &format!("{field}.connectionPool"), sink)),
        outlier: outlier.map(|o| compile_outlier(o, &format!("{field}.outlierDetection"), sink)),
    }
}

fn compile_lb(lb: &LoadBalancerSettings, field: &str, sink: &mut ErrorSink<'_>) -> LbSettings {
    let simple = lb.simple.as_deref().and_then(|s| match s {
        "UNSPECIFIED" => None,
        "ROUND_ROBIN" => Some(LbPolicy::RoundRobin),
        "LEAST_REQUEST" | "LEAST_CONN" => Some(LbPolicy::LeastRequest),
        "RANDOM" => Some(LbPolicy::Random),
        "PASSTHROUGH" => {
            sink.push_err(
                format!("{field}.simple"),
                IstioConfigError::Unsupported {
                    what: "loadBalancer PASSTHROUGH",
                },
            );
            None
        }
        other => {
            sink.push_err(
                format!("{field}.simple"),
                IstioConfigError::UnknownLb(other.to_string()),
            );
            None
        }
    });
    let hash = lb.consistent_hash.as_ref().and_then(|h| {
        let field = format!("{field}.consistentHash");
        let mut keys = Vec::new();
        if let Some(name) = &h.http_header_name {
            match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                Ok(n) => keys.push(HashKey::Header(n)),
                Err(_) => sink.push(
                    format!("{field}.httpHeaderName"),
                    RouteConfigError::InvalidHeaderName(name.clone()),
                ),
            }
        }
        if let Some(c) = &h.http_cookie {
            let ttl = c
                .ttl
                .as_deref()
                .and_then(|t| match parse_istio_duration(t) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        sink.push_err(format!("{field}.httpCookie.ttl"), e);
                        None
                    }
                });
            keys.push(HashKey::Cookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl,
            });
        }
        if h.use_source_ip == Some(true) {
            keys.push(HashKey::SourceIp);
        }
        if let Some(q) = &h.http_query_parameter_name {
            keys.push(HashKey::QueryParam(q.clone()));
        }
        // ringHash / maglev / minimumRingSize tune Envoy's hash ring; our
        // rendezvous hashing needs no ring, so they are accepted as is.
        if keys.len() != 1 {
            sink.push_err(field, IstioConfigError::HashKeyCount);
            return None;
        }
        keys.pop()
    });
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        sink.push_err(field, IstioConfigError::SimpleAndHash);
    }
    let locality = lb.locality_lb_setting.as_ref();
    if let Some(l) = locality {
        if l.distribute.is_some() || l.failover.is_some() || !l.failover_priority.is_empty() {
            warn!(%field, "localityLbSetting distribute/failover/failoverPriority are not supported; ignored");
        }
    }
    if lb.warmup_duration_secs.is_some() {
        warn!(%field, "warmupDurationSecs is not supported; ignored");
    }
    LbSettings {
        choice: hash
            .map(LbChoice::ConsistentHash)
            .or(simple.map(LbChoice::Simple)),
        locality_enabled: locality.and_then(|l| l.enabled),
    }
}

/// A pool limit: negative is an error, 0 means unset.
fn limit(
    value: Option<i64>,
    name: &'static str,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<u32> {
    match value? {
        v if v < 0 => {
            sink.push_err(
                format!("{field}.{name}"),
                IstioConfigError::Negative {
                    field: name,
                    value: v,
                },
            );
            None
        }
        0 => None,
        v => match u32::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                sink.push_err(
                    format!("{field}.{name}"),
                    IstioConfigError::TooLarge {
                        field: name,
                        value: v,
                    },
                );
                None
            }
        },
    }
}

fn duration(
    value: Option<&String>,
    name: &str,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Duration> {
    match parse_positive(value?) {
        Ok(d) => Some(d),
        Err(e) => {
            sink.push_err(format!("{field}.{name}"), e);
            None
        }
    }
}

fn compile_pool(
    p: &ConnectionPoolSettings,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> ConnectionPool {
    let mut out = ConnectionPool::default();
    if let Some(tcp) = &p.tcp {
        let f = format!("{field}.tcp");
        out.max_connections = limit(tcp.max_connections, "maxConnections", &f, sink);
        out.connect_timeout = duration(tcp.connect_timeout.as_ref(), "connectTimeout", &f, sink);
        out.max_connection_duration = duration(
            tcp.max_connection_duration.as_ref(),
            "maxConnectionDuration",
            &f,
            sink,
        );
        out.idle_timeout = duration(tcp.idle_timeout.as_ref(), "idleTimeout", &f, sink);
    }
    if let Some(http) = &p.http {
        let f = format!("{field}.http");
        out.http1_max_pending_requests = limit(
            http.http1_max_pending_requests,
            "http1MaxPendingRequests",
            &f,
            sink,
        );
        out.http2_max_requests = limit(http.http2_max_requests, "http2MaxRequests", &f, sink);
        out.max_requests_per_connection = limit(
            http.max_requests_per_connection,
            "maxRequestsPerConnection",
            &f,
            sink,
        );
        out.max_retries = limit(http.max_retries, "maxRetries", &f, sink);
        // The HTTP idle timeout is the more specific one.
        if let Some(d) = duration(http.idle_timeout.as_ref(), "idleTimeout", &f, sink) {
            out.idle_timeout = Some(d);
        }
    }
    out
}

/// As Istio translates it: `consecutiveErrors` (deprecated) counts gateway
/// errors only (502/503/504) and turns 5xx ejection off unless
/// `consecutive5xxErrors` is also set; 0 disables a counter.
fn compile_outlier(
    o: &OutlierDetectionSettings,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> OutlierDetection {
    let mut out = OutlierDetection::default();
    let count = |v: Option<i64>, name: &'static str, sink: &mut ErrorSink<'_>| match v {
        Some(n) if n < 0 => {
            sink.push_err(
                format!("{field}.{name}"),
                IstioConfigError::Negative {
                    field: name,
                    value: n,
                },
            );
            None
        }
        Some(n) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        None => None,
    };
    if let Some(n) = count(o.consecutive_errors, "consecutiveErrors", sink).filter(|n| *n > 0) {
        out.consecutive_gateway = n;
        out.consecutive_5xx = 0;
    }
    if let Some(n) = count(o.consecutive_5xx_errors, "consecutive5xxErrors", sink) {
        out.consecutive_5xx = n;
    }
    if let Some(n) = count(
        o.consecutive_gateway_errors,
        "consecutiveGatewayErrors",
        sink,
    ) {
        out.consecutive_gateway = n;
    }
    if let Some(d) = duration(o.interval.as_ref(), "interval", field, sink) {
        out.interval = d;
    }
    if let Some(d) = duration(
        o.base_ejection_time.as_ref(),
        "baseEjectionTime",
        field,
        sink,
    ) {
        out.base_ejection_time = d;
    }
    if let Some(p) = o.max_ejection_percent {
        if (0..=100).contains(&p) {
            out.max_ejection_percent = u32::try_from(p).unwrap_or(100);
        } else {
            sink.push_err(
                format!("{field}.maxEjectionPercent"),
                IstioConfigError::PercentOutOfRange {
                    field: "maxEjectionPercent",
                    value: p,
                },
            );
        }
    }
    if let Some(p) = o.min_health_percent.filter(|p| !(0..=100).contains(p)) {
        sink.push_err(
            format!("{field}.minHealthPercent"),
            IstioConfigError::PercentOutOfRange {
                field: "minHealthPercent",
                value: p,
            },
        );
    }
    out
}
