//! HTTPRoute `timeouts` / `retry` (GEP-1742, GEP-1731) → [`RoutePolicy`],
//! as Istio translates them. VirtualService policy compiles in
//! `istio::vs_policy`.

use std::time::Duration;

use super::duration::parse_duration;
use crate::config::{HttpRouteRetry, HttpRouteTimeouts};
use crate::policy::{RetryOn, RetryPolicy};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::route_policy::RoutePolicy;

/// Istio's default number of retries when a policy gives none.
const DEFAULT_ATTEMPTS: u32 = 2;

/// Folds an HTTPRoute rule's `timeouts` and `retry` into a [`RoutePolicy`]
/// (`field` is the rule's path, e.g. `spec.rules[0]`).
///
/// Per the Gateway API, `timeouts.request` bounds the whole request and
/// `timeouts.backendRequest` each attempt; `0s` disables either. Without
/// `retry` Istio keeps its default policy. With one, as Istio translates
/// GEP-1731: retry on the listed `codes` and on connect failures, `attempts`
/// (default 2), `backoff` as the base interval (default 25 ms).
pub(crate) fn compile_http_route_policy(
    timeouts: Option<&HttpRouteTimeouts>,
    retry: Option<&HttpRouteRetry>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> RoutePolicy {
    let (timeout, per_try) = compile_timeouts(timeouts, field, sink);
    let mut retry = match retry {
        None => RetryPolicy::default(),
        Some(r) => compile_retry(r, field, sink),
    };
    retry.per_try_timeout = per_try;
    RoutePolicy {
        timeout,
        retry,
        fault: None,
    }
}

/// Per the Gateway API: a zero duration (`0s`) disables the timeout, and
/// "BackendRequest ... MUST be less than or equal to the value of Request".
/// Returns (request, backendRequest).
fn compile_timeouts(
    t: Option<&HttpRouteTimeouts>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> (Option<Duration>, Option<Duration>) {
    let Some(t) = t else {
        return (None, None);
    };
    let mut parse = |value: Option<&String>, name: &str| {
        let value = value?;
        match parse_duration(value) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                sink.push(format!("{field}.timeouts.{name}"), e);
                None
            }
        }
    };
    let request = parse(t.request.as_ref(), "request");
    let backend = parse(t.backend_request.as_ref(), "backendRequest");
    if let (Some(r), Some(b)) = (request, backend) {
        if b > r {
            sink.push(
                format!("{field}.timeouts.backendRequest"),
                RouteConfigError::BackendTimeoutExceedsRequest {
                    backend: t.backend_request.clone().unwrap_or_default(),
                    request: t.request.clone().unwrap_or_default(),
                },
            );
        }
    }
    (request, backend)
}

/// GEP-1731 `retry`: codes are 400–599, attempts non-negative.
fn compile_retry(r: &HttpRouteRetry, field: &str, sink: &mut ErrorSink<'_>) -> RetryPolicy {
    for (i, code) in r.codes.iter().enumerate() {
        if !(400..=599).contains(code) {
            sink.push(
                format!("{field}.retry.codes[{i}]"),
                RouteConfigError::InvalidRetryCode(*code),
            );
        }
    }
    let attempts = match r.attempts.map(u32::try_from) {
        None => DEFAULT_ATTEMPTS,
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            sink.push(
                format!("{field}.retry.attempts"),
                RouteConfigError::InvalidAttempts(r.attempts.unwrap_or_default()),
            );
            DEFAULT_ATTEMPTS
        }
    };
    let base = r.backoff.as_ref().and_then(|b| match parse_duration(b) {
        Ok(d) => Some(d),
        Err(e) => {
            sink.push(format!("{field}.retry.backoff"), e);
            None
        }
    });
    let mut retry_on = RetryOn::RETRIABLE_STATUS_CODES;
    retry_on.insert(RetryOn::CONNECT_FAILURE);
    let defaults = RetryPolicy::default();
    let backoff_base = base
        .filter(|d| !d.is_zero())
        .unwrap_or(defaults.backoff_base);
    RetryPolicy {
        attempts,
        per_try_timeout: None,
        retry_on,
        retriable_status_codes: r.codes.clone(),
        backoff_base,
        backoff_max: backoff_base.saturating_mul(10),
    }
}
