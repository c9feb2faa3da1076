//! One ready endpoint of a Service port and the facts about the workload
//! behind it (telemetry names, ambient membership, labels, locality). Where
//! these come from (EndpointSlices, Pods, ServiceEntries) is
//! `routing::discovery`; how one is picked is `endpoints` and `pick`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::locality::Locality;
use crate::config::NamespacedName;
use crate::telemetry::PeerLabels;

/// Who runs behind an endpoint, for telemetry labels (Istio's
/// `destination_workload`, `destination_canonical_service`, …).
/// Shared strings: every request's metric labels clone them rather than copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Deployment-style name: the pod name without the ReplicaSet hash and
    /// pod suffix, or `unknown`.
    pub name: Arc<str>,
    /// The workload's namespace, or `unknown`.
    pub namespace: Arc<str>,
    /// `service.istio.io/canonical-name` | `app.kubernetes.io/name` | `app` | name.
    pub canonical_service: Arc<str>,
    /// `service.istio.io/canonical-revision` | `app.kubernetes.io/version` | `version` | `latest`.
    pub canonical_revision: Arc<str>,
    /// The workload's SPIFFE identity (`spiffe://<td>/ns/<ns>/sa/<sa>`) when it is reached
    /// over HBONE, where its ztunnel proves it; `unknown` for plain-text endpoints, whose
    /// identity nothing authenticates (as a sidecar reports them).
    pub principal: Arc<str>,
}

impl WorkloadInfo {
    /// The values used when no Pod is known for an endpoint.
    pub fn unknown() -> Self {
        let u = || Arc::from("unknown");
        Self {
            name: u(),
            namespace: u(),
            canonical_service: u(),
            canonical_revision: u(),
            principal: u(),
        }
    }

    /// Istio's `destination_*` workload labels for this workload (`app` and
    /// `version` are the canonical service and revision, as Istio reports them).
    pub fn destination_labels(&self) -> PeerLabels {
        PeerLabels {
            workload: self.name.clone(),
            workload_namespace: self.namespace.clone(),
            principal: self.principal.clone(),
            app: self.canonical_service.clone(),
            version: self.canonical_revision.clone(),
            canonical_service: self.canonical_service.clone(),
            canonical_revision: self.canonical_revision.clone(),
            ..PeerLabels::default()
        }
    }
}

/// One ready endpoint of a Service port.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `ip:targetPort`.
    pub addr: SocketAddr,
    /// The Pod behind it, when known.
    pub pod: Option<NamespacedName>,
    /// Telemetry identity of the workload.
    pub workload: WorkloadInfo,
    /// True when the Pod is captured by ambient (reach it over HBONE).
    pub in_mesh: bool,
    /// Pod (or WorkloadEntry) labels.
    pub labels: BTreeMap<String, String>,
    /// Topology zone from the EndpointSlice.
    pub zone: Option<String>,
    /// Region/zone for locality-aware LB: the EndpointSlice `zone` (region
    /// unknown) or a ServiceEntry endpoint's `locality`.
    pub locality: Option<Locality>,
}
