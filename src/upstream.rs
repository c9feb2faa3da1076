//! Upstream: everything between "this request goes to that Service port"
//! and a connection to one endpoint — the endpoint sets of each port with
//! their load-balancing state (Envoy's clusters), how one endpoint is picked
//! (least request, round robin, random, consistent hash, locality, outlier
//! ejection), the process-wide state that survives reloads (active request
//! counters, connection-pool limiters, outlier detectors), and [`dial`], the
//! one place that decides plain TCP or HBONE for every upstream connection.
//!
//! `routing` compiles the endpoint sets into its snapshot and hands one to
//! the proxy per request; this module does not know about routes or API
//! objects. Retry and fault decisions are `policy`'s.

pub mod dial;
pub mod hash;
pub mod l4_copy;
pub mod outlier;
pub mod pool;
pub mod upgrade_gate;

mod cluster;
mod cluster_name;
mod conn_uses;
mod endpoint;
mod endpoints;
mod lb;
mod load_registry;
mod locality;
mod pick;

pub use cluster::ClusterPolicy;
pub use cluster_name::ClusterName;
pub use conn_uses::PooledConnUses;
pub use endpoint::{Endpoint, WorkloadInfo};
pub use endpoints::{ActiveRequestGuard, EndpointSet, Picked};
pub use hash::{request_hash, HashKey};
pub use lb::{LbChoice, LbPolicy};
pub use load_registry::{LoadRegistry, PolicyRegistry};
pub use locality::Locality;
pub use outlier::{OutlierDetection, OutlierDetector};
pub use pick::PickRequest;
pub use pool::{ConnectionPool, Overflow, PoolGuard, PoolLimiter};
