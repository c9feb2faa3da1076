//! The waypoint `Gateway` as the API server stores it: a small typed mirror of
//! `gateway.networking.k8s.io/v1` Gateway (spec, and the status the
//! controller writes), usable with kube-rs `Api<WaypointGateway>`, and the builder
//! for the Gateway `waypoint generate` / `apply` make.
//!
//! This is the API-client view (serialize + deserialize, with `status`); the
//! file config source reads Gateways through `config::gateway` instead.
//! Fields we do not use (listener `allowedRoutes`, `tls`, `infrastructure`,
//! listener status, ...) are ignored on read, so any Gateway in a cluster
//! deserializes; we never write those fields back (apply sends only ours).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use clap::ValueEnum;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Our GatewayClass (`spec.gatewayClassName` of every waypoint we manage).
pub const WAYPOINT_CLASS: &str = "pingora-waypoint";
/// API group and version of the Gateway kind we read and write.
pub const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";
/// Name `generate` / `apply` give the Gateway unless told otherwise (istioctl's too).
pub const DEFAULT_WAYPOINT_NAME: &str = "waypoint";
/// Gateway label: which traffic the waypoint handles.
pub const LABEL_WAYPOINT_FOR: &str = "istio.io/waypoint-for";
/// Gateway label: the Istio revision the waypoint belongs to.
pub const LABEL_REV: &str = "istio.io/rev";
/// Namespace (or Service) label naming the waypoint its traffic goes through.
pub const LABEL_USE_WAYPOINT: &str = "istio.io/use-waypoint";
/// Namespace label enrolling its pods in ambient.
pub const LABEL_DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// Gateway condition type: the controller has made the waypoint's Deployment and Service.
pub const CONDITION_PROGRAMMED: &str = "Programmed";
/// Gateway condition type: the controller accepted the Gateway.
pub const CONDITION_ACCEPTED: &str = "Accepted";

/// `gateway.networking.k8s.io/v1` `Gateway`, as the CLI and the controller read and write
/// it (the file config source's view is `config::gateway::Gateway`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaypointGateway {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// `Gateway.spec`: the fields a waypoint uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Labels and annotations for the resources the implementation creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
}

/// `Gateway.spec.infrastructure`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `Gateway.spec.listeners[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub port: u16,
    /// `HBONE` for waypoints.
    pub protocol: String,
}

/// `Gateway.status`, written by the controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default)]
    pub addresses: Vec<GatewayStatusAddress>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `Gateway.status.addresses[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    /// `IPAddress` (the spec's default), `Hostname`, or a domain-prefixed type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    pub value: String,
}

/// A `metav1.Condition`. Looser than k8s-openapi's (every field but type and
/// status may be missing), so a half-written status still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Condition {
    /// A condition with status `True` or `False`; the caller stamps
    /// `observedGeneration` and `lastTransitionTime`.
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

impl kube::Resource for WaypointGateway {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Gateway".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "gateway.networking.k8s.io".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "gateways".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl WaypointGateway {
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    /// Whether this Gateway is one of ours (class `pingora-waypoint`).
    pub fn is_waypoint(&self) -> bool {
        self.spec.gateway_class_name == WAYPOINT_CLASS
    }

    /// `istio.io/rev`, else `default` (as istioctl shows it).
    pub fn revision(&self) -> &str {
        self.label(LABEL_REV).unwrap_or("default")
    }

    /// `istio.io/waypoint-for`, else `service`: istiod's default for a
    /// waypoint without the label.
    pub fn traffic_type(&self) -> &str {
        self.label(LABEL_WAYPOINT_FOR)
            .unwrap_or(TrafficType::Service.as_str())
    }

    pub fn conditions(&self) -> &[Condition] {
        self.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default()
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_)
    }

    /// True when the controller reports `Programmed=True` for the current
    /// spec. A condition carrying an older `observedGeneration` describes a
    /// previous spec and does not count.
    pub fn is_programmed(&self) -> bool {
        let current = self.metadata.generation;
        self.condition(CONDITION_PROGRAMMED).is_some_and(|c| {
            c.status == "True"
                && match (c.observed_generation, current) {
                    (Some(observed), Some(current)) => observed >= current,
                    _ => true,
                }
        })
    }
}

/// Which traffic a waypoint handles (`istio.io/waypoint-for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrafficType {
    /// Traffic addressed to Services.
    Service,
    /// Traffic addressed to pods (workloads) directly.
    Workload,
    /// Both.
    All,
    /// Neither (a waypoint only used explicitly).
    None,
}

impl TrafficType {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Service => "service",
            TrafficType::Workload => "workload",
            TrafficType::All => "all",
            TrafficType::None => "none",
        }
    }
}

impl fmt::Display for TrafficType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a waypoint Gateway cannot be built.
#[derive(Debug, Error, PartialEq)]
pub enum GatewayError {
    #[error(
        "invalid waypoint name {0:?}: `none` is reserved (it opts a Service out of waypoints)"
    )]
    ReservedName(String),
    #[error("invalid waypoint name {0:?}: use 1-63 lower-case letters, digits or '-', starting with a letter and not ending with '-' (it names the waypoint's Service)")]
    InvalidName(String),
}

/// What the user asked for; [`build_waypoint`] turns it into a Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct WaypointSpec {
    pub name: String,
    pub namespace: String,
    /// Sets `istio.io/waypoint-for` only when given, so istiod's default applies otherwise.
    pub traffic_type: Option<TrafficType>,
    /// Sets `istio.io/rev` only when given.
    pub revision: Option<String>,
}

/// Builds the Gateway for a waypoint: our class, one HBONE listener `mesh` on
/// 15008 (the port ztunnel tunnels to), labels only for what was asked.
pub fn build_waypoint(spec: &WaypointSpec) -> Result<WaypointGateway, GatewayError> {
    validate_name(&spec.name)?;
    let mut labels = BTreeMap::new();
    if let Some(traffic) = spec.traffic_type {
        labels.insert(LABEL_WAYPOINT_FOR.to_string(), traffic.to_string());
    }
    if let Some(rev) = &spec.revision {
        labels.insert(LABEL_REV.to_string(), rev.clone());
    }
    Ok(WaypointGateway {
        api_version: GATEWAY_API_VERSION.to_string(),
        kind: "Gateway".to_string(),
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            ..Default::default()
        },
        spec: GatewaySpec {
            gateway_class_name: WAYPOINT_CLASS.to_string(),
            listeners: vec![Listener {
                name: "mesh".to_string(),
                port: 15008,
                protocol: "HBONE".to_string(),
            }],
            infrastructure: None,
        },
        status: None,
    })
}

/// The waypoint's name becomes its Service's name, so it must be a DNS-1035
/// label; `none` is the opt-out value of `istio.io/use-waypoint`.
fn validate_name(name: &str) -> Result<(), GatewayError> {
    if name == "none" {
        return Err(GatewayError::ReservedName(name.to_string()));
    }
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(GatewayError::InvalidName(name.to_string()))
    }
}

/// The Gateway as YAML, the way `kubectl apply -f` takes it.
pub fn to_yaml(gateway: &WaypointGateway) -> String {
    serde_yaml::to_string(gateway)
        .expect("BUG: a Gateway is plain strings, numbers and maps; it always serializes")
}

#[cfg(test)]
mod tests;
