//! One fast-path request from its plan to its last byte: admission, the
//! attempts (connection, request head, response head, retries), the response
//! relayed, and telemetry. Each step is the `Waypoint` method the `ProxyHttp`
//! phases call for the same moment, so the two paths agree.

use http::{header, Method, Version};
use pingora_core::protocols::http::v1::client::HttpSession as Upstream;
use pingora_core::protocols::http::v1::server::HttpSession as Downstream1;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use tokio::time::Instant;
use tracing::debug;

use crate::policy::conn_reuse::ConnUse;
use crate::policy::retry::{AttemptFailure, RetryDecision};
use crate::proxy::ctx::RequestCtx;
use crate::proxy::failure::{self, Failure};
use crate::proxy::local_reply::failure_reply;
use crate::proxy::observe::{self, Exchange};
use crate::proxy::{attempts, Waypoint};
use crate::telemetry::ResponseFlags;
use crate::upstream::dial::{DialTarget, Transport};
use crate::upstream::outlier::Outcome;

use super::pool;

/// Why an attempt failed, as the retry policy needs to know it.
struct Failed {
    error: Box<Error>,
    /// No connection (UF, `connect-failure`), rather than a failed exchange.
    connecting: bool,
}

impl Failed {
    fn connect(error: Box<Error>) -> Self {
        Failed {
            error,
            connecting: true,
        }
    }

    fn exchange(error: Box<Error>) -> Self {
        Failed {
            error,
            connecting: false,
        }
    }
}

impl Waypoint {
    /// Serves a planned request: admission, attempts, the response, telemetry.
    pub(super) async fn serve_fast(
        &self,
        down: &mut Downstream1,
        mut ctx: RequestCtx,
        pool: &pool::IdlePool,
    ) {
        if let Some(decision) = ctx.authz.take() {
            // Planning let only allowed requests through; this records the decision.
            let _ = self.settle_authz(&mut ctx, &decision, down.req_header());
        }
        let result = match self.admit(down.req_header(), &mut ctx).await {
            Ok(()) => self.forward(down, &mut ctx, pool).await,
            Err(refused) => self
                .answer_fast(down, &mut ctx, refused)
                .await
                .map(|()| false),
        };
        let clean = match result {
            Ok(clean) => clean,
            Err(e) => {
                debug!(error = %e, "fast path: downstream write failed");
                ctx.reply.flags.insert(ResponseFlags::DC);
                down.set_server_keepalive(None);
                false
            }
        };
        // The tunnel of the last attempt is kept only after a complete exchange.
        if let Some(tunnel) = ctx.attempts.tunnel.take() {
            tunnel.finish(clean);
        }
        let exchange = Exchange::of_http1(down);
        observe::record(&exchange, &ctx, &self.metrics);
        observe::finish_trace(&exchange, &mut ctx, self.tracer.as_deref());
    }

    /// Writes the waypoint's own answer for `failure`.
    async fn answer_fast(
        &self,
        down: &mut Downstream1,
        ctx: &mut RequestCtx,
        failure: Failure,
    ) -> Result<()> {
        let (resp, body) = failure_reply(ctx, failure)?;
        down.write_response_header(Box::new(resp)).await?;
        down.write_body(&body).await?;
        down.finish_body().await?;
        Ok(())
    }

    /// The attempts loop (the fast path's `upstream_peer`, `fail_to_connect`,
    /// `error_while_proxy` and `upstream_response_filter`), then the response.
    /// `Ok(true)` when the upstream exchange completed; `Err` only when the
    /// downstream could not be written.
    async fn forward(
        &self,
        down: &mut Downstream1,
        ctx: &mut RequestCtx,
        pool: &pool::IdlePool,
    ) -> Result<bool> {
        loop {
            if let Some(wait) = attempts::backoff(ctx) {
                tokio::time::sleep(wait).await;
            }
            let picked = match self.pick_attempt(ctx) {
                Ok(p) => p,
                Err(e) => return self.fail_fast(down, ctx, &e).await.map(|()| false),
            };
            let addr = picked.endpoint.addr;
            let target = DialTarget {
                addr,
                in_mesh: picked.endpoint.in_mesh,
            };
            ctx.attempts.picked = Some(picked);
            let (up, conn, code) = match self.attempt(ctx, target, pool, down.req_header()).await {
                Ok(answered) => answered,
                Err(Failed { error, connecting }) => {
                    let failure = if connecting {
                        ctx.reply.flags.insert(ResponseFlags::UF);
                        AttemptFailure::ConnectFailure
                    } else {
                        attempts::classify(&error)
                    };
                    attempts::report(ctx, Outcome::LocalFailure);
                    if attempts::try_retry(ctx, failure) {
                        continue;
                    }
                    return self.fail_fast(down, ctx, &error).await.map(|()| false);
                }
            };
            attempts::report(ctx, Outcome::Status(code));
            match attempts::decide_on_status(ctx, code) {
                RetryDecision::Retry => {
                    if attempts::try_retry(ctx, AttemptFailure::Status(code)) {
                        continue;
                    }
                    let e =
                        Error::explain(ErrorType::HTTPStatus(code), "retriable upstream status");
                    return self.fail_fast(down, ctx, &e).await.map(|()| false);
                }
                RetryDecision::GiveUp { urx: true } => ctx.reply.flags.insert(ResponseFlags::URX),
                RetryDecision::GiveUp { urx: false } | RetryDecision::NotRetriable => {}
            }
            return self.relay(down, ctx, (up, conn), addr, pool).await;
        }
    }

    /// One attempt: a connection, the request head sent, the response head read.
    /// A parked connection the upstream closed meanwhile is replaced once. The
    /// connection comes back with its history, this request counted.
    async fn attempt(
        &self,
        ctx: &mut RequestCtx,
        target: DialTarget,
        pool: &pool::IdlePool,
        downstream: &RequestHeader,
    ) -> std::result::Result<(Upstream, ConnUse, u16), Failed> {
        let (mut up, mut conn, reused) = self
            .open(ctx, target, pool)
            .await
            .map_err(Failed::connect)?;
        let req = self
            .upstream_request(downstream, ctx)
            .map_err(Failed::exchange)?;
        conn.count_request();
        match self.exchange_head(&mut up, req).await {
            Ok(code) => Ok((up, conn, code)),
            Err(e) if !reused || e.esource() == &ErrorSource::Downstream => {
                Err(Failed::exchange(e))
            }
            Err(_) => {
                let mut up = self
                    .open_fresh(ctx, target)
                    .await
                    .map_err(Failed::connect)?;
                let mut conn = ConnUse::opened_at(Instant::now());
                let req = self
                    .upstream_request(downstream, ctx)
                    .map_err(Failed::exchange)?;
                conn.count_request();
                let code = self
                    .exchange_head(&mut up, req)
                    .await
                    .map_err(Failed::exchange)?;
                Ok((up, conn, code))
            }
        }
    }

    /// The request as it goes upstream: the client's, without the hop's
    /// `Connection`, with the route's request filters applied.
    fn upstream_request(
        &self,
        downstream: &RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<RequestHeader> {
        let mut req = downstream.clone();
        req.remove_header(&header::CONNECTION);
        self.prepare_upstream_request(&mut req, ctx)?;
        Ok(req)
    }

    /// An upstream connection for this attempt, with its history: an idle one
    /// to the same endpoint the cluster's limits let carry another request,
    /// else a new one. `true` when it was reused.
    async fn open(
        &self,
        ctx: &mut RequestCtx,
        target: DialTarget,
        pool: &pool::IdlePool,
    ) -> Result<(Upstream, ConnUse, bool)> {
        // Tunnels are kept by the dialer (per client), plain connections here.
        if self.dialer.transport(target) == Transport::Plain {
            let cluster = ctx.routed.plan.as_ref().map(|p| p.endpoints.cluster());
            let idle_timeout = cluster.and_then(|c| c.idle_timeout);
            let limits = cluster.map(|c| c.reuse_limits()).unwrap_or_default();
            if let Some((stream, conn)) = pool.take(target.addr, idle_timeout, limits) {
                // An earlier attempt's tunnel failed: dropping its lease closes it,
                // and the connection goes back to this pool, not to a lease.
                ctx.attempts.tunnel = None;
                return Ok((self.upstream_session(stream, ctx), conn, true));
            }
        }
        let up = self.open_fresh(ctx, target).await?;
        Ok((up, ConnUse::opened_at(Instant::now()), false))
    }

    /// A new connection (or a kept HBONE tunnel) through the one dialer,
    /// within the cluster's `connectTimeout`.
    async fn open_fresh(&self, ctx: &mut RequestCtx, target: DialTarget) -> Result<Upstream> {
        let cluster = ctx.routed.plan.as_ref().map(|p| p.endpoints.cluster());
        let timeout = cluster
            .and_then(|c| c.connect_timeout)
            .unwrap_or(self.settings.connect_timeout);
        let idle_for = cluster.and_then(|c| c.idle_timeout);
        let limits = cluster.map(|c| c.reuse_limits()).unwrap_or_default();
        let (stream, lease) = self
            .dialer
            .open_http1(target, &ctx.caller.originator(), timeout, idle_for, limits)
            .await?;
        // The previous attempt's tunnel (if any) failed: dropping its lease closes it.
        ctx.attempts.tunnel = lease;
        Ok(self.upstream_session(Box::new(stream), ctx))
    }

    /// A client session whose reads and writes are bounded by the per-try
    /// timeout and the route deadline, the tighter one.
    fn upstream_session(&self, stream: Stream, ctx: &RequestCtx) -> Upstream {
        let mut up = Upstream::new(stream);
        if let Some(plan) = &ctx.routed.plan {
            let per_try = plan.policy.retry.per_try_timeout;
            let limit = ctx
                .attempts
                .deadline
                .attempt_timeout(per_try, Instant::now());
            up.read_timeout = limit;
            up.write_timeout = limit;
        }
        up
    }

    /// Sends the request head and reads the response head (skipping 1xx);
    /// the response status.
    async fn exchange_head(&self, up: &mut Upstream, req: RequestHeader) -> Result<u16> {
        up.write_request_header(Box::new(req)).await?;
        up.finish_body().await?;
        loop {
            up.read_response().await?;
            let code = up.get_status().map(|s| s.as_u16()).unwrap_or(0);
            match code {
                // Nothing asked for an upgrade: a 101 is a broken upstream.
                101 => return Error::e_explain(ErrorType::InvalidHTTPHeader, "unexpected 101"),
                100..=199 => continue,
                _ => {
                    up.respect_keepalive();
                    return Ok(code);
                }
            }
        }
    }

    /// Passes the response to the client (ResponseHeaderModifier applied) and
    /// parks the upstream connection when it can carry another request (its
    /// own keep-alive and the cluster's reuse limits agree).
    async fn relay(
        &self,
        down: &mut Downstream1,
        ctx: &mut RequestCtx,
        (mut up, conn): (Upstream, ConnUse),
        addr: std::net::SocketAddr,
        pool: &pool::IdlePool,
    ) -> Result<bool> {
        let Some(head) = up.resp_header() else {
            return Error::e_explain(ErrorType::InternalError, "BUG: relay without a response");
        };
        let mut resp = head.clone();
        let no_body =
            down.req_header().method == Method::HEAD || matches!(resp.status.as_u16(), 204 | 304);
        let unframed = !resp.headers.contains_key(header::TRANSFER_ENCODING)
            && !resp.headers.contains_key(header::CONTENT_LENGTH);
        if !no_body && unframed && !up.is_body_done() {
            // A close-delimited body goes out chunked: the client's connection stays usable.
            resp.set_version(Version::HTTP_11);
            resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        }
        if let Some(plan) = ctx.routed.plan.as_ref() {
            for m in &plan.response_headers {
                m.apply(&mut resp);
            }
        }
        down.write_response_header(Box::new(resp)).await?;
        loop {
            match up.read_body_ref().await {
                // A read can end on a chunk boundary with no body bytes: written
                // as a chunk it would be `0\r\n\r\n`, the end of the body.
                Ok(Some([])) => {}
                // The route deadline bounds the whole response (Envoy's route
                // timeout): one still streaming past it is cut, not finished.
                Ok(Some(_)) if ctx.attempts.expired() => {
                    ctx.reply.flags.insert(ResponseFlags::UT);
                    down.set_server_keepalive(None);
                    return Ok(false);
                }
                Ok(Some(chunk)) => {
                    down.write_body(chunk).await?;
                }
                Ok(None) => break,
                Err(e) => {
                    // Mid-body: the status is out, only the flags can tell.
                    let classified = failure::classify(&e);
                    if let Some(f) = classified.failure {
                        ctx.reply.flags.insert(f.flags());
                    }
                    // Cut short, never finished: a terminating chunk would pass
                    // the truncated body off as whole. The connection closes.
                    down.set_server_keepalive(None);
                    return Ok(false);
                }
            }
        }
        down.finish_body().await?;
        if let Some(stream) = up.reuse().await {
            // A tunnel goes back to its lease when dropped.
            if ctx.attempts.tunnel.is_none() {
                let limits = ctx
                    .routed
                    .plan
                    .as_ref()
                    .map(|p| p.endpoints.cluster().reuse_limits())
                    .unwrap_or_default();
                pool.put(addr, stream, conn, limits);
            }
        }
        Ok(true)
    }

    /// Answers an attempt that failed for good, as `fail_to_proxy` does.
    async fn fail_fast(
        &self,
        down: &mut Downstream1,
        ctx: &mut RequestCtx,
        e: &Error,
    ) -> Result<()> {
        let failure = ctx
            .reply
            .failure
            .clone()
            .or_else(|| Failure::from_proxy_error(e));
        // The connection stays usable, as Envoy keeps it after a local answer: the
        // fast path serves only bodiless requests, so nothing is left unread. With
        // no answer to give (`DC`), the client is gone anyway.
        match failure {
            Some(failure) => self.answer_fast(down, ctx, failure).await,
            None => {
                down.set_server_keepalive(None);
                ctx.reply.flags.insert(ResponseFlags::DC);
                Ok(())
            }
        }
    }
}
