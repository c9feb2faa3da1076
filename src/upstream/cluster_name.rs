//! Envoy's cluster name for one destination port (and subset): the key the
//! process-wide runtime state (pool limiters, outlier detectors) is kept
//! under, and the name `/config_dump` and logs show. How a cluster picks
//! endpoints is `cluster`; the state itself is `load_registry`.

use std::sync::Arc;

/// Identifies a destination's policy state: `host|port|subset` as Envoy
/// names clusters (`outbound|9080|v1|reviews.default.svc.cluster.local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(pub Arc<str>);

impl ClusterName {
    /// `outbound|<port>|<subset>|<host>`; no subset leaves its slot empty.
    pub fn new(port: u16, subset: Option<&str>, host: &str) -> Self {
        Self(Arc::from(format!(
            "outbound|{port}|{}|{host}",
            subset.unwrap_or("")
        )))
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
