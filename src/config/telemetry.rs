//! Istio's Telemetry kind (`telemetry.istio.io/v1`, also `v1alpha1`), field for field.
//! Which resource applies to which destination, and the merge of the levels, is
//! `telemetry_api`'s business; here we only parse. Every struct refuses unknown fields:
//! a misspelt `disabled` must not silently keep logging.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::security::{PolicyTargetReference, StrictObject, WorkloadSelector};

/// `telemetry.istio.io/v1` Telemetry.
pub type Telemetry = StrictObject<TelemetrySpec>;

/// `spec` of a Telemetry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySpec {
    /// Workload selector: for sidecars; a waypoint ignores a resource that has one.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// Our Gateway (all its traffic) or a Service.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(default)]
    pub tracing: Vec<Tracing>,
    #[serde(default)]
    pub access_logging: Vec<AccessLogging>,
    #[serde(default)]
    pub metrics: Vec<MetricsSpec>,
}

/// `tracing[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    #[serde(default)]
    pub r#match: Option<TracingSelector>,
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    /// 0–100; unset inherits.
    #[serde(default)]
    pub random_sampling_percentage: Option<f64>,
    #[serde(default)]
    pub disable_span_reporting: Option<bool>,
    #[serde(default)]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Envoy-only tuning we do not implement: refused when set.
    #[serde(default)]
    pub use_request_id_for_trace_sampling: Option<bool>,
    #[serde(default)]
    pub enable_istio_tags: Option<bool>,
}

/// `tracing[].match`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSelector {
    /// `CLIENT_AND_SERVER` (default), `CLIENT`, `SERVER`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `customTags.<name>`: one of the three forms.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    #[serde(default)]
    pub literal: Option<LiteralTag>,
    #[serde(default)]
    pub environment: Option<EnvTag>,
    #[serde(default)]
    pub header: Option<HeaderTag>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiteralTag {
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvTag {
    pub name: String,
    #[serde(default)]
    pub default_value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderTag {
    pub name: String,
    #[serde(default)]
    pub default_value: Option<String>,
}

/// `providers[]`: a MeshConfig `extensionProviders[].name` (or the built-in `envoy`,
/// `prometheus`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    pub name: String,
}

/// `accessLogging[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogging {
    #[serde(default)]
    pub r#match: Option<TracingSelector>,
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub filter: Option<AccessLogFilter>,
}

/// `accessLogging[].filter`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogFilter {
    /// A CEL condition; only matching requests are logged.
    #[serde(default)]
    pub expression: String,
}

/// `metrics[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSpec {
    /// Only `prometheus` (the waypoint's own `/stats/prometheus`).
    #[serde(default)]
    pub providers: Vec<ProviderRef>,
    #[serde(default)]
    pub overrides: Vec<MetricsOverrides>,
    /// Envoy's flush interval: refused when set (our counters are read at scrape time).
    #[serde(default)]
    pub reporting_interval: Option<String>,
}

/// `metrics[].overrides[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverrides {
    /// Unset: every metric, both modes.
    #[serde(default)]
    pub r#match: Option<MetricSelector>,
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Label name → what to do with it.
    #[serde(default)]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// `overrides[].match`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// `ALL_METRICS` (default), `REQUEST_COUNT`, `REQUEST_DURATION`, … .
    #[serde(default)]
    pub metric: Option<String>,
    /// A non-standard metric name: refused (we export Istio's standard metrics only).
    #[serde(default)]
    pub custom_metric: Option<String>,
    /// `CLIENT_AND_SERVER` (default), `CLIENT`, `SERVER`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// `tagOverrides.<label>`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// `UPSERT` (default) or `REMOVE`.
    #[serde(default)]
    pub operation: Option<String>,
    /// A CEL expression (UPSERT only).
    #[serde(default)]
    pub value: Option<String>,
}
