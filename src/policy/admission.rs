//! Admission: what a routed request meets before an endpoint is picked, in
//! Envoy's filter order — no ready endpoint (503 UH), the fault filter
//! (delay, then abort), the route deadline (started after the delay), the
//! connection pool (wait for a slot no longer than the deadline, or
//! overflow: 503 UO) — and the `maxRetries` budget a retry must pass.
//!
//! This module owns the order and the verdicts, not the counters: the pool
//! is any future answering `Result<slot, overflow reason>` (the proxy passes
//! its `PoolLimiter`'s), and the retry budget any function that takes a slot
//! or refuses. Time is `tokio::time`, so the tests run on a paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::deadline::Deadline;
use super::fault::{Abort, FaultAction};
use super::retry::RetryDecision;

/// Why admission turned a request away. `O` is the pool's overflow reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<O> {
    /// The backend has no ready endpoint (503 UH); checked before faults.
    NoEndpoints,
    /// The fault filter aborted the request (flag FI).
    FaultAbort(Abort),
    /// The route deadline passed while the request waited for a pool slot
    /// (504 UT).
    DeadlineWhileQueued,
    /// The pool and its pending queue are full (503 UO).
    Overflow(O),
}

/// What admission did to one request.
#[derive(Debug)]
pub struct Admission<G, O> {
    /// The fault filter delayed the request (flag DI), whatever came after.
    pub delayed: bool,
    /// The route deadline, started when the delay ended;
    /// [`Deadline::NONE`] when the request was refused before that.
    pub deadline: Deadline,
    /// The pool slot to hold for the request's lifetime (`None` when the
    /// destination has no pool limits), or why the request is refused.
    pub verdict: Result<Option<G>, Refusal<O>>,
}

/// Admits one routed request: `ready_endpoints` of the chosen backend, the
/// faults drawn for it, the route `timeout`, and the pool's admission
/// future (`None` when the destination has no limits; not polled unless
/// the request gets that far). Waits out the fault delay and any queueing
/// on the `tokio::time` clock.
pub async fn admit<G, O>(
    ready_endpoints: usize,
    fault: FaultAction,
    timeout: Option<Duration>,
    pool: Option<impl Future<Output = Result<G, O>>>,
) -> Admission<G, O> {
    let mut admission = Admission {
        delayed: false,
        deadline: Deadline::NONE,
        verdict: Ok(None),
    };
    if ready_endpoints == 0 {
        admission.verdict = Err(Refusal::NoEndpoints);
        return admission;
    }
    // Per Envoy's fault filter: the delay comes first, and a delayed
    // request may still be aborted.
    if let Some(delay) = fault.delay {
        admission.delayed = true;
        tokio::time::sleep(delay).await;
    }
    if let Some(abort) = fault.abort {
        admission.verdict = Err(Refusal::FaultAbort(abort));
        return admission;
    }
    // Envoy starts the route timeout when the router sees the request,
    // after the fault filter's delay.
    admission.deadline = Deadline::start(timeout, Instant::now());
    let Some(pool) = pool else {
        return admission;
    };
    let answer = match admission.deadline.remaining(Instant::now()) {
        Some(left) => match tokio::time::timeout(left, pool).await {
            Ok(answer) => answer,
            Err(_) => {
                admission.verdict = Err(Refusal::DeadlineWhileQueued);
                return admission;
            }
        },
        None => pool.await,
    };
    admission.verdict = answer.map(Some).map_err(Refusal::Overflow);
    admission
}

/// A failed attempt's fate once the `maxRetries` budget has had its say.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryAdmission<G> {
    /// Retry, holding this budget slot while the retry is in flight.
    Retry(G),
    /// No retry. `urx`: flag the response URX.
    NoRetry { urx: bool },
}

/// The destination's `maxRetries` budget has the last word on a retry the
/// policy allows: `take_slot` is asked only then, and a refusal means no
/// retry, flagged URX (Envoy counts it as `upstream_rq_retry_overflow`).
pub fn admit_retry<G, O>(
    decision: RetryDecision,
    take_slot: impl FnOnce() -> Result<G, O>,
) -> RetryAdmission<G> {
    match decision {
        RetryDecision::NotRetriable => RetryAdmission::NoRetry { urx: false },
        RetryDecision::GiveUp { urx } => RetryAdmission::NoRetry { urx },
        RetryDecision::Retry => match take_slot() {
            Ok(slot) => RetryAdmission::Retry(slot),
            Err(_) => RetryAdmission::NoRetry { urx: true },
        },
    }
}

#[cfg(test)]
mod tests;
