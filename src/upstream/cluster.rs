//! The Envoy "cluster" view of an endpoint set: its name
//! (`outbound|port|subset|host`), how an endpoint is chosen (simple LB,
//! consistent hash, locality preference) and the DestinationRule runtime
//! state it shares with the proxy (pool limiter, outlier detector). The
//! choice itself is `pick`; compiling DestinationRules into these is
//! `routing::istio::destination_rule`.

use std::sync::Arc;
use std::time::Duration;

use super::cluster_name::ClusterName;
use super::lb::{LbChoice, LbPolicy};
use super::outlier::OutlierDetector;
use super::pool::PoolLimiter;
use crate::policy::conn_reuse::ReuseLimits;

/// A destination cluster's policy: one per (Service port, subset).
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    /// `outbound|<port>|<subset>|<host>`, Envoy's cluster name; keys the
    /// runtime state in [`crate::upstream::PolicyRegistry`].
    pub name: ClusterName,
    /// Endpoint choice.
    pub lb: LbChoice,
    /// Connection-pool admission (`connectionPool`), when any limit is set.
    pub limiter: Option<Arc<PoolLimiter>>,
    /// Outlier detection (`outlierDetection`), when configured.
    pub outlier: Option<Arc<OutlierDetector>>,
    /// Prefer endpoints in the waypoint's own locality. Istio enables
    /// locality LB only together with outlier detection (it needs health to
    /// fail over), or when `localityLbSetting.enabled` says so.
    pub locality_aware: bool,
    /// `tcp.connectTimeout`; `None` = the proxy's default (Envoy: 10 s).
    pub connect_timeout: Option<Duration>,
    /// `http.idleTimeout` (or `tcp.idleTimeout`) for upstream connections.
    pub idle_timeout: Option<Duration>,
    /// `http.maxRequestsPerConnection`; `None` = unlimited.
    pub max_requests_per_connection: Option<u32>,
    /// `tcp.maxConnectionDuration`; `None` = unlimited.
    pub max_connection_duration: Option<Duration>,
}

impl ClusterPolicy {
    /// A cluster with no DestinationRule: only the LB policy.
    pub fn plain(name: ClusterName, lb: LbPolicy) -> Self {
        Self {
            name,
            lb: LbChoice::Simple(lb),
            limiter: None,
            outlier: None,
            locality_aware: false,
            connect_timeout: None,
            idle_timeout: None,
            max_requests_per_connection: None,
            max_connection_duration: None,
        }
    }

    /// The limits every pool applies before reusing a connection to this
    /// cluster's endpoints.
    pub fn reuse_limits(&self) -> ReuseLimits {
        ReuseLimits {
            max_requests: self.max_requests_per_connection,
            max_age: self.max_connection_duration,
        }
    }
}

/// Equal when the configuration is: limiters and detectors compare by the
/// limits and settings they apply, not by their runtime counters.
impl PartialEq for ClusterPolicy {
    fn eq(&self, other: &Self) -> bool {
        let limits = |p: &Self| p.limiter.as_ref().map(|l| l.limits());
        let outlier = |p: &Self| p.outlier.as_ref().map(|d| d.config());
        self.name == other.name
            && self.lb == other.lb
            && limits(self) == limits(other)
            && outlier(self) == outlier(other)
            && self.locality_aware == other.locality_aware
            && self.connect_timeout == other.connect_timeout
            && self.idle_timeout == other.idle_timeout
            && self.max_requests_per_connection == other.max_requests_per_connection
            && self.max_connection_duration == other.max_connection_duration
    }
}
