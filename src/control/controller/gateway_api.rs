//! The controller's slice of the Gateway API: GatewayClass
//! (`gateway.networking.k8s.io/v1`) and the condition bookkeeping; the Gateway
//! itself is the one mirror in `control::gateway`, shared with the CLI. Fields
//! the controller does not use are ignored on read; status is written as a
//! whole document through the status subresource, so nothing is lost by not
//! modelling them.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ClusterResourceScope;
use serde::{Deserialize, Serialize};

// One Gateway mirror serves the CLI and the controller.
pub use crate::control::gateway::{
    Condition, GatewayInfrastructure, GatewayStatus, GatewayStatusAddress, WaypointGateway,
};

pub const GROUP: &str = "gateway.networking.k8s.io";
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

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

/// Puts `wanted` into `conditions` (replacing one of the same type), keeping
/// the previous `lastTransitionTime` when the status did not flip, as
/// `meta.SetStatusCondition` does.
pub fn set_condition(conditions: &mut Vec<Condition>, mut wanted: Condition, now: &str) {
    match conditions.iter_mut().find(|c| c.type_ == wanted.type_) {
        Some(current) => {
            wanted.last_transition_time = match &current.last_transition_time {
                Some(t) if current.status == wanted.status => Some(t.clone()),
                _ => Some(now.to_string()),
            };
            *current = wanted;
        }
        None => {
            wanted.last_transition_time = Some(now.to_string());
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

gateway_resource!(
    GatewayClass,
    "GatewayClass",
    "gatewayclasses",
    ClusterResourceScope
);
