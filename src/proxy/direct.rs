//! The HTTP/1.1 fast path: Pingora's h1 server and client sessions driven
//! directly, for the requests that need nothing of Pingora's full proxy loop.
//!
//! Why: `HttpProxy` costs about 2.3× the user-space CPU of the same exchange
//! driven by hand (BENCHMARKS.md, `benches/pingora_direct.rs`): a task channel
//! and two joined futures per request, a connector pool that checks every reused
//! connection with `getpeername` and spawns a watcher for every idle one, a
//! 64 KiB body buffer per response. The fast path keeps Pingora's HTTP/1.1 codec
//! (parsing, framing, keep-alive rules) and the waypoint's own phases (routing,
//! admission, retries, headers, telemetry), and drops the rest.
//!
//! Which requests: HTTP/1.1 without a body or hop-by-hop headers (other than
//! `Connection: keep-alive`), forwarded by a route with no Wasm plugin and no
//! mirror to HTTP/1.1 endpoints, plain or over HBONE (kept tunnels, as the
//! full proxy keeps them). Everything else — and every request the
//! waypoint answers itself before routing (errors, redirects) — goes to
//! Pingora's proxy ([`super::Waypoint`]'s `ProxyHttp`) with its bytes replayed
//! ([`crate::inbound::replay`]), so both paths give the same answers.

mod pool;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Method, Version};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::v1::client::HttpSession as Upstream;
use pingora_core::protocols::http::v1::server::HttpSession as Downstream1;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::HttpProxy;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::debug;

use crate::inbound::replay::{ReadLog, Replay};
use crate::inbound::Downstream;
use crate::policy::retry::{AttemptFailure, RetryDecision};
use crate::routing::RouteDecision;
use crate::telemetry::ResponseFlags;
use crate::upstream::dial::{DialTarget, Transport};
use crate::upstream::outlier::Outcome;

use super::ctx::{RequestCtx, Routed};
use super::failure::{self, Failure};
use super::local_reply::failure_reply;
use super::observe::{self, Exchange};
use super::request::{destination_of, request_info, wants_h2c};
use super::{attempts, headers, Waypoint};

/// The app a listener hands an HTTP connection to: the fast path for HTTP/1.1,
/// with Pingora's proxy behind it; or Pingora's proxy alone (h2c).
pub struct Front {
    fast: Option<FastPath>,
    full: Arc<HttpProxy<Waypoint>>,
    shutting_down: AtomicBool,
    shutdown: Notify,
}

/// The fast path's own state.
struct FastPath {
    waypoint: Waypoint,
    pool: pool::IdlePool,
}

impl Front {
    /// HTTP/1.1 connections: `waypoint` serves the fast path, `full` (built
    /// over an equal `Waypoint`) everything else.
    pub fn http1(waypoint: Waypoint, full: HttpProxy<Waypoint>) -> Self {
        Front {
            fast: Some(FastPath {
                waypoint,
                pool: pool::IdlePool::default(),
            }),
            ..Front::proxy_only(full)
        }
    }

    /// Connections Pingora's proxy serves whole (h2c).
    pub fn proxy_only(full: HttpProxy<Waypoint>) -> Self {
        Front {
            fast: None,
            full: Arc::new(full),
            shutting_down: AtomicBool::new(false),
            shutdown: Notify::new(),
        }
    }

    /// Reads the next request head; `None` when the connection is over.
    async fn read_head(&self, down: &mut Downstream1) -> Option<Result<()>> {
        // Registered before the flag is checked, so a shutdown between the two
        // still wakes this connection.
        let shutdown = self.shutdown.notified();
        tokio::pin!(shutdown);
        shutdown.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        tokio::select! {
            biased;
            read = down.read_request() => match read {
                Ok(Some(_)) => Some(Ok(())),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
            _ = shutdown => None,
        }
    }
}

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

/// How a request left the fast path.
enum Served {
    /// Answered; the connection may carry another request.
    Done,
    /// Not for the fast path: replay it into Pingora's proxy.
    Declined,
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(fast) = &self.fast else {
            return self.full.process_new(stream, shutdown).await;
        };
        let log = Arc::new(ReadLog::default());
        let mut stream: Stream = Box::new(Replay::new(stream, log.clone()));
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
            if let Some(settings) = carried.take() {
                settings.apply_to_session(&mut session);
            }
            let ServerSession::H1(mut down) = session else {
                return None;
            };
            // Neither path enables pipelining, so no request starts buffered.
            log.start(None);
            let served = match self.read_head(&mut down).await? {
                Ok(()) => match fast.waypoint.plan_fast(&mut down) {
                    Some(ctx) => {
                        drop(log.take());
                        fast.waypoint.serve_fast(&mut down, ctx, &fast.pool).await;
                        Served::Done
                    }
                    None => Served::Declined,
                },
                // Malformed or oversized: Pingora's proxy answers it (400).
                Err(_) => Served::Declined,
            };
            match served {
                Served::Done => match down.reuse().await {
                    Ok(Some(next)) => stream = next.into_parts().0,
                    _ => return None,
                },
                Served::Declined => {
                    let head = log.take();
                    let mut session = ServerSession::new_http1(down.into_inner());
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    if let ServerSession::H1(s) = &mut session {
                        s.set_pipelined_prefix(head);
                    }
                    let reused = self.full.process_new_http(session, shutdown).await?;
                    let (next, settings) = reused.consume();
                    stream = next;
                    carried = settings;
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
        self.full.cleanup().await;
    }
}

/// Request headers that ask something of the hop (RFC 9110 §7.6.1; the set
/// Pingora's proxy strips) or of the body; a request with any of them takes
/// Pingora's proxy, which sanitises them. `Connection: keep-alive` alone is allowed (and not forwarded).
const HOP_HEADERS: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "proxy-authorization",
    "proxy-authenticate",
];

/// True for a request the fast path forwards as it is (see the module docs).
fn plain_request(req: &RequestHeader) -> bool {
    let connection_ok = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"));
    let host_ok = req
        .headers
        .get(header::HOST)
        .is_some_and(|h| !h.as_bytes().contains(&b'@'));
    req.version == Version::HTTP_11
        && req.method != Method::CONNECT
        && req.uri.authority().is_none()
        && host_ok
        && connection_ok
        && !HOP_HEADERS.iter().any(|h| req.headers.contains_key(*h))
}

impl Waypoint {
    /// The request's context when the fast path can serve it: pinned
    /// config, caller, destination and a forward plan. `None` sends the request
    /// to Pingora's proxy, which then does all of this itself.
    fn plan_fast(&self, down: &mut Downstream1) -> Option<RequestCtx> {
        if !down.is_body_empty() || !plain_request(down.req_header()) {
            return None;
        }
        let req = down.req_header();
        if headers::header_block_len(req) > self.settings.max_request_headers_bytes {
            return None;
        }
        let published = self.store.load();
        let snapshot = &published.snapshot;
        let downstream = Downstream::of_connection(Some(down.digest()), down.client_addr());
        let destination = destination_of(snapshot, downstream.target.as_ref(), req).ok()?;
        if !published
            .plugins
            .chain_for(&destination.service.key, destination.port.number)
            .is_empty()
        {
            return None;
        }
        let (host, _) = headers::split_port(headers::host(req).unwrap_or(""));
        let info = request_info(req, host, destination.port.number);
        let RouteDecision::Forward(plan) =
            snapshot.route(&destination, &info, downstream.caller.namespace())
        else {
            return None;
        };
        if !plan.mirrors.is_empty() || wants_h2c(&plan) {
            return None;
        }
        Some(RequestCtx {
            request_id: headers::request_id(req),
            caller: downstream.caller,
            published: Some(published.clone()),
            routed: Routed {
                destination: Some(destination),
                route: plan.route.clone(),
                plan: Some(plan),
            },
            ..RequestCtx::default()
        })
    }

    /// Serves a planned request: admission, attempts, the response, telemetry.
    async fn serve_fast(&self, down: &mut Downstream1, mut ctx: RequestCtx, pool: &pool::IdlePool) {
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
        let exchange = Exchange {
            req: down.req_header(),
            written_status: down.response_written().map(|r| r.status.as_u16()),
            body_bytes_read: down.body_bytes_read(),
            body_bytes_sent: down.body_bytes_sent(),
            client_addr: down.client_addr(),
            http2: false,
        };
        observe::record(&exchange, &ctx, &self.metrics, self.settings.access_log);
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
            let (up, code) = match self.attempt(ctx, target, pool, down.req_header()).await {
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
            return self.relay(down, ctx, up, addr, pool).await;
        }
    }

    /// One attempt: a connection, the request head sent, the response head read.
    /// A parked connection the upstream closed meanwhile is replaced once.
    async fn attempt(
        &self,
        ctx: &mut RequestCtx,
        target: DialTarget,
        pool: &pool::IdlePool,
        downstream: &RequestHeader,
    ) -> std::result::Result<(Upstream, u16), Failed> {
        let (mut up, reused) = self
            .open(ctx, target, pool)
            .await
            .map_err(Failed::connect)?;
        let req = self
            .upstream_request(downstream, ctx)
            .map_err(Failed::exchange)?;
        match self.exchange_head(&mut up, req).await {
            Ok(code) => Ok((up, code)),
            Err(e) if !reused || e.esource() == &ErrorSource::Downstream => {
                Err(Failed::exchange(e))
            }
            Err(_) => {
                let mut up = self
                    .open_fresh(ctx, target)
                    .await
                    .map_err(Failed::connect)?;
                let req = self
                    .upstream_request(downstream, ctx)
                    .map_err(Failed::exchange)?;
                let code = self
                    .exchange_head(&mut up, req)
                    .await
                    .map_err(Failed::exchange)?;
                Ok((up, code))
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

    /// An upstream connection for this attempt: an idle one to the same
    /// endpoint, else a new one. `true` when it was reused.
    async fn open(
        &self,
        ctx: &mut RequestCtx,
        target: DialTarget,
        pool: &pool::IdlePool,
    ) -> Result<(Upstream, bool)> {
        // Tunnels are kept by the dialer (per client), plain connections here.
        if self.dialer.transport(target) == Transport::Plain {
            let idle_timeout = ctx
                .routed
                .plan
                .as_ref()
                .and_then(|p| p.endpoints.cluster().idle_timeout);
            if let Some(stream) = pool.take(target.addr, idle_timeout) {
                return Ok((self.upstream_session(stream, ctx), true));
            }
        }
        Ok((self.open_fresh(ctx, target).await?, false))
    }

    /// A new connection (or a kept HBONE tunnel) through the one dialer,
    /// within the cluster's `connectTimeout`.
    async fn open_fresh(&self, ctx: &mut RequestCtx, target: DialTarget) -> Result<Upstream> {
        let cluster = ctx.routed.plan.as_ref().map(|p| p.endpoints.cluster());
        let timeout = cluster
            .and_then(|c| c.connect_timeout)
            .unwrap_or(self.settings.connect_timeout);
        let idle_for = cluster.and_then(|c| c.idle_timeout);
        let (stream, lease) = self
            .dialer
            .open_http1(target, &ctx.caller.originator(), timeout, idle_for)
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
    /// parks the upstream connection when it can carry another request.
    async fn relay(
        &self,
        down: &mut Downstream1,
        ctx: &mut RequestCtx,
        mut up: Upstream,
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
                    down.set_server_keepalive(None);
                    down.finish_body().await.ok();
                    return Ok(false);
                }
            }
        }
        down.finish_body().await?;
        if let Some(stream) = up.reuse().await {
            // A tunnel goes back to its lease when dropped.
            if ctx.attempts.tunnel.is_none() {
                pool.put(addr, stream);
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
        // Pingora's proxy closes the client connection after an upstream error.
        down.set_server_keepalive(None);
        match failure {
            Some(failure) => self.answer_fast(down, ctx, failure).await,
            None => {
                ctx.reply.flags.insert(ResponseFlags::DC);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        for (k, v) in raw {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn plain_requests_are_http11_origin_form_without_hop_headers() {
        assert!(plain_request(&head(&[("host", "a")])));
        assert!(plain_request(&head(&[
            ("host", "a"),
            ("connection", "Keep-Alive")
        ])));
        assert!(!plain_request(&head(&[])), "no Host");
        assert!(!plain_request(&head(&[("host", "u@a")])), "userinfo");
        assert!(!plain_request(&head(&[
            ("host", "a"),
            ("connection", "close")
        ])));
        assert!(!plain_request(&head(&[
            ("host", "a"),
            ("upgrade", "websocket")
        ])));
        assert!(!plain_request(&head(&[("host", "a"), ("te", "trailers")])));
        let mut old = head(&[("host", "a")]);
        old.set_version(Version::HTTP_10);
        assert!(!plain_request(&old), "HTTP/1.0 keep-alive rules differ");
    }
}
