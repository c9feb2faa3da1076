//! Per-request state carried through the Pingora phases. The snapshot is
//! loaded once, so every phase of a request sees the same config.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::routing::{Destination, ForwardPlan, Picked, RouteName};
use crate::store::Published;
use crate::telemetry::ResponseFlags;

use super::caller::Caller;
use super::failure::Failure;

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
        }
    }
}
