//! The slice of the Gateway API the controller reads and writes: Gateway and
//! GatewayClass (`gateway.networking.k8s.io/v1`), mirroring the API's field
//! names. Fields the controller does not use (TLS, allowedRoutes, addresses
//! asked for in the spec) are ignored on read; status is written as a whole
//! document through the status subresource, so nothing is lost by not
//! modelling it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "gateway.networking.k8s.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// `Gateway` (namespaced).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gateway {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    #[serde(default)]
    pub addresses: Vec<GatewayStatusAddress>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `status.addresses[]`: `type` is `Hostname` or `IPAddress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatusAddress {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

/// `GatewayClass` (cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayClass {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewayClassSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayClassStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A `metav1.Condition`, with its timestamp kept as the RFC 3339 text the API
/// server sends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub last_transition_time: String,
}

impl Condition {
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: String::new(),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Puts `wanted` into `conditions` (replacing one of the same type), keeping
/// the previous `lastTransitionTime` when the status did not flip, as
/// `meta.SetStatusCondition` does.
pub fn set_condition(conditions: &mut Vec<Condition>, mut wanted: Condition, now: &str) {
    match conditions.iter_mut().find(|c| c.type_ == wanted.type_) {
        Some(current) => {
            wanted.last_transition_time =
                if current.status == wanted.status && !current.last_transition_time.is_empty() {
                    current.last_transition_time.clone()
                } else {
                    now.to_string()
                };
            *current = wanted;
        }
        None => {
            wanted.last_transition_time = now.to_string();
            conditions.push(wanted);
        }
    }
}

/// Now, as RFC 3339 in whole seconds (the API's `metav1.Time` precision).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero nanoseconds is always valid");
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("formatting a UTC time as RFC 3339 cannot fail")
}

macro_rules! gateway_resource {
    ($ty:ty, $kind:expr, $plural:expr, $scope:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = $scope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(GROUP)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(VERSION)
            }
            fn api_version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed(API_VERSION)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

gateway_resource!(Gateway, "Gateway", "gateways", NamespaceResourceScope);
gateway_resource!(
    GatewayClass,
    "GatewayClass",
    "gatewayclasses",
    ClusterResourceScope
);
