//! VirtualService `timeout`, `retries` and `fault` → [`RoutePolicy`], with
//! Istio's translation rules (pilot's `retry.ConvertPolicy` and fault
//! filter): no `retries` keeps Istio's default policy; `attempts: 0` (or
//! absent: proto3's zero) disables retries; an absent `retryOn` keeps the
//! default conditions `connect-failure,refused-stream,unavailable,cancelled,
//! retriable-status-codes` with 503.

use std::time::Duration;

use super::duration::{parse_istio_duration, parse_positive};
use super::error::IstioConfigError;
use crate::config::{HttpFaultInjection, HttpRetry, Percent, VsHttpRoute};
use crate::policy::{Abort, FaultPolicy, RetryOn, RetryPolicy, SamplePercent};
use crate::routing::error::ErrorSink;
use crate::routing::table::route_policy::RoutePolicy;

/// The policy of `http[i]` at `field` (`spec.http[i]`).
pub(super) fn compile_vs_policy(
    http: &VsHttpRoute,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> RoutePolicy {
    // Istio: "timeout: Timeout for HTTP requests, default is disabled".
    let timeout = http
        .timeout
        .as_deref()
        .and_then(|t| match parse_istio_duration(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                sink.push_err(format!("{field}.timeout"), e);
                None
            }
        });
    let retry = match &http.retries {
        None => RetryPolicy::default(),
        Some(r) => compile_retries(r, &format!("{field}.retries"), sink),
    };
    let fault = http
        .fault
        .as_ref()
        .and_then(|f| compile_fault(f, &format!("{field}.fault"), sink));
    RoutePolicy {
        timeout,
        retry,
        fault,
    }
}

fn compile_retries(r: &HttpRetry, field: &str, sink: &mut ErrorSink<'_>) -> RetryPolicy {
    let attempts = match r.attempts.unwrap_or(0) {
        a if a < 0 => {
            sink.push_err(
                format!("{field}.attempts"),
                IstioConfigError::NegativeAttempts(a),
            );
            0
        }
        a => u32::try_from(a).unwrap_or(u32::MAX),
    };
    let mut policy = RetryPolicy {
        attempts,
        ..RetryPolicy::default()
    };
    if let Some(t) = &r.per_try_timeout {
        match parse_positive(t) {
            Ok(d) => policy.per_try_timeout = Some(d),
            Err(e) => sink.push_err(format!("{field}.perTryTimeout"), e),
        }
    }
    if let Some(on) = r.retry_on.as_deref().filter(|s| !s.trim().is_empty()) {
        match RetryOn::parse(on) {
            Ok((retry_on, codes)) => {
                policy.retry_on = retry_on;
                policy.retriable_status_codes = codes;
            }
            Err(e) => sink.push_err(
                format!("{field}.retryOn"),
                IstioConfigError::InvalidRetryOn(e),
            ),
        }
    }
    if let Some(b) = &r.backoff {
        match parse_positive(b) {
            Ok(d) => {
                policy.backoff_base = d;
                policy.backoff_max = d.saturating_mul(10);
            }
            Err(e) => sink.push_err(format!("{field}.backoff"), e),
        }
    }
    policy
}

/// A `percentage` (or deprecated integer `percent`), found at the given
/// field paths; default 100.
pub(super) fn percentage(
    p: Option<&Percent>,
    legacy: Option<i64>,
    (field, legacy_field): (&str, &str),
    sink: &mut ErrorSink<'_>,
) -> Option<SamplePercent> {
    let (value, at) = match (p, legacy) {
        (Some(p), _) => (p.value, field),
        (None, Some(n)) => (n as f64, legacy_field),
        (None, None) => return Some(SamplePercent(100.0)),
    };
    if !(0.0..=100.0).contains(&value) {
        sink.push_err(at, IstioConfigError::InvalidPercentage(value));
        return None;
    }
    Some(SamplePercent(value))
}

fn compile_fault(
    f: &HttpFaultInjection,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<FaultPolicy> {
    let delay = f.delay.as_ref().and_then(|d| {
        let field = format!("{field}.delay");
        if d.exponential_delay.is_some() {
            sink.push_err(
                format!("{field}.exponentialDelay"),
                IstioConfigError::Unsupported {
                    what: "exponentialDelay",
                },
            );
            return None;
        }
        let Some(fixed) = &d.fixed_delay else {
            sink.push_err(
                format!("{field}.fixedDelay"),
                IstioConfigError::Missing { what: "fixedDelay" },
            );
            return None;
        };
        let delay: Option<Duration> = match parse_positive(fixed) {
            Ok(v) => Some(v),
            Err(e) => {
                sink.push_err(format!("{field}.fixedDelay"), e);
                None
            }
        };
        let pct = percentage(
            d.percentage.as_ref(),
            d.percent,
            (&format!("{field}.percentage"), &format!("{field}.percent")),
            sink,
        );
        Some((delay?, pct?))
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let field = format!("{field}.abort");
        let status = match (a.http_status, a.grpc_status.as_deref()) {
            (Some(s), _) if !(200..=599).contains(&s) => {
                sink.push_err(
                    format!("{field}.httpStatus"),
                    IstioConfigError::InvalidHttpStatus(s),
                );
                None
            }
            (Some(s), _) => u16::try_from(s).ok().map(Abort::Http),
            (None, Some(g)) => match grpc_code(g) {
                Some(code) => Some(Abort::Grpc(code)),
                None => {
                    sink.push_err(
                        format!("{field}.grpcStatus"),
                        IstioConfigError::InvalidGrpcStatus(g.to_string()),
                    );
                    None
                }
            },
            (None, None) => {
                sink.push_err(field.clone(), IstioConfigError::AbortWithoutStatus);
                None
            }
        };
        let at = format!("{field}.percentage");
        let pct = percentage(a.percentage.as_ref(), None, (&at, &at), sink);
        Some((status?, pct?))
    });
    (delay.is_some() || abort.is_some()).then_some(FaultPolicy { delay, abort })
}

/// gRPC status by name (`UNAVAILABLE`) or number (`14`).
fn grpc_code(s: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return (n <= 16).then_some(n);
    }
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(s))
        .and_then(|i| u32::try_from(i).ok())
}
