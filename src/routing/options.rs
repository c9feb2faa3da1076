//! How a snapshot is compiled: the process-fixed inputs (the waypoint's
//! namespace, the cluster domain, the default LB policy, the trust domain and
//! cluster id telemetry labels name) that are not part of the loaded resources.

use std::sync::Arc;

use crate::identity::istio_ca::DEFAULT_CLUSTER_ID;
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
    /// The mesh trust domain: an in-mesh endpoint's `destination_principal`
    /// is `spiffe://<trust domain>/ns/<ns>/sa/<its Pod's service account>`.
    pub trust_domain: String,
    /// The cluster every Service of the config lives in (`--cluster-id`,
    /// default `Kubernetes`): `destination_cluster` of their requests, and
    /// `source_cluster` of mesh callers whose ztunnel sent no cluster.
    pub cluster_id: Arc<str>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        Self {
            namespace: "default".to_string(),
            cluster_domain: "cluster.local".to_string(),
            lb: LbPolicy::default(),
            trust_domain: "cluster.local".to_string(),
            cluster_id: Arc::from(DEFAULT_CLUSTER_ID),
        }
    }
}
