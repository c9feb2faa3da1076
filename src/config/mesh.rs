//! Istio's MeshConfig, the part a waypoint acts on: `rootNamespace` and the
//! `extensionProviders` an AuthorizationPolicy's `CUSTOM` action names. Read
//! from `--mesh-config PATH`: the `istio` ConfigMap (its `data.mesh` key) or
//! the bare MeshConfig document. The rest of MeshConfig is other
//! components' business and is ignored; inside a provider we use, every
//! field is read or refused.

use std::path::Path;

use serde::Deserialize;

/// The parts of MeshConfig the waypoint reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    #[serde(default)]
    pub root_namespace: Option<String>,
    #[serde(default)]
    pub extension_providers: Vec<ExtensionProvider>,
    /// File the built-in `envoy` provider writes to (`/dev/stdout`); unset or empty: access
    /// logs off unless a Telemetry resource names a provider.
    #[serde(default)]
    pub access_log_file: Option<String>,
    /// `TEXT` (default) or `JSON`.
    #[serde(default)]
    pub access_log_encoding: Option<String>,
    /// An Envoy format string; default Istio's (TEXT) or Istio's labels (JSON).
    #[serde(default)]
    pub access_log_format: Option<String>,
    /// `enableTracing`: Istio's default is true; false turns tracing off
    /// whatever `defaultProviders.tracing` says.
    #[serde(default)]
    pub enable_tracing: Option<bool>,
    /// Providers used when a Telemetry resource names none.
    #[serde(default)]
    pub default_providers: Option<DefaultProviders>,
    /// `defaultConfig` (ProxyConfig): only `tracing.sampling` and `meshId` are
    /// read here; the rest configures other proxies and is ignored.
    #[serde(default)]
    pub default_config: Option<ProxyConfig>,
}

/// `envoyFileAccessLog`: lines to a file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFileAccessLog {
    /// `/dev/stdout` or a file path.
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub log_format: Option<FileLogFormat>,
}

/// `envoyFileAccessLog.logFormat`: one of `text` and `labels`; neither is Istio's
/// default text line.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileLogFormat {
    #[serde(default)]
    pub text: Option<String>,
    /// JSON keys to format strings (Istio's `Struct`; values must be strings).
    #[serde(default)]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `defaultProviders`: provider names per telemetry kind. The waypoint acts on
/// `tracing`; the other kinds belong to other features and are kept verbatim.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefaultProviders {
    #[serde(default)]
    pub tracing: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub access_logging: Vec<String>,
}

/// `defaultConfig`, as far as the waypoint reads it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    /// `meshId`: the span tag `istio.mesh_id` (Istio defaults it to the trust domain).
    #[serde(default)]
    pub mesh_id: Option<String>,
    #[serde(default)]
    pub tracing: Option<ProxyTracing>,
}

/// `defaultConfig.tracing`: the sampling rate is read; a tracer block
/// (`zipkin`, `datadog`, …) is the sidecar-era way to pick a tracer and is
/// refused by the tracing module when set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyTracing {
    /// `sampling`: percent of requests traced, 0–100 (Istio's default 1.0).
    #[serde(default)]
    pub sampling: Option<f64>,
    /// `customTags`: read, refused when set (Telemetry `customTags` instead).
    #[serde(default)]
    pub custom_tags: Option<serde_yaml::Value>,
    /// `maxPathTagLength`: refused when set.
    #[serde(default)]
    pub max_path_tag_length: Option<serde_yaml::Value>,
    #[serde(default)]
    pub zipkin: Option<serde_yaml::Value>,
    #[serde(default)]
    pub datadog: Option<serde_yaml::Value>,
    #[serde(default)]
    pub lightstep: Option<serde_yaml::Value>,
    #[serde(default)]
    pub stackdriver: Option<serde_yaml::Value>,
    #[serde(default)]
    pub open_census_agent: Option<serde_yaml::Value>,
    #[serde(default)]
    pub tls_settings: Option<serde_yaml::Value>,
}

/// `extensionProviders[]`: a name and one provider kind. The two
/// external-authorization kinds and `opentelemetry` (tracing) are read;
/// `zipkin` is kept so that selecting it for tracing is refused by name;
/// other kinds are ignored unless a feature selects them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    #[serde(default)]
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpc>,
    /// Access log lines to a file.
    #[serde(default)]
    pub envoy_file_access_log: Option<EnvoyFileAccessLog>,
    /// OTLP access logs: refused (no OTLP log exporter in the waypoint).
    #[serde(default)]
    pub envoy_otel_als: Option<serde_yaml::Value>,
    /// Envoy's gRPC access-log service: refused.
    #[serde(default)]
    pub envoy_http_als: Option<serde_yaml::Value>,
    #[serde(default)]
    pub envoy_tcp_als: Option<serde_yaml::Value>,
    /// `opentelemetry`: OTLP trace export (src/telemetry/trace).
    #[serde(default)]
    pub opentelemetry: Option<OpenTelemetryProvider>,
    /// `zipkin`: not supported; refused when selected for tracing.
    #[serde(default)]
    pub zipkin: Option<serde_yaml::Value>,
}

/// `extensionProviders[].opentelemetry`: where OTLP spans go. Without `http`
/// they go over OTLP/gRPC to `service:port`; with it, OTLP/HTTP (protobuf).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenTelemetryProvider {
    /// `[<namespace>/]<hostname>` of the collector.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u16,
    /// `maxTagLength`: longest span attribute value; longer ones are cut
    /// (Istio's default 256 when unset or 0).
    #[serde(default)]
    pub max_tag_length: Option<u32>,
    /// `http`: export over OTLP/HTTP instead of gRPC.
    #[serde(default)]
    pub http: Option<OtelHttp>,
    /// `grpc`: export options for OTLP/gRPC.
    #[serde(default)]
    pub grpc: Option<OtelGrpc>,
    /// `resourceDetectors` (`resource_detectors` is accepted too, as protobuf's JSON does).
    #[serde(default, alias = "resource_detectors")]
    pub resource_detectors: Option<ResourceDetectors>,
    /// `dynatraceSampler`: not supported; refused when set.
    #[serde(default, alias = "dynatrace_sampler")]
    pub dynatrace_sampler: Option<serde_yaml::Value>,
}

/// `opentelemetry.http`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelHttp {
    /// Path of the collector's OTLP endpoint (Istio's default `/v1/traces`).
    #[serde(default)]
    pub path: Option<String>,
    /// Export request timeout, a duration like `2s` (default 10 s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Extra request headers: a literal `value` or an environment variable `envName`.
    #[serde(default)]
    pub headers: Vec<OtelHeader>,
}

/// `opentelemetry.grpc`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelGrpc {
    /// Export call timeout, a duration like `2s` (default 10 s).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Metadata sent with every export call.
    #[serde(default)]
    pub initial_metadata: Vec<OtelHeader>,
}

/// A header (or gRPC metadata entry) for the collector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelHeader {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub env_name: Option<String>,
}

/// `opentelemetry.resourceDetectors`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDetectors {
    /// `environment: {}`: resource attributes from `OTEL_RESOURCE_ATTRIBUTES`.
    #[serde(default)]
    pub environment: Option<serde_yaml::Value>,
    /// `dynatrace: {}`: not supported; refused when set.
    #[serde(default)]
    pub dynatrace: Option<serde_yaml::Value>,
}

/// `envoyExtAuthzGrpc`: Envoy's `envoy.service.auth.v3.Authorization/Check`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzGrpc {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub fail_open: bool,
    #[serde(default)]
    pub status_on_error: Option<String>,
    /// Not supported: refused when set.
    #[serde(default)]
    pub include_request_body_in_check: Option<serde_yaml::Value>,
}

/// `envoyExtAuthzHttp`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuthzHttp {
    /// `[<namespace>/]<hostname>` of the authorization service.
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub port: u16,
    /// Default 600s as Istio's; a duration like `0.5s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Prepended to the request's path in the check request.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Allow the request when the authorization service cannot be reached.
    #[serde(default)]
    pub fail_open: bool,
    /// The status when it cannot be reached and `failOpen` is false (default 403).
    #[serde(default)]
    pub status_on_error: Option<String>,
    /// Request headers sent to the service (exact, `prefix*`, `*suffix`, `*`);
    /// `Authorization` is always sent, as Envoy does.
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Extra headers for the check request.
    #[serde(default)]
    pub include_additional_headers_in_check: std::collections::BTreeMap<String, String>,
    /// Headers of the service's OK answer copied onto the upstream request.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Headers of the service's denial passed to the client.
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Not supported: refused when set.
    #[serde(default)]
    pub include_request_body_in_check: Option<serde_yaml::Value>,
    /// Deprecated alias of `includeRequestHeadersInCheck`; refused.
    #[serde(default)]
    pub include_headers_in_check: Option<serde_yaml::Value>,
}

/// A `v1` ConfigMap, as far as the waypoint reads one: Istio's `istio`
/// ConfigMap, whose `data.mesh` is the MeshConfig.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default)]
    pub metadata: super::ObjectMeta,
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
}

/// The name of Istio's mesh ConfigMap (in the root namespace).
pub const ISTIO_CONFIGMAP: &str = "istio";

impl MeshConfig {
    /// Reads `path`: a ConfigMap with `data.mesh`, or MeshConfig itself.
    pub fn load(path: &Path) -> Result<MeshConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<MeshConfig, String> {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
        let mesh = match doc.get("data").and_then(|d| d.get("mesh")) {
            Some(serde_yaml::Value::String(inner)) => {
                serde_yaml::from_str(inner).map_err(|e| format!("data.mesh: invalid YAML: {e}"))?
            }
            Some(_) => return Err("data.mesh must be a string of YAML".to_string()),
            None => doc,
        };
        serde_path_to_error::deserialize(mesh)
            .map_err(|e| format!("field {}: {}", e.path(), e.inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_istio_configmap_or_the_bare_document() {
        let bare = "rootNamespace: mesh-root\nextensionProviders:\n- name: ext\n  envoyExtAuthzHttp: {service: authz.foo.svc.cluster.local, port: 8000, includeRequestHeadersInCheck: [x-ext-authz]}\n- name: otel\n  opentelemetry: {service: otel, port: 4317}\ndefaultConfig: {discoveryAddress: istiod:15012}\n";
        let m = MeshConfig::parse(bare).unwrap();
        assert_eq!(m.root_namespace.as_deref(), Some("mesh-root"));
        assert_eq!(
            m.extension_providers[0]
                .envoy_ext_authz_http
                .as_ref()
                .unwrap()
                .port,
            8000
        );
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{}",
            bare.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        assert_eq!(MeshConfig::parse(&cm).unwrap(), m);
        let typo = "extensionProviders:\n- name: ext\n  envoyExtAuthzHttp: {service: a, port: 1, failopen: true}\n";
        let err = MeshConfig::parse(typo).unwrap_err();
        assert!(err.contains("failopen"), "{err}");
    }
}
