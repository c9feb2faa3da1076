//! Gateway API `GRPCRoute` (`gateway.networking.k8s.io` v1, and v1alpha2
//! which has the same schema). Matches name a gRPC service and method;
//! filters and backend references are HTTPRoute's types, limited at compile
//! time to the filters the GRPCRoute spec allows. Field names and defaults
//! follow the v1.4 API reference.

use serde::Deserialize;

use super::gateway::{HttpBackendRef, HttpHeaderMatch, HttpRouteFilter, ParentRef};
use super::meta::ObjectMeta;

/// `GRPCRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRoute {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GrpcRouteSpec,
    /// Written by controllers; ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Ignored for Service parents, per GAMMA.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Defaults to one rule matching every call, with no backends.
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// Empty means one match of every call.
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatch>,
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror`
    /// (the others HTTPRoute has are rejected here).
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Experimental; rejected (not enforced).
    #[serde(default)]
    pub session_persistence: Option<serde_yaml::Value>,
}

/// `matches[]`: every present condition must hold.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    /// Absent: every service and method.
    #[serde(default)]
    pub method: Option<GrpcMethodMatch>,
    /// `Exact` (default) or `RegularExpression`; names case-insensitive.
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
}

/// `matches[].method`: the call's `/service/method` path.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Fully qualified service name (`package.Service`); absent = any.
    #[serde(default)]
    pub service: Option<String>,
    /// Method name; absent = any.
    #[serde(default)]
    pub method: Option<String>,
}
