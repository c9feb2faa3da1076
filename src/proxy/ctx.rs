//! Per-request state carried through the Pingora phases, grouped by what
//! each phase needs: where the request goes ([`Routed`]), how its upstream
//! attempts went ([`Attempts`]), what the client is told ([`Reply`]) and the
//! proxy-wasm chain ([`WasmState`]). The snapshot is loaded once, in
//! `request_filter`, so every phase of a request sees the same config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::authz::Verdict;
use crate::hbone::TunnelLease;
use crate::inbound::Caller;
use crate::overload::ActiveRequest;
use crate::policy::deadline::Deadline;
use crate::policy::retry::AttemptFailure;
use crate::routing::{DestinationPort, ForwardPlan, RouteName};
use crate::store::Published;
use crate::telemetry::live::LiveCounters;
use crate::telemetry::trace::ActiveSpan;
use crate::telemetry::ResponseFlags;
use crate::upstream::{Picked, PoolGuard};
use crate::wasm::{HttpFilters, LocalResponse};

use super::failure::Failure;
use super::mirror::PendingMirror;

/// The request context (`ProxyHttp::CTX`).
pub struct RequestCtx {
    /// When the request arrived: monotonic for durations, wall clock for logs.
    pub started: tokio::time::Instant,
    pub start_time: SystemTime,
    /// The config this request is served with, from its first phase to its last.
    pub published: Option<Arc<Published>>,
    pub caller: Caller,
    pub request_id: String,
    pub routed: Routed,
    pub attempts: Attempts,
    pub reply: Reply,
    pub wasm: WasmState,
    /// The fast path's AuthorizationPolicy decision, made while planning and
    /// recorded once the request is served there.
    pub authz: Option<Verdict>,
    /// An HTTP/1.1 upgrade request (WebSocket, …): after the 101 the
    /// connection is a byte stream limited by the upgrade idle timeout, not
    /// by the route's timeouts.
    pub upgrade: bool,
    /// An RFC 8441 WebSocket (HTTP/2 extended CONNECT), served by
    /// `h2_websocket` once routed.
    pub h2_websocket: bool,
    /// RequestMirror copies waiting for the request body.
    pub mirror: Option<PendingMirror>,
    /// The request's tracing span, when its destination's policy traces.
    pub trace: Option<ActiveSpan>,
    /// Counts the request in flight for the overload manager, until the context drops.
    pub admitted: Option<ActiveRequest>,
}

/// Where routing sent the request.
#[derive(Default)]
pub struct Routed {
    /// The Service port the request is for.
    pub destination: Option<DestinationPort>,
    /// The HTTPRoute or VirtualService rule that matched.
    pub route: Option<RouteName>,
    /// The matched route's live counters (admin page), bumped in `logging`.
    pub counters: Option<Arc<LiveCounters>>,
    /// What to forward to, when the request is proxied.
    pub plan: Option<ForwardPlan>,
}

/// The upstream attempts: the endpoint of the current one, the policy state
/// that spans them (deadline, retry budget) and the pool slot they share.
#[derive(Default)]
pub struct Attempts {
    /// The endpoint of the current attempt (its guard counts it as active).
    pub picked: Option<Picked>,
    /// Endpoint addresses tried, one per attempt (so also the attempt count);
    /// avoided on retry when others exist.
    pub tried: Vec<SocketAddr>,
    /// Retries made so far (attempts after the first).
    pub retries: u32,
    /// Set by `upstream_response_filter` when it turns a retriable status
    /// (or `grpc-status`) into an error, so `error_while_proxy` keeps the retry.
    pub retry_failure: Option<AttemptFailure>,
    /// The route deadline (`timeout`): bounds every attempt and backoff.
    pub deadline: Deadline,
    /// Consistent-hash key of this request, when the cluster hashes.
    pub hash: Option<u64>,
    /// Connection-pool slot held for the request's lifetime.
    pub pool_guard: Option<PoolGuard>,
    /// Slot under `maxRetries` held while a retry is in flight.
    pub retry_guard: Option<PoolGuard>,
    /// The current attempt's HBONE tunnel, kept for the next request when
    /// this one ends cleanly.
    pub tunnel: Option<TunnelLease>,
    /// The current attempt is its HTTP/1.1 connection's last (the cluster's
    /// `maxRequestsPerConnection` / `maxConnectionDuration`): it goes out with
    /// `Connection: close`.
    pub last_on_connection: bool,
}

impl Attempts {
    /// True once the route deadline has passed. Without a deadline (the
    /// common case, checked per response chunk) the clock is not read.
    pub fn expired(&self) -> bool {
        self.deadline.at().is_some() && self.deadline.expired(tokio::time::Instant::now())
    }
}

/// What the client is told, as far as the waypoint decided it.
#[derive(Default)]
pub struct Reply {
    /// Envoy's response flags for metrics and the access log.
    pub flags: ResponseFlags,
    /// Set when the waypoint answered by itself.
    pub failure: Option<Failure>,
    /// Status of a response the waypoint wrote itself (redirects, errors).
    pub local_status: Option<u16>,
    /// Envoy's `response_code_details` when it says more than the status
    /// (which AuthorizationPolicy denied the request).
    pub details: Option<String>,
    /// The request is a gRPC call: the waypoint's own answers are
    /// trailers-only gRPC replies, and metrics say `request_protocol="grpc"`.
    pub grpc: bool,
    /// The call's `grpc-status`: from the response headers (trailers-only),
    /// the trailers, or the waypoint's own answer.
    pub grpc_status: Option<u32>,
}

/// The request's proxy-wasm chain and the local responses it produced.
#[derive(Default)]
pub struct WasmState {
    /// The filter chain, when plugins apply.
    pub filters: Option<HttpFilters>,
    /// A plugin's local response that replaces the upstream's body.
    pub body: Option<bytes::Bytes>,
    /// A plugin's local response decided in a body phase, written by `fail_to_proxy`.
    pub local: Option<LocalResponse>,
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            start_time: SystemTime::now(),
            published: None,
            caller: Caller::default(),
            request_id: String::new(),
            routed: Routed::default(),
            attempts: Attempts::default(),
            reply: Reply::default(),
            wasm: WasmState::default(),
            authz: None,
            upgrade: false,
            h2_websocket: false,
            mirror: None,
            trace: None,
            admitted: None,
        }
    }
}
