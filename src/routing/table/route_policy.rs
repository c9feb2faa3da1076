//! A matched route's traffic policy: the whole-route deadline, the retry
//! policy and fault injection, as the proxy applies them. Compiled from
//! HTTPRoute `timeouts` / `retry` (GEP-1742, GEP-1731) in
//! `compile::route_policy`; VirtualService `timeout` / `retries` / `fault`
//! compile in `istio::vs_policy`.

use std::time::Duration;

use crate::policy::{FaultPolicy, RetryPolicy};

/// What the proxy enforces around the attempts of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePolicy {
    /// Whole-route deadline from the request's arrival; bounds every retry.
    /// `None` = no timeout.
    pub timeout: Option<Duration>,
    /// Retries, per-try timeout and backoff.
    pub retry: RetryPolicy,
    /// Delay / abort injection (VirtualService `fault`).
    pub fault: Option<FaultPolicy>,
}

impl Default for RoutePolicy {
    /// Istio's behaviour for a route without policy (and for a Service with
    /// no route attached): no timeout, the default retry policy, no faults.
    fn default() -> Self {
        Self {
            timeout: None,
            retry: RetryPolicy::default(),
            fault: None,
        }
    }
}
