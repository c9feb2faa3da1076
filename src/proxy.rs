//! The Pingora `ProxyHttp` implementation: the request path of
//! `ARCHITECTURE.md`, phase by phase. Each phase loads what it needs from the request context
//! and calls one function per concern (routing, telemetry, …); the logic
//! lives in those modules.

mod admission;
mod attempts;
mod authorize;
mod ctx;
pub mod direct;
mod ext_authz;
pub mod failure;
mod h2_websocket;
pub mod headers;
pub mod jwks;
mod local_reply;
pub mod mesh_http;
mod mirror;
mod observe;
mod plugins;
mod request;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::modules::http::HttpModules;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

pub use ctx::RequestCtx;
use failure::Failure;
use h2_websocket::Connect;
use mirror::Mirrorer;
use request::{destination_of, request_info};

use crate::inbound::Downstream;
use crate::overload::Overload;
use crate::policy::deadline::format_grpc_timeout;
use crate::policy::retry::{AttemptFailure, RetryDecision};
use crate::settings::Settings;
use crate::store::SnapshotStore;
use crate::telemetry::trace::{ActiveSpan, Tracer};
use crate::telemetry::{Metrics, ResponseFlags};
use crate::upstream::dial::Dialer;
use crate::upstream::outlier::Outcome;
use crate::upstream::{Locality, PickRequest, PooledConnUses};
use crate::wasm::Verdict;

/// The waypoint's proxy logic, shared by every listener.
pub struct Waypoint {
    store: Arc<SnapshotStore>,
    metrics: Arc<Metrics>,
    settings: Arc<Settings>,
    /// Opens every upstream connection: plain, or HBONE to in-mesh endpoints.
    dialer: Arc<Dialer>,
    mirrorer: Mirrorer,
    /// The waypoint's own identity when `--forward-client-cert` is on.
    forward_client_cert: Option<crate::identity::Identity>,
    /// The waypoint's own locality (`--locality`), for locality-aware LB.
    locality: Option<Locality>,
    /// Request counts and ages of the connections Pingora's pool reuses.
    conn_uses: Arc<PooledConnUses>,
    /// Distributed tracing; `None` when MeshConfig defines no tracing provider.
    tracer: Option<Arc<Tracer>>,
    /// Sheds new requests past the overload thresholds (`503 OM`).
    overload: Arc<Overload>,
}

impl Waypoint {
    pub fn new(
        store: Arc<SnapshotStore>,
        metrics: Arc<Metrics>,
        settings: Arc<Settings>,
        dialer: Arc<Dialer>,
    ) -> Self {
        let forward_client_cert = dialer
            .own_identity()
            .filter(|_| settings.forward_client_cert);
        let locality = settings
            .locality
            .as_deref()
            .and_then(|l| l.parse::<Locality>().ok());
        let mirrorer = Mirrorer::new(dialer.clone(), metrics.clone());
        Self {
            store,
            metrics,
            settings,
            mirrorer,
            dialer,
            forward_client_cert,
            locality,
            conn_uses: Arc::default(),
            tracer: None,
            overload: Overload::unlimited(),
        }
    }

    /// Sheds requests under `overload`'s thresholds (one per process, from the server).
    pub fn with_overload(mut self, overload: Arc<Overload>) -> Self {
        self.overload = overload;
        self
    }

    /// Traces requests with `tracer` (built once per process by the server).
    pub fn with_tracer(mut self, tracer: Option<Arc<Tracer>>) -> Self {
        self.tracer = tracer;
        self
    }

    /// Starts the request's span once its destination is known (both request
    /// paths), under the tracing policy `published` (the request's snapshot)
    /// compiled for the destination Service; a request answered before it has
    /// one (404, 431, 503 `OM`) is traced under the mesh-wide policy, as Envoy
    /// traces its local replies. The tunnel's `traceparent` is ztunnel's
    /// per-connection correlation id, not a span anyone reported: logged, never
    /// a parent. Without a tracer this is one branch.
    fn start_trace(
        &self,
        req: &pingora_http::RequestHeader,
        published: &crate::store::Published,
        destination: Option<&crate::routing::DestinationPort>,
        caller: &crate::inbound::Caller,
    ) -> Option<ActiveSpan> {
        let tracer = self.tracer.as_ref()?;
        if published.telemetry.traces_nothing() {
            return None;
        }
        if let Some(tp) = &caller.traceparent {
            tracing::debug!(tunnel_traceparent = %tp, "HBONE CONNECT correlation id (not a span parent)");
        }
        let service = destination.map(|d| &d.service.labels);
        let effective = published
            .telemetry
            .find(service.map(|s| (&*s.namespace, &*s.name)));
        tracer.start(req, &effective.trace_policy)
    }

    /// Answers a request refused before routing, with its span.
    async fn answer_unrouted(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        failure: Failure,
    ) -> Result<bool> {
        if let Some(published) = ctx.published.clone() {
            ctx.trace = self.start_trace(session.req_header(), &published, None, &ctx.caller);
        }
        self.answer(session, ctx, failure).await
    }
}

impl Waypoint {
    /// The endpoint for the next attempt, avoiding endpoints already tried
    /// when another is available; a 504 once the route deadline passed, a
    /// 503 when no endpoint is healthy.
    fn pick_attempt(&self, ctx: &mut RequestCtx) -> Result<crate::upstream::Picked> {
        if ctx.attempts.expired() {
            ctx.reply.failure = Some(Failure::UpstreamTimeout);
            return Err(Error::explain(ErrorType::HTTPStatus(504), "route timeout"));
        }
        let plan = ctx.routed.plan.as_ref().ok_or_else(no_plan)?;
        let pick = PickRequest {
            avoid: &ctx.attempts.tried,
            hash: ctx.attempts.hash,
            locality: self.locality.as_ref(),
        };
        let Some(picked) = plan.endpoints.pick_with(&pick) else {
            ctx.reply.failure = Some(Failure::NoHealthyUpstream);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no healthy upstream",
            ));
        };
        let addr = picked.endpoint.addr;
        if let Some(filters) = ctx.wasm.filters.as_mut() {
            filters.set_upstream(addr);
        }
        ctx.attempts.tried.push(addr);
        Ok(picked)
    }

    /// The route's request filters on the way out: forwarding headers,
    /// RequestHeaderModifier, URLRewrite (mirrors are the caller's).
    fn prepare_upstream_request(
        &self,
        upstream: &mut pingora_http::RequestHeader,
        ctx: &RequestCtx,
    ) -> Result<()> {
        headers::add_forwarding_headers(upstream, ctx.caller.client_ip, &ctx.request_id);
        // The waypoint's span is the parent the upstream sees. The tunnel's
        // `traceparent` is not forwarded: only the request's own headers
        // carry trace context.
        if let Some(span) = &ctx.trace {
            span.inject(upstream);
        }
        if let (Some(own), Some(peer)) = (&self.forward_client_cert, &ctx.caller.identity) {
            headers::add_client_cert(upstream, own, peer);
        }
        // As Envoy with `max_grpc_timeout`: the backend learns the time left.
        if ctx.reply.grpc {
            let now = tokio::time::Instant::now();
            if let Some(left) = ctx.attempts.deadline.remaining(now) {
                upstream.insert_header("grpc-timeout", format_grpc_timeout(left))?;
            }
        }
        let Some(plan) = ctx.routed.plan.as_ref() else {
            return Ok(());
        };
        for m in &plan.request_headers {
            m.apply(upstream);
        }
        if let Some(rewrite) = &plan.rewrite {
            if let Some(pq) = &rewrite.path_and_query {
                let uri = pq.parse::<http::Uri>().map_err(|e| {
                    Error::because(
                        ErrorType::InternalError,
                        "BUG: rewritten path is not a URI",
                        e,
                    )
                })?;
                upstream.set_uri(uri);
            }
            if let Some(authority) = &rewrite.authority {
                upstream.insert_header(http::header::HOST, authority.as_str())?;
            }
        }
        Ok(())
    }
}

fn no_plan() -> Box<Error> {
    Error::explain(ErrorType::InternalError, "BUG: an attempt without a plan")
}

/// A request-body plugin verdict as the phase's result: a local answer or a
/// reset ends the exchange.
fn plugins_body_verdict(verdict: Verdict, ctx: &mut RequestCtx) -> Result<()> {
    match verdict {
        Verdict::Continue => Ok(()),
        Verdict::Respond(local) => {
            let status = local.status;
            ctx.wasm.local = Some(local);
            Err(Error::explain(
                ErrorType::HTTPStatus(status),
                "wasm plugin answered",
            ))
        }
        Verdict::Reset => Err(Error::explain(
            ErrorType::ConnectionClosed,
            "wasm plugin closed the stream",
        )),
    }
}

#[async_trait]
impl ProxyHttp for Waypoint {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    /// No downstream modules: the waypoint never compresses on the client's behalf.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// Runs first for every request: pins the config, identifies the caller
    /// and the destination Service, and routes. Answers locally (redirects,
    /// 404/500/503/431) and returns `true`, or leaves a [`ForwardPlan`] in the
    /// context and returns `false` to proxy.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let published = self.store.load();
        ctx.published = Some(published.clone());
        let downstream = Downstream::of(session);
        ctx.caller = downstream.caller;
        ctx.request_id = headers::request_id(session.req_header());
        ctx.reply.grpc = failure::is_grpc_request(session.req_header());

        match self.overload.admit_request() {
            Ok(admitted) => ctx.admitted = admitted,
            Err(_) => {
                return self
                    .answer_unrouted(session, ctx, Failure::Overloaded)
                    .await
            }
        }
        if headers::headers_too_large(
            session.req_header(),
            self.settings.max_request_headers_bytes,
            self.settings.max_request_headers_count,
        ) {
            return self
                .answer_unrouted(session, ctx, Failure::HeadersTooLarge)
                .await;
        }
        match h2_websocket::connect_kind(session.req_header()) {
            Connect::None => {}
            Connect::WebSocket => {
                h2_websocket::as_http1_upgrade(session.req_header_mut())?;
                ctx.h2_websocket = true;
            }
            Connect::Unsupported => {
                return self
                    .answer_unrouted(session, ctx, Failure::BadRequest)
                    .await
            }
        }
        if session.is_upgrade_req() {
            ctx.upgrade = true;
            // Pingora's downstream body reads time out after 60 s by default,
            // which would cut a quiet WebSocket.
            session.set_read_timeout(Some(self.settings.upgrade_idle_timeout));
        }

        let snapshot = &published.snapshot;
        let destination =
            match destination_of(snapshot, downstream.target.as_ref(), session.req_header()) {
                Ok(d) => d,
                Err(failure) => return self.answer_unrouted(session, ctx, failure).await,
            };
        ctx.trace = self.start_trace(
            session.req_header(),
            &published,
            Some(&destination),
            &ctx.caller,
        );
        ctx.routed.destination = Some(destination.clone());

        // AuthorizationPolicy and proxy-wasm, in Istio's order: plugins in the
        // AUTHN/AUTHZ phases before authorization, the others after it.
        let plugins_first = published
            .plugins
            .chain_for(&destination.service.key, destination.port.number)
            .iter()
            .any(|p| p.before_authorization());
        if plugins_first {
            if let Some(answered) = self
                .request_plugins(session, ctx, &published, &destination)
                .await?
            {
                return Ok(answered);
            }
        }
        if let Some(answered) = self
            .authorization(
                session,
                ctx,
                &published,
                &destination,
                downstream.target.as_ref(),
            )
            .await?
        {
            return Ok(answered);
        }
        if !plugins_first {
            if let Some(answered) = self
                .request_plugins(session, ctx, &published, &destination)
                .await?
            {
                return Ok(answered);
            }
        }

        let host_header = headers::host(session.req_header()).unwrap_or("");
        let (host, _) = headers::split_port(host_header);
        let info = request_info(session.req_header(), host, destination.port.number);
        let decision = snapshot.route(&destination, &info, ctx.caller.namespace());
        let answered = self.follow(session, ctx, decision).await?;
        if !answered && ctx.h2_websocket {
            return self.websocket_over_h2(session, ctx).await;
        }
        Ok(answered)
    }

    /// Picks the endpoint for this attempt; called again on every retry,
    /// avoiding endpoints already tried when another is available.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // A retry waits out its backoff first, bounded by the route deadline.
        if let Some(wait) = attempts::backoff(ctx) {
            tokio::time::sleep(wait).await;
        }
        let picked = self.pick_attempt(ctx)?;
        let plan = ctx.routed.plan.as_ref().ok_or_else(no_plan)?;
        let (peer, lease) = self.peer_for(ctx, plan, &picked);
        // The previous attempt's tunnel (if any) failed: dropping its lease closes it.
        ctx.attempts.tunnel = lease;
        ctx.attempts.picked = Some(picked);
        Ok(peer)
    }

    /// A failed connect is reported to outlier detection and retried on
    /// another endpoint when the route's policy allows (Istio's default
    /// retries connect failures twice); safe for any method, nothing was sent.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.reply.flags.insert(ResponseFlags::UF);
        attempts::report(ctx, Outcome::LocalFailure);
        let retry = attempts::try_retry(ctx, AttemptFailure::ConnectFailure);
        e.set_retry(retry);
        e
    }

    /// An error after the connection was up: a reset or a per-try timeout,
    /// or a retriable status `upstream_response_filter` turned into an error.
    /// Retried per policy when the request body can be replayed.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let failure = match ctx.attempts.retry_failure.take() {
            Some(failure) => failure,
            None => {
                attempts::report(ctx, Outcome::LocalFailure);
                attempts::classify(&e)
            }
        };
        let replayable = !session.as_ref().retry_buffer_truncated();
        let retry = replayable && attempts::try_retry(ctx, failure);
        e.set_retry(retry);
        e
    }

    /// Reports the status to outlier detection; a status the retry policy
    /// names becomes a retryable error while retries remain (Pingora then
    /// calls `upstream_peer` again). Once they are spent, the last response
    /// goes to the client, flagged URX.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let code = upstream_response.status.as_u16();
        attempts::report(ctx, Outcome::Status(code));
        // A trailers-only gRPC response carries its status in the headers.
        let grpc_status = observe::grpc_status(&upstream_response.headers);
        if grpc_status.is_some() {
            ctx.reply.grpc_status = grpc_status;
        }
        let (decision, failure) = attempts::decide_on_response(ctx, code, grpc_status);
        match decision {
            RetryDecision::Retry => {
                ctx.attempts.retry_failure = Some(failure);
                let mut e =
                    Error::explain(ErrorType::HTTPStatus(code), "retriable upstream status");
                e.set_retry(true);
                Err(e)
            }
            RetryDecision::GiveUp { urx: true } => {
                ctx.reply.flags.insert(ResponseFlags::URX);
                Ok(())
            }
            RetryDecision::GiveUp { urx: false } | RetryDecision::NotRetriable => Ok(()),
        }
    }

    /// Applies the route's request filters on the way out: forwarding
    /// headers, RequestHeaderModifier, URLRewrite; then starts mirrors.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora_http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.prepare_upstream_request(upstream, ctx)?;
        if std::mem::take(&mut ctx.attempts.last_on_connection) {
            // Pingora's pool does not keep a connection whose request said so.
            upstream.insert_header(http::header::CONNECTION, "close")?;
        }
        if let Some(plan) = ctx.routed.plan.as_ref() {
            if ctx.attempts.tried.len() == 1 && !plan.mirrors.is_empty() {
                ctx.mirror = self.mirrorer.start(
                    &plan.mirrors,
                    upstream,
                    &ctx.caller.originator(),
                    !session.is_body_empty(),
                );
            } else if let Some(pending) = ctx.mirror.as_mut() {
                pending.restart();
            }
        }
        Ok(())
    }

    /// Counts the request against its connection's reuse limits (the
    /// cluster's `maxRequestsPerConnection`, `maxConnectionDuration`).
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora_core::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        self.count_connection_use(ctx, peer, fd, reused);
        Ok(())
    }

    /// Applies ResponseHeaderModifier filters.
    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(plan) = ctx.routed.plan.as_ref() {
            for m in &plan.response_headers {
                m.apply(upstream_response);
            }
        }
        if let Some(filters) = ctx.wasm.filters.as_mut() {
            let status = upstream_response.status.as_u16();
            match filters
                .on_response_headers(status, upstream_response, false)
                .await
            {
                Verdict::Continue => {
                    if let Some(code) = filters.response_status() {
                        let _ = upstream_response.set_status(code);
                    }
                }
                Verdict::Respond(local) => plugins::replace_response(upstream_response, ctx, local),
                Verdict::Reset => {
                    return Err(Error::explain(
                        ErrorType::ConnectionClosed,
                        "wasm plugin closed the stream",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Records the `grpc-status` trailer of a gRPC response for the metrics;
    /// the trailers go to the client unchanged.
    async fn response_trailer_filter(
        &self,
        _session: &mut Session,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Bytes>> {
        if let Some(status) = observe::grpc_status(trailers) {
            ctx.reply.grpc_status = Some(status);
        }
        Ok(None)
    }

    /// Turns a proxying error into the status, flag and body Envoy would send.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if let Some(local) = ctx.wasm.local.take() {
            let status = local.status;
            session.as_downstream_mut().set_keepalive(None);
            let _ = plugins::respond(session, ctx, local).await;
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        let failure = ctx
            .reply
            .failure
            .clone()
            .or_else(|| Failure::from_proxy_error(e));
        let mut can_reuse_downstream = false;
        let error_code = match failure {
            Some(failure) => {
                let status = failure.status_for(ctx.reply.grpc);
                if session.response_written().is_none() {
                    // As Envoy, a whole local answer to a request read to its
                    // end leaves the connection usable (a 504 from a route
                    // timeout is policy, not a broken connection). Otherwise
                    // Pingora closes it: say so, or a pooling client reuses a
                    // dead connection.
                    can_reuse_downstream = session.as_downstream_mut().is_body_done();
                    if !can_reuse_downstream {
                        session.as_downstream_mut().set_keepalive(None);
                    }
                    can_reuse_downstream &= self.answer(session, ctx, failure).await.is_ok();
                } else {
                    ctx.reply.flags.insert(failure.flags());
                }
                status
            }
            None => {
                ctx.reply.flags.insert(ResponseFlags::DC);
                0
            }
        };
        FailToProxy {
            error_code,
            can_reuse_downstream,
        }
    }

    /// Feeds request body chunks through the plugins (a pause buffers).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(filters) = ctx.wasm.filters.as_mut() {
            plugins_body_verdict(filters.on_request_body(body, end_of_stream).await, ctx)?;
        }
        // The mirror copies the body as it goes upstream, after the plugins.
        if let Some(pending) = ctx.mirror.take() {
            ctx.mirror = pending.push(&self.mirrorer, body.as_ref(), end_of_stream);
        }
        Ok(())
    }

    /// Feeds response body chunks through the plugins, or substitutes a
    /// plugin's local body.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        // The route deadline (a gRPC call's `grpc-timeout`) bounds the whole
        // response, as Envoy's route timeout does: one still streaming past it
        // is cut. An upgraded connection has no deadline, only its idle timeout.
        if !ctx.upgrade && ctx.attempts.expired() {
            ctx.reply.flags.insert(ResponseFlags::UT);
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "route deadline passed while the response streamed",
            ));
        }
        if ctx.wasm.body.is_some() {
            plugins::substitute_body(ctx, body);
            return Ok(None);
        }
        if let Some(filters) = ctx.wasm.filters.as_mut() {
            // Headers are gone by now: a late local response can only end the stream.
            if let Verdict::Reset = filters.on_response_body(body, end_of_stream) {
                return Err(Error::explain(
                    ErrorType::ConnectionClosed,
                    "wasm plugin closed the stream",
                ));
            }
        }
        Ok(None)
    }

    /// Records metrics and writes the access log once the request is over.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(tunnel) = ctx.attempts.tunnel.take() {
            tunnel.finish(e.is_none());
        }
        if let Some(filters) = ctx.wasm.filters.as_mut() {
            filters.on_log();
        }
        let exchange = observe::Exchange::of(session);
        observe::record(&exchange, ctx, &self.metrics);
        observe::finish_trace(&exchange, ctx, self.tracer.as_deref());
    }
}
