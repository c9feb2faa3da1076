//! How a snapshot is compiled: the process-fixed inputs (the waypoint's
//! namespace, the cluster domain, the default LB policy) that are not part
//! of the loaded resources.

use crate::upstream::LbPolicy;

/// How a snapshot is compiled; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The waypoint's own namespace: short host names (`reviews`) resolve here.
    pub namespace: String,
    /// Kubernetes cluster domain, default `cluster.local`.
    pub cluster_domain: String,
    /// Load-balancing policy for every endpoint set.
    pub lb: LbPolicy,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            namespace: "default".to_string(),
            cluster_domain: "cluster.local".to_string(),
            lb: LbPolicy::default(),
        }
    }
}
