//! Core and discovery kinds: Namespace, Service, EndpointSlice, Pod.
//! Field names mirror the Kubernetes API; only what routing needs is typed,
//! `status` is tolerated (Pod's `podIP(s)` is read from it).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::ObjectMeta;

/// `v1/Namespace`. Its labels carry `istio.io/dataplane-mode` and
/// `istio.io/use-waypoint`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<serde_yaml::Value>,
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

/// `v1/Service`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer`, `ExternalName`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// The Service VIP; `None` (headless) when absent or `"None"`.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub external_name: Option<String>,
    // Tolerated, not used by the waypoint.
    #[serde(default)]
    pub session_affinity: Option<serde_yaml::Value>,
    #[serde(default)]
    pub ip_families: Option<serde_yaml::Value>,
    #[serde(default)]
    pub ip_family_policy: Option<serde_yaml::Value>,
    #[serde(default)]
    pub internal_traffic_policy: Option<serde_yaml::Value>,
    #[serde(default)]
    pub external_traffic_policy: Option<serde_yaml::Value>,
    #[serde(default)]
    pub publish_not_ready_addresses: Option<serde_yaml::Value>,
    #[serde(default)]
    pub traffic_distribution: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    /// Number or named container port; defaults to `port`.
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// e.g. `http`, `kubernetes.io/h2c`, `grpc`, `tcp`.
    #[serde(default)]
    pub app_protocol: Option<String>,
    #[serde(default)]
    pub node_port: Option<serde_yaml::Value>,
}

/// Kubernetes' `IntOrString`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// `discovery.k8s.io/v1/EndpointSlice`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub hints: Option<serde_yaml::Value>,
    #[serde(default)]
    pub deprecated_topology: Option<serde_yaml::Value>,
}

/// Per the EndpointSlice API, a nil `ready` means ready.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<serde_yaml::Value>,
    #[serde(default)]
    pub api_version: Option<serde_yaml::Value>,
    #[serde(default)]
    pub resource_version: Option<serde_yaml::Value>,
}

/// `v1/Pod`: only labels and IPs matter to the waypoint.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Tolerated; containers are not the waypoint's business.
    #[serde(default)]
    pub spec: Option<serde_yaml::Value>,
    #[serde(default)]
    pub status: PodStatus,
}

impl Pod {
    /// `spec.serviceAccountName` (else the deprecated `spec.serviceAccount`), else
    /// `default`: the account the API server's admission gives a Pod that names none, so
    /// an applied manifest without the field reads as the running Pod would.
    pub fn service_account_name(&self) -> &str {
        let field = |name: &str| {
            self.spec
                .as_ref()
                .and_then(|spec| spec.get(name))
                .and_then(serde_yaml::Value::as_str)
                .filter(|sa| !sa.is_empty())
        };
        field("serviceAccountName")
            .or_else(|| field("serviceAccount"))
            .unwrap_or("default")
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Vec<PodIp>,
    #[serde(flatten)]
    pub rest: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PodIp {
    pub ip: String,
}
