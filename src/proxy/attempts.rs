//! Adapter between Pingora's attempt hooks and the retry policy: reads the
//! request context, asks [`crate::policy::retry`] (retry or not, backoff),
//! [`crate::policy::admission`] (the `maxRetries` budget) and
//! [`crate::policy::deadline`] (per-attempt timeouts), and writes the
//! answer back (retry count, budget slot, URX, peer timeouts). Also tells
//! the outlier detector how each attempt went. The decisions themselves
//! are unit-tested in `policy/`; Pingora's errors are read by
//! [`super::failure::classify`].

use std::time::Duration;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::Error;
use tokio::time::Instant;

use crate::policy::admission::{admit_retry, RetryAdmission};
use crate::policy::retry::{AttemptFailure, RetryDecision};
use crate::telemetry::ResponseFlags;
use crate::upstream::outlier::Outcome;

use super::ctx::RequestCtx;
use super::failure;

/// How Pingora's error on an established upstream connection reads as an
/// attempt failure (the retry half of [`failure::classify`]).
pub fn classify(e: &Error) -> AttemptFailure {
    failure::classify(e).attempt
}

/// Tells the endpoint's outlier detector how the attempt went.
pub fn report(ctx: &RequestCtx, outcome: Outcome) {
    let (Some(plan), Some(picked)) = (&ctx.routed.plan, &ctx.attempts.picked) else {
        return;
    };
    if let Some(detector) = &plan.endpoints.cluster().outlier {
        detector.report(picked.endpoint.addr, outcome, plan.endpoints.len());
    }
}

/// Decides whether to retry after `failure`, taking a `maxRetries` slot
/// when yes. Marks URX when the policy wanted a retry that the attempts,
/// the deadline or the budget refused.
pub fn try_retry(ctx: &mut RequestCtx, failure: AttemptFailure) -> bool {
    let Some(plan) = &ctx.routed.plan else {
        return false;
    };
    let decision = plan.policy.retry.decide(
        failure,
        ctx.attempts.retries,
        ctx.attempts.deadline,
        Instant::now(),
    );
    let limiter = plan.endpoints.cluster().limiter.as_ref();
    let admission = admit_retry(decision, || match limiter {
        Some(limiter) => limiter.admit_retry().map(Some),
        None => Ok(None),
    });
    match admission {
        RetryAdmission::Retry(guard) => {
            ctx.attempts.retry_guard = guard;
            ctx.attempts.retries += 1;
            true
        }
        RetryAdmission::NoRetry { urx } => {
            if urx {
                ctx.reply.flags.insert(ResponseFlags::URX);
            }
            false
        }
    }
}

/// What the retry policy says of an upstream response with status `code`
/// (the `maxRetries` budget is taken later, in `error_while_proxy`).
pub fn decide_on_status(ctx: &RequestCtx, code: u16) -> RetryDecision {
    let Some(plan) = &ctx.routed.plan else {
        return RetryDecision::NotRetriable;
    };
    plan.policy.retry.decide(
        AttemptFailure::Status(code),
        ctx.attempts.retries,
        ctx.attempts.deadline,
        Instant::now(),
    )
}

/// What the retry policy says of an upstream response: its HTTP status
/// first, then (when the status alone is not retried) the `grpc-status` of a
/// trailers-only gRPC response, which Envoy's gRPC `retryOn` conditions read.
/// Returns the decision and the attempt failure it was made on.
pub fn decide_on_response(
    ctx: &RequestCtx,
    code: u16,
    grpc_status: Option<u32>,
) -> (RetryDecision, AttemptFailure) {
    let by_status = decide_on_status(ctx, code);
    match (by_status, grpc_status, &ctx.routed.plan) {
        (RetryDecision::NotRetriable, Some(grpc), Some(plan)) if grpc != 0 => {
            let failure = AttemptFailure::Grpc(grpc);
            let decision = plan.policy.retry.decide(
                failure,
                ctx.attempts.retries,
                ctx.attempts.deadline,
                Instant::now(),
            );
            (decision, failure)
        }
        _ => (by_status, AttemptFailure::Status(code)),
    }
}

/// Backoff before the next attempt, never past the route deadline; `None`
/// before the first attempt.
pub fn backoff(ctx: &RequestCtx) -> Option<Duration> {
    let plan = ctx.routed.plan.as_ref()?;
    plan.policy.retry.wait_before_attempt(
        ctx.attempts.retries,
        ctx.attempts.deadline,
        Instant::now(),
        &mut rand::rng(),
    )
}

/// Per-attempt timeouts: the per-try timeout and the route deadline, the
/// tighter one wins. Pingora applies them to each upstream read and write.
pub fn set_timeouts(peer: &mut HttpPeer, ctx: &RequestCtx, default_connect: Duration) {
    let Some(plan) = &ctx.routed.plan else {
        return;
    };
    let cluster = plan.endpoints.cluster();
    peer.options.connection_timeout = Some(cluster.connect_timeout.unwrap_or(default_connect));
    peer.options.idle_timeout = cluster.idle_timeout;
    let per_try = plan.policy.retry.per_try_timeout;
    if let Some(limit) = ctx
        .attempts
        .deadline
        .attempt_timeout(per_try, Instant::now())
    {
        peer.options.read_timeout = Some(limit);
        peer.options.write_timeout = Some(limit);
    }
}
