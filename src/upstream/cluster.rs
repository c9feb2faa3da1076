//! The Envoy "cluster" view of an endpoint set: its name
//! (`outbound|port|subset|host`), how an endpoint is chosen (simple LB,
//! consistent hash, locality preference) and the DestinationRule runtime
//! state it shares with the proxy (pool limiter, outlier detector). The
//! choice itself is `endpoints::pick`; compiling DestinationRules into these
//! is `istio::destination_rule`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::LbPolicy;
use crate::policy::{ClusterName, HashKey, OutlierDetector, PoolLimiter};

/// How endpoints of a cluster are chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbChoice {
    /// `loadBalancer.simple` (or the waypoint's default).
    Simple(LbPolicy),
    /// `loadBalancer.consistentHash`: the proxy hashes this part of the
    /// request ([`crate::policy::request_hash`]) and passes the hash in
    /// [`PickRequest::hash`].
    ConsistentHash(HashKey),
}

impl Default for LbChoice {
    fn default() -> Self {
        LbChoice::Simple(LbPolicy::default())
    }
}

/// A destination cluster's policy: one per (Service port, subset).
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    /// `outbound|<port>|<subset>|<host>`, Envoy's cluster name; keys the
    /// runtime state in [`crate::policy::PolicyRegistry`].
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
    }
}

/// What the proxy knows when it picks an endpoint for one attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickRequest<'a> {
    /// Endpoints earlier attempts used; avoided when another is available.
    pub avoid: &'a [SocketAddr],
    /// The request's hash for a consistent-hash cluster
    /// ([`crate::policy::request_hash`]); `None` picks as a simple LB would.
    pub hash: Option<u64>,
    /// The waypoint's own locality (`--locality`), for locality-aware LB.
    pub locality: Option<&'a Locality>,
}

/// Where a workload runs: Kubernetes `topology.kubernetes.io/region` and
/// `zone`. An empty region means unknown (EndpointSlices carry only the
/// zone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
}

impl Locality {
    /// How close `other` is to `self`: 0 same zone, 1 same region, 2 other.
    /// An unknown region on either side is taken to match when the zones do:
    /// cloud zone names (`us-east1-b`) are unique across regions.
    pub(crate) fn tier(&self, other: &Locality) -> u8 {
        let region_known = !self.region.is_empty() && !other.region.is_empty();
        let same_region = region_known && self.region == other.region;
        let same_zone = !self.zone.is_empty() && self.zone == other.zone;
        if same_zone && (same_region || !region_known) {
            0
        } else if same_region {
            1
        } else {
            2
        }
    }
}

/// Parses `region`, `region/zone` or Istio's `region/zone/subzone` (the
/// subzone is ignored).
impl FromStr for Locality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        let region = parts.next().unwrap_or("").trim().to_string();
        let zone = parts.next().unwrap_or("").trim().to_string();
        if region.is_empty() && zone.is_empty() {
            return Err(format!("invalid locality {s:?}: expected region/zone"));
        }
        Ok(Self { region, zone })
    }
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.zone.is_empty() {
            f.write_str(&self.region)
        } else {
            write!(f, "{}/{}", self.region, self.zone)
        }
    }
}
