//! The steps `request_filter` and `upstream_peer` dispatch to: find the
//! destination in the request's snapshot, run the request-header plugins,
//! act on the routing decision, and build the Pingora peer for an attempt.

use std::sync::Arc;

use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, Peer};
use pingora_error::{Error, ErrorType, Result};
use pingora_proxy::Session;

use crate::hbone::{ConnectTarget, TunnelLease};
use crate::inbound::tunnel::resolve_target;
use crate::routing::{DestinationPort, ForwardPlan, RequestInfo, RouteDecision, Snapshot};
use crate::store::Published;
use crate::upstream::dial::{DialTarget, Dialer};
use crate::upstream::Picked;
use crate::wasm::Verdict;

use super::ctx::RequestCtx;
use super::failure::Failure;
use super::{attempts, headers, plugins, Waypoint};

impl Waypoint {
    /// The Pingora peer for one attempt at `picked`: timeouts from the
    /// route and cluster, the dialer's transport (HBONE to in-mesh
    /// endpoints), HTTP/2 when the port's `appProtocol` asks for it. An
    /// HBONE peer comes with the lease on its tunnel.
    pub(super) fn peer_for(
        &self,
        ctx: &RequestCtx,
        plan: &ForwardPlan,
        picked: &Picked,
    ) -> (Box<HttpPeer>, Option<TunnelLease>) {
        let addr = picked.endpoint.addr;
        let mut peer = HttpPeer::new(addr, false, String::new());
        attempts::set_timeouts(&mut peer, ctx, self.settings.connect_timeout);
        if ctx.upgrade {
            // Like Envoy's WebSocket routes: once upgraded, the route's
            // timeouts no longer apply; a silent direction does.
            let idle = Some(self.settings.upgrade_idle_timeout);
            peer.options.read_timeout = idle;
            peer.options.write_timeout = idle;
        }
        let target = DialTarget {
            addr,
            in_mesh: picked.endpoint.in_mesh,
        };
        let timeout = peer
            .options
            .connection_timeout
            .unwrap_or(self.settings.connect_timeout);
        let limits = plan.endpoints.cluster().reuse_limits();
        // An HTTP/1.1 upgrade is only defined over HTTP/1.1.
        if wants_h2c(plan) && !ctx.upgrade {
            peer.options.set_http_version(2, 2);
            // Multiplex, as Envoy's upstream HTTP/2 does: Pingora's default
            // of one stream per connection opened a connection per
            // concurrent call. Capped by the server's MAX_CONCURRENT_STREAMS.
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
            if !limits.is_unlimited() {
                // A spent HTTP/2 connection is left behind by a new pool key.
                peer.group_key = self.conn_uses.generation(addr);
            }
        }
        let lease = self.dialer.configure_peer(
            &mut peer,
            target,
            &ctx.caller.originator(),
            timeout,
            limits,
        );
        if ctx.upgrade {
            Dialer::gate_upgrade(&mut peer);
        }
        (Box::new(peer), lease)
    }

    /// `connected_to_upstream`: counts the attempt against its connection
    /// (`fd`, from Pingora's pool when `reused`). When it is the connection's
    /// last, an HTTP/1.1 request says `Connection: close`; an HTTP/2
    /// connection's endpoint moves to a new pool generation.
    pub(super) fn count_connection_use(
        &self,
        ctx: &mut RequestCtx,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        reused: bool,
    ) {
        let Some(plan) = ctx.routed.plan.as_ref() else {
            return;
        };
        let limits = plan.endpoints.cluster().reuse_limits();
        if !self.conn_uses.on_request(fd, reused, limits) {
            return;
        }
        if peer.options.alpn == ALPN::H2 {
            if let Some(addr) = peer.address().as_inet() {
                self.conn_uses.retire_generation(*addr, peer.group_key);
            }
        } else {
            ctx.attempts.last_on_connection = true;
        }
    }

    /// Acts on the routing decision: a local answer, or admission and a
    /// plan to proxy (`Ok(false)`).
    pub(super) async fn follow(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        decision: RouteDecision,
    ) -> Result<bool> {
        match decision {
            RouteDecision::NoRoute => self.answer(session, ctx, Failure::NoRoute).await,
            RouteDecision::InvalidBackend {
                route,
                reason,
                counters,
            } => {
                ctx.routed.route = Some(route);
                ctx.routed.counters = counters;
                self.answer(session, ctx, Failure::InvalidBackend(reason))
                    .await
            }
            RouteDecision::Redirect {
                route,
                status,
                location,
                response_headers,
                counters,
            } => {
                ctx.routed.route = Some(route);
                ctx.routed.counters = counters;
                self.redirect(session, ctx, status, &location, &response_headers)
                    .await
            }
            RouteDecision::Respond {
                route,
                reply,
                counters,
            } => {
                ctx.routed.route = Some(route);
                ctx.routed.counters = counters;
                self.respond_locally(session, ctx, &reply).await
            }
            RouteDecision::Forward(plan) => {
                ctx.routed.route = plan.route.clone();
                ctx.routed.counters = plan.counters.clone();
                ctx.routed.plan = Some(plan);
                match self.admit(session.req_header(), ctx).await {
                    Ok(()) => Ok(false),
                    Err(failure) => self.answer(session, ctx, failure).await,
                }
            }
        }
    }

    /// Runs the request-header callbacks of the plugins that apply to
    /// `destination`; `Some` when a plugin answered (or reset) the request.
    pub(super) async fn request_plugins(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        published: &Arc<Published>,
        destination: &DestinationPort,
    ) -> Result<Option<bool>> {
        let Some(mut filters) = plugins::start(published, session, ctx, destination, &self.dialer)
        else {
            return Ok(None);
        };
        let end_of_stream = session.as_downstream_mut().is_body_empty();
        let verdict = filters
            .on_request_headers(session.req_header_mut(), end_of_stream)
            .await;
        plugins::apply_request_line(&filters, session.req_header_mut());
        ctx.wasm.filters = Some(filters);
        match verdict {
            Verdict::Continue => Ok(None),
            Verdict::Respond(local) => plugins::respond(session, ctx, local).await.map(Some),
            Verdict::Reset => Err(Error::explain(
                ErrorType::ConnectionClosed,
                "wasm plugin closed the stream",
            )),
        }
    }
}

/// The Service port a request is for, in `snapshot`: what the tunnel named,
/// else the Service the Host header names (plain listener).
pub(super) fn destination_of(
    snapshot: &Snapshot,
    tunnel_target: Option<&ConnectTarget>,
    req: &pingora_http::RequestHeader,
) -> std::result::Result<DestinationPort, Failure> {
    match tunnel_target {
        // None: the tunnel's Service went away in a reload since the CONNECT.
        Some(target) => resolve_target(snapshot, target).ok_or(Failure::NoHealthyUpstream),
        None => {
            let host = headers::host(req).unwrap_or("");
            snapshot
                .find_destination_by_host(host)
                .ok_or_else(|| Failure::UnknownDestination(host.to_string()))
        }
    }
}

/// Routing's view of a request.
pub(super) fn request_info<'a>(
    req: &'a pingora_http::RequestHeader,
    host: &'a str,
    port: u16,
) -> RequestInfo<'a> {
    RequestInfo {
        method: req.method.as_str(),
        path_and_query: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        headers: &req.headers,
        scheme: "http",
        host,
        port,
    }
}

/// Concurrent streams per upstream HTTP/2 connection (a common server
/// default for SETTINGS_MAX_CONCURRENT_STREAMS).
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Whether the backend port speaks HTTP/2 without TLS. As Istio selects a
/// port's protocol: its `appProtocol` (`kubernetes.io/h2c`, `h2c`, `http2`,
/// `grpc`, any case) when set, else its name's prefix before the first `-`
/// (`grpc`, `grpc-web`, `http2-api`).
pub(super) fn wants_h2c(plan: &ForwardPlan) -> bool {
    plan.backend.port.speaks_h2c()
}
