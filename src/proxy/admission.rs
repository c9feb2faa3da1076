//! Admission: the traffic policy a request meets between "route matched"
//! and "pick an endpoint" — fault injection, the route deadline, the
//! consistent-hash key and the connection-pool limits.

use pingora_proxy::Session;

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
        session: &Session,
        ctx: &mut RequestCtx,
    ) -> std::result::Result<(), Failure> {
        let Some(plan) = ctx.plan.as_ref() else {
            return Err(Failure::Internal);
        };
        if plan.endpoints.is_empty() {
            return Err(Failure::NoHealthyUpstream);
        }
        let policy = plan.policy.clone();
        let endpoints = plan.endpoints.clone();
        if let Some(fault) = &policy.fault {
            let action = fault.draw();
            if let Some(delay) = action.delay {
                ctx.flags.insert(ResponseFlags::DI);
                tokio::time::sleep(delay).await;
            }
            if let Some(abort) = action.abort {
                return Err(Failure::FaultAbort(abort));
            }
        }
        // Envoy starts the route timeout when the router sees the request,
        // after the fault filter's delay.
        ctx.deadline = policy.timeout.map(|t| tokio::time::Instant::now() + t);
        let cluster = endpoints.cluster();
        if let LbChoice::ConsistentHash(key) = &cluster.lb {
            let req = session.req_header();
            let pq = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            ctx.hash = crate::upstream::request_hash(key, &req.headers, pq, ctx.caller.client_ip);
        }
        if let Some(limiter) = &cluster.limiter {
            let admitted = match ctx.remaining() {
                Some(left) => tokio::time::timeout(left, limiter.admit())
                    .await
                    .map_err(|_| Failure::UpstreamTimeout)?,
                None => limiter.admit().await,
            };
            match admitted {
                Ok(guard) => ctx.pool_guard = Some(guard),
                Err(overflow) => {
                    self.metrics
                        .record_overflow(&cluster.name.to_string(), overflow.as_str());
                    return Err(Failure::Overflow);
                }
            }
        }
        Ok(())
    }
}
