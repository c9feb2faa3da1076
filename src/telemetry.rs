//! What the waypoint tells operators: Prometheus metrics under Istio's names
//! and labels (so existing dashboards work), and Envoy-shaped JSON access logs.

pub mod access_log;
pub mod cel;
mod flags;
pub mod handshake;
mod labels;
pub mod live;
pub mod log_level;
pub mod metrics;
pub mod overrides;
pub mod trace;

pub use flags::ResponseFlags;
pub use handshake::{HandshakeFailure, HandshakeFailures};
pub use labels::{grpc_status_label, PeerLabels, RequestLabels};
pub use metrics::Metrics;

/// Istio's placeholder for a label value the proxy does not know.
pub const UNKNOWN: &str = "unknown";
