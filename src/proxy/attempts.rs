//! Retry bookkeeping across Pingora's attempt hooks: whether a failed
//! attempt may be retried (policy, retry budget, route deadline,
//! `maxRetries`), what the outlier detector hears about it, and the
//! per-attempt timeouts.

use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType};

use crate::policy::retry::AttemptFailure;
use crate::telemetry::ResponseFlags;
use crate::upstream::outlier::Outcome;

use super::ctx::RequestCtx;

/// How Pingora's error on an established upstream connection reads as an
/// attempt failure.
pub fn classify(e: &Error) -> AttemptFailure {
    use ErrorType::*;
    match e.etype() {
        ReadTimedout | WriteTimedout => AttemptFailure::PerTryTimeout,
        HTTPStatus(code) => AttemptFailure::Status(*code),
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure | TLSHandshakeTimedout => AttemptFailure::ConnectFailure,
        _ => AttemptFailure::Reset,
    }
}

/// Tells the endpoint's outlier detector how the attempt went.
pub fn report(ctx: &RequestCtx, outcome: Outcome) {
    let (Some(plan), Some(picked)) = (&ctx.plan, &ctx.picked) else {
        return;
    };
    if let Some(detector) = &plan.endpoints.cluster().outlier {
        detector.report(picked.endpoint.addr, outcome, plan.endpoints.len());
    }
}

/// Decides whether to retry after `failure`, taking a `maxRetries` slot
/// when yes. Marks URX when the policy wanted a retry the budget refused.
pub fn try_retry(ctx: &mut RequestCtx, failure: AttemptFailure) -> bool {
    let Some(plan) = &ctx.plan else {
        return false;
    };
    let policy = &plan.policy.retry;
    if !policy.retries(failure) {
        return false;
    }
    if ctx.retries >= policy.attempts || ctx.expired() {
        if ctx.retries > 0 {
            ctx.flags.insert(ResponseFlags::URX);
        }
        return false;
    }
    let guard = match &plan.endpoints.cluster().limiter {
        Some(limiter) => match limiter.admit_retry() {
            Ok(g) => Some(g),
            Err(_) => {
                ctx.flags.insert(ResponseFlags::URX);
                return false;
            }
        },
        None => None,
    };
    ctx.retry_guard = guard;
    ctx.retries += 1;
    true
}

/// Backoff before the next attempt, never past the route deadline.
pub fn backoff(ctx: &RequestCtx) -> Option<Duration> {
    let plan = ctx.plan.as_ref()?;
    if ctx.retries == 0 {
        return None;
    }
    let wait = plan.policy.retry.backoff(ctx.retries);
    Some(match ctx.remaining() {
        Some(left) => wait.min(left),
        None => wait,
    })
}

/// Per-attempt timeouts: the per-try timeout and the route deadline, the
/// tighter one wins. Pingora applies them to each upstream read and write.
pub fn set_timeouts(peer: &mut HttpPeer, ctx: &RequestCtx, default_connect: Duration) {
    let Some(plan) = &ctx.plan else {
        return;
    };
    let cluster = plan.endpoints.cluster();
    peer.options.connection_timeout = Some(cluster.connect_timeout.unwrap_or(default_connect));
    peer.options.idle_timeout = cluster.idle_timeout;
    let per_try = plan.policy.retry.per_try_timeout;
    let limit = match (per_try, ctx.remaining()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(limit) = limit {
        // A zero timeout would mean "none" to some layers: keep it positive.
        let limit = limit.max(Duration::from_millis(1));
        peer.options.read_timeout = Some(limit);
        peer.options.write_timeout = Some(limit);
    }
}
