//! Per-request state carried through the Pingora phases. The snapshot is
//! loaded once, so every phase of a request sees the same config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::routing::{Destination, ForwardPlan, RouteName};
use crate::store::Published;
use crate::telemetry::ResponseFlags;
use crate::upstream::{Picked, PoolGuard};
use crate::wasm::HttpFilters;

use super::failure::Failure;
use crate::inbound::Caller;

/// The request context (`ProxyHttp::CTX`).
pub struct RequestCtx {
    pub started: tokio::time::Instant,
    pub start_time: SystemTime,
    /// The config this request is served with.
    pub published: Option<Arc<Published>>,
    pub caller: Caller,
    pub request_id: String,
    pub destination: Option<Destination>,
    pub route: Option<RouteName>,
    pub plan: Option<ForwardPlan>,
    /// The endpoint of the current attempt (its guard counts it as active).
    pub picked: Option<Picked>,
    /// Endpoints already tried, avoided on retry when others exist.
    pub tried: Vec<SocketAddr>,
    /// Upstream connection attempts made.
    pub attempts: u32,
    pub flags: ResponseFlags,
    /// Set when the waypoint answered by itself.
    pub failure: Option<Failure>,
    /// Status of a response the waypoint wrote itself (redirects, errors).
    pub local_status: Option<u16>,
    /// The route deadline (`timeout`): bounds every attempt and backoff.
    pub deadline: Option<tokio::time::Instant>,
    /// Consistent-hash key of this request, when the cluster hashes.
    pub hash: Option<u64>,
    /// Connection-pool slot held for the request's lifetime.
    pub pool_guard: Option<PoolGuard>,
    /// Slot under `maxRetries` held while a retry is in flight.
    pub retry_guard: Option<PoolGuard>,
    /// Retries made so far (attempts after the first).
    pub retries: u32,
    /// Set by `upstream_response_filter` when it turns a retriable status
    /// into an error, so `error_while_proxy` keeps the retry.
    pub retry_status: Option<u16>,
    /// The request's proxy-wasm filter chain, when plugins apply.
    pub wasm: Option<HttpFilters>,
    /// A plugin's local response that replaces the upstream's body.
    pub wasm_body: Option<bytes::Bytes>,
    /// A plugin's local response decided in a body phase, written by `fail_to_proxy`.
    pub wasm_local: Option<crate::wasm::LocalResponse>,
}

impl RequestCtx {
    /// Time left before the route deadline; `None` = no deadline.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
    }

    /// True once the route deadline has passed.
    pub fn expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            start_time: SystemTime::now(),
            published: None,
            caller: Caller::default(),
            request_id: String::new(),
            destination: None,
            route: None,
            plan: None,
            picked: None,
            tried: Vec::new(),
            attempts: 0,
            flags: ResponseFlags::NONE,
            failure: None,
            local_status: None,
            deadline: None,
            hash: None,
            pool_guard: None,
            retry_guard: None,
            retries: 0,
            retry_status: None,
            wasm: None,
            wasm_body: None,
            wasm_local: None,
        }
    }
}
