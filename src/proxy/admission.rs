//! Adapter between `request_filter` and [`crate::policy::admission`]: the
//! traffic policy a request meets between "route matched" and "pick an
//! endpoint" — fault injection, the route deadline (a gRPC call's
//! `grpc-timeout` capped by the route timeout) and the connection-pool
//! limits — plus the consistent-hash key. Reads the plan from the context,
//! lets the policy decide, and writes flags, deadline, pool slot and hash
//! back; refusals become [`Failure`]s here.

use pingora_http::RequestHeader;

use crate::policy::admission::{admit, Refusal};
use crate::policy::deadline::{grpc_call_timeout, parse_grpc_timeout};
use crate::telemetry::ResponseFlags;
use crate::upstream::LbChoice;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::Waypoint;

impl Waypoint {
    /// Traffic policy between "route matched" and "pick an endpoint": the
    /// route deadline starts, faults are injected (delay, then abort), the
    /// consistent-hash key is computed and the connection pool admits the
    /// request (or it overflows: 503 UO).
    pub(super) async fn admit(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Failure> {
        let Some(plan) = ctx.routed.plan.as_ref() else {
            return Err(Failure::Internal);
        };
        let policy = plan.policy.clone();
        let endpoints = plan.endpoints.clone();
        let cluster = endpoints.cluster();
        // Drawn before any await: the thread's random source is not `Send`.
        let fault = policy.fault.as_ref().map(|f| f.draw()).unwrap_or_default();
        let pool = cluster.limiter.as_ref().map(|limiter| limiter.admit());
        // A gRPC call's `grpc-timeout` shortens the route timeout.
        let timeout = if ctx.reply.grpc {
            let header = req
                .headers
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            grpc_call_timeout(policy.timeout, header)
        } else {
            policy.timeout
        };
        let admission = admit(endpoints.len(), fault, timeout, pool).await;

        if admission.delayed {
            ctx.reply.flags.insert(ResponseFlags::DI);
        }
        ctx.attempts.deadline = admission.deadline;
        match admission.verdict {
            Ok(guard) => {
                if guard.is_some() {
                    ctx.attempts.pool_guard = guard;
                }
            }
            Err(Refusal::NoEndpoints) => return Err(Failure::NoHealthyUpstream),
            Err(Refusal::FaultAbort(abort)) => return Err(Failure::FaultAbort(abort)),
            Err(Refusal::DeadlineWhileQueued) => return Err(Failure::UpstreamTimeout),
            Err(Refusal::Overflow(overflow)) => {
                self.metrics
                    .record_overflow(&cluster.name.to_string(), overflow.as_str());
                return Err(Failure::Overflow);
            }
        }
        if let LbChoice::ConsistentHash(key) = &cluster.lb {
            let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            ctx.attempts.hash =
                crate::upstream::request_hash(key, &req.headers, pq, ctx.caller.client_ip);
        }
        Ok(())
    }
}
