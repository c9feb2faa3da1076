//! `/config_dump` for traffic policy: a route's [`RoutePolicy`] and a
//! cluster's [`ClusterPolicy`], as stable JSON.

use serde_json::{json, Value};

use crate::policy::Abort;
use crate::routing::table::route_policy::RoutePolicy;
use crate::upstream::{ClusterPolicy, HashKey, LbChoice};

fn dur(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(format!("{d:?}")))
}

/// A route's deadline, retries and faults.
pub(super) fn dump_route_policy(p: &RoutePolicy) -> Value {
    let r = &p.retry;
    let fault = p.fault.as_ref().map(|f| {
        json!({
            "delay": f.delay.map(|(d, pct)| json!({ "fixedDelay": format!("{d:?}"), "percentage": pct.0 })),
            "abort": f.abort.map(|(a, pct)| {
                let (kind, code) = match a {
                    Abort::Http(s) => ("httpStatus", u32::from(s)),
                    Abort::Grpc(s) => ("grpcStatus", s),
                };
                json!({ kind: code, "percentage": pct.0 })
            }),
        })
    });
    json!({
        "timeout": dur(p.timeout),
        "retry": {
            "attempts": r.attempts,
            "perTryTimeout": dur(r.per_try_timeout),
            "retryOn": r.retry_on.to_string(),
            "retriableStatusCodes": r.retriable_status_codes,
            "backoffBase": format!("{:?}", r.backoff_base),
        },
        "fault": fault,
    })
}

/// A cluster's name, LB and DestinationRule settings.
pub(super) fn dump_cluster(c: &ClusterPolicy) -> Value {
    let lb = match &c.lb {
        LbChoice::Simple(p) => json!({ "simple": format!("{p:?}") }),
        LbChoice::ConsistentHash(key) => json!({ "consistentHash": match key {
            HashKey::Header(h) => json!({ "httpHeaderName": h.as_str() }),
            HashKey::Cookie { name, path, ttl } => json!({ "httpCookie": { "name": name, "path": path, "ttl": dur(*ttl) } }),
            HashKey::SourceIp => json!({ "useSourceIp": true }),
            HashKey::QueryParam(q) => json!({ "httpQueryParameterName": q }),
        }}),
    };
    let pool = c.limiter.as_ref().map(|l| {
        let p = l.limits();
        json!({
            "maxConnections": p.max_connections,
            "connectTimeout": dur(p.connect_timeout),
            "maxConnectionDuration": dur(p.max_connection_duration),
            "http1MaxPendingRequests": p.http1_max_pending_requests,
            "http2MaxRequests": p.http2_max_requests,
            "maxRequestsPerConnection": p.max_requests_per_connection,
            "maxRetries": p.max_retries,
            "idleTimeout": dur(p.idle_timeout),
        })
    });
    let outlier = c.outlier.as_ref().map(|d| {
        let o = d.config();
        json!({
            "consecutive5xxErrors": o.consecutive_5xx,
            "consecutiveGatewayErrors": o.consecutive_gateway,
            "interval": format!("{:?}", o.interval),
            "baseEjectionTime": format!("{:?}", o.base_ejection_time),
            "maxEjectionPercent": o.max_ejection_percent,
        })
    });
    json!({
        "name": c.name.to_string(),
        "lb": lb,
        "localityAware": c.locality_aware,
        "connectTimeout": dur(c.connect_timeout),
        "idleTimeout": dur(c.idle_timeout),
        "maxRequestsPerConnection": c.max_requests_per_connection,
        "maxConnectionDuration": dur(c.max_connection_duration),
        "connectionPool": pool,
        "outlierDetection": outlier,
    })
}
